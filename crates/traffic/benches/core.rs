//! Throughput of the pure core on realistic traffic (see `docs/benchmarks.md`).
//!
//! One stream of 20,000 calls (the default mix, 5% duplicated and 5% reordered deliveries, 1% lost
//! summaries) is generated once; each benchmark reports events per second:
//!
//! - `fold_assemble_plan`: every event pushed into its entry's `EntryEvents` (a `HashMap` by
//!   entry id), then every entry assembled and planned. The core's work without the tracker.
//! - `fold_only` / `assemble_plan`: the two halves of the above, to see where the time goes
//!   (`fold_only` includes dropping the entries, `assemble_plan` works on a pre-folded map).
//! - `tracker`: the same stream through `Tracker::push` + `advance` (grace and settle windows,
//!   remembered ids), planning each completed entry, as `simulate` does.
//! - `parse`: `callbridge_mango::parse_event` of every event's webhook JSON text (the adapter's
//!   share of `simulate`, for comparison).

use callbridge_core::tracker::{Tracker, TrackerConfig};
use callbridge_core::{policy, EntryEvents, PbxEvent, ValidSettings};
use callbridge_traffic::{generate, Config};
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::collections::HashMap;
use std::time::Duration;

const CALLS: usize = 20_000;

fn traffic() -> (ValidSettings, Vec<PbxEvent>) {
    let t = generate(&Config {
        calls: CALLS,
        seed: 42,
        rate: 1.0,
        duplicates: 0.05,
        reorder: 0.05,
        lost_summaries: 0.01,
        ..Config::default()
    });
    let settings = ValidSettings::parse_toml(&t.staff.settings_toml()).expect("settings");
    (settings, t.events)
}

fn fold(events: Vec<PbxEvent>) -> HashMap<String, EntryEvents> {
    let mut entries: HashMap<String, EntryEvents> = HashMap::new();
    for e in events {
        match entries.get_mut(e.entry_id()) {
            Some(entry) => {
                entry.push(e);
            }
            None => {
                let mut entry = EntryEvents::new(e.entry_id());
                let id = entry.entry_id.clone();
                entry.push(e);
                entries.insert(id, entry);
            }
        }
    }
    entries
}

fn plan_all(settings: &ValidSettings, entries: &HashMap<String, EntryEvents>) -> usize {
    let mut records = 0;
    for entry in entries.values() {
        let plan = policy::plan(settings, &entry.assemble());
        records += plan.records.len();
    }
    records
}

fn bench(c: &mut Criterion) {
    let (settings, events) = traffic();
    let n = events.len() as u64;
    let mut g = c.benchmark_group("core");
    g.throughput(Throughput::Elements(n))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));

    g.bench_function("fold_assemble_plan", |b| {
        b.iter_batched(
            || events.clone(),
            // Dropping the entries is part of the work (the tracker bench drops them too).
            |events| {
                let entries = fold(events);
                black_box(plan_all(&settings, &entries));
                drop(entries);
            },
            BatchSize::PerIteration,
        )
    });

    g.bench_function("fold_only", |b| {
        b.iter_batched(
            || events.clone(),
            |e| drop(fold(e)),
            BatchSize::PerIteration,
        )
    });

    let folded = fold(events.clone());
    g.bench_function("assemble_plan", |b| {
        b.iter(|| black_box(plan_all(&settings, &folded)))
    });

    g.bench_function("tracker", |b| {
        b.iter_batched(
            || events.clone(),
            |events| {
                let mut tracker = Tracker::new(TrackerConfig::default());
                let mut records = 0;
                for e in events {
                    let now = e.timestamp();
                    tracker.push(e);
                    for done in tracker.advance(now) {
                        records += policy::plan(&settings, &done.events.assemble())
                            .records
                            .len();
                    }
                }
                let (done, unfinished) = tracker.finish();
                for d in done {
                    records += policy::plan(&settings, &d.events.assemble()).records.len();
                }
                assert!(unfinished.is_empty());
                black_box(records)
            },
            BatchSize::PerIteration,
        )
    });

    let texts: Vec<(&'static str, String)> = events
        .iter()
        .map(|e| {
            let (path, json) = callbridge_mango::wire::to_json(e);
            (path, json.to_string())
        })
        .collect();
    g.bench_function("parse", |b| {
        b.iter(|| {
            let mut ok = 0usize;
            for (path, text) in &texts {
                ok += usize::from(callbridge_mango::parse_event(path, text).is_ok());
            }
            black_box(ok)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
