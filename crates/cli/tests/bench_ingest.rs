//! `callbridge bench-ingest` on a small load: the benchmark itself must count right, so its
//! figures in `docs/benchmarks.md` can be trusted.

use serde_json::Value;
use std::process::Command;

#[test]
fn bench_ingest_stores_every_event_it_reports_and_reads_the_services_append_times() {
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
    // Read from the service's own histogram: every append took some time, the slowest most.
    let (append_p99, append_max) = (
        report["append_p99_ms"].as_f64().expect("append_p99_ms"),
        report["append_max_ms"].as_f64().expect("append_max_ms"),
    );
    assert!(0.0 < append_p99 && append_p99 <= append_max, "{report}");
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
