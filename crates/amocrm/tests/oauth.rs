//! OAuth: single-flight refresh, save-before-use ordering, revoked tokens, long-lived tokens,
//! code exchange, and secrets kept out of logs, errors and Debug.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use callbridge_amocrm::{
    AccountConfig, AmoClient, AuthConfig, Error, MemoryTokenStore, OAuthTokens, TokenStore,
    TokenStoreError, SCHEDULED_REFRESH_AFTER_SECS,
};
use common::*;
use serde_json::json;

const CLIENT_ID: &str = "client-id-1";
const CLIENT_SECRET: &str = "client-secret-very-s3cret";
const REDIRECT_URI: &str = "https://callbridge.example/oauth";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

fn tokens(access: &str, refresh: &str, expires_in: i64) -> OAuthTokens {
    OAuthTokens {
        access_token: access.into(),
        refresh_token: refresh.into(),
        expires_at: now() + expires_in,
        issued_at: now(),
    }
}

/// A store that writes `save:<refresh token>` into a log shared with the mock server, so the
/// test can see the order of saves and uses.
struct RecordingStore {
    inner: MemoryTokenStore,
    log: Arc<Mutex<Vec<String>>>,
}

#[async_trait::async_trait]
impl TokenStore for RecordingStore {
    async fn load(&self) -> Result<Option<OAuthTokens>, TokenStoreError> {
        self.inner.load().await
    }

    async fn save(&self, tokens: &OAuthTokens) -> Result<(), TokenStoreError> {
        // Saving takes a while, as a database write would; a client that used the new access
        // token before the save finished would show up in the log.
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.log
            .lock()
            .expect("log")
            .push(format!("save:{}", tokens.refresh_token));
        self.inner.save(tokens).await
    }
}

fn oauth_client(base: &str, store: Arc<dyn TokenStore>) -> AmoClient {
    let config = AccountConfig {
        base_url: base.to_string(),
        auth: AuthConfig::OAuth {
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.into(),
            redirect_uri: REDIRECT_URI.into(),
        },
        requests_per_second: 1000,
        timeout: Duration::from_secs(10),
    };
    AmoClient::new(config, store).expect("client")
}

/// The CRM side: accepts `valid_access` on the API, and trades `valid_refresh` for
/// `A2`/`R2` on the token endpoint (once; the refresh token is single-use).
struct Crm {
    log: Arc<Mutex<Vec<String>>>,
    refreshes: Arc<AtomicUsize>,
    api_calls: Arc<AtomicUsize>,
}

async fn crm(valid_access: &'static [&'static str], valid_refresh: &'static str) -> (Mock, Crm) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let refreshes = Arc::new(AtomicUsize::new(0));
    let api_calls = Arc::new(AtomicUsize::new(0));
    let spent = Arc::new(Mutex::new(false));
    let mock = mock({
        let log = log.clone();
        let refreshes = refreshes.clone();
        let api_calls = api_calls.clone();
        move |seen| {
            if seen.path == "/oauth2/access_token" {
                refreshes.fetch_add(1, Ordering::SeqCst);
                let body = seen.json();
                assert_eq!(body["grant_type"], "refresh_token");
                assert_eq!(body["client_id"], CLIENT_ID);
                assert_eq!(body["client_secret"], CLIENT_SECRET);
                assert_eq!(body["redirect_uri"], REDIRECT_URI);
                let mut spent = spent.lock().expect("spent");
                if body["refresh_token"] != valid_refresh || *spent {
                    return problem(
                        401,
                        json!({"title":"Unauthorized","type":"https://developers.amocrm.ru/v3/errors/OAuthProblemJson",
                               "status":401,"detail":"Incorrect refresh token","hint":"Token has been revoked"}),
                    );
                }
                *spent = true;
                // Slow enough that every concurrent caller piles up behind the refresh.
                return json(
                    200,
                    json!({"token_type":"Bearer","expires_in":86400,"access_token":"A2","refresh_token":"R2"}),
                )
                .after(Duration::from_millis(100));
            }
            api_calls.fetch_add(1, Ordering::SeqCst);
            let bearer = seen.bearer().unwrap_or_default();
            if valid_access.contains(&bearer.as_str()) {
                log.lock().expect("log").push(format!("use:{bearer}"));
                json(200, json!({"id": 7, "name": "Acme", "subdomain": "acme"}))
            } else {
                log.lock().expect("log").push(format!("reject:{bearer}"));
                problem(401, json!({"title":"Unauthorized","status":401,"detail":"Access token is not valid"}))
            }
        }
    })
    .await;
    (
        mock,
        Crm {
            log,
            refreshes,
            api_calls,
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_calls_with_an_expired_token_refresh_once_and_save_before_use() {
    let (mock, crm) = crm(&["A2"], "R1").await;
    let store = Arc::new(RecordingStore {
        inner: MemoryTokenStore::with_tokens(tokens("A1", "R1", -10)),
        log: crm.log.clone(),
    });
    let client = oauth_client(&mock.base, store.clone());
    // Callers keep arriving for 200 ms, i.e. also while the refresh request (100 ms) and the save
    // (50 ms) are under way: a client that handed out the new access token before the save
    // finished would show it here.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(10 * i)).await;
            client.account().await
        }));
    }
    for task in tasks {
        let account = task.await.expect("task").expect("account");
        assert_eq!(account.id, 7);
    }
    assert_eq!(
        crm.refreshes.load(Ordering::SeqCst),
        1,
        "exactly one refresh"
    );
    assert_eq!(
        crm.api_calls.load(Ordering::SeqCst),
        20,
        "no call went out with the expired token"
    );
    let log = crm.log.lock().expect("log").clone();
    let saved = log.iter().position(|e| e == "save:R2").expect("R2 saved");
    let first_use = log.iter().position(|e| e == "use:A2").expect("A2 used");
    assert!(
        saved < first_use,
        "new access token used before the refresh token was saved: {log:?}"
    );
    assert_eq!(log.iter().filter(|e| e.starts_with("use:")).count(), 20);
    let stored = store.inner.current().expect("tokens");
    assert_eq!(
        (stored.access_token.as_str(), stored.refresh_token.as_str()),
        ("A2", "R2")
    );
    assert!(stored.expires_at > now() + 86_000);
}

#[tokio::test]
async fn a_token_within_a_minute_of_expiry_is_refreshed_before_use() {
    let (mock, crm) = crm(&["A1", "A2"], "R1").await;
    let store = Arc::new(MemoryTokenStore::with_tokens(tokens("A1", "R1", 30)));
    let client = oauth_client(&mock.base, store.clone());
    client.account().await.expect("account");
    assert_eq!(crm.refreshes.load(Ordering::SeqCst), 1);
    assert_eq!(
        crm.log.lock().expect("log").clone(),
        vec!["use:A2".to_string()]
    );
}

#[tokio::test]
async fn a_401_refreshes_once_and_retries() {
    let (mock, crm) = crm(&["A2"], "R1").await;
    let store = Arc::new(MemoryTokenStore::with_tokens(tokens("A1", "R1", 3600)));
    let client = oauth_client(&mock.base, store.clone());
    client.account().await.expect("account after refresh");
    assert_eq!(crm.refreshes.load(Ordering::SeqCst), 1);
    assert_eq!(
        crm.log.lock().expect("log").clone(),
        vec!["reject:A1".to_string(), "use:A2".to_string()]
    );
    assert_eq!(
        store.current().map(|t| t.refresh_token),
        Some("R2".to_string())
    );
}

#[tokio::test]
async fn a_401_after_the_refresh_is_unauthorized() {
    let (mock, crm) = crm(&[], "R1").await;
    let store = Arc::new(MemoryTokenStore::with_tokens(tokens("A1", "R1", 3600)));
    let client = oauth_client(&mock.base, store);
    let err = client.account().await.expect_err("still 401");
    assert!(matches!(err, Error::Unauthorized(_)), "{err:?}");
    assert!(!err.is_retryable());
    assert_eq!(crm.refreshes.load(Ordering::SeqCst), 1, "one refresh only");
    assert_eq!(
        crm.api_calls.load(Ordering::SeqCst),
        2,
        "the call and its one retry"
    );
}

#[tokio::test]
async fn a_reused_refresh_token_is_unauthorized_and_not_sent_again() {
    // The CRM only knows R9: R1 was already used (by another client, say).
    let (mock, crm) = crm(&["A2"], "R9").await;
    let store = Arc::new(MemoryTokenStore::with_tokens(tokens("A1", "R1", -10)));
    let client = oauth_client(&mock.base, store.clone());
    let err = client.account().await.expect_err("revoked");
    match &err {
        Error::Unauthorized(why) => assert!(why.contains("Token has been revoked"), "{why}"),
        other => panic!("expected Unauthorized, got {other:?}"),
    }
    assert!(
        !err.to_string().contains("R1"),
        "the refresh token leaked into {err}"
    );
    let again = client.account().await.expect_err("still broken");
    assert!(matches!(again, Error::Unauthorized(_)), "{again:?}");
    assert_eq!(
        crm.refreshes.load(Ordering::SeqCst),
        1,
        "the refused token is not sent again"
    );
    assert_eq!(crm.api_calls.load(Ordering::SeqCst), 0);
    assert_eq!(
        store.current().map(|t| t.refresh_token),
        Some("R1".to_string())
    );
}

#[tokio::test]
async fn a_rejected_long_lived_token_is_unauthorized_without_refresh() {
    let (mock, crm) = crm(&[], "R1").await;
    let client = client(&mock.base);
    let err = client.account().await.expect_err("401");
    match &err {
        Error::Unauthorized(why) => assert!(why.contains("long-lived"), "{why}"),
        other => panic!("expected Unauthorized, got {other:?}"),
    }
    assert_eq!(crm.refreshes.load(Ordering::SeqCst), 0);
    assert_eq!(crm.api_calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        crm.log.lock().expect("log").clone(),
        vec![format!("reject:{LONG_LIVED_TOKEN}")]
    );
}

#[tokio::test]
async fn exchange_code_saves_the_tokens_and_the_client_uses_them() {
    let exchanges = Arc::new(AtomicUsize::new(0));
    let mock = mock({
        let exchanges = exchanges.clone();
        move |seen| {
            if seen.path == "/oauth2/access_token" {
                exchanges.fetch_add(1, Ordering::SeqCst);
                let body = seen.json();
                if body["grant_type"] != "authorization_code"
                    || body["code"] != "c0de"
                    || body["client_secret"] != CLIENT_SECRET
                    || body["redirect_uri"] != REDIRECT_URI
                {
                    return problem(400, json!({"title":"Bad Request","hint":"Authorization code has expired"}));
                }
                return json(200, json!({"token_type":"Bearer","expires_in":86400,"access_token":"AX","refresh_token":"RX"}));
            }
            if seen.bearer().as_deref() == Some("AX") {
                json(200, json!({"id": 3, "name": "Acme"}))
            } else {
                problem(401, json!({"title":"Unauthorized"}))
            }
        }
    })
    .await;
    let store = Arc::new(MemoryTokenStore::new());
    let client = oauth_client(&mock.base, store.clone());

    let err = client.account().await.expect_err("no tokens yet");
    assert!(matches!(err, Error::Unauthorized(_)), "{err:?}");
    assert!(mock.requests().is_empty(), "nothing is sent without tokens");

    let bad = client.exchange_code("wrong").await.expect_err("bad code");
    match &bad {
        Error::Unauthorized(why) => {
            assert!(why.contains("Authorization code has expired"), "{why}")
        }
        other => panic!("expected Unauthorized, got {other:?}"),
    }
    assert!(store.current().is_none());

    let tokens = client.exchange_code("c0de").await.expect("exchange");
    assert_eq!(tokens.access_token, "AX");
    assert_eq!(store.current(), Some(tokens));
    assert_eq!(client.account().await.expect("account").id, 3);
    assert_eq!(exchanges.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn exchange_code_needs_oauth() {
    let mock = mock(|_| json(200, json!({}))).await;
    let err = client(&mock.base)
        .exchange_code("c0de")
        .await
        .expect_err("long-lived");
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    assert!(mock.requests().is_empty());
}

#[test]
fn debug_output_hides_secrets() {
    let oauth = AccountConfig::new(
        "https://acme.amocrm.ru",
        AuthConfig::OAuth {
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.into(),
            redirect_uri: REDIRECT_URI.into(),
        },
    );
    let text = format!("{oauth:?}");
    assert!(!text.contains(CLIENT_SECRET), "{text}");
    assert!(
        text.contains(CLIENT_ID) && text.contains("<redacted>"),
        "{text}"
    );

    let long_lived = AccountConfig::new(
        "https://acme.amocrm.ru",
        AuthConfig::LongLived {
            token: LONG_LIVED_TOKEN.into(),
        },
    );
    let text = format!("{long_lived:?} {:#?}", long_lived.auth);
    assert!(!text.contains(LONG_LIVED_TOKEN), "{text}");

    let client = AmoClient::new(oauth, Arc::new(MemoryTokenStore::new())).expect("client");
    let text = format!("{client:?}");
    assert!(
        text.contains("acme.amocrm.ru") && !text.contains(CLIENT_SECRET),
        "{text}"
    );

    let pair = tokens("access-s3cret", "refresh-s3cret", 100);
    let text = format!("{pair:?} {pair:#?}");
    assert!(
        !text.contains("access-s3cret") && !text.contains("refresh-s3cret"),
        "{text}"
    );
    assert!(text.contains("expires_at"), "{text}");
}

/// Issue 14, item 3: a CRM that answers with a redirect to another host never gets the client
/// to follow it with a token: not on API calls (bearer), not on the token refresh or the code
/// exchange (client secret, refresh token, code). The other host records what reaches it.
#[tokio::test]
async fn redirects_to_another_host_are_not_followed_with_any_secret() {
    let elsewhere = mock(|_| json(200, json!({"id": 1, "name": "x"}))).await;
    let target = elsewhere.base.clone();
    let redirecting =
        mock(move |seen| Answer::redirect(307, format!("{target}{}", seen.path))).await;

    // An API call with a long-lived token.
    let err = client(&redirecting.base)
        .account()
        .await
        .expect_err("redirect");
    assert!(err.to_string().contains("redirected"), "{err}");
    // An API call whose expired access token is refreshed first.
    let store = Arc::new(MemoryTokenStore::with_tokens(tokens("A1", "R1", -10)));
    let err = oauth_client(&redirecting.base, store)
        .account()
        .await
        .expect_err("redirect");
    assert!(!err.to_string().contains("R1"), "{err}");
    // A code exchange.
    let store = Arc::new(MemoryTokenStore::new());
    let err = oauth_client(&redirecting.base, store)
        .exchange_code("the-code")
        .await
        .expect_err("redirect");
    assert!(!err.to_string().contains("the-code"), "{err}");

    assert!(redirecting.requests().len() >= 3);
    let reached = elsewhere.requests();
    assert!(reached.is_empty(), "followed a redirect: {reached:?}");
}

/// Days in seconds.
const DAY: i64 = 86_400;

#[tokio::test]
async fn a_scheduled_refresh_renews_an_old_pair_and_leaves_a_young_one_alone() {
    let (mock, crm) = crm(&["A2"], "R1").await;
    // The access token is still good for hours; the pair is 31 days old.
    let mut old = tokens("A1", "R1", 3_600);
    old.issued_at = now() - 31 * DAY;
    let store = Arc::new(MemoryTokenStore::with_tokens(old));
    let client = oauth_client(&mock.base, store.clone());
    assert!(client
        .refresh_if_older_than(SCHEDULED_REFRESH_AFTER_SECS)
        .await
        .expect("refresh"));
    let saved = store.current().expect("tokens");
    assert_eq!(saved.refresh_token, "R2", "the new pair is saved");
    assert!(
        (now() - saved.issued_at).abs() < 60,
        "the issue time is kept: {}",
        saved.issued_at
    );
    // Now young: the next scheduled run asks nothing.
    assert!(!client
        .refresh_if_older_than(SCHEDULED_REFRESH_AFTER_SECS)
        .await
        .expect("no refresh"));
    assert_eq!(crm.refreshes.load(Ordering::SeqCst), 1);
    assert_eq!(client.account().await.expect("account").id, 7);
    // A pair whose issue time is unknown (saved before it was kept) counts as old.
    let (mock, crm) = self::crm(&["A2"], "R1").await;
    let store = Arc::new(MemoryTokenStore::with_tokens(OAuthTokens {
        issued_at: 0,
        ..tokens("A1", "R1", 3_600)
    }));
    let client = oauth_client(&mock.base, store.clone());
    assert!(client
        .refresh_if_older_than(SCHEDULED_REFRESH_AFTER_SECS)
        .await
        .expect("refresh"));
    assert_eq!(crm.refreshes.load(Ordering::SeqCst), 1);
}

/// An account not connected yet has no pair: the schedule has nothing to renew and asks nothing,
/// and reports no error (which the server would show as a broken connection).
#[tokio::test]
async fn a_never_connected_account_has_nothing_to_refresh_on_schedule() {
    let (mock, crm) = crm(&["A2"], "R1").await;
    let store = Arc::new(MemoryTokenStore::default());
    let client = oauth_client(&mock.base, store.clone());
    assert!(!client
        .refresh_if_older_than(0)
        .await
        .expect("nothing to do, no error"));
    assert_eq!(crm.refreshes.load(Ordering::SeqCst), 0);
    assert!(store.current().is_none());
}

#[tokio::test]
async fn long_lived_tokens_have_nothing_to_refresh_on_schedule() {
    let mock = mock(|_| json(500, json!({}))).await;
    let client = client(&mock.base);
    assert!(!client
        .refresh_if_older_than(0)
        .await
        .expect("nothing to do"));
    assert!(mock.requests().is_empty());
}

/// A store whose saves fail: the process died between amoCRM's answer and the save.
struct DiesBeforeSave(MemoryTokenStore);

#[async_trait::async_trait]
impl TokenStore for DiesBeforeSave {
    async fn load(&self) -> Result<Option<OAuthTokens>, TokenStoreError> {
        self.0.load().await
    }
    async fn save(&self, _: &OAuthTokens) -> Result<(), TokenStoreError> {
        Err(TokenStoreError::new("the process stopped before the save"))
    }
}

#[tokio::test]
async fn a_crash_between_the_refresh_and_the_save_never_runs_on_an_unsaved_pair_and_says_to_re_authorize(
) {
    let (mock, crm) = crm(&["A2"], "R1").await;
    let mut old = tokens("A1", "R1", 3_600);
    old.issued_at = now() - 31 * DAY;
    let dying = oauth_client(
        &mock.base,
        Arc::new(DiesBeforeSave(MemoryTokenStore::with_tokens(old.clone()))),
    );
    let err = dying
        .refresh_if_older_than(SCHEDULED_REFRESH_AFTER_SECS)
        .await
        .expect_err("the save failed");
    assert!(matches!(err, Error::TokenStore(_)), "{err:?}");
    // The new access token was never used: no API request went out with it.
    assert_eq!(crm.api_calls.load(Ordering::SeqCst), 0);
    // The restarted process finds the old pair; amoCRM spent its refresh token. The connection
    // says it needs re-authorizing, and the refused token is not sent again.
    let store = Arc::new(MemoryTokenStore::with_tokens(old));
    let restarted = oauth_client(&mock.base, store.clone());
    let err = restarted
        .refresh_if_older_than(SCHEDULED_REFRESH_AFTER_SECS)
        .await
        .expect_err("the refresh token is spent");
    match &err {
        Error::Unauthorized(why) => assert!(why.contains("re-authorize"), "{why}"),
        other => panic!("expected Unauthorized, got {other:?}"),
    }
    let refreshes = crm.refreshes.load(Ordering::SeqCst);
    assert!(restarted
        .refresh_if_older_than(SCHEDULED_REFRESH_AFTER_SECS)
        .await
        .is_err());
    assert_eq!(
        crm.refreshes.load(Ordering::SeqCst),
        refreshes,
        "a refused refresh token is not sent again"
    );
}
