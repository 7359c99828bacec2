//! `callbridge bench-tenants` on tiny numbers: every figure of its report is printed, measured
//! and sane, so the figures in `docs/benchmarks.md` can be trusted.

use std::process::Command;

/// The numbers of the report's line `label: ...`, in order (`1,000` is not written; `12.5 %`
/// and `(20 a second)` give 12.5 and 20).
fn numbers(report: &str, label: &str) -> Vec<f64> {
    let line = report
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{label}: ")))
        .unwrap_or_else(|| panic!("no line {label:?} in:\n{report}"));
    line.split(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == ',')
        .filter_map(|w| w.parse::<f64>().ok())
        .filter(|v| v.is_finite())
        .collect()
}

#[test]
fn bench_tenants_reports_every_figure_from_a_small_run() {
    let started = std::time::Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_callbridge"))
        .args([
            "bench-tenants",
            "--tenants",
            "20",
            "--events",
            "200",
            "--crm-accounts",
            "2",
            "--idle-seconds",
            "1",
            "--concurrency",
            "4",
            "--rounds",
            "2",
            "--settle-seconds",
            "60",
        ])
        .output()
        .expect("run callbridge");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(started.elapsed().as_secs() < 60, "{report}");

    // create: 20 tenants in S s (R a second), PUT p50 A ms, p99 B ms, max C ms
    let create = numbers(&report, "create");
    assert_eq!(create[0], 20.0, "{report}");
    let (seconds, p50, p99, max) = (create[1], create[3], create[4], create[5]);
    assert!(seconds > 0.0 && seconds < 30.0, "{report}");
    assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{report}");
    assert!(max <= seconds * 1000.0, "{report}");

    let rss = numbers(&report, "rss")[0];
    assert!(1.0 < rss && rss < 2000.0, "{report}");

    // idle_cpu: P % of one core over S s, 20 tenants CRM-connected to 2 accounts, ...
    let idle = numbers(&report, "idle_cpu");
    assert!((0.0..=200.0).contains(&idle[0]), "{report}");
    assert!(idle[1] >= 1.0, "{report}");
    assert_eq!((idle[2], idle[3]), (20.0, 2.0), "{report}");

    // one_tenant / spread: E events/s, C us CPU per event (200 events ... in each of 2 rounds,
    // medians ...), after a line per round.
    for label in ["one_tenant", "spread"] {
        let v = numbers(&report, label);
        assert!(v[0] > 0.0, "{report}");
        assert!(v[1] > 0.0 && v[1] < 1_000_000.0, "{report}");
        assert_eq!(v[2], 200.0, "{report}");
        // No window held planning, nor the CRM delivery after it: the settle time outlasts them.
        assert!(
            report.contains("0 entries planned meanwhile in all"),
            "{report}"
        );
    }
    for round in ["round 1", "round 2"] {
        let v = numbers(&report, round);
        assert!(v.len() == 5 && v.iter().all(|x| *x > 0.0), "{report}");
    }
    assert!(!report.contains("round 3:"), "{report}");
    // Both rounds' events, each acknowledged and stored once.
    assert!(report.contains("400 stored"), "{report}");
    // Whole calls in turn: 200 events are more than 20 calls, so every tenant had traffic.
    assert!(report.contains("over 20 of 20 tenants"), "{report}");
    // spread_vs_one: R CPU per event, S events/s (medians ...; CPU per event from A to B)
    let ratio = numbers(&report, "spread_vs_one");
    assert!(
        ratio.len() == 4 && ratio.iter().all(|r| *r > 0.0),
        "{report}"
    );
    assert!(ratio[2] <= ratio[0] && ratio[0] <= ratio[3], "{report}");

    let shutdown = numbers(&report, "shutdown")[0];
    assert!(0.0 < shutdown && shutdown < 30.0, "{report}");
    // restart_idle: S s from process start to /readyz 200 with 20 tenants and no event, RSS then
    // M MB; shutdown before it D s ...
    let idle_restart = numbers(&report, "restart_idle");
    assert!(0.0 < idle_restart[0] && idle_restart[0] < 30.0, "{report}");
    assert_eq!(idle_restart[2], 20.0, "{report}");
    assert!(
        1.0 < idle_restart[3] && idle_restart[3] < 2000.0,
        "{report}"
    );
    assert!(0.0 < idle_restart[4] && idle_restart[4] < 30.0, "{report}");
    // restart: S s from process start to /readyz 200 with 21 tenants, RSS then M MB
    let restart = numbers(&report, "restart");
    assert!(0.0 < restart[0] && restart[0] < 30.0, "{report}");
    assert_eq!(restart[2], 21.0, "{report}");
    assert!(1.0 < restart[3] && restart[3] < 2000.0, "{report}");

    // crm: N requests to 2 accounts, K answered 429, B accounts blocked, ... (429s are warned of,
    // not failed on: the sandboxes share the loaded cores)
    let crm = numbers(&report, "crm");
    assert_eq!(crm[1], 2.0, "{report}");
    assert!(report.contains("crm_routes: {"), "{report}");
}

#[test]
fn bench_tenants_refuses_zero_tenants() {
    let out = Command::new(env!("CARGO_BIN_EXE_callbridge"))
        .args(["bench-tenants", "--tenants", "0"])
        .output()
        .expect("run callbridge");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--tenants must be positive"), "{stderr}");
}
