//! The employee directory of each tenant's PBX: employees and groups loaded from the Mango VPBX
//! API (signed requests, the API's own rate limits), refreshed periodically, and shown next to
//! the mapping table so an administrator sees who is mapped and who is not.

use crate::state::{now_ms, AppState};
use callbridge_mango::api::{ApiError, VpbxGroup, VpbxUser};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// What is known of one tenant's PBX staff.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Directory {
    pub users: Vec<VpbxUser>,
    pub groups: Vec<VpbxGroup>,
    /// When the last successful load finished (Unix ms); 0 before the first.
    pub refreshed_at_ms: i64,
    /// The last load's error, if it failed (the previous lists are kept).
    pub error: Option<String>,
}

/// Loads every tenant's directory now, then every `every` until shutdown.
pub async fn run(state: Arc<AppState>, every: Duration, mut shutdown: watch::Receiver<bool>) {
    loop {
        refresh_all(&state).await;
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => {
                if *shutdown.borrow() {
                    return;
                }
            }
        }
    }
}

pub async fn refresh_all(state: &AppState) {
    let tenants: Vec<_> = state.tenants.read().await.values().cloned().collect();
    // The clients of keys no tenant has any more go; the loop below makes what is missing.
    state
        .vpbx_clients
        .retain_keys(tenants.iter().map(|t| t.row.mango_api_key.as_str()));
    for tenant in tenants {
        // The tenant's one client (its request spacing shared with the worker's calls).
        let client = match state.vpbx_clients.client(
            &state.mango_api_url,
            &tenant.row.mango_api_key,
            &tenant.row.mango_api_salt,
        ) {
            Ok(client) => client,
            Err(e) => {
                record(state, &tenant.row.id, Err(e)).await;
                continue;
            }
        };
        let loaded = match client.users().await {
            Ok(users) => client.groups().await.map(|groups| (users, groups)),
            Err(e) => Err(e),
        };
        record(state, &tenant.row.id, loaded).await;
    }
}

async fn record(
    state: &AppState,
    tenant: &str,
    loaded: Result<(Vec<VpbxUser>, Vec<VpbxGroup>), ApiError>,
) {
    let mut all = state.directories.write().await;
    let d = all.entry(tenant.to_string()).or_default();
    match loaded {
        Ok((users, groups)) => {
            metrics::counter!("callbridge_directory_refreshes_total", "result" => "ok")
                .increment(1);
            *d = Directory {
                users,
                groups,
                refreshed_at_ms: now_ms(),
                error: None,
            };
        }
        Err(e) => {
            metrics::counter!("callbridge_directory_refreshes_total", "result" => "error")
                .increment(1);
            tracing::warn!(tenant, error = %e, "employee directory refresh failed");
            d.error = Some(e.to_string());
        }
    }
}
