//! `/tenants`: the tenants an administrator runs, each with its webhook URL, its language and
//! links to its pages; the form that adds a tenant; and the banner the pages of a tenant the
//! configuration file defines carry.

use super::i18n::{Catalogue, Lang};
use super::page::{message, no_tenant, render, Ctx};
use crate::config::{validate_mango_salt, InvalidSalt};
use crate::state::{now_ms, AppState};
use crate::tenant_id::TenantId;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use callbridge_store::{CreateTenantError, TenantRow};
use std::sync::Arc;

/// The tenants pages' routes (behind the session guard).
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/tenants", get(list).post(add))
        .route("/tenants/{tenant}/language", post(set_language))
}

/// Who a settings version written here names.
const AUTHOR: &str = "admin (web UI)";

/// The banner of a page about a tenant the configuration file defines: the file seeds it, and
/// what is changed here is kept until the file's entry for it changes. `None` on other pages.
pub fn file_banner(state: &AppState, ctx: &Ctx) -> Option<String> {
    let tenant = ctx.tenant.as_deref()?;
    if !state.file_tenants.ids.contains(tenant) {
        return None;
    }
    Some(match &state.file_tenants.file {
        Some(file) => ctx.t.fmt("tenants.file-banner", &[("file", file)]),
        None => ctx.t.get("tenants.env-banner").to_string(),
    })
}

/// One tenant as the list shows it.
pub struct TenantLine {
    pub id: String,
    pub webhook_url: String,
    pub crm_connected: bool,
    pub employees: usize,
    pub mapped: usize,
    /// The language code of the texts written to the CRM.
    pub language: String,
    /// Defined in the configuration file.
    pub from_file: bool,
}

/// A language as the selects offer it: the code and its name in the page's language.
pub struct LanguageChoice {
    pub code: &'static str,
    pub name: String,
}

/// The add form as posted, with the reason next to each refused field. The salt is never put
/// back into the page.
#[derive(Default)]
pub struct AddForm {
    pub id: String,
    pub key: String,
    pub language: String,
    pub id_error: Option<String>,
    pub key_error: Option<String>,
    pub salt_error: Option<String>,
    pub language_error: Option<String>,
}

impl AddForm {
    fn has_errors(&self) -> bool {
        self.id_error.is_some()
            || self.key_error.is_some()
            || self.salt_error.is_some()
            || self.language_error.is_some()
    }
}

#[derive(Template)]
#[template(path = "tenants.html")]
pub struct TenantsPage {
    pub ctx: Ctx,
    pub tenants: Vec<TenantLine>,
    pub languages: Vec<LanguageChoice>,
    pub form: AddForm,
    /// The tenant whose language was just saved.
    pub saved: Option<String>,
    pub file: String,
}

fn languages(t: &Catalogue) -> Vec<LanguageChoice> {
    Lang::ALL
        .into_iter()
        .map(|lang| LanguageChoice {
            code: lang.code(),
            name: match lang {
                Lang::Ru => t.get("tenants.language-ru").to_string(),
                Lang::En => t.get("tenants.language-en").to_string(),
            },
        })
        .collect()
}

fn webhook_url(state: &AppState, id: &str) -> String {
    format!("{}/mango/{id}/", state.public_url.trim_end_matches('/'))
}

async fn page(
    state: &AppState,
    ctx: Ctx,
    form: AddForm,
    saved: Option<String>,
    status: StatusCode,
) -> Response {
    let languages_by_id: std::collections::HashMap<String, String> =
        match state.store.tenant_languages().await {
            Ok(rows) => rows.into_iter().collect(),
            Err(e) => return store_error(ctx, e),
        };
    let mut tenants: Vec<TenantLine> = state
        .tenants
        .read()
        .await
        .values()
        .map(|t| {
            let employees = &t.settings.settings().employees;
            TenantLine {
                id: t.row.id.clone(),
                webhook_url: webhook_url(state, &t.row.id),
                crm_connected: !t.row.crm.is_null(),
                employees: employees.len(),
                mapped: employees.iter().filter(|e| e.crm_user_id.is_some()).count(),
                language: languages_by_id
                    .get(&t.row.id)
                    .cloned()
                    .unwrap_or_else(|| Lang::Ru.code().to_string()),
                from_file: state.file_tenants.ids.contains(&t.row.id),
            }
        })
        .collect();
    tenants.sort_by(|a, b| a.id.cmp(&b.id));
    let languages = languages(ctx.t);
    let file = state.file_tenants.file.clone().unwrap_or_default();
    let mut response = render(TenantsPage {
        ctx,
        tenants,
        languages,
        form,
        saved,
        file,
    });
    *response.status_mut() = status;
    response
}

fn store_error(ctx: Ctx, e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "tenants page: store");
    let text = ctx.t.get("error.store").to_string();
    message(ctx, StatusCode::SERVICE_UNAVAILABLE, "error.store", text)
}

#[derive(serde::Deserialize)]
struct ListQuery {
    #[serde(default)]
    saved: Option<String>,
}

async fn list(
    State(state): State<Arc<AppState>>,
    axum::extract::Query(q): axum::extract::Query<ListQuery>,
    ctx: Ctx,
) -> Response {
    let form = AddForm {
        language: ctx.lang.code().to_string(),
        ..AddForm::default()
    };
    // Only a tenant that exists is named as saved (the parameter is the page's own link).
    let saved = match q.saved {
        Some(id) if state.tenants.read().await.contains_key(&id) => Some(id),
        _ => None,
    };
    page(&state, ctx, form, saved, StatusCode::OK).await
}

#[derive(serde::Deserialize)]
pub struct AddFields {
    #[serde(default)]
    tenant_id: String,
    #[serde(default)]
    mango_api_key: String,
    #[serde(default)]
    mango_api_salt: String,
    #[serde(default)]
    language: String,
}

/// The reason a salt is refused, in the page's language (never with the salt).
fn salt_reason(t: &Catalogue, e: InvalidSalt) -> String {
    match e {
        InvalidSalt::TooShort(got) => t.fmt(
            "tenants.error-salt-short",
            &[
                ("min", &crate::config::MANGO_SALT_MIN_CHARS.to_string()),
                ("got", &got.to_string()),
            ],
        ),
        InvalidSalt::TooLong(got) => t.fmt(
            "tenants.error-salt-long",
            &[
                ("max", &crate::config::MANGO_SALT_MAX_CHARS.to_string()),
                ("got", &got.to_string()),
            ],
        ),
        InvalidSalt::Whitespace => t.get("tenants.error-salt-space").to_string(),
    }
}

/// `POST /tenants`: creates a tenant with default settings and lands on its Connections page,
/// where its webhook URL is; a refused field is named next to it and nothing is created.
async fn add(
    State(state): State<Arc<AppState>>,
    ctx: Ctx,
    Form(fields): Form<AddFields>,
) -> Response {
    let t = ctx.t;
    // Pasted values often carry a stray space or newline at an end; inside one they are refused.
    let id = fields.tenant_id.trim().to_string();
    let key = fields.mango_api_key.trim().to_string();
    let salt = fields.mango_api_salt.trim().to_string();
    let mut form = AddForm {
        id: id.clone(),
        key: key.clone(),
        language: fields.language.clone(),
        ..AddForm::default()
    };
    if id.is_empty() {
        form.id_error = Some(t.get("tenants.error-required").to_string());
    } else if TenantId::parse(&id).is_err() {
        form.id_error = Some(t.get("tenants.error-id").to_string());
    } else if state.tenants.read().await.contains_key(&id) {
        form.id_error = Some(t.fmt("tenants.error-id-taken", &[("tenant", &id)]));
    }
    if key.is_empty() {
        form.key_error = Some(t.get("tenants.error-required").to_string());
    } else if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
        form.key_error = Some(t.get("tenants.error-key-space").to_string());
    } else if let Some(other) = state
        .tenants
        .read()
        .await
        .values()
        .find(|other| other.row.mango_api_key == key)
    {
        form.key_error = Some(t.fmt("tenants.error-key-taken", &[("tenant", &other.row.id)]));
    }
    if salt.is_empty() {
        form.salt_error = Some(t.get("tenants.error-required").to_string());
    } else if let Err(e) = validate_mango_salt(&salt) {
        form.salt_error = Some(salt_reason(t, e));
    }
    let language = Lang::parse(&fields.language);
    if language.is_none() {
        form.language_error = Some(t.get("tenants.error-language").to_string());
    }
    if form.has_errors() {
        return page(&state, ctx, form, None, StatusCode::UNPROCESSABLE_ENTITY).await;
    }
    let language = language.unwrap_or(Lang::Ru);
    let row = TenantRow {
        id: id.clone(),
        mango_api_key: key,
        mango_api_salt: salt,
        // Empty: every setting at its default (as a config entry without a settings file).
        settings_toml: String::new(),
        crm: serde_json::Value::Null,
        updated_at_ms: now_ms(),
    };
    match state
        .store
        .create_tenant(&row, language.code(), AUTHOR, "created in the web UI")
        .await
    {
        Ok(()) => {}
        // Another session or instance took the id or the key since the checks above.
        Err(CreateTenantError::IdTaken) => {
            form.id_error = Some(t.fmt("tenants.error-id-taken", &[("tenant", &id)]));
            return page(&state, ctx, form, None, StatusCode::UNPROCESSABLE_ENTITY).await;
        }
        Err(CreateTenantError::KeyTaken) => {
            form.key_error = Some(t.get("tenants.error-key-taken-elsewhere").to_string());
            return page(&state, ctx, form, None, StatusCode::UNPROCESSABLE_ENTITY).await;
        }
        Err(CreateTenantError::Store(e)) => return store_error(ctx, e),
    }
    if let Err(e) = state.reload_tenant(&id).await {
        return store_error(ctx, e);
    }
    tracing::info!(tenant = %id, "tenant created in the web UI");
    Redirect::to(&format!("/t/{id}/connections")).into_response()
}

#[derive(serde::Deserialize)]
pub struct LanguageFields {
    #[serde(default)]
    language: String,
}

/// `POST /tenants/{tenant}/language`: the language of the texts the tenant's calls write to
/// the CRM.
async fn set_language(
    State(state): State<Arc<AppState>>,
    Path(tenant): Path<String>,
    ctx: Ctx,
    Form(fields): Form<LanguageFields>,
) -> Response {
    if !state.tenants.read().await.contains_key(&tenant) {
        return no_tenant(ctx, &tenant);
    }
    let Some(language) = Lang::parse(&fields.language) else {
        let text = ctx.t.get("tenants.error-language").to_string();
        return message(ctx, StatusCode::UNPROCESSABLE_ENTITY, "tenants.title", text);
    };
    match state
        .store
        .set_tenant_language(&tenant, language.code())
        .await
    {
        Ok(true) => {
            let query = form_urlencoded::Serializer::new(String::new())
                .append_pair("saved", &tenant)
                .finish();
            Redirect::to(&format!("/tenants?{query}#tenant-{tenant}")).into_response()
        }
        Ok(false) => no_tenant(ctx, &tenant),
        Err(e) => store_error(ctx, e),
    }
}
