//! Realistic, deterministic office traffic for callbridge's core: the events Mango Office's cloud
//! PBX sends for a day of an office's calls, as typed [`PbxEvent`]s, with the ground truth of
//! every call.
//!
//! - [`Staff`]: the office (employees, some unmapped; ring-all and one-by-one groups; lines) and
//!   its [`Staff::settings_toml`].
//! - [`CallKind`]: direct, IVR + group, missed in a group or in the menu, consultative and blind
//!   transfer chains, outbound answered / busy / no answer, internal; recordings with
//!   `record/added` and `record/tagged`.
//! - [`Generator`]: an iterator of events in delivery order. Calls start as a Poisson process of
//!   [`Config::rate`] calls per second of event time, so they overlap as in a real office; the
//!   events of concurrent calls are interleaved by timestamp. Delivery faults are layered on top:
//!   duplicated deliveries, neighbours swapped within a short window, lost summaries.
//! - [`generate`]: the whole stream and the truths at once.
//!
//! The same [`Config`] (seed included) always gives the same stream.

mod calls;
mod rng;
mod staff;

pub use calls::{CallKind, CallTruth};
pub use rng::Rng;
pub use staff::{Employee, Group, GroupStrategy, Staff, StaffConfig};

use callbridge_core::PbxEvent;
use calls::{CallBuilder, CallOptions};
use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, VecDeque};

/// How often each kind of call occurs (relative weights).
#[derive(Debug, Clone, PartialEq)]
pub struct Mix(pub Vec<(CallKind, f64)>);

impl Default for Mix {
    /// A plausible small-office day: mostly inbound, a fifth outbound, some transfers and misses.
    fn default() -> Self {
        Mix(vec![
            (CallKind::DirectAnswered, 18.0),
            (CallKind::RingAllAnswered, 16.0),
            (CallKind::OneByOneAnswered, 8.0),
            (CallKind::MissedGroup, 8.0),
            (CallKind::MissedIvr, 5.0),
            (CallKind::ConsultativeTransfer, 5.0),
            (CallKind::BlindTransfer, 5.0),
            (CallKind::OutboundAnswered, 16.0),
            (CallKind::OutboundBusy, 3.0),
            (CallKind::OutboundNoAnswer, 5.0),
            (CallKind::Internal, 11.0),
        ])
    }
}

impl Mix {
    /// Every kind equally often (for tests that must see each kind).
    pub fn uniform() -> Self {
        Mix(CallKind::ALL.iter().map(|&k| (k, 1.0)).collect())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Number of calls (entries).
    pub calls: usize,
    pub seed: u64,
    /// Event time of the first call's start (Unix seconds).
    pub start: i64,
    /// Calls started per second of event time (mean of a Poisson process).
    pub rate: f64,
    /// Share of events delivered twice.
    pub duplicates: f64,
    /// Share of events swapped with a neighbour up to [`REORDER_WINDOW`] positions later.
    pub reorder: f64,
    /// Share of calls whose summary never arrives.
    pub lost_summaries: f64,
    /// Share of answered calls that are recorded.
    pub recorded: f64,
    pub staff: StaffConfig,
    pub mix: Mix,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            calls: 1000,
            seed: 1,
            start: 1_764_000_000,
            rate: 0.5,
            duplicates: 0.0,
            reorder: 0.0,
            lost_summaries: 0.0,
            recorded: 0.5,
            staff: StaffConfig::default(),
            mix: Mix::default(),
        }
    }
}

/// How far (in positions) a reordered event may move.
pub const REORDER_WINDOW: usize = 3;
/// Events held back to apply duplication and reordering.
const BUFFER: usize = 8;

/// A generated stream at once.
#[derive(Debug, Clone)]
pub struct Traffic {
    pub staff: Staff,
    /// Events in delivery order (faults included).
    pub events: Vec<PbxEvent>,
    /// One per call, in order of start.
    pub calls: Vec<CallTruth>,
}

/// Generates the whole stream in memory (see [`Generator`] to stream it instead).
pub fn generate(config: &Config) -> Traffic {
    let mut g = Generator::new(config.clone());
    let events: Vec<PbxEvent> = g.by_ref().collect();
    let (staff, calls) = g.into_parts();
    Traffic {
        staff,
        events,
        calls,
    }
}

/// An event waiting for its turn: ordered by (time, call, position in the call).
struct Pending {
    key: (i64, u64, u32),
    event: PbxEvent,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key.cmp(&other.key)
    }
}

/// Streams the events of [`Config::calls`] calls in delivery order. Memory holds only the calls
/// in progress (plus the truths, one small record per call).
pub struct Generator {
    config: Config,
    staff: Staff,
    /// Draws of the call scripts.
    rng: Rng,
    /// Draws of the delivery faults (separate, so faults do not change the calls).
    faults: Rng,
    weights: Vec<f64>,
    next_call: u64,
    /// Start time of the next call, in fractional seconds.
    next_start: f64,
    heap: BinaryHeap<Reverse<Pending>>,
    buffer: VecDeque<PbxEvent>,
    truths: Vec<CallTruth>,
}

impl Generator {
    pub fn new(config: Config) -> Self {
        let mut root = Rng::new(config.seed);
        let staff = Staff::generate(&config.staff, &mut root.fork());
        let rng = root.fork();
        let faults = root.fork();
        let weights = config.mix.0.iter().map(|(_, w)| w.max(0.0)).collect();
        Generator {
            next_start: config.start as f64,
            config,
            staff,
            rng,
            faults,
            weights,
            next_call: 0,
            heap: BinaryHeap::new(),
            buffer: VecDeque::with_capacity(BUFFER + 2),
            truths: Vec::new(),
        }
    }

    pub fn staff(&self) -> &Staff {
        &self.staff
    }

    /// The truths of the calls generated so far (all of them once the iterator is exhausted).
    pub fn truths(&self) -> &[CallTruth] {
        &self.truths
    }

    pub fn into_parts(self) -> (Staff, Vec<CallTruth>) {
        (self.staff, self.truths)
    }

    fn calls_left(&self) -> bool {
        (self.next_call as usize) < self.config.calls
    }

    fn start_call(&mut self) {
        let t0 = self.next_start.floor() as i64;
        let kind = if self.config.mix.0.is_empty() || self.weights.iter().all(|w| *w <= 0.0) {
            CallKind::DirectAnswered
        } else {
            self.config.mix.0[self.rng.weighted(&self.weights)].0
        };
        let mut call_rng = self.rng.fork();
        let opts = CallOptions {
            lost_summary: self.rng.chance(self.config.lost_summaries),
            recorded: self.rng.chance(self.config.recorded),
        };
        let builder =
            CallBuilder::new(&self.staff, &mut call_rng, self.config.seed, self.next_call);
        let (events, truth) = builder.build(kind, t0, opts);
        for (i, event) in events.into_iter().enumerate() {
            self.heap.push(Reverse(Pending {
                key: (event.timestamp(), self.next_call, i as u32),
                event,
            }));
        }
        self.truths.push(truth);
        self.next_call += 1;
        let rate = if self.config.rate > 0.0 {
            self.config.rate
        } else {
            1.0
        };
        self.next_start += self.rng.exp(1.0 / rate);
    }

    /// The next event in timestamp order, faults not yet applied.
    fn next_ordered(&mut self) -> Option<PbxEvent> {
        loop {
            let next_start = self.next_start.floor() as i64;
            match self.heap.peek() {
                // Every event of a call not yet started is at or after its start, and sorts
                // after earlier calls' events of the same second.
                Some(Reverse(p)) if !self.calls_left() || p.key.0 <= next_start => {
                    return self.heap.pop().map(|Reverse(p)| p.event);
                }
                _ if self.calls_left() => self.start_call(),
                _ => return None,
            }
        }
    }
}

impl Iterator for Generator {
    type Item = PbxEvent;

    fn next(&mut self) -> Option<PbxEvent> {
        while self.buffer.len() < BUFFER {
            match self.next_ordered() {
                Some(e) => self.buffer.push_back(e),
                None => break,
            }
        }
        if self.buffer.len() > 1 && self.faults.chance(self.config.reorder) {
            let k = 1 + self.faults.below(REORDER_WINDOW.min(self.buffer.len() - 1));
            self.buffer.swap(0, k);
        }
        let event = self.buffer.pop_front()?;
        if self.faults.chance(self.config.duplicates) {
            // Re-delivered a little later, as a retried webhook.
            let at = self.faults.below(self.buffer.len() + 1);
            self.buffer.insert(at, event.clone());
        }
        Some(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_other_seed_other_stream() {
        let config = Config {
            calls: 200,
            duplicates: 0.05,
            reorder: 0.05,
            lost_summaries: 0.05,
            ..Config::default()
        };
        let a = generate(&config);
        let b = generate(&config);
        assert_eq!(a.events, b.events);
        assert_eq!(a.calls, b.calls);
        let c = generate(&Config { seed: 2, ..config });
        assert_ne!(a.events, c.events);
    }

    #[test]
    fn without_faults_the_stream_is_time_ordered_and_calls_overlap() {
        let t = generate(&Config {
            calls: 500,
            rate: 0.5,
            ..Config::default()
        });
        assert!(t
            .events
            .windows(2)
            .all(|w| w[0].timestamp() <= w[1].timestamp()));
        assert_eq!(
            t.events.len(),
            t.calls.iter().map(|c| c.events).sum::<usize>()
        );
        // Calls overlap: some event of a later call comes before an event of an earlier one.
        let first_of: std::collections::HashMap<&str, usize> = t
            .calls
            .iter()
            .enumerate()
            .map(|(i, c)| (c.entry_id.as_str(), i))
            .collect();
        let interleaved = t
            .events
            .windows(2)
            .filter(|w| first_of[w[0].entry_id()] > first_of[w[1].entry_id()])
            .count();
        assert!(interleaved > 100, "{interleaved}");
    }

    #[test]
    fn settings_parse_and_map_the_staff() {
        let staff = Staff::generate(&StaffConfig::default(), &mut Rng::new(3));
        let settings =
            callbridge_core::ValidSettings::parse_toml(&staff.settings_toml()).expect("valid");
        let unmapped = staff
            .employees
            .iter()
            .filter(|e| e.crm_user_id.is_none())
            .count();
        assert!(unmapped >= 1 && unmapped < staff.employees.len());
        for e in &staff.employees {
            assert_eq!(
                settings.crm_user_of(&e.extension).map(|u| u.get()),
                e.crm_user_id
            );
        }
        assert_eq!(
            settings.fallback_user().map(|u| u.get()),
            Some(staff.fallback_crm_user_id)
        );
    }
}
