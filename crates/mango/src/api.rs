//! Client for the requests callbridge makes to the Mango VPBX API (API ВАТС): the employee
//! directory (`config/users/request`), call groups (`groups`), one-time recording links
//! (`queries/recording/post`) and speech-analytics transcripts (`queries/recording_transcripts`).
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
use serde_json::{Map, Value};
use tokio::sync::{Mutex, MutexGuard};
use tokio::time::Instant;

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

/// What went wrong with a request. No variant ever holds the API salt.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The client could not be built (bad base URL, TLS set-up).
    #[error("Mango API client configuration: {0}")]
    Config(String),
    /// Mango rejected the signature (code 3102) or the key (code 3105): `vpbx_api_key` or
    /// `vpbx_api_salt` is wrong. Mango blocks keys that keep sending such requests.
    #[error(
        "Mango rejected the credentials on {endpoint} (HTTP {status}, code {code}: {}); check vpbx_api_key and vpbx_api_salt",
        code_meaning(*code)
    )]
    BadCredentials {
        endpoint: &'static str,
        status: u16,
        code: i64,
    },
    /// HTTP 429: Mango's rate limit was exceeded.
    #[error("Mango rate limit exceeded on {endpoint} (HTTP 429{})", detail(*code, message.as_deref()))]
    RateLimited {
        endpoint: &'static str,
        code: Option<i64>,
        message: Option<String>,
    },
    /// HTTP 401 without a credentials code: Mango blocks a key for a while after too many invalid
    /// requests (more than 1 per 2 minutes).
    #[error("Mango blocked requests on {endpoint} (HTTP 401{}); invalid requests block the key for a while", detail(*code, message.as_deref()))]
    Blocked {
        endpoint: &'static str,
        code: Option<i64>,
        message: Option<String>,
    },
    /// Any other unsuccessful HTTP status, with Mango's code and message when the body has them
    /// (e.g. 420 with `{"code":3104}` for a badly formatted request).
    #[error("Mango answered HTTP {status} on {endpoint}{}", detail(*code, message.as_deref()))]
    Http {
        endpoint: &'static str,
        status: u16,
        code: Option<i64>,
        message: Option<String>,
    },
    /// A successful HTTP status whose body reports a `result` other than 1000.
    #[error("Mango refused the request on {endpoint} (result {code}: {}{})", code_meaning(*code), message.as_deref().map(|m| format!("; {m}")).unwrap_or_default())]
    Refused {
        endpoint: &'static str,
        code: i64,
        message: Option<String>,
    },
    /// The request did not complete: connection, TLS, timeout, or reading the body.
    #[error("request to Mango {endpoint} failed: {source}")]
    Transport {
        endpoint: &'static str,
        #[source]
        source: reqwest::Error,
    },
    /// The answer could not be understood; `what` names the part at fault.
    #[error("malformed answer from Mango {endpoint}: {what}")]
    Malformed {
        endpoint: &'static str,
        what: String,
    },
}

impl ApiError {
    /// Mango's numeric code, when the answer carried one.
    pub fn code(&self) -> Option<i64> {
        match self {
            ApiError::BadCredentials { code, .. } | ApiError::Refused { code, .. } => Some(*code),
            ApiError::RateLimited { code, .. }
            | ApiError::Blocked { code, .. }
            | ApiError::Http { code, .. } => *code,
            _ => None,
        }
    }
}

fn detail(code: Option<i64>, message: Option<&str>) -> String {
    let mut out = String::new();
    if let Some(code) = code {
        out.push_str(&format!(", code {code}"));
        let meaning = code_meaning(code);
        if !meaning.is_empty() {
            out.push_str(&format!(": {meaning}"));
        }
    }
    if let Some(message) = message {
        out.push_str(&format!(", message {message:?}"));
    }
    out
}

/// A short description of the request-level codes (3xxx) and a few others.
fn code_meaning(code: i64) -> &'static str {
    match code {
        3100 => "invalid parameters",
        3101 => "request is not a POST",
        3102 => "signature mismatch",
        3103 => "required parameter missing",
        3104 => "badly formatted request",
        3105 => "invalid vpbx_api_key",
        3320 => "recording not found",
        5001 => "Mango server overloaded",
        5003 => "Mango technical error",
        _ => "",
    }
}

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

impl VpbxClient {
    /// A client for Mango's production API ([`DEFAULT_BASE_URL`]).
    pub fn new(api_key: impl Into<String>, api_salt: impl Into<String>) -> Result<Self, ApiError> {
        Self::with_base_url(DEFAULT_BASE_URL, api_key, api_salt)
    }

    /// A client for the API at `base_url` (the part before `config/users/request`; a missing
    /// trailing `/` is added).
    pub fn with_base_url(
        base_url: &str,
        api_key: impl Into<String>,
        api_salt: impl Into<String>,
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
        let http = reqwest::Client::builder()
            // The recording link is the Location of a 302, which must not be followed.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| ApiError::Config(format!("HTTP client: {e}")))?;
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

// ---- lenient field readers -------------------------------------------------------------------
//
// Each returns Ok(None) for a missing or null value, Ok(Some(..)) for a usable one and Err with a
// short description of the value otherwise ([`WrongKind`]); the callers add the field's path
// ([`Unusable`]), which becomes the `what` of [`ApiError::Malformed`].

/// A part of an answer that cannot be used, named by its path (`users[0].general.user_id`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
enum Unusable {
    #[error("{path}: missing")]
    Missing { path: String },
    #[error("{path}: expected {expected}, got {got}")]
    Unexpected {
        path: String,
        expected: &'static str,
        got: WrongKind,
    },
    /// The whole answer is not an object.
    #[error("expected a JSON object, got {0}")]
    NotAnObject(WrongKind),
}

/// A value of the wrong kind, as shown in a message (bounded by [`describe`]).
#[derive(Debug, Clone, PartialEq)]
struct WrongKind(String);

impl WrongKind {
    fn of(v: &Value) -> WrongKind {
        WrongKind(describe(v))
    }

    /// The problem of finding this where `expected` was wanted, at `path`.
    fn at(self, path: impl Into<String>, expected: &'static str) -> Unusable {
        Unusable::Unexpected {
            path: path.into(),
            expected,
            got: self,
        }
    }
}

impl fmt::Display for WrongKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A short, bounded description of an unusable value for error messages.
fn describe(v: &Value) -> String {
    let text = v.to_string();
    if text.chars().count() > 40 {
        let head: String = text.chars().take(40).collect();
        format!("{head}…")
    } else {
        text
    }
}

/// An integer given as a JSON integer, an integral float or a decimal string.
fn as_int(v: &Value) -> Result<Option<i64>, WrongKind> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                return Ok(Some(i));
            }
            match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Some(f as i64)),
                _ => Err(WrongKind::of(v)),
            }
        }
        Value::String(s) => {
            let s = s.trim();
            if s.is_empty() {
                Ok(None)
            } else {
                s.parse::<i64>().map(Some).map_err(|_| WrongKind::of(v))
            }
        }
        _ => Err(WrongKind::of(v)),
    }
}

/// Text given as a string or a number; empty text counts as absent.
fn as_text(v: &Value) -> Result<Option<String>, WrongKind> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => {
            let s = s.trim();
            Ok((!s.is_empty()).then(|| s.to_owned()))
        }
        Value::Number(n) => Ok(Some(n.to_string())),
        _ => Err(WrongKind::of(v)),
    }
}

fn field<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

fn int_field(obj: &Map<String, Value>, key: &str, path: &str) -> Result<Option<i64>, Unusable> {
    match field(obj, key) {
        None => Ok(None),
        Some(v) => as_int(v).map_err(|got| got.at(format!("{path}.{key}"), "an integer")),
    }
}

fn text_field(obj: &Map<String, Value>, key: &str, path: &str) -> Result<Option<String>, Unusable> {
    match field(obj, key) {
        None => Ok(None),
        Some(v) => as_text(v).map_err(|got| got.at(format!("{path}.{key}"), "text")),
    }
}

/// A nested object; missing or null gives `None`.
fn object_field<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<&'a Map<String, Value>>, Unusable> {
    match field(obj, key) {
        None => Ok(None),
        Some(Value::Object(map)) => Ok(Some(map)),
        Some(v) => Err(WrongKind::of(v).at(format!("{path}.{key}"), "an object")),
    }
}

/// A nested array; missing or null gives an empty slice.
fn array_field<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<&'a [Value], Unusable> {
    match field(obj, key) {
        None => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(v) => Err(WrongKind::of(v).at(format!("{path}.{key}"), "an array")),
    }
}

/// The top-level array `key`, which must be present.
fn root_array<'a>(root: &'a Value, key: &str) -> Result<&'a [Value], Unusable> {
    let Value::Object(map) = root else {
        return Err(Unusable::NotAnObject(WrongKind::of(root)));
    };
    match map.get(key) {
        Some(Value::Array(items)) => Ok(items),
        None | Some(Value::Null) => Err(Unusable::Missing {
            path: key.to_owned(),
        }),
        Some(v) => Err(WrongKind::of(v).at(key, "an array")),
    }
}

fn as_object<'a>(v: &'a Value, path: &str) -> Result<&'a Map<String, Value>, Unusable> {
    match v {
        Value::Object(map) => Ok(map),
        _ => Err(WrongKind::of(v).at(path, "an object")),
    }
}

fn parse_users(root: &Value) -> Result<Vec<VpbxUser>, Unusable> {
    root_array(root, "users")?
        .iter()
        .enumerate()
        .map(|(i, v)| parse_user(v, &format!("users[{i}]")))
        .collect()
}

fn parse_user(v: &Value, path: &str) -> Result<VpbxUser, Unusable> {
    let user = as_object(v, path)?;
    let empty = Map::new();
    let general_path = format!("{path}.general");
    let general = object_field(user, "general", path)?.unwrap_or(&empty);
    let telephony_path = format!("{path}.telephony");
    let telephony = object_field(user, "telephony", path)?.unwrap_or(&empty);

    let user_id = match int_field(general, "user_id", &general_path)? {
        Some(id) => Some(id),
        None => int_field(user, "user_id", path)?,
    };

    // Group membership comes as ids; an object with an `id` is accepted too.
    let mut groups = Vec::new();
    for (i, g) in array_field(user, "groups", path)?.iter().enumerate() {
        let item_path = format!("{path}.groups[{i}]");
        let id = match g {
            Value::Object(map) => int_field(map, "id", &item_path)?,
            other => as_int(other).map_err(|got| got.at(item_path, "a group id"))?,
        };
        if let Some(id) = id {
            groups.push(id);
        }
    }

    let mut numbers = Vec::new();
    for (i, n) in array_field(telephony, "numbers", &telephony_path)?
        .iter()
        .enumerate()
    {
        let item_path = format!("{telephony_path}.numbers[{i}]");
        let (number, order) = match n {
            Value::Object(map) => (
                text_field(map, "number", &item_path)?,
                int_field(map, "order", &item_path)?,
            ),
            other => (
                as_text(other).map_err(|got| got.at(item_path, "a number"))?,
                None,
            ),
        };
        if let Some(number) = number {
            numbers.push((order, number));
        }
    }
    // Dialling order; entries without an order keep their place after the ordered ones.
    numbers.sort_by_key(|(order, _)| order.unwrap_or(i64::MAX));

    Ok(VpbxUser {
        user_id,
        name: text_field(general, "name", &general_path)?.unwrap_or_default(),
        email: text_field(general, "email", &general_path)?,
        extension: text_field(telephony, "extension", &telephony_path)?,
        groups,
        numbers: numbers.into_iter().map(|(_, n)| n).collect(),
    })
}

fn parse_groups(root: &Value) -> Result<Vec<VpbxGroup>, Unusable> {
    root_array(root, "groups")?
        .iter()
        .enumerate()
        .map(|(i, v)| parse_group(v, &format!("groups[{i}]")))
        .collect()
}

fn parse_group(v: &Value, path: &str) -> Result<VpbxGroup, Unusable> {
    let group = as_object(v, path)?;
    let id = int_field(group, "id", path)?.ok_or_else(|| Unusable::Missing {
        path: format!("{path}.id"),
    })?;
    let operators = array_field(group, "operators", path)?
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let op_path = format!("{path}.operators[{i}]");
            let op = as_object(v, &op_path)?;
            Ok(GroupOperator {
                id: int_field(op, "id", &op_path)?,
                name: text_field(op, "name", &op_path)?.unwrap_or_default(),
                extension: text_field(op, "extension", &op_path)?,
                priority: int_field(op, "priority", &op_path)?,
                order: int_field(op, "order", &op_path)?,
            })
        })
        .collect::<Result<Vec<_>, Unusable>>()?;
    Ok(VpbxGroup {
        id,
        name: text_field(group, "name", path)?.unwrap_or_default(),
        extension: text_field(group, "extension", path)?,
        dial_alg_group: int_field(group, "dial_alg_group", path)?,
        operators,
    })
}

fn parse_transcripts(root: &Value) -> Result<Vec<Transcript>, Unusable> {
    root_array(root, "data")?
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let path = format!("data[{i}]");
            let item = as_object(v, &path)?;
            let recording_id =
                text_field(item, "recording_id", &path)?.ok_or_else(|| Unusable::Missing {
                    path: format!("{path}.recording_id"),
                })?;
            let phrases = array_field(item, "phrases", &path)?
                .iter()
                .enumerate()
                .map(|(j, p)| {
                    let p_path = format!("{path}.phrases[{j}]");
                    match p {
                        Value::Array(pair) if pair.len() >= 2 => {
                            let speaker = as_text(&pair[0])
                                .map_err(|got| got.at(format!("{p_path}[0]"), "text"))?
                                .unwrap_or_default();
                            let text = match &pair[1] {
                                Value::String(s) => s.clone(),
                                other => as_text(other)
                                    .map_err(|got| got.at(format!("{p_path}[1]"), "text"))?
                                    .unwrap_or_default(),
                            };
                            Ok((speaker, text))
                        }
                        other => Err(WrongKind::of(other).at(p_path, "[speaker, text]")),
                    }
                })
                .collect::<Result<Vec<_>, Unusable>>()?;
            Ok(Transcript {
                recording_id,
                phrases,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ints_accept_numbers_strings_and_integral_floats() {
        assert_eq!(as_int(&json!(12)), Ok(Some(12)));
        assert_eq!(as_int(&json!(" 12 ")), Ok(Some(12)));
        assert_eq!(as_int(&json!(12.0)), Ok(Some(12)));
        assert_eq!(as_int(&json!("")), Ok(None));
        assert_eq!(as_int(&Value::Null), Ok(None));
        assert!(as_int(&json!(1.5)).is_err());
        assert!(as_int(&json!("12a")).is_err());
        assert!(as_int(&json!(1e300)).is_err());
        assert!(as_int(&json!([1])).is_err());
    }

    #[test]
    fn text_accepts_strings_and_numbers() {
        assert_eq!(as_text(&json!("101")), Ok(Some("101".into())));
        assert_eq!(as_text(&json!(101)), Ok(Some("101".into())));
        assert_eq!(as_text(&json!("  ")), Ok(None));
        assert!(as_text(&json!({})).is_err());
    }

    #[test]
    fn descriptions_are_bounded() {
        let long = json!("x".repeat(1000));
        assert!(describe(&long).chars().count() <= 41);
    }

    #[test]
    fn unusable_parts_are_named_by_their_path() {
        let text = |r: Result<Vec<VpbxGroup>, Unusable>| r.unwrap_err().to_string();
        assert_eq!(
            text(parse_groups(&json!(5))),
            "expected a JSON object, got 5"
        );
        assert_eq!(text(parse_groups(&json!({}))), "groups: missing");
        assert_eq!(
            text(parse_groups(&json!({"groups": [{}]}))),
            "groups[0].id: missing"
        );
        assert_eq!(
            text(parse_groups(
                &json!({"groups": [{"id": 1, "operators": [{"id": "x"}]}]})
            )),
            "groups[0].operators[0].id: expected an integer, got \"x\""
        );
        assert_eq!(
            parse_transcripts(&json!({"data": [{"recording_id": "r", "phrases": [5]}]}))
                .unwrap_err()
                .to_string(),
            "data[0].phrases[0]: expected [speaker, text], got 5"
        );
    }

    #[test]
    fn numbers_are_sorted_by_dialling_order() {
        let user = json!({"telephony":{"numbers":[
            {"number":"b","order":"1"},{"number":"c"},{"number":"a","order":0}]}});
        let parsed = parse_user(&user, "users[0]").unwrap();
        assert_eq!(parsed.numbers, ["a", "b", "c"]);
    }
}
