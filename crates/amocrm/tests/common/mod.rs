//! A scriptable amoCRM stand-in for the tests: an axum server on 127.0.0.1 (random port) that
//! records every request and answers with what the test's closure decides.

#![allow(dead_code)] // each test binary uses a different part of this module

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use callbridge_amocrm::{AccountConfig, AmoClient, AuthConfig, MemoryTokenStore};
use serde_json::Value;

/// One request as the mock saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    /// When the handler started: the request's arrival as far as the server can tell.
    pub at: Instant,
    pub method: Method,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: String,
}

impl Seen {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("request body is not JSON ({e}): {}", self.body))
    }

    /// Every value of a query parameter, in order.
    pub fn query_all(&self, key: &str) -> Vec<String> {
        self.query
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub fn query_one(&self, key: &str) -> Option<String> {
        self.query_all(key).into_iter().next()
    }

    pub fn bearer(&self) -> Option<String> {
        self.headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_string)
    }
}

/// What the mock answers.
pub struct Answer {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    /// Wait this long before answering.
    pub delay: Option<Duration>,
    /// A `Location` header (for redirects).
    pub location: Option<String>,
}

pub fn json(status: u16, value: Value) -> Answer {
    Answer {
        status,
        content_type: "application/hal+json",
        body: value.to_string(),
        delay: None,
        location: None,
    }
}

pub fn problem(status: u16, value: Value) -> Answer {
    Answer {
        status,
        content_type: "application/problem+json",
        body: value.to_string(),
        delay: None,
        location: None,
    }
}

pub fn html(status: u16, text: &str) -> Answer {
    Answer {
        status,
        content_type: "text/html",
        body: text.to_string(),
        delay: None,
        location: None,
    }
}

pub fn raw(status: u16, body: &str) -> Answer {
    Answer {
        status,
        content_type: "application/json",
        body: body.to_string(),
        delay: None,
        location: None,
    }
}

pub fn no_content() -> Answer {
    Answer {
        status: 204,
        content_type: "application/json",
        body: String::new(),
        delay: None,
        location: None,
    }
}

impl Answer {
    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// A redirect to `location`.
    pub fn redirect(status: u16, location: String) -> Self {
        Answer {
            location: Some(location),
            ..raw(status, "")
        }
    }
}

type Script = dyn Fn(&Seen) -> Answer + Send + Sync;

#[derive(Clone)]
struct MockState {
    seen: Arc<Mutex<Vec<Seen>>>,
    script: Arc<Script>,
}

pub struct Mock {
    pub base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Mock {
    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().expect("mock log").clone()
    }

    pub fn requests_to(&self, path: &str) -> Vec<Seen> {
        self.requests()
            .into_iter()
            .filter(|s| s.path == path)
            .collect()
    }
}

async fn handle(
    State(state): State<MockState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let at = Instant::now();
    let query = uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let seen = Seen {
        at,
        method,
        path: uri.path().to_string(),
        query,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    state.seen.lock().expect("mock log").push(seen.clone());
    let answer = (state.script)(&seen);
    if let Some(delay) = answer.delay {
        tokio::time::sleep(delay).await;
    }
    let status = StatusCode::from_u16(answer.status).expect("status");
    if let Some(location) = answer.location {
        return (status, [("location", location)], answer.body).into_response();
    }
    (status, [("content-type", answer.content_type)], answer.body).into_response()
}

/// Start a mock answering every request with `script`.
pub async fn mock(script: impl Fn(&Seen) -> Answer + Send + Sync + 'static) -> Mock {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let state = MockState {
        seen: seen.clone(),
        script: Arc::new(script),
    };
    let app = Router::new().fallback(handle).with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    });
    Mock {
        base: format!("http://{addr}"),
        seen,
    }
}

pub const LONG_LIVED_TOKEN: &str = "long-lived-token-s3cret";

/// A client with a long-lived token; a high rate so that tests not about the limiter run fast.
pub fn client(base: &str) -> AmoClient {
    client_with(base, 1000, Duration::from_secs(10))
}

pub fn client_with(base: &str, rps: u32, timeout: Duration) -> AmoClient {
    let config = AccountConfig {
        base_url: format!("{base}/"),
        auth: AuthConfig::LongLived {
            token: LONG_LIVED_TOKEN.into(),
        },
        requests_per_second: rps,
        timeout,
    };
    AmoClient::new(config, Arc::new(MemoryTokenStore::new())).expect("client")
}

/// Largest number of instants inside any window `[t, t + window)`.
pub fn max_in_window(instants: &[Instant], window: Duration) -> usize {
    let mut sorted = instants.to_vec();
    sorted.sort();
    let mut best = 0;
    let mut lo = 0;
    for hi in 0..sorted.len() {
        while sorted[hi].duration_since(sorted[lo]) >= window {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    best
}
