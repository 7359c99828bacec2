//! Reconciliation end to end (issue 15): the real `callbridge serve` binary, the Mango emulator
//! (its VPBX API serving `stats/request` and `stats/result`, its player posting signed
//! webhooks) and the amoCRM sandbox, all over HTTP. An office's traffic is played with about 10%
//! of its webhooks dropped before they reach the service (whole calls, and calls cut part-way as
//! by an outage), then `callbridge reconcile` recovers what is missing from Mango's statistics.
//! Every call must then be in the CRM exactly once, on the user the full traffic would have put
//! it on; a second reconciliation writes nothing.

mod sandboxes;
mod support;

use callbridge_mango_sandbox::{play, start_vpbx_api, PlayConfig, Vpbx, VpbxConfig};
use callbridge_traffic::StaffConfig;
use sandboxes::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};
use support::*;

const TENANT: &str = "office";
const KEY: &str = "reconcile-key";
const SALT: &str = "reconcile-salt-0123456789abcdef0123";
/// An office and traffic whose cut calls take every road of a run: never seen (recovered), seen
/// in part (merged), and completed by grace with nothing written though answered (replanned).
/// Should the generator change, pick a seed that still does (the test says which is missing).
const SEED: u64 = 12;
const CALLS: u64 = 150;

/// Call notes in the CRM: uniq (the record's key) -> (responsible user, call_result), and the
/// uniqs written more than once.
fn crm_calls(
    http: &reqwest::blocking::Client,
    base: &str,
) -> (BTreeMap<String, (u64, String)>, Vec<String>) {
    let mut calls = BTreeMap::new();
    let mut twice = Vec::new();
    for entity in ["contacts", "leads"] {
        for note in crm_list(
            http,
            base,
            &format!(
                "/api/v4/{entity}/notes?filter[note_type][]=call_in&filter[note_type][]=call_out"
            ),
            "notes",
        ) {
            let uniq = note["params"]["uniq"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let user = note["responsible_user_id"].as_u64().unwrap_or(0);
            let result = note["params"]["call_result"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if calls.insert(uniq.clone(), (user, result)).is_some() {
                twice.push(uniq);
            }
        }
    }
    (calls, twice)
}

/// Waits until nothing moves: the planned entries and the outbox stay the same, with nothing
/// pending, for `quiet`.
fn wait_settled(http: &reqwest::blocking::Client, base: &str, quiet: Duration) -> Value {
    let start = Instant::now();
    let mut last = Value::Null;
    let mut since = Instant::now();
    loop {
        let t = get(http, &format!("{base}/api/v1/tenants/{TENANT}"));
        let now = serde_json::json!([t["entries"], t["outbox"]]);
        if now != last {
            last = now;
            since = Instant::now();
        } else if t["outbox"]["pending"].as_i64() == Some(0) && since.elapsed() >= quiet {
            return t;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "still moving after 2 minutes: {t}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn reconcile_cli(base: &str, from: i64, to: i64) -> Value {
    let out = Command::new(bin())
        .args(["reconcile", "--tenant", TENANT, "--url", base])
        .args(["--from", &from.to_string(), "--to", &to.to_string()])
        .env("CALLBRIDGE_ADMIN_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "reconcile: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn dropped_webhooks_are_recovered_from_statistics_once_on_the_right_user() {
    let rt = runtime();
    let dir = temp_dir("reconcile");
    let staff_config = StaffConfig::default();
    let vpbx = Vpbx::for_office(SEED, &staff_config);
    // Speech analytics off: transcripts wait on the PBX's analysis, which has nothing to do
    // with what is checked here and would keep items pending.
    let settings_toml = vpbx.staff().settings_toml().replace(
        "[speech_analytics]\nsave = true",
        "[speech_analytics]\nsave = false",
    );
    assert!(settings_toml.contains("save = false"), "{settings_toml}");
    let settings = dir.join("settings.toml");
    std::fs::write(&settings, &settings_toml).unwrap();
    let users: BTreeSet<u64> = settings_toml
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once('=')?;
            k.trim()
                .ends_with("crm_user_id")
                .then(|| v.trim().parse().ok())?
        })
        .collect();
    let sandbox = start_sandbox(&rt, &users, serde_json::json!({}));
    let api = rt.block_on(async {
        start_vpbx_api(
            tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
            VpbxConfig {
                stats_delay: Duration::from_millis(300),
                stats_poll_interval: Duration::from_millis(200),
                ..VpbxConfig::new(KEY, SALT, vpbx.clone())
            },
        )
        .await
        .unwrap()
    });
    let server = Server::start_with(
        &dir,
        &[Tenant {
            id: TENANT.into(),
            key: KEY.into(),
            salt: SALT.into(),
            settings: settings.clone(),
            amocrm: Some(format!(
                "base_url = \"{}\"\nlong_lived_token = \"sandbox-token\"\ntimeout_seconds = 5\n",
                sandbox.base_url()
            )),
        }],
        &Options {
            settle: Some(1),
            grace: Some(2),
            extra: format!(
                "mango_api_url = \"{}\"\nreconcile = {{ poll_ms = 250, wait_seconds = 30 }}",
                api.base_url()
            ),
            ..Options::default()
        },
    );

    // A day of the office, compressed: 150 calls started within 5 s, each call's own minutes
    // played 300 times faster.
    let mut config = PlayConfig {
        webhook_base: format!("{}/mango/{TENANT}/", server.base),
        api_key: KEY.into(),
        api_salt: SALT.into(),
        calls: CALLS,
        calls_per_second: 30.0,
        seed: SEED,
        time_compression: 300.0,
        dropped_call_rate: 0.13,
        staff: staff_config,
        ..PlayConfig::default()
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let start_unix = config.default_start(now);
    config.start_unix = Some(start_unix);
    let played = rt.block_on(play(&config, &vpbx, |_| {})).unwrap();
    assert!(played.all_delivered(), "{:?}", played.failures);
    let all_webhooks = played.events_sent + played.webhooks_dropped;
    let dropped_share = played.webhooks_dropped as f64 / all_webhooks as f64;
    assert!(
        (0.08..=0.13).contains(&dropped_share),
        "dropped {} of {all_webhooks} webhooks",
        played.webhooks_dropped
    );

    // What the full traffic plans: the same generator's events, through `simulate`.
    let events = dir.join("events.jsonl");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&events).unwrap());
        for event in callbridge_traffic::Generator::new(config.traffic_config(start_unix)) {
            let (path, json) = callbridge_mango::wire::to_json(&event);
            writeln!(f, "{}", serde_json::json!({"path": path, "json": json})).unwrap();
        }
    }
    let plan = simulate(&settings, &events);
    let planned = plan["entries"].as_array().unwrap();
    assert_eq!(planned.len() as u64, CALLS, "simulate plans every call");
    // Per entry: the record keys and their users.
    let mut want: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for e in planned {
        let entry = e["entry_id"].as_str().unwrap().to_string();
        let records = want.entry(entry.clone()).or_default();
        for r in e["records"].as_array().unwrap() {
            let conv = r["conversation"]
                .as_u64()
                .map_or("missed".to_string(), |c| c.to_string());
            records.insert(
                format!("{TENANT}/{entry}/{conv}/call"),
                r["crm_user_id"].as_u64().unwrap(),
            );
        }
    }

    let http = client();
    // Before reconciliation: what the webhooks alone gave.
    let before = wait_settled(&http, &server.base, Duration::from_secs(3));
    let planned_before = before["entries"].as_i64().unwrap();
    assert!(
        planned_before < CALLS as i64,
        "some calls must be missing before reconciliation: {before}"
    );

    let period = (start_unix - 60, now.max(start_unix) + 120);
    let to = period.1.min(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64,
    );
    let first = reconcile_cli(&server.base, period.0, to);
    assert_eq!(first["rows"].as_u64(), Some(CALLS), "{first}");
    assert_eq!(first["bad_rows"], serde_json::json!([]), "{first}");
    for road in ["recovered", "merged", "replanned"] {
        assert!(first[road].as_u64().unwrap() > 0, "no call {road}: {first}");
    }
    assert!(first["events_appended"].as_u64().unwrap() > 0, "{first}");

    let after = wait_settled(&http, &server.base, Duration::from_secs(3));
    assert_eq!(
        after["entries"].as_u64(),
        Some(CALLS),
        "every call planned: {after}"
    );
    assert_eq!(after["outbox"]["parked"].as_i64(), Some(0), "{after}");

    // Exactly once, on the right user.
    std::thread::sleep(Duration::from_millis(1200));
    let stats = sandbox.stats();
    let (calls, twice) = crm_calls(&http, &sandbox.base_url());
    assert!(twice.is_empty(), "written more than once: {twice:?}");
    let mut problems = Vec::new();
    let mut recovered_notes = 0;
    for (entry, records) in &want {
        let got: BTreeMap<&String, &(u64, String)> = calls
            .iter()
            .filter(|(k, _)| k.starts_with(&format!("{TENANT}/{entry}/")))
            .collect();
        if records.is_empty() {
            if !got.is_empty() {
                problems.push(format!("{entry}: nothing planned, but in the CRM: {got:?}"));
            }
            continue;
        }
        if got.is_empty() {
            let served = http
                .get(format!(
                    "{}/api/v1/entries/{entry}?tenant={TENANT}",
                    server.base
                ))
                .bearer_auth(TOKEN)
                .send()
                .and_then(|r| r.text())
                .unwrap_or_default();
            problems.push(format!(
                "{entry}: planned {records:?}, not in the CRM; the service planned {served}"
            ));
            continue;
        }
        let from_statistics = got.values().any(|(_, r)| r.contains("A4b"));
        recovered_notes += usize::from(from_statistics);
        if from_statistics {
            // Rebuilt from a statistics row: one record, on a user the full traffic also
            // wrote this call for (statistics name the last party reached, not the offers
            // and transfers before it).
            let users: BTreeSet<u64> = records.values().copied().collect();
            for (key, (user, _)) in &got {
                if !users.contains(user) {
                    problems.push(format!(
                        "{key}: recovered on user {user}, the full traffic planned {records:?}"
                    ));
                }
            }
        } else {
            let got: BTreeMap<String, u64> =
                got.iter().map(|(k, (u, _))| ((*k).clone(), *u)).collect();
            if &got != records {
                problems.push(format!("{entry}: in the CRM {got:?}, planned {records:?}"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(recovered_notes > 0, "no call note says A4b");
    assert!(stats.max_requests_in_any_second <= 7, "{stats:?}");

    // A second run finds everything planned and writes nothing.
    let outbox_before =
        get(&http, &format!("{}/api/v1/tenants/{TENANT}", server.base))["outbox"].clone();
    let second = reconcile_cli(&server.base, period.0, to);
    assert_eq!(second["events_appended"].as_u64(), Some(0), "{second}");
    assert_eq!(second["recovered"].as_u64(), Some(0), "{second}");
    assert_eq!(second["merged"].as_u64(), Some(0), "{second}");
    assert_eq!(second["replanned"].as_u64(), Some(0), "{second}");
    assert_eq!(second["already_planned"].as_u64(), Some(CALLS), "{second}");
    std::thread::sleep(Duration::from_secs(2));
    let t = get(&http, &format!("{}/api/v1/tenants/{TENANT}", server.base));
    assert_eq!(t["outbox"], outbox_before, "the second run wrote nothing");
    let (calls_again, _) = crm_calls(&http, &sandbox.base_url());
    assert_eq!(calls_again.len(), calls.len());

    println!(
        "reconcile e2e: calls {CALLS}, webhooks sent {}, dropped {} ({:.1}%), calls cut {}, planned before {planned_before}, recovered {}, merged {}, replanned {}, call notes {}, recovered notes {recovered_notes}, max CRM requests in a second {}",
        played.events_sent,
        played.webhooks_dropped,
        dropped_share * 100.0,
        played.calls_cut,
        first["recovered"],
        first["merged"],
        first["replanned"],
        calls.len(),
        stats.max_requests_in_any_second
    );
    drop(server);
    rt.block_on(async {
        let _ = api.shutdown().await;
        sandbox.shutdown().await;
    });
}
