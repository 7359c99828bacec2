//! `callbridge demo`, the real binary: it plays generated calls through the whole product and
//! reports what landed in its amoCRM sandbox. The report is not taken on trust: with
//! `--keep-running` the sandbox stays up, and this test reads it through the amoCRM API itself
//! and compares, then stops the demo as a person would (SIGTERM) and checks its exit status.

use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Kills the demo if the test fails half-way, so no process outlives the test.
struct Demo {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Demo {
    fn start(args: &[&str]) -> Demo {
        let mut child = Command::new(env!("CARGO_BIN_EXE_callbridge"))
            .arg("demo")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start callbridge demo");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Demo {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The next stdout line that satisfies `wanted`, within `limit`.
    fn line_where(&mut self, limit: Duration, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if wanted(&line) => return line,
                Ok(line) => self.seen.push(line),
                Err(e) => panic!(
                    "no such line from the demo ({e}); its output so far:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// The `--json` report: the one stdout line that is a JSON object.
    fn report(&mut self, limit: Duration) -> Value {
        let line = self.line_where(limit, |l| l.starts_with('{'));
        serde_json::from_str(&line).expect("the report line is JSON")
    }

    fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the demo") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the demo did not exit in {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Reads the amoCRM sandbox as an integration would, at most ~3 requests per second (amoCRM
/// allows 7, and the sandbox counts every 429).
struct Crm {
    http: reqwest::blocking::Client,
    base: String,
    token: String,
    last: Option<Instant>,
}

impl Crm {
    fn get(&mut self, path: &str) -> Option<Value> {
        if let Some(last) = self.last {
            let next = last + Duration::from_millis(350);
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
        self.last = Some(Instant::now());
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .expect("GET from the sandbox");
        let status = response.status().as_u16();
        if status == 204 {
            return None;
        }
        assert_eq!(status, 200, "GET {path}");
        Some(response.json().expect("JSON"))
    }

    /// Every call note (`call_in`, `call_out`) on the entities of one type, page by page.
    fn call_notes(&mut self, entity: &str) -> Vec<Value> {
        let mut notes = Vec::new();
        for page in 1.. {
            let path = format!(
                "/api/v4/{entity}/notes?filter[note_type][]=call_in&filter[note_type][]=call_out&limit=250&page={page}"
            );
            let Some(body) = self.get(&path) else { break };
            let found = body["_embedded"]["notes"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            assert!(!found.is_empty(), "a 200 page without notes: {body}");
            notes.extend(found);
            if !body["_links"]["next"].is_object() {
                break;
            }
        }
        notes
    }
}

fn count(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("expected a count, got {v}"))
}

#[test]
fn the_demo_lands_every_call_and_the_crm_agrees() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let started = Instant::now();
    let mut demo = Demo::start(&[
        "--calls",
        "200",
        "--rate",
        "20",
        "--json",
        "--keep-running",
        "--data-dir",
        data.to_str().expect("UTF-8 path"),
    ]);
    let report = demo.report(Duration::from_secs(150));
    let elapsed = started.elapsed();
    // Under --json, "Still running ..." goes to stderr with the other lines for a person; the
    // services stay up until the demo is stopped.

    // The demo's own verdict and the facts it rests on.
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(report["problems"], serde_json::json!([]));
    assert_eq!(count(&report["play"]["calls"]), 200);
    assert_eq!(count(&report["play"]["webhooks_failed"]), 0);
    assert!(
        count(&report["play"]["duplicates_sent"]) > 0,
        "the PBX's duplicates are played"
    );
    assert_eq!(count(&report["entries"]["planned"]), 200);
    assert_eq!(report["parked"], serde_json::json!([]));
    assert_eq!(count(&report["pending"]), 0);
    assert_eq!(count(&report["crm"]["rate_limited_429"]), 0);
    assert!(count(&report["crm"]["max_requests_in_any_second"]) <= 7);
    assert_eq!(count(&report["crm"]["records_not_found"]), 0);
    let latency = &report["latency_ms"];
    let (p50, p95, max) = (
        count(&latency["p50"]),
        count(&latency["p95"]),
        count(&latency["max"]),
    );
    assert!(0 < p50 && p50 <= p95 && p95 <= max, "{latency}");
    assert!(count(&latency["count"]) > 100, "{latency}");
    let written = count(&report["records_written"]);
    assert!(
        written > 100,
        "200 calls give well over 100 records: {written}"
    );
    let by_rule = &report["records_by_rule"];
    let (p1, p2) = (count(&by_rule["P1"]), count(&by_rule["P2"]));
    assert!(
        p1 > 0 && p2 > 0,
        "mapped and unmapped employees both talk: {by_rule}"
    );
    assert_eq!(
        p1 + p2,
        written,
        "every record is on a mapped user (P1) or the fallback (P2)"
    );
    assert!(count(&report["crm"]["contacts_created"]) > 0);
    assert!(count(&report["crm"]["cards_shown"]) > 0);

    // Independently: the CRM as its API shows it.
    let sandbox = &report["sandbox"];
    let mut crm = Crm {
        http: reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("HTTP client"),
        base: sandbox["base_url"]
            .as_str()
            .expect("sandbox URL")
            .to_string(),
        token: sandbox["token"]
            .as_str()
            .expect("sandbox token")
            .to_string(),
        // The demo read the sandbox just before its report: its requests still count in
        // amoCRM's sliding second, so the first of ours waits for that second to pass.
        last: Some(Instant::now() + Duration::from_millis(800)),
    };
    let mut notes = crm.call_notes("contacts");
    let on_contacts = notes.len();
    notes.extend(crm.call_notes("leads"));
    assert_eq!(
        notes.len() as u64,
        written,
        "one call note per record written"
    );
    assert_eq!(notes.len() as u64, count(&report["crm"]["call_notes"]));
    assert_eq!(
        on_contacts as u64,
        count(&report["crm"]["call_notes_by_entity"]["contacts"])
    );
    // Exactly once: the PBX's duplicates and reordering never wrote a call twice.
    let uniq: HashSet<&str> = notes
        .iter()
        .map(|n| n["params"]["uniq"].as_str().expect("a call note's uniq"))
        .collect();
    assert_eq!(
        uniq.len(),
        notes.len(),
        "every call note is a different call"
    );
    let mut by_user: BTreeMap<String, u64> = BTreeMap::new();
    for n in &notes {
        *by_user
            .entry(count(&n["responsible_user_id"]).to_string())
            .or_default() += 1;
    }
    let reported: BTreeMap<String, u64> =
        serde_json::from_value(report["crm"]["call_notes_by_user"].clone()).expect("by user");
    assert_eq!(by_user, reported);
    assert_eq!(
        by_user.get("9000").copied(),
        Some(p2),
        "P2 records are the fallback user's"
    );

    // The sandbox's own count of 429s, including the demo's reads and ours.
    let stats: Value = crm
        .http
        .get(format!("{}/_sandbox/stats", crm.base))
        .send()
        .and_then(|r| r.json())
        .expect("sandbox stats");
    assert_eq!(count(&stats["rate_limited"]), 0, "{stats}");

    // The service's admin API agrees that nothing is left to do.
    let admin = &report["admin"];
    let tenant: Value = crm
        .http
        .get(format!(
            "{}/tenants/{}",
            admin["url"].as_str().expect("admin URL"),
            admin["tenant"].as_str().expect("tenant")
        ))
        .bearer_auth(admin["token"].as_str().expect("admin token"))
        .send()
        .and_then(|r| r.json())
        .expect("tenant from the admin API");
    assert_eq!(count(&tenant["entries"]), 200, "{tenant}");
    assert_eq!(count(&tenant["outbox"]["pending"]), 0, "{tenant}");
    assert_eq!(count(&tenant["outbox"]["parked"]), 0, "{tenant}");

    // Stopped as a person stops it: Ctrl-C or SIGTERM, and all landed, so status 0.
    #[cfg(unix)]
    {
        let term = Command::new("kill")
            .args(["-TERM", &demo.child.id().to_string()])
            .status()
            .expect("send SIGTERM");
        assert!(term.success());
        let status = demo.wait(Duration::from_secs(30));
        assert!(status.success(), "{status}");
        assert!(data.exists(), "a given --data-dir is kept");
    }
    eprintln!(
        "demo --calls 200 --rate 20: report after {:.1} s; latency p50 {p50} ms, p95 {p95} ms, max {max} ms",
        elapsed.as_secs_f64()
    );
}

#[test]
fn without_keep_running_the_demo_exits_by_itself_and_cleans_up() {
    let mut demo = Demo::start(&["--calls", "20", "--rate", "20", "--json", "--seed", "3"]);
    let report = demo.report(Duration::from_secs(90));
    let status = demo.wait(Duration::from_secs(30));
    assert!(status.success(), "{status}: {report:#}");
    // stdout is the one JSON line and nothing else (`demo --json | python3 -c 'json.loads(...)'`).
    let after: Vec<String> = demo.lines.try_iter().collect();
    assert!(
        demo.seen.is_empty() && after.is_empty(),
        "stdout besides the JSON line: {:?} {after:?}",
        demo.seen
    );
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(count(&report["entries"]["planned"]), 20);
    assert_eq!(
        count(&report["records_written"]),
        count(&report["crm"]["call_notes"])
    );
    let data = report["data_dir"].as_str().expect("data dir");
    assert!(
        !std::path::Path::new(data).exists(),
        "the temporary data folder {data} is removed at exit"
    );
}

#[test]
fn bad_flags_are_refused_with_the_flag_named() {
    for (args, flag) in [
        (&["--calls", "0"][..], "--calls"),
        (&["--rate", "0"][..], "--rate"),
        (&["--time-compression", "0"][..], "--time-compression"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_callbridge"))
            .arg("demo")
            .args(args)
            .output()
            .expect("run callbridge demo");
        assert!(!out.status.success(), "{args:?} accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "nothing started for {args:?}");
    }
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("old.db"), b"x").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_callbridge"))
        .args(["demo", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("run callbridge demo");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not empty"));
}
