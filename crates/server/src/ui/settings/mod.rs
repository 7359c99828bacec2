//! `/t/{tenant}/settings/{tab}`: the window "Basic integration settings".

use crate::state::AppState;
use axum::Router;
use std::sync::Arc;

/// The settings window's routes (behind the session guard).
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
}
