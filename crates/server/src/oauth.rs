//! Connecting a tenant to amoCRM with OAuth: the admin opens
//! `/api/v1/tenants/{id}/amocrm/authorize`, amoCRM asks the account's admin for consent and
//! sends the browser back to `/amocrm/oauth/callback?code=...&state=...`, where the code is
//! exchanged for tokens (stored in `crm_tokens`, the one token store every instance uses).
//!
//! `state` carries the tenant id and a signature under the admin token, so a callback cannot be
//! forged for another tenant.

use crate::problem::Problem;
use crate::state::{now_ms, AppState};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use callbridge_amocrm::AuthConfig;
use callbridge_mango::sign::{sign, verify};
use std::collections::HashMap;
use std::sync::Arc;

const LABEL: &str = "callbridge-oauth:";

fn state_param(tenant_id: &str, secret: &str) -> String {
    format!("{tenant_id}.{}", sign(LABEL, tenant_id, secret))
}

/// Where amoCRM asks for consent: the vendor's page for hosted accounts, else `{base_url}/oauth`
/// (the sandbox, or a self-hosted stand-in).
fn consent_url(base_url: &str) -> String {
    let base = base_url.trim_end_matches('/');
    if base.ends_with(".amocrm.ru") {
        "https://www.amocrm.ru/oauth".into()
    } else if base.ends_with(".kommo.com") {
        "https://www.kommo.com/oauth".into()
    } else {
        format!("{base}/oauth")
    }
}

/// `GET /api/v1/tenants/{id}/amocrm/authorize`: redirects to amoCRM's consent page.
pub async fn authorize(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    let Some(tenant) = state.tenant(&id).await else {
        return Problem::new(
            StatusCode::NOT_FOUND,
            "Not Found",
            format!("no tenant {id:?}"),
        )
        .into_response();
    };
    let conn = match crate::crm::connection(&tenant.row.crm) {
        Ok(Some(c)) => c,
        Ok(None) => {
            return Problem::new(
                StatusCode::CONFLICT,
                "No CRM connection",
                "the tenant has no amocrm section",
            )
            .into_response()
        }
        Err(e) => {
            return Problem::new(StatusCode::CONFLICT, "Invalid CRM connection", e).into_response()
        }
    };
    let AuthConfig::OAuth { client_id, .. } = &conn.account.auth else {
        return Problem::new(
            StatusCode::CONFLICT,
            "Not an OAuth connection",
            "the tenant uses a long-lived token; OAuth needs client_id, client_secret and redirect_uri",
        )
        .into_response();
    };
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("client_id", client_id)
        .append_pair("state", &state_param(&id, &state.admin_token))
        .append_pair("mode", "post_message")
        .finish();
    let url = format!("{}?{query}", consent_url(&conn.account.base_url));
    (StatusCode::FOUND, [(header::LOCATION, url)]).into_response()
}

/// `GET /amocrm/oauth/callback?code=...&state=...`: exchanges the code and stores the tokens.
pub async fn callback(
    State(state): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let (Some(code), Some(state_value)) = (q.get("code"), q.get("state")) else {
        return Problem::new(
            StatusCode::BAD_REQUEST,
            "Bad Request",
            "code and state are required (amoCRM sends both)",
        )
        .into_response();
    };
    let Some((tenant_id, signature)) = state_value.rsplit_once('.') else {
        return Problem::new(StatusCode::BAD_REQUEST, "Bad Request", "state is malformed")
            .into_response();
    };
    if !verify(LABEL, tenant_id, &state.admin_token, signature) {
        return Problem::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "state does not match: start again from /api/v1/tenants/{id}/amocrm/authorize",
        )
        .into_response();
    }
    let Some(tenant) = state.tenant(tenant_id).await else {
        return Problem::new(
            StatusCode::NOT_FOUND,
            "Not Found",
            format!("no tenant {tenant_id:?}"),
        )
        .into_response();
    };
    let client = match crate::crm::client(&state.store, &tenant.row) {
        Ok(Some(c)) => c,
        Ok(None) => {
            return Problem::new(
                StatusCode::CONFLICT,
                "No CRM connection",
                "no amocrm section",
            )
            .into_response()
        }
        Err(e) => {
            return Problem::new(StatusCode::CONFLICT, "Invalid CRM connection", e).into_response()
        }
    };
    if let Err(e) = client.exchange_code(code).await {
        return Problem::new(
            StatusCode::BAD_GATEWAY,
            "amoCRM refused the code",
            e.to_string(),
        )
        .into_response();
    }
    // Touch the tenant so the worker restarts its delivery with the new tokens.
    let mut row = tenant.row.clone();
    row.updated_at_ms = now_ms();
    if let Err(e) = state.store.upsert_tenant(&row).await {
        return Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "Store", e.to_string())
            .into_response();
    }
    let _ = state.reload_tenants().await;
    let _ = state
        .store
        .set_crm_status(tenant_id, "ok", "authorized", now_ms())
        .await;
    axum::Json(serde_json::json!({"tenant": tenant_id, "amocrm": "connected"})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_is_bound_to_the_tenant() {
        let s = state_param("acme", "admin-secret");
        let (tenant, sig) = s.rsplit_once('.').unwrap();
        assert_eq!(tenant, "acme");
        assert!(verify(LABEL, "acme", "admin-secret", sig));
        assert!(!verify(LABEL, "other", "admin-secret", sig));
    }

    #[test]
    fn consent_page_per_host() {
        assert_eq!(
            consent_url("https://acme.amocrm.ru"),
            "https://www.amocrm.ru/oauth"
        );
        assert_eq!(
            consent_url("https://acme.kommo.com/"),
            "https://www.kommo.com/oauth"
        );
        assert_eq!(
            consent_url("http://127.0.0.1:9/"),
            "http://127.0.0.1:9/oauth"
        );
    }
}
