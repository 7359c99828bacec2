//! The VPBX API (API ВАТС) as callbridge calls it, over real HTTP.
//!
//! Served under `/vpbx/`: `config/users/request`, `groups`, `queries/recording/post`,
//! `queries/recording_transcripts`, `stats/request` and `stats/result`. Every request is a
//! form-encoded POST of `vpbx_api_key`, `sign` and `json`, checked as Mango does:
//!
//! - a wrong key: HTTP 401 `{"code":3105}`; a wrong signature: HTTP 401 `{"code":3102}`; a
//!   missing field: HTTP 420 `{"code":3103}`; `json` that is not JSON: HTTP 420 `{"code":3104}`;
//!   bad parameters: HTTP 420 `{"code":3100}`; not a POST: HTTP 420 `{"code":3101}`;
//! - more than one invalid request per two minutes blocks the key: HTTP 401 until the block
//!   expires ([`VpbxConfig::invalid_block`]);
//! - each endpoint's documented rate limit ([`RateLimits`]); excess gets HTTP 429 with
//!   Mango's body `{"name":"Service Unavailable","message":"Rate limit exceeded.","code":0,"status":429}`
//!   and is counted in [`ApiStats`].
//!
//! A recording link is a 302 to `/files/{token}.mp3` on this server, a silent MP3
//! (`audio/mpeg`, byte ranges supported) as long as the conversation (capped at 10 s). Links
//! expire after [`VpbxConfig::link_ttl`].

use crate::mp3;
use crate::vpbx::{CallRow, Vpbx};
use crate::EmulatorError;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::Response;
use axum::routing::{any, get};
use axum::Router;
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use subtle::ConstantTimeEq;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// At most `requests` requests in any window of `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub requests: u32,
    pub per: Duration,
}

impl Limit {
    pub const fn new(requests: u32, per: Duration) -> Limit {
        Limit { requests, per }
    }
}

/// Per-endpoint request limits for the one emulated product. `None`: unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// `config/users/request`: 1 per 2 s.
    pub users: Option<Limit>,
    /// `stats/request`: 1 per 2 s.
    pub stats_request: Option<Limit>,
    /// `stats/result`: no limit per product, 50 per second in total.
    pub stats_result: Option<Limit>,
    /// `queries/recording/post` ("recording access"): 10 per second.
    pub recording: Option<Limit>,
    /// Every other endpoint (`groups`, `queries/recording_transcripts`): the general 10 per
    /// second.
    pub other: Option<Limit>,
}

impl RateLimits {
    /// Mango's documented limits.
    pub const fn documented() -> RateLimits {
        RateLimits {
            users: Some(Limit::new(1, Duration::from_secs(2))),
            stats_request: Some(Limit::new(1, Duration::from_secs(2))),
            stats_result: Some(Limit::new(50, Duration::from_secs(1))),
            recording: Some(Limit::new(10, Duration::from_secs(1))),
            other: Some(Limit::new(10, Duration::from_secs(1))),
        }
    }

    /// No limits at all.
    pub const fn none() -> RateLimits {
        RateLimits {
            users: None,
            stats_request: None,
            stats_result: None,
            recording: None,
            other: None,
        }
    }

    fn of(&self, endpoint: Endpoint) -> Option<Limit> {
        match endpoint {
            Endpoint::Users => self.users,
            Endpoint::StatsRequest => self.stats_request,
            Endpoint::StatsResult => self.stats_result,
            Endpoint::Recording => self.recording,
            Endpoint::Groups | Endpoint::Transcripts => self.other,
        }
    }
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits::documented()
    }
}

/// How the API server behaves.
#[derive(Clone)]
pub struct VpbxConfig {
    pub api_key: String,
    /// Never sent, never logged.
    pub api_salt: String,
    /// The emulated PBX: staff for users and groups, recordings, statistics.
    pub vpbx: Vpbx,
    pub limits: RateLimits,
    /// A second invalid request (bad key, signature, format or parameters) within this long of
    /// the previous one blocks the key for this long, as Mango does ("1 per 2 minutes").
    /// `None`: never block.
    pub invalid_block: Option<Duration>,
    /// How long a `stats/request` takes to prepare (`stats/result` answers 204 until then).
    pub stats_delay: Duration,
    /// How long a prepared statistics key stays valid.
    pub stats_ttl: Duration,
    /// How long a recording link works.
    pub link_ttl: Duration,
}

impl VpbxConfig {
    /// Mango's documented behaviour: its rate limits, the two-minute block, 1 s to prepare
    /// statistics, ten-minute keys and links.
    pub fn new(api_key: impl Into<String>, api_salt: impl Into<String>, vpbx: Vpbx) -> Self {
        VpbxConfig {
            api_key: api_key.into(),
            api_salt: api_salt.into(),
            vpbx,
            limits: RateLimits::documented(),
            invalid_block: Some(Duration::from_secs(120)),
            stats_delay: Duration::from_secs(1),
            stats_ttl: Duration::from_secs(600),
            link_ttl: Duration::from_secs(600),
        }
    }
}

impl fmt::Debug for VpbxConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VpbxConfig")
            .field("api_key", &mask(&self.api_key))
            .field("api_salt", &"***")
            .field("vpbx", &self.vpbx)
            .field("limits", &self.limits)
            .field("invalid_block", &self.invalid_block)
            .field("stats_delay", &self.stats_delay)
            .field("stats_ttl", &self.stats_ttl)
            .field("link_ttl", &self.link_ttl)
            .finish()
    }
}

/// The first four characters of a secret, for logs.
pub(crate) fn mask(secret: &str) -> String {
    let head: String = secret.chars().take(4).collect();
    format!("{head}…")
}

/// What the server has seen so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ApiStats {
    /// Requests by endpoint (every arrival, whatever the answer).
    pub requests: BTreeMap<String, u64>,
    /// Requests answered successfully, by endpoint.
    pub answered: BTreeMap<String, u64>,
    /// Requests refused for exceeding the endpoint's rate limit, by endpoint.
    pub rate_limited: BTreeMap<String, u64>,
    /// All rate-limit violations.
    pub rate_limit_violations: u64,
    /// Requests with the right key and a wrong signature.
    pub bad_signatures: u64,
    /// Requests with an unknown `vpbx_api_key`.
    pub unknown_keys: u64,
    /// Requests missing a field, with unreadable JSON or bad parameters.
    pub malformed: u64,
    /// Requests refused because their key was blocked.
    pub blocked: u64,
    /// Requests to paths that are not an API endpoint.
    pub unknown_endpoints: u64,
    /// Recording links handed out.
    pub recording_links: u64,
    /// Recording requests for unknown or not yet available recordings.
    pub recordings_not_found: u64,
    /// MP3 downloads served (full or partial).
    pub files_served: u64,
    /// Statistics requests accepted.
    pub stats_requests: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Endpoint {
    Users,
    Groups,
    Recording,
    Transcripts,
    StatsRequest,
    StatsResult,
}

impl Endpoint {
    fn from_path(path: &str) -> Option<Endpoint> {
        Some(match path.trim_matches('/') {
            "config/users/request" => Endpoint::Users,
            "groups" => Endpoint::Groups,
            "queries/recording/post" => Endpoint::Recording,
            "queries/recording_transcripts" => Endpoint::Transcripts,
            "stats/request" => Endpoint::StatsRequest,
            "stats/result" => Endpoint::StatsResult,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Endpoint::Users => "config/users/request",
            Endpoint::Groups => "groups",
            Endpoint::Recording => "queries/recording/post",
            Endpoint::Transcripts => "queries/recording_transcripts",
            Endpoint::StatsRequest => "stats/request",
            Endpoint::StatsResult => "stats/result",
        }
    }
}

struct Block {
    last_invalid: Option<Instant>,
    until: Option<Instant>,
}

struct Link {
    recording_id: String,
    download: bool,
    seconds: f64,
    expires: Instant,
}

struct StatsJob {
    csv: String,
    ready_at: Instant,
    expires: Instant,
}

#[derive(Default)]
struct Mutable {
    windows: HashMap<Endpoint, VecDeque<Instant>>,
    blocks: HashMap<String, Block>,
    links: HashMap<String, Link>,
    jobs: HashMap<String, StatsJob>,
    stats: ApiStats,
    tokens: u64,
}

/// Bounds on the per-key and per-token maps, so a flood of junk cannot grow them forever.
const MAX_BLOCK_ENTRIES: usize = 10_000;
const MAX_LINKS: usize = 100_000;
const MAX_JOBS: usize = 1_000;
/// At most this many ids in one transcripts request (Mango's limit).
const MAX_TRANSCRIPT_IDS: usize = 500;
/// The longest statistics window Mango accepts.
const MAX_STATS_WINDOW: i64 = 31 * 86_400;
/// Generated recordings are at most this long, to keep downloads small.
const MAX_RECORDING_SECONDS: f64 = 10.0;

const STATS_FIELDS: [&str; 13] = [
    "records",
    "start",
    "finish",
    "answer",
    "from_extension",
    "from_number",
    "to_extension",
    "to_number",
    "disconnect_reason",
    "line_number",
    "location",
    "entry_id",
    "create",
];
/// Fields returned when a statistics request names none.
const DEFAULT_STATS_FIELDS: &str = "records,start,finish,answer,from_extension,from_number,to_extension,to_number,disconnect_reason,line_number,location,entry_id";

struct ApiState {
    config: VpbxConfig,
    addr: SocketAddr,
    state: Mutex<Mutable>,
}

impl ApiState {
    fn lock(&self) -> MutexGuard<'_, Mutable> {
        // Counters and maps stay usable even if a handler panicked while holding the lock.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn token(&self, m: &mut Mutable, what: &str) -> String {
        m.tokens += 1;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        // Keyed by the salt so that tokens cannot be guessed from the outside.
        let digest = callbridge_mango::sign(
            &format!("{what}:{}:{nanos}", m.tokens),
            "",
            &self.config.api_salt,
        );
        digest[..32].to_owned()
    }
}

/// A running API server.
pub struct VpbxApi {
    addr: SocketAddr,
    base_url: String,
    state: Arc<ApiState>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl fmt::Debug for VpbxApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VpbxApi")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

/// Serves the VPBX API on `listener` until [`VpbxApi::shutdown`] (or until the handle is
/// dropped).
pub async fn start_vpbx_api(
    listener: tokio::net::TcpListener,
    config: VpbxConfig,
) -> Result<VpbxApi, EmulatorError> {
    if config.api_key.is_empty() {
        return Err(EmulatorError::Config {
            field: "api_key",
            problem: "must not be empty".into(),
        });
    }
    if config.api_salt.is_empty() {
        return Err(EmulatorError::Config {
            field: "api_salt",
            problem: "must not be empty".into(),
        });
    }
    let addr = listener.local_addr()?;
    let state = Arc::new(ApiState {
        config,
        addr,
        state: Mutex::new(Mutable::default()),
    });
    let app = Router::new()
        .route("/vpbx/{*endpoint}", any(api))
        .route("/files/{file}", get(file))
        .fallback(not_found)
        .with_state(state.clone());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                // Resolves on shutdown() and when the handle is dropped.
                let _ = stopped.await;
            })
            .await
    });
    let host = if addr.ip().is_unspecified() {
        SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
    } else {
        addr
    };
    tracing::info!(%addr, key = %mask(&state.config.api_key), "Mango VPBX API emulator started");
    Ok(VpbxApi {
        addr,
        base_url: format!("http://{host}/vpbx/"),
        state,
        stop: Some(stop),
        task: Some(task),
    })
}

impl VpbxApi {
    /// `http://HOST:PORT/vpbx/`, the base URL for [`callbridge_mango::api::VpbxClient`].
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The emulated PBX the server answers from.
    pub fn vpbx(&self) -> &Vpbx {
        &self.state.config.vpbx
    }

    /// A snapshot of what the server has seen.
    pub fn stats(&self) -> ApiStats {
        self.state.lock().stats.clone()
    }

    /// Stops accepting connections, lets requests in flight finish, and waits for the server.
    pub async fn shutdown(mut self) -> Result<(), EmulatorError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => match task.await {
                Ok(result) => result.map_err(EmulatorError::from),
                Err(e) => Err(EmulatorError::Io(std::io::Error::other(format!(
                    "VPBX API server task failed: {e}"
                )))),
            },
            None => Ok(()),
        }
    }
}

// ---- responses ---------------------------------------------------------------------------------

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

/// HTTP 420 "Method Failure", as Mango answers a request it cannot carry out.
fn status_420() -> StatusCode {
    StatusCode::from_u16(420).unwrap_or(StatusCode::BAD_REQUEST)
}

fn mango_error(status: StatusCode, code: i64, message: impl Into<String>) -> Response {
    json_response(
        status,
        &json!({"result": code, "code": code, "message": message.into()}),
    )
}

fn empty(status: StatusCode) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    response
}

async fn not_found() -> Response {
    mango_error(StatusCode::NOT_FOUND, 3100, "no such path")
}

/// A refused request that counts as invalid towards the block.
struct Invalid(Box<Response>);

impl Invalid {
    fn new(response: Response) -> Invalid {
        Invalid(Box::new(response))
    }
}

/// A statistics filter on one side of a call: `(extension, number)`.
type PartyFilter = (Option<String>, Option<String>);

// ---- the API ---------------------------------------------------------------------------------

async fn api(
    State(state): State<Arc<ApiState>>,
    method: Method,
    Path(endpoint): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(ep) = Endpoint::from_path(&endpoint) else {
        state.lock().stats.unknown_endpoints += 1;
        return mango_error(
            StatusCode::NOT_FOUND,
            3100,
            format!("unknown API method {endpoint:?}"),
        );
    };
    let now = Instant::now();
    let mut fields: HashMap<String, String> = HashMap::new();
    for (name, value) in form_urlencoded::parse(&body) {
        fields
            .entry(name.into_owned())
            .or_insert_with(|| value.into_owned());
    }
    let presented_key = fields.get("vpbx_api_key").cloned().unwrap_or_default();
    {
        let mut m = state.lock();
        *m.stats.requests.entry(ep.name().into()).or_default() += 1;
        if let Some(block) = m.blocks.get(&presented_key) {
            if let Some(until) = block.until.filter(|u| *u > now) {
                m.stats.blocked += 1;
                let left = until.saturating_duration_since(now).as_secs();
                return json_response(
                    StatusCode::UNAUTHORIZED,
                    &json!({"name": "Unauthorized", "code": 0, "status": 401,
                        "message": format!("Too many invalid requests; blocked for {left} more seconds.")}),
                );
            }
        }
        if let Some(limit) = state.config.limits.of(ep) {
            let window = m.windows.entry(ep).or_default();
            while window
                .front()
                .is_some_and(|t| now.saturating_duration_since(*t) >= limit.per)
            {
                window.pop_front();
            }
            if window.len() >= limit.requests as usize {
                m.stats.rate_limit_violations += 1;
                *m.stats.rate_limited.entry(ep.name().into()).or_default() += 1;
                tracing::debug!(endpoint = ep.name(), "rate limit exceeded");
                return json_response(
                    StatusCode::TOO_MANY_REQUESTS,
                    &json!({"name": "Service Unavailable", "message": "Rate limit exceeded.",
                        "code": 0, "status": 429}),
                );
            }
            window.push_back(now);
        }
    }
    let answer = match check(&state, &method, &fields) {
        Ok(request) => handle(&state, ep, &request, &headers, now),
        Err(refusal) => Err(refusal),
    };
    match answer {
        Ok(response) => {
            if response.status().is_success() || response.status().is_redirection() {
                *state
                    .lock()
                    .stats
                    .answered
                    .entry(ep.name().into())
                    .or_default() += 1;
            }
            response
        }
        Err(Invalid(response)) => {
            let response = *response;
            if let Some(window) = state.config.invalid_block {
                let mut m = state.lock();
                if m.blocks.len() >= MAX_BLOCK_ENTRIES {
                    m.blocks.retain(|_, b| b.until.is_some_and(|u| u > now));
                }
                let block = m.blocks.entry(presented_key).or_insert(Block {
                    last_invalid: None,
                    until: None,
                });
                if block
                    .last_invalid
                    .is_some_and(|t| now.saturating_duration_since(t) < window)
                {
                    block.until = Some(now + window);
                    tracing::info!(
                        "VPBX API emulator: key blocked after repeated invalid requests"
                    );
                }
                block.last_invalid = Some(now);
            }
            response
        }
    }
}

/// Method, fields, key, signature and JSON; the parsed request on success.
fn check(
    state: &ApiState,
    method: &Method,
    fields: &HashMap<String, String>,
) -> Result<Value, Invalid> {
    let malformed = |status: StatusCode, code: i64, message: String| {
        state.lock().stats.malformed += 1;
        Invalid::new(mango_error(status, code, message))
    };
    if method != Method::POST {
        return Err(malformed(
            status_420(),
            3101,
            format!("the API takes POST requests, not {method}"),
        ));
    }
    let field = |name: &str| {
        fields.get(name).ok_or_else(|| {
            malformed(
                status_420(),
                3103,
                format!("form field {name:?} is missing"),
            )
        })
    };
    let key = field("vpbx_api_key")?;
    let sign = field("sign")?;
    let json_text = field("json")?;
    if !bool::from(key.as_bytes().ct_eq(state.config.api_key.as_bytes())) {
        state.lock().stats.unknown_keys += 1;
        return Err(Invalid::new(mango_error(
            StatusCode::UNAUTHORIZED,
            3105,
            "invalid vpbx_api_key",
        )));
    }
    if !callbridge_mango::verify(key, json_text, &state.config.api_salt, sign) {
        state.lock().stats.bad_signatures += 1;
        return Err(Invalid::new(mango_error(
            StatusCode::UNAUTHORIZED,
            3102,
            "sign does not match sha256(vpbx_api_key + json + salt)",
        )));
    }
    match serde_json::from_str::<Value>(json_text) {
        Ok(value @ Value::Object(_)) => Ok(value),
        Ok(_) => Err(malformed(
            status_420(),
            3104,
            "json must be a JSON object".into(),
        )),
        Err(e) => Err(malformed(
            status_420(),
            3104,
            format!("json is not valid JSON: {e}"),
        )),
    }
}

/// A refusal for bad parameters (counts as invalid).
fn bad_params(state: &ApiState, message: impl Into<String>) -> Invalid {
    state.lock().stats.malformed += 1;
    Invalid::new(mango_error(status_420(), 3100, message))
}

fn missing_param(state: &ApiState, name: &str) -> Invalid {
    state.lock().stats.malformed += 1;
    Invalid::new(mango_error(
        status_420(),
        3103,
        format!("parameter {name:?} is missing"),
    ))
}

fn handle(
    state: &ApiState,
    ep: Endpoint,
    request: &Value,
    headers: &HeaderMap,
    now: Instant,
) -> Result<Response, Invalid> {
    match ep {
        Endpoint::Users => users(state, request),
        Endpoint::Groups => groups(state, request),
        Endpoint::Recording => recording(state, request, headers, now),
        Endpoint::Transcripts => transcripts(state, request),
        Endpoint::StatsRequest => stats_request(state, request, now),
        Endpoint::StatsResult => stats_result(state, request, now),
    }
}

// ---- lenient readers -------------------------------------------------------------------------

/// Text given as a string or a number; empty text is absent.
fn text(v: Option<&Value>) -> Result<Option<String>, ()> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_owned()).filter(|s| !s.is_empty())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(()),
    }
}

/// An integer given as a number or a decimal string.
fn int(v: Option<&Value>) -> Result<Option<i64>, ()> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_i64().map(Some).ok_or(()),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| ()),
        Some(_) => Err(()),
    }
}

fn flag(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_i64().is_some_and(|i| i != 0),
        Some(Value::String(s)) => matches!(s.trim(), "1" | "true"),
        _ => false,
    }
}

// ---- endpoints -------------------------------------------------------------------------------

fn users(state: &ApiState, request: &Value) -> Result<Response, Invalid> {
    let ext_fields: Vec<String> = match request.get("ext_fields") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        Some(Value::String(s)) => s.split(',').map(|f| f.trim().to_owned()).collect(),
        Some(_) => return Err(bad_params(state, "ext_fields must be an array of names")),
    };
    let want = |name: &str| ext_fields.iter().any(|f| f == name);
    let only = text(request.get("extension"))
        .map_err(|_| bad_params(state, "extension must be text or a number"))?;
    let vpbx = &state.config.vpbx;
    let staff = vpbx.staff();
    let users: Vec<Value> = staff
        .employees
        .iter()
        .enumerate()
        .filter(|(_, e)| only.as_deref().is_none_or(|x| x == e.extension))
        .map(|(i, e)| {
            let (first, role) = match e.name.split_once(',') {
                Some((first, role)) => (first.trim(), role.trim()),
                None => (e.name.as_str(), ""),
            };
            let mut general = Map::new();
            general.insert("name".into(), e.name.clone().into());
            general.insert(
                "email".into(),
                format!("{}.{}@example.com", first.to_lowercase(), e.extension).into(),
            );
            general.insert("department".into(), "Office".into());
            general.insert("position".into(), role.into());
            if want("general.user_id") {
                general.insert("user_id".into(), e.mango_user_id.into());
            }
            if want("general.sips") {
                general.insert("sips".into(), json!([e.sip]));
            }
            let mut user = Map::new();
            user.insert("general".into(), Value::Object(general));
            user.insert(
                "telephony".into(),
                json!({
                    "extension": e.extension,
                    "outgoingline": staff.lines.first().cloned().unwrap_or_default(),
                    "numbers": [{"number": e.sip, "protocol": "sip", "order": "0",
                                 "wait_sec": "20", "status": "on"}],
                }),
            );
            if want("groups") {
                user.insert("groups".into(), json!(vpbx.groups_of(i)));
            }
            Value::Object(user)
        })
        .collect();
    Ok(json_response(StatusCode::OK, &json!({ "users": users })))
}

fn groups(state: &ApiState, request: &Value) -> Result<Response, Invalid> {
    let show_users = flag(request.get("show_users"));
    let group_id =
        int(request.get("group_id")).map_err(|_| bad_params(state, "group_id must be a number"))?;
    let operator_id = int(request.get("operator_id"))
        .map_err(|_| bad_params(state, "operator_id must be a number"))?;
    let operator_extension = text(request.get("operator_extension"))
        .map_err(|_| bad_params(state, "operator_extension must be text"))?;
    let vpbx = &state.config.vpbx;
    let staff = vpbx.staff();
    let groups: Vec<Value> = vpbx
        .groups()
        .iter()
        .filter(|g| group_id.is_none_or(|id| id == g.id))
        .filter(|g| {
            operator_id.is_none_or(|id| {
                g.members.iter().any(|&m| {
                    staff
                        .employees
                        .get(m)
                        .is_some_and(|e| e.mango_user_id == id)
                })
            })
        })
        .filter(|g| {
            operator_extension.as_deref().is_none_or(|ext| {
                g.members
                    .iter()
                    .any(|&m| staff.employees.get(m).is_some_and(|e| e.extension == ext))
            })
        })
        .map(|g| {
            let mut group = json!({
                "id": g.id, "name": g.name, "description": format!("Group {}", g.extension),
                "extension": g.extension, "dial_alg_group": g.dial_alg_group,
                "dial_alg_users": 1, "auto_redirect": 0, "auto_dial": null,
                "line_id": null, "use_dynamic_ivr": 0, "use_dynamic_seq_num": 0,
                "melody_id": null,
            });
            if show_users {
                let operators: Vec<Value> = g
                    .members
                    .iter()
                    .enumerate()
                    .filter_map(|(order, &m)| staff.employees.get(m).map(|e| (order, e)))
                    .map(|(order, e)| {
                        json!({"id": e.mango_user_id, "name": e.name, "extension": e.extension,
                               "priority": 1, "order": order + 1})
                    })
                    .collect();
                group["operators"] = Value::Array(operators);
            }
            group
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"result": 1000, "groups": groups}),
    ))
}

/// The host the client used, when it is a plain host name or address, for absolute links.
fn request_host(headers: &HeaderMap) -> Option<String> {
    let host = headers.get(header::HOST)?.to_str().ok()?.trim();
    let plain = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '-' | '[' | ']'));
    plain.then(|| host.to_owned())
}

fn recording(
    state: &ApiState,
    request: &Value,
    headers: &HeaderMap,
    now: Instant,
) -> Result<Response, Invalid> {
    let id = text(request.get("recording_id"))
        .map_err(|_| bad_params(state, "recording_id must be text"))?
        .ok_or_else(|| missing_param(state, "recording_id"))?;
    let download = match text(request.get("action"))
        .map_err(|_| bad_params(state, "action must be text"))?
        .as_deref()
    {
        None | Some("download") => true,
        Some("play") => false,
        Some(other) => {
            return Err(bad_params(
                state,
                format!("action must be \"download\" or \"play\", got {other:?}"),
            ))
        }
    };
    let available = state
        .config
        .vpbx
        .recording(&id)
        .filter(|r| r.saved && r.added);
    let Some(info) = available else {
        state.lock().stats.recordings_not_found += 1;
        // Not an invalid request: the recording may simply not be stored yet.
        return Ok(mango_error(status_420(), 3320, "recording not found"));
    };
    let seconds = info
        .duration()
        .map_or(1.0, |d| d as f64)
        .clamp(1.0, MAX_RECORDING_SECONDS);
    let mut m = state.lock();
    if m.links.len() >= MAX_LINKS {
        m.links.retain(|_, l| l.expires > now);
    }
    let token = state.token(&mut m, &id);
    m.links.insert(
        token.clone(),
        Link {
            recording_id: id,
            download,
            seconds,
            expires: now + state.config.link_ttl,
        },
    );
    m.stats.recording_links += 1;
    drop(m);
    let host = request_host(headers).unwrap_or_else(|| state.addr.to_string());
    let location = format!("http://{host}/files/{token}.mp3");
    let mut response = empty(StatusCode::FOUND);
    if let Ok(value) = header::HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

fn transcripts(state: &ApiState, request: &Value) -> Result<Response, Invalid> {
    // Mango takes the id array JSON-encoded into a string; a plain array is accepted too.
    let ids: Vec<Value> = match request.get("recording_id") {
        None | Some(Value::Null) => return Err(missing_param(state, "recording_id")),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Array(items)) => items,
            Ok(Value::String(one)) => vec![Value::String(one)],
            _ => vec![Value::String(s.clone())],
        },
        Some(Value::Array(items)) => items.clone(),
        Some(_) => {
            return Err(bad_params(
                state,
                "recording_id must be a JSON array of ids in a string",
            ))
        }
    };
    if ids.len() > MAX_TRANSCRIPT_IDS {
        return Err(bad_params(
            state,
            format!(
                "at most {MAX_TRANSCRIPT_IDS} recording ids per request, got {}",
                ids.len()
            ),
        ));
    }
    let data: Vec<Value> = ids
        .iter()
        .filter_map(|id| text(Some(id)).ok().flatten())
        .filter_map(|id| state.config.vpbx.transcript(&id))
        .map(|t| {
            let phrases: Vec<Value> = t
                .phrases
                .iter()
                .map(|(who, what)| json!([who, what]))
                .collect();
            json!({"recording_id": t.recording_id,
                   "names": {"client": "Клиент", "operator": t.operator_name},
                   "phrases": phrases})
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"result": 1000, "data": data}),
    ))
}

/// `{extension, number}` of a statistics filter.
fn party_filter(
    state: &ApiState,
    request: &Value,
    name: &str,
) -> Result<Option<PartyFilter>, Invalid> {
    match request.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(obj)) => {
            let ext = text(obj.get("extension"))
                .map_err(|_| bad_params(state, format!("{name}.extension must be text")))?;
            let number = text(obj.get("number"))
                .map_err(|_| bad_params(state, format!("{name}.number must be text")))?;
            Ok(Some((ext, number)))
        }
        Some(_) => Err(bad_params(state, format!("{name} must be an object"))),
    }
}

fn matches(filter: &PartyFilter, ext: &Option<String>, num: &Option<String>) -> bool {
    filter.0.as_ref().is_none_or(|x| ext.as_ref() == Some(x))
        && filter.1.as_ref().is_none_or(|x| num.as_ref() == Some(x))
}

/// One CSV cell; Mango's CSV has no escaping, so separators cannot appear in values.
fn cell(value: String) -> String {
    value.replace([';', '\n', '\r'], " ")
}

fn csv_row(row: &CallRow, fields: &[&str]) -> String {
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    let cells: Vec<String> = fields
        .iter()
        .map(|f| match *f {
            "records" => format!("[{}]", row.records.join(",")),
            "start" | "create" => row.start.to_string(),
            "finish" => row.finish.to_string(),
            "answer" => row.answer.to_string(),
            "from_extension" => opt(&row.from_extension),
            "from_number" => opt(&row.from_number),
            "to_extension" => opt(&row.to_extension),
            "to_number" => opt(&row.to_number),
            "disconnect_reason" => row
                .disconnect_reason
                .map(|r| r.to_string())
                .unwrap_or_default(),
            "line_number" => opt(&row.line_number),
            "location" => opt(&row.location),
            "entry_id" => row.entry_id.clone(),
            _ => String::new(),
        })
        .map(cell)
        .collect();
    cells.join(";")
}

fn stats_request(state: &ApiState, request: &Value, now: Instant) -> Result<Response, Invalid> {
    let date = |name: &str| {
        int(request.get(name))
            .map_err(|_| bad_params(state, format!("{name} must be Unix seconds")))?
            .ok_or_else(|| missing_param(state, name))
    };
    let from = date("date_from")?;
    let to = date("date_to")?;
    if to < from {
        return Err(bad_params(state, "date_to is before date_from"));
    }
    if to - from > MAX_STATS_WINDOW {
        return Err(bad_params(
            state,
            "the period must not be longer than one month",
        ));
    }
    let fields_text = text(request.get("fields"))
        .map_err(|_| bad_params(state, "fields must be a comma-separated list"))?
        .unwrap_or_else(|| DEFAULT_STATS_FIELDS.to_owned());
    let mut fields: Vec<&str> = Vec::new();
    for f in fields_text
        .split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
    {
        match STATS_FIELDS.iter().find(|known| **known == f) {
            Some(known) => fields.push(known),
            None => return Err(bad_params(state, format!("unknown statistics field {f:?}"))),
        }
    }
    if fields.is_empty() {
        return Err(bad_params(state, "fields names no field"));
    }
    let call_party = party_filter(state, request, "call_party")?;
    let from_party = party_filter(state, request, "from")?;
    let to_party = party_filter(state, request, "to")?;
    if call_party.is_some() && (from_party.is_some() || to_party.is_some()) {
        return Err(bad_params(
            state,
            "call_party cannot be combined with from or to",
        ));
    }
    let mut csv = String::new();
    for row in state.config.vpbx.call_rows(from, to) {
        let keep = call_party.as_ref().is_none_or(|p| {
            matches(p, &row.from_extension, &row.from_number)
                || matches(p, &row.to_extension, &row.to_number)
        }) && from_party
            .as_ref()
            .is_none_or(|p| matches(p, &row.from_extension, &row.from_number))
            && to_party
                .as_ref()
                .is_none_or(|p| matches(p, &row.to_extension, &row.to_number));
        if keep {
            csv.push_str(&csv_row(&row, &fields));
            csv.push('\n');
        }
    }
    let mut m = state.lock();
    m.jobs.retain(|_, j| j.expires > now);
    if m.jobs.len() >= MAX_JOBS {
        drop(m);
        return Ok(mango_error(
            StatusCode::SERVICE_UNAVAILABLE,
            5001,
            "too many statistics requests pending",
        ));
    }
    let key = state.token(&mut m, "stats");
    let ready_at = now + state.config.stats_delay;
    m.jobs.insert(
        key.clone(),
        StatsJob {
            csv,
            ready_at,
            expires: ready_at + state.config.stats_ttl,
        },
    );
    m.stats.stats_requests += 1;
    Ok(json_response(StatusCode::OK, &json!({ "key": key })))
}

fn stats_result(state: &ApiState, request: &Value, now: Instant) -> Result<Response, Invalid> {
    let key = text(request.get("key"))
        .map_err(|_| bad_params(state, "key must be text"))?
        .ok_or_else(|| missing_param(state, "key"))?;
    let m = state.lock();
    match m.jobs.get(&key) {
        Some(job) if job.expires > now => {
            if job.ready_at > now {
                return Ok(empty(StatusCode::NO_CONTENT));
            }
            let mut response = Response::new(Body::from(job.csv.clone()));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/csv; charset=utf-8"),
            );
            Ok(response)
        }
        // Unknown or expired: not an invalid request, just nothing there.
        _ => Ok(empty(StatusCode::NOT_FOUND)),
    }
}

// ---- recording files -------------------------------------------------------------------------

/// A byte range from a `Range` header: `Ok(None)` to serve the whole file (no header, or one
/// this server ignores, as HTTP allows), `Err(())` when it cannot be satisfied.
fn byte_range(headers: &HeaderMap, len: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(value) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        // Several ranges: a full answer is allowed and simpler.
        return Ok(None);
    }
    let Some((start, end)) = spec.trim().split_once('-') else {
        return Ok(None);
    };
    let (start, end) = (start.trim(), end.trim());
    let parse = |s: &str| s.parse::<u64>().map_err(|_| ());
    let range = if start.is_empty() {
        // The last N bytes.
        let Ok(n) = parse(end) else { return Ok(None) };
        if n == 0 || len == 0 {
            return Err(());
        }
        (len.saturating_sub(n), len - 1)
    } else {
        let Ok(first) = parse(start) else {
            return Ok(None);
        };
        let last = if end.is_empty() {
            len.saturating_sub(1)
        } else {
            match parse(end) {
                Ok(last) if last >= first => last.min(len.saturating_sub(1)),
                _ => return Ok(None),
            }
        };
        if first >= len {
            return Err(());
        }
        (first, last)
    };
    Ok(Some(range))
}

async fn file(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let now = Instant::now();
    let token = name.strip_suffix(".mp3").unwrap_or(&name);
    let link = {
        let m = state.lock();
        m.links
            .get(token)
            .filter(|l| l.expires > now)
            .map(|l| (l.recording_id.clone(), l.download, l.seconds))
    };
    let Some((recording_id, download, seconds)) = link else {
        let mut response = Response::new(Body::from("link unknown or expired\n"));
        *response.status_mut() = StatusCode::NOT_FOUND;
        return response;
    };
    let data = mp3::silent(seconds);
    let len = data.len() as u64;
    let range = match byte_range(&headers, len) {
        Ok(range) => range,
        Err(()) => {
            let mut response = empty(StatusCode::RANGE_NOT_SATISFIABLE);
            if let Ok(v) = header::HeaderValue::from_str(&format!("bytes */{len}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return response;
        }
    };
    state.lock().stats.files_served += 1;
    let (status, body, content_range) = match range {
        Some((first, last)) => {
            // Bounds were checked against `len` above.
            let slice = data
                .get(first as usize..=last as usize)
                .map(<[u8]>::to_vec)
                .unwrap_or_default();
            (
                StatusCode::PARTIAL_CONTENT,
                slice,
                Some(format!("bytes {first}-{last}/{len}")),
            )
        }
        None => (StatusCode::OK, data, None),
    };
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("audio/mpeg"),
    );
    h.insert(
        header::ACCEPT_RANGES,
        header::HeaderValue::from_static("bytes"),
    );
    if let Some(v) = content_range.and_then(|r| header::HeaderValue::from_str(&r).ok()) {
        h.insert(header::CONTENT_RANGE, v);
    }
    if download {
        // Ids are base64, so they are safe in a quoted file name once `/` and `"` are replaced.
        let safe: String = recording_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '=' || c == '+' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if let Ok(v) =
            header::HeaderValue::from_str(&format!("attachment; filename=\"{safe}.mp3\""))
        {
            h.insert(header::CONTENT_DISPOSITION, v);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(value: &str, len: u64) -> Result<Option<(u64, u64)>, ()> {
        let mut h = HeaderMap::new();
        h.insert(header::RANGE, value.parse().unwrap());
        byte_range(&h, len)
    }

    #[test]
    fn ranges_follow_http() {
        assert_eq!(range("bytes=0-9", 100), Ok(Some((0, 9))));
        assert_eq!(range("bytes=90-", 100), Ok(Some((90, 99))));
        assert_eq!(range("bytes=-10", 100), Ok(Some((90, 99))));
        assert_eq!(range("bytes=-1000", 100), Ok(Some((0, 99))));
        assert_eq!(range("bytes=50-1000", 100), Ok(Some((50, 99))));
        assert_eq!(range("bytes=100-", 100), Err(()));
        assert_eq!(range("bytes=-0", 100), Err(()));
        // Ignored: another unit, several ranges, nonsense, a reversed range.
        assert_eq!(range("items=0-1", 100), Ok(None));
        assert_eq!(range("bytes=0-1,5-6", 100), Ok(None));
        assert_eq!(range("bytes=x-y", 100), Ok(None));
        assert_eq!(range("bytes=9-3", 100), Ok(None));
        assert_eq!(byte_range(&HeaderMap::new(), 100), Ok(None));
    }

    #[test]
    fn csv_cells_never_carry_separators() {
        let row = CallRow {
            entry_id: "e;1".into(),
            records: vec!["a".into(), "b".into()],
            start: 5,
            from_number: Some("7\n9".into()),
            ..CallRow::default()
        };
        assert_eq!(
            csv_row(
                &row,
                &["records", "start", "from_number", "entry_id", "to_number"]
            ),
            "[a,b];5;7 9;e 1;"
        );
    }

    #[test]
    fn masked_secrets_show_four_characters() {
        assert_eq!(mask("abcdefgh"), "abcd…");
        assert_eq!(mask("ab"), "ab…");
        let vpbx = Vpbx::new(crate::vpbx::office_staff(1, &Default::default()));
        let shown = format!("{:?}", VpbxConfig::new("key-123456", "salt-secret", vpbx));
        assert!(
            !shown.contains("salt-secret") && !shown.contains("key-123456"),
            "{shown}"
        );
    }
}
