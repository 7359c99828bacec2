//! The saved versions of a tenant's settings: who saved, when, what changed; one version as
//! text; restoring one (saved as a new version, "restored version n", so nothing is lost).

use super::{save, Head, Notice, SaveError};
use crate::state::{AppState, Tenant};
use crate::ui::page::utc_time;
use crate::ui::page::{self, render, Ctx};
use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use callbridge_core::ValidSettings;
use callbridge_store::SettingsVersion;
use std::sync::Arc;

/// How many versions the list shows.
const SHOWN: i64 = 30;

pub struct VersionLine {
    pub version: i64,
    pub when: String,
    pub author: String,
    pub summary: Vec<String>,
}

impl From<&SettingsVersion> for VersionLine {
    fn from(v: &SettingsVersion) -> Self {
        VersionLine {
            version: v.version,
            when: utc_time(v.created_at_ms, false),
            author: v.author.clone(),
            summary: v
                .summary
                .split("; ")
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
        }
    }
}

#[derive(Template)]
#[template(path = "settings/versions.html")]
pub struct VersionsPage {
    pub ctx: Ctx,
    pub head: Head,
    pub versions: Vec<VersionLine>,
    pub current: Option<i64>,
}

impl VersionsPage {
    pub fn is_current(&self, line: &VersionLine) -> bool {
        self.current == Some(line.version)
    }
}

#[derive(Template)]
#[template(path = "settings/version.html")]
pub struct VersionPage {
    pub ctx: Ctx,
    pub head: Head,
    pub line: VersionLine,
    pub text: String,
    pub is_current: bool,
}

pub async fn list(state: &AppState, ctx: Ctx, tenant: &Tenant, notice: Option<Notice>) -> Response {
    let versions = match state.store.settings_versions(&tenant.row.id, SHOWN).await {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(error = %e, "settings versions could not be read");
            let text = ctx.t.get("error.store").to_string();
            return page::message(
                ctx,
                StatusCode::SERVICE_UNAVAILABLE,
                "settings.versions.title",
                text,
            );
        }
    };
    let current = versions.first().map(|v| v.version);
    render(VersionsPage {
        head: Head::new(tenant, "versions", notice),
        versions: versions.iter().map(VersionLine::from).collect(),
        current,
        ctx,
    })
}

pub async fn show(
    State(state): State<Arc<AppState>>,
    Path((tenant_id, version)): Path<(String, String)>,
    ctx: Ctx,
) -> Response {
    let Some(tenant) = state.tenant(&tenant_id).await else {
        return page::no_tenant(ctx, &tenant_id);
    };
    let Some(stored) = find(&state, &tenant_id, &version).await else {
        let text = ctx
            .t
            .fmt("settings.versions.none", &[("version", &version)]);
        return page::message(ctx, StatusCode::NOT_FOUND, "error.not-found", text);
    };
    let newest = state
        .store
        .settings_versions(&tenant_id, 1)
        .await
        .ok()
        .and_then(|v| v.first().map(|v| v.version));
    render(VersionPage {
        head: Head::new(&tenant, "versions", None),
        line: VersionLine::from(&stored),
        text: stored.settings_toml.clone(),
        is_current: newest == Some(stored.version),
        ctx,
    })
}

async fn find(state: &AppState, tenant_id: &str, version: &str) -> Option<SettingsVersion> {
    let n = version.parse::<i64>().ok()?;
    state
        .store
        .settings_version(tenant_id, n)
        .await
        .ok()
        .flatten()
}

pub async fn restore(
    State(state): State<Arc<AppState>>,
    Path((tenant_id, version)): Path<(String, String)>,
    ctx: Ctx,
) -> Response {
    let Some(tenant) = state.tenant(&tenant_id).await else {
        return page::no_tenant(ctx, &tenant_id);
    };
    let Some(stored) = find(&state, &tenant_id, &version).await else {
        let text = ctx
            .t
            .fmt("settings.versions.none", &[("version", &version)]);
        return page::message(ctx, StatusCode::NOT_FOUND, "error.not-found", text);
    };
    // An old version is held to today's rules: one they now refuse is not brought back.
    let settings = match ValidSettings::parse_toml(&stored.settings_toml) {
        Ok(v) => v.settings().clone(),
        Err(e) => {
            let text = ctx.t.fmt(
                "settings.versions.invalid",
                &[("version", &version), ("reason", &e.to_string())],
            );
            return page::message(
                ctx,
                StatusCode::UNPROCESSABLE_ENTITY,
                "settings.versions.title",
                text,
            );
        }
    };
    let summary = format!("restored version {}", stored.version);
    match save(
        &state,
        &tenant_id,
        tenant.settings.settings(),
        settings,
        Some(summary),
    )
    .await
    {
        Ok(saved) => Redirect::to(&format!(
            "/t/{tenant_id}/settings/versions?restored={}",
            saved.unwrap_or(stored.version)
        ))
        .into_response(),
        Err(SaveError::Refused(e)) => {
            let text = ctx.t.fmt(
                "settings.versions.invalid",
                &[("version", &version), ("reason", &e.to_string())],
            );
            page::message(
                ctx,
                StatusCode::UNPROCESSABLE_ENTITY,
                "settings.versions.title",
                text,
            )
        }
        Err(SaveError::Store(reason)) => {
            tracing::error!(error = reason, "a settings version could not be restored");
            let text = ctx.t.get("error.store").to_string();
            page::message(
                ctx,
                StatusCode::SERVICE_UNAVAILABLE,
                "settings.versions.title",
                text,
            )
        }
    }
}
