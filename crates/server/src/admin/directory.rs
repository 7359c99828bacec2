//! `/api/v1/tenants/{id}/directory`: the PBX's staff with their CRM mapping.

use crate::error::AdminError;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::Json;
use std::sync::Arc;

/// `GET /api/v1/tenants/{id}/directory`: the PBX's employees and groups as last loaded, each
/// employee with the CRM user the mapping table gives them (null: unmapped).
pub async fn get_directory(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, AdminError> {
    let Some(tenant) = state.tenant(&id).await else {
        return Err(AdminError::NoTenant(id));
    };
    let directory = state
        .directories
        .read()
        .await
        .get(&id)
        .cloned()
        .unwrap_or_default();
    let employees: Vec<serde_json::Value> = directory
        .users
        .iter()
        .map(|u| {
            let crm = u
                .extension
                .as_deref()
                .and_then(|e| tenant.settings.crm_user_of(e));
            serde_json::json!({"user": u, "crm_user_id": crm, "mapped": crm.is_some()})
        })
        .collect();
    Ok(Json(serde_json::json!({
        "tenant": id,
        "refreshed_at_ms": directory.refreshed_at_ms,
        "error": directory.error,
        "employees": employees,
        "groups": directory.groups,
    })))
}
