//! `/_sandbox/*`: the test controls. No auth, never rate limited.

use crate::respond::{ok, problem};
use crate::server::Shared;
use crate::Faults;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;
use std::sync::Arc;

pub async fn stats(State(shared): State<Arc<Shared>>) -> Response {
    let stats = shared.gate().stats.clone();
    ok(&json!(stats))
}

pub async fn get_faults(State(shared): State<Arc<Shared>>) -> Response {
    let faults = shared.gate().faults.clone();
    ok(&json!(faults))
}

/// Replaces the faults in force with the posted `Faults` document (missing keys: none).
pub async fn set_faults(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let mut de = serde_json::Deserializer::from_slice(&body);
    let faults: Faults = match serde_path_to_error::deserialize(&mut de) {
        Ok(f) => f,
        Err(e) => {
            let path = e.path().to_string();
            return problem(
                StatusCode::BAD_REQUEST,
                &format!("Faults: {path}: {}", e.into_inner()),
            );
        }
    };
    if !(0.0..=1.0).contains(&faults.error_rate) {
        return problem(
            StatusCode::BAD_REQUEST,
            &format!(
                "Faults: error_rate: {} is not between 0 and 1",
                faults.error_rate
            ),
        );
    }
    if let Some(bad) = faults.fail_next.iter().find(|s| !(100..=599).contains(*s)) {
        return problem(
            StatusCode::BAD_REQUEST,
            &format!("Faults: fail_next: {bad} is not an HTTP status (100..599)"),
        );
    }
    tracing::info!(?faults, "amoCRM sandbox: faults set");
    shared.gate().faults = faults.clone();
    ok(&json!(faults))
}

pub async fn expire_tokens(State(shared): State<Arc<Shared>>) -> Response {
    let count = shared.state().access_tokens.len();
    shared.expire_access_tokens();
    shared.save().await;
    ok(&json!({"expired": count}))
}

pub async fn unblock(State(shared): State<Arc<Shared>>) -> Response {
    shared.gate().unblock();
    ok(&json!({"blocked": false}))
}

pub async fn call_events(State(shared): State<Arc<Shared>>) -> Response {
    let events = shared.state().call_events.clone();
    ok(&json!(events))
}
