//! The amoCRM sandbox in the background of a blocking end-to-end test. A module of its own
//! (not in `support`), so only the tests that run a sandbox link it.
#![allow(dead_code)]

use crate::support::get;
use callbridge_amocrm_sandbox::{Sandbox, SandboxConfig, Seed};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

/// Runs the sandboxes (and any fake Mango API) in the background of a blocking test.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Starts the amoCRM sandbox on a random loopback port, its long-lived token `sandbox-token`,
/// knowing `users` as CRM users; `extra` adds to (or replaces) keys of its seed.
pub fn start_sandbox(rt: &tokio::runtime::Runtime, users: &BTreeSet<u64>, extra: Value) -> Sandbox {
    let mut seed = json!({
        "long_lived_token": "sandbox-token",
        "users": users.iter().map(|id| json!({"id": id, "name": format!("User {id}")})).collect::<Vec<_>>(),
    });
    if let (Some(seed), Some(extra)) = (seed.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            seed.insert(k.clone(), v.clone());
        }
    }
    let config = SandboxConfig {
        seed: Seed::from_json_str(&seed.to_string()).unwrap(),
        ..SandboxConfig::default()
    };
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        callbridge_amocrm_sandbox::start(listener, config)
            .await
            .unwrap()
    })
}

/// Every CRM user id a settings file names, so the sandbox knows them as users.
pub fn crm_users(settings: &Path) -> BTreeSet<u64> {
    let text = std::fs::read_to_string(settings).unwrap();
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once('=')?;
            if k.trim().ends_with("crm_user_id") {
                v.trim().parse().ok()
            } else {
                None
            }
        })
        .collect()
}

pub fn amocrm_section(sandbox: &Sandbox) -> String {
    format!(
        "base_url = \"{}\"\nlong_lived_token = \"sandbox-token\"\ntimeout_seconds = 5\n",
        sandbox.base_url()
    )
}

/// A stand-in for Mango's `queries/recording_transcripts`: every recording has a transcript.
pub fn start_fake_mango(rt: &tokio::runtime::Runtime) -> String {
    use axum::routing::post;
    async fn transcripts(body: String) -> axum::Json<Value> {
        let form: BTreeMap<String, String> = form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect();
        let json: Value = serde_json::from_str(form.get("json").map_or("{}", String::as_str))
            .unwrap_or(Value::Null);
        let ids: Vec<String> = json["recording_id"]
            .as_str()
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_default();
        axum::Json(json!({"data": ids.iter().map(|id| json!({
            "recording_id": id,
            "phrases": [["operator", format!("Hello, this is the recording {id}")], ["client", "I'd like to order"]],
        })).collect::<Vec<_>>()}))
    }
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app =
            axum::Router::new().route("/vpbx/queries/recording_transcripts", post(transcripts));
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/vpbx/")
    })
}

/// Reads a list endpoint of the sandbox through its amoCRM API, every page (204 = empty).
pub fn crm_list(http: &reqwest::blocking::Client, base: &str, path: &str, key: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for page in 1.. {
        let sep = if path.contains('?') { '&' } else { '?' };
        let url = format!("{base}{path}{sep}limit=250&page={page}");
        let mut r = http.get(&url).bearer_auth("sandbox-token").send().unwrap();
        if r.status().as_u16() == 429 {
            // The worker may still be sending call cards: the account's second is shared.
            std::thread::sleep(Duration::from_millis(1500));
            r = http.get(&url).bearer_auth("sandbox-token").send().unwrap();
        }
        // Stay well inside the account's 7 requests per second the worker also uses.
        std::thread::sleep(Duration::from_millis(300));
        if r.status().as_u16() == 204 {
            break;
        }
        assert!(r.status().is_success(), "{path}: {}", r.status());
        let v: Value = r.json().unwrap();
        let items = v["_embedded"][key].as_array().cloned().unwrap_or_default();
        let n = items.len();
        out.extend(items);
        if n < 250 {
            break;
        }
    }
    out
}

pub fn call_notes(http: &reqwest::blocking::Client, base: &str) -> Vec<Value> {
    let mut notes = Vec::new();
    for entity in ["contacts", "leads"] {
        notes.extend(crm_list(
            http,
            base,
            &format!(
                "/api/v4/{entity}/notes?filter[note_type][]=call_in&filter[note_type][]=call_out"
            ),
            "notes",
        ));
    }
    notes
}

/// Waits until the tenant has `entries` planned entries and nothing pending; returns the counts.
pub fn wait_delivered(
    http: &reqwest::blocking::Client,
    base: &str,
    tenant: &str,
    entries: usize,
    timeout: Duration,
) -> Value {
    let start = Instant::now();
    loop {
        let t = get(http, &format!("{base}/api/v1/tenants/{tenant}"));
        let outbox = t["outbox"].clone();
        let planned = t["entries"].as_i64().unwrap_or(0);
        if planned >= entries as i64 && outbox["pending"].as_i64() == Some(0) {
            // Let the worker's last requests leave the account's one-second window before the
            // test reads the CRM itself.
            std::thread::sleep(Duration::from_millis(1200));
            return outbox;
        }
        if start.elapsed() > timeout {
            panic!("tenant {tenant}: still pending after {timeout:?}: {t}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn record_key(tenant: &str, entry: &Value, record: &Value) -> String {
    let conv = record["conversation"]
        .as_u64()
        .map_or("missed".to_string(), |c| c.to_string());
    format!(
        "{tenant}/{}/{conv}/call",
        entry["entry_id"].as_str().unwrap()
    )
}

pub fn planned_keys(tenant: &str, plan: &Value) -> BTreeSet<String> {
    plan["entries"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|e| {
            e["records"]
                .as_array()
                .unwrap()
                .iter()
                .map(move |r| record_key(tenant, e, r))
        })
        .collect()
}

/// The tenant's call records the worker parked (gave up on until someone looks).
pub fn parked_calls(http: &reqwest::blocking::Client, base: &str, tenant: &str) -> Vec<Value> {
    let parked = get(
        http,
        &format!("{base}/api/v1/tenants/{tenant}/outbox?state=parked"),
    );
    parked["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["kind"] == "call")
        .cloned()
        .collect()
}
