//! Client for the requests callbridge makes to the Mango VPBX API (API ВАТС): the employee
//! directory (`config/users/request`), call groups (`groups`), one-time recording links
//! (`queries/recording/post`), speech-analytics transcripts (`queries/recording_transcripts`)
//! and the basic call statistics (`stats/request`, then `stats/result`; see `stats.rs`).
//!
//! Every request is a form-encoded POST of `vpbx_api_key`, `sign` and `json`, where `sign` is
//! [`crate::sign()`] over the exact `json` text that goes on the wire. The salt is never sent and
//! never printed.
//!
//! Mango limits each method's request rate and blocks a key that keeps sending invalid requests,
//! so the client spaces its own requests: each endpoint has a minimum interval (see the
//! `MIN_INTERVAL_*` constants) and a call waits until that much time has passed since the
//! previous request to the same endpoint *finished*. Measuring from the end rather than the
//! start means that the spacing Mango sees on arrival can never be shorter than the interval,
//! whatever the network delays. Clones of a [`VpbxClient`] share the limiters, so share one
//! client per API key rather than building several.
//!
//! Responses are read leniently (ids and extensions may come as strings or numbers, missing
//! fields take defaults) but a value that is present and unusable is reported as
//! [`ApiError::Malformed`] with the path of the field. Nothing in a response body can make the
//! client panic.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::LOCATION;
use reqwest::{StatusCode, Url};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{Mutex, MutexGuard};
use tokio::time::Instant;

mod error;
mod read;
mod stats;

pub use error::ApiError;
use read::{as_int, parse_groups, parse_transcripts, parse_users};
pub use stats::{
    parse_stats_csv, BadStatsRow, StatsPoll, StatsRow, StatsTable, MIN_INTERVAL_STATS_REQUEST,
    STATS_FIELDS, STATS_POLL_INTERVAL,
};

/// Mango's production API base URL.
pub const DEFAULT_BASE_URL: &str = "https://app.mango-office.ru/vpbx/";

/// `config/users/request`: documented limit of 1 request per 2 s.
pub const MIN_INTERVAL_USERS: Duration = Duration::from_secs(2);
/// `groups`: no limit of its own is documented; 1 per second is well under the general 10/s.
pub const MIN_INTERVAL_GROUPS: Duration = Duration::from_secs(1);
/// `queries/recording/post`: documented "recording access" limit of 10 per second.
pub const MIN_INTERVAL_RECORDING: Duration = Duration::from_millis(100);
/// `queries/recording_transcripts`: no limit of its own is documented; 1 per second.
pub const MIN_INTERVAL_TRANSCRIPTS: Duration = Duration::from_secs(1);

/// At most this many recording ids go into one `recording_transcripts` request (Mango's limit).
pub const TRANSCRIPTS_BATCH: usize = 500;

/// Whole-request timeout, so that a hung request cannot hold an endpoint's limiter forever.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Larger response bodies are refused rather than buffered.
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// The `result` code of a successful request.
const RESULT_OK: i64 = 1000;
/// Mango's "sign mismatch" and "bad key" codes.
const CODE_SIGN_MISMATCH: i64 = 3102;
const CODE_BAD_KEY: i64 = 3105;

const EP_USERS: &str = "config/users/request";
const EP_GROUPS: &str = "groups";
const EP_RECORDING: &str = "queries/recording/post";
const EP_TRANSCRIPTS: &str = "queries/recording_transcripts";

/// An employee from `config/users/request`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct VpbxUser {
    /// `general.user_id`: the id used by record events, extended stats and groups.
    pub user_id: Option<i64>,
    /// `general.name`; empty when absent.
    pub name: String,
    /// `general.email`; `None` when absent or empty.
    pub email: Option<String>,
    /// `telephony.extension` (the short internal number); `None` when absent or empty.
    pub extension: Option<String>,
    /// Ids of the groups the employee is in.
    pub groups: Vec<i64>,
    /// `telephony.numbers[].number` (SIP URIs, phone numbers), in dialling `order`.
    pub numbers: Vec<String>,
}

/// A call group from `groups`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct VpbxGroup {
    pub id: i64,
    /// Empty when absent.
    pub name: String,
    /// The group's short number; `None` when absent or empty.
    pub extension: Option<String>,
    /// The group's dialling algorithm.
    pub dial_alg_group: Option<i64>,
    pub operators: Vec<GroupOperator>,
}

/// A member of a call group.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct GroupOperator {
    /// The employee's `general.user_id`.
    pub id: Option<i64>,
    /// Empty when absent.
    pub name: String,
    pub extension: Option<String>,
    pub priority: Option<i64>,
    pub order: Option<i64>,
}

/// The speech-analytics transcript of one recording.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Transcript {
    pub recording_id: String,
    /// `(speaker, text)` in spoken order; the speaker is Mango's key (`operator`, `client`).
    pub phrases: Vec<(String, String)>,
}

/// Minimum spacing between requests to one endpoint. A [`Permit`] holds the lock for the whole
/// request, so concurrent callers queue.
struct Throttle {
    interval: Duration,
    last_done: Mutex<Option<Instant>>,
}

impl Throttle {
    fn new(interval: Duration) -> Self {
        Throttle {
            interval,
            last_done: Mutex::new(None),
        }
    }

    /// Waits until a request is allowed.
    async fn acquire(&self) -> Permit<'_> {
        let guard = self.last_done.lock().await;
        if let Some(last) = *guard {
            tokio::time::sleep_until(last + self.interval).await;
        }
        Permit(guard)
    }
}

/// Permission to send one request; dropping it (when the request has finished, failed or been
/// cancelled) starts the next interval.
struct Permit<'a>(MutexGuard<'a, Option<Instant>>);

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        *self.0 = Some(Instant::now());
    }
}

struct Inner {
    base_url: Url,
    api_key: String,
    api_salt: String,
    http: reqwest::Client,
    users: Throttle,
    groups: Throttle,
    recording: Throttle,
    transcripts: Throttle,
    stats_request: Throttle,
    stats_result: Throttle,
}

/// A Mango VPBX API client for one API key. Cheap to clone; clones share the rate limiters.
#[derive(Clone)]
pub struct VpbxClient {
    inner: Arc<Inner>,
}

impl fmt::Debug for VpbxClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key: String = self.inner.api_key.chars().take(4).collect();
        f.debug_struct("VpbxClient")
            .field("base_url", &self.inner.base_url.as_str())
            .field("api_key", &format_args!("{key}…"))
            .finish_non_exhaustive()
    }
}

/// What came back, before interpretation.
struct Answer {
    status: StatusCode,
    location: Option<Result<String, ()>>,
    body: Vec<u8>,
}

/// The HTTP client the API's requests need: no redirects followed (the recording link is the
/// Location of a 302) and the API's timeouts. One may serve every key's [`VpbxClient`].
pub fn http_client() -> Result<reqwest::Client, ApiError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .build()
        .map_err(|e| ApiError::Config(format!("HTTP client: {e}")))
}

impl VpbxClient {
    /// Whether this client signs with `api_key` and `api_salt` (a cache of clients by key
    /// must not keep signing with a salt the tenant has changed).
    pub fn signs_with(&self, api_key: &str, api_salt: &str) -> bool {
        self.inner.api_key == api_key && self.inner.api_salt == api_salt
    }

    /// Whether `other` is this client or a clone of it (sharing its request spacing).
    pub fn same_as(&self, other: &VpbxClient) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// A client for Mango's production API ([`DEFAULT_BASE_URL`]).
    pub fn new(api_key: impl Into<String>, api_salt: impl Into<String>) -> Result<Self, ApiError> {
        Self::with_base_url(DEFAULT_BASE_URL, api_key, api_salt)
    }

    /// A client for the API at `base_url` (the part before `config/users/request`; a missing
    /// trailing `/` is added), on an HTTP client of its own.
    pub fn with_base_url(
        base_url: &str,
        api_key: impl Into<String>,
        api_salt: impl Into<String>,
    ) -> Result<Self, ApiError> {
        Self::with_http(base_url, api_key, api_salt, http_client()?)
    }

    /// A client for the API at `base_url` on `http`, an HTTP client shared with other keys'
    /// clients (one connection pool, and one TLS setup, for thousands of tenants); build it
    /// with [`http_client`], which does not follow redirects (a recording link is the
    /// Location of a 302).
    pub fn with_http(
        base_url: &str,
        api_key: impl Into<String>,
        api_salt: impl Into<String>,
        http: reqwest::Client,
    ) -> Result<Self, ApiError> {
        let mut base = base_url.trim().to_owned();
        if !base.ends_with('/') {
            base.push('/');
        }
        let base_url = Url::parse(&base)
            .map_err(|e| ApiError::Config(format!("base URL {base_url:?}: {e}")))?;
        if !matches!(base_url.scheme(), "http" | "https") || base_url.cannot_be_a_base() {
            return Err(ApiError::Config(format!(
                "base URL {:?} is not an http(s) URL",
                base_url.as_str()
            )));
        }
        Ok(VpbxClient {
            inner: Arc::new(Inner {
                base_url,
                api_key: api_key.into(),
                api_salt: api_salt.into(),
                http,
                users: Throttle::new(MIN_INTERVAL_USERS),
                groups: Throttle::new(MIN_INTERVAL_GROUPS),
                recording: Throttle::new(MIN_INTERVAL_RECORDING),
                transcripts: Throttle::new(MIN_INTERVAL_TRANSCRIPTS),
                stats_request: Throttle::new(MIN_INTERVAL_STATS_REQUEST),
                stats_result: Throttle::new(stats::MIN_INTERVAL_STATS_RESULT),
            }),
        })
    }

    /// The base URL requests go to, with its trailing `/`.
    pub fn base_url(&self) -> &str {
        self.inner.base_url.as_str()
    }

    /// All employees, with `general.user_id` and group membership.
    pub async fn users(&self) -> Result<Vec<VpbxUser>, ApiError> {
        #[derive(Serialize)]
        struct Req {
            ext_fields: [&'static str; 2],
        }
        let json = to_json(&Req {
            ext_fields: ["general.user_id", "groups"],
        });
        let answer = self.post(EP_USERS, &self.inner.users, json).await?;
        let root = json_body(EP_USERS, &answer)?;
        parse_users(&root).map_err(|what| malformed(EP_USERS, what.to_string()))
    }

    /// All call groups, with their operators.
    pub async fn groups(&self) -> Result<Vec<VpbxGroup>, ApiError> {
        #[derive(Serialize)]
        struct Req {
            show_users: u8,
        }
        let json = to_json(&Req { show_users: 1 });
        let answer = self.post(EP_GROUPS, &self.inner.groups, json).await?;
        let root = json_body(EP_GROUPS, &answer)?;
        parse_groups(&root).map_err(|what| malformed(EP_GROUPS, what.to_string()))
    }

    /// A one-time link to play a recording: the `Location` Mango redirects to, not followed.
    /// Do not store it; it expires.
    pub async fn recording_link(&self, recording_id: &str) -> Result<String, ApiError> {
        #[derive(Serialize)]
        struct Req<'a> {
            recording_id: &'a str,
            action: &'static str,
        }
        let json = to_json(&Req {
            recording_id,
            action: "play",
        });
        let answer = self.post(EP_RECORDING, &self.inner.recording, json).await?;
        if !answer.status.is_redirection() {
            // A 2xx without a redirect may still carry a result code.
            if let Ok(root) = serde_json::from_slice::<Value>(strip_bom(&answer.body)) {
                check_result(EP_RECORDING, &root)?;
            }
            return Err(malformed(
                EP_RECORDING,
                format!("expected a redirect, got HTTP {}", answer.status.as_u16()),
            ));
        }
        match answer.location {
            None => Err(malformed(
                EP_RECORDING,
                format!("HTTP {} without a Location header", answer.status.as_u16()),
            )),
            Some(Err(())) => Err(malformed(EP_RECORDING, "Location header is not text")),
            Some(Ok(location)) => {
                let location = location.trim();
                if location.is_empty() {
                    return Err(malformed(EP_RECORDING, "Location header is empty"));
                }
                // A relative Location is resolved against the URL that was requested.
                let requested = self.url(EP_RECORDING)?;
                requested
                    .join(location)
                    .map(String::from)
                    .map_err(|e| malformed(EP_RECORDING, format!("Location {location:?}: {e}")))
            }
        }
    }

    /// Transcripts of the given recordings, in the order Mango returns them. Recordings without
    /// a transcript are simply absent. More than [`TRANSCRIPTS_BATCH`] ids are sent in several
    /// requests.
    pub async fn recording_transcripts(
        &self,
        recording_ids: &[String],
    ) -> Result<Vec<Transcript>, ApiError> {
        #[derive(Serialize)]
        struct Req {
            /// The id array, itself JSON-encoded into a string, as Mango expects.
            recording_id: String,
        }
        let mut out = Vec::new();
        for batch in recording_ids.chunks(TRANSCRIPTS_BATCH) {
            let json = to_json(&Req {
                recording_id: to_json(&batch),
            });
            let answer = self
                .post(EP_TRANSCRIPTS, &self.inner.transcripts, json)
                .await?;
            let root = json_body(EP_TRANSCRIPTS, &answer)?;
            out.extend(
                parse_transcripts(&root)
                    .map_err(|what| malformed(EP_TRANSCRIPTS, what.to_string()))?,
            );
        }
        Ok(out)
    }

    fn url(&self, endpoint: &'static str) -> Result<Url, ApiError> {
        self.inner
            .base_url
            .join(endpoint)
            .map_err(|e| ApiError::Config(format!("URL for {endpoint}: {e}")))
    }

    /// Sends one signed request, respecting the endpoint's minimum interval, and classifies
    /// error statuses. Returns redirects and successes as they are.
    async fn post(
        &self,
        endpoint: &'static str,
        throttle: &Throttle,
        json: String,
    ) -> Result<Answer, ApiError> {
        let url = self.url(endpoint)?;
        let sign = crate::sign::sign(&self.inner.api_key, &json, &self.inner.api_salt);
        let form = [
            ("vpbx_api_key", self.inner.api_key.as_str()),
            ("sign", sign.as_str()),
            ("json", json.as_str()),
        ];
        let permit = throttle.acquire().await;
        let result = self.exchange(endpoint, url, &form).await;
        drop(permit);
        let answer = result?;
        if answer.status.is_success() || answer.status.is_redirection() {
            Ok(answer)
        } else {
            Err(classify_error(endpoint, &answer))
        }
    }

    async fn exchange(
        &self,
        endpoint: &'static str,
        url: Url,
        form: &[(&str, &str)],
    ) -> Result<Answer, ApiError> {
        let transport = |source| ApiError::Transport { endpoint, source };
        let mut response = self
            .inner
            .http
            .post(url)
            .form(form)
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        let location = response
            .headers()
            .get(LOCATION)
            .map(|v| v.to_str().map(str::to_owned).map_err(|_| ()));
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(malformed(
                    endpoint,
                    format!("body larger than {MAX_BODY_BYTES} bytes"),
                ));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Answer {
            status,
            location,
            body,
        })
    }
}

fn to_json<T: Serialize + ?Sized>(value: &T) -> String {
    // Serializing these plain structs and string slices cannot fail.
    serde_json::to_string(value).unwrap_or_default()
}

fn malformed(endpoint: &'static str, what: impl Into<String>) -> ApiError {
    ApiError::Malformed {
        endpoint,
        what: what.into(),
    }
}

fn strip_bom(body: &[u8]) -> &[u8] {
    body.strip_prefix("\u{feff}".as_bytes()).unwrap_or(body)
}

/// The `code` (or `result`) and `message` of an error body, when it is a JSON object.
fn error_fields(body: &[u8]) -> (Option<i64>, Option<String>) {
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(strip_bom(body)) else {
        return (None, None);
    };
    let code = map
        .get("code")
        .and_then(|v| as_int(v).ok().flatten())
        .or_else(|| map.get("result").and_then(|v| as_int(v).ok().flatten()));
    let message = map
        .get("message")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(str::to_owned);
    (code, message)
}

fn classify_error(endpoint: &'static str, answer: &Answer) -> ApiError {
    let (code, message) = error_fields(&answer.body);
    let status = answer.status;
    if status == StatusCode::TOO_MANY_REQUESTS {
        return ApiError::RateLimited {
            endpoint,
            code,
            message,
        };
    }
    if let Some(code @ (CODE_SIGN_MISMATCH | CODE_BAD_KEY)) = code {
        return ApiError::BadCredentials {
            endpoint,
            status: status.as_u16(),
            code,
        };
    }
    if status == StatusCode::UNAUTHORIZED {
        return ApiError::Blocked {
            endpoint,
            code,
            message,
        };
    }
    ApiError::Http {
        endpoint,
        status: status.as_u16(),
        code,
        message,
    }
}

/// The body of a successful answer as JSON, with its `result` checked when present.
fn json_body(endpoint: &'static str, answer: &Answer) -> Result<Value, ApiError> {
    if !answer.status.is_success() {
        return Err(malformed(
            endpoint,
            format!("unexpected HTTP {}", answer.status.as_u16()),
        ));
    }
    let body = strip_bom(&answer.body);
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(malformed(endpoint, "empty body"));
    }
    let root: Value = serde_json::from_slice(body)
        .map_err(|e| malformed(endpoint, format!("body is not JSON: {e}")))?;
    check_result(endpoint, &root)?;
    Ok(root)
}

/// A `result` other than 1000 in an otherwise successful answer is a refusal.
fn check_result(endpoint: &'static str, root: &Value) -> Result<(), ApiError> {
    let Some(result) = root.get("result") else {
        return Ok(());
    };
    match as_int(result) {
        Ok(None) | Ok(Some(RESULT_OK)) => Ok(()),
        Ok(Some(code)) => Err(ApiError::Refused {
            endpoint,
            code,
            message: root
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_owned),
        }),
        Err(got) => Err(malformed(
            endpoint,
            got.at("result", "an integer").to_string(),
        )),
    }
}
