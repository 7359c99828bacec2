//! Assembly (rules A1-A6): the events of one entry folded into PBX legs, conversations between the
//! client and one employee, and, for an entry with no conversation, how it was missed.
//!
//! The fold ([`EntryEvents::push`]) only collects and de-duplicates; all reasoning happens in
//! [`EntryEvents::assemble`] on the sorted legs. That makes the result independent of arrival order
//! and of duplicated deliveries by construction, which the property tests check.

use crate::event::*;
use crate::phone;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// Everything received so far for one entry (`entry_id`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntryEvents {
    pub entry_id: String,
    /// Call events per PBX leg (`call_id`), kept sorted by `seq` and free of duplicates (A1).
    legs: BTreeMap<String, Vec<CallEvent>>,
    /// How many legs' last event (by `seq`) is not `Disconnected`, kept by `push`.
    legs_up: usize,
    summary: Option<SummaryEvent>,
    recordings: BTreeMap<String, RecordingFacts>,
    /// Digits keyed in voice menus, each delivery once, in time order.
    keypresses: BTreeSet<Keypress>,
    /// Highest event timestamp seen for this entry.
    pub last_activity: i64,
    /// How many pushed events were duplicates and dropped.
    pub duplicates: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct RecordingFacts {
    /// (timestamp, seq, call_id, extension) of the earliest recording event seen.
    first: Option<(i64, u64, Option<String>, Option<String>)>,
    completed_ok: bool,
    completed_failed: bool,
    stored: bool,
    tagged: bool,
}

/// Outcome of pushing one event into an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    New,
    Duplicate,
}

impl Pushed {
    fn from_new(new: bool) -> Pushed {
        if new {
            Pushed::New
        } else {
            Pushed::Duplicate
        }
    }
}

impl EntryEvents {
    pub fn new(entry_id: impl Into<String>) -> Self {
        EntryEvents {
            entry_id: entry_id.into(),
            ..Default::default()
        }
    }

    /// Folds one event of this entry in. Events of other entries are the caller's mistake and are
    /// not checked here (the tracker routes by `entry_id`).
    pub fn push(&mut self, event: PbxEvent) -> Pushed {
        self.last_activity = self.last_activity.max(event.timestamp());
        let pushed = match event {
            PbxEvent::Call(call) => {
                if let Some(leg) = self.legs.get_mut(&call.call_id) {
                    let was_up = is_up(leg);
                    let order = call_order(&call);
                    let pushed = match leg.binary_search_by(|e| call_order(e).cmp(&order)) {
                        Ok(i) => {
                            // Same seq, state and time: a re-delivery. Should two deliveries
                            // differ in detail, keep the richer one, chosen by content so that
                            // arrival order cannot change the result.
                            if richer(&call, &leg[i]) {
                                leg[i] = call;
                            }
                            Pushed::Duplicate
                        }
                        Err(i) => {
                            leg.insert(i, call);
                            Pushed::New
                        }
                    };
                    match (was_up, is_up(leg)) {
                        (false, true) => self.legs_up += 1,
                        (true, false) => self.legs_up -= 1,
                        _ => {}
                    }
                    pushed
                } else {
                    if call.call_state != CallState::Disconnected {
                        self.legs_up += 1;
                    }
                    self.legs.insert(call.call_id.clone(), vec![call]);
                    Pushed::New
                }
            }
            PbxEvent::Summary(summary) => match &self.summary {
                Some(old) if !summary_newer(&summary, old) => Pushed::Duplicate,
                _ => {
                    self.summary = Some(summary);
                    Pushed::New
                }
            },
            PbxEvent::Recording(rec) => {
                let facts = self.recordings.entry(rec.recording_id).or_default();
                let key = (
                    rec.timestamp,
                    rec.seq,
                    rec.call_id.as_deref(),
                    rec.extension.as_deref(),
                );
                let mut new = false;
                if facts
                    .first
                    .as_ref()
                    .is_none_or(|f| key < (f.0, f.1, f.2.as_deref(), f.3.as_deref()))
                {
                    facts.first = Some((rec.timestamp, rec.seq, rec.call_id, rec.extension));
                    new = true;
                }
                if rec.recording_state == RecordingState::Completed {
                    let ok = rec.completion_code.is_none_or(|c| c == 1000);
                    let flag = if ok {
                        &mut facts.completed_ok
                    } else {
                        &mut facts.completed_failed
                    };
                    new |= !*flag;
                    *flag = true;
                }
                Pushed::from_new(new)
            }
            PbxEvent::RecordAdded(r) => {
                let facts = self.recordings.entry(r.recording_id).or_default();
                Pushed::from_new(!std::mem::replace(&mut facts.stored, true))
            }
            PbxEvent::RecordTagged(r) => {
                let facts = self.recordings.entry(r.recording_id).or_default();
                Pushed::from_new(!std::mem::replace(&mut facts.tagged, true))
            }
            PbxEvent::Dtmf(d) => Pushed::from_new(self.keypresses.insert(Keypress {
                at: d.timestamp,
                seq: d.seq,
                digits: d.digits,
                menu: d.menu,
            })),
        };
        if pushed == Pushed::Duplicate {
            self.duplicates += 1;
        }
        pushed
    }

    pub fn has_summary(&self) -> bool {
        self.summary.is_some()
    }

    /// True when at least one call event or the summary has arrived: only then is there a call
    /// to speak of (a lone recording or keypress event is not one).
    pub fn has_call_facts(&self) -> bool {
        self.summary.is_some() || !self.legs.is_empty()
    }

    /// True when every known leg's last event (by `seq`) is `Disconnected` (A4).
    pub fn all_legs_disconnected(&self) -> bool {
        debug_assert_eq!(
            self.legs_up,
            self.legs.values().filter(|events| is_up(events)).count()
        );
        !self.legs.is_empty() && self.legs_up == 0
    }

    /// True when nothing more is expected for this entry: every leg has hung up and every
    /// recording that started has finished (saved or not). A recording known only from
    /// `record/added` or `record/tagged` is finished.
    pub fn awaits_nothing(&self) -> bool {
        self.all_legs_disconnected()
            && self
                .recordings
                .values()
                .all(|r| r.first.is_none() || r.completed_ok || r.completed_failed)
    }

    pub fn call_event_count(&self) -> usize {
        self.legs.values().map(Vec::len).sum()
    }

    /// Assembles the entry from what has arrived (A1-A6).
    pub fn assemble(&self) -> Assembly {
        assemble(self)
    }
}

fn call_order(e: &CallEvent) -> (u64, i64, CallState) {
    (e.seq, e.timestamp, e.call_state)
}

/// True when a leg's last event (by `seq`) is not `Disconnected`. Legs are never empty.
fn is_up(events: &[CallEvent]) -> bool {
    events
        .last()
        .is_none_or(|e| e.call_state != CallState::Disconnected)
}

/// Whether `new` ranks above `old` by [`richness`], without formatting either in the usual
/// cases: an identical re-delivery, or one with a different count of party fields.
fn richer(new: &CallEvent, old: &CallEvent) -> bool {
    if new == old {
        return false;
    }
    let (n, o) = (party_fields(new), party_fields(old));
    if n != o {
        return n > o;
    }
    richness(new) > richness(old)
}

/// Whether `new` replaces `old` as the entry's summary: `summary_key(new) > summary_key(old)`,
/// formatting only when the two differ in content with equal end and talk times.
fn summary_newer(new: &SummaryEvent, old: &SummaryEvent) -> bool {
    if new == old {
        return false;
    }
    let (n, o) = ((new.end_time, new.talk_time), (old.end_time, old.talk_time));
    if n != o {
        return n > o;
    }
    summary_key(new) > summary_key(old)
}

fn party_fields(e: &CallEvent) -> usize {
    let count = |p: &Party| {
        [
            &p.extension,
            &p.number,
            &p.taken_from_call_id,
            &p.line_number,
            &p.acd_group,
        ]
        .iter()
        .filter(|f| f.is_some())
        .count()
    };
    count(&e.from) + count(&e.to)
}

/// A content-only ranking of two deliveries of the same leg event (see [`richer`]).
fn richness(e: &CallEvent) -> (usize, String) {
    (party_fields(e), format!("{e:?}"))
}

fn summary_key(s: &SummaryEvent) -> (i64, i64, String) {
    (s.end_time, s.talk_time, format!("{s:?}"))
}

/// The direction of an entry or of one conversation (A5, P7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Inbound,
    Outbound,
    Internal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MissedKind {
    Group,
    Ivr,
    Personal,
}

/// A connected interval between the client and one employee (the seed's "leg").
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conversation {
    /// 0, 1, 2... in order of start (A3).
    pub index: usize,
    pub employee_extension: String,
    /// The PBX leg the conversation (first) took place on.
    pub call_id: String,
    pub started_at: i64,
    pub ended_at: i64,
    /// Seconds of talk, hold within the conversation included (A2).
    pub duration_s: i64,
    /// The client of this conversation, normalised: usually the entry's client, but a second
    /// external number the employee dialled or consulted inside the entry is its own client (A2b).
    pub client_phone: String,
    /// Inbound for a conversation received by transfer (P7), outbound for one the employee
    /// dialled (A2c); otherwise the entry's direction.
    pub direction: Direction,
    /// Another employee handed the client over to this one (A2c).
    pub received_by_transfer: bool,
    /// The employee dialled the client on this conversation's leg (A2c).
    pub dialled: bool,
    pub recording_id: Option<String>,
}

/// Digits the client keyed in a voice menu (`events/dtmf`), kept in the entry's history.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize)]
pub struct Keypress {
    /// Unix seconds.
    pub at: i64,
    /// The PBX's order of keypresses within the leg.
    #[serde(default)]
    pub seq: u64,
    pub digits: String,
    /// The menu item (`ivr.1`), when the PBX said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub menu: Option<String>,
}

/// How an entry with no conversation was missed (A6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Missed {
    pub kind: MissedKind,
    /// Employees the call was offered to (rang, or dialled out from), in the order offered. An
    /// employee offered twice (a one-by-one group that cycles) is listed at each offer (A6).
    pub offered: Vec<String>,
    /// The employee of the latest offer: the last in `offered` unless several were offered in
    /// that same second, when the tie goes as for the first (A6).
    pub last_offered: Option<String>,
    pub group: Option<String>,
}

impl Missed {
    /// The employee of the earliest offer (A6).
    pub fn first_offered(&self) -> Option<&str> {
        self.offered.first().map(String::as_str)
    }

    pub fn last_offered(&self) -> Option<&str> {
        self.last_offered.as_deref()
    }
}

/// One entry assembled: what the policy decides on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Assembly {
    pub entry_id: String,
    pub direction: Direction,
    /// The client's number, normalised (see [`phone::normalize`]); `None` for internal calls.
    pub client_phone: Option<String>,
    pub line_number: Option<String>,
    pub started_at: i64,
    pub ended_at: i64,
    pub conversations: Vec<Conversation>,
    pub missed: Option<Missed>,
    /// Employees that took part (rang, talked, consulted) while a client was in the entry, for
    /// the call card (C1): not those who only took part in its internal part before a client did.
    pub participants: BTreeSet<String>,
    /// Some leg reached `Connected` between two parties (employees or external numbers), A7.
    pub talked: bool,
    /// The final disconnect reason (summary's, else the last leg's).
    pub disconnect_reason: Option<u32>,
    /// The summary's `entry_result` (1 success, 0 missed), as the PBX said it.
    pub entry_result: Option<u8>,
    /// The call-tracking number the client came through (`dct`), when any leg carried one.
    pub tracking: Option<CallTracking>,
    /// Digits keyed in voice menus, in time order.
    pub keypresses: Vec<Keypress>,
    pub has_summary: bool,
    /// The summary was rebuilt from the PBX's statistics by reconciliation (A4b).
    pub recovered: bool,
}

/// Who a side of a leg is, at one event. Borrows from the events; a client is an id in the
/// [`Numbers`] table of the assembly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side<'a> {
    Employee(&'a str),
    Client(usize),
    /// The PBX itself: its voice menu or a group queue answering on a line.
    Pbx,
    Unknown,
}

/// The normalised numbers of one assembly, each distinct number once (so equal ids are equal
/// numbers), with the raw forms already seen, so that each raw form is normalised once.
#[derive(Default)]
struct Numbers<'a> {
    raw: Vec<(&'a str, Option<usize>)>,
    numbers: Vec<String>,
}

impl<'a> Numbers<'a> {
    fn normalize(&mut self, raw: &'a str) -> Option<usize> {
        if let Some(&(_, id)) = self.raw.iter().find(|(r, _)| *r == raw) {
            return id;
        }
        let id = phone::normalize(raw).map(|n| {
            match self.numbers.iter().position(|known| *known == n) {
                Some(i) => i,
                None => {
                    self.numbers.push(n);
                    self.numbers.len() - 1
                }
            }
        });
        self.raw.push((raw, id));
        id
    }

    fn get(&self, id: usize) -> &str {
        &self.numbers[id]
    }
}

fn classify<'a>(
    p: &'a Party,
    is_to: bool,
    location: &Location,
    numbers: &mut Numbers<'a>,
) -> Side<'a> {
    if let Some(ext) = p
        .extension
        .as_deref()
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        return Side::Employee(ext);
    }
    let Some(number) = p.number.as_deref().and_then(|n| numbers.normalize(n)) else {
        return Side::Unknown;
    };
    if is_to {
        let on_line = p
            .line_number
            .as_deref()
            .and_then(|l| numbers.normalize(l))
            .is_some_and(|l| l == number);
        if matches!(location, Location::Ivr | Location::Queue) || on_line {
            return Side::Pbx;
        }
    }
    Side::Client(number)
}

/// The employee and client of a pair of sides, when it is a conversation with the client.
fn client_pair<'a>(a: Side<'a>, b: Side<'a>) -> Option<(&'a str, usize)> {
    match (a, b) {
        (Side::Employee(e), Side::Client(c)) | (Side::Client(c), Side::Employee(e)) => Some((e, c)),
        _ => None,
    }
}

/// A connected interval on one leg, before deciding whether it is a conversation.
#[derive(Debug, Clone)]
struct Interval<'a> {
    call_id: &'a str,
    employee: &'a str,
    /// The client's id in the assembly's [`Numbers`].
    client: usize,
    /// The employee was the caller side of the leg when it connected with the client (A2c).
    dialled: bool,
    start: i64,
    start_seq: u64,
    end: i64,
    /// Set when the leg ended while the client was on hold (a transfer away, A2).
    hold_at_end: Option<i64>,
}

fn assemble(ev: &EntryEvents) -> Assembly {
    let summary = ev.summary.as_ref();
    let mut numbers = Numbers::default();
    // Employees of each leg, with the leg's first time and whether a client was on it (C1).
    let mut leg_employees: Vec<(i64, bool, BTreeSet<&str>)> = Vec::new();
    let mut talked = false;
    let mut intervals: Vec<Interval<'_>> = Vec::new();
    // (first time offered, call_id, extension) of employees offered the call, for A6.
    let mut offers: Vec<(i64, &str, &str)> = Vec::new();
    let mut group: Option<&str> = None;
    let mut via_queue = false;
    let mut only_ivr = true;
    // The earliest event with a client side: (time, call_id, seq, client on the `from` side,
    // number id), ordered as if the number were its text.
    let mut first_client: Option<(i64, &str, u64, bool, usize)> = None;
    let mut callback = false;
    let mut started_at = i64::MAX;
    let mut ended_at = i64::MIN;
    let mut last_disconnect: Option<(i64, u64, u32)> = None;
    let mut line_number: Option<&str> = None;
    let mut tracking: Option<&CallTracking> = None;

    for (call_id, events) in &ev.legs {
        let call_id = call_id.as_str();
        // (employee, client, start, start_seq, dialled) of the open connected interval.
        let mut connected: Option<(&str, usize, i64, u64, bool)> = None;
        let mut on_hold: Option<i64> = None;
        let leg_start = events.first().map_or(i64::MAX, |e| e.timestamp);
        let mut leg_has_client = false;
        let mut leg_people: BTreeSet<&str> = BTreeSet::new();
        for e in events {
            started_at = started_at.min(e.timestamp);
            ended_at = ended_at.max(e.timestamp);
            if e.location != Location::Ivr {
                only_ivr = false;
            }
            if e.location == Location::Queue {
                via_queue = true;
            }
            if let Some(g) =
                e.to.acd_group
                    .as_deref()
                    .map(str::trim)
                    .filter(|g| !g.is_empty())
            {
                if group.is_none_or(|old| g < old) {
                    group = Some(g);
                }
            }
            if e.callback_initiator.is_some() {
                callback = true;
            }
            if line_number.is_none() {
                // The line the client called, or on a leg an employee dialled out, the line
                // the employee called from (`from.line_number`).
                line_number = [&e.to, &e.from]
                    .into_iter()
                    .find_map(|p| p.line_number.as_deref().filter(|l| !l.trim().is_empty()));
            }
            if let Some(t) = &e.tracking {
                if tracking.is_none_or(|old| t < old) {
                    tracking = Some(t);
                }
            }
            let from = classify(&e.from, false, &e.location, &mut numbers);
            let to = classify(&e.to, true, &e.location, &mut numbers);
            for (side, on_from) in [(from, true), (to, false)] {
                match side {
                    Side::Employee(ext) => {
                        leg_people.insert(ext);
                    }
                    Side::Client(number) => {
                        leg_has_client = true;
                        let earlier = first_client.is_none_or(|f| {
                            (e.timestamp, call_id, e.seq, on_from, numbers.get(number))
                                < (f.0, f.1, f.2, f.3, numbers.get(f.4))
                        });
                        if earlier {
                            first_client = Some((e.timestamp, call_id, e.seq, on_from, number));
                        }
                    }
                    _ => {}
                }
            }
            let pair = client_pair(from, to);
            let party = |s: Side<'_>| matches!(s, Side::Employee(_) | Side::Client(_));
            if e.call_state == CallState::Connected && party(from) && party(to) {
                talked = true; // A7
            }
            // A2c: the employee is the caller side of a leg to the client.
            let dialled = matches!((from, to), (Side::Employee(_), Side::Client(_)));
            // An employee is offered the call when a leg between them and the client exists.
            if let Some((employee, _)) = pair {
                offers.push((e.timestamp, call_id, employee));
            } else if let (Side::Employee(employee), Side::Pbx | Side::Unknown) = (to, from) {
                // Offered from a queue or a menu whose caller side is not shown on this leg.
                if e.location == Location::Abonent && e.from.taken_from_call_id.is_some() {
                    offers.push((e.timestamp, call_id, employee));
                }
            }
            match e.call_state {
                CallState::Connected => {
                    let same = matches!((connected, pair), (Some((ce, cc, ..)), Some((pe, pc))) if ce == pe && cc == pc);
                    if same {
                        on_hold = None; // resumed after a hold: the hold belongs to it
                    } else {
                        if let Some((employee, client, start, start_seq, was_dialled)) =
                            connected.take()
                        {
                            intervals.push(Interval {
                                call_id,
                                employee,
                                client,
                                dialled: was_dialled,
                                start,
                                start_seq,
                                end: e.timestamp,
                                hold_at_end: None,
                            });
                        }
                        on_hold = None;
                        connected = pair.map(|(employee, client)| {
                            (employee, client, e.timestamp, e.seq, dialled)
                        });
                    }
                }
                CallState::OnHold => {
                    if connected.is_some() && on_hold.is_none() {
                        on_hold = Some(e.timestamp);
                    }
                }
                CallState::Appeared | CallState::Disconnected => {
                    if let Some((employee, client, start, start_seq, dialled)) = connected.take() {
                        intervals.push(Interval {
                            call_id,
                            employee,
                            client,
                            dialled,
                            start,
                            start_seq,
                            end: e.timestamp,
                            hold_at_end: on_hold,
                        });
                    }
                    on_hold = None;
                    if e.call_state == CallState::Disconnected {
                        if let Some(reason) = e.disconnect_reason {
                            let key = (e.timestamp, e.seq, reason);
                            if last_disconnect.is_none_or(|d| key > d) {
                                last_disconnect = Some(key);
                            }
                        }
                    }
                }
            }
        }
        leg_employees.push((leg_start, leg_has_client, leg_people));
        // A leg whose Disconnected never came: its conversation lasts to the entry's end.
        if let Some((employee, client, start, start_seq, dialled)) = connected {
            let end = summary
                .map(|s| s.end_time)
                .filter(|&t| t >= start)
                .unwrap_or(i64::MIN);
            intervals.push(Interval {
                call_id,
                employee,
                client,
                dialled,
                start,
                start_seq,
                end,
                hold_at_end: on_hold,
            });
        }
    }
    if let Some(s) = summary {
        for t in [s.create_time, s.end_time] {
            if t > 0 {
                started_at = started_at.min(t);
                ended_at = ended_at.max(t);
            }
        }
        if let Some(l) = s.line_number.as_deref().filter(|l| !l.is_empty()) {
            line_number = Some(l);
        }
    }
    if started_at == i64::MAX {
        started_at = ev.last_activity;
        ended_at = ev.last_activity;
    }
    for iv in &mut intervals {
        if iv.end == i64::MIN {
            iv.end = ended_at.max(iv.start);
        }
    }

    // A2: a conversation that ended on hold ends when the hold began if the client went on to
    // another leg (a transfer away); otherwise the client hung up while held, and the hold counts.
    // (Only `end` changes here, so the starts read are those before the loop.)
    for i in 0..intervals.len() {
        if let Some(hold) = intervals[i].hold_at_end {
            let leg = intervals[i].call_id;
            if intervals
                .iter()
                .any(|other| other.call_id != leg && other.start >= hold)
            {
                intervals[i].end = hold;
            }
        }
    }
    intervals
        .sort_by(|a, b| (a.start, a.start_seq, a.call_id).cmp(&(b.start, b.start_seq, b.call_id)));

    // A5: the direction; the client.
    let client_phone = match first_client {
        Some(f) => Some(numbers.get(f.4).to_string()),
        None => summary.and_then(|s| match s.call_direction {
            SummaryDirection::Inbound => s.from.number.as_deref().and_then(phone::normalize),
            SummaryDirection::Outbound => s.to.number.as_deref().and_then(phone::normalize),
            _ => None,
        }),
    };
    let direction = if client_phone.is_none() {
        Direction::Internal
    } else {
        match summary.map(|s| s.call_direction) {
            Some(SummaryDirection::Inbound) => Direction::Inbound,
            Some(SummaryDirection::Outbound) => Direction::Outbound,
            _ if callback => Direction::Outbound,
            _ => match first_client {
                Some((_, _, _, true, _)) => Direction::Inbound,
                Some(_) => Direction::Outbound,
                None => Direction::Inbound,
            },
        }
    };

    let mut conversations: Vec<Conversation> = Vec::new();
    if direction != Direction::Internal {
        // (client id, latest leg) of each conversation.
        let mut threads: Vec<(usize, &str)> = Vec::new();
        for iv in intervals {
            if let (Some(last), Some(thread)) = (conversations.last_mut(), threads.last_mut()) {
                // A2a: the same employee with the same client goes on with the conversation while
                // the client stayed inside the PBX (a hold, a party swap on the leg, a transfer
                // that came back). A new leg the employee dialled to the client is a callback
                // after the client's leg ended: a new conversation.
                let callback = iv.dialled && iv.call_id != thread.1;
                if last.employee_extension == iv.employee && thread.0 == iv.client && !callback {
                    last.duration_s += (iv.end - iv.start).max(0);
                    last.ended_at = last.ended_at.max(iv.end);
                    thread.1 = iv.call_id;
                    continue;
                }
            }
            // A2c: received by transfer when the client's previous conversation was with another
            // employee and this employee did not dial the client.
            let handed_over = threads
                .iter()
                .rposition(|t| t.0 == iv.client)
                .is_some_and(|j| conversations[j].employee_extension != iv.employee);
            let received_by_transfer = handed_over && !iv.dialled;
            let index = conversations.len();
            conversations.push(Conversation {
                index,
                employee_extension: iv.employee.to_string(),
                call_id: iv.call_id.to_string(),
                started_at: iv.start,
                ended_at: iv.end,
                duration_s: (iv.end - iv.start).max(0),
                client_phone: numbers.get(iv.client).to_string(),
                // P7 and A2c: each conversation's own direction.
                direction: if iv.dialled {
                    Direction::Outbound
                } else if received_by_transfer {
                    Direction::Inbound
                } else {
                    direction
                },
                received_by_transfer,
                dialled: iv.dialled,
                recording_id: None,
            });
            threads.push((iv.client, iv.call_id));
        }
        if conversations.is_empty() {
            if let Some(c) = conversation_from_summary(summary, direction, client_phone.as_deref())
            {
                conversations.push(c);
            }
        }
        attach_recordings(&mut conversations, &recording_spans(ev));
    }

    let missed = if direction == Direction::Internal || !conversations.is_empty() {
        None
    } else {
        // A6: every offer counts, one per leg and employee at the leg's first offer, so an
        // employee a cycling group rang twice is listed twice.
        offers.sort();
        let mut seen = BTreeSet::new();
        let mut ordered: Vec<(i64, bool, ExtensionOrder<'_>)> = Vec::new();
        let summary_to = summary.and_then(|s| s.to.extension.as_deref().map(str::trim));
        for (t, call_id, ext) in offers {
            if seen.insert((call_id, ext)) {
                // Offers in the same second (a ring-all group) tie: the tie goes to the summary's
                // `to`, else to the lowest extension; never to the order of the legs' ids.
                ordered.push((t, summary_to != Some(ext), ExtensionOrder::of(ext)));
            }
        }
        ordered.sort();
        let latest = ordered.last().map(|o| o.0);
        let mut last_offered = ordered
            .iter()
            .find(|o| Some(o.0) == latest)
            .map(|o| o.2.text.to_string());
        let mut offered: Vec<String> = ordered.iter().map(|o| o.2.text.to_string()).collect();
        if offered.is_empty() {
            if let Some(ext) = summary.and_then(|s| summary_employee(s, direction)) {
                if group != Some(ext.as_str()) {
                    last_offered = Some(ext.clone());
                    offered.push(ext);
                }
            }
        }
        let kind = if group.is_some() || via_queue {
            MissedKind::Group
        } else if offered.is_empty() && (only_ivr || ev.legs.is_empty()) {
            MissedKind::Ivr
        } else {
            MissedKind::Personal
        };
        Some(Missed {
            kind,
            offered,
            last_offered,
            group: group.map(str::to_string),
        })
    };

    // With no client seen on any leg (only the summary names one), every leg counts.
    // A7: with no leg known, the summary's answer time says whether somebody talked.
    let talked = talked
        || (ev.legs.is_empty()
            && summary.is_some_and(|s| s.talk_time > 0 && s.entry_result != Some(0)));
    let participants = card_participants(
        &leg_employees,
        first_client
            .map(|f| f.0)
            .or((direction != Direction::Internal && client_phone.is_some()).then_some(i64::MIN)),
    );
    Assembly {
        entry_id: ev.entry_id.clone(),
        direction,
        client_phone: if direction == Direction::Internal {
            None
        } else {
            client_phone
        },
        line_number: line_number.map(str::to_string),
        started_at,
        ended_at,
        conversations,
        missed,
        participants,
        talked,
        disconnect_reason: summary
            .and_then(|s| s.disconnect_reason)
            .or(last_disconnect.map(|d| d.2)),
        entry_result: summary.and_then(|s| s.entry_result),
        tracking: tracking.cloned(),
        keypresses: ev.keypresses.iter().cloned().collect(),
        has_summary: summary.is_some(),
        recovered: summary.is_some_and(|s| s.recovered),
    }
}

/// An extension's place among tied offers (A6): numbers by value, before any non-numeric
/// extension; the text itself last, so the order is total.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct ExtensionOrder<'a> {
    not_numeric: bool,
    value: u128,
    text: &'a str,
}

impl<'a> ExtensionOrder<'a> {
    fn of(text: &'a str) -> Self {
        match text.parse::<u128>() {
            Ok(value) if text.bytes().all(|b| b.is_ascii_digit()) => ExtensionOrder {
                not_numeric: false,
                value,
                text,
            },
            _ => ExtensionOrder {
                not_numeric: true,
                value: 0,
                text,
            },
        }
    }
}

/// C1: the employees of the legs a client was on, and of the legs that began once a client had
/// taken part (a consult rings its target with the client's card); not those of the entry's
/// internal part before that.
fn card_participants(
    legs: &[(i64, bool, BTreeSet<&str>)],
    client_since: Option<i64>,
) -> BTreeSet<String> {
    let Some(since) = client_since else {
        return BTreeSet::new();
    };
    legs.iter()
        .filter(|(start, has_client, _)| *has_client || *start >= since)
        .flat_map(|(_, _, people)| people.iter().map(|p| p.to_string()))
        .collect()
}

fn summary_employee(s: &SummaryEvent, direction: Direction) -> Option<String> {
    let party = if direction == Direction::Outbound {
        &s.from
    } else {
        &s.to
    };
    party.extension.clone().filter(|e| !e.trim().is_empty())
}

/// When the leg events are lost but the summary says somebody talked (A4: a call is never lost).
fn conversation_from_summary(
    summary: Option<&SummaryEvent>,
    direction: Direction,
    client_phone: Option<&str>,
) -> Option<Conversation> {
    let s = summary?;
    let client_phone = client_phone?.to_string();
    if s.talk_time <= 0 || s.entry_result == Some(0) {
        return None;
    }
    let employee = summary_employee(s, direction)?;
    Some(Conversation {
        index: 0,
        employee_extension: employee,
        call_id: String::new(),
        started_at: s.talk_time,
        ended_at: s.end_time.max(s.talk_time),
        duration_s: (s.end_time - s.talk_time).max(0),
        client_phone,
        direction,
        received_by_transfer: false,
        dialled: direction == Direction::Outbound,
        recording_id: None,
    })
}

/// A recording that may be attached: (started, recording_id, call_id, extension).
type RecordingSpan<'a> = (i64, &'a str, Option<&'a str>, Option<&'a str>);

fn recording_spans(ev: &EntryEvents) -> Vec<RecordingSpan<'_>> {
    let mut spans: Vec<RecordingSpan<'_>> = ev
        .recordings
        .iter()
        // A recording the PBX reported as not saved (too short, account limits) has no file.
        .filter(|(_, f)| f.stored || f.completed_ok || !f.completed_failed)
        .map(|(id, f)| match &f.first {
            Some((t, _, call, ext)) => (*t, id.as_str(), call.as_deref(), ext.as_deref()),
            // Known only from record/added or tagged: no leg, no extension.
            None => (i64::MAX, id.as_str(), None, None),
        })
        .collect();
    spans.sort();
    spans
}

/// C3: each recording goes to the conversation it was made in: same employee, the recording's
/// start within the conversation, preferring the same leg.
fn attach_recordings(conversations: &mut [Conversation], recordings: &[RecordingSpan<'_>]) {
    for (t, id, call_id, ext) in recordings {
        // A recording that names neither leg nor employee can only be placed without guessing
        // when the entry had a single conversation.
        if call_id.is_none() && ext.is_none() && conversations.len() != 1 {
            continue;
        }
        let score = |c: &Conversation| {
            let employee = ext.is_none_or(|e| e == c.employee_extension);
            let leg = *call_id == Some(c.call_id.as_str());
            let within = *t >= c.started_at - 1 && *t <= c.ended_at;
            (
                employee && within && leg,
                employee && within,
                employee && leg,
                employee,
            )
        };
        let best = conversations
            .iter()
            .enumerate()
            .filter(|(_, c)| c.recording_id.is_none())
            .map(|(i, c)| (score(c), std::cmp::Reverse(i)))
            .filter(|(s, _)| s.0 || s.1 || s.2 || s.3)
            .max();
        if let Some((_, std::cmp::Reverse(i))) = best {
            conversations[i].recording_id = Some(id.to_string());
        }
    }
}
