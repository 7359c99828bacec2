//! `/t/{tenant}/settings/{tab}`: the window "Basic integration settings".
//!
//! Four tabs (`employees`, `calls`, `speech`, `card`), each one form with its own "Save", plus
//! the saved versions (`versions`). A save reads the stored settings, changes what its form
//! holds, validates the whole with the core's rules (S1, S2, S4, M1, M3, M5) and stores it as a
//! new numbered version in one transaction; a refusal is shown next to its field and nothing is
//! stored. The page then redirects (303) back to the tab with `?saved=<version>`.

mod calls;
pub(super) mod card;
mod crm_users;
mod employees;
mod form;
mod preview;
mod speech;
mod versions;

pub use crm_users::{crm_user_names, crm_users, CrmUsers, CrmUsersCache};
pub use form::changes;
pub use preview::DEFAULT_ENTRIES as PREVIEW_ENTRIES;

use super::i18n::Catalogue;
use super::page::{self, Ctx};
use crate::state::{now_ms, AppState};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use callbridge_core::settings::{Plan, Settings};
use callbridge_core::{SettingsError, ValidSettings};
use std::collections::HashMap;
use std::sync::Arc;

/// Who a save made in this window is recorded as.
pub const AUTHOR: &str = "admin (web UI)";

/// The settings window's routes (behind the session guard).
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/t/{tenant}/settings", get(first_tab))
        .route("/t/{tenant}/settings/{tab}", get(show_tab).post(save_tab))
        .route(
            "/t/{tenant}/settings/employees/auto-match",
            post(employees::auto_match),
        )
        .route(
            "/t/{tenant}/settings/employees/apply",
            post(employees::apply),
        )
        .route(
            "/t/{tenant}/settings/versions/{version}",
            get(versions::show),
        )
        .route(
            "/t/{tenant}/settings/versions/{version}/restore",
            post(versions::restore),
        )
}

async fn first_tab(Path(tenant): Path<String>) -> Response {
    Redirect::to(&format!("/t/{tenant}/settings/employees")).into_response()
}

/// The query of a tab after a save: which version it made.
type TabQuery = Query<HashMap<String, String>>;

async fn show_tab(
    State(state): State<Arc<AppState>>,
    Path((tenant_id, tab)): Path<(String, String)>,
    Query(query): TabQuery,
    ctx: Ctx,
) -> Response {
    let Some(tenant) = state.tenant(&tenant_id).await else {
        return page::no_tenant(ctx, &tenant_id);
    };
    let notice = saved_notice(ctx.t, &query);
    match tab.as_str() {
        "employees" => employees::show(&state, ctx, &tenant, notice).await,
        "calls" => calls::show(&state, ctx, &tenant, notice).await,
        "speech" => speech::show(ctx, &tenant, notice),
        "card" => card::show(&state, ctx, &tenant).await,
        "versions" => versions::list(&state, ctx, &tenant, notice).await,
        _ => no_tab(ctx, &tab),
    }
}

async fn save_tab(
    State(state): State<Arc<AppState>>,
    Path((tenant_id, tab)): Path<(String, String)>,
    ctx: Ctx,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let Some(tenant) = state.tenant(&tenant_id).await else {
        return page::no_tenant(ctx, &tenant_id);
    };
    match tab.as_str() {
        "employees" => employees::save_form(&state, ctx, &tenant, &fields).await,
        "calls" => calls::save_form(&state, ctx, &tenant, &fields).await,
        "speech" => speech::save_form(&state, ctx, &tenant, &fields).await,
        _ => no_tab(ctx, &tab),
    }
}

fn no_tab(ctx: Ctx, tab: &str) -> Response {
    let text = ctx.t.fmt("settings.no-tab", &[("tab", tab)]);
    page::message(ctx, StatusCode::NOT_FOUND, "error.not-found", text)
}

/// A line above a tab's form.
#[derive(Debug, Clone)]
pub struct Notice {
    /// `ok`, `warn`, `error` or `info` (the stylesheet's `.notice-*`).
    pub kind: &'static str,
    pub text: String,
}

impl Notice {
    pub fn error(text: String) -> Notice {
        Notice {
            kind: "error",
            text,
        }
    }
}

fn saved_notice(t: &Catalogue, query: &HashMap<String, String>) -> Option<Notice> {
    if let Some(version) = query.get("saved").and_then(|v| v.parse::<i64>().ok()) {
        return Some(Notice {
            kind: "ok",
            text: t.fmt("settings.saved", &[("version", &version.to_string())]),
        });
    }
    if query.contains_key("unchanged") {
        return Some(Notice {
            kind: "info",
            text: t.get("settings.unchanged").to_string(),
        });
    }
    if let Some(version) = query.get("restored").and_then(|v| v.parse::<i64>().ok()) {
        return Some(Notice {
            kind: "ok",
            text: t.fmt(
                "settings.versions.restored",
                &[("version", &version.to_string())],
            ),
        });
    }
    None
}

/// What every tab's frame shows: the tenant, the current tab, the package, a notice.
pub struct Head {
    pub tenant: String,
    pub tab: &'static str,
    pub extended: bool,
    pub notice: Option<Notice>,
}

impl Head {
    pub fn new(tenant: &crate::state::Tenant, tab: &'static str, notice: Option<Notice>) -> Head {
        Head {
            tenant: tenant.row.id.clone(),
            tab,
            extended: tenant.settings.settings().plan == Plan::Extended,
            notice,
        }
    }

    /// `aria-current="page"` for the current tab's link.
    pub fn current(&self, tab: &str) -> &'static str {
        if self.tab == tab {
            " aria-current=\"page\""
        } else {
            ""
        }
    }
}

/// Why a save did not happen.
pub enum SaveError {
    /// The core's rules refused the settings (the key at fault, the rule, its words).
    Refused(SettingsError),
    /// The database did not take it.
    Store(String),
}

/// Validates `new` and stores it as a new version when it differs from `old`; `Ok(None)` when
/// nothing changed (no version is made).
pub async fn save(
    state: &AppState,
    tenant_id: &str,
    old: &Settings,
    new: Settings,
    summary: Option<String>,
) -> Result<Option<i64>, SaveError> {
    let valid = ValidSettings::new(new).map_err(SaveError::Refused)?;
    let new = valid.settings();
    if new == old && summary.is_none() {
        return Ok(None);
    }
    let text = toml::to_string(new).map_err(|e| SaveError::Store(e.to_string()))?;
    // The text must read back as what was validated (the processor reads it at every reload).
    ValidSettings::parse_toml(&text).map_err(SaveError::Refused)?;
    let summary = summary.unwrap_or_else(|| form::changes(old, new).join("; "));
    let version = state
        .store
        .save_tenant_settings(tenant_id, &text, AUTHOR, &summary, now_ms())
        .await
        .map_err(|e| SaveError::Store(e.to_string()))?
        .ok_or_else(|| SaveError::Store(format!("tenant {tenant_id} no longer exists")))?;
    if let Err(e) = state.reload_tenant(tenant_id).await {
        tracing::error!(error = %e, "the tenant could not be reloaded after a settings save");
    }
    tracing::info!(
        tenant = tenant_id,
        version,
        "settings saved from the web UI"
    );
    Ok(Some(version))
}

/// Where a tab goes after a save.
pub fn after_save(tenant: &str, tab: &str, version: Option<i64>) -> Response {
    let query = match version {
        Some(v) => format!("saved={v}"),
        None => "unchanged=1".to_string(),
    };
    Redirect::to(&format!("/t/{tenant}/settings/{tab}?{query}")).into_response()
}

/// The words for a refusal of the core's rules, in the page's language.
pub fn refusal_reason(t: &Catalogue, e: &SettingsError) -> String {
    match e {
        SettingsError::Syntax { .. } => {
            t.fmt("settings.error.syntax", &[("reason", &e.to_string())])
        }
        SettingsError::Rule { key, message, rule } => match *rule {
            "S2" => t.get("settings.error.extended-only").to_string(),
            "S1" => t.get("settings.error.save-all-needs-user").to_string(),
            "M1" | "M3" => t.get("settings.error.needs-user").to_string(),
            "M5" if key.ends_with("due_minutes") => t.get("settings.error.due-minutes").to_string(),
            "M5" => t.get("settings.error.evening-hour").to_string(),
            "S0" => t.get("settings.error.utc-offset").to_string(),
            _ => t.fmt(
                "settings.error.rule",
                &[("rule", rule), ("reason", message)],
            ),
        },
    }
}

/// A refusal the store gave: a notice (the form keeps what was typed).
pub fn store_failed(t: &Catalogue, reason: &str) -> Notice {
    tracing::error!(error = reason, "settings could not be saved");
    Notice::error(t.get("error.store").to_string())
}
