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

mod config;
mod endpoints;
mod files;
mod gate;
mod stats;

pub(crate) use config::mask;
pub use config::{ApiStats, Limit, RateLimits, VpbxConfig};
use files::file;
use gate::api;

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
    /// When the key was last polled: Mango allows once per [`VpbxConfig::stats_poll_interval`].
    last_poll: Option<Instant>,
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
