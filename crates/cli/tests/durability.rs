//! End to end with the real `callbridge serve`: a full disk (a small tmpfs) loses no acknowledged
//! webhook and the service recovers by itself once there is room; one process per SQLite data
//! folder, with private files; entries sharing a leg id are kept apart; entries that never
//! complete are given up after the horizon.
//!
//! The full-disk test mounts a tmpfs, which needs root (as here and in CI): when the mount is
//! refused the test fails saying so, it is never skipped.

mod support;

use callbridge_test_support::Tmpfs;
use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

fn tenant() -> Tenant {
    Tenant {
        id: "acme".into(),
        key: "durability-key".into(),
        salt: "durability-salt-0000000000000000".into(),
        settings: scenarios_dir().join("a1-two-interleaved-entries/settings.toml"),
        amocrm: None,
    }
}

fn call_line(entry: &str, leg: &str, t: i64, seq: u32, state: &str) -> String {
    let mut json = serde_json::json!({
        "entry_id": entry, "call_id": leg, "timestamp": t, "seq": seq, "call_state": state,
        "location": "abonent",
        "from": {"number": "79161230016"},
        "to": {"extension": "101", "line_number": "74951234567"},
    });
    if state == "Disconnected" {
        json["disconnect_reason"] = 1110.into();
    }
    serde_json::json!({"path": "events/call", "json": json}).to_string()
}

fn summary_line(entry: &str, t: i64) -> String {
    serde_json::json!({"path": "events/summary", "json": {
        "entry_id": entry, "call_direction": 1,
        "from": {"number": "79161230016"}, "to": {"extension": "101"},
        "create_time": t, "forward_time": t + 3, "talk_time": t + 5, "end_time": t + 60,
        "entry_result": 1, "disconnect_reason": 1110, "line_number": "74951234567",
    }})
    .to_string()
}

/// An answered call: appeared, connected, hung up, summary.
fn answered_entry(entry: &str, leg: &str, t: i64) -> Vec<String> {
    vec![
        call_line(entry, leg, t, 1, "Appeared"),
        call_line(entry, leg, t + 5, 2, "Connected"),
        call_line(entry, leg, t + 60, 3, "Disconnected"),
        summary_line(entry, t),
    ]
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Every event in the store's log for the tenant, as (entry id, dedupe-free json) pairs.
fn logged_events(data: &Path) -> Vec<(String, String)> {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = callbridge_store::Store::open_sqlite(data).await.unwrap();
        store
            .events_after(0, 1_000_000)
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.entry_id, e.json))
            .collect()
    })
}

/// Checks every plan: one answered record, completed by its summary.
fn assert_all_answered(entries: &[serde_json::Value]) {
    for e in entries {
        assert_eq!(e["completed_by"], "summary", "{e}");
        assert_eq!(e["outcome"], "answered", "{e}");
        assert_eq!(e["records"].as_array().map(Vec::len), Some(1), "{e}");
    }
}

fn readyz(http: &reqwest::blocking::Client, base: &str) -> (u16, String) {
    let r = http.get(format!("{base}/readyz")).send().unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

#[test]
fn a_full_disk_acknowledges_nothing_it_did_not_store_and_recovers_by_itself() {
    let dir = temp_dir("full-disk");
    let mount = dir.join("mnt");
    let fs = Tmpfs::mount(&mount, "1m");
    let t = tenant();
    let entries = 1_500;
    let lines: Vec<String> = (0..entries)
        .flat_map(|i| answered_entry(&format!("full-{i}"), &format!("leg-{i}"), 1_764_000_000 + i))
        .collect();
    let http = client();
    let server = Server::start(&mount, std::slice::from_ref(&t), None);

    let mut acknowledged = HashSet::new();
    let mut refused = Vec::new();
    let mut refused_in_a_row = 0;
    let mut next = 0;
    while next < lines.len() && refused_in_a_row < 30 {
        match post_line(&http, &server.base, &t, &lines[next]) {
            200 => {
                acknowledged.insert(next);
                refused_in_a_row = 0;
            }
            503 => {
                refused.push(next);
                refused_in_a_row += 1;
            }
            other => panic!("webhook {next}: unexpected status {other}"),
        }
        next += 1;
    }
    assert_eq!(
        refused_in_a_row,
        30,
        "the 1 MB disk never stayed full: {} of {next} webhooks acknowledged",
        acknowledged.len()
    );
    let (status, reason) = readyz(&http, &server.base);
    assert_eq!(status, 503, "readiness on a full disk: {reason}");
    assert!(
        reason.contains("event log") && reason.contains("full"),
        "{reason}"
    );

    // Room again: ready by itself, without a request or a restart.
    fs.resize("64m");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, reason) = readyz(&http, &server.base);
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still not ready after the disk grew: {reason}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The PBX delivers the refused ones again, and the rest.
    for i in refused.into_iter().chain(next..lines.len()) {
        assert_eq!(
            post_line(&http, &server.base, &t, &lines[i]),
            200,
            "webhook {i} after recovery"
        );
        acknowledged.insert(i);
    }
    assert_eq!(acknowledged.len(), lines.len());
    let planned = wait_for_entries(
        &http,
        &server.base,
        &t.id,
        entries as usize,
        Duration::from_secs(60),
    );
    assert_eq!(
        planned.len(),
        entries as usize,
        "planned before the restart"
    );
    server.kill();

    // After a restart: every acknowledged event is in the log, every entry planned from all
    // of its events.
    let server = Server::start(&mount, std::slice::from_ref(&t), None);
    let planned = wait_for_entries(
        &http,
        &server.base,
        &t.id,
        entries as usize,
        Duration::from_secs(60),
    );
    assert_eq!(planned.len(), entries as usize);
    assert_all_answered(&planned);
    server.kill();
    let logged = logged_events(&mount.join("data"));
    assert_eq!(
        logged.len(),
        lines.len(),
        "events in the log after the restart"
    );
    drop(fs);
}

#[test]
fn a_second_serve_on_the_same_data_folder_exits_naming_the_first() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir("two-serves");
    let t = tenant();
    let first = Server::start(&dir, std::slice::from_ref(&t), None);
    let config = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "toml"))
        .expect("the first server's config");
    let started = Instant::now();
    let mut second = Command::new(bin())
        .args(["serve", "--config"])
        .arg(&config)
        .env("CALLBRIDGE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = loop {
        if let Some(status) = second.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(10) {
            let _ = second.kill();
            panic!("the second serve kept running beside the first");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = second.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("process {}", first.child.id())),
        "names the holder's pid: {stderr}"
    );
    assert!(stderr.contains("PostgreSQL"), "{stderr}");
    // The first still answers.
    let (status, reason) = readyz(&client(), &first.base);
    assert_eq!(status, 200, "{reason}");

    // Private at rest: the folder 0700, the database files and the lock 0600.
    let data = dir.join("data");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    for name in [
        "callbridge.db",
        "callbridge.db-wal",
        "callbridge.db-shm",
        "callbridge.lock",
    ] {
        assert_eq!(mode(&data.join(name)), 0o600, "{name}");
    }
}

#[test]
fn entries_sharing_a_leg_id_are_both_stored_and_planned() {
    let dir = temp_dir("shared-leg");
    let t = tenant();
    let http = client();
    let server = Server::start(&dir, std::slice::from_ref(&t), None);
    // Same leg id, same times, same steps: only the entry tells them apart.
    for entry in ["shared-a", "shared-b"] {
        for line in answered_entry(entry, "the-same-leg", 1_764_000_000) {
            assert_eq!(post_line(&http, &server.base, &t, &line), 200);
        }
    }
    let planned = wait_for_entries(&http, &server.base, &t.id, 2, Duration::from_secs(30));
    assert_eq!(planned.len(), 2);
    assert_all_answered(&planned);
    server.kill();
    let logged = logged_events(&dir.join("data"));
    for entry in ["shared-a", "shared-b"] {
        assert_eq!(
            logged.iter().filter(|(e, _)| e == entry).count(),
            4,
            "{entry}'s events in the log"
        );
    }
}

#[test]
fn an_entry_that_never_completes_is_planned_after_the_horizon_and_counted() {
    let dir = temp_dir("abandoned");
    let t = tenant();
    let http = client();
    let server = Server::start_with(
        &dir,
        std::slice::from_ref(&t),
        &Options {
            processing: "abandon_after_ms = 1500".into(),
            ..Options::default()
        },
    );
    // A connected leg that never hangs up and no summary (both lost on the way).
    let stuck = [
        call_line("stuck", "leg-1", 1_764_000_000, 1, "Appeared"),
        call_line("stuck", "leg-1", 1_764_000_005, 2, "Connected"),
    ];
    for line in &stuck {
        assert_eq!(post_line(&http, &server.base, &t, line), 200);
    }
    let started = Instant::now();
    let planned = wait_for_entries(&http, &server.base, &t.id, 1, Duration::from_secs(20));
    assert_eq!(planned.len(), 1, "the stuck entry was never planned");
    assert!(
        started.elapsed() >= Duration::from_millis(1_000),
        "planned before the horizon"
    );
    let plan = &planned[0];
    assert_eq!(plan["completed_by"], "abandoned", "{plan}");
    assert!(
        plan["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == "A4a"),
        "{plan}"
    );
    // Counted, and the recovery mark moved past its events (ids 1 and 2).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = http
            .get(format!("{}/metrics", server.base))
            .send()
            .unwrap()
            .text()
            .unwrap();
        let abandoned = metric(&text, "callbridge_entries_abandoned_total");
        let mark = metric(&text, "callbridge_recovery_mark_event_id");
        if abandoned == Some(1.0) && mark.is_some_and(|m| m > 2.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "abandoned {abandoned:?}, recovery mark {mark:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
