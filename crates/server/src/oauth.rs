//! Connecting a tenant to amoCRM with OAuth: the admin opens
//! `/api/v1/tenants/{id}/amocrm/authorize`, amoCRM asks the account's admin for consent and
//! sends the browser back to `/amocrm/oauth/callback?code=...&state=...`, where the code is
//! exchanged for tokens (stored in `crm_tokens`, the one token store every instance uses).
//!
//! The `state` is a random 256-bit value made for one authenticated authorize request: stored
//! (hashed) in the database with its tenant for 10 minutes, taken at most once by the callback on
//! any instance. The authorize redirect also sets an `HttpOnly; SameSite=Lax` cookie carrying a
//! nonce bound to the state: a callback that brings the cookie must bring the matching one. A
//! browser without the cookie (the admin called authorize with a script and opened the consent
//! URL in a browser) is accepted on the strength of the state alone: it is unguessable, was
//! handed only to a holder of the admin token, works once and expires. An unknown, used, expired
//! or mismatched state gets the same 403, whatever the tenant, and nothing is stored.

use crate::error::OAuthError;
use crate::state::{now_ms, AppState};
use crate::tokens::{cookie, digest, random_token};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use callbridge_amocrm::AuthConfig;
use callbridge_store::OAuthState;
use std::collections::HashMap;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// How long a consent may take, from the authorize request to the callback.
pub const STATE_TTL_MS: i64 = 10 * 60 * 1000;
/// The cookie that binds a callback to the browser that started the consent.
const NONCE_COOKIE: &str = "callbridge_oauth_nonce";
/// Where the cookie is sent back: the callback only.
const CALLBACK_PATH: &str = "/amocrm/oauth/callback";

/// Where amoCRM asks for consent: the vendor's page for hosted accounts, else `{base_url}/oauth`
/// (the sandbox, or a self-hosted stand-in).
fn consent_url(base_url: &str) -> String {
    let base = base_url.trim_end_matches('/');
    if base.ends_with(".amocrm.ru") {
        "https://www.amocrm.ru/oauth".into()
    } else if base.ends_with(".amocrm.com") {
        "https://www.amocrm.com/oauth".into()
    } else if base.ends_with(".kommo.com") {
        "https://www.kommo.com/oauth".into()
    } else {
        format!("{base}/oauth")
    }
}

/// Who started a consent, and so where the callback sends the browser afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartedFrom {
    /// The admin API: the callback answers with JSON.
    AdminApi,
    /// The web UI's Connections page: the callback goes back to it with a notice.
    Ui,
}

/// A UI-started consent's nonce begins with this. The nonce is bound to the state (its hash is
/// stored with it), so the callback can trust the mark once the cookie matched.
const UI_NONCE_PREFIX: &str = "ui-";

/// A consent ready to start: where to send the browser, and the cookie that binds the
/// callback to it.
pub struct Consent {
    pub url: String,
    pub cookie: String,
}

impl Consent {
    /// The redirect to amoCRM's consent page, setting the nonce cookie.
    pub fn redirect(self) -> Response {
        (
            StatusCode::FOUND,
            [
                (header::LOCATION, self.url),
                (header::SET_COOKIE, self.cookie),
                (header::CACHE_CONTROL, "no-store".to_string()),
            ],
        )
            .into_response()
    }
}

/// Starts a consent for tenant `id`: a fresh state stored for [`STATE_TTL_MS`], the consent
/// URL and the nonce cookie. The admin API's authorize and the UI's "Connect amoCRM" share it.
pub async fn start_consent(
    state: &AppState,
    id: &str,
    from: StartedFrom,
) -> Result<Consent, OAuthError> {
    let Some(tenant) = state.tenant(id).await else {
        return Err(OAuthError::NoTenant(id.to_string()));
    };
    let conn = crate::crm::checked_connection(&tenant.row.crm, state.allow_insecure_crm_hosts)
        .map_err(OAuthError::InvalidCrmConnection)?
        .ok_or(OAuthError::NoCrmSection)?;
    let AuthConfig::OAuth { client_id, .. } = &conn.account.auth else {
        return Err(OAuthError::NotOAuth);
    };
    let state_value = random_token().map_err(OAuthError::NoRandomness)?;
    let random_nonce = random_token().map_err(OAuthError::NoRandomness)?;
    let nonce = match from {
        StartedFrom::AdminApi => random_nonce,
        StartedFrom::Ui => format!("{UI_NONCE_PREFIX}{random_nonce}"),
    };
    let now = now_ms();
    let pending = OAuthState {
        tenant_id: id.to_string(),
        nonce_hash: digest(&nonce),
    };
    state
        .store
        .create_oauth_state(&digest(&state_value), &pending, now + STATE_TTL_MS, now)
        .await
        .map_err(OAuthError::StoreUnavailable)?;
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("client_id", client_id)
        .append_pair("state", &state_value)
        .append_pair("mode", "post_message")
        .finish();
    let url = format!("{}?{query}", consent_url(&conn.account.base_url));
    let secure = if state.public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{NONCE_COOKIE}={nonce}; Path={CALLBACK_PATH}; Max-Age={}; HttpOnly; SameSite=Lax{secure}",
        STATE_TTL_MS / 1000
    );
    Ok(Consent { url, cookie })
}

/// `GET /api/v1/tenants/{id}/amocrm/authorize` (admin only): starts a consent and redirects to
/// amoCRM's consent page.
pub async fn authorize(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, OAuthError> {
    Ok(start_consent(&state, &id, StartedFrom::AdminApi)
        .await?
        .redirect())
}

/// `GET /amocrm/oauth/callback?code=...&state=...`: exchanges the code and stores the tokens.
pub async fn callback(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, OAuthError> {
    let (Some(code), Some(state_value)) = (q.get("code"), q.get("state")) else {
        return Err(OAuthError::CodeOrStateMissing);
    };
    // Taken (and so spent) before anything else: a state works once, even if what follows fails.
    let pending = state
        .store
        .take_oauth_state(&digest(state_value), now_ms())
        .await
        .map_err(OAuthError::StoreUnavailable)?
        .ok_or(OAuthError::StateRefused)?;
    let mut from = StartedFrom::AdminApi;
    if let Some(nonce) = cookie(&headers, NONCE_COOKIE) {
        let given = digest(nonce);
        if !bool::from(given.as_bytes().ct_eq(pending.nonce_hash.as_bytes())) {
            return Err(OAuthError::StateRefused);
        }
        if nonce.starts_with(UI_NONCE_PREFIX) {
            from = StartedFrom::Ui;
        }
    }
    let tenant_id = pending.tenant_id.as_str();
    let forget =
        format!("{NONCE_COOKIE}=; Path={CALLBACK_PATH}; Max-Age=0; HttpOnly; SameSite=Lax");
    let connected = connect(&state, tenant_id, code).await;
    if from == StartedFrom::Ui {
        // Back to the page the consent was started from, which says how it went.
        let outcome = match &connected {
            Ok(()) => "connected",
            Err(e) => {
                state.connections.oauth_failed(tenant_id, e.to_string());
                "failed"
            }
        };
        let back = format!("/t/{tenant_id}/connections?oauth={outcome}");
        return Ok((
            StatusCode::SEE_OTHER,
            [
                (header::LOCATION, back),
                (header::SET_COOKIE, forget),
                (header::CACHE_CONTROL, "no-store".to_string()),
            ],
        )
            .into_response());
    }
    connected?;
    Ok((
        [(header::SET_COOKIE, forget)],
        axum::Json(serde_json::json!({"tenant": tenant_id, "amocrm": "connected"})),
    )
        .into_response())
}

/// Exchanges the consent's code for the tenant's tokens, restarts its delivery with them, and
/// reads the account's name for the Connections page.
async fn connect(state: &AppState, tenant_id: &str, code: &str) -> Result<(), OAuthError> {
    let Some(tenant) = state.tenant(tenant_id).await else {
        return Err(OAuthError::StateRefused);
    };
    // The tenant's shared client: the exchange counts in the account's limiter.
    let client = state
        .crm_client(&tenant)
        .map_err(OAuthError::InvalidCrmConnection)?
        .ok_or(OAuthError::CrmSectionGone)?;
    client
        .exchange_code(code)
        .await
        .map_err(OAuthError::CodeRefused)?;
    // Touch the tenant so the worker restarts its delivery with the new tokens.
    let mut row = tenant.row.clone();
    row.updated_at_ms = now_ms();
    state
        .store
        .upsert_tenant(&row)
        .await
        .map_err(OAuthError::StoreWrite)?;
    // Marked before the delivery restarts, so that the delivery's own word on the connection
    // (written when it starts, or when the CRM refuses it) is the last one.
    let _ = state
        .store
        .set_crm_status(tenant_id, "ok", "authorized", now_ms())
        .await;
    let _ = state.reload_tenant(tenant_id).await;
    // The account's name, through the client that holds the account's limiter for this
    // exchange; the page shows the connection without it if amoCRM does not answer.
    state
        .connections
        .read_account(tenant_id, &client, now_ms())
        .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consent_page_per_host() {
        assert_eq!(
            consent_url("https://acme.amocrm.ru"),
            "https://www.amocrm.ru/oauth"
        );
        assert_eq!(
            consent_url("https://acme.amocrm.com"),
            "https://www.amocrm.com/oauth"
        );
        assert_eq!(
            consent_url("https://acme.kommo.com/"),
            "https://www.kommo.com/oauth"
        );
        assert_eq!(
            consent_url("http://127.0.0.1:9/"),
            "http://127.0.0.1:9/oauth"
        );
    }
}
