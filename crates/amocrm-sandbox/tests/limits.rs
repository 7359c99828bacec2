//! Rate limit, account block, injected faults, and the `/_sandbox` controls over HTTP.

mod support;

use callbridge_amocrm_sandbox::{Faults, SandboxConfig};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::{Duration, Instant};
use support::*;

/// Fires `n` requests at once and returns their statuses and content types.
async fn burst(api: &Api, n: usize) -> Vec<(StatusCode, String, String)> {
    let mut tasks = Vec::new();
    for _ in 0..n {
        let client = api.client.clone();
        let url = format!("{}/api/v4/account", api.base);
        let token = api.token.clone();
        tasks.push(tokio::spawn(async move {
            let r = send(&client, Method::GET, &url, Some(&token), None).await;
            (r.status, r.content_type, r.text)
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("request task"));
    }
    out
}

#[tokio::test]
async fn beyond_rps_is_429_html_and_repeated_violations_block_with_403() {
    let sandbox = start_with(SandboxConfig {
        rps: 3,
        block_after: 4,
        ..config()
    })
    .await;
    let api = Api::new(&sandbox);
    let started = Instant::now();
    let replies = burst(&api, 12).await;
    let elapsed = started.elapsed();
    let ok = replies.iter().filter(|r| r.0 == StatusCode::OK).count();
    let limited: Vec<_> = replies
        .iter()
        .filter(|r| r.0 == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    // However slow the machine, at most rps requests per started second get through.
    let seconds = elapsed.as_secs() as usize + 1;
    assert!(ok <= 3 * seconds, "{ok} accepted in {elapsed:?}");
    assert!(!limited.is_empty(), "no 429 in a burst of 12 at rps 3");
    for (_, content_type, text) in &limited {
        assert!(content_type.starts_with("text/html"), "{content_type}");
        assert!(text.contains("<html>"));
        assert!(serde_json::from_str::<serde_json::Value>(text).is_err());
    }
    let stats = sandbox.stats();
    assert_eq!(stats.requests, 12);
    assert_eq!(stats.rate_limited as usize, limited.len());
    assert!(stats.max_requests_in_any_second >= 4, "{stats:?}");

    // Keep violating until blocked (4 violations within a minute).
    let mut blocked = stats.blocked;
    for _ in 0..5 {
        if blocked {
            break;
        }
        burst(&api, 8).await;
        blocked = sandbox.stats().blocked;
    }
    assert!(blocked, "{:?}", sandbox.stats());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = api.get("/api/v4/account").await;
    assert_eq!(r.status, 403);
    assert!(r.content_type.starts_with("text/html"));
    assert!(r.text.contains("403 Forbidden"));
    // The OAuth endpoint is blocked too; the controls are not.
    let r = send(
        &api.client,
        Method::POST,
        &format!("{}/oauth2/access_token", api.base),
        None,
        Some(&json!({})),
    )
    .await;
    assert_eq!(r.status, 403);
    let stats = send(
        &api.client,
        Method::GET,
        &format!("{}/_sandbox/stats", api.base),
        None,
        None,
    )
    .await;
    assert_eq!(stats.status, 200);
    assert_eq!(stats.json["blocked"], true);
    assert!(
        stats.json["by_route"]["GET /api/v4/account"]
            .as_u64()
            .unwrap()
            >= 12
    );

    let r = send(
        &api.client,
        Method::POST,
        &format!("{}/_sandbox/unblock", api.base),
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(api.get("/api/v4/account").await.status, 200);
    assert!(!sandbox.stats().blocked);
    sandbox.shutdown().await;
}

#[tokio::test]
async fn requests_within_the_limit_all_pass() {
    let sandbox = start_with(SandboxConfig { rps: 7, ..config() }).await;
    let api = Api::new(&sandbox);
    for _ in 0..7 {
        assert_eq!(api.get("/api/v4/account").await.status, 200);
    }
    let stats = sandbox.stats();
    assert_eq!(stats.rate_limited, 0);
    assert!(stats.max_requests_in_any_second <= 7);
    sandbox.shutdown().await;
}

#[tokio::test]
async fn scripted_statuses_error_rate_and_latency() {
    let sandbox = start_with(config()).await;
    let api = Api::new(&sandbox);
    sandbox.set_faults(Faults {
        fail_next: vec![500, 429, 401],
        ..Faults::default()
    });
    let r = api.get("/api/v4/account").await;
    assert_eq!(r.status, 500);
    assert!(r.content_type.starts_with("application/problem+json"));
    let r = api.get("/api/v4/account").await;
    assert_eq!(r.status, 429);
    assert!(r.content_type.starts_with("text/html"));
    let r = api.get("/api/v4/account").await;
    assert_eq!(r.status, 401);
    assert_eq!(api.get("/api/v4/account").await.status, 200);
    // A scripted 429 is not the limiter's.
    assert_eq!(sandbox.stats().rate_limited, 0);

    // Over HTTP: every request fails while error_rate is 1.
    let r = send(
        &api.client,
        Method::POST,
        &format!("{}/_sandbox/faults", api.base),
        None,
        Some(&json!({"error_rate": 1.0})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    for _ in 0..4 {
        assert_eq!(api.get("/api/v4/account").await.status, 503);
    }
    // The controls themselves are never faulted.
    let r = send(
        &api.client,
        Method::POST,
        &format!("{}/_sandbox/faults", api.base),
        None,
        Some(&json!({"latency_ms": 300})),
    )
    .await;
    assert_eq!(r.status, 200);
    let started = Instant::now();
    assert_eq!(api.get("/api/v4/account").await.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));

    let r = send(
        &api.client,
        Method::POST,
        &format!("{}/_sandbox/faults", api.base),
        None,
        Some(&json!({"error_rate": 2})),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(r.json["detail"].as_str().unwrap().contains("error_rate"));
    let r = send(
        &api.client,
        Method::POST,
        &format!("{}/_sandbox/faults", api.base),
        None,
        Some(&json!({"fail_nxt": [500]})),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(
        r.json["detail"].as_str().unwrap().contains("fail_nxt"),
        "{}",
        r.text
    );
    sandbox.shutdown().await;
}

#[tokio::test]
async fn hanging_requests_time_out_at_the_client_and_do_not_hold_shutdown() {
    let sandbox = start_with(config()).await;
    let api = Api::new(&sandbox);
    sandbox.set_faults(Faults {
        hang_next: 1,
        ..Faults::default()
    });
    let impatient = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(400))
        .build()
        .unwrap();
    let err = impatient
        .get(format!("{}/api/v4/account", api.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect_err("the request hangs");
    assert!(err.is_timeout(), "{err}");
    assert_eq!(api.get("/api/v4/account").await.status, 200);

    // A request still hanging when the sandbox stops is released at once.
    sandbox.set_faults(Faults {
        hang_next: 1,
        ..Faults::default()
    });
    let url = format!("{}/api/v4/account", api.base);
    let client = api.client.clone();
    let pending = tokio::spawn(async move { client.get(url).bearer_auth(TOKEN).send().await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(20), sandbox.shutdown())
        .await
        .expect("shutdown does not wait for the 60 s hang");
    assert!(started.elapsed() < Duration::from_secs(20));
    let answered = pending.await.unwrap();
    if let Ok(resp) = answered {
        assert_eq!(resp.status(), 504);
    }
}

#[tokio::test]
async fn expire_tokens_over_http() {
    let sandbox = start_with(config()).await;
    let base = sandbox.base_url();
    let c = client();
    let consent = send(
        &c,
        Method::GET,
        &format!("{base}/oauth?client_id=cid-1&state=s"),
        None,
        None,
    )
    .await;
    let location = consent.location.expect("redirect");
    let code = query_pairs(location.split_once('?').unwrap().1)
        .into_iter()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1;
    let body = json!({"client_id": "cid-1", "client_secret": "secret-1", "grant_type": "authorization_code",
                      "code": code, "redirect_uri": "https://integration.example.com/oauth"});
    let tokens = send(
        &c,
        Method::POST,
        &format!("{base}/oauth2/access_token"),
        None,
        Some(&body),
    )
    .await;
    let access = tokens.json["access_token"].as_str().unwrap().to_owned();
    let account = format!("{base}/api/v4/account");
    assert_eq!(
        send(&c, Method::GET, &account, Some(&access), None)
            .await
            .status,
        200
    );
    let r = send(
        &c,
        Method::POST,
        &format!("{base}/_sandbox/expire_tokens"),
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json["expired"], 1);
    assert_eq!(
        send(&c, Method::GET, &account, Some(&access), None)
            .await
            .status,
        401
    );
    sandbox.shutdown().await;
}
