//! `/api/v1/tenants` and `/api/v1/tenants/{id}`: a tenant's Mango keys, settings and CRM
//! connection (secrets never shown back), with counts of what is kept for it.

use crate::config::validate_mango_salt;
use crate::error::AdminError;
use crate::state::{mask, now_ms, redact_crm, AppState};
use crate::tenant_id::TenantId;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use callbridge_core::ValidSettings;
use callbridge_store::TenantRow;
use serde::Deserialize;
use std::sync::Arc;

fn tenant_json(state: &AppState, row: &TenantRow) -> serde_json::Value {
    serde_json::json!({
        "id": row.id,
        "mango_api_key": mask(&row.mango_api_key),
        "mango_api_salt": "***",
        "settings_toml": row.settings_toml,
        "amocrm": redact_crm(&row.crm),
        "webhook_url": format!("{}/mango/{}/", state.public_url.trim_end_matches('/'), row.id),
        "updated_at_ms": row.updated_at_ms,
    })
}

pub async fn list_tenants(
    State(state): State<Arc<AppState>>,
) -> Result<Json<serde_json::Value>, AdminError> {
    let rows = state.store.tenants().await?;
    Ok(Json(serde_json::json!({
        "tenants": rows.iter().map(|r| tenant_json(&state, r)).collect::<Vec<_>>()
    })))
}

pub async fn get_tenant(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, AdminError> {
    let row = state
        .store
        .tenant(&id)
        .await?
        .ok_or_else(|| AdminError::NoTenant(id.clone()))?;
    let mut v = tenant_json(&state, &row);
    v["events"] = state.store.count_events(&id).await?.into();
    v["entries"] = state.store.count_entries(&id).await?.into();
    v["outbox"] = serde_json::json!(state.store.outbox_counts(&id).await?);
    v["crm_status"] = serde_json::json!(state.store.crm_status(&id).await?);
    v["crm_account"] = crm_account_json(&state, &id).await;
    Ok(Json(v))
}

/// The CRM account the tenant is connected to and the other tenants connected to it (they share
/// its limit of 7 requests a second and its delivery lease); null without a CRM.
async fn crm_account_json(state: &AppState, id: &str) -> serde_json::Value {
    let tenants = state.tenants.read().await;
    let Some(tenant) = tenants.get(id) else {
        return serde_json::Value::Null;
    };
    match crate::crm_clients::account_of(tenant) {
        Some(origin) => serde_json::json!({
            "origin": origin,
            "shared_with": crate::crm_clients::sharing_account(tenant, tenants.values()),
        }),
        None => serde_json::Value::Null,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantBody {
    mango_api_key: Option<String>,
    mango_api_salt: Option<String>,
    settings_toml: Option<String>,
    amocrm: Option<serde_json::Value>,
}

/// A field given in the request, else the stored one; required either way.
fn given_or_kept(
    given: Option<String>,
    kept: Option<&str>,
    field: &'static str,
) -> Result<String, AdminError> {
    match given.or(kept.map(str::to_string)) {
        Some(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(AdminError::Required(field)),
    }
}

/// Creates or changes a tenant. Absent fields keep their stored value; the settings are
/// validated before anything is stored (S1, S2, S4 errors name the key).
pub async fn put_tenant(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Result<Json<TenantBody>, JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), AdminError> {
    let Json(body) = body?;
    let id = TenantId::parse(&id)?;
    let existing = state.store.tenant(&id).await?;
    let key = given_or_kept(
        body.mango_api_key,
        existing.as_ref().map(|t| t.mango_api_key.as_str()),
        "mango_api_key",
    )?;
    // A new salt is held to Mango's length; a stored one is kept as it is.
    if let Some(given) = &body.mango_api_salt {
        validate_mango_salt(given)?;
    }
    let salt = given_or_kept(
        body.mango_api_salt,
        existing.as_ref().map(|t| t.mango_api_salt.as_str()),
        "mango_api_salt",
    )?;
    let settings_toml = body
        .settings_toml
        .or(existing.as_ref().map(|t| t.settings_toml.clone()))
        .unwrap_or_default();
    ValidSettings::parse_toml(&settings_toml).map_err(AdminError::InvalidSettings)?;
    let crm = body
        .amocrm
        .or(existing.as_ref().map(|t| t.crm.clone()))
        .unwrap_or(serde_json::Value::Null);
    crate::crm::checked_connection(&crm, state.allow_insecure_crm_hosts)
        .map_err(AdminError::InvalidCrmConnection)?;
    // Before the row names the new address: the worker restarted for it must find no tokens.
    crate::crm::forget_tokens_if_moved(&state.store, &id, existing.as_ref().map(|t| &t.crm), &crm)
        .await?;
    let row = TenantRow {
        id: id.to_string(),
        mango_api_key: key,
        mango_api_salt: salt,
        settings_toml,
        crm,
        updated_at_ms: now_ms(),
    };
    state.store.upsert_tenant(&row).await.map_err(|e| {
        let text = e.to_string();
        if text.contains("UNIQUE") || text.contains("unique") {
            AdminError::KeyInUse
        } else {
            e.into()
        }
    })?;
    record_settings_version(
        &state,
        &row.id,
        existing
            .as_ref()
            .map(|t| t.settings_toml.as_str())
            .unwrap_or(""),
        &row.settings_toml,
    )
    .await;
    state.reload_tenant(&row.id).await?;
    let status = if existing.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(tenant_json(&state, &row))))
}

/// Records a change of a tenant's settings made through this API as a settings version (author
/// "admin API"), so the settings window's history shows every change, whoever made it. The row
/// already holds the text; a failure to record is logged, the change itself stands.
async fn record_settings_version(state: &AppState, id: &str, old: &str, new: &str) {
    if old == new {
        return;
    }
    let summary = match (
        ValidSettings::parse_toml(old),
        ValidSettings::parse_toml(new),
    ) {
        (Ok(a), Ok(b)) => crate::ui::settings::changes(a.settings(), b.settings()).join("; "),
        _ => "settings replaced".to_string(),
    };
    if let Err(e) = state
        .store
        .save_tenant_settings(id, new, "admin API", &summary, now_ms())
        .await
    {
        tracing::warn!(tenant = id, error = %e, "the settings version could not be recorded");
    }
}

/// `DELETE /api/v1/tenants/{id}`: the tenant and everything kept for it (events, plans, outbox,
/// OAuth tokens, CRM status, delivery lease, directory, the processor's open entries); its
/// delivery stops. A tenant created again with the id starts empty.
pub async fn delete_tenant(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<StatusCode, AdminError> {
    if state.delete_tenant(&id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AdminError::NoTenant(id))
    }
}
