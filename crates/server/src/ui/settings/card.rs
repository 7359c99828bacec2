//! The tab "Call card": the core has no card setting (C1 decides who sees a card: the CRM users
//! of mapped employees), so the tab shows how the card works and who sees it, and manages each
//! CRM user's personal links to the live card page (`ui/card_page`).
//!
//! A link is made for a CRM user an employee is mapped to (or the "Save all calls" user). Its
//! full address is shown once, in the answer to the form that made it; afterwards only its
//! first characters. Revoking deletes it, and its page and stream stop at once.

use super::crm_users::crm_users;
use super::Head;
use crate::state::{now_ms, AppState, Tenant};
use crate::tokens::{digest, random_token};
use crate::ui::page::{self, render, utc_time, Ctx};
use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::post;
use axum::{Form, Router};
use callbridge_store::{CardLink, NewCardLink};
use std::collections::BTreeSet;
use std::sync::Arc;

/// Characters of a link's token the tab shows after its creation (32 of its 256 bits).
const PREFIX_CHARS: usize = 8;

/// The tab's forms (behind the session guard, which checks their CSRF token).
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/t/{tenant}/settings/card/links", post(create_link))
        .route(
            "/t/{tenant}/settings/card/links/{id}/revoke",
            post(revoke_link),
        )
}

/// An employee and whether their CRM user sees the card.
pub struct CardRow {
    pub extension: String,
    pub name: String,
    /// The CRM user's name (or id), empty when unmapped.
    pub crm_user: String,
}

/// A CRM user who may have personal links, with theirs.
pub struct LinkRow {
    pub crm_user_id: i64,
    pub name: String,
    /// Mapped, or the "Save all calls" user: a new link may be made.
    pub may_link: bool,
    pub save_all: bool,
    pub links: Vec<LinkView>,
}

pub struct LinkView {
    pub id: i64,
    pub prefix: String,
    pub made: String,
    pub used: Option<String>,
}

/// A link just made: its full address, shown this once.
pub struct Created {
    pub user: String,
    pub url: String,
}

#[derive(Template)]
#[template(path = "settings/card.html")]
pub struct CardPage {
    pub ctx: Ctx,
    pub head: Head,
    pub rows: Vec<CardRow>,
    pub links: Vec<LinkRow>,
    pub created: Option<Created>,
    pub stream_url: String,
    pub token_api: String,
}

pub async fn show(state: &AppState, ctx: Ctx, tenant: &Tenant) -> Response {
    page_with(state, ctx, tenant, None, None).await
}

/// The CRM users who may get a link: those an employee is mapped to, and the "Save all calls"
/// user (who sees no card today, but whose page would show any that rule C1 gives them).
fn linkable(tenant: &Tenant) -> BTreeSet<i64> {
    let settings = tenant.settings.settings();
    settings
        .employees
        .iter()
        .filter_map(|e| e.crm_user_id)
        .chain(tenant.settings.fallback_user())
        .map(|u| u.get() as i64)
        .collect()
}

async fn page_with(
    state: &AppState,
    ctx: Ctx,
    tenant: &Tenant,
    created: Option<Created>,
    notice: Option<super::Notice>,
) -> Response {
    let users = crm_users(state, tenant).await;
    let user_name = |id: u64| {
        users
            .list()
            .iter()
            .find(|u| u.id == id)
            .map(|u| u.name.clone())
            .unwrap_or_else(|| ctx.t.fmt("settings.user-by-id", &[("id", &id.to_string())]))
    };
    let (employees, _) = super::employees::rows(state, tenant).await;
    let mut rows: Vec<CardRow> = employees
        .into_iter()
        .map(|e| CardRow {
            crm_user: match e.selected.parse::<u64>().ok() {
                None => String::new(),
                Some(id) => user_name(id),
            },
            extension: e.extension,
            name: e.name,
        })
        .collect();
    // Those who see the card first; the table keeps the mapping table's order within each.
    rows.sort_by_key(|r| r.crm_user.is_empty());
    let mut notice = notice;
    let stored = match state.store.card_links(&tenant.row.id).await {
        Ok(links) => links,
        Err(e) => {
            notice = Some(super::store_failed(ctx.t, &e.to_string()));
            Vec::new()
        }
    };
    let may = linkable(tenant);
    let save_all = tenant.settings.fallback_user().map(|u| u.get() as i64);
    let ids: BTreeSet<i64> = may
        .iter()
        .copied()
        .chain(stored.iter().map(|l| l.crm_user_id))
        .collect();
    let view = |l: &CardLink| LinkView {
        id: l.id,
        prefix: format!("{}…", l.token_prefix),
        made: ctx.t.fmt(
            "card-links.made",
            &[("time", &utc_time(l.created_at_ms, false))],
        ),
        used: l.last_used_ms.map(|at| {
            ctx.t
                .fmt("card-links.used", &[("time", &utc_time(at, false))])
        }),
    };
    let links = ids
        .into_iter()
        .map(|id| LinkRow {
            crm_user_id: id,
            name: user_name(id as u64),
            may_link: may.contains(&id),
            save_all: save_all == Some(id),
            links: stored
                .iter()
                .filter(|l| l.crm_user_id == id)
                .map(&view)
                .collect(),
        })
        .collect();
    let base = state.public_url.trim_end_matches('/');
    render(CardPage {
        head: Head::new(tenant, "card", notice),
        rows,
        links,
        created,
        stream_url: format!("{base}/api/v1/cards/stream?token=…"),
        token_api: format!("POST {base}/api/v1/tenants/{}/cards/tokens", tenant.row.id),
        ctx,
    })
}

#[derive(serde::Deserialize)]
pub struct CreateForm {
    #[serde(default)]
    crm_user_id: String,
}

/// `POST /t/{tenant}/settings/card/links` (`crm_user_id`): makes a link and answers the tab with
/// its full address, shown this once.
async fn create_link(
    State(state): State<Arc<AppState>>,
    Path(tenant_id): Path<String>,
    ctx: Ctx,
    Form(form): Form<CreateForm>,
) -> Response {
    let Some(tenant) = state.tenant(&tenant_id).await else {
        return page::no_tenant(ctx, &tenant_id);
    };
    let user = form.crm_user_id.trim().parse::<i64>().ok();
    let Some(user) = user.filter(|u| linkable(&tenant).contains(u)) else {
        let notice = super::Notice::error(ctx.t.get("card-links.bad-user").to_string());
        let mut response = page_with(&state, ctx, &tenant, None, Some(notice)).await;
        *response.status_mut() = StatusCode::BAD_REQUEST;
        return response;
    };
    let token = match random_token() {
        Ok(token) => token,
        Err(e) => {
            tracing::error!(error = %e, "no random token for a card link");
            let notice = super::Notice::error(ctx.t.get("error.store").to_string());
            return page_with(&state, ctx, &tenant, None, Some(notice)).await;
        }
    };
    let link = NewCardLink {
        tenant_id: &tenant_id,
        crm_user_id: user,
        token_hash: &digest(&token),
        token_prefix: &token[..PREFIX_CHARS],
        created_at_ms: now_ms(),
    };
    if let Err(e) = state.store.create_card_link(&link).await {
        let notice = super::store_failed(ctx.t, &e.to_string());
        return page_with(&state, ctx, &tenant, None, Some(notice)).await;
    }
    tracing::info!(tenant = %tenant_id, crm_user_id = user, "personal card link created");
    let users = crm_users(&state, &tenant).await;
    let name = users
        .list()
        .iter()
        .find(|u| u.id as i64 == user)
        .map(|u| u.name.clone())
        .unwrap_or_else(|| {
            ctx.t
                .fmt("settings.user-by-id", &[("id", &user.to_string())])
        });
    let created = Created {
        url: format!("{}/card/{token}", state.public_url.trim_end_matches('/')),
        user: name,
    };
    page_with(&state, ctx, &tenant, Some(created), None).await
}

/// `POST /t/{tenant}/settings/card/links/{id}/revoke`: deletes the link; its page and stream
/// stop at once (this instance's streams are told, others check within seconds).
async fn revoke_link(
    State(state): State<Arc<AppState>>,
    Path((tenant_id, id)): Path<(String, String)>,
    ctx: Ctx,
) -> Response {
    let Some(tenant) = state.tenant(&tenant_id).await else {
        return page::no_tenant(ctx, &tenant_id);
    };
    let revoked = match id.parse::<i64>() {
        Ok(id) => state.store.revoke_card_link(&tenant_id, id).await,
        Err(_) => Ok(false),
    };
    match revoked {
        Ok(true) => {
            state.card_pages.revoked();
            tracing::info!(tenant = %tenant_id, link = %id, "personal card link revoked");
            Redirect::to(&format!("/t/{tenant_id}/settings/card")).into_response()
        }
        Ok(false) => {
            let notice = super::Notice::error(ctx.t.get("card-links.no-such").to_string());
            let mut response = page_with(&state, ctx, &tenant, None, Some(notice)).await;
            *response.status_mut() = StatusCode::NOT_FOUND;
            response
        }
        Err(e) => {
            let notice = super::store_failed(ctx.t, &e.to_string());
            page_with(&state, ctx, &tenant, None, Some(notice)).await
        }
    }
}
