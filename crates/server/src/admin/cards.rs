//! Call cards: scoped card-stream tokens (`POST /api/v1/tenants/{id}/cards/tokens`) and the
//! live stream itself (`GET /api/v1/cards/stream`).

use super::{bearer, is_admin_token};
use crate::card_tokens;
use crate::error::{AdminError, AuthError};
use crate::state::{now_ms, AppState, TenantCard};
use crate::ui::card_page::contact;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use callbridge_core::cards::CardAction;
use callbridge_core::settings::CrmUserId;
use serde::Deserialize;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardTokenBody {
    crm_user_id: CrmUserId,
    ttl_seconds: Option<u64>,
}

/// `POST /api/v1/tenants/{id}/cards/tokens` with `{"crm_user_id": N, "ttl_seconds": S}`: a token
/// for the card stream that shows that CRM user's cards of this tenant only, for `S` seconds
/// (default 12 hours, at most 7 days). The token goes in the stream's URL (`?token=`), which is
/// what a browser's EventSource can send.
pub async fn mint_card_token(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Result<Json<CardTokenBody>, JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), AdminError> {
    let Json(body) = body?;
    if state.tenant(&id).await.is_none() {
        return Err(AdminError::NoTenant(id));
    }
    let ttl = body.ttl_seconds.unwrap_or(card_tokens::DEFAULT_TTL_SECONDS);
    if !(1..=card_tokens::MAX_TTL_SECONDS).contains(&ttl) {
        return Err(AdminError::TtlOutOfRange(ttl));
    }
    let scope = card_tokens::Scope {
        tenant_id: id.clone(),
        crm_user_id: body.crm_user_id,
        link_id: None,
        expires_at: now_ms() / 1000 + ttl as i64,
    };
    let token = card_tokens::mint(&state.card_token_key, &scope);
    let stream_url = format!(
        "{}/api/v1/cards/stream?token={token}",
        state.public_url.trim_end_matches('/')
    );
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({
            "tenant": id,
            "crm_user_id": scope.crm_user_id,
            "expires_at": scope.expires_at,
            "token": token,
            "stream_url": stream_url,
        })),
    ))
}

#[derive(Deserialize)]
pub struct CardsQuery {
    crm_user_id: Option<CrmUserId>,
    tenant: Option<String>,
    token: Option<String>,
}

/// `GET /api/v1/cards/stream`: Server-Sent Events, one `card` event per show or hide of a user's
/// call card. Either with a scoped token, `?token=<card token>` (that user's cards of that
/// tenant; `crm_user_id` and `tenant` may be left out), or with the admin token in the
/// `Authorization` header and `?crm_user_id=N[&tenant=ID]`. An expired token, a token for another
/// user or tenant, and the admin token in the URL are refused with 401 saying which.
///
/// A token of a personal card link (the card page's) also gets, after each card shown, a
/// `contact` event with the client's CRM contact and open leads (`ui::card_page::contact`), and
/// its stream ends as soon as the link is revoked.
pub async fn card_stream(
    State(state): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
    Query(q): Query<CardsQuery>,
) -> Result<Response, AdminError> {
    let whose = whose_cards(&state, &headers, q).await?;
    if let (Some(link), Some(tenant)) = (whose.link_id, whose.tenant.as_deref()) {
        if !state.store.card_link_live(tenant, link).await? {
            // Revoked: the same words as any token that is not valid.
            return Err(AuthError::CardTokenInvalid.into());
        }
    }
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(forward(state.clone(), state.cards.subscribe(), whose, tx));
    Ok(Sse::new(ReceiverStream::new(rx).map(Ok::<_, Infallible>))
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// Whose cards a stream shows.
struct Whose {
    user: CrmUserId,
    /// Known except for an admin stream that names none.
    tenant: Option<String>,
    /// The personal link a card page's token was issued for.
    link_id: Option<i64>,
}

/// How often a link's stream checks, besides this instance's revocations, that its link is still
/// live (a revocation made on another instance sharing the database).
const LINK_CHECK: Duration = Duration::from_secs(5);

/// Sends the stream's events until the browser goes, the service stops, or the link is revoked.
async fn forward(
    state: Arc<AppState>,
    mut cards: broadcast::Receiver<TenantCard>,
    whose: Whose,
    tx: mpsc::Sender<Event>,
) {
    let mut revocations = state.card_pages.revocations();
    let mut link_check = tokio::time::interval(LINK_CHECK);
    link_check.tick().await;
    let watch_link = whose.link_id.is_some();
    loop {
        tokio::select! {
            _ = tx.closed() => return,
            card = cards.recv() => match card {
                Ok(card) => {
                    if card.change.crm_user_id != whose.user
                        || whose.tenant.as_deref().is_some_and(|t| t != card.tenant_id)
                    {
                        continue;
                    }
                    if watch_link && card.change.action == CardAction::Show {
                        if let Some(phone) = card.change.client_phone.clone() {
                            tokio::spawn(send_contact(state.clone(), card.clone(), phone, tx.clone()));
                        }
                    }
                    let Ok(mut data) = serde_json::to_value(&card.change) else { continue };
                    data["tenant"] = card.tenant_id.into();
                    if tx.send(Event::default().event("card").data(data.to_string())).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            },
            changed = revocations.changed(), if watch_link => {
                if changed.is_err() || !link_live(&state, &whose).await {
                    return;
                }
            }
            _ = link_check.tick(), if watch_link => {
                if !link_live(&state, &whose).await {
                    return;
                }
            }
        }
    }
}

/// Whether the stream's link is still live; a store that does not answer keeps the stream (the
/// next check asks again).
async fn link_live(state: &AppState, whose: &Whose) -> bool {
    let (Some(tenant), Some(link)) = (whose.tenant.as_deref(), whose.link_id) else {
        return true;
    };
    state
        .store
        .card_link_live(tenant, link)
        .await
        .unwrap_or(true)
}

/// Looks the card's client up in the CRM and sends what it found as a `contact` event.
async fn send_contact(
    state: Arc<AppState>,
    card: TenantCard,
    phone: String,
    tx: mpsc::Sender<Event>,
) {
    let Some(tenant) = state.tenant(&card.tenant_id).await else {
        return;
    };
    let found = contact::lookup(&state, &tenant, &phone).await;
    let mut data = serde_json::to_value(&found).unwrap_or_default();
    data["entry_id"] = card.change.entry_id.into();
    data["call_id"] = card.change.call_id.into();
    data["client_phone"] = phone.into();
    let _ = tx
        .send(Event::default().event("contact").data(data.to_string()))
        .await;
}

/// The CRM user (and the tenant, when known) whose cards a stream request may see.
async fn whose_cards(
    state: &AppState,
    headers: &axum::http::HeaderMap,
    q: CardsQuery,
) -> Result<Whose, AdminError> {
    if let Some(given) = bearer(headers) {
        if !is_admin_token(state, given) {
            return Err(AuthError::AdminTokenInvalid.into());
        }
        let user = q.crm_user_id.ok_or(AdminError::CrmUserNotNamed)?;
        return Ok(Whose {
            user,
            tenant: q.tenant,
            link_id: None,
        });
    }
    let token = q
        .token
        .as_deref()
        .filter(|t| !t.is_empty())
        .ok_or(AuthError::CardTokenMissing)?;
    if is_admin_token(state, token) {
        return Err(AuthError::AdminTokenInCardUrl.into());
    }
    let scope = card_tokens::verify(&state.card_token_key, token, now_ms() / 1000)
        .map_err(AuthError::from)?;
    if q.crm_user_id.is_some_and(|u| u != scope.crm_user_id)
        || q.tenant.as_deref().is_some_and(|t| t != scope.tenant_id)
    {
        return Err(AuthError::CardTokenForOther.into());
    }
    if state.tenant(&scope.tenant_id).await.is_none() {
        return Err(AuthError::CardTokenTenantGone.into());
    }
    Ok(Whose {
        user: scope.crm_user_id,
        tenant: Some(scope.tenant_id),
        link_id: scope.link_id,
    })
}
