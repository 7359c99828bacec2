//! The amoCRM sandbox in the background of a blocking end-to-end test. A module of its own
//! (not in `support`), so only the tests that run a sandbox link it.
#![allow(dead_code)]

use callbridge_amocrm_sandbox::{Sandbox, SandboxConfig, Seed};
use serde_json::{json, Value};
use std::collections::BTreeSet;

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
