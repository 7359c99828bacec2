//! Call cards: scoped card-stream tokens (`POST /api/v1/tenants/{id}/cards/tokens`) and the
//! live stream itself (`GET /api/v1/cards/stream`).

use super::{bearer, is_admin_token, malformed_body, no_tenant, unauthorized};
use crate::card_tokens;
use crate::problem::Problem;
use crate::state::{now_ms, AppState};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use std::convert::Infallible;
use std::sync::Arc;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::StreamExt;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardTokenBody {
    crm_user_id: u64,
    ttl_seconds: Option<u64>,
}

/// `POST /api/v1/tenants/{id}/cards/tokens` with `{"crm_user_id": N, "ttl_seconds": S}`: a token
/// for the card stream that shows that CRM user's cards of this tenant only, for `S` seconds
/// (default 12 hours, at most 7 days). The token goes in the stream's URL (`?token=`), which is
/// what a browser's EventSource can send.
pub async fn mint_card_token(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Result<Json<CardTokenBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => return malformed_body(e),
    };
    if state.tenant(&id).await.is_none() {
        return no_tenant(&id).into_response();
    }
    let ttl = body.ttl_seconds.unwrap_or(card_tokens::DEFAULT_TTL_SECONDS);
    if !(1..=card_tokens::MAX_TTL_SECONDS).contains(&ttl) {
        return Problem::new(
            StatusCode::BAD_REQUEST,
            "Bad Request",
            format!(
                "ttl_seconds: must be between 1 and {} (7 days), got {ttl}",
                card_tokens::MAX_TTL_SECONDS
            ),
        )
        .into_response();
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
    (
        StatusCode::CREATED,
        Json(serde_json::json!({
            "tenant": id,
            "crm_user_id": scope.crm_user_id,
            "expires_at": scope.expires_at,
            "token": token,
            "stream_url": stream_url,
        })),
    )
        .into_response()
}

#[derive(Deserialize)]
pub struct CardsQuery {
    crm_user_id: Option<u64>,
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
) -> Response {
    let (user, tenant) = if let Some(given) = bearer(&headers) {
        if !is_admin_token(&state, given) {
            return unauthorized("the admin token is not valid");
        }
        let Some(user) = q.crm_user_id else {
            return Problem::new(
                StatusCode::BAD_REQUEST,
                "Bad Request",
                "crm_user_id: name the CRM user whose cards to stream (?crm_user_id=N)",
            )
            .into_response();
        };
        (user, q.tenant)
    } else {
        let Some(token) = q.token.as_deref().filter(|t| !t.is_empty()) else {
            return unauthorized(
                "a card token (?token=..., from POST /api/v1/tenants/{id}/cards/tokens) or the admin token (Authorization: Bearer ...) is required",
            );
        };
        if is_admin_token(&state, token) {
            return unauthorized(
                "the admin token is accepted in the Authorization header only, not as ?token=; use a card token in the URL",
            );
        }
        let scope = match card_tokens::verify(&state.card_token_key, token, now_ms() / 1000) {
            Ok(scope) => scope,
            Err(card_tokens::TokenError::Expired) => {
                return unauthorized("the card token has expired; ask for a new one")
            }
            Err(card_tokens::TokenError::Invalid) => {
                return unauthorized("the card token is invalid")
            }
        };
        if q.crm_user_id.is_some_and(|u| u != scope.crm_user_id)
            || q.tenant.as_deref().is_some_and(|t| t != scope.tenant_id)
        {
            return unauthorized("the card token is for another user or tenant");
        }
        if state.tenant(&scope.tenant_id).await.is_none() {
            return unauthorized("the card token is invalid: its tenant no longer exists");
        }
        (scope.crm_user_id, Some(scope.tenant_id))
    };
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
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}
