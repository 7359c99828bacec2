//! Pieces of a call, scripted on the builder: IVR, a direct or queued answer, a group's ringing,
//! an outbound dial, the conversation with its transfers, the recordings and the summary.

use super::*;

impl CallBuilder<'_> {
    /// The voice menu: the client listens, then is forwarded. Returns the menu leg's id and the
    /// time it ended.
    pub(super) fn ivr(&mut self, t0: i64, client: &str, line: &str) -> (String, i64) {
        let mut ivr = self.leg(
            Location::Ivr,
            Self::client_party(client),
            Self::line_party(line),
        );
        self.emit(&mut ivr, t0, CallState::Appeared, None);
        let t = t0 + self.rng.range(3, 15);
        self.emit(&mut ivr, t, CallState::Disconnected, Some(1100));
        (ivr.id, t)
    }

    /// A client leg straight to an employee (on a line, or from the menu by extension), answered.
    pub(super) fn direct(
        &mut self,
        t0: i64,
        client: &str,
        line: &str,
        employee: usize,
    ) -> Answered {
        let (taken_from, t) = if self.rng.chance(0.5) {
            let (id, t) = self.ivr(t0, client, line);
            (Some(id), t)
        } else {
            (None, t0)
        };
        let mut to = self.employee_party(employee);
        to.line_number = Some(line.to_string());
        let mut from = Self::client_party(client);
        from.taken_from_call_id = taken_from;
        self.answered(from, to, t, employee, true)
    }

    /// Menu (sometimes), then the group's queue. Returns the queue leg and the time the client
    /// entered it.
    pub(super) fn queue(&mut self, t0: i64, client: &str, line: &str, group: usize) -> (Leg, i64) {
        let (taken_from, t) = if self.rng.chance(0.7) {
            let (id, t) = self.ivr(t0, client, line);
            (Some(id), t)
        } else {
            (None, t0)
        };
        let mut from = Self::client_party(client);
        from.taken_from_call_id = taken_from;
        let mut to = Self::line_party(line);
        to.acd_group = Some(self.staff.groups[group].extension.clone());
        let mut q = self.leg(Location::Queue, from, to);
        self.emit(&mut q, t, CallState::Appeared, None);
        (q, t)
    }

    /// The leg that offers a queued call to one member.
    pub(super) fn member_leg(
        &mut self,
        queue: &Leg,
        client: &str,
        line: &str,
        group: usize,
        e: usize,
    ) -> Leg {
        let mut from = Self::client_party(client);
        from.taken_from_call_id = Some(queue.id.clone());
        let mut to = self.employee_party(e);
        to.line_number = Some(line.to_string());
        to.acd_group = Some(self.staff.groups[group].extension.clone());
        self.leg(Location::Abonent, from, to)
    }

    /// A group call answered: ring-all (one member answers) or one-by-one (the `nth` member,
    /// 1-based, answers after the ones before did not). Returns the answered leg and the
    /// members offered before the one who answered.
    pub(super) fn group_answered(
        &mut self,
        t0: i64,
        client: &str,
        line: &str,
        group: usize,
        nth: usize,
    ) -> Answered {
        let (mut q, t) = self.queue(t0, client, line, group);
        let members = self.staff.groups[group].members.clone();
        let strategy = self.staff.groups[group].strategy;
        let (leg, employee, at) = match strategy {
            GroupStrategy::RingAll => {
                let t = t + self.rng.range(0, 20); // waiting for a free operator
                let mut legs: Vec<Leg> = members
                    .iter()
                    .map(|&e| self.member_leg(&q, client, line, group, e))
                    .collect();
                for l in &mut legs {
                    self.emit(l, t, CallState::Appeared, None);
                }
                let winner = self.rng.below(legs.len());
                let at = t + self.ring();
                let mut won = None;
                for (i, mut l) in legs.into_iter().enumerate() {
                    if i == winner {
                        self.emit(&mut l, at, CallState::Connected, None);
                        won = Some(l);
                    } else {
                        // The others stop ringing: the call was taken by another operator.
                        self.emit(&mut l, at, CallState::Disconnected, Some(1182));
                    }
                }
                (won.expect("a winner"), members[winner], at)
            }
            GroupStrategy::OneByOne => {
                let nth = nth.clamp(1, members.len());
                let mut t = t + self.rng.range(0, 10);
                let mut answered = None;
                for (i, &e) in members.iter().enumerate().take(nth) {
                    let mut l = self.member_leg(&q, client, line, group, e);
                    self.emit(&mut l, t, CallState::Appeared, None);
                    let rang = self.ring();
                    if i + 1 == nth {
                        self.emit(&mut l, t + rang, CallState::Connected, None);
                        answered = Some((l, e, t + rang));
                    } else {
                        let rang = rang + self.rng.range(5, 15);
                        self.emit(&mut l, t + rang, CallState::Disconnected, Some(1111));
                        t += rang;
                    }
                }
                answered.expect("the nth member answers")
            }
        };
        // The client left the queue for the operator's leg.
        self.emit(&mut q, at, CallState::Disconnected, Some(1100));
        Answered {
            leg,
            employee,
            at,
            client_on_from: true,
        }
    }

    /// An outbound leg from an employee to the client, answered.
    pub(super) fn outbound(
        &mut self,
        t0: i64,
        client: &str,
        line: &str,
        employee: usize,
    ) -> Answered {
        let mut to = Self::client_party(client);
        to.line_number = Some(line.to_string());
        let from = self.employee_party(employee);
        self.answered(from, to, t0, employee, false)
    }

    /// A leg between the client and `employee` that appears at `t` and is answered after the
    /// ring.
    fn answered(
        &mut self,
        from: Party,
        to: Party,
        t: i64,
        employee: usize,
        client_on_from: bool,
    ) -> Answered {
        let mut leg = self.leg(Location::Abonent, from, to);
        self.emit(&mut leg, t, CallState::Appeared, None);
        let at = t + self.ring();
        self.emit(&mut leg, at, CallState::Connected, None);
        Answered {
            leg,
            employee,
            at,
            client_on_from,
        }
    }

    /// From an answered client leg: a chain of transfers to `targets` (each a distinct employee,
    /// in order), then the client hangs up. Returns the conversations and the end time.
    pub(super) fn converse(
        &mut self,
        answered: Answered,
        client: &str,
        targets: &[usize],
        kind: Option<TransferKind>,
    ) -> (Vec<Talk>, i64, u32) {
        let Answered {
            mut leg,
            mut employee,
            at,
            mut client_on_from,
        } = answered;
        let mut talks = Vec::new();
        let mut start = at;
        for &next in targets {
            let kind = kind.expect("a transfer kind for a chain");
            let hold_at = start + self.talk().max(6);
            self.hold(&mut leg, hold_at, client_on_from);
            // The employee dials the colleague from a new leg.
            let mut from = self.employee_party(employee);
            from.taken_from_call_id = Some(leg.id.clone());
            let to = self.employee_party(next);
            let mut new = self.leg(Location::Abonent, from, to);
            new.transfer = Some(kind);
            self.emit(&mut new, hold_at, CallState::Appeared, None);
            let mut client_side = Self::client_party(client);
            client_side.taken_from_call_id = Some(leg.id.clone());
            let next_start = match kind {
                TransferKind::Consultative => {
                    let consult = hold_at + self.ring();
                    self.emit(&mut new, consult, CallState::Connected, None);
                    // They talk, the first employee hangs up, and the client is put through:
                    // a second Connected on the same leg with the client as `from`.
                    let put_through = consult + self.rng.range(5, 40);
                    self.emit(&mut leg, put_through, CallState::Disconnected, Some(1120));
                    new.from = client_side;
                    new.transfer = Some(TransferKind::Blind);
                    self.emit(&mut new, put_through, CallState::Connected, None);
                    put_through
                }
                TransferKind::Blind | TransferKind::ReturnBlind => {
                    // The employee hangs up at once; the new leg appears again from the client.
                    let left = hold_at + self.rng.range(0, 2);
                    self.emit(&mut leg, left, CallState::Disconnected, Some(1120));
                    new.from = client_side;
                    self.emit(&mut new, left, CallState::Appeared, None);
                    let at = left + self.ring();
                    self.emit(&mut new, at, CallState::Connected, None);
                    at
                }
            };
            talks.push(Talk {
                employee,
                leg: leg.id.clone(),
                start,
                end: hold_at,
            });
            start = next_start;
            leg = new;
            employee = next;
            client_on_from = true;
        }
        let end = start + self.talk();
        let reason = self.hangup_reason();
        self.emit(&mut leg, end, CallState::Disconnected, Some(reason));
        talks.push(Talk {
            employee,
            leg: leg.id.clone(),
            start,
            end,
        });
        (talks, end, reason)
    }

    /// Recording events for the talks (when recorded) plus `record/added` / `record/tagged`
    /// after the call ended. Returns the recording each talk should carry.
    pub(super) fn record(&mut self, talks: &[Talk], end: i64) -> Vec<Option<String>> {
        let mut ids = Vec::new();
        let mut stored = Vec::new();
        for talk in talks {
            self.recordings += 1;
            let id =
                b64(format!("rec:{}:{}:{}", self.seed, self.index, self.recordings).as_bytes());
            let e = &self.staff.employees[talk.employee];
            let (ext, user) = (e.extension.clone(), e.mango_user_id);
            // Mango does not save recordings shorter than 6 s (completion code 4002).
            let saved = talk.end - talk.start >= 6;
            for (seq, state, t, code) in [
                (1, RecordingState::Started, talk.start, None),
                (
                    2,
                    RecordingState::Completed,
                    talk.end,
                    Some(if saved { 1000 } else { 4002 }),
                ),
            ] {
                self.events.push(PbxEvent::Recording(RecordingEvent {
                    entry_id: self.entry_id.clone(),
                    call_id: Some(talk.leg.clone()),
                    recording_id: id.clone(),
                    recording_state: state,
                    seq,
                    extension: Some(ext.clone()),
                    timestamp: t,
                    completion_code: code,
                }));
            }
            if saved {
                stored.push((id.clone(), user));
                ids.push(Some(id));
            } else {
                ids.push(None);
            }
        }
        for (id, user) in stored {
            let added = end + self.rng.range(5, 40);
            let stored_event = RecordStoredEvent {
                entry_id: self.entry_id.clone(),
                recording_id: id,
                user_id: Some(user),
                product_id: Some(PRODUCT_ID),
                timestamp: added,
            };
            self.events
                .push(PbxEvent::RecordAdded(stored_event.clone()));
            if self.rng.chance(0.8) {
                let tagged = added + self.rng.range(10, 50);
                self.events.push(PbxEvent::RecordTagged(RecordStoredEvent {
                    timestamp: tagged,
                    ..stored_event
                }));
            }
        }
        ids
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn summary(
        &mut self,
        direction: SummaryDirection,
        from: Party,
        to: Party,
        line: Option<&str>,
        times: (i64, i64, i64, i64),
        answered: bool,
        reason: u32,
    ) {
        let (create_time, forward_time, talk_time, end_time) = times;
        self.events.push(PbxEvent::Summary(SummaryEvent {
            entry_id: self.entry_id.clone(),
            call_direction: direction,
            from,
            to,
            line_number: line.map(str::to_string),
            create_time,
            forward_time,
            talk_time,
            end_time,
            entry_result: Some(u8::from(answered)),
            disconnect_reason: Some(reason),
            recovered: false,
        }));
    }
}
