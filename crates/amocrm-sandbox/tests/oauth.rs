//! OAuth over real HTTP: consent redirect, code exchange, refresh, single-use refresh tokens,
//! expired and unknown access tokens.

mod support;

use callbridge_test_support::wait_until_async;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;
use support::*;

/// Follows the consent screen and returns the `code` from the redirect.
async fn consent(base: &str, state: &str) -> String {
    let client = client();
    let r = send(
        &client,
        Method::GET,
        &format!("{base}/oauth?client_id=cid-1&state={state}&mode=post_message"),
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 302, "{}", r.text);
    let location = r.location.expect("Location header");
    assert!(
        location.starts_with("https://integration.example.com/oauth?"),
        "{location}"
    );
    let query = location.split_once('?').map(|x| x.1).unwrap_or("");
    let pairs = query_pairs(query);
    let get = |k: &str| {
        pairs
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(get("state").as_deref(), Some(state));
    assert_eq!(get("client_id").as_deref(), Some("cid-1"));
    let referer = get("referer").expect("referer");
    assert_eq!(format!("http://{referer}"), base);
    get("code").expect("code")
}

async fn token_request(base: &str, body: &Value) -> Reply {
    send(
        &client(),
        Method::POST,
        &format!("{base}/oauth2/access_token"),
        None,
        Some(body),
    )
    .await
}

fn exchange(code: &str) -> Value {
    json!({"client_id": "cid-1", "client_secret": "secret-1", "grant_type": "authorization_code",
           "code": code, "redirect_uri": "https://integration.example.com/oauth"})
}

fn refresh(token: &str) -> Value {
    json!({"client_id": "cid-1", "client_secret": "secret-1", "grant_type": "refresh_token",
           "refresh_token": token, "redirect_uri": "https://integration.example.com/oauth"})
}

async fn account_with(base: &str, token: &str) -> Reply {
    send(
        &client(),
        Method::GET,
        &format!("{base}/api/v4/account"),
        Some(token),
        None,
    )
    .await
}

#[tokio::test]
async fn code_exchange_refresh_and_reused_refresh_token_is_revoked() {
    let sandbox = start_with(config()).await;
    let base = sandbox.base_url();
    let code = consent(&base, "xyz-1").await;

    let first = token_request(&base, &exchange(&code)).await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(first.json["token_type"], "Bearer");
    assert_eq!(first.json["expires_in"], 86_400);
    assert!(first.json["server_time"].as_i64().is_some());
    let access1 = first.json["access_token"].as_str().unwrap().to_owned();
    let refresh1 = first.json["refresh_token"].as_str().unwrap().to_owned();
    // JWT-shaped: three dot-separated parts, the middle one carrying `exp`.
    assert_eq!(access1.split('.').count(), 3);

    let acc = account_with(&base, &access1).await;
    assert_eq!(acc.status, 200, "{}", acc.text);
    assert_eq!(acc.json["current_user_id"], 1001);
    assert_eq!(acc.json["is_unsorted_on"], true);
    assert!(acc.content_type.starts_with("application/hal+json"));

    // A code is single-use.
    let again = token_request(&base, &exchange(&code)).await;
    assert_eq!(again.status, 400, "{}", again.text);
    assert_eq!(again.json["hint"], "Authorization code has been revoked");

    let second = token_request(&base, &refresh(&refresh1)).await;
    assert_eq!(second.status, 200, "{}", second.text);
    let access2 = second.json["access_token"].as_str().unwrap().to_owned();
    let refresh2 = second.json["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(access1, access2);
    assert_ne!(refresh1, refresh2);
    assert_eq!(account_with(&base, &access2).await.status, 200);

    // The old refresh token was used once: reusing it is refused as revoked.
    let reused = token_request(&base, &refresh(&refresh1)).await;
    assert_eq!(reused.status, 401, "{}", reused.text);
    assert!(reused.content_type.starts_with("application/problem+json"));
    assert_eq!(reused.json["title"], "Unauthorized");
    assert_eq!(
        reused.json["type"],
        "https://developers.amocrm.ru/v3/errors/OAuthProblemJson"
    );
    assert_eq!(reused.json["status"], 401);
    assert_eq!(reused.json["hint"], "Token has been revoked");
    assert!(reused.json["detail"]
        .as_str()
        .is_some_and(|d| !d.is_empty()));

    // The new one still works, once.
    assert_eq!(token_request(&base, &refresh(&refresh2)).await.status, 200);
    sandbox.shutdown().await;
}

#[tokio::test]
async fn token_endpoint_accepts_forms_and_rejects_bad_clients() {
    let sandbox = start_with(config()).await;
    let base = sandbox.base_url();
    let code = consent(&base, "s").await;
    let form = format!(
        "client_id=cid-1&client_secret=secret-1&grant_type=authorization_code&code={code}&redirect_uri={}",
        urlencode("https://integration.example.com/oauth")
    );
    let resp = client()
        .post(format!("{base}/oauth2/access_token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    let r = read(resp).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.json["access_token"].as_str().is_some());

    let mut wrong = exchange("whatever");
    wrong["client_secret"] = json!("nope");
    let r = token_request(&base, &wrong).await;
    assert_eq!(r.status, 401, "{}", r.text);

    let r = token_request(&base, &json!({"client_id": "cid-1"})).await;
    assert_eq!(r.status, 400);
    assert!(
        r.json["hint"].as_str().unwrap().contains("grant_type"),
        "{}",
        r.text
    );

    let r = token_request(&base, &exchange("def50200unknown")).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json["hint"], "Cannot decrypt the authorization code");

    let r = client()
        .post(format!("{base}/oauth2/access_token"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let r = read(r).await;
    assert_eq!(r.status, 400);
    assert!(
        r.json["detail"]
            .as_str()
            .unwrap()
            .contains("Malformed JSON"),
        "{}",
        r.text
    );

    // Unknown integration on the consent screen.
    let r = send(
        &client(),
        Method::GET,
        &format!("{base}/oauth?client_id=nope"),
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 400);
    sandbox.shutdown().await;
}

#[tokio::test]
async fn expired_and_unknown_access_tokens_get_401() {
    let mut cfg = config();
    cfg.access_token_ttl = Duration::from_secs(3600);
    let sandbox = start_with(cfg).await;
    let base = sandbox.base_url();
    let code = consent(&base, "s").await;
    let tokens = token_request(&base, &exchange(&code)).await;
    let access = tokens.json["access_token"].as_str().unwrap().to_owned();
    assert_eq!(account_with(&base, &access).await.status, 200);

    sandbox.expire_access_tokens();
    let r = account_with(&base, &access).await;
    assert_eq!(r.status, 401, "{}", r.text);
    assert!(r.content_type.starts_with("application/problem+json"));
    assert_eq!(r.json["hint"], "Token has expired");
    // The long-lived token is not an OAuth access token and keeps working.
    assert_eq!(account_with(&base, TOKEN).await.status, 200);

    let r = account_with(&base, "not-a-token").await;
    assert_eq!(r.status, 401);
    let r = send(
        &client(),
        Method::GET,
        &format!("{base}/api/v4/account"),
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 401);
    assert!(r.json["detail"].as_str().unwrap().contains("Authorization"));

    // A refresh gives a working token again.
    let refreshed = token_request(
        &base,
        &refresh(tokens.json["refresh_token"].as_str().unwrap()),
    )
    .await;
    let access2 = refreshed.json["access_token"].as_str().unwrap();
    assert_eq!(account_with(&base, access2).await.status, 200);
    sandbox.shutdown().await;
}

#[tokio::test]
async fn short_access_token_ttl_expires_by_itself() {
    let mut cfg = config();
    cfg.access_token_ttl = Duration::from_millis(300);
    let sandbox = start_with(cfg).await;
    let base = sandbox.base_url();
    let code = consent(&base, "s").await;
    let tokens = token_request(&base, &exchange(&code)).await;
    assert_eq!(tokens.json["expires_in"], 0);
    let access = tokens.json["access_token"].as_str().unwrap().to_owned();
    wait_until_async(
        "the 300 ms access token to be refused (401)",
        Duration::from_secs(10),
        || async { (account_with(&base, &access).await.status == 401).then_some(()) },
    )
    .await;
    sandbox.shutdown().await;
}
