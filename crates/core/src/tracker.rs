//! The tracker: a stream of events of many entries in, completed entries out (A4).
//!
//! An entry *closes* when its summary arrives, or when all its legs are disconnected and nothing
//! has arrived for the grace period. A closed entry is *released* (planned) only after the settle
//! window, so stragglers delivered out of order (a late leg event, a recording completed after
//! the summary) still count. Memory holds only open and settling entries, plus the ids of
//! released ones, so a late duplicate is recognised and never planned twice.
//!
//! A live service may release sooner an entry that waits for nothing (`settle_complete_s`): its
//! summary arrived, every leg hung up and every recording that started finished. Such an entry
//! is released after that much quiet instead of the whole settle window, since Mango sends
//! nothing more for it but the recording's storage and tags, which plans do not need. An event
//! that arrives meanwhile restarts the quiet time; one that leaves something pending (a leg
//! still up, a recording started) sends the entry back to the whole window.
//!
//! An entry that neither gets its summary nor has every leg hung up (a lost summary and a lost
//! `Disconnected`) would stay open for ever and hold the service's recovery mark back. After
//! `abandon_s` of silence it is *abandoned*: released at once with what is known, completed by
//! [`CompletedBy::Abandoned`], and its plan carries [`Rule::A4a`].
//!
//! The tracker has no clock of its own: `simulate` drives it with the events' timestamps, `serve`
//! with the wall clock.

use crate::assembler::{EntryEvents, Pushed};
use crate::event::PbxEvent;
use crate::plan::{CompletedBy, EntryPlan, Rule};
use crate::policy;
use crate::settings::ValidSettings;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackerConfig {
    /// A4: seconds of silence after the last leg disconnected before an entry without a summary
    /// is complete.
    pub grace_s: i64,
    /// Seconds a closed entry waits for stragglers before it is released.
    pub settle_s: i64,
    /// Seconds a released entry's id is remembered, so a late re-delivery is recognised and not
    /// planned again. Bounds memory on an endless stream.
    pub remember_s: i64,
    /// A4a: seconds of silence after which an entry still open (no summary, a leg never hung
    /// up) is given up and planned with what is known. 24 hours by default.
    pub abandon_s: i64,
    /// Quiet time after which an entry closed by its summary that waits for nothing (every leg
    /// hung up, every recording finished) is released without waiting out `settle_s`. `None`:
    /// every closed entry waits the whole settle window (`simulate`, whose input is a file).
    pub settle_complete_s: Option<i64>,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        TrackerConfig {
            grace_s: 120,
            settle_s: 120,
            remember_s: 6 * 3600,
            abandon_s: 24 * 3600,
            settle_complete_s: None,
        }
    }
}

/// What became of one pushed event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    New,
    Duplicate,
    /// The entry was already released; the event changes nothing that was planned.
    Late,
}

/// An entry ready to be planned.
#[derive(Debug, Clone)]
pub struct Completed {
    pub events: EntryEvents,
    pub completed_by: CompletedBy,
    /// The tracker clock when the entry closed.
    pub closed_at: i64,
}

impl Completed {
    /// The entry's plan; an abandoned entry's says so (A4a) among the entry's reasons.
    pub fn plan(&self, settings: &ValidSettings) -> EntryPlan {
        let mut plan = policy::plan(settings, &self.events.assemble());
        if self.completed_by == CompletedBy::Abandoned {
            plan.reasons.push(Rule::A4a);
        }
        plan
    }
}

/// An entry the end of the input left incomplete (`Tracker::finish`): not planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unfinished {
    pub entry_id: String,
    /// False for an entry of recording or keypress events only: its call legs never arrived,
    /// so there is no call to plan (rather than a call still going on).
    pub has_legs: bool,
}

#[derive(Debug)]
struct Open {
    events: EntryEvents,
    closed: Option<(i64, CompletedBy)>,
    /// In the `complete` queue: closed by its summary and waiting for nothing when queued.
    quick: bool,
}

impl Open {
    /// When an entry waiting for nothing has been quiet for `quiet`: that long after its last
    /// event or `since`, whichever came later.
    fn quiet_until(&self, quiet: i64, since: i64) -> i64 {
        self.events.last_activity.max(since).saturating_add(quiet)
    }
}

#[derive(Debug, Default)]
pub struct Tracker {
    config: TrackerConfig,
    clock: i64,
    open: HashMap<String, Open>,
    /// Closed entries (closed at, id) in order of closing, waiting out the settle window.
    settling: VecDeque<(i64, String)>,
    /// (deadline, entry) candidates for the grace period; checked lazily when popped.
    grace: BinaryHeap<Reverse<(i64, String)>>,
    /// (deadline, entry) of entries closed by their summary that waited for nothing when
    /// queued (`settle_complete_s`); checked again when popped.
    complete: BinaryHeap<Reverse<(i64, String)>>,
    released: HashSet<String>,
    /// Released ids in order of release, to forget them after `remember_s`.
    released_order: VecDeque<(i64, String)>,
    /// (deadline, entry) candidates for abandonment, one per open entry; a popped one still
    /// active is queued again at its new deadline.
    abandon: BinaryHeap<Reverse<(i64, String)>>,
    late: u64,
    abandoned: u64,
}

impl Tracker {
    pub fn new(config: TrackerConfig) -> Self {
        Tracker {
            config,
            clock: i64::MIN,
            ..Default::default()
        }
    }

    pub fn clock(&self) -> i64 {
        self.clock
    }

    /// Entries still open or settling.
    pub fn in_flight(&self) -> usize {
        self.open.len()
    }

    /// The earliest time [`Tracker::advance`] can change anything (close a quiet entry, release
    /// a settled one, abandon a silent one, forget a remembered id); `None` when nothing waits.
    /// Until then, and until the next push, advancing is a no-op: a caller with many trackers
    /// advances only those that are due.
    pub fn next_deadline(&self) -> Option<i64> {
        let grace = self.grace.peek().map(|Reverse((at, _))| *at);
        let abandon = self.abandon.peek().map(|Reverse((at, _))| *at);
        let settle = self
            .settling
            .front()
            .map(|(closed_at, _)| closed_at.saturating_add(self.config.settle_s));
        let forget = self
            .released_order
            .front()
            .map(|(at, _)| at.saturating_add(self.config.remember_s));
        let complete = self.complete.peek().map(|Reverse((at, _))| *at);
        [grace, abandon, settle, forget, complete]
            .into_iter()
            .flatten()
            .min()
    }

    /// Ids of released entries still remembered.
    pub fn remembered(&self) -> usize {
        self.released.len()
    }

    /// Events that arrived for entries already released.
    pub fn late_events(&self) -> u64 {
        self.late
    }

    /// Entries given up after `abandon_s` of silence (A4a).
    pub fn abandoned(&self) -> u64 {
        self.abandoned
    }

    /// Folds one event in. Does not move the clock: call [`Tracker::advance`] after it (folding
    /// first means the event counts as activity before any grace period is judged).
    pub fn push(&mut self, event: PbxEvent) -> Accepted {
        self.push_at(event, i64::MIN)
    }

    /// Like [`Tracker::push`], counting the event as activity at `arrived` too (the wall clock
    /// of a live service), so the grace period runs from when it arrived, not only from the
    /// PBX's own timestamp.
    pub fn push_at(&mut self, event: PbxEvent, arrived: i64) -> Accepted {
        let entry_id = event.entry_id();
        if self.released.contains(entry_id) {
            self.late += 1;
            return Accepted::Late;
        }
        let is_summary = matches!(event, PbxEvent::Summary(_));
        // Live (an arrival time is given): settle on our own clock, whatever the PBX's says.
        let closed_at = if arrived == i64::MIN {
            self.clock.max(event.timestamp())
        } else {
            self.clock.max(arrived)
        };
        let created = !self.open.contains_key(entry_id);
        let open = match self.open.get_mut(entry_id) {
            Some(open) => open,
            None => {
                let id = entry_id.to_string();
                self.open.entry(id.clone()).or_insert(Open {
                    events: EntryEvents::new(id),
                    closed: None,
                    quick: false,
                })
            }
        };
        let pushed = open.events.push(event);
        open.events.last_activity = open.events.last_activity.max(arrived);
        if created {
            let deadline = open
                .events
                .last_activity
                .saturating_add(self.config.abandon_s);
            self.abandon
                .push(Reverse((deadline, open.events.entry_id.clone())));
        }
        if open.closed.is_none() {
            if is_summary {
                open.closed = Some((closed_at, CompletedBy::Summary));
                self.settling
                    .push_back((closed_at, open.events.entry_id.clone()));
            } else if open.events.all_legs_disconnected() {
                let deadline = open
                    .events
                    .last_activity
                    .saturating_add(self.config.grace_s);
                self.grace
                    .push(Reverse((deadline, open.events.entry_id.clone())));
            }
        }
        if let Some(quiet) = self.config.settle_complete_s {
            let by_summary = matches!(open.closed, Some((_, CompletedBy::Summary)));
            if by_summary && !open.quick && open.events.awaits_nothing() {
                open.quick = true;
                self.complete.push(Reverse((
                    open.quiet_until(quiet, closed_at),
                    open.events.entry_id.clone(),
                )));
            }
        }
        match pushed {
            Pushed::New => Accepted::New,
            Pushed::Duplicate => Accepted::Duplicate,
        }
    }

    /// Forgets that `entry_id` was released, so its next events start it again: reconciliation
    /// re-opens an entry whose plan (made without its summary, with nothing to write) it
    /// dropped, and brings the summary from the PBX's statistics. True when it was remembered.
    /// (Its old place in the remembering queue may forget it early later on; the store's plan
    /// row still keeps it from being planned twice.)
    pub fn reopen(&mut self, entry_id: &str) -> bool {
        self.released.remove(entry_id)
    }

    /// Moves the clock forward (never back) and returns the entries released by it, in order
    /// of closing.
    pub fn advance(&mut self, now: i64) -> Vec<Completed> {
        self.clock = self.clock.max(now);
        self.close_quiet_entries();
        while let Some((at, _)) = self.released_order.front() {
            if at.saturating_add(self.config.remember_s) > self.clock {
                break;
            }
            let (_, id) = self.released_order.pop_front().expect("front exists");
            self.released.remove(&id);
        }
        let mut out = self.abandon_silent_entries();
        out.extend(self.release_complete_entries());
        // An entry is in `settling` while it is open and closed, at the time queued; one
        // released early by `release_complete_entries` is gone from `open` and skipped here.
        while let Some(&(closed_at, _)) = self.settling.front() {
            if closed_at.saturating_add(self.config.settle_s) > self.clock {
                break;
            }
            let (_, id) = self.settling.pop_front().expect("front exists");
            let same_closing = self
                .open
                .get(&id)
                .and_then(|o| o.closed)
                .is_some_and(|(at, _)| at == closed_at);
            if same_closing {
                out.extend(self.release(id));
            }
        }
        out
    }

    /// The end of the input: every closed entry is released, and every entry whose legs are all
    /// disconnected is complete (A4). Returns them and the entries still in progress.
    pub fn finish(mut self) -> (Vec<Completed>, Vec<Unfinished>) {
        let mut out: Vec<Completed> = Vec::new();
        while let Some((_, id)) = self.settling.pop_front() {
            out.extend(self.release(id));
        }
        let mut rest: Vec<(i64, String)> = self
            .open
            .values()
            .map(|o| (o.events.last_activity, o.events.entry_id.clone()))
            .collect();
        rest.sort();
        let mut unfinished = Vec::new();
        for (_, id) in rest {
            let open = &self.open[&id];
            if open.events.all_legs_disconnected() {
                let open = self.open.remove(&id).expect("listed");
                out.push(Completed {
                    events: open.events,
                    completed_by: CompletedBy::EndOfInput,
                    closed_at: self.clock,
                });
            } else {
                let has_legs = open.events.has_call_facts();
                unfinished.push(Unfinished {
                    entry_id: id,
                    has_legs,
                });
            }
        }
        (out, unfinished)
    }

    fn close_quiet_entries(&mut self) {
        while let Some(id) = pop_due(&mut self.grace, self.clock) {
            let Some(open) = self.open.get_mut(&id) else {
                continue;
            };
            let quiet = open
                .events
                .last_activity
                .saturating_add(self.config.grace_s)
                <= self.clock;
            if open.closed.is_none() && quiet && open.events.all_legs_disconnected() {
                open.closed = Some((self.clock, CompletedBy::Grace));
                self.settling.push_back((self.clock, id));
            }
        }
    }

    /// Releases the entries still open (not closed) after `abandon_s` of silence (A4a).
    fn abandon_silent_entries(&mut self) -> Vec<Completed> {
        let mut out = Vec::new();
        while let Some(id) = pop_due(&mut self.abandon, self.clock) {
            let Some(open) = self.open.get(&id) else {
                continue; // released already
            };
            if open.closed.is_some() {
                continue; // settling: released by the settle window
            }
            let deadline = open
                .events
                .last_activity
                .saturating_add(self.config.abandon_s);
            if deadline > self.clock {
                self.abandon.push(Reverse((deadline, id)));
                continue;
            }
            let open = self.open.remove(&id).expect("looked up above");
            self.released.insert(id.clone());
            self.released_order.push_back((self.clock, id));
            self.abandoned += 1;
            out.push(Completed {
                events: open.events,
                completed_by: CompletedBy::Abandoned,
                closed_at: self.clock,
            });
        }
        out
    }

    /// Releases the entries closed by their summary that wait for nothing and were quiet for
    /// `settle_complete_s`, in order of their deadlines.
    fn release_complete_entries(&mut self) -> Vec<Completed> {
        let Some(quiet) = self.config.settle_complete_s else {
            return Vec::new();
        };
        let mut out = Vec::new();
        while let Some(id) = pop_due(&mut self.complete, self.clock) {
            let Some(open) = self.open.get_mut(&id) else {
                continue; // released already
            };
            if !open.events.awaits_nothing() {
                // Something started again: back to the whole settle window, and to this
                // queue when it is over.
                open.quick = false;
                continue;
            }
            let closed_at = open.closed.map_or(self.clock, |(at, _)| at);
            let deadline = open.quiet_until(quiet, closed_at);
            if deadline > self.clock {
                self.complete.push(Reverse((deadline, id))); // an event arrived meanwhile
                continue;
            }
            out.extend(self.release(id));
        }
        out
    }

    fn release(&mut self, id: String) -> Option<Completed> {
        let open = self.open.remove(&id)?;
        let (closed_at, completed_by) = open.closed?;
        self.released.insert(id.clone());
        self.released_order.push_back((self.clock, id));
        Some(Completed {
            events: open.events,
            completed_by,
            closed_at,
        })
    }
}

/// The entry of the soonest deadline in `queue` when it is due by `clock`.
fn pop_due(queue: &mut BinaryHeap<Reverse<(i64, String)>>, clock: i64) -> Option<String> {
    match queue.peek() {
        Some(Reverse((at, _))) if *at <= clock => queue.pop().map(|Reverse((_, id))| id),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::*;

    fn call(entry: &str, leg: &str, seq: u64, t: i64, state: CallState) -> PbxEvent {
        PbxEvent::Call(CallEvent {
            entry_id: entry.into(),
            call_id: leg.into(),
            timestamp: t,
            seq,
            call_state: state,
            location: Location::Abonent,
            from: Party {
                number: Some("79161234567".into()),
                ..Default::default()
            },
            to: Party {
                extension: Some("101".into()),
                ..Default::default()
            },
            disconnect_reason: None,
            transfer: None,
            command_id: None,
            callback_initiator: None,
            tracking: None,
        })
    }

    fn summary(entry: &str, end: i64) -> PbxEvent {
        PbxEvent::Summary(SummaryEvent {
            entry_id: entry.into(),
            call_direction: SummaryDirection::Inbound,
            from: Party::default(),
            to: Party::default(),
            line_number: None,
            create_time: end - 30,
            forward_time: 0,
            talk_time: end - 20,
            end_time: end,
            entry_result: Some(1),
            disconnect_reason: Some(1110),
            recovered: false,
        })
    }

    fn feed(t: &mut Tracker, e: PbxEvent) -> Vec<Completed> {
        let now = e.timestamp();
        t.push(e);
        t.advance(now)
    }

    #[test]
    fn the_next_deadline_says_when_advancing_can_change_anything() {
        let mut t = Tracker::new(TrackerConfig {
            grace_s: 5,
            settle_s: 10,
            remember_s: 100,
            abandon_s: 1000,
            settle_complete_s: None,
        });
        assert_eq!(t.next_deadline(), None);
        t.push_at(call("a", "l1", 1, 100, CallState::Appeared), 100);
        // Open, a leg up: only its abandonment waits.
        assert_eq!(t.next_deadline(), Some(1100));
        t.push_at(summary("a", 130), 130);
        // Closed by its summary at 130: released after the settle window, not before.
        assert_eq!(t.next_deadline(), Some(140));
        assert!(t.advance(139).is_empty());
        assert_eq!(t.advance(140).len(), 1);
        // Its id is remembered until 240; the abandonment check queued at its start comes
        // due once more at 1100 and finds nothing.
        assert_eq!(t.next_deadline(), Some(240));
        assert!(t.advance(240).is_empty());
        assert_eq!(t.next_deadline(), Some(1100));
        assert!(t.advance(1100).is_empty());
        assert_eq!(t.next_deadline(), None);
    }

    #[test]
    fn summary_closes_and_the_settle_window_takes_stragglers() {
        let mut t = Tracker::new(TrackerConfig {
            grace_s: 120,
            settle_s: 10,
            remember_s: 100,
            ..TrackerConfig::default()
        });
        assert!(feed(&mut t, call("a", "l1", 1, 100, CallState::Appeared)).is_empty());
        assert!(feed(&mut t, summary("a", 130)).is_empty(), "settling");
        // A straggler inside the settle window still counts.
        assert!(feed(&mut t, call("a", "l1", 2, 105, CallState::Connected)).is_empty());
        let done = feed(&mut t, call("b", "l9", 1, 141, CallState::Appeared));
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].completed_by, CompletedBy::Summary);
        assert_eq!(done[0].events.call_event_count(), 2);
        // After release a re-delivery is late, not a new entry.
        assert_eq!(
            t.push(call("a", "l1", 2, 105, CallState::Connected)),
            Accepted::Late
        );
        assert_eq!(t.late_events(), 1);
    }

    #[test]
    fn a_reopened_entry_is_planned_again_from_what_comes_next() {
        let mut t = Tracker::new(TrackerConfig {
            grace_s: 5,
            settle_s: 1,
            remember_s: 1000,
            ..TrackerConfig::default()
        });
        feed(&mut t, call("a", "l1", 1, 100, CallState::Appeared));
        feed(&mut t, call("a", "l1", 2, 110, CallState::Disconnected));
        // Closed by the grace period, then released after the settle window.
        assert!(t.advance(200).is_empty());
        let done = t.advance(210);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].completed_by, CompletedBy::Grace);
        assert!(t.reopen("a"));
        assert!(!t.reopen("a"), "no longer remembered");
        assert!(!t.reopen("never-seen"));
        // The summary reconciliation brings starts the entry afresh.
        let mut recovered = summary("a", 190);
        if let PbxEvent::Summary(s) = &mut recovered {
            s.recovered = true;
        }
        assert_eq!(t.push(recovered), Accepted::New);
        let done = t.advance(300);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].completed_by, CompletedBy::Summary);
        assert_eq!(done[0].events.call_event_count(), 0);
    }

    #[test]
    fn lost_summary_completes_after_the_grace_period() {
        let mut t = Tracker::new(TrackerConfig {
            grace_s: 120,
            settle_s: 0,
            remember_s: 100,
            ..TrackerConfig::default()
        });
        feed(&mut t, call("a", "l1", 1, 100, CallState::Appeared));
        feed(&mut t, call("a", "l1", 2, 110, CallState::Disconnected));
        assert!(t.advance(229).is_empty(), "still within the grace period");
        let done = t.advance(230);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].completed_by, CompletedBy::Grace);
    }

    #[test]
    fn an_entry_with_a_leg_up_never_completes_by_grace() {
        let mut t = Tracker::new(TrackerConfig::default());
        feed(&mut t, call("a", "l1", 1, 100, CallState::Connected));
        // Until the abandonment horizon (A4a) gives it up.
        assert!(t.advance(100 + 24 * 3600 - 1).is_empty());
        let (done, unfinished) = t.finish();
        assert!(done.is_empty());
        assert_eq!(
            unfinished,
            vec![Unfinished {
                entry_id: "a".into(),
                has_legs: true
            }]
        );
    }

    #[test]
    fn an_entry_of_recording_and_keypress_events_only_is_unfinished_without_legs() {
        let mut t = Tracker::new(TrackerConfig::default());
        feed(
            &mut t,
            PbxEvent::Dtmf(DtmfEvent {
                entry_id: "k".into(),
                call_id: Some("l1".into()),
                timestamp: 100,
                seq: 1,
                digits: "2".into(),
                menu: Some("ivr.1".into()),
                initiator: None,
            }),
        );
        let (done, unfinished) = t.finish();
        assert!(done.is_empty());
        assert_eq!(
            unfinished,
            vec![Unfinished {
                entry_id: "k".into(),
                has_legs: false
            }]
        );
    }

    #[test]
    fn released_ids_are_forgotten_after_the_memory_window() {
        let mut t = Tracker::new(TrackerConfig {
            grace_s: 120,
            settle_s: 0,
            remember_s: 50,
            ..TrackerConfig::default()
        });
        feed(&mut t, call("a", "l1", 1, 100, CallState::Appeared));
        assert_eq!(feed(&mut t, summary("a", 120)).len(), 1);
        assert_eq!(t.remembered(), 1);
        t.advance(169);
        assert_eq!(t.remembered(), 1);
        t.advance(170);
        assert_eq!((t.remembered(), t.in_flight()), (0, 0));
    }

    #[test]
    fn an_entry_with_a_leg_never_hung_up_is_abandoned_at_the_horizon_not_before() {
        let mut t = Tracker::new(TrackerConfig {
            grace_s: 120,
            settle_s: 10,
            remember_s: 1_000,
            abandon_s: 500,
            settle_complete_s: None,
        });
        feed(&mut t, call("a", "l1", 1, 100, CallState::Appeared));
        feed(&mut t, call("a", "l1", 2, 110, CallState::Connected));
        // Activity pushes the horizon on: the last event (110) counts, not the first.
        assert!(t.advance(609).is_empty(), "within the horizon");
        assert_eq!((t.in_flight(), t.abandoned()), (1, 0));
        let done = t.advance(610);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].completed_by, CompletedBy::Abandoned);
        assert_eq!(done[0].closed_at, 610);
        assert_eq!(done[0].events.call_event_count(), 2);
        assert_eq!((t.in_flight(), t.abandoned()), (0, 1));
        // Given up is released: a straggler is late and plans nothing again.
        assert_eq!(
            t.push(call("a", "l1", 3, 620, CallState::Disconnected)),
            Accepted::Late
        );
        assert!(t.advance(10_000).is_empty());
    }

    #[test]
    fn settling_and_grace_entries_are_never_abandoned() {
        let mut t = Tracker::new(TrackerConfig {
            grace_s: 50,
            settle_s: 400,
            remember_s: 1_000,
            abandon_s: 100,
            settle_complete_s: None,
        });
        feed(&mut t, call("s", "l1", 1, 100, CallState::Appeared));
        feed(&mut t, summary("s", 110));
        let done = t.advance(515);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].completed_by, CompletedBy::Summary);
        assert_eq!(t.abandoned(), 0);
    }

    #[test]
    fn an_abandoned_entrys_plan_says_why() {
        let settings = crate::settings::ValidSettings::parse_toml("").expect("default settings");
        let mut t = Tracker::new(TrackerConfig {
            abandon_s: 10,
            ..TrackerConfig::default()
        });
        feed(&mut t, call("a", "l1", 1, 100, CallState::Connected));
        let done = t.advance(110);
        assert_eq!(done.len(), 1);
        let plan = done[0].plan(&settings);
        assert!(plan.reasons.contains(&Rule::A4a), "{:?}", plan.reasons);
    }

    fn recording(entry: &str, leg: &str, state: RecordingState, t: i64) -> PbxEvent {
        PbxEvent::Recording(RecordingEvent {
            entry_id: entry.into(),
            call_id: Some(leg.into()),
            recording_id: format!("rec-{leg}"),
            recording_state: state,
            seq: if state == RecordingState::Started {
                1
            } else {
                2
            },
            extension: Some("101".into()),
            timestamp: t,
            completion_code: (state == RecordingState::Completed).then_some(1000),
        })
    }

    fn quick_tracker() -> Tracker {
        Tracker::new(TrackerConfig {
            grace_s: 120,
            settle_s: 100,
            remember_s: 1000,
            abandon_s: 10_000,
            settle_complete_s: Some(2),
        })
    }

    #[test]
    fn an_entry_that_waits_for_nothing_is_released_after_the_quiet_time() {
        let mut t = quick_tracker();
        feed(&mut t, call("a", "l1", 1, 100, CallState::Appeared));
        feed(&mut t, call("a", "l1", 2, 101, CallState::Connected));
        feed(&mut t, recording("a", "l1", RecordingState::Started, 101));
        feed(&mut t, recording("a", "l1", RecordingState::Completed, 120));
        feed(&mut t, call("a", "l1", 3, 120, CallState::Disconnected));
        assert!(feed(&mut t, summary("a", 120)).is_empty());
        assert_eq!(
            t.next_deadline(),
            Some(122),
            "the quiet time, not the settle window"
        );
        assert!(t.advance(121).is_empty());
        let done = t.advance(122);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].completed_by, CompletedBy::Summary);
        assert_eq!(done[0].closed_at, 120);
        // Released once: the settle window's turn finds nothing, a re-delivery is late.
        assert!(t.advance(500).is_empty());
        assert_eq!(t.push(summary("a", 120)), Accepted::Late);
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn a_recording_in_progress_or_a_leg_still_up_waits_the_whole_settle_window() {
        let mut t = quick_tracker();
        // A recording that started and has not finished.
        feed(&mut t, call("a", "l1", 1, 100, CallState::Appeared));
        feed(&mut t, recording("a", "l1", RecordingState::Started, 101));
        feed(&mut t, call("a", "l1", 2, 120, CallState::Disconnected));
        feed(&mut t, summary("a", 120));
        // A leg still up when the summary came (its Disconnected reordered after it).
        feed(&mut t, call("b", "l2", 1, 120, CallState::Appeared));
        feed(&mut t, summary("b", 121));
        assert!(t.advance(200).is_empty());
        let done = t.advance(220);
        let ids: Vec<&str> = done.iter().map(|c| c.events.entry_id.as_str()).collect();
        assert_eq!(ids, ["a"], "a's settle window is over, b's is not");
        assert_eq!(t.advance(221).len(), 1);
    }

    #[test]
    fn what_arrives_in_the_quiet_time_counts_and_restarts_it() {
        let mut t = quick_tracker();
        feed(&mut t, call("a", "l1", 1, 100, CallState::Appeared));
        feed(&mut t, call("a", "l1", 2, 110, CallState::Disconnected));
        feed(&mut t, summary("a", 110));
        // A reordered leg shows up: the entry waits for it, ...
        assert!(feed(&mut t, call("a", "l2", 1, 111, CallState::Appeared)).is_empty());
        assert!(t.advance(112).is_empty());
        // ... and once it hung up, the quiet time runs from its last event.
        assert!(feed(&mut t, call("a", "l2", 2, 113, CallState::Disconnected)).is_empty());
        assert!(t.advance(114).is_empty());
        let done = t.advance(115);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].events.call_event_count(), 4);
    }

    #[test]
    fn without_the_quiet_time_a_complete_entry_waits_the_settle_window() {
        let mut t = Tracker::new(TrackerConfig {
            settle_s: 100,
            ..TrackerConfig::default()
        });
        feed(&mut t, call("a", "l1", 1, 100, CallState::Appeared));
        feed(&mut t, call("a", "l1", 2, 110, CallState::Disconnected));
        feed(&mut t, summary("a", 110));
        assert_eq!(t.next_deadline(), Some(210));
        assert!(t.advance(209).is_empty());
        assert_eq!(t.advance(210).len(), 1);
    }
}
