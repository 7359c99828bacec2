//! A small builder of Mango-shaped event streams for the core's tests: legs as the PBX reports
//! them (IVR leg, queue leg, one leg per employee rung, transfers), without going through JSON.
#![allow(dead_code)]

use callbridge_core::event::*;

pub const LINE: &str = "74951234567";

pub fn client(number: &str) -> Party {
    Party {
        number: Some(number.to_string()),
        ..Default::default()
    }
}

pub fn employee(ext: &str) -> Party {
    Party {
        extension: Some(ext.to_string()),
        number: Some(format!("sip:user{ext}@vpbx400000001.mangosip.ru")),
        ..Default::default()
    }
}

pub fn line() -> Party {
    Party {
        number: Some(LINE.to_string()),
        line_number: Some(LINE.to_string()),
        ..Default::default()
    }
}

pub fn taken_from(mut p: Party, call_id: &str) -> Party {
    p.taken_from_call_id = Some(call_id.to_string());
    p
}

pub fn in_group(mut p: Party, group: &str) -> Party {
    p.acd_group = Some(group.to_string());
    p
}

/// Builds the events of one entry.
pub struct Entry {
    pub id: String,
    legs: usize,
    pub events: Vec<PbxEvent>,
}

pub struct Leg {
    pub call_id: String,
    seq: u64,
    location: Location,
    from: Party,
    to: Party,
    transfer: Option<TransferKind>,
}

impl Leg {
    /// Marks the leg as made by a transfer of this kind.
    pub fn transfer_kind(&mut self, kind: TransferKind) {
        self.transfer = Some(kind);
    }
}

impl Entry {
    pub fn new(id: &str) -> Self {
        Entry {
            id: id.to_string(),
            legs: 0,
            events: Vec::new(),
        }
    }

    pub fn leg(&mut self, location: Location, from: Party, to: Party) -> Leg {
        self.legs += 1;
        Leg {
            call_id: format!("{}:leg{}", self.id, self.legs),
            seq: 0,
            location,
            from,
            to,
            transfer: None,
        }
    }

    pub fn emit(&mut self, leg: &mut Leg, t: i64, state: CallState, reason: Option<u32>) {
        leg.seq += 1;
        self.events.push(PbxEvent::Call(CallEvent {
            entry_id: self.id.clone(),
            call_id: leg.call_id.clone(),
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
            tracking: None,
        }));
    }

    /// Changes who is on a leg (a transfer's party swap) from the next event on.
    pub fn swap(leg: &mut Leg, from: Party, to: Party, transfer: TransferKind) {
        leg.from = from;
        leg.to = to;
        leg.transfer = Some(transfer);
    }

    pub fn summary(
        &mut self,
        direction: SummaryDirection,
        from: Party,
        to: Party,
        times: (i64, i64, i64),
        answered: bool,
        reason: u32,
    ) {
        let (create, talk, end) = times;
        self.events.push(PbxEvent::Summary(SummaryEvent {
            entry_id: self.id.clone(),
            call_direction: direction,
            from,
            to,
            line_number: Some(LINE.to_string()),
            create_time: create,
            forward_time: create,
            talk_time: talk,
            end_time: end,
            entry_result: Some(u8::from(answered)),
            disconnect_reason: Some(reason),
            recovered: false,
        }));
    }

    pub fn recording(&mut self, leg: &Leg, ext: &str, id: &str, start: i64, end: i64, code: u32) {
        for (seq, (state, t)) in [
            (RecordingState::Started, start),
            (RecordingState::Completed, end),
        ]
        .into_iter()
        .enumerate()
        {
            self.events.push(PbxEvent::Recording(RecordingEvent {
                entry_id: self.id.clone(),
                call_id: Some(leg.call_id.clone()),
                recording_id: id.to_string(),
                recording_state: state,
                seq: seq as u64 + 1,
                extension: Some(ext.to_string()),
                timestamp: t,
                completion_code: (state == RecordingState::Completed).then_some(code),
            }));
        }
    }

    /// IVR leg from the client; returns its call id.
    pub fn ivr(&mut self, number: &str, t: i64, until: i64) -> String {
        let mut ivr = self.leg(Location::Ivr, client(number), line());
        self.emit(&mut ivr, t, CallState::Appeared, None);
        self.emit(&mut ivr, until, CallState::Disconnected, Some(1100));
        ivr.call_id
    }

    /// A direct inbound call: IVR, then one employee answers (or not) and talks `talk` seconds.
    pub fn inbound(id: &str, number: &str, ext: &str, t: i64, talk: Option<i64>) -> Entry {
        let mut e = Entry::new(id);
        let ivr = e.ivr(number, t, t + 3);
        let mut leg = e.leg(
            Location::Abonent,
            taken_from(client(number), &ivr),
            employee(ext),
        );
        e.emit(&mut leg, t + 3, CallState::Appeared, None);
        let end = match talk {
            Some(talk) => {
                e.emit(&mut leg, t + 6, CallState::Connected, None);
                e.emit(&mut leg, t + 6 + talk, CallState::Disconnected, Some(1110));
                t + 6 + talk
            }
            None => {
                e.emit(&mut leg, t + 23, CallState::Disconnected, Some(1111));
                t + 23
            }
        };
        let to = employee(ext);
        e.summary(
            SummaryDirection::Inbound,
            client(number),
            to,
            (t, if talk.is_some() { t + 6 } else { 0 }, end),
            talk.is_some(),
            if talk.is_some() { 1110 } else { 1111 },
        );
        e
    }

    /// An outbound call from an employee to the client.
    pub fn outbound(
        id: &str,
        ext: &str,
        number: &str,
        t: i64,
        talk: Option<i64>,
        reason_if_missed: u32,
    ) -> Entry {
        let mut e = Entry::new(id);
        let mut leg = e.leg(
            Location::Abonent,
            employee(ext),
            Party {
                line_number: Some(LINE.to_string()),
                ..client(number)
            },
        );
        e.emit(&mut leg, t, CallState::Appeared, None);
        let end = match talk {
            Some(talk) => {
                e.emit(&mut leg, t + 5, CallState::Connected, None);
                e.emit(&mut leg, t + 5 + talk, CallState::Disconnected, Some(1110));
                t + 5 + talk
            }
            None => {
                e.emit(
                    &mut leg,
                    t + 20,
                    CallState::Disconnected,
                    Some(reason_if_missed),
                );
                t + 20
            }
        };
        let reason = if talk.is_some() {
            1110
        } else {
            reason_if_missed
        };
        e.summary(
            SummaryDirection::Outbound,
            employee(ext),
            client(number),
            (t, if talk.is_some() { t + 5 } else { 0 }, end),
            talk.is_some(),
            reason,
        );
        e
    }

    /// An internal call between two employees.
    pub fn internal(id: &str, a: &str, b: &str, t: i64) -> Entry {
        let mut e = Entry::new(id);
        let mut leg = e.leg(Location::Abonent, employee(a), employee(b));
        e.emit(&mut leg, t, CallState::Appeared, None);
        e.emit(&mut leg, t + 3, CallState::Connected, None);
        e.emit(&mut leg, t + 30, CallState::Disconnected, Some(1110));
        e.summary(
            SummaryDirection::Internal,
            employee(a),
            employee(b),
            (t, t + 3, t + 30),
            true,
            1110,
        );
        e
    }

    /// An inbound call through a group: members rung in order (all at once when `ring_all`),
    /// answered by `answered_by` (index into members) or missed.
    pub fn group(
        id: &str,
        number: &str,
        group: &str,
        members: &[&str],
        ring_all: bool,
        answered_by: Option<usize>,
        t: i64,
    ) -> Entry {
        let mut e = Entry::new(id);
        let ivr = e.ivr(number, t, t + 3);
        let mut queue = e.leg(
            Location::Queue,
            taken_from(client(number), &ivr),
            in_group(line(), group),
        );
        e.emit(&mut queue, t + 3, CallState::Appeared, None);
        let mut now = t + 3;
        let mut end = now;
        for (i, m) in members.iter().enumerate() {
            let start = if ring_all { t + 3 } else { now };
            let mut leg = e.leg(
                Location::Abonent,
                taken_from(client(number), &queue.call_id),
                in_group(employee(m), group),
            );
            e.emit(&mut leg, start, CallState::Appeared, None);
            if answered_by == Some(i) {
                e.emit(&mut leg, start + 4, CallState::Connected, None);
                e.emit(&mut leg, start + 64, CallState::Disconnected, Some(1110));
                end = start + 64;
            } else {
                let stop = if ring_all {
                    start + answered_by.map_or(10, |_| 4)
                } else {
                    start + 10
                };
                e.emit(
                    &mut leg,
                    stop,
                    CallState::Disconnected,
                    Some(if answered_by.is_some() && ring_all {
                        1182
                    } else {
                        1111
                    }),
                );
                end = end.max(stop);
            }
            now = start + 10;
            if ring_all && answered_by.is_none() {
                now = t + 13;
            }
            if !ring_all && answered_by == Some(i) {
                break;
            }
        }
        e.emit(
            &mut queue,
            end,
            CallState::Disconnected,
            Some(if answered_by.is_some() { 1110 } else { 1163 }),
        );
        let answered = answered_by.is_some();
        let to = match answered_by {
            Some(i) => employee(members[i]),
            None => Party {
                extension: members.first().map(|m| m.to_string()),
                ..Default::default()
            },
        };
        e.summary(
            SummaryDirection::Inbound,
            client(number),
            to,
            (t, if answered { t + 7 } else { 0 }, end),
            answered,
            if answered { 1110 } else { 1163 },
        );
        e
    }

    /// An inbound call answered by `chain[0]`, then transferred along the chain; each transfer is
    /// blind or consultative. Every employee talks 30 s.
    pub fn transfer_chain(id: &str, number: &str, chain: &[(&str, TransferKind)], t: i64) -> Entry {
        let mut e = Entry::new(id);
        let ivr = e.ivr(number, t, t + 3);
        let first = chain[0].0;
        let mut cur = e.leg(
            Location::Abonent,
            taken_from(client(number), &ivr),
            employee(first),
        );
        e.emit(&mut cur, t + 3, CallState::Appeared, None);
        e.emit(&mut cur, t + 5, CallState::Connected, None);
        let mut now = t + 35;
        let mut cur_ext = first.to_string();
        for (target, kind) in &chain[1..] {
            e.emit(&mut cur, now, CallState::OnHold, None);
            let mut next = e.leg(
                Location::Abonent,
                taken_from(employee(&cur_ext), &cur.call_id),
                employee(target),
            );
            next.transfer = Some(*kind);
            e.emit(&mut next, now, CallState::Appeared, None);
            match kind {
                TransferKind::Consultative => {
                    e.emit(&mut next, now + 3, CallState::Connected, None);
                    e.emit(&mut cur, now + 13, CallState::Disconnected, Some(1120));
                    Entry::swap(
                        &mut next,
                        taken_from(client(number), &cur.call_id),
                        employee(target),
                        TransferKind::Blind,
                    );
                    e.emit(&mut next, now + 13, CallState::Connected, None);
                    now += 13;
                }
                _ => {
                    e.emit(&mut cur, now + 1, CallState::Disconnected, Some(1120));
                    Entry::swap(
                        &mut next,
                        taken_from(client(number), &cur.call_id),
                        employee(target),
                        TransferKind::Blind,
                    );
                    e.emit(&mut next, now + 1, CallState::Appeared, None);
                    e.emit(&mut next, now + 4, CallState::Connected, None);
                    now += 4;
                }
            }
            cur = next;
            cur_ext = target.to_string();
            now += 30;
        }
        e.emit(&mut cur, now, CallState::Disconnected, Some(1110));
        e.summary(
            SummaryDirection::Inbound,
            client(number),
            employee(&cur_ext),
            (t, t + 5, now),
            true,
            1110,
        );
        e
    }
}
