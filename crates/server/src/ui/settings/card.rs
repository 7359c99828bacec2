//! The tab "Call card": the core has no card setting (C1 decides who sees a card: the CRM users
//! of mapped employees), so the tab shows how the card works, who sees it, and where the card
//! stream is, read-only. The employees are the mapping tab's (directory and settings).

use super::crm_users::crm_users;
use super::Head;
use crate::state::{AppState, Tenant};
use crate::ui::page::{render, Ctx};
use askama::Template;
use axum::response::Response;

/// An employee and whether their CRM user sees the card.
pub struct CardRow {
    pub extension: String,
    pub name: String,
    /// The CRM user's name (or id), empty when unmapped.
    pub crm_user: String,
}

#[derive(Template)]
#[template(path = "settings/card.html")]
pub struct CardPage {
    pub ctx: Ctx,
    pub head: Head,
    pub rows: Vec<CardRow>,
    pub stream_url: String,
    pub token_api: String,
}

pub async fn show(state: &AppState, ctx: Ctx, tenant: &Tenant) -> Response {
    let users = crm_users(state, tenant).await;
    let (employees, _) = super::employees::rows(state, tenant).await;
    let mut rows: Vec<CardRow> = employees
        .into_iter()
        .map(|e| CardRow {
            crm_user: match e.selected.parse::<u64>().ok() {
                None => String::new(),
                Some(id) => users
                    .list()
                    .iter()
                    .find(|u| u.id == id)
                    .map(|u| u.name.clone())
                    .unwrap_or_else(|| {
                        ctx.t.fmt("settings.user-by-id", &[("id", &id.to_string())])
                    }),
            },
            extension: e.extension,
            name: e.name,
        })
        .collect();
    // Those who see the card first; the table keeps the mapping table's order within each.
    rows.sort_by_key(|r| r.crm_user.is_empty());
    let base = state.public_url.trim_end_matches('/');
    render(CardPage {
        head: Head::new(tenant, "card", None),
        rows,
        stream_url: format!("{base}/api/v1/cards/stream?token=…"),
        token_api: format!("POST {base}/api/v1/tenants/{}/cards/tokens", tenant.row.id),
        ctx,
    })
}
