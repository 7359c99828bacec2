//! The tab "Call card": the core has no card setting (C1 decides who sees a card: the CRM users
//! of mapped employees), so the tab shows how the card works, who sees it, and where the card
//! stream is, read-only.

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
    let mut rows: Vec<CardRow> = tenant
        .settings
        .settings()
        .employees
        .iter()
        .map(|e| CardRow {
            extension: e.extension.clone(),
            name: e.name.clone(),
            crm_user: match e.crm_user_id {
                None => String::new(),
                Some(id) => users
                    .list()
                    .iter()
                    .find(|u| u.id == id.get())
                    .map(|u| u.name.clone())
                    .unwrap_or_else(|| {
                        ctx.t.fmt("settings.user-by-id", &[("id", &id.to_string())])
                    }),
            },
        })
        .collect();
    rows.sort_by(|a, b| {
        a.crm_user
            .is_empty()
            .cmp(&b.crm_user.is_empty())
            .then(a.extension.cmp(&b.extension))
    });
    let base = state.public_url.trim_end_matches('/');
    render(CardPage {
        head: Head::new(tenant, "card", None),
        rows,
        stream_url: format!("{base}/api/v1/cards/stream?token=…"),
        token_api: format!("POST {base}/api/v1/tenants/{}/cards/tokens", tenant.row.id),
        ctx,
    })
}
