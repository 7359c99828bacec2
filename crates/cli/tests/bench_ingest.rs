//! `callbridge bench-ingest` on a small load: the benchmark itself must count right, so its
//! figures in `docs/benchmarks.md` can be trusted.

use serde_json::Value;
use std::process::Command;

#[test]
fn bench_ingest_stores_every_event_it_reports_and_counts_the_services_appends() {
    let out = Command::new(env!("CARGO_BIN_EXE_callbridge"))
        .args(["bench-ingest", "--events", "600", "--concurrency", "8"])
        .output()
        .expect("run callbridge");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!(report["backend"], "sqlite");
    assert_eq!(report["events"], 600);
    assert_eq!(report["stored"], 600, "{report}");
    assert_eq!(report["non_200"], 0);
    let (p50, p99, max) = (
        report["p50_ms"].as_f64().unwrap(),
        report["p99_ms"].as_f64().unwrap(),
        report["max_ms"].as_f64().unwrap(),
    );
    assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{report}");
    // Read from the service's own histogram: at least one append per 64 events, at most one per
    // event, and the slow ones a part of them.
    let appends = report["appends"].as_u64().expect("appends");
    assert!((600 / 64..=600).contains(&appends), "{report}");
    let (over_10, over_50) = (
        report["appends_over_10ms"]
            .as_u64()
            .expect("appends_over_10ms"),
        report["appends_over_50ms"]
            .as_u64()
            .expect("appends_over_50ms"),
    );
    assert!(over_50 <= over_10 && over_10 <= appends, "{report}");
}

#[test]
fn bench_ingest_refuses_a_negative_rate() {
    let out = Command::new(env!("CARGO_BIN_EXE_callbridge"))
        .args(["bench-ingest", "--events", "10", "--rate=-5"])
        .output()
        .expect("run callbridge");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--rate must be"), "{stderr}");
}
