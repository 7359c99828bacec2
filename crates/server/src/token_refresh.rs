//! Scheduled OAuth token refresh. amoCRM's refresh token lives 3 months and is renewed only by
//! using it, so a tenant without calls for that long would lose its CRM connection for good.
//! Every [`CHECK_EVERY`] each tenant's pair older than
//! [`callbridge_amocrm::SCHEDULED_REFRESH_AFTER_SECS`] (30 days) is renewed through the
//! tenant's shared client (one limiter, one single-flight refresh that saves before use). A
//! refresh token the CRM refuses marks the connection `broken` with the reason, as the worker
//! does; `callbridge_crm_connections_broken` counts the tenants in that state.

use crate::state::{now_ms, AppState};
use callbridge_amocrm::{Error as CrmError, SCHEDULED_REFRESH_AFTER_SECS};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often the tenants' token ages and connection states are looked at (reading the store
/// only; the CRM is asked only for a pair due for renewal), which is also how fresh the gauge is.
pub const CHECK_EVERY: Duration = Duration::from_secs(600);

/// Runs the scheduled refresh until shutdown; the first look is at start.
pub async fn run(state: Arc<AppState>, mut shutdown: watch::Receiver<bool>) {
    loop {
        refresh_due(&state).await;
        tokio::select! {
            _ = tokio::time::sleep(CHECK_EVERY) => {}
            _ = shutdown.changed() => {
                if *shutdown.borrow() {
                    return;
                }
            }
        }
    }
}

/// Renews every tenant's pair that is due, and sets the broken-connections gauge.
pub async fn refresh_due(state: &AppState) {
    let tenants: Vec<_> = state.tenants.read().await.values().cloned().collect();
    for tenant in tenants {
        let id = &tenant.row.id;
        let client = match state.crm_client(&tenant) {
            Ok(Some(client)) => client,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(tenant = %id, "scheduled token refresh: {e}");
                continue;
            }
        };
        match client
            .refresh_if_older_than(SCHEDULED_REFRESH_AFTER_SECS)
            .await
        {
            Ok(true) => tracing::info!(tenant = %id, "renewed the amoCRM token pair on schedule"),
            Ok(false) => {}
            Err(CrmError::Unauthorized(why)) => {
                tracing::error!(tenant = %id, "scheduled token refresh refused: {why}");
                let _ = state
                    .store
                    .set_crm_status(id, "broken", &why, now_ms())
                    .await;
            }
            // The CRM down, a store error: the next run tries again, weeks before the token dies.
            Err(e) => tracing::warn!(tenant = %id, "scheduled token refresh failed: {e}"),
        }
    }
    let broken = broken_connections(state).await.len();
    metrics::gauge!("callbridge_crm_connections_broken").set(broken as f64);
}

/// One line per tenant whose CRM connection is broken (its credentials refused), for the
/// `/readyz` detail: the service stays ready (other tenants deliver), but says whose
/// connection needs re-authorizing and why.
pub async fn broken_connections(state: &AppState) -> Vec<String> {
    // One query for all the tenants (a probe asks often), then only the tenants running now.
    let broken = state
        .store
        .crm_statuses_in("broken")
        .await
        .unwrap_or_default();
    let tenants = state.tenants.read().await;
    broken
        .into_iter()
        .filter(|(id, _)| tenants.contains_key(id))
        .map(|(id, status)| format!("crm connection broken for tenant {id}: {}", status.detail))
        .collect()
}
