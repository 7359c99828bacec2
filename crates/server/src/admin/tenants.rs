//! `/api/v1/tenants` and `/api/v1/tenants/{id}`: a tenant's Mango keys, settings and CRM
//! connection (secrets never shown back), with counts of what is kept for it.

use super::{malformed_body, no_tenant, store_error};
use crate::config::validate_tenant_id;
use crate::problem::Problem;
use crate::state::{mask, now_ms, AppState};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
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

/// CRM connection settings with tokens and secrets masked.
fn redact_crm(crm: &serde_json::Value) -> serde_json::Value {
    match crm {
        serde_json::Value::Object(map) => serde_json::Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let secret = ["token", "secret", "password"]
                        .iter()
                        .any(|s| k.contains(s));
                    (
                        k.clone(),
                        if secret {
                            serde_json::Value::String(mask(v.as_str().unwrap_or("")))
                        } else {
                            v.clone()
                        },
                    )
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

pub async fn list_tenants(State(state): State<Arc<AppState>>) -> Response {
    match state.store.tenants().await {
        Ok(rows) => Json(serde_json::json!({"tenants": rows.iter().map(|r| tenant_json(&state, r)).collect::<Vec<_>>()})).into_response(),
        Err(e) => store_error(e),
    }
}

pub async fn get_tenant(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    match state.store.tenant(&id).await {
        Ok(Some(row)) => {
            let mut v = tenant_json(&state, &row);
            match (
                state.store.count_events(&id).await,
                state.store.count_entries(&id).await,
            ) {
                (Ok(events), Ok(entries)) => {
                    v["events"] = events.into();
                    v["entries"] = entries.into();
                }
                (Err(e), _) | (_, Err(e)) => return store_error(e),
            }
            match (
                state.store.outbox_counts(&id).await,
                state.store.crm_status(&id).await,
            ) {
                (Ok(counts), Ok(status)) => {
                    v["outbox"] = serde_json::json!(counts);
                    v["crm_status"] = serde_json::json!(status);
                }
                (Err(e), _) | (_, Err(e)) => return store_error(e),
            }
            Json(v).into_response()
        }
        Ok(None) => no_tenant(&id).into_response(),
        Err(e) => store_error(e),
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

/// Creates or changes a tenant. Absent fields keep their stored value; the settings are
/// validated before anything is stored (S1, S2, S4 errors name the key).
pub async fn put_tenant(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Result<Json<TenantBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => return malformed_body(e),
    };
    if let Err(m) = validate_tenant_id(&id) {
        return Problem::new(
            StatusCode::BAD_REQUEST,
            "Bad Request",
            format!("tenant id {m}"),
        )
        .into_response();
    }
    let existing = match state.store.tenant(&id).await {
        Ok(t) => t,
        Err(e) => return store_error(e),
    };
    let pick = |new: Option<String>, old: Option<&str>, field: &str| -> Result<String, Problem> {
        match new.or(old.map(str::to_string)) {
            Some(v) if !v.trim().is_empty() => Ok(v),
            _ => Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "Bad Request",
                format!("{field} is required"),
            )),
        }
    };
    let key = match pick(
        body.mango_api_key,
        existing.as_ref().map(|t| t.mango_api_key.as_str()),
        "mango_api_key",
    ) {
        Ok(v) => v,
        Err(p) => return p.into_response(),
    };
    // A new salt is held to Mango's length; a stored one is kept as it is.
    if let Some(given) = &body.mango_api_salt {
        if let Err(m) = crate::config::validate_mango_salt(given) {
            return Problem::new(
                StatusCode::BAD_REQUEST,
                "Bad Request",
                format!("mango_api_salt: {m}"),
            )
            .into_response();
        }
    }
    let salt = match pick(
        body.mango_api_salt,
        existing.as_ref().map(|t| t.mango_api_salt.as_str()),
        "mango_api_salt",
    ) {
        Ok(v) => v,
        Err(p) => return p.into_response(),
    };
    let settings_toml = body
        .settings_toml
        .or(existing.as_ref().map(|t| t.settings_toml.clone()))
        .unwrap_or_default();
    if let Err(e) = ValidSettings::parse_toml(&settings_toml) {
        return Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid settings",
            format!("settings_toml: {e}"),
        )
        .into_response();
    }
    let crm = body
        .amocrm
        .or(existing.as_ref().map(|t| t.crm.clone()))
        .unwrap_or(serde_json::Value::Null);
    if let Err(e) = crate::crm::checked_connection(&crm, state.allow_insecure_crm_hosts) {
        return Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid CRM connection",
            e,
        )
        .into_response();
    }
    // Before the row names the new address: the worker restarted for it must find no tokens.
    if let Err(e) = crate::crm::forget_tokens_if_moved(
        &state.store,
        &id,
        existing.as_ref().map(|t| &t.crm),
        &crm,
    )
    .await
    {
        return store_error(e);
    }
    let row = TenantRow {
        id: id.clone(),
        mango_api_key: key,
        mango_api_salt: salt,
        settings_toml,
        crm,
        updated_at_ms: now_ms(),
    };
    if let Err(e) = state.store.upsert_tenant(&row).await {
        return if e.to_string().contains("UNIQUE") || e.to_string().contains("unique") {
            Problem::new(
                StatusCode::CONFLICT,
                "Conflict",
                "mango_api_key is used by another tenant",
            )
            .into_response()
        } else {
            store_error(e)
        };
    }
    if let Err(e) = state.reload_tenants().await {
        return store_error(e);
    }
    let status = if existing.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    (status, Json(tenant_json(&state, &row))).into_response()
}

/// `DELETE /api/v1/tenants/{id}`: the tenant and everything kept for it (events, plans, outbox,
/// OAuth tokens, CRM status, delivery lease, directory, the processor's open entries); its
/// delivery stops. A tenant created again with the id starts empty.
pub async fn delete_tenant(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    match state.delete_tenant(&id).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => no_tenant(&id).into_response(),
        Err(e) => store_error(e),
    }
}
