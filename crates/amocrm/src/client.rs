//! [`AmoClient`]: the HTTP layer (limiter, authorization, status mapping) and one method per
//! endpoint callbridge uses.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::config::{AccountConfig, AuthConfig};
use crate::error::{Error, ItemError};
use crate::limiter::{RateLimiter, RATE_WINDOW, RATE_WINDOW_MARGIN};
use crate::model::*;
use crate::tokens::{OAuthTokens, TokenStore};
use crate::wire;

/// At most this many items go into one batch write; the caller splits larger work.
pub const MAX_BATCH: usize = 50;
/// Page size for lists (amoCRM's maximum).
pub const PAGE_LIMIT: usize = 250;
/// A list longer than this many pages is refused rather than walked: an endless walk is both a
/// bug and what amoCRM calls abusive iteration.
pub const MAX_PAGES: u32 = 1000;
/// Refresh an access token this long before it expires.
pub const REFRESH_BEFORE_EXPIRY_SECS: i64 = 60;
/// Ids per request in `filter[...][]` lists, to keep URLs short.
const IDS_PER_REQUEST: usize = 50;
/// Larger answers are refused rather than buffered.
const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;
/// amoCRM's access tokens live a day; used only when a token answer forgets `expires_in`.
const DEFAULT_TOKEN_LIFETIME_SECS: i64 = 86_400;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const TOKEN_PATH: &str = "/oauth2/access_token";

const USER_AGENT: &str = concat!("callbridge/", env!("CARGO_PKG_VERSION"));

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
    limiter: RateLimiter,
    timeout: Duration,
    store: Arc<dyn TokenStore>,
    /// The latest tokens this process knows; `None` until first loaded from the store.
    cache: Mutex<Option<OAuthTokens>>,
    /// Held for the whole of a refresh or code exchange: one token request per account at a
    /// time, and waiters see its result instead of starting their own.
    refresh: tokio::sync::Mutex<RefreshState>,
}

#[derive(Default)]
struct RefreshState {
    /// A refresh token the CRM refused, and why. The same token is not sent again (it cannot
    /// start working), so a broken connection costs one request, not one per caller.
    rejected: Option<(String, String)>,
}

/// An answer that got past the gateway: not 429, 403 or 5xx.
struct Reply {
    status: StatusCode,
    body: Vec<u8>,
}

struct Request<'a> {
    method: Method,
    path: &'a str,
    query: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

impl Request<'_> {
    fn describe(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn needs_refresh(tokens: &OAuthTokens) -> bool {
    tokens.expires_at.saturating_sub(REFRESH_BEFORE_EXPIRY_SECS) <= unix_now()
}

/// A transport error with its causes, without the URL (it may carry a client's phone number).
fn transport_message(err: reqwest::Error) -> String {
    let err = err.without_url();
    let mut message = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

fn check_batch(what: &str, len: usize) -> Result<(), Error> {
    if len > MAX_BATCH {
        return Err(Error::Config(format!(
            "{what}: {len} items in one batch; at most {MAX_BATCH} are allowed, split the batch"
        )));
    }
    Ok(())
}

fn to_json<T: Serialize + ?Sized>(what: &str, value: &T) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(value)
        .map_err(|e| Error::Config(format!("{what}: cannot encode the body: {e}")))
}

fn non_empty(what: &str, field: &str, value: &str) -> Result<(), Error> {
    if value.trim().is_empty() {
        return Err(Error::Config(format!("{what}: {field} is empty")));
    }
    Ok(())
}

/// A non-2xx answer (other than the ones `send` maps itself) as [`Error::Rejected`].
fn rejected(reply: &Reply) -> Error {
    let status = reply.status.as_u16();
    let (mut message, items) = wire::describe_problem(status, &reply.body);
    if reply.status.is_redirection() {
        message = format!("redirected (HTTP {status}); check base_url: {message}");
    }
    Error::Rejected {
        status,
        message,
        items,
    }
}

fn expect_success(reply: Reply) -> Result<Reply, Error> {
    if reply.status.is_success() {
        Ok(reply)
    } else {
        Err(rejected(&reply))
    }
}

impl AmoClient {
    /// Check the configuration and build the client. No request is sent.
    pub fn new(config: AccountConfig, tokens: Arc<dyn TokenStore>) -> Result<Self, Error> {
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
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .timeout(config.timeout)
            .connect_timeout(CONNECT_TIMEOUT.min(config.timeout))
            // A redirect would carry the bearer token somewhere base_url did not name.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| {
                Error::Config(format!(
                    "cannot build the HTTP client: {}",
                    transport_message(e)
                ))
            })?;
        Ok(AmoClient {
            inner: Arc::new(Inner {
                base,
                http,
                auth: config.auth,
                limiter: RateLimiter::new(
                    config.requests_per_second,
                    RATE_WINDOW + RATE_WINDOW_MARGIN,
                ),
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
        self.inner.limiter.wait_for_place().await;
    }

    /// The whole-request timeout: a request older than this has been given up.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// The base URL requests go to (without a trailing slash).
    pub fn base_url(&self) -> &str {
        &self.inner.base
    }

    fn cache(&self) -> MutexGuard<'_, Option<OAuthTokens>> {
        // The cache holds a whole value or none; a panic elsewhere cannot leave it torn.
        self.inner.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    // -----------------------------------------------------------------------------------------
    // HTTP

    /// One request through the limiter, with no retry. 429, 403 and 5xx become errors here;
    /// every other status comes back as a [`Reply`].
    async fn send(&self, req: &Request<'_>, bearer: Option<&str>) -> Result<Reply, Error> {
        let what = req.describe();
        let mut url = Url::parse(&format!("{}{}", self.inner.base, req.path))
            .map_err(|e| Error::Config(format!("{what}: cannot build the URL: {e}")))?;
        if !req.query.is_empty() {
            url.query_pairs_mut().extend_pairs(req.query.iter());
        }
        let mut builder = self.inner.http.request(req.method.clone(), url);
        if let Some(token) = bearer {
            let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                Error::Config("the access token has characters a header cannot carry".into())
            })?;
            // Keeps the token out of any Debug output of the request.
            value.set_sensitive(true);
            builder = builder.header(AUTHORIZATION, value);
        }
        if let Some(body) = &req.body {
            builder = builder
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone());
        }

        let permit = self.inner.limiter.acquire_leaving(self.reserve).await;
        let granted_at = permit.at;
        let started = Instant::now();
        let sent = builder.send().await;
        // The answer's head is here (or the attempt is over): the request has reached the CRM,
        // and its place in the window counts from now.
        drop(permit);
        let mut response = sent.map_err(|e| {
            if e.is_connect() {
                // Checked first: a connect timeout is also a timeout, but nothing was sent.
                Error::Unreachable(format!("{what}: {}", transport_message(e)))
            } else if e.is_timeout() {
                Error::Timeout
            } else {
                Error::Transport(format!("{what}: {}", transport_message(e)))
            }
        })?;
        let status = response.status();
        // Before the body: a 429 must pause the account even if its body never arrives.
        if status == StatusCode::TOO_MANY_REQUESTS {
            match self.inner.limiter.on_rate_limited(granted_at) {
                Some(cooldown) => tracing::warn!(
                    request = %what,
                    cooldown_ms = cooldown.as_millis() as u64,
                    "amoCRM rate limit hit (429); pausing all requests to this account"
                ),
                None => {
                    tracing::debug!(request = %what, "429 for a request sent before the current pause")
                }
            }
            return Err(Error::RateLimited);
        }
        self.inner.limiter.on_passed(granted_at);
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > MAX_BODY_BYTES {
                        return Err(Error::Decode(format!(
                            "{what}: answer larger than {MAX_BODY_BYTES} bytes"
                        )));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) if e.is_timeout() => return Err(Error::Timeout),
                Err(e) => {
                    return Err(Error::Transport(format!(
                        "{what}: reading the answer: {}",
                        transport_message(e)
                    )))
                }
            }
        }
        tracing::debug!(
            request = %what,
            status = status.as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "amoCRM answered"
        );
        if status == StatusCode::FORBIDDEN {
            tracing::error!(
                request = %what,
                body = %wire::body_snippet(&body),
                "amoCRM answered 403: API access for the account or IP is blocked"
            );
            return Err(Error::Blocked);
        }
        if status.is_server_error() {
            return Err(Error::Server {
                status: status.as_u16(),
                body: wire::body_snippet(&body),
            });
        }
        Ok(Reply { status, body })
    }

    /// A request with the account's authorization: a proactive refresh when the access token is
    /// about to expire, and one refresh and retry after a 401.
    async fn call(&self, req: &Request<'_>) -> Result<Reply, Error> {
        let mut refreshed_after_401 = false;
        loop {
            let bearer = self.bearer().await?;
            let reply = self.send(req, Some(&bearer)).await?;
            if reply.status != StatusCode::UNAUTHORIZED {
                return Ok(reply);
            }
            let (detail, _) = wire::describe_problem(401, &reply.body);
            match &self.inner.auth {
                AuthConfig::LongLived { .. } => {
                    return Err(Error::Unauthorized(format!(
                        "the long-lived token was refused (expired or revoked): {detail}"
                    )))
                }
                AuthConfig::OAuth { .. } if refreshed_after_401 => {
                    return Err(Error::Unauthorized(format!(
                        "refused even after refreshing the access token: {detail}"
                    )))
                }
                AuthConfig::OAuth { .. } => {
                    tracing::info!(request = %req.describe(), "401 from amoCRM; refreshing the access token once");
                    self.refresh(&bearer).await?;
                    refreshed_after_401 = true;
                }
            }
        }
    }

    async fn get(&self, path: &str, query: Vec<(String, String)>) -> Result<Reply, Error> {
        self.call(&Request {
            method: Method::GET,
            path,
            query,
            body: None,
        })
        .await
    }

    async fn post(&self, path: &str, body: Vec<u8>) -> Result<Reply, Error> {
        self.call(&Request {
            method: Method::POST,
            path,
            query: Vec::new(),
            body: Some(body),
        })
        .await
    }

    /// Every page of a HAL list: `page` 1, 2, ... while the answer links a next page. 204 (and
    /// an empty page) end the list.
    async fn list<T, W>(
        &self,
        path: &str,
        query: &[(String, String)],
        key: &str,
    ) -> Result<Vec<T>, Error>
    where
        W: DeserializeOwned + Into<T>,
    {
        let what = format!("GET {path}");
        let mut out = Vec::new();
        for page in 1..=MAX_PAGES {
            let mut q = query.to_vec();
            q.push(("page".into(), page.to_string()));
            q.push(("limit".into(), PAGE_LIMIT.to_string()));
            let reply = expect_success(self.get(path, q).await?)?;
            if reply.status == StatusCode::NO_CONTENT {
                return Ok(out);
            }
            let mut root = wire::parse_json(&what, &reply.body)?;
            let items: Vec<W> = wire::embedded_list(&what, &mut root, key)?;
            let count = items.len();
            out.extend(items.into_iter().map(Into::into));
            if count == 0 || !wire::has_next_page(&root) {
                return Ok(out);
            }
        }
        Err(Error::Decode(format!(
            "{what}: the list goes on past {MAX_PAGES} pages; refusing to walk further"
        )))
    }

    /// `POST path` with a JSON array, answered by `_embedded.{key}[]`.
    async fn post_batch<T, W>(&self, path: &str, body: Vec<u8>, key: &str) -> Result<Vec<T>, Error>
    where
        W: DeserializeOwned + Into<T>,
    {
        let what = format!("POST {path}");
        let reply = expect_success(self.post(path, body).await?)?;
        let mut root = wire::parse_json(&what, &reply.body)?;
        let items: Vec<W> = wire::embedded_list(&what, &mut root, key)?;
        Ok(items.into_iter().map(Into::into).collect())
    }

    // -----------------------------------------------------------------------------------------
    // OAuth

    /// The bearer for the next request.
    async fn bearer(&self) -> Result<String, Error> {
        if let AuthConfig::LongLived { token } = &self.inner.auth {
            return Ok(token.clone());
        }
        let tokens = self.current_tokens().await?;
        if needs_refresh(&tokens) {
            return self.refresh(&tokens.access_token).await;
        }
        Ok(tokens.access_token)
    }

    async fn current_tokens(&self) -> Result<OAuthTokens, Error> {
        if let Some(tokens) = self.cache().clone() {
            return Ok(tokens);
        }
        let loaded = self.inner.store.load().await?.ok_or_else(no_tokens)?;
        let mut cache = self.cache();
        // Another task may have filled the cache (possibly with newer tokens) meanwhile.
        Ok(cache.get_or_insert(loaded).clone())
    }

    /// Replace the access token `stale`, and return the one to use now.
    ///
    /// Single-flight: callers queue on the refresh lock; whoever gets it first asks the CRM,
    /// the rest find tokens other than `stale` in the store and use those. The new pair is
    /// saved to the store *before* the cache learns the new access token, so no request can use
    /// it (and so make the old refresh token the only copy) before the new refresh token is
    /// safe.
    async fn refresh(&self, stale: &str) -> Result<String, Error> {
        let AuthConfig::OAuth {
            client_id,
            client_secret,
            redirect_uri,
        } = &self.inner.auth
        else {
            return Err(Error::Config(
                "a long-lived token cannot be refreshed".into(),
            ));
        };
        let mut state = self.inner.refresh.lock().await;
        // The store is the truth: it also sees refreshes by other processes sharing it.
        let current = self.inner.store.load().await?.ok_or_else(no_tokens)?;
        if current.access_token != stale && !needs_refresh(&current) {
            *self.cache() = Some(current.clone());
            return Ok(current.access_token);
        }
        if let Some((refused, why)) = &state.rejected {
            if *refused == current.refresh_token {
                return Err(Error::Unauthorized(why.clone()));
            }
        }
        let body = json!({
            "client_id": client_id,
            "client_secret": client_secret,
            "grant_type": "refresh_token",
            "refresh_token": current.refresh_token,
            "redirect_uri": redirect_uri,
        });
        match self.token_request(&body).await {
            Ok(tokens) => {
                self.inner.store.save(&tokens).await.map_err(|e| {
                    tracing::error!(
                        "the refreshed OAuth tokens could not be saved; the old refresh token is spent, so the \
                         integration must be re-authorized if this process stops: {e}"
                    );
                    Error::TokenStore(e.0)
                })?;
                *self.cache() = Some(tokens.clone());
                state.rejected = None;
                tracing::info!(
                    expires_at = tokens.expires_at,
                    "refreshed the amoCRM access token"
                );
                Ok(tokens.access_token)
            }
            Err(Error::Unauthorized(why)) => {
                let why =
                    format!("the refresh token was refused; re-authorize the integration: {why}");
                tracing::error!("{why}");
                state.rejected = Some((current.refresh_token, why.clone()));
                Err(Error::Unauthorized(why))
            }
            Err(other) => Err(other),
        }
    }

    /// `POST /oauth2/access_token` (through the limiter, without a bearer). 400 and 401 mean the
    /// grant was refused.
    async fn token_request(&self, body: &Value) -> Result<OAuthTokens, Error> {
        let req = Request {
            method: Method::POST,
            path: TOKEN_PATH,
            query: Vec::new(),
            body: Some(to_json("POST /oauth2/access_token", body)?),
        };
        let what = req.describe();
        let reply = self.send(&req, None).await?;
        if matches!(
            reply.status,
            StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED
        ) {
            let (detail, _) = wire::describe_problem(reply.status.as_u16(), &reply.body);
            return Err(Error::Unauthorized(format!(
                "HTTP {}: {detail}",
                reply.status.as_u16()
            )));
        }
        let reply = expect_success(reply)?;
        let root = wire::parse_json(&what, &reply.body)?;
        let answer: wire::TokenIn = wire::decode_at(&what, "", root)?;
        if answer.access_token.is_empty() || answer.refresh_token.is_empty() {
            return Err(Error::Decode(format!(
                "{what}: empty access_token or refresh_token"
            )));
        }
        // A missing lifetime must not cost the new refresh token (the old one is already
        // spent), so fall back to amoCRM's documented one day.
        let lifetime = answer.expires_in.unwrap_or_else(|| {
            tracing::warn!("token answer without expires_in; assuming one day");
            DEFAULT_TOKEN_LIFETIME_SECS
        });
        Ok(OAuthTokens {
            access_token: answer.access_token,
            refresh_token: answer.refresh_token,
            expires_at: unix_now().saturating_add(lifetime),
        })
    }

    /// Exchange an authorization code (from the OAuth redirect) for tokens, and save them in
    /// the store. Only for [`AuthConfig::OAuth`].
    pub async fn exchange_code(&self, code: &str) -> Result<OAuthTokens, Error> {
        let AuthConfig::OAuth {
            client_id,
            client_secret,
            redirect_uri,
        } = &self.inner.auth
        else {
            return Err(Error::Config(
                "exchange_code needs OAuth; this account uses a long-lived token".into(),
            ));
        };
        non_empty("exchange_code", "the authorization code", code)?;
        let mut state = self.inner.refresh.lock().await;
        let body = json!({
            "client_id": client_id,
            "client_secret": client_secret,
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
        });
        let tokens = self.token_request(&body).await.map_err(|e| match e {
            Error::Unauthorized(why) => {
                Error::Unauthorized(format!("the authorization code was refused: {why}"))
            }
            other => other,
        })?;
        self.inner.store.save(&tokens).await?;
        *self.cache() = Some(tokens.clone());
        state.rejected = None;
        tracing::info!(expires_at = tokens.expires_at, "authorized with amoCRM");
        Ok(tokens)
    }

    // -----------------------------------------------------------------------------------------
    // Reads

    /// `GET /api/v4/account`: a cheap connection check.
    pub async fn account(&self) -> Result<Account, Error> {
        let what = "GET /api/v4/account";
        let reply = expect_success(self.get("/api/v4/account", Vec::new()).await?)?;
        if reply.status == StatusCode::NO_CONTENT {
            return Err(Error::Decode(format!("{what}: no content")));
        }
        let root = wire::parse_json(what, &reply.body)?;
        let account: wire::AccountIn = wire::decode_at(what, "", root)?;
        Ok(account.into())
    }

    /// Every user of the account (`GET /api/v4/users`, all pages). Needs an admin's token.
    pub async fn users(&self) -> Result<Vec<User>, Error> {
        self.list::<User, wire::UserIn>("/api/v4/users", &[], "users")
            .await
    }

    /// The lead pipelines (`GET /api/v4/leads/pipelines`; not paginated by amoCRM).
    pub async fn pipelines(&self) -> Result<Vec<Pipeline>, Error> {
        let what = "GET /api/v4/leads/pipelines";
        let reply = expect_success(self.get("/api/v4/leads/pipelines", Vec::new()).await?)?;
        if reply.status == StatusCode::NO_CONTENT {
            return Ok(Vec::new());
        }
        let mut root = wire::parse_json(what, &reply.body)?;
        let items: Vec<wire::PipelineIn> = wire::embedded_list(what, &mut root, "pipelines")?;
        Ok(items.into_iter().map(Into::into).collect())
    }

    /// Contacts whose fields match `phone` (`GET /api/v4/contacts?query=...&with=leads`), with
    /// their lead ids. No match is an empty list. One page of up to 250: a phone number matching
    /// more is not a phone number.
    pub async fn find_contacts_by_phone(&self, phone: &str) -> Result<Vec<Contact>, Error> {
        // An empty query would list every contact of the account.
        non_empty("find_contacts_by_phone", "the phone", phone)?;
        let what = "GET /api/v4/contacts";
        let query = vec![
            ("query".to_string(), phone.trim().to_string()),
            ("with".to_string(), "leads".to_string()),
            ("limit".to_string(), PAGE_LIMIT.to_string()),
        ];
        let reply = expect_success(self.get("/api/v4/contacts", query).await?)?;
        if reply.status == StatusCode::NO_CONTENT {
            return Ok(Vec::new());
        }
        let mut root = wire::parse_json(what, &reply.body)?;
        let items: Vec<wire::ContactIn> = wire::embedded_list(what, &mut root, "contacts")?;
        Ok(items.into_iter().map(Into::into).collect())
    }

    /// One contact with its lead ids; `None` when it does not exist (204 or 404).
    pub async fn contact(&self, id: u64) -> Result<Option<Contact>, Error> {
        let path = format!("/api/v4/contacts/{id}");
        let what = format!("GET {path}");
        let reply = self
            .get(&path, vec![("with".into(), "leads".into())])
            .await?;
        if matches!(reply.status, StatusCode::NO_CONTENT | StatusCode::NOT_FOUND) {
            return Ok(None);
        }
        let reply = expect_success(reply)?;
        let root = wire::parse_json(&what, &reply.body)?;
        let contact: wire::ContactIn = wire::decode_at(&what, "", root)?;
        Ok(Some(contact.into()))
    }

    /// The contacts with these ids, each with its linked lead ids (missing ones are left out).
    /// One request per 50 ids, where looking contacts up one by one would cost one each.
    pub async fn contacts_by_ids(&self, ids: &[u64]) -> Result<Vec<Contact>, Error> {
        let mut out = Vec::new();
        for chunk in ids.chunks(IDS_PER_REQUEST) {
            let mut query: Vec<(String, String)> = chunk
                .iter()
                .map(|id| ("filter[id][]".to_string(), id.to_string()))
                .collect();
            query.push(("with".to_string(), "leads".to_string()));
            out.extend(
                self.list::<Contact, wire::ContactIn>("/api/v4/contacts", &query, "contacts")
                    .await?,
            );
        }
        Ok(out)
    }

    /// Every contact of the account (`GET /api/v4/contacts`, all pages), without their leads.
    pub async fn contacts(&self) -> Result<Vec<Contact>, Error> {
        self.list::<Contact, wire::ContactIn>("/api/v4/contacts", &[], "contacts")
            .await
    }

    /// Every lead of the account (`GET /api/v4/leads`, all pages).
    pub async fn leads(&self) -> Result<Vec<Lead>, Error> {
        self.list::<Lead, wire::LeadIn>("/api/v4/leads", &[], "leads")
            .await
    }

    /// Every unsorted request of the account (`GET /api/v4/leads/unsorted`, all pages).
    pub async fn unsorted(&self) -> Result<Vec<Unsorted>, Error> {
        self.list::<Unsorted, wire::UnsortedIn>("/api/v4/leads/unsorted", &[], "unsorted")
            .await
    }

    /// The leads with these ids (missing ones are left out), e.g. to see which are still open.
    pub async fn leads_by_ids(&self, ids: &[u64]) -> Result<Vec<Lead>, Error> {
        let mut out = Vec::new();
        for chunk in ids.chunks(IDS_PER_REQUEST) {
            let query: Vec<(String, String)> = chunk
                .iter()
                .map(|id| ("filter[id][]".to_string(), id.to_string()))
                .collect();
            out.extend(
                self.list::<Lead, wire::LeadIn>("/api/v4/leads", &query, "leads")
                    .await?,
            );
        }
        Ok(out)
    }

    /// Notes of one entity kind matching `filter` (all pages).
    pub async fn list_notes(
        &self,
        entity: EntityType,
        filter: &NotesFilter,
    ) -> Result<Vec<Note>, Error> {
        let path = format!("/api/v4/{entity}/notes");
        let mut base = Vec::new();
        for note_type in &filter.note_types {
            base.push(("filter[note_type][]".to_string(), note_type.clone()));
        }
        if let Some(from) = filter.updated_from {
            base.push(("filter[updated_at][from]".to_string(), from.to_string()));
        }
        if let Some(to) = filter.updated_to {
            base.push(("filter[updated_at][to]".to_string(), to.to_string()));
        }
        self.list_by_ids::<Note, wire::NoteIn>(
            &path,
            base,
            "filter[entity_id][]",
            &filter.entity_ids,
            "notes",
        )
        .await
    }

    /// Tasks matching `filter` (all pages).
    pub async fn list_tasks(&self, filter: &TasksFilter) -> Result<Vec<Task>, Error> {
        let mut base = Vec::new();
        if let Some(done) = filter.is_completed {
            base.push((
                "filter[is_completed]".to_string(),
                u8::from(done).to_string(),
            ));
        }
        if let Some(entity) = filter.entity_type {
            base.push((
                "filter[entity_type]".to_string(),
                entity.as_str().to_string(),
            ));
        }
        for id in &filter.responsible_user_ids {
            base.push(("filter[responsible_user_id][]".to_string(), id.to_string()));
        }
        self.list_by_ids::<Task, wire::TaskIn>(
            "/api/v4/tasks",
            base,
            "filter[entity_id][]",
            &filter.entity_ids,
            "tasks",
        )
        .await
    }

    /// A list filtered by `ids` sent in chunks (all of them when `ids` is empty).
    async fn list_by_ids<T, W>(
        &self,
        path: &str,
        base: Vec<(String, String)>,
        id_key: &str,
        ids: &[u64],
        key: &str,
    ) -> Result<Vec<T>, Error>
    where
        W: DeserializeOwned + Into<T>,
    {
        if ids.is_empty() {
            return self.list::<T, W>(path, &base, key).await;
        }
        let mut out = Vec::new();
        for chunk in ids.chunks(IDS_PER_REQUEST) {
            let mut query = base.clone();
            query.extend(chunk.iter().map(|id| (id_key.to_string(), id.to_string())));
            out.extend(self.list::<T, W>(path, &query, key).await?);
        }
        Ok(out)
    }

    // -----------------------------------------------------------------------------------------
    // Writes (at most MAX_BATCH items each; an empty batch sends nothing)

    /// `POST /api/v4/contacts`.
    pub async fn create_contacts(&self, items: &[NewContact]) -> Result<Vec<Created>, Error> {
        check_batch("create_contacts", items.len())?;
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let body: Vec<_> = items.iter().map(wire::ContactOut::new).collect();
        self.post_batch::<Created, wire::CreatedIn>(
            "/api/v4/contacts",
            to_json("create_contacts", &body)?,
            "contacts",
        )
        .await
    }

    /// `POST /api/v4/leads`.
    pub async fn create_leads(&self, items: &[NewLead]) -> Result<Vec<Created>, Error> {
        check_batch("create_leads", items.len())?;
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let body: Vec<_> = items.iter().map(wire::LeadOut::new).collect();
        self.post_batch::<Created, wire::CreatedIn>(
            "/api/v4/leads",
            to_json("create_leads", &body)?,
            "leads",
        )
        .await
    }

    /// `POST /api/v4/leads/complex`: each lead with a new contact, in one request. The answer is
    /// a plain array in request order.
    pub async fn create_complex_leads(
        &self,
        items: &[NewComplexLead],
    ) -> Result<Vec<ComplexCreated>, Error> {
        check_batch("create_complex_leads", items.len())?;
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let what = "POST /api/v4/leads/complex";
        let body: Vec<_> = items.iter().map(wire::ComplexLeadOut::new).collect();
        let reply = expect_success(
            self.post(
                "/api/v4/leads/complex",
                to_json("create_complex_leads", &body)?,
            )
            .await?,
        )?;
        let root = wire::parse_json(what, &reply.body)?;
        let created: Vec<wire::ComplexIn> = wire::decode_at(what, "", root)?;
        Ok(created.into_iter().map(Into::into).collect())
    }

    /// `POST /api/v4/leads/unsorted/sip`.
    pub async fn add_unsorted_sip(
        &self,
        items: &[NewUnsortedSip],
    ) -> Result<Vec<UnsortedCreated>, Error> {
        check_batch("add_unsorted_sip", items.len())?;
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let body: Vec<_> = items.iter().map(wire::UnsortedSipOut::new).collect();
        self.post_batch::<UnsortedCreated, wire::UnsortedIn>(
            "/api/v4/leads/unsorted/sip",
            to_json("add_unsorted_sip", &body)?,
            "unsorted",
        )
        .await
    }

    /// `POST /api/v4/{entity}/notes`.
    pub async fn add_notes(
        &self,
        entity: EntityType,
        items: &[NewNote],
    ) -> Result<Vec<Created>, Error> {
        check_batch("add_notes", items.len())?;
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let body: Vec<_> = items.iter().map(wire::NoteOut::new).collect();
        self.post_batch::<Created, wire::CreatedIn>(
            &format!("/api/v4/{entity}/notes"),
            to_json("add_notes", &body)?,
            "notes",
        )
        .await
    }

    /// `POST /api/v4/tasks`.
    pub async fn create_tasks(&self, items: &[NewTask]) -> Result<Vec<Created>, Error> {
        check_batch("create_tasks", items.len())?;
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let body: Vec<_> = items.iter().map(wire::TaskOut::new).collect();
        self.post_batch::<Created, wire::CreatedIn>(
            "/api/v4/tasks",
            to_json("create_tasks", &body)?,
            "tasks",
        )
        .await
    }

    /// `POST /api/v4/calls`. "Entity not found" (no contact or company with the number),
    /// whether as a 400 or as `errors[]` beside `_embedded.calls` in a 200, is reported in the
    /// outcome, not as an error. Other refusals (validation errors, ...) are
    /// [`Error::Rejected`].
    pub async fn add_calls(&self, items: &[NewCall]) -> Result<CallsOutcome, Error> {
        check_batch("add_calls", items.len())?;
        if items.is_empty() {
            return Ok(CallsOutcome::default());
        }
        let what = "POST /api/v4/calls";
        let reply = self
            .post("/api/v4/calls", to_json("add_calls", items)?)
            .await?;
        if reply.status == StatusCode::BAD_REQUEST {
            if let Some(root) = entity_not_found_body(&reply.body) {
                return calls_outcome(what, root, items);
            }
        }
        let reply = expect_success(reply)?;
        let root = wire::parse_json(what, &reply.body)?;
        let has_calls = root.get("_embedded").and_then(|e| e.get("calls")).is_some();
        let has_errors = root
            .get("errors")
            .and_then(Value::as_array)
            .is_some_and(|e| !e.is_empty());
        if !has_calls && !has_errors {
            return Err(Error::Decode(format!(
                "{what}: neither _embedded.calls nor errors in the answer"
            )));
        }
        calls_outcome(what, root, items)
    }

    /// `POST /api/v2/events` with `phone_call` events: pop the incoming-call card for the
    /// listed users. amoCRM answers 202.
    pub async fn show_call_card(&self, events: &[CallCardEvent]) -> Result<(), Error> {
        check_batch("show_call_card", events.len())?;
        if events.is_empty() {
            return Ok(());
        }
        for (index, event) in events.iter().enumerate() {
            if event.users.is_empty() {
                return Err(Error::Config(format!(
                    "show_call_card: event {index} has no users; amoCRM would notify every user of the account"
                )));
            }
            non_empty("show_call_card", "phone_number", &event.phone_number)?;
        }
        let body = wire::EventsOut {
            add: events.iter().map(wire::CallEventOut::new).collect(),
        };
        expect_success(
            self.post("/api/v2/events", to_json("show_call_card", &body)?)
                .await?,
        )?;
        Ok(())
    }
}

fn no_tokens() -> Error {
    Error::Unauthorized(
        "no OAuth tokens are stored for this account; authorize the integration (exchange_code) first".into(),
    )
}

const ENTITY_NOT_FOUND: &str = "Entity not found";

fn is_entity_not_found(entry: &Value) -> bool {
    entry
        .get("title")
        .and_then(Value::as_str)
        .is_some_and(|t| t.trim().eq_ignore_ascii_case(ENTITY_NOT_FOUND))
}

/// The body of a 400 from `/api/v4/calls` whose `errors[]` are all "Entity not found": an
/// outcome, not a refusal. Any other 400 (validation errors, ...) gives `None` and becomes
/// [`Error::Rejected`].
fn entity_not_found_body(body: &[u8]) -> Option<Value> {
    let root: Value = serde_json::from_slice(body).ok()?;
    let errors = root.get("errors").and_then(Value::as_array)?;
    let has_validation_errors = root
        .get("validation-errors")
        .and_then(Value::as_array)
        .is_some_and(|v| !v.is_empty());
    if errors.is_empty() || has_validation_errors || !errors.iter().all(is_entity_not_found) {
        return None;
    }
    Some(root)
}

/// Created calls (`_embedded.calls`, when present: a 400 may still carry the calls that were
/// attached, and dropping them would send them twice) and the sorted `errors[]`.
fn calls_outcome(what: &str, mut root: Value, items: &[NewCall]) -> Result<CallsOutcome, Error> {
    let mut outcome = CallsOutcome::default();
    if let Some(calls) = root
        .get_mut("_embedded")
        .and_then(|e| e.get_mut("calls"))
        .map(Value::take)
    {
        let calls: Vec<wire::CallIn> = wire::decode_at(what, "_embedded.calls", calls)?;
        for (index, call) in calls.into_iter().enumerate() {
            // Without an echoed request_id the answer's order is the request's.
            let request_id = call
                .request_id
                .or_else(|| items.get(index).map(|i| i.request_id.clone()))
                .unwrap_or_default();
            outcome.created.push(CallCreated {
                request_id,
                id: call.id,
                entity_id: call.entity_id,
                entity_type: call.entity_type.unwrap_or_default(),
            });
        }
    }
    sort_call_errors(&root, items, &mut outcome);
    Ok(outcome)
}

/// Sort `errors[]` of a calls answer into `not_found` and `other_errors`. An "Entity not found"
/// without a `request_id` is pinned on the call only when the batch had one; in a larger batch
/// nobody can tell which call it meant, so it stays an unattributed error.
fn sort_call_errors(root: &Value, items: &[NewCall], outcome: &mut CallsOutcome) {
    let Some(errors) = root.get("errors").and_then(Value::as_array) else {
        return;
    };
    let sent = |id: &str| items.iter().any(|i| i.request_id == id);
    for entry in errors {
        let error = wire::plain_item_error(entry);
        if !is_entity_not_found(entry) {
            outcome.other_errors.push(error);
            continue;
        }
        // The CRM answers with the item's index for items sent without a request_id; every
        // call carries one, but an index is still understood.
        let by_index = |id: &str| {
            id.parse::<usize>()
                .ok()
                .and_then(|index| items.get(index))
                .map(|item| item.request_id.clone())
        };
        match error.request_id {
            Some(id) if sent(&id) => outcome.not_found.push(id),
            Some(id) if by_index(&id).is_some() => outcome.not_found.extend(by_index(&id)),
            None if items.len() == 1 => outcome
                .not_found
                .extend(items.first().map(|i| i.request_id.clone())),
            request_id => outcome.other_errors.push(ItemError {
                request_id,
                message: error.message,
            }),
        }
    }
}
