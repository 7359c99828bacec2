//! `POST /api/v1/tenants/{id}/reconcile`: reconciliation on demand (`crate::reconcile`).

use crate::error::AdminError;
use crate::reconcile::{reconcile, ReconcileReport};
use crate::state::AppState;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use std::sync::Arc;

/// The period, in Unix seconds: the calls that started within `from..=to`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconcileRequest {
    from: Option<i64>,
    to: Option<i64>,
}

/// Reads the tenant's calls of the period from Mango's statistics and recovers those the event
/// log is missing; answers what it found and did once the recovered events are in the log (the
/// CRM is written afterwards, as for webhooks). 400 names a bad field, 404 an unknown tenant,
/// 409 a run already under way, 502 Mango's refusal in its words.
pub async fn reconcile_tenant(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Result<Json<ReconcileRequest>, JsonRejection>,
) -> Result<Json<ReconcileReport>, AdminError> {
    let Json(request) = body?;
    let from = request.from.ok_or(AdminError::Required("from"))?;
    let to = request.to.ok_or(AdminError::Required("to"))?;
    Ok(Json(reconcile(&state, &id, from, to).await?))
}
