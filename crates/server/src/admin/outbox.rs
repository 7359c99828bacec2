//! `/api/v1/tenants/{id}/outbox`: CRM work items by state, and sending parked ones again.

use crate::error::AdminError;
use crate::state::{now_ms, AppState};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
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
) -> Result<Json<serde_json::Value>, AdminError> {
    let wanted = q.state.unwrap_or_else(|| "parked".into());
    if !["pending", "done", "parked"].contains(&wanted.as_str()) {
        return Err(AdminError::UnknownOutboxState(wanted));
    }
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    if state.store.tenant(&id).await?.is_none() {
        return Err(AdminError::NoTenant(id));
    }
    let items = state
        .store
        .outbox_items_in_state(&id, &wanted, limit)
        .await?;
    Ok(Json(serde_json::json!({
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
    })))
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
    body: Result<Json<RetryBody>, JsonRejection>,
) -> Result<Json<serde_json::Value>, AdminError> {
    let Json(body) = body?;
    let keys: Vec<String> = match (body.item_key, body.all_parked) {
        (Some(key), false) => vec![key],
        (None, true) => state
            .store
            .outbox_items_in_state(&id, "parked", 10_000)
            .await?
            .into_iter()
            .map(|i| i.item_key)
            .collect(),
        _ => return Err(AdminError::RetryTargetNotNamed),
    };
    let mut retried = Vec::new();
    for key in &keys {
        if state.store.unpark_item(&id, key, now_ms()).await? {
            retried.push(key.clone());
        }
    }
    if !retried.is_empty() {
        state.outbox_ready.wake(&id);
    }
    if let (true, Some(first)) = (retried.is_empty(), keys.first()) {
        return Err(AdminError::NoParkedItem {
            tenant: id,
            item_key: first.clone(),
        });
    }
    Ok(Json(serde_json::json!({"retried": retried})))
}
