//! The employee directory: the service loads each tenant's employees and groups from a VPBX API
//! (here a local stand-in that checks signatures as Mango does) and shows them beside the
//! mapping table.

use axum::body::Bytes;
use axum::routing::post;
use axum::Router;
use callbridge_server::config::Config;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

const KEY: &str = "vpbx-key-123";
const SALT: &str = "vpbx-salt-456-000000000000000000";

/// A stand-in VPBX API: answers `config/users/request` and `groups` when the signature is right.
async fn fake_mango(requests: Arc<AtomicUsize>) -> String {
    let check = |body: &Bytes| -> bool {
        let fields: std::collections::HashMap<String, String> =
            form_urlencoded::parse(body).into_owned().collect();
        let (Some(key), Some(sign), Some(json)) = (
            fields.get("vpbx_api_key"),
            fields.get("sign"),
            fields.get("json"),
        ) else {
            return false;
        };
        key == KEY && callbridge_mango::verify(key, json, SALT, sign)
    };
    let r1 = requests.clone();
    let app = Router::new()
        .route(
            "/vpbx/config/users/request",
            post(move |body: Bytes| {
                let ok = check(&body);
                r1.fetch_add(1, Ordering::SeqCst);
                async move {
                    if !ok {
                        return (axum::http::StatusCode::UNAUTHORIZED, "{\"code\":3102}".to_string());
                    }
                    (axum::http::StatusCode::OK, serde_json::json!({"users": [
                        {"general": {"name": "Olga", "user_id": 300001}, "telephony": {"extension": "101"}, "groups": [10]},
                        {"general": {"name": "Anna", "user_id": "300005"}, "telephony": {"extension": 105}},
                    ]}).to_string())
                }
            }),
        )
        .route(
            "/vpbx/groups",
            post(move |body: Bytes| {
                let ok = check(&body);
                async move {
                    if !ok {
                        return (axum::http::StatusCode::UNAUTHORIZED, "{\"code\":3102}".to_string());
                    }
                    (axum::http::StatusCode::OK, serde_json::json!({"result": 1000, "groups": [
                        {"id": 10, "name": "Sales", "extension": "300", "dial_alg_group": 1, "operators": [{"id": 300001, "name": "Olga", "extension": "101"}]}
                    ]}).to_string())
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/vpbx/")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_directory_is_loaded_and_shown_with_the_mapping() {
    let requests = Arc::new(AtomicUsize::new(0));
    let mango = fake_mango(requests.clone()).await;
    let dir = std::env::temp_dir().join(format!("callbridge-directory-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("settings.toml"),
        "[[employees]]\nextension = \"101\"\ncrm_user_id = 1001\n",
    )
    .unwrap();
    let config_file = dir.join("callbridge.toml");
    std::fs::write(
        &config_file,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"data\"\nadmin_token = \"directory-admin-token\"\nmango_api_url = \"{mango}\"\n\
             directory_refresh_seconds = 3600\n\
             [[tenants]]\nid = \"acme\"\nmango_api_key = \"{KEY}\"\nmango_api_salt = \"{SALT}\"\nsettings = \"settings.toml\"\n\
             [[tenants]]\nid = \"wrongsalt\"\nmango_api_key = \"other-key\"\nmango_api_salt = \"nope-000000000000000000000000000\"\n"
        ),
    )
    .unwrap();
    let (config, tenants) = Config::load(Some(&config_file)).unwrap();
    let running = callbridge_server::start(config, tenants).await.unwrap();
    let base = format!("http://{}", running.addr);
    let http = reqwest::Client::new();
    let mut body = serde_json::Value::Null;
    for _ in 0..100 {
        body = http
            .get(format!("{base}/api/v1/tenants/acme/directory"))
            .bearer_auth("directory-admin-token")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if body["refreshed_at_ms"].as_i64().unwrap_or(0) > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(body["refreshed_at_ms"].as_i64().unwrap() > 0, "{body}");
    let employees = body["employees"].as_array().unwrap();
    assert_eq!(employees.len(), 2);
    assert_eq!(employees[0]["user"]["extension"], "101");
    assert_eq!(
        (
            employees[0]["mapped"].as_bool(),
            employees[0]["crm_user_id"].as_u64()
        ),
        (Some(true), Some(1001))
    );
    assert_eq!(employees[1]["user"]["extension"], "105");
    assert_eq!(employees[1]["mapped"], false);
    assert_eq!(body["groups"][0]["operators"][0]["extension"], "101");
    // A tenant whose key the PBX refuses: the error is shown, nothing invented.
    let mut other = serde_json::Value::Null;
    for _ in 0..100 {
        other = http
            .get(format!("{base}/api/v1/tenants/wrongsalt/directory"))
            .bearer_auth("directory-admin-token")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if !other["error"].is_null() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(other["error"].as_str().is_some(), "{other}");
    assert!(other["employees"].as_array().unwrap().is_empty());
    assert!(
        !other
            .to_string()
            .contains("nope-000000000000000000000000000"),
        "the salt is never shown"
    );
    running.shutdown().await;
}
