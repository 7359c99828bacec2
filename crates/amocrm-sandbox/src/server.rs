//! The shared state, the router, the gate middleware (rate limit, block, faults, auth) and the
//! state file.

use crate::api;
use crate::gate::{Fault, Gate, Verdict};
use crate::model::{now_ms, State};
use crate::respond::{html, problem, ApiError};
use crate::{SandboxConfig, SandboxError};
use axum::extract::{MatchedPath, Request, State as AxState};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post};
use axum::Router;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::watch;

/// How long a `hang_next` request is held: longer than any sane client timeout.
const HANG: Duration = Duration::from_secs(60);

pub struct Shared {
    data: Mutex<State>,
    gate: Mutex<Gate>,
    pub base_url: String,
    pub access_token_ttl: Duration,
    persist: Option<Persist>,
    stop: watch::Receiver<bool>,
}

struct Persist {
    path: PathBuf,
    /// The state version last written; serialises writers and skips stale snapshots.
    written: tokio::sync::Mutex<Option<u64>>,
}

/// The user a request acts as (from its bearer token).
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub user_id: u64,
}

impl Shared {
    pub async fn new(
        addr: SocketAddr,
        config: &SandboxConfig,
        stop: watch::Receiver<bool>,
    ) -> Result<Shared, SandboxError> {
        config.seed.validate()?;
        let (state, fresh) = match &config.state_file {
            Some(path) => match load_state(path).await? {
                Some(state) => (state, false),
                None => (State::from_seed(&config.seed), true),
            },
            None => (State::from_seed(&config.seed), false),
        };
        let shared = Shared {
            data: Mutex::new(state),
            gate: Mutex::new(Gate::new(
                config.rps,
                config.block_after,
                config.faults.clone(),
            )),
            base_url: format!("http://{addr}"),
            access_token_ttl: config.access_token_ttl,
            persist: config.state_file.as_ref().map(|path| Persist {
                path: path.clone(),
                written: tokio::sync::Mutex::new(None),
            }),
            stop,
        };
        if fresh {
            // Write the seeded state at once, so a bad path fails the start, not a later request.
            shared
                .write_state()
                .await
                .map_err(|e| SandboxError::StateFile {
                    path: config.state_file.clone().unwrap_or_default(),
                    message: e.to_string(),
                })?;
        }
        Ok(shared)
    }

    /// The account data. A panic elsewhere while holding the lock leaves plain data behind, so a
    /// poisoned lock is still usable.
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn gate(&self) -> MutexGuard<'_, Gate> {
        self.gate.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn expire_access_tokens(&self) {
        let mut st = self.state();
        let now = now_ms();
        for token in st.access_tokens.values_mut() {
            token.expires_at_ms = token.expires_at_ms.min(now);
        }
        st.touch();
    }

    /// Writes the state file after a change (a no-op without one). A failure is logged: the
    /// change is made in memory and the client has been promised nothing about the file.
    pub async fn save(&self) {
        if let Err(e) = self.write_state().await {
            if let Some(p) = &self.persist {
                tracing::error!(path = %p.path.display(), message = %e, "amoCRM sandbox: cannot write the state file");
            }
        }
    }

    pub async fn save_now(&self) {
        self.save().await;
    }

    async fn write_state(&self) -> Result<(), WriteError> {
        let Some(persist) = &self.persist else {
            return Ok(());
        };
        let mut written = persist.written.lock().await;
        let (version, bytes) = {
            let st = self.state();
            let bytes = serde_json::to_vec_pretty(&*st)?;
            (st.version, bytes)
        };
        if *written == Some(version) {
            return Ok(());
        }
        let path = persist.path.clone();
        tokio::task::spawn_blocking(move || write_atomically(&path, &bytes)).await??;
        *written = Some(version);
        Ok(())
    }

    fn stopping(&self) -> watch::Receiver<bool> {
        self.stop.clone()
    }
}

/// Why the state file could not be written; the message is the cause's own.
#[derive(Debug, thiserror::Error)]
enum WriteError {
    #[error(transparent)]
    Encode(#[from] serde_json::Error),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The blocking write panicked or was cancelled.
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
}

/// Writes to a temporary file beside the target and renames it over the target, so a reader
/// (or a crash) never sees half a file.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    result.inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

async fn load_state(path: &Path) -> Result<Option<State>, SandboxError> {
    let err = |message: String| SandboxError::StateFile {
        path: path.to_path_buf(),
        message,
    };
    let text = match tokio::fs::read_to_string(path).await {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(err(e.to_string())),
    };
    let mut de = serde_json::Deserializer::from_str(&text);
    let state: State = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| err(format!("{}: {}", e.path(), e.inner())))?;
    state.check().map_err(|e| err(e.to_string()))?;
    Ok(Some(state))
}

pub fn router(shared: Arc<Shared>) -> Router {
    let api = Router::new()
        .route("/oauth", get(api::oauth::authorize))
        .route("/oauth2/access_token", post(api::oauth::access_token))
        .route("/api/v4/account", get(api::crm::account))
        .route("/api/v4/users", get(api::crm::users))
        .route("/api/v4/users/{id}", get(api::crm::user))
        .route("/api/v4/leads/pipelines", get(api::crm::pipelines))
        .route(
            "/api/v4/contacts",
            get(api::crm::list_contacts).post(api::crm::add_contacts),
        )
        .route("/api/v4/contacts/{id}", get(api::crm::get_contact))
        .route(
            "/api/v4/leads",
            get(api::crm::list_leads).post(api::crm::add_leads),
        )
        .route("/api/v4/leads/complex", post(api::crm::add_complex))
        .route("/api/v4/leads/{id}", get(api::crm::get_lead))
        .route(
            "/api/v4/leads/notes",
            get(api::notes::list_lead_notes).post(api::notes::add_lead_notes),
        )
        .route(
            "/api/v4/contacts/notes",
            get(api::notes::list_contact_notes).post(api::notes::add_contact_notes),
        )
        .route(
            "/api/v4/leads/{id}/notes",
            get(api::notes::list_one_lead_notes).post(api::notes::add_one_lead_notes),
        )
        .route(
            "/api/v4/contacts/{id}/notes",
            get(api::notes::list_one_contact_notes).post(api::notes::add_one_contact_notes),
        )
        .route(
            "/api/v4/companies",
            get(api::crm::list_companies).post(api::crm::add_companies),
        )
        .route(
            "/api/v4/customers",
            get(api::crm::list_customers).post(api::crm::add_customers),
        )
        .route(
            "/api/v4/companies/notes",
            get(api::notes::list_company_notes).post(api::notes::add_company_notes),
        )
        .route(
            "/api/v4/customers/notes",
            get(api::notes::list_customer_notes).post(api::notes::add_customer_notes),
        )
        .route("/api/v4/calls", post(api::notes::add_calls))
        .route("/api/v4/leads/unsorted", get(api::unsorted::list))
        .route("/api/v4/leads/unsorted/sip", post(api::unsorted::add_sip))
        .route("/api/v4/leads/unsorted/{uid}", get(api::unsorted::get_one))
        .route(
            "/api/v4/leads/unsorted/{uid}/accept",
            post(api::unsorted::accept),
        )
        .route(
            "/api/v4/leads/unsorted/{uid}/decline",
            delete(api::unsorted::decline),
        )
        .route("/api/v4/tasks", get(api::tasks::list).post(api::tasks::add))
        .route("/api/v4/tasks/{id}", patch(api::tasks::update))
        .route("/api/v2/events", post(api::events::add))
        .route("/api/v2/events/", post(api::events::add))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            gatekeeper,
        ));
    let control = Router::new()
        .route("/_sandbox/stats", get(api::control::stats))
        .route(
            "/_sandbox/faults",
            post(api::control::set_faults).get(api::control::get_faults),
        )
        .route("/_sandbox/expire_tokens", post(api::control::expire_tokens))
        .route("/_sandbox/unblock", post(api::control::unblock))
        .route("/_sandbox/call_events", get(api::control::call_events));
    control.merge(api).with_state(shared)
}

async fn not_found(req: Request) -> Response {
    problem(
        StatusCode::NOT_FOUND,
        &format!("No route for {} {}", req.method(), req.uri().path()),
    )
}

async fn method_not_allowed(req: Request) -> Response {
    problem(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!(
            "Method {} is not allowed on {}",
            req.method(),
            req.uri().path()
        ),
    )
}

fn is_gated(path: &str) -> bool {
    path == "/api" || path.starts_with("/api/") || path.starts_with("/oauth2/") || path == "/oauth2"
}

/// Rate limit, block, faults and authentication, in that order, for `/api` and `/oauth2`.
async fn gatekeeper(
    AxState(shared): AxState<Arc<Shared>>,
    mut req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path().to_owned();
    if !is_gated(&path) {
        return next.run(req).await;
    }
    let route = format!(
        "{} {}",
        req.method(),
        req.extensions()
            .get::<MatchedPath>()
            .map(MatchedPath::as_str)
            .unwrap_or("(no route)")
    );
    let verdict = shared.gate().admit(&route, tokio::time::Instant::now());
    let (latency, fault) = match verdict {
        Verdict::Blocked => {
            tracing::debug!(%route, "blocked");
            return html(StatusCode::FORBIDDEN, "403 Forbidden");
        }
        Verdict::RateLimited => {
            tracing::info!(%route, "rate limited");
            return html(StatusCode::TOO_MANY_REQUESTS, "429 Too Many Requests");
        }
        Verdict::Pass { latency, fault } => (latency, fault),
    };
    let mut stopping = shared.stopping();
    if !latency.is_zero() {
        tokio::select! {
            _ = tokio::time::sleep(latency) => {}
            _ = stopping.wait_for(|s| *s) => {}
        }
    }
    let lose_answer = fault == Some(Fault::LoseAnswer);
    match fault {
        Some(Fault::Hang) => {
            tracing::info!(%route, "fault: holding the request");
            tokio::select! {
                _ = tokio::time::sleep(HANG) => {}
                _ = stopping.wait_for(|s| *s) => {}
            }
            return html(StatusCode::GATEWAY_TIMEOUT, "504 Gateway Time-out");
        }
        Some(Fault::Status(code)) => {
            tracing::info!(%route, code, "fault: scripted status");
            return scripted(code);
        }
        Some(Fault::Unavailable { json }) => {
            tracing::info!(%route, "fault: random 503");
            return if json {
                problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The service is temporarily unavailable (injected fault)",
                )
            } else {
                html(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "503 Service Temporarily Unavailable",
                )
            };
        }
        Some(Fault::LoseAnswer) | None => {}
    }
    if path.starts_with("/api/") {
        match authenticate(&shared, req.headers()) {
            Ok(caller) => {
                req.extensions_mut().insert(caller);
            }
            Err(e) => return e.into_response(),
        }
    }
    let response = next.run(req).await;
    if lose_answer {
        tracing::info!(%route, "fault: request carried out, its answer held back");
        drop(response);
        tokio::select! {
            _ = tokio::time::sleep(HANG) => {}
            _ = stopping.wait_for(|s| *s) => {}
        }
        return html(StatusCode::GATEWAY_TIMEOUT, "504 Gateway Time-out");
    }
    response
}

/// A scripted status in the body amoCRM's front would give it.
fn scripted(code: u16) -> Response {
    let Ok(status) = StatusCode::from_u16(code) else {
        return problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("Injected fault status {code} is not a valid HTTP status"),
        );
    };
    match code {
        429 => html(status, "429 Too Many Requests"),
        403 => html(status, "403 Forbidden"),
        502 => html(status, "502 Bad Gateway"),
        504 => html(status, "504 Gateway Time-out"),
        401 => ApiError::oauth(status, "Unauthorized (injected fault)", "Token has expired")
            .into_response(),
        _ => problem(status, "Injected fault"),
    }
}

/// Shows the start and end of a secret, never the whole of it.
pub fn mask(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    if chars.len() <= 8 {
        return "***".to_owned();
    }
    let head: String = chars[..4].iter().collect();
    format!("{head}…({} chars)", chars.len())
}

fn authenticate(shared: &Shared, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let unauthorized =
        |detail: &str, hint: &str| ApiError::oauth(StatusCode::UNAUTHORIZED, detail, hint);
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(unauthorized(
            "The request has no Authorization header; send Authorization: Bearer <token>",
            "Missing \"Authorization\" header",
        ));
    };
    let value = value.to_str().unwrap_or("");
    let token = match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
        _ => {
            return Err(unauthorized(
                "The Authorization header is not of the form Bearer <token>",
                "Missing \"Authorization\" header",
            ))
        }
    };
    let st = shared.state();
    if !st.long_lived_token.is_empty() && token == st.long_lived_token {
        return Ok(Caller {
            user_id: st.admin_id(),
        });
    }
    match st.access_tokens.get(token) {
        Some(t) if t.expires_at_ms > now_ms() => Ok(Caller { user_id: t.user_id }),
        Some(_) => {
            tracing::debug!(token = %mask(token), "expired access token");
            Err(unauthorized(
                "The access token has expired",
                "Token has expired",
            ))
        }
        None => {
            tracing::debug!(token = %mask(token), "unknown access token");
            Err(unauthorized(
                "The access token is not one this account issued",
                "Cannot decrypt the token",
            ))
        }
    }
}
