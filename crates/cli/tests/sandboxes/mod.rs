//! The amoCRM sandbox in the background of a blocking end-to-end test. A module of its own
//! (not in `support`), so only the tests that run a sandbox link it.
#![allow(dead_code)]

use callbridge_amocrm_sandbox::{Sandbox, SandboxConfig, Seed};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;

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
