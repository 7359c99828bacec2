//! The admin API under `/api/v1`, behind `Authorization: Bearer <admin_token>` (in the header
//! only, never the URL): tenants and their settings, planned entries, the outbox, the PBX
//! directory, card-stream tokens. The live card stream takes either the admin token in the header
//! or a scoped card token in the URL. One file per resource; this one holds the router, the
//! token check and the answers the resources share.

mod cards;
mod directory;
mod entries;
mod outbox;
mod reconcile;
mod tenants;
mod why;

pub use entries::events_download;

use crate::error::AuthError;
use crate::state::AppState;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use secrecy::ExposeSecret;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// The admin routes under `/api/v1` (behind [`require_token`]) and the card stream (which checks
/// its own token).
pub fn router(state: Arc<AppState>) -> Router<Arc<AppState>> {
    let api = Router::new()
        .route("/tenants", get(tenants::list_tenants))
        .route(
            "/tenants/{id}",
            get(tenants::get_tenant)
                .put(tenants::put_tenant)
                .delete(tenants::delete_tenant),
        )
        .route("/tenants/{id}/directory", get(directory::get_directory))
        .route("/tenants/{id}/outbox", get(outbox::list_outbox))
        .route("/tenants/{id}/outbox/retry", post(outbox::retry_outbox))
        .route("/tenants/{id}/reconcile", post(reconcile::reconcile_tenant))
        .route(
            "/tenants/{id}/amocrm/authorize",
            get(crate::oauth::authorize),
        )
        .route("/entries", get(entries::list_entries))
        .route("/entries/{entry_id}", get(entries::get_entry))
        .route("/entries/{entry_id}/events", get(entries::get_entry_events))
        .route("/tenants/{id}/cards/tokens", post(cards::mint_card_token))
        .route_layer(axum::middleware::from_fn_with_state(state, require_token));
    Router::new()
        .nest("/api/v1", api)
        // Outside the admin middleware: a scoped card token (or the admin token) is checked
        // by the handler.
        .route("/api/v1/cards/stream", get(cards::card_stream))
}

/// The bearer token of a request's `Authorization` header.
fn bearer(request_headers: &axum::http::HeaderMap) -> Option<&str> {
    request_headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

fn is_admin_token(state: &AppState, given: &str) -> bool {
    bool::from(
        given
            .as_bytes()
            .ct_eq(state.admin_token.expose_secret().as_bytes()),
    )
}

/// Checks the admin token, from the `Authorization` header only: a token in the URL ends up in
/// proxy logs and browser history. (The card stream, which browsers open with EventSource,
/// takes a scoped token in the URL instead; see `cards::card_stream`.)
pub async fn require_token(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Result<Response, AuthError> {
    match bearer(request.headers()) {
        Some(given) if is_admin_token(&state, given) => Ok(next.run(request).await),
        Some(_) => Err(AuthError::AdminTokenInvalid),
        None => {
            let in_query = request
                .uri()
                .query()
                .is_some_and(|q| form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k == "token"));
            Err(if in_query {
                AuthError::AdminTokenInQuery
            } else {
                AuthError::AdminTokenMissing
            })
        }
    }
}
