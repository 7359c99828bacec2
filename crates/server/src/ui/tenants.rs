//! `/tenants`: the tenants an administrator runs, each with its webhook URL and links to its
//! pages.

use super::page::{render, Ctx};
use crate::state::AppState;
use askama::Template;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use std::sync::Arc;

/// The tenants pages' routes (behind the session guard).
pub fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/tenants", get(list))
}

/// One tenant as the list shows it.
pub struct TenantLine {
    pub id: String,
    pub webhook_url: String,
    pub crm_connected: bool,
    pub employees: usize,
    pub mapped: usize,
}

#[derive(Template)]
#[template(path = "tenants.html")]
pub struct TenantsPage {
    pub ctx: Ctx,
    pub tenants: Vec<TenantLine>,
}

async fn list(State(state): State<Arc<AppState>>, ctx: Ctx) -> Response {
    let base = state.public_url.trim_end_matches('/').to_string();
    let mut tenants: Vec<TenantLine> = state
        .tenants
        .read()
        .await
        .values()
        .map(|t| {
            let employees = &t.settings.settings().employees;
            TenantLine {
                id: t.row.id.clone(),
                webhook_url: format!("{base}/mango/{}/", t.row.id),
                crm_connected: !t.row.crm.is_null(),
                employees: employees.len(),
                mapped: employees.iter().filter(|e| e.crm_user_id.is_some()).count(),
            }
        })
        .collect();
    tenants.sort_by(|a, b| a.id.cmp(&b.id));
    render(TenantsPage { ctx, tenants })
}
