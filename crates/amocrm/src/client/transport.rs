//! One request to the account: through the limiter, with the status mapped to an [`Error`]
//! (429 pauses the account, 403 blocks, 5xx), the body read up to a bound; and the shapes built
//! on it (GET, POST, every page of a list, a batch POST).

use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use std::time::Duration;
use tokio::time::Instant;

use super::{AmoClient, MAX_PAGES, PAGE_LIMIT};
use crate::error::Error;
use crate::wire;

/// Larger answers are refused rather than buffered.
const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) const USER_AGENT: &str = concat!("callbridge/", env!("CARGO_PKG_VERSION"));

/// An answer that got past the gateway: not 429, 403 or 5xx.
pub(super) struct Reply {
    pub(super) status: StatusCode,
    pub(super) body: Vec<u8>,
}

pub(super) struct Request<'a> {
    pub(super) method: Method,
    pub(super) path: &'a str,
    pub(super) query: Vec<(String, String)>,
    pub(super) body: Option<Vec<u8>>,
}

impl Request<'_> {
    pub(super) fn describe(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// A transport error with its causes, without the URL (it may carry a client's phone number).
pub(super) fn transport_message(err: reqwest::Error) -> String {
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

pub(super) fn expect_success(reply: Reply) -> Result<Reply, Error> {
    if reply.status.is_success() {
        Ok(reply)
    } else {
        Err(rejected(&reply))
    }
}

impl AmoClient {
    /// One request through the limiter, with no retry. 429, 403 and 5xx become errors here;
    /// every other status comes back as a [`Reply`].
    pub(super) async fn send(
        &self,
        req: &Request<'_>,
        bearer: Option<&str>,
    ) -> Result<Reply, Error> {
        let what = req.describe();
        let mut url = Url::parse(&format!("{}{}", self.inner.base, req.path))
            .map_err(|e| Error::Config(format!("{what}: cannot build the URL: {e}")))?;
        if !req.query.is_empty() {
            url.query_pairs_mut().extend_pairs(req.query.iter());
        }
        // The client's own timeout: the HTTP client may be shared by accounts with others.
        let mut builder = self
            .inner
            .http
            .request(req.method.clone(), url)
            .timeout(self.inner.timeout);
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

        let permit = self.inner.limiter.0.acquire_leaving(self.reserve).await;
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
            match self.inner.limiter.0.on_rate_limited(granted_at) {
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
        self.inner.limiter.0.on_passed(granted_at);
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

    pub(super) async fn get(
        &self,
        path: &str,
        query: Vec<(String, String)>,
    ) -> Result<Reply, Error> {
        self.call(&Request {
            method: Method::GET,
            path,
            query,
            body: None,
        })
        .await
    }

    pub(super) async fn post(&self, path: &str, body: Vec<u8>) -> Result<Reply, Error> {
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
    pub(super) async fn list<T, W>(
        &self,
        path: &str,
        query: &[(String, String)],
        key: &str,
    ) -> Result<Vec<T>, Error>
    where
        W: DeserializeOwned + Into<T>,
    {
        self.list_while::<T, W>(path, query, key, |_| true).await
    }

    /// As [`AmoClient::list`], but stops after the page on which `more` (given that page's
    /// items) says the rest is not wanted, e.g. a list ordered newest first whose items are
    /// now older than what is looked for.
    pub(super) async fn list_while<T, W>(
        &self,
        path: &str,
        query: &[(String, String)],
        key: &str,
        more: impl Fn(&[T]) -> bool,
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
            let page: Vec<T> = items.into_iter().map(Into::into).collect();
            let wanted = more(&page);
            out.extend(page);
            if count == 0 || !wanted || !wire::has_next_page(&root) {
                return Ok(out);
            }
        }
        Err(Error::Decode(format!(
            "{what}: the list goes on past {MAX_PAGES} pages; refusing to walk further"
        )))
    }

    /// `POST path` with a JSON array, answered by `_embedded.{key}[]`.
    pub(super) async fn post_batch<T, W>(
        &self,
        path: &str,
        body: Vec<u8>,
        key: &str,
    ) -> Result<Vec<T>, Error>
    where
        W: DeserializeOwned + Into<T>,
    {
        let what = format!("POST {path}");
        let reply = expect_success(self.post(path, body).await?)?;
        let mut root = wire::parse_json(&what, &reply.body)?;
        let items: Vec<W> = wire::embedded_list(&what, &mut root, key)?;
        Ok(items.into_iter().map(Into::into).collect())
    }
}
