//! The amoCRM block: the integration's settings, "Connect amoCRM" (the consent the admin API's
//! authorize also starts), and the connection's state with the account's name.

use super::{render_with, Notice};
use crate::oauth::{start_consent, StartedFrom};
use crate::state::{mask, now_ms, AppState, Tenant};
use crate::ui::i18n::Catalogue;
use crate::ui::page::{no_tenant, Ctx};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use callbridge_amocrm::AuthConfig;
use callbridge_store::TenantRow;
use std::collections::HashMap;
use std::sync::Arc;

/// An access token expiring sooner than this would be refreshed by the request that uses it.
const TOKEN_MARGIN_SECS: i64 = 300;

/// The connection's state as the page shows it.
pub struct CrmView {
    /// `none` (no amoCRM section), `invalid` (a section that cannot be used), `not-connected`
    /// (OAuth without tokens yet), `connected` or `broken`.
    pub state: &'static str,
    /// The state in words.
    pub state_text: String,
    /// The badge's class: `badge-ok`, `badge-warn` or `badge-error`.
    pub badge: &'static str,
    pub account_name: Option<String>,
    /// Why the account's name is not shown (amoCRM did not answer, …).
    pub account_error: Option<String>,
    /// Why the connection is broken or unusable, in words, with the CRM's own when it gave any.
    pub reason: Option<String>,
    /// The consent button's label ("Connect amoCRM", or "Reconnect" once connected or broken);
    /// `None` when the section is not an OAuth integration.
    pub connect_label: Option<String>,
    /// Connected with a long-lived token (no consent needed).
    pub long_lived: bool,
    /// The other tenants connected to the same amoCRM account (they share its limit), in
    /// words; `None` when no other tenant is.
    pub shared_with: Option<String>,
}

/// The settings form, as stored or as given (never the client secret itself).
pub struct CrmForm {
    pub base_url: String,
    pub client_id: String,
    /// The stored client secret masked; empty when none is stored.
    pub secret_shown: String,
    pub redirect_uri: String,
    /// The address amoCRM must send consents back to (this service's callback).
    pub redirect_expected: String,
    /// The stored section uses a long-lived token: saving this form switches it to OAuth.
    pub long_lived: bool,
    pub base_url_error: Option<String>,
    pub client_id_error: Option<String>,
    pub secret_error: Option<String>,
    pub redirect_error: Option<String>,
    /// A refusal that names no single field.
    pub form_error: Option<String>,
}

fn text_of(crm: &serde_json::Value, key: &str) -> String {
    crm.get(key)
        .and_then(serde_json::Value::as_str)
        .unwrap_or("")
        .to_string()
}

fn callback_url(state: &AppState) -> String {
    format!(
        "{}/amocrm/oauth/callback",
        state.public_url.trim_end_matches('/')
    )
}

impl CrmForm {
    pub fn from_row(state: &AppState, row: &TenantRow) -> CrmForm {
        let crm = &row.crm;
        let secret = text_of(crm, "client_secret");
        let redirect_expected = callback_url(state);
        let redirect_uri = match text_of(crm, "redirect_uri") {
            stored if stored.is_empty() => redirect_expected.clone(),
            stored => stored,
        };
        CrmForm {
            base_url: text_of(crm, "base_url"),
            client_id: text_of(crm, "client_id"),
            secret_shown: if secret.is_empty() {
                String::new()
            } else {
                mask(&secret)
            },
            redirect_uri,
            redirect_expected,
            long_lived: !text_of(crm, "long_lived_token").is_empty(),
            base_url_error: None,
            client_id_error: None,
            secret_error: None,
            redirect_error: None,
            form_error: None,
        }
    }

    fn has_errors(&self) -> bool {
        self.base_url_error.is_some()
            || self.client_id_error.is_some()
            || self.secret_error.is_some()
            || self.redirect_error.is_some()
            || self.form_error.is_some()
    }
}

pub async fn view(state: &AppState, ctx: &Ctx, tenant: &Tenant) -> CrmView {
    let t = ctx.t;
    let id = &tenant.row.id;
    let (mut view, connected) = state_view(state, t, tenant).await;
    let others = {
        let tenants = state.tenants.read().await;
        crate::crm_clients::sharing_account(tenant, tenants.values())
    };
    if !others.is_empty() {
        view.shared_with = Some(t.fmt(
            "connections.crm.shared",
            &[("tenants", others.join(", ").as_str())],
        ));
    }
    if let Some(Connected {
        origin,
        may_read_account,
    }) = connected
    {
        let now = now_ms();
        let seen = match state.connections.account(id, &origin, now) {
            Some(seen) => Some(seen),
            None if !may_read_account => None,
            None => match state.crm_client(tenant) {
                Ok(Some(client)) => Some(state.connections.read_account(id, &client, now).await),
                _ => None,
            },
        };
        if let Some(seen) = seen {
            view.account_name = seen.name;
            view.account_error = seen.error;
        }
    }
    if !view.long_lived && view.state != "none" && view.state != "invalid" {
        view.connect_label = Some(
            match view.state {
                "not-connected" => t.get("connections.crm.connect"),
                _ => t.get("connections.crm.reconnect"),
            }
            .to_string(),
        );
    }
    view
}

/// A working connection: where its account is, and whether its name may be read now.
pub struct Connected {
    origin: String,
    may_read_account: bool,
}

/// The connection's state from what the service knows (the settings, the stored tokens, the
/// worker's last status), without asking the CRM anything: cheap enough for every page's
/// warnings (`ui::banners`).
pub async fn state_view(
    state: &AppState,
    t: &Catalogue,
    tenant: &Tenant,
) -> (CrmView, Option<Connected>) {
    let id = &tenant.row.id;
    let mut view = CrmView {
        state: "none",
        state_text: t.get("connections.crm.state-none").to_string(),
        badge: "badge-warn",
        account_name: None,
        account_error: None,
        reason: None,
        connect_label: None,
        shared_with: None,
        long_lived: false,
    };
    let conn = match crate::crm::checked_connection(&tenant.row.crm, state.allow_insecure_crm_hosts)
    {
        Ok(Some(conn)) => conn,
        Ok(None) => return (view, None),
        Err(e) => {
            view.state = "invalid";
            view.state_text = t.get("connections.crm.state-invalid").to_string();
            view.badge = "badge-error";
            view.reason = Some(e.to_string());
            return (view, None);
        }
    };
    let oauth = matches!(conn.account.auth, AuthConfig::OAuth { .. });
    view.long_lived = !oauth;
    let status = state.store.crm_status(id).await.ok().flatten();
    let tokens = if oauth {
        state.store.load_crm_tokens(id).await.ok().flatten()
    } else {
        None
    };
    let has_tokens = !oauth || tokens.is_some();
    // The page reads the account's name only with an access token that needs no refresh: a
    // refresh here could race the delivery's own, and amoCRM's refresh tokens work once.
    let may_read_account = !oauth
        || tokens
            .as_ref()
            .and_then(|t| t.get("expires_at"))
            .and_then(serde_json::Value::as_i64)
            .is_some_and(|expires_at| expires_at > now_ms() / 1000 + TOKEN_MARGIN_SECS);
    match status {
        Some(s) if s.state == "broken" || s.state == "blocked" => {
            view.state = "broken";
            view.state_text = t.get("connections.crm.state-broken").to_string();
            view.badge = "badge-error";
            let words = if s.state == "blocked" {
                t.get("connections.crm.blocked").to_string()
            } else if s.detail.contains("refused the credentials")
                || s.detail.contains("401")
                || s.detail.contains("refresh")
            {
                t.get("connections.crm.refused").to_string()
            } else {
                t.get("connections.crm.broken").to_string()
            };
            view.reason = Some(format!("{words} ({})", s.detail));
            (view, None)
        }
        _ if !has_tokens => {
            view.state = "not-connected";
            view.state_text = t.get("connections.crm.state-not-connected").to_string();
            (view, None)
        }
        _ => {
            view.state = "connected";
            view.state_text = t.get("connections.crm.state-connected").to_string();
            view.badge = "badge-ok";
            let origin = conn.account.base_url.clone();
            (
                view,
                Some(Connected {
                    origin,
                    may_read_account,
                }),
            )
        }
    }
}

/// `POST /t/{tenant}/connections/amocrm`: the integration's settings, checked as the service
/// reads them (`crm::checked_connection`) before anything is stored. An empty secret keeps the
/// stored one; a new account address drops the old account's tokens.
pub async fn save(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    ctx: Ctx,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let Some(tenant) = state.tenant(&id).await else {
        return no_tenant(ctx, &id);
    };
    let field = |name: &str| {
        form.get(name)
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    let (base_url, client_id, secret, redirect_uri) = (
        field("base_url"),
        field("client_id"),
        field("client_secret"),
        field("redirect_uri"),
    );
    let mut given = CrmForm::from_row(&state, &tenant.row);
    let stored_secret = text_of(&tenant.row.crm, "client_secret");
    given.base_url = base_url.clone();
    given.client_id = client_id.clone();
    given.redirect_uri = redirect_uri.clone();
    let required = || ctx.t.get("connections.required").to_string();
    if base_url.is_empty() {
        given.base_url_error = Some(required());
    }
    if client_id.is_empty() {
        given.client_id_error = Some(required());
    }
    if secret.is_empty() && stored_secret.is_empty() {
        given.secret_error = Some(required());
    }
    if redirect_uri.is_empty() {
        given.redirect_error = Some(required());
    }
    // The new section: the form's four fields over what else was stored (rate, timeout); a
    // long-lived token gives way to the OAuth integration.
    let mut section = match &tenant.row.crm {
        serde_json::Value::Object(map) => map.clone(),
        _ => serde_json::Map::new(),
    };
    section.remove("long_lived_token");
    section.insert("base_url".into(), base_url.into());
    section.insert("client_id".into(), client_id.into());
    section.insert(
        "client_secret".into(),
        if secret.is_empty() {
            stored_secret
        } else {
            secret
        }
        .into(),
    );
    section.insert("redirect_uri".into(), redirect_uri.into());
    let crm = serde_json::Value::Object(section);
    if !given.has_errors() {
        if let Err(e) = crate::crm::checked_connection(&crm, state.allow_insecure_crm_hosts) {
            let text = e.to_string();
            let slot = if text.contains("base_url") {
                &mut given.base_url_error
            } else if text.contains("redirect_uri") {
                &mut given.redirect_error
            } else if text.contains("client_secret") {
                &mut given.secret_error
            } else if text.contains("client_id") {
                &mut given.client_id_error
            } else {
                &mut given.form_error
            };
            *slot = Some(text);
        }
    }
    if given.has_errors() {
        let notice = Some(Notice {
            kind: "error",
            text: ctx.t.get("connections.not-saved").to_string(),
        });
        return render_with(
            &state,
            ctx,
            &tenant,
            super::Answer {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                crm_form: Some(given),
                notice,
                ..Default::default()
            },
        )
        .await;
    }
    let mut row = match state.store.tenant(&id).await {
        Ok(Some(row)) => row,
        Ok(None) => return no_tenant(ctx, &id),
        Err(e) => return super::mango::store_failed(&state, ctx, &tenant, e).await,
    };
    // Before the row names the new address: the worker restarted for it must find no tokens.
    if let Err(e) =
        crate::crm::forget_tokens_if_moved(&state.store, &id, Some(&row.crm), &crm).await
    {
        return super::mango::store_failed(&state, ctx, &tenant, e).await;
    }
    row.crm = crm;
    row.updated_at_ms = now_ms();
    if let Err(e) = state.store.upsert_tenant(&row).await {
        return super::mango::store_failed(&state, ctx, &tenant, e).await;
    }
    state.connections.forget_account(&id);
    if let Err(e) = state.reload_tenant(&id).await {
        tracing::error!(tenant = %id, error = %e, "tenant not reloaded after an amoCRM change");
    }
    tracing::info!(tenant = %id, "amoCRM connection settings changed in the web UI");
    Redirect::to(&format!("/t/{id}/connections?saved=amocrm")).into_response()
}

/// `POST /t/{tenant}/connections/amocrm/connect`: starts amoCRM's consent (the same as the
/// admin API's authorize); the callback brings the browser back to the page.
pub async fn connect(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    ctx: Ctx,
) -> Response {
    let Some(tenant) = state.tenant(&id).await else {
        return no_tenant(ctx, &id);
    };
    match start_consent(&state, &id, StartedFrom::Ui).await {
        Ok(consent) => consent.redirect(),
        Err(e) => {
            tracing::warn!(tenant = %id, error = %e, "amoCRM consent not started");
            let notice = Some(Notice {
                kind: "error",
                text: ctx.t.fmt(
                    "connections.crm.connect-failed",
                    &[("reason", &e.to_string())],
                ),
            });
            render_with(
                &state,
                ctx,
                &tenant,
                super::Answer {
                    status: StatusCode::UNPROCESSABLE_ENTITY,
                    notice,
                    ..Default::default()
                },
            )
            .await
        }
    }
}
