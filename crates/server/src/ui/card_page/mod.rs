//! The live call card page, `/card/<token>`: what a CRM user keeps open to see the card of the
//! call ringing on their phone (rule C1), without the admin password or token.
//!
//! - The token is a personal link made in the settings window's "Call card" tab
//!   (`settings/card.rs`); only its SHA-256 is stored (`card_links`), and revoking deletes it.
//!   An unknown and a revoked token get the same 404 page.
//! - The page's script (`static/card.js`) asks `GET /card/<token>/stream-token` for a card-stream
//!   token of an hour (`card_tokens`, naming the link), opens the stream with it, and asks again
//!   before it expires and after any stream error; a 404 there means the link was revoked.
//! - The stream (`admin/cards.rs`) checks the link on every revocation made on this instance and
//!   every few seconds (other instances), and ends when it is gone. For a link's stream it also
//!   sends the client's CRM contact and open leads after each card (`contact.rs`): the lookup
//!   never delays the card, and no endpoint answers "who is this number" to anyone holding a
//!   link.

pub mod contact;

use super::i18n::Lang;
use super::page::{render, LangChoice};
use crate::card_tokens;
use crate::state::{now_ms, AppState};
use crate::tokens::digest;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use callbridge_store::CardLink;
use std::sync::Arc;
use tokio::sync::watch;

/// How long a stream token of the page lasts; the page asks for the next one well before.
pub const STREAM_TOKEN_TTL_S: i64 = 3600;

/// What the card pages keep while running: revocations made here (each stream of a link checks
/// its link when this changes) and the contact lookups' cache.
pub struct Live {
    revocations: watch::Sender<u64>,
    pub contacts: contact::ContactCache,
}

impl Default for Live {
    fn default() -> Self {
        Live {
            revocations: watch::channel(0).0,
            contacts: Default::default(),
        }
    }
}

impl Live {
    /// Tells this instance's streams that a link was revoked.
    pub fn revoked(&self) {
        self.revocations.send_modify(|n| *n += 1);
    }

    pub fn revocations(&self) -> watch::Receiver<u64> {
        self.revocations.subscribe()
    }
}

/// The page's routes: no session (the link is the credential).
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/card/{token}", get(page))
        .route("/card/{token}/stream-token", get(stream_token))
}

#[derive(Template)]
#[template(path = "card_page.html")]
struct CardPage {
    t: &'static super::i18n::Catalogue,
    lang: Lang,
    token_url: String,
}

#[derive(Template)]
#[template(path = "card_page_gone.html")]
struct GonePage {
    t: &'static super::i18n::Catalogue,
    lang: Lang,
}

/// The live link with this token, or `None` (unknown, revoked, or its tenant gone).
async fn live_link(state: &AppState, token: &str) -> Result<Option<CardLink>, Response> {
    // Tokens are 64 hex digits: anything else is not worth a database query.
    if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    match state.store.card_link_by_hash(&digest(token)).await {
        Ok(Some(link)) if state.tenant(&link.tenant_id).await.is_some() => Ok(Some(link)),
        Ok(_) => Ok(None),
        Err(e) => {
            tracing::error!(error = %e, "card link lookup failed");
            Err((
                StatusCode::SERVICE_UNAVAILABLE,
                "the database is not answering",
            )
                .into_response())
        }
    }
}

async fn tenant_lang(state: &AppState, tenant: &str) -> Option<Lang> {
    state
        .store
        .tenant_language(tenant)
        .await
        .ok()
        .flatten()
        .and_then(|code| Lang::parse(&code))
}

/// The language of the "not valid" page, which knows no tenant: the tenants' language when they
/// share one (nothing about the token changes it), else the browser's.
async fn gone_lang(state: &AppState, browser: Lang) -> Lang {
    let langs = state.store.tenant_languages().await.unwrap_or_default();
    let mut codes = langs.iter().map(|(_, code)| code.as_str());
    match codes.next() {
        Some(first) if codes.all(|c| c == first) => Lang::parse(first).unwrap_or(browser),
        _ => browser,
    }
}

async fn gone(state: &AppState, browser: Lang) -> Response {
    let lang = gone_lang(state, browser).await;
    let mut response = render(GonePage {
        t: lang.catalogue(),
        lang,
    });
    *response.status_mut() = StatusCode::NOT_FOUND;
    response
}

/// `GET /card/<token>`: the page, or the same 404 for any token that is not a live link.
async fn page(
    State(state): State<Arc<AppState>>,
    Path(token): Path<String>,
    LangChoice(browser): LangChoice,
) -> Response {
    let link = match live_link(&state, &token).await {
        Ok(Some(link)) => link,
        Ok(None) => return gone(&state, browser).await,
        Err(response) => return response,
    };
    if let Err(e) = state.store.touch_card_link(link.id, now_ms()).await {
        tracing::warn!(error = %e, "card link use not recorded");
    }
    let lang = tenant_lang(&state, &link.tenant_id)
        .await
        .unwrap_or(browser);
    render(CardPage {
        t: lang.catalogue(),
        lang,
        token_url: format!("/card/{token}/stream-token"),
    })
}

/// `GET /card/<token>/stream-token`: `{"token", "expires_at", "stream_url"}`, a card-stream
/// token of an hour for the link's CRM user, naming the link. 404 (JSON) when the link is not
/// live.
async fn stream_token(State(state): State<Arc<AppState>>, Path(token): Path<String>) -> Response {
    let link = match live_link(&state, &token).await {
        Ok(Some(link)) => link,
        Ok(None) => {
            return (
                StatusCode::NOT_FOUND,
                Json(serde_json::json!({"error": "this card link is not valid"})),
            )
                .into_response()
        }
        Err(response) => return response,
    };
    let Some(crm_user_id) = u64::try_from(link.crm_user_id)
        .ok()
        .and_then(|id| callbridge_core::settings::CrmUserId::new(id).ok())
    else {
        tracing::error!(link = link.id, "a card link holds no valid CRM user id");
        return (StatusCode::INTERNAL_SERVER_ERROR, "malformed card link").into_response();
    };
    let now = now_ms();
    if let Err(e) = state.store.touch_card_link(link.id, now).await {
        tracing::warn!(error = %e, "card link use not recorded");
    }
    let scope = card_tokens::Scope {
        tenant_id: link.tenant_id,
        crm_user_id,
        link_id: Some(link.id),
        expires_at: now / 1000 + STREAM_TOKEN_TTL_S,
    };
    let stream_token = card_tokens::mint(&state.card_token_key, &scope);
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(serde_json::json!({
            "token": stream_token,
            "expires_at": scope.expires_at,
            "stream_url": format!("/api/v1/cards/stream?token={stream_token}"),
        })),
    )
        .into_response()
}
