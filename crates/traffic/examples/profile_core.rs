//! A fixed workload for profilers (`valgrind --tool=callgrind`, `perf`): generates traffic, then
//! runs the pure fold (+ assemble + plan) or the tracker over it once. Usage:
//! `profile_core [fold|tracker] [calls]` (defaults: fold, 5000).

use callbridge_core::tracker::{Tracker, TrackerConfig};
use callbridge_core::{policy, EntryEvents, PbxEvent, ValidSettings};
use callbridge_traffic::{generate, Config};
use std::collections::HashMap;

#[inline(never)]
fn fold(events: Vec<PbxEvent>) -> HashMap<String, EntryEvents> {
    let mut entries: HashMap<String, EntryEvents> = HashMap::new();
    for e in events {
        if let Some(entry) = entries.get_mut(e.entry_id()) {
            entry.push(e);
        } else {
            let mut entry = EntryEvents::new(e.entry_id());
            entry.push(e);
            entries.insert(entry.entry_id.clone(), entry);
        }
    }
    entries
}

#[inline(never)]
fn assemble_and_plan(settings: &ValidSettings, entries: &HashMap<String, EntryEvents>) -> usize {
    entries
        .values()
        .map(|e| policy::plan(settings, &e.assemble()).records.len())
        .sum()
}

#[inline(never)]
fn track(settings: &ValidSettings, events: Vec<PbxEvent>) -> usize {
    let mut tracker = Tracker::new(TrackerConfig::default());
    let mut records = 0;
    for e in events {
        let now = e.timestamp();
        tracker.push(e);
        for done in tracker.advance(now) {
            records += policy::plan(settings, &done.events.assemble())
                .records
                .len();
        }
    }
    let (done, _) = tracker.finish();
    for d in done {
        records += policy::plan(settings, &d.events.assemble()).records.len();
    }
    records
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "fold".into());
    let calls = args.next().and_then(|n| n.parse().ok()).unwrap_or(5000);
    let t = generate(&Config {
        calls,
        seed: 42,
        rate: 1.0,
        duplicates: 0.05,
        reorder: 0.05,
        lost_summaries: 0.01,
        ..Config::default()
    });
    let settings = ValidSettings::parse_toml(&t.staff.settings_toml()).expect("settings");
    let n = t.events.len();
    let records = match mode.as_str() {
        "tracker" => track(&settings, t.events),
        _ => {
            let entries = fold(t.events);
            assemble_and_plan(&settings, &entries)
        }
    };
    println!("{mode}: {n} events, {records} records");
}
