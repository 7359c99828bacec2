//! The state file survives a restart; bad seeds and state files are refused with the field named.

mod support;

use callbridge_amocrm_sandbox::{start, SandboxConfig, SandboxError, Seed};
use serde_json::json;
use std::path::PathBuf;
use support::*;

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("amocrm-sandbox-state")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

#[tokio::test]
async fn state_file_survives_a_restart() {
    let dir = scratch("restart");
    let path = dir.join("state.json");
    let cfg = || SandboxConfig {
        state_file: Some(path.clone()),
        ..config()
    };
    let sandbox = start_with(cfg()).await;
    // Written at start already.
    assert!(path.exists());
    let api = Api::new(&sandbox);
    let r = api
        .post(
            "/api/v4/contacts",
            &json!([{"name": "Persisted", "custom_fields_values": [{"field_code": "PHONE", "values": [{"value": "+7 812 555-00-11"}]}]}]),
        )
        .await;
    let contact = r.json["_embedded"]["contacts"][0]["id"].as_u64().unwrap();
    let r = api
        .post("/api/v4/calls", &json!([{"direction": "outbound", "duration": 3, "source": "s", "phone": "88125550011", "uniq": "keep-me"}]))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    sandbox.shutdown().await;

    let on_disk: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(on_disk["format"], 1);
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        1,
        "only the state file remains: {leftovers:?}"
    );

    // Restart with a different seed: the file wins.
    let mut other = cfg();
    other.seed = Seed::from_json_str(
        r#"{"contacts": [{"name": "Seed only", "phone": "+7 999 000-00-00"}]}"#,
    )
    .unwrap();
    let sandbox = start_with(other).await;
    let api = Api::new(&sandbox);
    assert_eq!(api.contact_id("+78125550011").await, contact);
    assert_eq!(
        api.get("/api/v4/contacts?query=Seed%20only").await.status,
        204
    );
    let notes = api.get(&format!("/api/v4/contacts/{contact}/notes")).await;
    assert_eq!(
        notes.json["_embedded"]["notes"][0]["params"]["uniq"],
        "keep-me"
    );
    assert_eq!(notes.json["_embedded"]["notes"][0]["note_type"], "call_out");
    // New ids continue after the stored ones.
    let r = api
        .post("/api/v4/contacts", &json!([{"name": "Next"}]))
        .await;
    assert!(r.json["_embedded"]["contacts"][0]["id"].as_u64().unwrap() > contact);
    sandbox.shutdown().await;
}

#[tokio::test]
async fn a_corrupt_state_file_is_refused_naming_the_file() {
    let dir = scratch("corrupt");
    let path = dir.join("state.json");
    std::fs::write(&path, r#"{"format": 1, "account": 5}"#).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = start(
        listener,
        SandboxConfig {
            state_file: Some(path.clone()),
            ..config()
        },
    )
    .await
    .err()
    .expect("refused");
    let text = err.to_string();
    assert!(matches!(err, SandboxError::StateFile { .. }));
    assert!(
        text.contains("state.json") && text.contains("account"),
        "{text}"
    );
}

#[test]
fn seed_errors_name_the_field() {
    let cases = [
        (r#"{"users": [{"id": 1, "nme": "x"}]}"#, "users[0]"),
        (
            r#"{"contacts": [{"name": "a", "leads": [{"name": "l", "status": "pending"}]}]}"#,
            "contacts[0].leads[0].status",
        ),
        (
            r#"{"contacts": [{"name": "a", "responsible_user_id": 77}]}"#,
            "contacts[0].responsible_user_id",
        ),
        (
            r#"{"contacts": [{"name": "a", "phone": "call me"}]}"#,
            "contacts[0].phone",
        ),
        (
            r#"{"users": [{"id": 5, "name": "a"}, {"id": 5, "name": "b"}]}"#,
            "users[1].id",
        ),
        (
            r#"{"contacts": [{"name": "a", "customers": [{"name": " "}]}]}"#,
            "contacts[0].customers[0].name",
        ),
        (r#"{"companies": [{"name": ""}]}"#, "companies[0].name"),
        (
            r#"{"companies": [{"name": "Acme", "phone": "none"}]}"#,
            "companies[0].phone",
        ),
        (
            r#"{"companies": [{"name": "Acme", "responsible_user_id": 77}]}"#,
            "companies[0].responsible_user_id",
        ),
        (r#"{"users": []}"#, "users"),
        (r#"{"long_lived_token": ""}"#, "long_lived_token"),
        (
            r#"{"oauth_clients": [{"client_id": "a", "client_secret": "", "redirect_uri": "x"}]}"#,
            "oauth_clients[0].client_secret",
        ),
        (r#"{"tokne": "x"}"#, "tokne"),
        (r#"{"users": "#, "EOF"),
    ];
    for (text, needle) in cases {
        let err = Seed::from_json_str(text).expect_err(text).to_string();
        assert!(err.starts_with("seed: "), "{err}");
        assert!(err.contains(needle), "{text}: {err} should name {needle}");
    }
    let seed = Seed::from_json_str("{}").unwrap();
    assert_eq!(seed.long_lived_token, "sandbox-token");
    assert!(seed.users.len() >= 2);
    assert!(seed.contacts.is_empty());
}
