//! The card-token endpoint reads a CRM user id as a positive integer: a 0 is refused with a
//! problem naming the field, never minted into a token for "no user".

use callbridge_server::config::Config;
use callbridge_test_support::{one_tenant_config, TestTenant};

#[tokio::test]
async fn a_card_token_for_crm_user_zero_is_refused_naming_the_field() {
    let dir = std::env::temp_dir().join(format!("callbridge-card-tokens-{}", std::process::id()));
    let file = one_tenant_config(
        &dir,
        "cards-admin-token",
        &TestTenant {
            id: "acme",
            mango_api_key: "k",
            mango_api_salt: "cards-salt-000000000000000000000",
        },
    );
    let (config, tenants) = Config::load(Some(&file)).unwrap();
    let running = callbridge_server::start(config, tenants).await.unwrap();
    let url = format!("http://{}/api/v1/tenants/acme/cards/tokens", running.addr);
    let http = reqwest::Client::new();
    let mint = |body: &'static str| {
        http.post(&url)
            .bearer_auth("cards-admin-token")
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    let refused = mint(r#"{"crm_user_id": 0}"#).await.unwrap();
    assert_eq!(refused.status(), 400);
    let problem: serde_json::Value = refused.json().await.unwrap();
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("crm_user_id") && detail.contains("positive integer"),
        "{problem}"
    );

    let minted = mint(r#"{"crm_user_id": 1001}"#).await.unwrap();
    assert_eq!(minted.status(), 201);
    let minted: serde_json::Value = minted.json().await.unwrap();
    assert_eq!(minted["crm_user_id"], 1001);
    assert!(minted["token"]
        .as_str()
        .unwrap()
        .starts_with("v1.acme.1001."));

    let stream = reqwest::get(format!(
        "http://{}/api/v1/cards/stream?crm_user_id=0",
        running.addr
    ))
    .await
    .unwrap();
    assert_eq!(stream.status(), 400, "a zero user in the query is refused");

    running.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
