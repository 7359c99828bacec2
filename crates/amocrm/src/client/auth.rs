//! The account's authorization: the bearer of each request (a long-lived token, or OAuth
//! tokens refreshed ahead of expiry), one refresh and retry after a 401, single-flight refreshes
//! saved before use, and the authorization-code exchange.

use std::sync::MutexGuard;
use std::time::{SystemTime, UNIX_EPOCH};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::transport::{expect_success, Reply, Request};
use super::{non_empty, to_json, AmoClient, REFRESH_BEFORE_EXPIRY_SECS};
use crate::config::AuthConfig;
use crate::error::Error;
use crate::tokens::OAuthTokens;
use crate::wire;

/// amoCRM's access tokens live a day; used only when a token answer forgets `expires_in`.
const DEFAULT_TOKEN_LIFETIME_SECS: i64 = 86_400;
const TOKEN_PATH: &str = "/oauth2/access_token";

#[derive(Default)]
pub(super) struct RefreshState {
    /// A refresh token the CRM refused, and why. The same token is not sent again (it cannot
    /// start working), so a broken connection costs one request, not one per caller.
    rejected: Option<(String, String)>,
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

fn no_tokens() -> Error {
    Error::Unauthorized(
        "no OAuth tokens are stored for this account; authorize the integration (exchange_code) first".into(),
    )
}

/// The integration's OAuth identity, as every token request sends it.
struct OAuthClient<'a> {
    client_id: &'a str,
    client_secret: &'a str,
    redirect_uri: &'a str,
}

impl OAuthClient<'_> {
    /// The body of a token request: this grant (`grant_type`, and its `key` with `value`).
    fn grant(&self, grant_type: &str, key: &str, value: &str) -> Value {
        let mut body = json!({
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "grant_type": grant_type,
            "redirect_uri": self.redirect_uri,
        });
        body[key] = Value::from(value);
        body
    }
}

impl AmoClient {
    /// The OAuth identity, or `refusal` for a long-lived-token account.
    fn oauth(&self, refusal: &str) -> Result<OAuthClient<'_>, Error> {
        match &self.inner.auth {
            AuthConfig::OAuth {
                client_id,
                client_secret,
                redirect_uri,
            } => Ok(OAuthClient {
                client_id,
                client_secret,
                redirect_uri,
            }),
            AuthConfig::LongLived { .. } => Err(Error::Config(refusal.into())),
        }
    }

    fn cache(&self) -> MutexGuard<'_, Option<OAuthTokens>> {
        // The cache holds a whole value or none; a panic elsewhere cannot leave it torn.
        self.inner.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A request with the account's authorization: a proactive refresh when the access token is
    /// about to expire, and one refresh and retry after a 401.
    pub(super) async fn call(&self, req: &Request<'_>) -> Result<Reply, Error> {
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
        let oauth = self.oauth("a long-lived token cannot be refreshed")?;
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
        let body = oauth.grant("refresh_token", "refresh_token", &current.refresh_token);
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
        let now = unix_now();
        Ok(OAuthTokens {
            access_token: answer.access_token,
            refresh_token: answer.refresh_token,
            expires_at: now.saturating_add(lifetime),
            issued_at: now,
        })
    }

    /// Renews the token pair if amoCRM issued it more than `max_age_secs` ago, or when its issue
    /// time is not known; `Ok(true)` when it did. What a scheduler calls: a refresh token lives
    /// [`REFRESH_TOKEN_LIFETIME_SECS`] and is renewed only by using it, so an account with no
    /// calls for that long would lose its connection for good. The refresh is the ordinary
    /// single-flight one (saved before use). Long-lived tokens have nothing to renew.
    pub async fn refresh_if_older_than(&self, max_age_secs: i64) -> Result<bool, Error> {
        if let AuthConfig::LongLived { .. } = &self.inner.auth {
            return Ok(false);
        }
        // No pair yet (the account was never connected): nothing to renew, and nothing broken.
        let Some(current) = self.inner.store.load().await? else {
            return Ok(false);
        };
        let age = unix_now().saturating_sub(current.issued_at);
        if current.issued_at > 0 && age < max_age_secs {
            return Ok(false);
        }
        // Naming the current access token as stale makes the refresh ask the CRM, unless
        // another task or process renewed the pair meanwhile (then its pair is used).
        self.refresh(&current.access_token).await?;
        Ok(true)
    }

    /// Exchange an authorization code (from the OAuth redirect) for tokens, and save them in
    /// the store. Only for [`AuthConfig::OAuth`].
    pub async fn exchange_code(&self, code: &str) -> Result<OAuthTokens, Error> {
        let oauth =
            self.oauth("exchange_code needs OAuth; this account uses a long-lived token")?;
        non_empty("exchange_code", "the authorization code", code)?;
        let mut state = self.inner.refresh.lock().await;
        let body = oauth.grant("authorization_code", "code", code);
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
}
