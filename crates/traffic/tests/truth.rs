//! The generator is realistic only if a correct core makes of its events exactly what the calls
//! were. These tests feed generated streams (with duplicated, reordered and lost deliveries)
//! through the assembler, the policy and the tracker and compare with the ground truth.

use callbridge_core::plan::Outcome;
use callbridge_core::tracker::{Tracker, TrackerConfig};
use callbridge_core::{policy, Direction, EntryEvents, MissedKind, PbxEvent, ValidSettings};
use callbridge_traffic::{generate, CallKind, CallTruth, Config, Mix, Traffic};
use std::collections::{BTreeMap, HashMap};

fn faulty(seed: u64, calls: usize, mix: Mix) -> Config {
    Config {
        calls,
        seed,
        rate: 0.8,
        duplicates: 0.05,
        reorder: 0.05,
        lost_summaries: 0.1,
        mix,
        ..Config::default()
    }
}

fn by_entry(events: &[PbxEvent]) -> HashMap<String, EntryEvents> {
    let mut entries: HashMap<String, EntryEvents> = HashMap::new();
    for e in events {
        entries
            .entry(e.entry_id().to_string())
            .or_insert_with(|| EntryEvents::new(e.entry_id()))
            .push(e.clone());
    }
    entries
}

/// Checks one assembled entry against its truth; returns a description of the first mismatch.
fn check(truth: &CallTruth, entry: &EntryEvents, settings: &ValidSettings) -> Result<(), String> {
    let a = entry.assemble();
    let talkers: Vec<&str> = a
        .conversations
        .iter()
        .map(|c| c.employee_extension.as_str())
        .collect();
    if a.direction != truth.direction {
        return Err(format!("direction {:?}", a.direction));
    }
    if talkers != truth.talkers {
        return Err(format!("talkers {talkers:?}, want {:?}", truth.talkers));
    }
    let recordings: Vec<Option<String>> = a
        .conversations
        .iter()
        .map(|c| c.recording_id.clone())
        .collect();
    if recordings != truth.recordings {
        return Err(format!(
            "recordings {recordings:?}, want {:?}",
            truth.recordings
        ));
    }
    let missed = a.missed.as_ref().map(|m| m.kind);
    if missed != truth.missed {
        return Err(format!("missed {missed:?}, want {:?}", truth.missed));
    }
    if let Some(m) = &a.missed {
        if m.group != truth.group {
            return Err(format!("group {:?}, want {:?}", m.group, truth.group));
        }
        // Ties of a ring-all group are broken by the summary, so only with one.
        if !truth.summary_lost && m.offered.first() != truth.first_offered.as_ref() {
            return Err(format!(
                "first offered {:?}, want {:?}",
                m.offered.first(),
                truth.first_offered
            ));
        }
    }
    if a.has_summary == truth.summary_lost {
        return Err("summary presence".into());
    }
    let plan = policy::plan(settings, &a);
    if truth.direction != Direction::Internal {
        let want = if truth.answered {
            Outcome::Answered
        } else {
            Outcome::Missed
        };
        if plan.outcome != want {
            return Err(format!("outcome {:?}", plan.outcome));
        }
        if truth.answered && plan.records.len() != truth.talkers.len() {
            return Err(format!("{} records", plan.records.len()));
        }
    } else if !plan.records.is_empty() {
        return Err("an internal call was written".into());
    }
    for r in &plan.records {
        if let Some(ext) = &r.employee_extension {
            let want = settings
                .crm_user_of(ext)
                .or(settings.fallback_user())
                .expect("save all calls is on");
            if r.crm_user_id != want {
                return Err(format!("record of {ext} went to {}", r.crm_user_id));
            }
        }
    }
    Ok(())
}

#[test]
fn every_kind_assembles_as_generated() {
    let mut seen: BTreeMap<CallKind, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    for seed in 1..=4 {
        let Traffic {
            staff,
            events,
            calls,
        } = generate(&faulty(seed, 1500, Mix::uniform()));
        let settings = ValidSettings::parse_toml(&staff.settings_toml()).expect("settings");
        let entries = by_entry(&events);
        assert_eq!(entries.len(), calls.len());
        for truth in &calls {
            *seen.entry(truth.kind).or_default() += 1;
            if let Err(e) = check(truth, &entries[&truth.entry_id], &settings) {
                failures.push(format!(
                    "seed {seed} {:?} {}: {e}",
                    truth.kind, truth.entry_id
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches, first: {:#?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    for kind in CallKind::ALL {
        assert!(
            seen.get(&kind).copied().unwrap_or(0) > 100,
            "{kind:?}: {seen:?}"
        );
    }
}

#[test]
fn transfers_cross_the_mapping_edge_both_ways_and_chain() {
    let t = generate(&faulty(9, 3000, Mix::default()));
    let mapped = |ext: &str| t.staff.employee(ext).unwrap().crm_user_id.is_some();
    let mut to_mapped = 0;
    let mut to_unmapped = 0;
    let mut chains_of_3 = 0;
    for c in &t.calls {
        for w in c.talkers.windows(2) {
            match (mapped(&w[0]), mapped(&w[1])) {
                (false, true) => to_mapped += 1,
                (true, false) => to_unmapped += 1,
                _ => {}
            }
        }
        chains_of_3 += usize::from(c.talkers.len() == 3);
    }
    assert!(to_mapped > 20 && to_unmapped > 20 && chains_of_3 > 20);
    // The mix is realistic: most calls answered, some missed, some recorded.
    let answered = t.calls.iter().filter(|c| c.answered).count();
    assert!(answered > t.calls.len() / 2 && answered < t.calls.len());
    assert!(t
        .calls
        .iter()
        .any(|c| c.recordings.iter().any(Option::is_some)));
}

#[test]
fn the_tracker_completes_every_call_exactly_once() {
    // With and without the early release of entries that wait for nothing.
    let quick = TrackerConfig {
        settle_complete_s: Some(1),
        ..TrackerConfig::default()
    };
    for (seed, config) in [1, 2, 3]
        .into_iter()
        .flat_map(|seed| [(seed, TrackerConfig::default()), (seed, quick)])
    {
        let t = generate(&faulty(seed, 2000, Mix::default()));
        let mut tracker = Tracker::new(config);
        let mut completed: HashMap<String, usize> = HashMap::new();
        let mut max_in_flight = 0;
        for e in t.events.iter().cloned() {
            let now = e.timestamp();
            tracker.push(e);
            for c in tracker.advance(now) {
                *completed.entry(c.events.entry_id.clone()).or_default() += 1;
            }
            max_in_flight = max_in_flight.max(tracker.in_flight());
        }
        let (done, unfinished) = tracker.finish();
        for c in done {
            *completed.entry(c.events.entry_id.clone()).or_default() += 1;
        }
        assert!(unfinished.is_empty(), "{unfinished:?}");
        assert_eq!(completed.len(), t.calls.len());
        for c in &t.calls {
            assert_eq!(completed.get(&c.entry_id), Some(&1), "{:?}", c.kind);
        }
        // Memory is bounded by the calls in progress, not by the stream.
        assert!(max_in_flight < 600, "{max_in_flight}");
    }
}

#[test]
fn missed_kinds_follow_the_kind_of_call() {
    let t = generate(&faulty(5, 2000, Mix::default()));
    for c in &t.calls {
        let want = match c.kind {
            CallKind::MissedGroup => Some(MissedKind::Group),
            CallKind::MissedIvr => Some(MissedKind::Ivr),
            CallKind::OutboundBusy | CallKind::OutboundNoAnswer => Some(MissedKind::Personal),
            _ => None,
        };
        assert_eq!(c.missed, want, "{:?}", c.kind);
        assert_eq!(
            c.conversations() > 0,
            c.answered && c.kind != CallKind::Internal || c.conversations() > 0
        );
    }
}
