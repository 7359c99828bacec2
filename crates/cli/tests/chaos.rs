//! The chaos suite: a generated office day sent as signed webhooks to the real `callbridge serve`
//! while, at seeded random moments, the service is killed with SIGKILL and restarted, the
//! database connections drop (PostgreSQL variant), and the amoCRM sandbox answers 5xx, 429,
//! slowly or not at all. The sender behaves as Mango does with a webhook that got no 200: it
//! sends it again; but about 10% of the webhooks never leave (some calls cut from some event on,
//! as by an outage Mango gave up on), and reconciliation from the emulated PBX's statistics
//! brings those calls back. At the end the sandbox must hold exactly one call note per planned
//! record, on the planned user with the planned rule ids (a call rebuilt from statistics: on a
//! user the full traffic also wrote it for), and the CRM must never have seen more than 7
//! requests in a second. A second reconciliation must append nothing.
//!
//! Each run prints one line of figures (`chaos: ...`). The README's test command runs one short
//! run per backend; `CALLBRIDGE_TEST_CHAOS_RUNS=N` (and `CALLBRIDGE_TEST_CHAOS_CALLS`) runs
//! longer soaks, each with its own seed (docs/reliability.md).

mod sandboxes;
mod support;

use callbridge_amocrm_sandbox::{Faults, Sandbox};
use callbridge_mango_sandbox::{start_vpbx_api, PlayConfig, Vpbx, VpbxConfig};
use callbridge_test_support::{
    drop_postgres_database, fresh_postgres_database, note_figures, postgres_admin_url, SeededRng,
};
use callbridge_traffic::StaffConfig;
use sandboxes::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::*;

/// What one run did and found; printed on one line.
#[derive(Debug, Default)]
struct Figures {
    seed: u64,
    backend: &'static str,
    webhooks_sent: u64,
    webhooks_dropped: u64,
    resent_after_no_answer: u64,
    kills: u64,
    database_drops: u64,
    crm_faults: u64,
    calls_recovered_from_statistics: usize,
    records_expected: usize,
    records_found: usize,
    duplicates: usize,
    missing: usize,
    wrong: usize,
    max_crm_requests_in_one_second: u32,
    seconds: f64,
}

impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "chaos: backend {}, seed {}, webhooks sent {}, webhooks dropped {}, resent after no \
             answer {}, kills injected {}, database drops {}, CRM faults injected {}, calls \
             recovered from statistics {}, records expected {}, records found {}, duplicates {}, missing {}, wrong user or reasons {}, \
             max CRM requests in one second {}, {:.0} s",
            self.backend,
            self.seed,
            self.webhooks_sent,
            self.webhooks_dropped,
            self.resent_after_no_answer,
            self.kills,
            self.database_drops,
            self.crm_faults,
            self.calls_recovered_from_statistics,
            self.records_expected,
            self.records_found,
            self.duplicates,
            self.missing,
            self.wrong,
            self.max_crm_requests_in_one_second,
            self.seconds,
        )
    }
}

/// The soak's knobs, read from the test suite's variables (never config keys).
fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a whole number, not {v:?}")),
        Err(_) => default,
    }
}

/// A PostgreSQL database that can be made to drop every connection and refuse new ones for a
/// while: what the service sees of a database restart, without touching the other tests'
/// databases on the same server.
struct Database {
    url: String,
    name: String,
}

impl Database {
    fn psql(&self, sql: &str) {
        let out = Command::new("psql")
            .arg(postgres_admin_url())
            .args(["-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
            .output()
            .expect("psql runs");
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Cuts every connection to the database and refuses new ones for `down`.
    fn outage(&self, down: Duration) {
        self.psql(&format!(
            "ALTER DATABASE \"{0}\" WITH ALLOW_CONNECTIONS false; \
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = '{0}' AND pid <> pg_backend_pid();",
            self.name
        ));
        std::thread::sleep(down);
        self.psql(&format!(
            "ALTER DATABASE \"{}\" WITH ALLOW_CONNECTIONS true;",
            self.name
        ));
    }
}

/// Posts every line; a webhook without a 200 (the service down, or refusing while its database
/// is away) is sent again, as Mango does.
fn send_all(
    lines: Vec<String>,
    tenant: Tenant,
    base: Arc<Mutex<String>>,
    sent: Arc<AtomicU64>,
    resent: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        for line in lines {
            let v: Value = serde_json::from_str(&line).unwrap();
            let path = v["path"].as_str().unwrap().to_string();
            let json = v["json"].to_string();
            let body = signed_form(&tenant.key, &tenant.salt, &json);
            let started = Instant::now();
            loop {
                let url = format!("{}/mango/{}/{path}", base.lock().unwrap(), tenant.id);
                let answer = http
                    .post(url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body.clone())
                    .send();
                if answer.is_ok_and(|r| r.status().is_success()) {
                    break;
                }
                resent.fetch_add(1, Ordering::Relaxed);
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "a webhook got no 200 for a minute"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            sent.fetch_add(1, Ordering::Relaxed);
            // About a busy office's pace, so that faults land among the traffic.
            std::thread::sleep(Duration::from_millis(4));
        }
        done.store(true, Ordering::Relaxed);
    })
}

/// One fault for the CRM, chosen by the seed; returns what it was.
fn crm_fault(sandbox: &Sandbox, rng: &mut SeededRng) -> &'static str {
    let (faults, what) = match rng.below(5) {
        0 => (
            Faults {
                error_rate: 0.4,
                ..Faults::default()
            },
            "5xx",
        ),
        1 => (
            Faults {
                fail_next: vec![429, 429, 429],
                ..Faults::default()
            },
            "429",
        ),
        2 => (
            Faults {
                latency_ms: 400,
                ..Faults::default()
            },
            "slow",
        ),
        3 => (
            Faults {
                hang_next: 1,
                ..Faults::default()
            },
            "no answer",
        ),
        _ => (
            Faults {
                fail_next: vec![500, 502, 503, 504],
                ..Faults::default()
            },
            "5xx burst",
        ),
    };
    sandbox.set_faults(faults);
    what
}

/// The call notes in the CRM, by the `uniq` the service gave each record.
fn notes_by_key(
    http: &reqwest::blocking::Client,
    sandbox: &Sandbox,
) -> BTreeMap<String, Vec<Value>> {
    let mut by_key: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for note in call_notes(http, &sandbox.base_url()) {
        let key = note["params"]["uniq"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        by_key.entry(key).or_default().push(note);
    }
    by_key
}

/// Compares the CRM with the plan of the full traffic (dropped webhooks included): each planned
/// record once, on its user, with its rule ids. A call rebuilt from statistics (its notes say
/// A4b) is one record on a user the full traffic also wrote that call for: statistics name the
/// last party reached, not the offers and transfers before it (docs/reconciliation.md).
fn check_crm(
    figures: &mut Figures,
    notes: &BTreeMap<String, Vec<Value>>,
    plan: &Value,
) -> Vec<String> {
    let mut problems = Vec::new();
    figures.duplicates = notes.values().filter(|n| n.len() > 1).count();
    figures.records_found = notes.len();
    let mut accounted = BTreeSet::new();
    for entry in plan["entries"].as_array().unwrap() {
        let entry_id = entry["entry_id"].as_str().unwrap();
        let prefix = format!("acme/{entry_id}/");
        let planned: BTreeMap<String, &Value> = entry["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (record_key("acme", entry, r), r))
            .collect();
        figures.records_expected += planned.len();
        let got: BTreeMap<&String, &Value> = notes
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, n)| (k, &n[0]))
            .collect();
        accounted.extend(got.keys().map(|k| (*k).clone()));
        if planned.is_empty() {
            if !got.is_empty() {
                problems.push(format!("{entry_id}: nothing planned, in the CRM {got:?}"));
            }
            continue;
        }
        if got.is_empty() {
            figures.missing += planned.len();
            problems.push(format!(
                "{entry_id}: planned {:?}, not in the CRM",
                planned.keys()
            ));
            continue;
        }
        let result = |note: &Value| {
            note["params"]["call_result"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        };
        if got.values().any(|n| result(n).contains("A4b")) {
            figures.calls_recovered_from_statistics += 1;
            let users: BTreeSet<u64> = planned
                .values()
                .filter_map(|r| r["crm_user_id"].as_u64())
                .collect();
            for (key, note) in &got {
                let user = note["responsible_user_id"].as_u64().unwrap_or(0);
                if !users.contains(&user) {
                    figures.wrong += 1;
                    problems.push(format!(
                        "{key}: recovered on user {user}, planned {users:?}"
                    ));
                }
            }
            continue;
        }
        for (key, record) in &planned {
            let Some(note) = got.get(key) else {
                figures.missing += 1;
                problems.push(format!("{key}: planned, not in the CRM"));
                continue;
            };
            let user = record["crm_user_id"].as_u64();
            if note["responsible_user_id"].as_u64() != user {
                figures.wrong += 1;
                problems.push(format!(
                    "{key}: on user {} not {user:?}",
                    note["responsible_user_id"]
                ));
            }
            let written = result(note);
            for rule in record["reasons"].as_array().unwrap() {
                let rule = rule.as_str().unwrap();
                if !written.contains(rule) {
                    figures.wrong += 1;
                    problems.push(format!("{key}: rule {rule} not in {written:?}"));
                }
            }
        }
        for key in got.keys().filter(|k| !planned.contains_key(**k)) {
            problems.push(format!("{key}: in the CRM, not planned"));
        }
    }
    let stray: Vec<&String> = notes.keys().filter(|k| !accounted.contains(*k)).collect();
    if !stray.is_empty() {
        problems.push(format!("records of no planned call: {stray:?}"));
    }
    problems
}

/// The office's traffic, as the emulated PBX lives it: every event is observed by the PBX (so
/// its statistics know the call), and the webhook lines the sender will post, without those
/// of the calls cut by an outage. Returns the lines, the file of all events (for `simulate`),
/// the dropped count and the period the calls cover.
fn traffic(
    dir: &std::path::Path,
    vpbx: &Vpbx,
    calls: u64,
    seed: u64,
) -> (Vec<String>, std::path::PathBuf, u64, (i64, i64)) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let config = PlayConfig {
        calls,
        seed,
        calls_per_second: 30.0,
        time_compression: 300.0,
        staff: StaffConfig::default(),
        ..PlayConfig::default()
    };
    // Office time ends well before now: reconciliation asks for a period in the past.
    let start = now - 4 * 3600;
    let mut rng = SeededRng::new(seed ^ 0xd809);
    let mut cut_at: BTreeMap<String, (usize, Option<usize>)> = BTreeMap::new();
    let (mut lines, mut dropped, mut last) = (Vec::new(), 0, start);
    let all = dir.join("events.jsonl");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&all).unwrap());
    for event in callbridge_traffic::Generator::new(config.traffic_config(start)) {
        vpbx.observe(&event);
        last = last.max(event.timestamp());
        let (path, json) = callbridge_mango::wire::to_json(&event);
        let line = json!({"path": path, "json": json}).to_string();
        writeln!(file, "{line}").unwrap();
        // One call in eight is cut: half from its first webhook, half from a later one.
        let (seen, cut) = cut_at
            .entry(event.entry_id().to_string())
            .or_insert_with(|| {
                let cut = (rng.below(8) == 0).then(|| {
                    if rng.below(2) == 0 {
                        0
                    } else {
                        1 + rng.below(6)
                    }
                });
                (0, cut)
            });
        let drop = cut.is_some_and(|at| *seen >= at);
        *seen += 1;
        if drop {
            dropped += 1;
        } else {
            lines.push(line);
        }
    }
    file.flush().unwrap();
    (lines, all, dropped, (start - 60, last + 60))
}

/// `POST /api/v1/tenants/acme/reconcile` for the period; the run's report.
fn reconcile(http: &reqwest::blocking::Client, base: &str, (from, to): (i64, i64)) -> Value {
    let answer = http
        .post(format!("{base}/api/v1/tenants/acme/reconcile"))
        .bearer_auth(TOKEN)
        .json(&json!({"from": from, "to": to}))
        .send()
        .unwrap();
    let status = answer.status();
    let report: Value = answer.json().unwrap_or(Value::Null);
    assert!(status.is_success(), "reconcile: {status} {report}");
    report
}

fn chaos_run(seed: u64, calls: u64, postgres: bool) -> Figures {
    let started = Instant::now();
    let mut figures = Figures {
        seed,
        backend: if postgres { "postgres" } else { "sqlite" },
        ..Figures::default()
    };
    let mut rng = SeededRng::new(seed);
    let rt = runtime();
    let dir = temp_dir(&format!("chaos-{}-{seed}", figures.backend));
    let vpbx = Vpbx::for_office(seed, &StaffConfig::default());
    // Speech analytics off: transcripts wait on the PBX's analysis, which has nothing to do
    // with what is checked here.
    let settings_toml = vpbx.staff().settings_toml().replace(
        "[speech_analytics]\nsave = true",
        "[speech_analytics]\nsave = false",
    );
    let settings = dir.join("settings.toml");
    std::fs::write(&settings, &settings_toml).unwrap();
    let (lines, events, dropped, period) = traffic(&dir, &vpbx, calls, seed);
    figures.webhooks_dropped = dropped;
    let plan = simulate(&settings, &events);
    let sandbox = start_sandbox(&rt, &crm_users(&settings), json!({}));
    let mango = rt.block_on(async {
        start_vpbx_api(
            tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
            VpbxConfig {
                stats_delay: Duration::from_millis(200),
                stats_poll_interval: Duration::from_millis(200),
                ..VpbxConfig::new("k-acme", "s-acme-0000000000000000000000000", vpbx.clone())
            },
        )
        .await
        .unwrap()
    });
    let tenant = Tenant {
        id: "acme".into(),
        key: "k-acme".into(),
        salt: "s-acme-0000000000000000000000000".into(),
        settings: settings.clone(),
        amocrm: Some(amocrm_section(&sandbox)),
    };
    let database = postgres.then(|| {
        let url = fresh_postgres_database("chaos");
        let name = url.rsplit('/').next().unwrap().to_string();
        Database { url, name }
    });
    let options = Options {
        database_url: database.as_ref().map(|d| d.url.clone()),
        grace: Some(30),
        settle: Some(1),
        extra: format!(
            "mango_api_url = \"{}\"\nreconcile = {{ poll_ms = 250, wait_seconds = 30 }}",
            mango.base_url()
        ),
        ..Options::default()
    };
    let mut server = Server::start_with(&dir, std::slice::from_ref(&tenant), &options);
    let base = Arc::new(Mutex::new(server.base.clone()));
    let (sent, resent, done) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let sender = send_all(
        lines,
        tenant.clone(),
        base.clone(),
        sent.clone(),
        resent.clone(),
        done.clone(),
    );
    // Faults while the webhooks arrive, and a little after, while delivery runs.
    let mut after_traffic = 0;
    while after_traffic < 3 {
        std::thread::sleep(Duration::from_millis(300 + rng.below(900) as u64));
        if done.load(Ordering::Relaxed) {
            after_traffic += 1;
        }
        match rng.below(if postgres { 4 } else { 3 }) {
            0 => {
                server.kill();
                figures.kills += 1;
                std::thread::sleep(Duration::from_millis(rng.below(400) as u64));
                server = Server::start_with(&dir, std::slice::from_ref(&tenant), &options);
                *base.lock().unwrap() = server.base.clone();
            }
            1 | 2 => {
                crm_fault(&sandbox, &mut rng);
                figures.crm_faults += 1;
            }
            _ => {
                let db = database.as_ref().unwrap();
                db.outage(Duration::from_millis(200 + rng.below(1500) as u64));
                figures.database_drops += 1;
            }
        }
    }
    sender.join().expect("the sender finished");
    figures.webhooks_sent = sent.load(Ordering::Relaxed);
    figures.resent_after_no_answer = resent.load(Ordering::Relaxed);
    // The faults end; reconciliation brings back the calls whose webhooks never left, and
    // whatever is still pending must now land, once.
    sandbox.set_faults(Faults::default());
    let http = client();
    let reconciled = reconcile(&http, &server.base, period);
    assert!(reconciled["bad_rows"] == json!([]), "{reconciled}");
    wait_delivered(
        &http,
        &server.base,
        "acme",
        plan["entries"].as_array().unwrap().len(),
        Duration::from_secs(240),
    );
    let parked = parked_calls(&http, &server.base, "acme");
    assert!(parked.is_empty(), "calls parked: {parked:?}");
    // The CRM's own count, before the test's reads add to it.
    let stats = sandbox.stats();
    figures.max_crm_requests_in_one_second = stats.max_requests_in_any_second;
    let problems = check_crm(&mut figures, &notes_by_key(&http, &sandbox), &plan);
    figures.seconds = started.elapsed().as_secs_f64();
    note_figures(&figures.to_string());
    assert!(problems.is_empty(), "{figures}\n{}", problems.join("\n"));
    // A second run finds every call planned and appends nothing.
    let again = reconcile(&http, &server.base, period);
    assert_eq!(again["events_appended"], 0, "{again}");
    assert_eq!(again["recovered"], 0, "{again}");
    assert_eq!(figures.duplicates, 0, "{figures}");
    assert_eq!(figures.missing, 0, "{figures}");
    assert_eq!(figures.wrong, 0, "{figures}");
    assert!(
        figures.max_crm_requests_in_one_second <= 7,
        "{figures} {stats:?}"
    );
    assert!(!stats.blocked, "{stats:?}");
    // Scripted 429s are not counted here: these would be the limiter's own overshoots.
    assert_eq!(stats.rate_limited, 0, "{stats:?}");
    drop(server);
    drop(rt);
    if let Some(db) = database {
        drop_postgres_database(&db.url);
    }
    figures
}

fn runs(postgres: bool) {
    let n = env_number("CALLBRIDGE_TEST_CHAOS_RUNS", 1);
    let calls = env_number("CALLBRIDGE_TEST_CHAOS_CALLS", 60);
    let first_seed = env_number("CALLBRIDGE_TEST_CHAOS_SEED", 11);
    for i in 0..n {
        chaos_run(first_seed + i, calls, postgres);
    }
}

#[test]
fn chaos_on_sqlite_loses_and_doubles_nothing() {
    runs(false);
}

#[test]
fn chaos_on_postgres_loses_and_doubles_nothing() {
    runs(true);
}
