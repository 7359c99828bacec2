//! What an operator must hear about without opening the web UI: a tenant whose calls cannot
//! reach a CRM (no CRM connection) or whose webhooks Mango is sending and this service refuses
//! (a wrong key or salt). Logged as warnings at start-up and listed in `/readyz`'s body (which
//! stays 200: the service itself is ready; these are the tenants' faults).

use crate::state::{now_ms, AppState};

/// How far back a refused webhook still warns (as the web UI's banners).
const REFUSALS_WINDOW_MS: i64 = 3600 * 1000;

/// One line per fault, `tenant ID: what is wrong: what to do`, sorted by tenant.
pub async fn tenant_warnings(state: &AppState) -> Vec<String> {
    let tenants: Vec<(String, serde_json::Value)> = state
        .tenants
        .read()
        .await
        .values()
        .map(|t| (t.row.id.clone(), t.row.crm.clone()))
        .collect();
    // Every tenant's recent refusal in one query, not one a tenant: a probe asks often.
    let refusals: std::collections::HashMap<String, _> = state
        .store
        .webhook_refusals_since(now_ms() - REFUSALS_WINDOW_MS)
        .await
        .unwrap_or_default()
        .into_iter()
        .collect();
    let mut out = Vec::new();
    for (id, crm) in tenants {
        if matches!(crate::crm::connection(&crm), Ok(None)) {
            out.push(format!(
                "tenant {id}: no CRM connection: its calls are planned but nothing is delivered \
                 (add [tenants.amocrm] to the config file, or connect amoCRM on its Connections page)"
            ));
        }
        if let Some(refusal) = refusals.get(&id) {
            let ago_ms = now_ms() - refusal.refused_at_ms;
            out.push(format!(
                "tenant {id}: {} webhooks refused since the last accepted one, the last {} s ago \
                 ({}): check the Mango API key and salt (see callbridge_webhooks_total in /metrics)",
                refusal.count_since_accepted,
                ago_ms.max(0) / 1000,
                refusal.reason
            ));
        }
    }
    out.sort();
    out
}
