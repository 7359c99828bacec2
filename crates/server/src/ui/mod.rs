//! The web UI, served by `callbridge serve` itself: server-rendered HTML (askama templates in
//! `crates/server/templates/`), a stylesheet and a small script embedded in the binary, words
//! from one catalogue per language (`crates/server/locales/`).
//!
//! Reachable without signing in: the sign-in page and the static files (the webhook routes,
//! health, metrics and the OAuth callback are outside the UI). Everything else goes through
//! [`session::require_session`], which also checks every posted form's CSRF token.
//!
//! One file per page: `tenants` (list, add, switch), `connections` (Mango and amoCRM),
//! `settings` (the window "Basic integration settings" and its tabs), `journal` (the calls,
//! where each landed and why); `session` (sign-in,
//! sign-out, the guard), `page` (what every page is rendered with), `i18n`, `password`, `assets`.

pub mod assets;
pub mod banners;
pub mod card_page;
pub mod connections;
pub mod i18n;
pub mod journal;
pub mod page;
pub mod password;
pub mod session;
pub mod settings;
pub mod tenants;

use crate::state::AppState;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use std::sync::Arc;

/// The UI's routes. The guard and the language switch are layered here, so a page module only
/// declares its routes.
pub fn router(state: Arc<AppState>) -> Router<Arc<AppState>> {
    let pages = Router::new()
        .route("/", get(home))
        .route("/logout", post(session::logout))
        .route("/tenants/switch", get(switch_tenant))
        .merge(tenants::routes())
        .merge(connections::routes())
        .merge(journal::routes())
        .merge(settings::routes())
        .merge(settings::card::routes())
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            session::require_session,
        ));
    Router::new()
        .merge(pages)
        .route("/login", get(session::login_page).post(session::login))
        .route("/static/{file}", get(assets::serve))
        .merge(card_page::routes())
        .layer(axum::middleware::from_fn_with_state(
            state,
            page::language_switch,
        ))
        .layer(axum::middleware::from_fn(page::security_headers))
}

/// `GET /`: the first tenant's settings window, or the tenants page when there is none yet.
async fn home(State(state): State<Arc<AppState>>) -> Response {
    let first = state.tenants.read().await.keys().min().cloned();
    match first {
        Some(id) => Redirect::to(&format!("/t/{id}/settings/employees")).into_response(),
        None => Redirect::to("/tenants").into_response(),
    }
}

#[derive(serde::Deserialize)]
struct SwitchQuery {
    #[serde(default)]
    tenant: String,
    #[serde(default)]
    section: String,
}

/// `GET /tenants/switch?tenant=…&section=…`: the header's tenant switcher; the same section of
/// the chosen tenant (the settings window when the section is not a tenant's).
async fn switch_tenant(
    State(state): State<Arc<AppState>>,
    Query(q): Query<SwitchQuery>,
) -> Response {
    if !state.tenants.read().await.contains_key(&q.tenant) {
        return Redirect::to("/tenants").into_response();
    }
    let page = match q.section.as_str() {
        "connections" => "connections",
        "journal" => "journal",
        _ => "settings/employees",
    };
    Redirect::to(&format!("/t/{}/{page}", q.tenant)).into_response()
}
