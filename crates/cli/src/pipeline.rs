//! The core's pipeline as the binary's offline commands run it: PBX events -> tracker ->
//! completed entries -> plans. `simulate` streams it in event time; the demo and the delivery
//! benchmark plan a whole generated day at once. The service runs its own, live, in the
//! processor (arrival times, a wall clock, the store).

use callbridge_core::event::PbxEvent;
use callbridge_core::plan::{CompletedBy, EntryPlan};
use callbridge_core::tracker::{Completed, Tracker, TrackerConfig, Unfinished};
use callbridge_core::ValidSettings;

/// One completed entry, planned.
pub struct Planned {
    pub plan: EntryPlan,
    pub completed_by: CompletedBy,
    /// Re-deliveries of the entry's events that were dropped (A1).
    pub duplicates: u64,
}

impl Planned {
    fn of(completed: Completed, settings: &ValidSettings) -> Planned {
        Planned {
            plan: completed.plan(settings),
            completed_by: completed.completed_by,
            duplicates: completed.events.duplicates,
        }
    }
}

/// Events in, plans out, under one tenant's settings.
pub struct Pipeline<'s> {
    settings: &'s ValidSettings,
    tracker: Tracker,
}

impl<'s> Pipeline<'s> {
    pub fn new(settings: &'s ValidSettings, config: TrackerConfig) -> Self {
        Pipeline {
            settings,
            tracker: Tracker::new(config),
        }
    }

    /// Folds one event in, then moves the clock to the event's own time, and returns the
    /// entries that released. Fold first: the event that moves the clock must count as activity
    /// of its own entry before any grace period is judged.
    pub fn push(&mut self, event: PbxEvent) -> impl Iterator<Item = Planned> + 's {
        let now = event.timestamp();
        self.tracker.push(event);
        let settings = self.settings;
        self.tracker
            .advance(now)
            .into_iter()
            .map(move |c| Planned::of(c, settings))
    }

    /// Folds one event in without moving the clock: entries complete only at
    /// [`Pipeline::finish`].
    #[cfg(any(feature = "sandboxes", test))]
    pub fn fold(&mut self, event: PbxEvent) {
        self.tracker.push(event);
    }

    /// Events that arrived for entries already released.
    pub fn late_events(&self) -> u64 {
        self.tracker.late_events()
    }

    /// The end of the input: every entry still closing, and every entry whose legs all hung up,
    /// planned; and the entries left incomplete (not planned).
    pub fn finish(self) -> (Vec<Planned>, Vec<Unfinished>) {
        let (done, unfinished) = self.tracker.finish();
        let settings = self.settings;
        let planned = done.into_iter().map(|c| Planned::of(c, settings)).collect();
        (planned, unfinished)
    }
}

/// Plans a whole recorded or generated stream at once, as if its input ended after the last
/// event: the plans, in the order the entries completed. Entries with a leg still up are left
/// out.
#[cfg(any(feature = "sandboxes", test))]
pub fn plan_all(
    settings: &ValidSettings,
    events: impl IntoIterator<Item = PbxEvent>,
) -> Vec<EntryPlan> {
    let mut pipeline = Pipeline::new(
        settings,
        TrackerConfig {
            settle_s: 0,
            ..TrackerConfig::default()
        },
    );
    for event in events {
        pipeline.fold(event);
    }
    pipeline.finish().0.into_iter().map(|p| p.plan).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use callbridge_traffic::{Config, Generator};

    /// The streaming run (clock moved by every event) and the all-at-once run plan the same
    /// entries the same way: where an entry completes changes when, never what.
    #[test]
    fn streaming_and_all_at_once_plan_the_same_entries() {
        let generator = Generator::new(Config {
            calls: 200,
            seed: 11,
            ..Config::default()
        });
        let settings = ValidSettings::parse_toml(&generator.staff().settings_toml())
            .expect("generated settings are valid");
        let events: Vec<PbxEvent> = generator.collect();

        let mut streamed = Vec::new();
        let mut pipeline = Pipeline::new(&settings, TrackerConfig::default());
        for event in events.clone() {
            streamed.extend(pipeline.push(event).map(|p| p.plan));
        }
        let (rest, unfinished) = pipeline.finish();
        streamed.extend(rest.into_iter().map(|p| p.plan));
        assert!(unfinished.is_empty(), "{unfinished:?}");

        let at_once = plan_all(&settings, events);
        assert_eq!(at_once.len(), streamed.len());
        assert!(!at_once.is_empty());
        let key = |p: &EntryPlan| serde_json::to_string(p).expect("plans serialize");
        let mut a: Vec<String> = at_once.iter().map(key).collect();
        let mut b: Vec<String> = streamed.iter().map(key).collect();
        a.sort();
        b.sort();
        assert_eq!(a, b);
    }
}
