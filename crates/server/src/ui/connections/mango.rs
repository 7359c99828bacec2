//! The Mango Office block: the API key and salt, the webhook URL, the connection test, and what
//! was last received or refused.

use super::{render_with, Notice};
use crate::config::{validate_mango_salt, InvalidSalt, MANGO_SALT_MAX_CHARS, MANGO_SALT_MIN_CHARS};
use crate::state::{mask, AppState, Tenant};
use crate::ui::page::utc_time;
use crate::ui::page::{no_tenant, Ctx};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use callbridge_mango::api::ApiError;
use callbridge_store::TenantRow;
use std::collections::HashMap;
use std::sync::Arc;

/// At most one connection test per tenant in this many milliseconds: each test is a signed
/// request to Mango, which blocks a key that sends invalid requests too often.
pub const TEST_EVERY_MS: i64 = 10_000;
/// How many employees' names a successful test shows.
const NAMES_SHOWN: usize = 5;
/// Mango's API keys are short tokens; anything longer is a paste gone wrong.
const KEY_MAX_CHARS: usize = 128;

/// The Mango block as stored.
pub struct MangoView {
    pub api_key: String,
    /// The salt masked (never more than its last two characters).
    pub salt_shown: String,
    /// What to paste into Mango's "API connection" page.
    pub webhook_url: String,
    pub last_received: Option<Received>,
    pub refusal: Option<RefusalView>,
    /// The store could not be read: the facts above are unknown, not absent.
    pub store_error: bool,
}

/// The newest stored event.
pub struct Received {
    pub time: String,
    pub kind: String,
}

/// Webhooks refused since the last accepted one.
pub struct RefusalView {
    pub time: String,
    pub reason: String,
    /// What exactly was wrong with the body, when the refusal says.
    pub detail: Option<String>,
    pub count: String,
}

/// The form to change the key and the salt, as given (never the salt itself).
pub struct MangoForm {
    pub key: String,
    pub key_error: Option<String>,
    pub salt_error: Option<String>,
}

impl MangoForm {
    pub fn from_row(row: &TenantRow) -> MangoForm {
        MangoForm {
            key: row.mango_api_key.clone(),
            key_error: None,
            salt_error: None,
        }
    }
}

/// The answer of a connection test.
pub struct TestOutcome {
    pub ok: bool,
    pub text: String,
    /// The first employees' names (a successful test).
    pub names: Vec<String>,
    /// Mango's or the network's own words, for whoever looks further.
    pub detail: Option<String>,
}

pub async fn view(state: &AppState, ctx: &Ctx, tenant: &Tenant) -> MangoView {
    let id = &tenant.row.id;
    let base = state.public_url.trim_end_matches('/');
    let received = state.store.last_received_event(id).await;
    let refusal = state.store.webhook_refusal(id).await;
    let store_error = received.is_err() || refusal.is_err();
    let received = received.ok().flatten();
    let received_at = received.as_ref().map_or(i64::MIN, |r| r.received_at_ms);
    // Only refusals after the newest accepted event are news: older ones were followed by
    // webhooks that worked.
    let refusal = refusal
        .ok()
        .flatten()
        .filter(|r| r.refused_at_ms > received_at)
        .map(|r| {
            let (code, detail) = match r.reason.split_once(": ") {
                Some((code, detail)) => (code.to_string(), Some(detail.to_string())),
                None => (r.reason.clone(), None),
            };
            RefusalView {
                time: utc_time(r.refused_at_ms, true),
                reason: refusal_words(ctx, &code),
                detail,
                count: r.count_since_accepted.to_string(),
            }
        });
    MangoView {
        api_key: tenant.row.mango_api_key.clone(),
        salt_shown: mask(&tenant.row.mango_api_salt),
        webhook_url: format!("{base}/mango/{id}/"),
        last_received: received.map(|r| Received {
            time: utc_time(r.received_at_ms, true),
            kind: kind_words(ctx, &r.path),
        }),
        refusal,
        store_error,
    }
}

/// A refusal's code in words.
fn refusal_words(ctx: &Ctx, code: &str) -> String {
    let t = ctx.t;
    match code {
        "unknown_key" => t.get("connections.refused.unknown-key"),
        "bad_signature" => t.get("connections.refused.bad-signature"),
        "malformed" => t.get("connections.refused.malformed"),
        "content_type" => t.get("connections.refused.content-type"),
        "implausible" => t.get("connections.refused.implausible"),
        other => other,
    }
    .to_string()
}

/// An event's kind in words, from the path Mango posted it to.
fn kind_words(ctx: &Ctx, path: &str) -> String {
    use callbridge_mango::webhook as w;
    let t = ctx.t;
    match path {
        w::PATH_CALL => t.get("connections.kind.call"),
        w::PATH_SUMMARY => t.get("connections.kind.summary"),
        w::PATH_RECORDING => t.get("connections.kind.recording"),
        w::PATH_RECORD_ADDED => t.get("connections.kind.record-added"),
        w::PATH_RECORD_TAGGED => t.get("connections.kind.record-tagged"),
        other => other,
    }
    .to_string()
}

fn salt_error(ctx: &Ctx, e: InvalidSalt) -> String {
    let min = MANGO_SALT_MIN_CHARS.to_string();
    let max = MANGO_SALT_MAX_CHARS.to_string();
    match e {
        InvalidSalt::TooShort(n) => ctx.t.fmt(
            "connections.mango.salt-too-short",
            &[("min", &min), ("given", &n.to_string())],
        ),
        InvalidSalt::TooLong(n) => ctx.t.fmt(
            "connections.mango.salt-too-long",
            &[("max", &max), ("given", &n.to_string())],
        ),
        InvalidSalt::Whitespace => ctx.t.get("connections.mango.salt-spaces").to_string(),
    }
}

/// `POST /t/{tenant}/connections/mango`: a new key and/or salt (an empty salt keeps the
/// stored one). Both are checked before anything is stored, and stored together.
pub async fn save(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    ctx: Ctx,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let Some(tenant) = state.tenant(&id).await else {
        return no_tenant(ctx, &id);
    };
    let key = form
        .get("mango_api_key")
        .map(|k| k.trim().to_string())
        .unwrap_or_default();
    let salt = form.get("mango_api_salt").cloned().unwrap_or_default();
    let mut given = MangoForm {
        key: key.clone(),
        key_error: None,
        salt_error: None,
    };
    if key.is_empty() {
        given.key_error = Some(ctx.t.get("connections.mango.key-required").to_string());
    } else if key.chars().any(|c| c.is_whitespace() || c.is_control())
        || key.chars().count() > KEY_MAX_CHARS
    {
        given.key_error = Some(ctx.t.fmt(
            "connections.mango.key-invalid",
            &[("max", &KEY_MAX_CHARS.to_string())],
        ));
    } else {
        let in_use = state
            .tenants
            .read()
            .await
            .values()
            .any(|t| t.row.id != id && t.row.mango_api_key == key);
        if in_use {
            given.key_error = Some(ctx.t.get("connections.mango.key-in-use").to_string());
        }
    }
    if !salt.is_empty() {
        if let Err(e) = validate_mango_salt(&salt) {
            given.salt_error = Some(salt_error(&ctx, e));
        }
    }
    if given.key_error.is_some() || given.salt_error.is_some() {
        return refused(&state, ctx, &tenant, given).await;
    }
    // The newest stored row, so a settings save made meanwhile is kept.
    let mut row = match state.store.tenant(&id).await {
        Ok(Some(row)) => row,
        Ok(None) => return no_tenant(ctx, &id),
        Err(e) => return store_failed(&state, ctx, &tenant, e).await,
    };
    row.mango_api_key = key;
    if !salt.is_empty() {
        row.mango_api_salt = salt;
    }
    row.updated_at_ms = crate::state::now_ms();
    if let Err(e) = state.store.upsert_tenant(&row).await {
        let text = e.to_string();
        if text.contains("UNIQUE") || text.contains("unique") {
            given.key_error = Some(ctx.t.get("connections.mango.key-in-use").to_string());
            return refused(&state, ctx, &tenant, given).await;
        }
        return store_failed(&state, ctx, &tenant, e).await;
    }
    if let Err(e) = state.reload_tenant(&id).await {
        tracing::error!(tenant = %id, error = %e, "tenant not reloaded after a Mango key change");
    }
    tracing::info!(tenant = %id, "Mango API key or salt changed in the web UI");
    Redirect::to(&format!("/t/{id}/connections?saved=mango")).into_response()
}

async fn refused(state: &Arc<AppState>, ctx: Ctx, tenant: &Tenant, form: MangoForm) -> Response {
    let notice = Some(Notice {
        kind: "error",
        text: ctx.t.get("connections.not-saved").to_string(),
    });
    render_with(
        state,
        ctx,
        tenant,
        super::Answer {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            mango_form: Some(form),
            notice,
            ..Default::default()
        },
    )
    .await
}

pub(super) async fn store_failed(
    state: &Arc<AppState>,
    ctx: Ctx,
    tenant: &Tenant,
    e: callbridge_store::StoreError,
) -> Response {
    tracing::error!(tenant = %tenant.row.id, error = %e, "connections: the store failed");
    let notice = Some(Notice {
        kind: "error",
        text: ctx.t.get("error.store").to_string(),
    });
    render_with(
        state,
        ctx,
        tenant,
        super::Answer {
            status: StatusCode::SERVICE_UNAVAILABLE,
            notice,
            ..Default::default()
        },
    )
    .await
}

/// `POST /t/{tenant}/connections/mango/test`: loads the employees through the VPBX API with
/// the stored key and salt, and shows how it went.
pub async fn test(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    ctx: Ctx,
) -> Response {
    let Some(tenant) = state.tenant(&id).await else {
        return no_tenant(ctx, &id);
    };
    let outcome = match state.connections.test_turn(&id, crate::state::now_ms()) {
        Err(seconds) => TestOutcome {
            ok: false,
            text: ctx.t.fmt(
                "connections.test.wait",
                &[("seconds", &seconds.to_string())],
            ),
            names: Vec::new(),
            detail: None,
        },
        Ok(()) => run_test(&state, &ctx, &tenant).await,
    };
    render_with(
        &state,
        ctx,
        &tenant,
        super::Answer {
            status: StatusCode::OK,
            test: Some(outcome),
            ..Default::default()
        },
    )
    .await
}

async fn run_test(state: &AppState, ctx: &Ctx, tenant: &Tenant) -> TestOutcome {
    // A client of its own (a test answers at once, not after the directory's spacing), on the
    // shared HTTP client.
    let loaded = match state.vpbx_clients.one_off(
        &state.mango_api_url,
        &tenant.row.mango_api_key,
        &tenant.row.mango_api_salt,
    ) {
        Ok(client) => client.users().await,
        Err(e) => Err(e),
    };
    match loaded {
        Ok(users) => {
            let names: Vec<String> = users
                .iter()
                .map(|u| u.name.trim())
                .filter(|n| !n.is_empty())
                .take(NAMES_SHOWN)
                .map(str::to_string)
                .collect();
            TestOutcome {
                ok: true,
                text: ctx.t.fmt(
                    "connections.test.ok",
                    &[("count", &users.len().to_string())],
                ),
                names,
                detail: None,
            }
        }
        Err(e) => {
            let words = match &e {
                ApiError::BadCredentials { .. } => ctx.t.get("connections.test.bad-credentials"),
                ApiError::Blocked { .. } => ctx.t.get("connections.test.blocked"),
                ApiError::RateLimited { .. } => ctx.t.get("connections.test.rate-limited"),
                ApiError::Transport { .. } => ctx.t.get("connections.test.unreachable"),
                ApiError::Config(_) => ctx.t.get("connections.test.config"),
                // The statistics' own failures cannot come from the users request tested here.
                ApiError::Http { .. }
                | ApiError::Refused { .. }
                | ApiError::Malformed { .. }
                | ApiError::StatsNotReady { .. }
                | ApiError::StatsKeyExpired => ctx.t.get("connections.test.refused"),
            };
            tracing::info!(tenant = %tenant.row.id, error = %e, "Mango connection test failed");
            TestOutcome {
                ok: false,
                text: words.to_string(),
                names: Vec::new(),
                detail: Some(e.to_string()),
            }
        }
    }
}
