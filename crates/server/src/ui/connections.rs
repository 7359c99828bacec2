//! `/t/{tenant}/connections`: the Mango and amoCRM connections of a tenant.

use crate::state::AppState;
use axum::Router;
use std::sync::Arc;

/// The connections page's routes (behind the session guard).
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
}
