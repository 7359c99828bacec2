//! `/api/v1/entries`: planned entries in the `simulate` shape with their delivery state.

use crate::error::AdminError;
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::Json;
use callbridge_store::StoredEntry;
use serde::Deserialize;
use std::sync::Arc;

#[derive(Deserialize)]
pub struct EntriesQuery {
    tenant: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

fn entry_json(e: &StoredEntry) -> serde_json::Value {
    let mut v = e.plan.clone();
    let pending = e.outbox.iter().filter(|(_, s)| s == "pending").count();
    let parked = e.outbox.iter().filter(|(_, s)| s == "parked").count();
    v["delivery"] = serde_json::json!({
        "state": if e.outbox.is_empty() { "nothing_to_deliver" } else if parked > 0 { "parked" } else if pending > 0 { "pending" } else { "delivered" },
        "items": e.outbox.iter().map(|(k, s)| serde_json::json!({"key": k, "state": s})).collect::<Vec<_>>(),
    });
    v["planned_at_ms"] = e.planned_at_ms.into();
    v
}

/// The tenant a request is about: named, or the only one there is.
async fn resolve_tenant(state: &AppState, named: Option<String>) -> Result<String, AdminError> {
    if let Some(t) = named {
        return if state.tenant(&t).await.is_some() {
            Ok(t)
        } else {
            Err(AdminError::NoTenant(t))
        };
    }
    let tenants = state.tenants.read().await;
    match tenants.len() {
        1 => Ok(tenants.keys().next().cloned().unwrap_or_default()),
        _ => Err(AdminError::TenantNotNamed),
    }
}

/// `GET /api/v1/entries?tenant=ID&limit=50&offset=0`: planned entries, newest first.
pub async fn list_entries(
    State(state): State<Arc<AppState>>,
    Query(q): Query<EntriesQuery>,
) -> Result<Json<serde_json::Value>, AdminError> {
    let tenant = resolve_tenant(&state, q.tenant).await?;
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let offset = q.offset.unwrap_or(0).max(0);
    let entries = state.store.entries(&tenant, limit, offset).await?;
    let total = state.store.count_entries(&tenant).await?;
    Ok(Json(serde_json::json!({
        "tenant": tenant,
        "total": total,
        "limit": limit,
        "offset": offset,
        "entries": entries.iter().map(entry_json).collect::<Vec<_>>(),
    })))
}

pub async fn get_entry(
    State(state): State<Arc<AppState>>,
    Path(entry_id): Path<String>,
    Query(q): Query<EntriesQuery>,
) -> Result<Json<serde_json::Value>, AdminError> {
    let tenant = resolve_tenant(&state, q.tenant).await?;
    match state.store.entry(&tenant, &entry_id).await? {
        Some(e) => Ok(Json(entry_json(&e))),
        None => Err(AdminError::NoEntry(entry_id)),
    }
}
