//! [`AmoClient`]: one method per endpoint callbridge uses, over the account's HTTP layer. The
//! rooms: `transport` (one request through the limiter, status mapping, paging), `auth` (the
//! bearer, the 401 retry, single-flight refresh, code exchange), `reads` and `writes`.

mod auth;
mod reads;
mod transport;
mod writes;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Url;
use serde::Serialize;

use crate::config::{AccountConfig, AuthConfig};
use crate::error::Error;
use crate::limiter::AccountLimiter;
use crate::tokens::{OAuthTokens, TokenStore};
use auth::RefreshState;
use transport::{transport_message, CONNECT_TIMEOUT, USER_AGENT};

/// At most this many items go into one batch write; the caller splits larger work.
pub const MAX_BATCH: usize = 50;
/// Page size for lists (amoCRM's maximum).
pub const PAGE_LIMIT: usize = 250;
/// A list longer than this many pages is refused rather than walked: an endless walk is both a
/// bug and what amoCRM calls abusive iteration.
pub const MAX_PAGES: u32 = 1000;
/// Refresh an access token this long before it expires.
pub const REFRESH_BEFORE_EXPIRY_SECS: i64 = 60;
/// How long amoCRM's refresh token lives unused (3 months).
pub const REFRESH_TOKEN_LIFETIME_SECS: i64 = 90 * 86_400;
/// The age at which a scheduled refresh renews a pair: a third of the refresh token's life, so
/// a scheduler that misses a run or two (a stopped service, the CRM down) still has time.
pub const SCHEDULED_REFRESH_AFTER_SECS: i64 = 30 * 86_400;

/// A client for one amoCRM account. Cheap to clone; clones share the rate limiter, the token
/// cache and the refresh lock, so keep one per account and share it.
#[derive(Clone)]
pub struct AmoClient {
    inner: Arc<Inner>,
    /// Places of the account's window this handle leaves free for others (see
    /// [`AmoClient::background`]); 0 for the ordinary handle.
    reserve: usize,
}

impl std::fmt::Debug for AmoClient {
    /// Where the client talks to and how, never with what secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmoClient")
            .field("base_url", &self.inner.base)
            .field("auth", &self.inner.auth)
            .finish_non_exhaustive()
    }
}

struct Inner {
    /// Scheme, host, port and any path prefix, without a trailing slash.
    base: String,
    http: reqwest::Client,
    auth: AuthConfig,
    limiter: AccountLimiter,
    timeout: Duration,
    store: Arc<dyn TokenStore>,
    /// The latest tokens this process knows; `None` until first loaded from the store.
    cache: Mutex<Option<OAuthTokens>>,
    /// Held for the whole of a refresh or code exchange: one token request per account at a
    /// time, and waiters see its result instead of starting their own.
    refresh: tokio::sync::Mutex<RefreshState>,
}

pub(super) fn to_json<T: Serialize + ?Sized>(what: &str, value: &T) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(value)
        .map_err(|e| Error::Config(format!("{what}: cannot encode the body: {e}")))
}

pub(super) fn non_empty(what: &str, field: &str, value: &str) -> Result<(), Error> {
    if value.trim().is_empty() {
        return Err(Error::Config(format!("{what}: {field} is empty")));
    }
    Ok(())
}

impl AmoClient {
    /// Check the configuration and build the client, with its own limiter and HTTP client. No
    /// request is sent.
    pub fn new(config: AccountConfig, tokens: Arc<dyn TokenStore>) -> Result<Self, Error> {
        let limiter = AccountLimiter::new(config.requests_per_second.max(1));
        AmoClient::with_shared(config, tokens, limiter, shared_http_client()?)
    }

    /// Like [`AmoClient::new`], for a client of an account other clients talk to as well: it
    /// counts its requests in the account's `limiter` (lowered to this configuration's
    /// `requests_per_second` if that is lower) and sends them through `http`, which may be one
    /// client for every account ([`shared_http_client`]: one connection pool per host). Only the
    /// tokens are this client's own.
    pub fn with_shared(
        config: AccountConfig,
        tokens: Arc<dyn TokenStore>,
        limiter: AccountLimiter,
        http: reqwest::Client,
    ) -> Result<Self, Error> {
        let base = config.base_url.trim().trim_end_matches('/').to_string();
        let url = Url::parse(&base).map_err(|e| {
            Error::Config(format!("base_url {:?} is not a URL: {e}", config.base_url))
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(Error::Config(format!(
                "base_url {:?} must be an http(s) URL with a host, e.g. https://acme.amocrm.ru",
                config.base_url
            )));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(Error::Config(format!(
                "base_url {:?} must not have a query or fragment",
                config.base_url
            )));
        }
        if config.requests_per_second == 0 {
            return Err(Error::Config(
                "requests_per_second must be at least 1".into(),
            ));
        }
        if config.timeout.is_zero() {
            return Err(Error::Config("timeout must be longer than zero".into()));
        }
        match &config.auth {
            AuthConfig::LongLived { token } => non_empty("auth", "the long-lived token", token)?,
            AuthConfig::OAuth {
                client_id,
                client_secret,
                redirect_uri,
            } => {
                non_empty("auth", "client_id", client_id)?;
                non_empty("auth", "client_secret", client_secret)?;
                non_empty("auth", "redirect_uri", redirect_uri)?;
            }
        }
        limiter.limit_to(config.requests_per_second);
        Ok(AmoClient {
            inner: Arc::new(Inner {
                base,
                http,
                auth: config.auth,
                limiter,
                timeout: config.timeout,
                store: tokens,
                cache: Mutex::new(None),
                refresh: tokio::sync::Mutex::new(RefreshState::default()),
            }),
            reserve: 0,
        })
    }

    /// A handle for work that can wait (follow-ups, background reads): its requests go only
    /// while more than `reserve` places of the account's window are free, leaving those to the
    /// ordinary handle's requests, which pass it in the queue. Shares the limiter, the tokens and
    /// the refresh lock with `self`.
    pub fn background(&self, reserve: usize) -> AmoClient {
        AmoClient {
            inner: self.inner.clone(),
            reserve,
        }
    }

    /// Waits until a request of this account could go at once, without taking its place: work
    /// gathered after this wait includes whatever came due while the account was busy.
    pub async fn wait_for_place(&self) {
        self.inner.limiter.0.wait_for_place().await;
    }

    /// The whole-request timeout: a request older than this has been given up.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// The base URL requests go to (without a trailing slash).
    pub fn base_url(&self) -> &str {
        &self.inner.base
    }
}

/// An HTTP client fit for any amoCRM account, to share between them: one connection pool per
/// host, so a thousand idle tenants do not keep a thousand pools. Each request carries its
/// client's own timeout; the connect timeout is the same for all.
pub fn shared_http_client() -> Result<reqwest::Client, Error> {
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .connect_timeout(CONNECT_TIMEOUT)
        // A redirect would carry the bearer token somewhere base_url did not name.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| {
            Error::Config(format!(
                "cannot build the HTTP client: {}",
                transport_message(e)
            ))
        })
}
