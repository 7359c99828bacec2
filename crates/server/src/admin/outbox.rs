//! `/api/v1/tenants/{id}/outbox`: CRM work items by state, and sending parked ones again.

use super::{malformed_body, no_tenant, store_error};
use crate::problem::Problem;
use crate::state::{now_ms, AppState};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use std::sync::Arc;

#[derive(Deserialize)]
pub struct OutboxQuery {
    state: Option<String>,
    limit: Option<i64>,
}

/// `GET /api/v1/tenants/{id}/outbox?state=parked`: CRM work items of a state (default parked),
/// with the CRM's words for each refusal.
pub async fn list_outbox(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(q): Query<OutboxQuery>,
) -> Response {
    let wanted = q.state.unwrap_or_else(|| "parked".into());
    if !["pending", "done", "parked"].contains(&wanted.as_str()) {
        return Problem::new(
            StatusCode::BAD_REQUEST,
            "Bad Request",
            format!("state: expected pending, done or parked, got {wanted:?}"),
        )
        .into_response();
    }
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    match state.store.tenant(&id).await {
        Ok(Some(_)) => {}
        Ok(None) => return no_tenant(&id).into_response(),
        Err(e) => return store_error(e),
    }
    match state.store.outbox_items_in_state(&id, &wanted, limit).await {
        Ok(items) => Json(serde_json::json!({
            "tenant": id,
            "state": wanted,
            "items": items.iter().map(|i| serde_json::json!({
                "item_key": i.item_key,
                "entry_id": i.entry_id,
                "kind": i.kind,
                "attempts": i.attempts,
                "last_error": i.last_error,
                "crm_response": i.crm_response,
                "payload": i.payload,
                "created_at_ms": i.created_at_ms,
                "done_at_ms": i.done_at_ms,
            })).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(e) => store_error(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryBody {
    item_key: Option<String>,
    #[serde(default)]
    all_parked: bool,
}

/// `POST /api/v1/tenants/{id}/outbox/retry` with `{"item_key": "..."}` or `{"all_parked": true}`:
/// sends parked items again.
pub async fn retry_outbox(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Result<Json<RetryBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => return malformed_body(e),
    };
    let keys: Vec<String> = match (body.item_key, body.all_parked) {
        (Some(key), false) => vec![key],
        (None, true) => match state
            .store
            .outbox_items_in_state(&id, "parked", 10_000)
            .await
        {
            Ok(items) => items.into_iter().map(|i| i.item_key).collect(),
            Err(e) => return store_error(e),
        },
        _ => {
            return Problem::new(
                StatusCode::BAD_REQUEST,
                "Bad Request",
                "give either item_key or all_parked: true",
            )
            .into_response()
        }
    };
    let mut retried = Vec::new();
    for key in &keys {
        match state.store.unpark_item(&id, key, now_ms()).await {
            Ok(true) => retried.push(key.clone()),
            Ok(false) => {}
            Err(e) => return store_error(e),
        }
    }
    if retried.is_empty() && !keys.is_empty() {
        return Problem::new(
            StatusCode::NOT_FOUND,
            "Not Found",
            format!("no parked item {:?} for tenant {id:?}", keys[0]),
        )
        .into_response();
    }
    Json(serde_json::json!({"retried": retried})).into_response()
}
