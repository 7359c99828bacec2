//! `POST /api/v1/tenants/{id}/reconcile` refuses what it cannot do, saying what is wrong: a bad
//! period names the field, Mango's refusal comes back in its words (502), never with a secret.
//! The `[reconcile]` keys are checked at start. (The whole run, end to end, is in
//! `crates/cli/tests/reconcile.rs`.)

use axum::routing::post;
use axum::Router;
use callbridge_server::config::Config;
use serde_json::{json, Value};

const TOKEN: &str = "reconcile-admin-token";
const KEY: &str = "vpbx-key-reconcile";
const SALT: &str = "vpbx-salt-reconcile-0000000000000";

/// A VPBX API that refuses every statistics request as a wrong signature.
async fn refusing_mango() -> String {
    let app = Router::new().route(
        "/vpbx/stats/request",
        post(|| async { (axum::http::StatusCode::UNAUTHORIZED, "{\"code\":3102}") }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/vpbx/")
}

fn config_file(dir: &std::path::Path, extra: &str) -> std::path::PathBuf {
    let file = dir.join(format!("callbridge-{}.toml", extra.len()));
    std::fs::write(
        &file,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"data\"\nadmin_token = \"{TOKEN}\"\n\
             directory_refresh_seconds = 0\n{extra}\n\
             [[tenants]]\nid = \"acme\"\nmango_api_key = \"{KEY}\"\nmango_api_salt = \"{SALT}\"\n"
        ),
    )
    .unwrap();
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_naming_the_fault() {
    let mango = refusing_mango().await;
    let dir = tempfile::tempdir().unwrap();
    let file = config_file(
        dir.path(),
        &format!("mango_api_url = \"{mango}\"\n[reconcile]\npoll_ms = 100\nwait_seconds = 5"),
    );
    let (config, tenants) = Config::load(Some(&file)).unwrap();
    let running = callbridge_server::start(config, tenants).await.unwrap();
    let base = format!("http://{}/api/v1/tenants", running.addr);
    let http = reqwest::Client::new();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let ask = |tenant: &str, body: String, token: Option<&str>| {
        let mut request = http
            .post(format!("{base}/{tenant}/reconcile"))
            .header("content-type", "application/json")
            .body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move {
            let r = request.send().await.unwrap();
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            (
                status,
                body["detail"].as_str().unwrap_or_default().to_string(),
            )
        }
    };
    let period = |from: i64, to: i64| json!({"from": from, "to": to}).to_string();

    let (status, _) = ask("acme", period(now - 3600, now), None).await;
    assert_eq!(status, 401);
    let (status, detail) = ask("acme", json!({"from": now - 60}).to_string(), Some(TOKEN)).await;
    assert_eq!((status, detail.as_str()), (400, "to is required"));
    let (status, detail) = ask("acme", "{\"from\": \"yesterday\"".into(), Some(TOKEN)).await;
    assert_eq!(status, 400, "{detail}");
    let (status, detail) = ask(
        "acme",
        json!({"from": 1, "to": 2, "until": 3}).to_string(),
        Some(TOKEN),
    )
    .await;
    assert!(status == 400 || status == 422, "{status} {detail}");
    assert!(detail.contains("until"), "{detail}");
    let (status, detail) = ask("acme", period(now, now - 60), Some(TOKEN)).await;
    assert_eq!(status, 400);
    assert!(detail.starts_with("to: must be after from"), "{detail}");
    let (status, detail) = ask("acme", period(5, now), Some(TOKEN)).await;
    assert_eq!(status, 400);
    assert!(detail.starts_with("from:"), "{detail}");
    let (status, detail) = ask("acme", period(now - 3600, now + 86_400), Some(TOKEN)).await;
    assert_eq!(status, 400);
    assert!(detail.contains("in the future"), "{detail}");
    let (status, detail) = ask("acme", period(now - 40 * 86_400, now), Some(TOKEN)).await;
    assert_eq!(status, 400);
    assert!(detail.contains("31 days"), "{detail}");
    let (status, detail) = ask("nobody", period(now - 3600, now), Some(TOKEN)).await;
    assert_eq!((status, detail.as_str()), (404, "no tenant \"nobody\""));
    // Mango refuses the signature: its words, and no secret.
    let (status, detail) = ask("acme", period(now - 3600, now), Some(TOKEN)).await;
    assert_eq!(status, 502, "{detail}");
    assert!(
        detail.contains("check vpbx_api_key and vpbx_api_salt"),
        "{detail}"
    );
    assert!(!detail.contains(SALT), "{detail}");
    running.shutdown().await;
}

#[test]
fn reconcile_keys_out_of_range_are_named() {
    let dir = tempfile::tempdir().unwrap();
    for (extra, key) in [
        (
            "[reconcile]\ndaily_hour_utc = 24",
            "reconcile.daily_hour_utc",
        ),
        (
            "[reconcile]\nlook_back_hours = 0",
            "reconcile.look_back_hours",
        ),
        ("[reconcile]\npoll_ms = 5", "reconcile.poll_ms"),
        ("[reconcile]\nwait_seconds = 0", "reconcile.wait_seconds"),
        ("[reconcile]\nhour = 3", "hour"),
    ] {
        let file = config_file(dir.path(), extra);
        let Err(error) = Config::load(Some(&file)) else {
            panic!("{extra}: accepted");
        };
        let error = error.to_string();
        assert!(error.contains(key), "{extra}: {error}");
    }
    let file = dir.path().join("tenant-hour.toml");
    std::fs::write(
        &file,
        format!(
            "admin_token = \"{TOKEN}\"\n[[tenants]]\nid = \"acme\"\nmango_api_key = \"{KEY}\"\n\
             mango_api_salt = \"{SALT}\"\nreconcile_hour_utc = 30\n"
        ),
    )
    .unwrap();
    let error = Config::load(Some(&file)).err().unwrap().to_string();
    assert!(error.contains("tenants[0].reconcile_hour_utc"), "{error}");
    let file = config_file(dir.path(), "[reconcile]\ndaily_hour_utc = 3");
    let (config, _) = Config::load(Some(&file)).unwrap();
    assert_eq!(config.reconcile.daily_hour_utc, Some(3));
    assert_eq!(config.reconcile.poll_ms, 5_000, "Mango's 5 s by default");
}

/// A VPBX API whose statistics hold one good row, one that cannot be read and one whose entry
/// id no webhook could carry.
async fn odd_statistics_mango(now: i64) -> String {
    let csv = format!(
        "[];{start};{end};{answer};;79161234567;101;;1100;74951234567;abonent;good-entry\n\
         [];{start};yesterday;0;;;;;;;;broken\n\
         [];{start};{end};0;;79161234567;101;;1110;;;{long}\n",
        start = now - 600,
        end = now - 500,
        answer = now - 590,
        long = "x".repeat(300),
    );
    let app = Router::new()
        .route(
            "/vpbx/stats/request",
            post(|| async { axum::Json(json!({"key": "k1"})) }),
        )
        .route("/vpbx/stats/result", post(move || async move { csv }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/vpbx/")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_rows_are_reported_and_the_good_one_recovered_once() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mango = odd_statistics_mango(now).await;
    let dir = tempfile::tempdir().unwrap();
    let file = config_file(
        dir.path(),
        &format!("mango_api_url = \"{mango}\"\n[reconcile]\npoll_ms = 100\nwait_seconds = 5"),
    );
    let (config, tenants) = Config::load(Some(&file)).unwrap();
    let running = callbridge_server::start(config, tenants).await.unwrap();
    let base = format!("http://{}/api/v1", running.addr);
    let http = reqwest::Client::new();
    let run = || async {
        let r = http
            .post(format!("{base}/tenants/acme/reconcile"))
            .bearer_auth(TOKEN)
            .json(&json!({"from": now - 3600, "to": now}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        r.json::<Value>().await.unwrap()
    };
    let report = run().await;
    assert_eq!(report["rows"], 2, "{report}");
    assert_eq!(report["recovered"], 1, "{report}");
    let bad = report["bad_rows"].as_array().unwrap();
    assert_eq!(bad.len(), 2, "{report}");
    assert!(
        bad[0]
            .as_str()
            .unwrap()
            .starts_with("statistics line 2: finish:"),
        "{report}"
    );
    assert!(bad[1].as_str().unwrap().contains("entry \"xxx"), "{report}");
    assert_eq!(report["events_appended"], 1, "{report}");
    // The processor plans it, marked recovered (A4b).
    let mut entry = Value::Null;
    for _ in 0..100 {
        let r = http
            .get(format!("{base}/entries/good-entry?tenant=acme"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        if r.status().is_success() {
            entry = r.json().await.unwrap();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(entry["outcome"], "answered", "{entry}");
    assert!(
        entry["reasons"].as_array().unwrap().contains(&json!("A4b")),
        "{entry}"
    );
    // The tenant maps nobody and keeps no unmapped calls: the conversation is ignored (P3),
    // still saying where it came from.
    assert!(
        entry["ignored"][0]["reasons"]
            .as_array()
            .is_some_and(|r| r.contains(&json!("P3")) && r.contains(&json!("A4b"))),
        "{entry}"
    );
    // Again: planned already, nothing appended.
    let again = run().await;
    assert_eq!(
        (
            again["already_planned"].as_u64(),
            again["events_appended"].as_u64()
        ),
        (Some(1), Some(0)),
        "{again}"
    );
    running.shutdown().await;
}
