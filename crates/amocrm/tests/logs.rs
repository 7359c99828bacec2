//! Secrets stay out of the logs, at every level, on the paths that log the most: a refresh after
//! a 401 and a revoked refresh token. Alone in its own test binary, because `tracing` caches per
//! call site whether anyone listens, and other tests running first on other threads would make
//! it skip events here.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use callbridge_amocrm::{
    AccountConfig, AmoClient, AuthConfig, MemoryTokenStore, OAuthTokens, TokenStore,
};
use common::*;
use serde_json::json;

const CLIENT_SECRET: &str = "client-secret-very-s3cret";

fn tokens(access: &str, refresh: &str, expires_in: i64) -> OAuthTokens {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    OAuthTokens {
        access_token: access.into(),
        refresh_token: refresh.into(),
        expires_at: now + expires_in,
        issued_at: now,
    }
}

fn oauth_client(base: &str, store: Arc<dyn TokenStore>) -> AmoClient {
    let config = AccountConfig {
        base_url: base.to_string(),
        auth: AuthConfig::OAuth {
            client_id: "client-id-1".into(),
            client_secret: CLIENT_SECRET.into(),
            redirect_uri: "https://callbridge.example/oauth".into(),
        },
        requests_per_second: 1000,
        timeout: Duration::from_secs(10),
    };
    AmoClient::new(config, store).expect("client")
}

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("capture").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_token_or_secret_reaches_the_logs() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer({
            let capture = capture.clone();
            move || capture.clone()
        })
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    // The CRM takes R1-s3cret once (for A2-s3cret/R2-s3cret) and accepts only A2-s3cret.
    let spent = Arc::new(Mutex::new(false));
    let mock = mock(move |seen| {
        if seen.path == "/oauth2/access_token" {
            let mut spent = spent.lock().expect("spent");
            if seen.json()["refresh_token"] != "R1-s3cret" || *spent {
                return problem(
                    401,
                    json!({"title":"Unauthorized","hint":"Token has been revoked"}),
                );
            }
            *spent = true;
            return json(
                200,
                json!({"expires_in":86400,"access_token":"A2-s3cret","refresh_token":"R2-s3cret"}),
            );
        }
        if seen.bearer().as_deref() == Some("A2-s3cret") {
            json(200, json!({"id": 7, "name": "Acme"}))
        } else {
            problem(401, json!({"title":"Unauthorized"}))
        }
    })
    .await;
    let store = Arc::new(MemoryTokenStore::with_tokens(tokens(
        "A1-s3cret",
        "R1-s3cret",
        3600,
    )));
    let client = oauth_client(&mock.base, store.clone());
    client.account().await.expect("account");
    store
        .save(&tokens("A3-s3cret", "R3-s3cret", -10))
        .await
        .expect("save");
    let broken = oauth_client(&mock.base, store);
    broken.account().await.expect_err("revoked");

    let logs = String::from_utf8(capture.0.lock().expect("capture").clone()).expect("utf-8");
    assert!(
        logs.contains("refreshed the amoCRM access token"),
        "logs were captured: {logs}"
    );
    assert!(
        logs.contains("the refresh token was refused"),
        "logs were captured: {logs}"
    );
    for secret in [
        "A1-s3cret",
        "R1-s3cret",
        "A2-s3cret",
        "R2-s3cret",
        "A3-s3cret",
        "R3-s3cret",
        CLIENT_SECRET,
    ] {
        assert!(
            !logs.contains(secret),
            "{secret} appears in the logs:\n{logs}"
        );
    }
}
