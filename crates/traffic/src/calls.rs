//! One call (entry) at a time: the PBX legs, summary and recordings Mango sends for it, and what
//! the call really was (the ground truth).

use crate::rng::Rng;
use crate::staff::{GroupStrategy, Staff};
use callbridge_core::{
    CallEvent, CallState, Direction, Location, MissedKind, Party, PbxEvent, RecordStoredEvent,
    RecordingEvent, RecordingState, SummaryDirection, SummaryEvent, TransferKind,
};

/// The kinds of call the generator produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CallKind {
    /// A client calls an employee (directly on a line, or by extension from the voice menu) who
    /// answers.
    DirectAnswered,
    /// Voice menu, then a ring-all group: every member rings, one answers.
    RingAllAnswered,
    /// A one-by-one group: the first member does not answer, the 2nd or 3rd does.
    OneByOneAnswered,
    /// A group call nobody answered (ring-all or one-by-one; sometimes nobody was free to ring).
    MissedGroup,
    /// The client hung up in the voice menu.
    MissedIvr,
    /// 2-3 employees in a chain of consultative transfers.
    ConsultativeTransfer,
    /// 2-3 employees in a chain of blind transfers.
    BlindTransfer,
    /// An employee calls a client who answers.
    OutboundAnswered,
    /// An employee calls a client who is busy (1121).
    OutboundBusy,
    /// An employee calls a client who does not answer (1111).
    OutboundNoAnswer,
    /// One employee calls another.
    Internal,
}

impl CallKind {
    pub const ALL: [CallKind; 11] = [
        CallKind::DirectAnswered,
        CallKind::RingAllAnswered,
        CallKind::OneByOneAnswered,
        CallKind::MissedGroup,
        CallKind::MissedIvr,
        CallKind::ConsultativeTransfer,
        CallKind::BlindTransfer,
        CallKind::OutboundAnswered,
        CallKind::OutboundBusy,
        CallKind::OutboundNoAnswer,
        CallKind::Internal,
    ];
}

/// What a generated call really was: what a correct core must make of its events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallTruth {
    pub entry_id: String,
    pub kind: CallKind,
    pub direction: Direction,
    /// A client talked to an employee (internal calls: the callee answered).
    pub answered: bool,
    /// Extensions of the employees who talked with the client, one per conversation, in order.
    pub talkers: Vec<String>,
    /// The recording each conversation should carry (`None`: not recorded, or not saved).
    pub recordings: Vec<Option<String>>,
    /// For a missed external call: how it was missed.
    pub missed: Option<MissedKind>,
    /// For a missed call: the first employee the call was offered to (the summary's `to`).
    pub first_offered: Option<String>,
    /// The operator group the call went through.
    pub group: Option<String>,
    pub summary_lost: bool,
    /// The call's first event time.
    pub started_at: i64,
    /// Distinct events generated for the entry (before duplicated deliveries).
    pub events: usize,
}

impl CallTruth {
    /// Conversations between the client and one employee the assembler must find.
    pub fn conversations(&self) -> usize {
        self.talkers.len()
    }
}

/// Probabilities and ranges of one call that the caller controls.
pub(crate) struct CallOptions {
    pub lost_summary: bool,
    pub recorded: bool,
}

struct Leg {
    id: String,
    seq: u64,
    location: Location,
    from: Party,
    to: Party,
    transfer: Option<TransferKind>,
}

/// Builds one entry's events in causal order (events of one second keep the order they are
/// made in).
pub(crate) struct CallBuilder<'a> {
    staff: &'a Staff,
    rng: &'a mut Rng,
    seed: u64,
    index: u64,
    entry_id: String,
    legs: u32,
    recordings: u32,
    pub events: Vec<PbxEvent>,
}

/// A conversation as scripted: for recordings and the truth.
struct Talk {
    employee: usize,
    leg: String,
    start: i64,
    end: i64,
}

/// Where a client leg stands once an employee has answered.
struct Answered {
    leg: Leg,
    employee: usize,
    at: i64,
    /// The client is the leg's `from` (inbound) rather than its `to` (outbound).
    client_on_from: bool,
}

const PRODUCT_ID: i64 = 300_022_532;

/// A summary to send at the end: direction, from, to, line, (create, forward, talk, end) times,
/// answered, disconnect reason.
type SummaryPlan = (
    SummaryDirection,
    Party,
    Party,
    Option<String>,
    (i64, i64, i64, i64),
    bool,
    u32,
);

impl<'a> CallBuilder<'a> {
    pub fn new(staff: &'a Staff, rng: &'a mut Rng, seed: u64, index: u64) -> Self {
        CallBuilder {
            staff,
            rng,
            seed,
            index,
            entry_id: b64(format!("{seed}:{index}").as_bytes()),
            legs: 0,
            recordings: 0,
            events: Vec::new(),
        }
    }

    fn leg(&mut self, location: Location, from: Party, to: Party) -> Leg {
        self.legs += 1;
        Leg {
            id: b64(format!("1:{}:{}:{}", self.seed, self.index, self.legs).as_bytes()),
            seq: 0,
            location,
            from,
            to,
            transfer: None,
        }
    }

    fn emit(&mut self, leg: &mut Leg, t: i64, state: CallState, reason: Option<u32>) {
        leg.seq += 1;
        self.events.push(PbxEvent::Call(CallEvent {
            entry_id: self.entry_id.clone(),
            call_id: leg.id.clone(),
            timestamp: t,
            seq: leg.seq,
            call_state: state,
            location: leg.location.clone(),
            from: leg.from.clone(),
            to: leg.to.clone(),
            disconnect_reason: reason,
            transfer: leg.transfer,
            command_id: None,
            callback_initiator: None,
        }));
    }

    /// `OnHold` with the employee's side marked as the one who put the other on hold.
    fn hold(&mut self, leg: &mut Leg, t: i64, client_on_from: bool) {
        let side = if client_on_from {
            &mut leg.to
        } else {
            &mut leg.from
        };
        side.hold_initiator = true;
        self.emit(leg, t, CallState::OnHold, None);
        let side = if client_on_from {
            &mut leg.to
        } else {
            &mut leg.from
        };
        side.hold_initiator = false;
    }

    fn client_party(number: &str) -> Party {
        Party {
            number: Some(number.to_string()),
            ..Default::default()
        }
    }

    fn employee_party(&self, e: usize) -> Party {
        let e = &self.staff.employees[e];
        Party {
            extension: Some(e.extension.clone()),
            number: Some(e.sip.clone()),
            ..Default::default()
        }
    }

    fn line_party(line: &str) -> Party {
        Party {
            number: Some(line.to_string()),
            line_number: Some(line.to_string()),
            ..Default::default()
        }
    }

    fn client_number(&mut self) -> String {
        // Russian mobile numbers, as Mango sends them (country code, no plus).
        format!("79{:09}", self.rng.range(0, 999_999_999))
    }

    fn ring(&mut self) -> i64 {
        self.rng.range(3, 18)
    }

    fn talk(&mut self) -> i64 {
        // Mostly a minute or two, a long tail of long calls, a few very short ones (whose
        // recordings are not saved).
        if self.rng.chance(0.05) {
            self.rng.range(2, 5)
        } else {
            10 + self.rng.exp(100.0).min(3000.0) as i64
        }
    }

    fn hangup_reason(&mut self) -> u32 {
        if self.rng.chance(0.6) {
            1110
        } else {
            1120
        }
    }

    fn other_employee(&mut self, not: &[usize], prefer_mapped: Option<bool>) -> usize {
        let candidates: Vec<usize> = (0..self.staff.employees.len())
            .filter(|i| !not.contains(i))
            .collect();
        if let Some(mapped) = prefer_mapped {
            let preferred: Vec<usize> = candidates
                .iter()
                .copied()
                .filter(|&i| self.staff.employees[i].crm_user_id.is_some() == mapped)
                .collect();
            if !preferred.is_empty() {
                return *self.rng.pick(&preferred);
            }
        }
        *self.rng.pick(&candidates)
    }

    fn group_of(&mut self, strategy: GroupStrategy) -> Option<usize> {
        let groups: Vec<usize> = (0..self.staff.groups.len())
            .filter(|&g| {
                self.staff.groups[g].strategy == strategy
                    && !self.staff.groups[g].members.is_empty()
            })
            .collect();
        (!groups.is_empty()).then(|| *self.rng.pick(&groups))
    }

    /// The voice menu: the client listens, then is forwarded. Returns the menu leg's id and the
    /// time it ended.
    fn ivr(&mut self, t0: i64, client: &str, line: &str) -> (String, i64) {
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
    fn direct(&mut self, t0: i64, client: &str, line: &str, employee: usize) -> Answered {
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
        let mut leg = self.leg(Location::Abonent, from, to);
        self.emit(&mut leg, t, CallState::Appeared, None);
        let at = t + self.ring();
        self.emit(&mut leg, at, CallState::Connected, None);
        Answered {
            leg,
            employee,
            at,
            client_on_from: true,
        }
    }

    /// Menu (sometimes), then the group's queue. Returns the queue leg and the time the client
    /// entered it.
    fn queue(&mut self, t0: i64, client: &str, line: &str, group: usize) -> (Leg, i64) {
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
    fn member_leg(&mut self, queue: &Leg, client: &str, line: &str, group: usize, e: usize) -> Leg {
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
    fn group_answered(
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
    fn outbound(&mut self, t0: i64, client: &str, line: &str, employee: usize) -> Answered {
        let mut to = Self::client_party(client);
        to.line_number = Some(line.to_string());
        let from = self.employee_party(employee);
        let mut leg = self.leg(Location::Abonent, from, to);
        self.emit(&mut leg, t0, CallState::Appeared, None);
        let at = t0 + self.ring();
        self.emit(&mut leg, at, CallState::Connected, None);
        Answered {
            leg,
            employee,
            at,
            client_on_from: false,
        }
    }

    /// From an answered client leg: a chain of transfers to `targets` (each a distinct employee,
    /// in order), then the client hangs up. Returns the conversations and the end time.
    fn converse(
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
    fn record(&mut self, talks: &[Talk], end: i64) -> Vec<Option<String>> {
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
    fn summary(
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
        }));
    }

    /// Scripts one call of `kind` starting at `t0`. Returns its events (causal order) and truth.
    pub fn build(
        mut self,
        kind: CallKind,
        t0: i64,
        opts: CallOptions,
    ) -> (Vec<PbxEvent>, CallTruth) {
        let client = self.client_number();
        let line = self.rng.pick(&self.staff.lines).clone();
        let n = self.staff.employees.len();
        let mut truth = CallTruth {
            entry_id: self.entry_id.clone(),
            kind,
            direction: Direction::Inbound,
            answered: true,
            talkers: Vec::new(),
            recordings: Vec::new(),
            missed: None,
            first_offered: None,
            group: None,
            summary_lost: opts.lost_summary,
            started_at: t0,
            events: 0,
        };
        let mut summary: Option<SummaryPlan> = None;
        let mut answered_call: Option<(Answered, Vec<usize>, Option<TransferKind>)> = None;

        match kind {
            CallKind::DirectAnswered => {
                let e = self.rng.below(n);
                answered_call = Some((self.direct(t0, &client, &line, e), vec![], None));
            }
            CallKind::RingAllAnswered | CallKind::OneByOneAnswered => {
                let strategy = if kind == CallKind::RingAllAnswered {
                    GroupStrategy::RingAll
                } else {
                    GroupStrategy::OneByOne
                };
                match self.group_of(strategy) {
                    Some(g) => {
                        let nth = if strategy == GroupStrategy::OneByOne {
                            self.rng.range(2, 3) as usize
                        } else {
                            1
                        };
                        truth.group = Some(self.staff.groups[g].extension.clone());
                        let a = self.group_answered(t0, &client, &line, g, nth);
                        answered_call = Some((a, vec![], None));
                    }
                    None => {
                        let e = self.rng.below(n);
                        answered_call = Some((self.direct(t0, &client, &line, e), vec![], None));
                    }
                }
            }
            CallKind::ConsultativeTransfer | CallKind::BlindTransfer => {
                let first = self.rng.below(n);
                let answered = match self.rng.below(4) {
                    0 => {
                        truth.direction = Direction::Outbound;
                        self.outbound(t0, &client, &line, first)
                    }
                    1 => match self.group_of(GroupStrategy::RingAll) {
                        Some(g) => {
                            truth.group = Some(self.staff.groups[g].extension.clone());
                            self.group_answered(t0, &client, &line, g, 1)
                        }
                        None => self.direct(t0, &client, &line, first),
                    },
                    _ => self.direct(t0, &client, &line, first),
                };
                let mut chain = vec![answered.employee];
                let hops = if n >= 3 {
                    self.rng.range(1, 2) as usize
                } else {
                    1
                };
                for _ in 0..hops {
                    // Across the mapping table's edge more often than not (R3/R4, P5/P6).
                    let last_mapped = self.staff.employees[*chain.last().expect("non-empty")]
                        .crm_user_id
                        .is_some();
                    let prefer = self.rng.chance(0.6).then_some(!last_mapped);
                    let next = self.other_employee(&chain, prefer);
                    chain.push(next);
                }
                let targets = chain[1..].to_vec();
                let tk = if kind == CallKind::ConsultativeTransfer {
                    TransferKind::Consultative
                } else {
                    TransferKind::Blind
                };
                answered_call = Some((answered, targets, Some(tk)));
            }
            CallKind::OutboundAnswered => {
                truth.direction = Direction::Outbound;
                let e = self.rng.below(n);
                answered_call = Some((self.outbound(t0, &client, &line, e), vec![], None));
            }
            CallKind::OutboundBusy | CallKind::OutboundNoAnswer => {
                truth.direction = Direction::Outbound;
                truth.answered = false;
                truth.missed = Some(MissedKind::Personal);
                let e = self.rng.below(n);
                truth.first_offered = Some(self.staff.employees[e].extension.clone());
                let mut to = Self::client_party(&client);
                to.line_number = Some(line.clone());
                let from = self.employee_party(e);
                let mut leg = self.leg(Location::Abonent, from.clone(), to);
                self.emit(&mut leg, t0, CallState::Appeared, None);
                let (end, reason) = if kind == CallKind::OutboundBusy {
                    (t0 + self.rng.range(1, 4), 1121)
                } else {
                    (t0 + self.rng.range(20, 45), 1111)
                };
                self.emit(&mut leg, end, CallState::Disconnected, Some(reason));
                summary = Some((
                    SummaryDirection::Outbound,
                    from,
                    Self::client_party(&client),
                    Some(line.clone()),
                    (t0, t0, 0, end),
                    false,
                    reason,
                ));
            }
            CallKind::MissedIvr => {
                truth.answered = false;
                truth.missed = Some(MissedKind::Ivr);
                let mut ivr = self.leg(
                    Location::Ivr,
                    Self::client_party(&client),
                    Self::line_party(&line),
                );
                self.emit(&mut ivr, t0, CallState::Appeared, None);
                let end = t0 + self.rng.range(2, 40);
                self.emit(&mut ivr, end, CallState::Disconnected, Some(1110));
                summary = Some((
                    SummaryDirection::Inbound,
                    Self::client_party(&client),
                    Party::default(),
                    Some(line.clone()),
                    (t0, 0, 0, end),
                    false,
                    1110,
                ));
            }
            CallKind::MissedGroup => {
                truth.answered = false;
                truth.missed = Some(MissedKind::Group);
                let strategy = if self.rng.chance(0.5) {
                    GroupStrategy::RingAll
                } else {
                    GroupStrategy::OneByOne
                };
                let g = self
                    .group_of(strategy)
                    .or_else(|| self.group_of(GroupStrategy::RingAll))
                    .or_else(|| self.group_of(GroupStrategy::OneByOne));
                let Some(g) = g else {
                    // No groups at all: a missed IVR call stands in.
                    return self.build(CallKind::MissedIvr, t0, opts);
                };
                let group_ext = self.staff.groups[g].extension.clone();
                truth.group = Some(group_ext.clone());
                let (mut q, t) = self.queue(t0, &client, &line, g);
                let members = self.staff.groups[g].members.clone();
                let strategy = self.staff.groups[g].strategy;
                let mut end = t;
                let reason;
                if self.rng.chance(0.15) {
                    // Nobody free to ring: the queue gives up.
                    end += self.rng.range(10, 60);
                    reason = 1164;
                } else {
                    match strategy {
                        GroupStrategy::RingAll => {
                            let mut legs: Vec<Leg> = members
                                .iter()
                                .map(|&e| self.member_leg(&q, &client, &line, g, e))
                                .collect();
                            for l in &mut legs {
                                self.emit(l, t, CallState::Appeared, None);
                            }
                            end = t + self.rng.range(15, 40);
                            for l in &mut legs {
                                self.emit(l, end, CallState::Disconnected, Some(1111));
                            }
                            let first = self.rng.below(members.len());
                            truth.first_offered =
                                Some(self.staff.employees[members[first]].extension.clone());
                        }
                        GroupStrategy::OneByOne => {
                            let rung = self.rng.range(1, members.len() as i64) as usize;
                            for &e in &members[..rung] {
                                let mut l = self.member_leg(&q, &client, &line, g, e);
                                self.emit(&mut l, end, CallState::Appeared, None);
                                end += self.rng.range(10, 25);
                                self.emit(&mut l, end, CallState::Disconnected, Some(1111));
                            }
                            truth.first_offered =
                                Some(self.staff.employees[members[0]].extension.clone());
                        }
                    }
                    reason = if self.rng.chance(0.5) { 1163 } else { 1110 };
                }
                self.emit(&mut q, end, CallState::Disconnected, Some(reason));
                let to = Party {
                    extension: Some(truth.first_offered.clone().unwrap_or(group_ext)),
                    ..Default::default()
                };
                summary = Some((
                    SummaryDirection::Inbound,
                    Self::client_party(&client),
                    to,
                    Some(line.clone()),
                    (t0, t0, 0, end),
                    false,
                    reason,
                ));
            }
            CallKind::Internal => {
                truth.direction = Direction::Internal;
                let a = self.rng.below(n);
                let b = self.other_employee(&[a], None);
                let from = self.employee_party(a);
                let to = self.employee_party(b);
                let mut leg = self.leg(Location::Abonent, from, to);
                self.emit(&mut leg, t0, CallState::Appeared, None);
                let answered = self.rng.chance(0.75);
                truth.answered = answered;
                let (talk_at, end, reason) = if answered {
                    let at = t0 + self.ring();
                    self.emit(&mut leg, at, CallState::Connected, None);
                    let end = at + self.talk();
                    (at, end, 1110)
                } else {
                    (0, t0 + self.rng.range(15, 30), 1111)
                };
                self.emit(&mut leg, end, CallState::Disconnected, Some(reason));
                let short = |p: Party| Party {
                    extension: p.extension,
                    ..Default::default()
                };
                let (f, t) = (self.employee_party(a), self.employee_party(b));
                summary = Some((
                    SummaryDirection::Internal,
                    short(f),
                    short(t),
                    None,
                    (t0, t0, talk_at, end),
                    answered,
                    reason,
                ));
            }
        }

        if let Some((answered, targets, transfer)) = answered_call {
            let first_answer = answered.at;
            let outbound = !answered.client_on_from;
            let first_employee = answered.employee;
            let (talks, end, reason) = self.converse(answered, &client, &targets, transfer);
            truth.talkers = talks
                .iter()
                .map(|t| self.staff.employees[t.employee].extension.clone())
                .collect();
            truth.recordings = if opts.recorded {
                self.record(&talks, end)
            } else {
                vec![None; talks.len()]
            };
            let last = talks.last().expect("a talk").employee;
            summary = Some(if outbound {
                (
                    SummaryDirection::Outbound,
                    self.employee_party(first_employee),
                    Self::client_party(&client),
                    Some(line.clone()),
                    (t0, t0, first_answer, end),
                    true,
                    reason,
                )
            } else {
                (
                    SummaryDirection::Inbound,
                    Self::client_party(&client),
                    self.employee_party(last),
                    Some(line.clone()),
                    (t0, t0, first_answer, end),
                    true,
                    reason,
                )
            });
        }

        if let Some((direction, from, to, line, times, answered, reason)) = summary {
            if !opts.lost_summary {
                self.summary(
                    direction,
                    from,
                    to,
                    line.as_deref(),
                    times,
                    answered,
                    reason,
                );
            }
        }
        truth.events = self.events.len();
        (self.events, truth)
    }
}

/// Standard base64 with padding, as Mango's ids look.
pub(crate) fn b64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::b64;

    #[test]
    fn base64_matches_known_ids() {
        // Mango's entry ids in the scenarios are base64 of "entry:N".
        assert_eq!(b64(b"entry:3"), "ZW50cnk6Mw==");
        assert_eq!(b64(b"entry:104"), "ZW50cnk6MTA0");
        assert_eq!(b64(b"ab"), "YWI=");
    }
}
