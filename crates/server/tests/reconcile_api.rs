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
