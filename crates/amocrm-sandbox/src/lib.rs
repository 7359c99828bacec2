//! A stand-in amoCRM API v4 server for tests, benchmarks and the demo.
//!
//! It serves the part of amoCRM a PBX integration touches — OAuth (code and refresh grants with
//! single-use refresh tokens), the account, users, pipelines, contacts, leads (plain and complex),
//! unsorted SIP items, calls, notes, tasks and the `/api/v2/events` call card — over real HTTP,
//! with amoCRM's response shapes: `application/hal+json` on success, `application/problem+json`
//! on errors, 204 with no body for empty lists, HTML bodies on the gateway's 429 and 403.
//!
//! It also does what a test needs and amoCRM does not: it counts requests per route and the most
//! arrivals seen in any one-second window (to prove a client's rate limiter), blocks the account
//! after repeated rate-limit violations until told to unblock, injects faults (latency, random
//! 503s, scripted statuses, hanging requests), expires tokens on demand, and records call-card
//! pops. The same controls are served over HTTP under `/_sandbox/` for a separately started
//! binary (`callbridge sandbox amocrm`).
//!
//! # Documented assumptions
//!
//! Where amoCRM's documentation is silent the sandbox picks one behaviour and keeps to it:
//!
//! - **Partial call batches.** `POST /api/v4/calls` attaches the items whose number matches a
//!   visible contact and leaves out the others: the response is 200 with `_embedded.calls` for the
//!   landed items and `errors[{request_id, title: "Entity not found", status: 400}]` for the rest,
//!   or 400 with the same body shape (`_total_items: 0`) when none landed. A batch with an invalid
//!   item (missing `direction`, unknown user, ...) is rejected whole with `validation-errors`.
//! - **Call targets.** The number is matched on its last 10 digits against visible contacts,
//!   oldest first; the call goes to the contact's only active lead (status not 142/143) when it
//!   has exactly one, else to its only customer when it has exactly one, else to the contact.
//!   A number no contact has is matched against companies' PHONE fields: the call goes to the
//!   company. `entity_type` is `"lead"`, `"customer"`, `"contact"` or `"company"`.
//! - **Companies and customers.** `GET`/`POST /api/v4/companies` (a contact's fields, no
//!   first/last name) and `/api/v4/customers` (linked to contacts by `_embedded.contacts[{id}]`
//!   on creation, where amoCRM uses a separate link request), with their notes lists.
//! - **Pending unsorted entities.** The lead and contact of a pending unsorted request are left
//!   out of lists and of the calls' number match, but exist by id: notes can be added to them
//!   and are listed with the other notes of their kind. Declining deletes them.
//! - **Nulls.** `null` in a note's `params` is a `NotNullable` error (as amoCRM does); `null` in
//!   an optional field of a call is taken as absent.
//! - **Contact search.** `query` with 7 or more digits matches phones whose last 10 digits end
//!   with the query's last 10 digits; any query also matches a case-insensitive substring of the
//!   name.
//! - **Unsorted duplicates.** A `metadata.uniq` already stored in any unsorted item (also accepted
//!   or declined ones, and earlier items of the same batch) rejects the batch with a 400 naming it.
//!   Accepted and declined items leave the unsorted list.
//! - **Tokens.** Access tokens are JWT-shaped (`exp`, `aud`, `account_id`, ...) because clients
//!   read `exp`, but the signature is random: the sandbox checks tokens by lookup. Refresh tokens
//!   are single-use and live 90 days; codes are single-use and live 20 minutes.
//! - **Rate limit.** Every `/api` and `/oauth2` arrival counts in a sliding 1000 ms window,
//!   rejected ones included; an arrival beyond `rps` in the window is a violation.

mod api;
mod gate;
mod input;
mod model;
mod respond;
mod seed;
mod server;

pub use model::CallEvent;
pub use seed::{
    Seed, SeedAccount, SeedCompany, SeedContact, SeedCustomer, SeedLead, SeedLeadStatus,
    SeedOAuthClient, SeedUser,
};

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Everything the sandbox can fail on at start.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The seed document is invalid; the message names the field.
    #[error("seed: {0}")]
    Seed(String),
    /// The state file cannot be read, parsed or written.
    #[error("state file {path}: {message}")]
    StateFile { path: PathBuf, message: String },
    /// The listener is unusable.
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
}

/// How the sandbox behaves.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Requests allowed in any sliding 1000 ms window (amoCRM: 7).
    pub rps: u32,
    /// Rate-limit violations within 60 s that block the account (0: never block).
    pub block_after: u32,
    /// Lifetime of OAuth access tokens (amoCRM: 24 h).
    pub access_token_ttl: Duration,
    /// The account's starting content, used when there is no state file yet.
    pub seed: Seed,
    /// Where the state lives between runs (JSON, written after every change). When the file
    /// exists it is loaded and the seed is ignored.
    pub state_file: Option<PathBuf>,
    /// Faults in force from the start.
    pub faults: Faults,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            rps: 7,
            block_after: 10,
            access_token_ttl: Duration::from_secs(86_400),
            seed: Seed::default(),
            state_file: None,
            faults: Faults::default(),
        }
    }
}

/// Injected failures for `/api` and `/oauth2` requests (never for `/_sandbox`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Delay before every API response, in milliseconds.
    pub latency_ms: u64,
    /// Fraction (0..1) of requests answered 503, decided by a seeded generator so a run is
    /// repeatable.
    pub error_rate: f64,
    /// Statuses to answer, in order, to the next API requests (one per request).
    pub fail_next: Vec<u16>,
    /// How many of the next requests to hold for 60 s (the client times out first).
    pub hang_next: u32,
}

/// What the sandbox has seen.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// `/api` and `/oauth2` requests that arrived, answered or not.
    pub requests: u64,
    /// 429s the rate limiter sent (scripted `fail_next` 429s are not counted: this measures the
    /// client's pacing).
    pub rate_limited: u64,
    /// Whether the account is blocked now.
    pub blocked: bool,
    /// The most arrivals in any sliding 1000 ms window, rejected ones included.
    pub max_requests_in_any_second: u32,
    /// Arrivals per route, keyed like `POST /api/v4/calls` (unknown routes: `GET (no route)`).
    pub by_route: BTreeMap<String, u64>,
}

/// A running sandbox. Dropping it stops the server too; [`Sandbox::shutdown`] also waits for it.
pub struct Sandbox {
    addr: SocketAddr,
    shared: Arc<server::Shared>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

/// Starts the sandbox on an already bound listener (bind `127.0.0.1:0` for a random port).
pub async fn start(
    listener: tokio::net::TcpListener,
    config: SandboxConfig,
) -> Result<Sandbox, SandboxError> {
    let addr = listener.local_addr()?;
    let (stop, stop_rx) = watch::channel(false);
    let shared = Arc::new(server::Shared::new(addr, &config, stop_rx.clone()).await?);
    let app = server::router(shared.clone());
    let mut shutdown = stop_rx;
    let task = tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
            // A dropped sender counts as a stop too.
            let _ = shutdown.wait_for(|stopped| *stopped).await;
        });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "amoCRM sandbox: server error");
        }
    });
    tracing::info!(%addr, "amoCRM sandbox listening");
    Ok(Sandbox {
        addr,
        shared,
        stop,
        task: Some(task),
    })
}

impl Sandbox {
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The long-lived token the API accepts.
    pub fn long_lived_token(&self) -> String {
        self.shared.state().long_lived_token.clone()
    }

    pub fn stats(&self) -> Stats {
        self.shared.gate().stats.clone()
    }

    /// Replaces the faults in force (pending `fail_next`/`hang_next` included).
    pub fn set_faults(&self, faults: Faults) {
        self.shared.gate().faults = faults;
    }

    /// Carries out the next `count` API requests but holds their answers back until the
    /// client gives up (a 504 after 60 s, or at shutdown): writes whose answers were lost.
    pub fn lose_next_answers(&self, count: u32) {
        self.shared.gate().lose_answers = count;
    }

    /// Makes every OAuth access token issued so far expired (long-lived tokens stay valid).
    pub fn expire_access_tokens(&self) {
        self.shared.expire_access_tokens();
    }

    /// Lifts a block and clears the rate-limit window and violations.
    pub fn unblock(&self) {
        self.shared.gate().unblock();
    }

    /// The call-card pops (`POST /api/v2/events`) received so far.
    pub fn call_events(&self) -> Vec<CallEvent> {
        self.shared.state().call_events.clone()
    }

    /// Stops accepting requests, lets requests in flight finish (hanging ones are released),
    /// waits for the server and writes the state file one last time.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.shared.save_now().await;
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}
