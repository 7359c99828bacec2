//! `bench/sign-bodies.js`, the body step of `scripts/bench-vs-peer.sh`, signs what
//! `callbridge generate` writes so that callbridge's own form reader and signature check accept
//! every body: a signer that disagreed with `crates/mango/src/sign.rs` would turn the benchmark
//! into a measurement of 403s. Its output is also what `bench/webhooks.lua` splits (one
//! `PATH<TAB>BODY` line a request), so the line format is checked here too.
//!
//! Needs Node.js (the benchmark needs it anyway); where `node` is missing the test says so and
//! checks nothing.

use callbridge_mango::{verify, WebhookForm};
use serde_json::Value;
use std::collections::HashSet;
use std::path::Path;
use std::process::Command;

const API_KEY: &str = "bench-key";
const SALT: &str = "0123456789abcdef0123456789abcdef";

fn sign_bodies(events: &Path, bodies: &Path) -> std::process::Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/sign-bodies.js");
    Command::new("node")
        .arg(script)
        .arg(events)
        .arg(bodies)
        .args(["bench", API_KEY, SALT])
        .output()
        .unwrap()
}

fn node_available() -> bool {
    Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success())
}

#[test]
fn signed_bodies_pass_callbridges_signature_check_and_keep_every_event_the_peer_handles() {
    if !node_available() {
        eprintln!("NOT RUN: node is not installed (the side-by-side benchmark needs it)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    let bodies = dir.path().join("bodies.tsv");
    let generated = Command::new(env!("CARGO_BIN_EXE_callbridge"))
        .args(["generate", "--calls", "40", "--out"])
        .arg(&events)
        .output()
        .unwrap();
    assert!(generated.status.success(), "{generated:?}");

    let signed = sign_bodies(&events, &bodies);
    assert!(signed.status.success(), "{signed:?}");

    let peer_paths = [
        "events/call",
        "events/summary",
        "events/recording",
        "events/dtmf",
    ];
    let expected: Vec<(String, Value)> = std::fs::read_to_string(&events)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .map(|event| {
            (
                event["path"].as_str().unwrap().to_owned(),
                event["json"].clone(),
            )
        })
        .filter(|(path, _)| peer_paths.contains(&path.as_str()))
        .collect();
    let lines: Vec<String> = std::fs::read_to_string(&bodies)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        lines.len(),
        expected.len(),
        "one signed body per event the peer handles"
    );
    assert!(lines.len() > 200, "40 calls make hundreds of events");

    let mut distinct = HashSet::new();
    for (line, (path, json)) in lines.iter().zip(&expected) {
        let (url_path, body) = line.split_once('\t').expect("PATH<TAB>BODY");
        assert!(!body.contains('\t'), "one TAB a line: {line}");
        assert_eq!(url_path, format!("/mango/bench/{path}"));
        let form = WebhookForm::read(body.as_bytes());
        assert_eq!(form.vpbx_api_key.as_deref(), Some(API_KEY));
        let text = form.json.expect("json field");
        assert!(
            verify(
                API_KEY,
                &text,
                SALT,
                form.sign.as_deref().expect("sign field")
            ),
            "signature refused for {text}"
        );
        assert_eq!(&serde_json::from_str::<Value>(&text).unwrap(), json);
        assert!(
            distinct.insert(body.to_owned()),
            "every body different: {body}"
        );
    }

    // A line that is not JSON is named, not skipped.
    std::fs::write(
        &events,
        "{\"path\":\"events/call\",\"json\":{}}\nnot json\n",
    )
    .unwrap();
    let refused = sign_bodies(&events, &bodies);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("events.jsonl:2: not JSON"), "{stderr}");
}
