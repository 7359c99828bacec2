//! Call cards: scoped card-stream tokens (`POST /api/v1/tenants/{id}/cards/tokens`) and the
//! live stream itself (`GET /api/v1/cards/stream`).

use super::{bearer, is_admin_token};
use crate::card_tokens;
use crate::error::{AdminError, AuthError};
use crate::state::{now_ms, AppState};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use callbridge_core::settings::CrmUserId;
use serde::Deserialize;
use std::convert::Infallible;
use std::sync::Arc;
use tokio_stream::wrappers::BroadcastStream;
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
pub async fn card_stream(
    State(state): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
    Query(q): Query<CardsQuery>,
) -> Result<Response, AdminError> {
    let (user, tenant) = whose_cards(&state, &headers, q).await?;
    let stream = BroadcastStream::new(state.cards.subscribe()).filter_map(move |msg| {
        let card = msg.ok()?;
        if card.change.crm_user_id != user || tenant.as_deref().is_some_and(|t| t != card.tenant_id)
        {
            return None;
        }
        let mut data = serde_json::to_value(&card.change).ok()?;
        data["tenant"] = card.tenant_id.into();
        Some(Ok::<_, Infallible>(
            Event::default().event("card").data(data.to_string()),
        ))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// The CRM user (and the tenant, when known) whose cards a stream request may see.
async fn whose_cards(
    state: &AppState,
    headers: &axum::http::HeaderMap,
    q: CardsQuery,
) -> Result<(CrmUserId, Option<String>), AdminError> {
    if let Some(given) = bearer(headers) {
        if !is_admin_token(state, given) {
            return Err(AuthError::AdminTokenInvalid.into());
        }
        let user = q.crm_user_id.ok_or(AdminError::CrmUserNotNamed)?;
        return Ok((user, q.tenant));
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
    Ok((scope.crm_user_id, Some(scope.tenant_id)))
}
