//! Warnings where they matter: above every page of a tenant, a banner for each thing that stops
//! its calls reaching the CRM (no CRM connection, the CRM refusing its tokens or blocking the
//! account, webhooks refused in the last hour, deliveries parked), each with a link to the page
//! that fixes it. Read from what the service already knows; nothing here asks the CRM.

use super::connections::crm_state_view;
use super::i18n::Catalogue;
use crate::state::{now_ms, AppState, Tenant};

/// One warning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Banner {
    /// `warn` or `error` (the stylesheet's `.notice-*`).
    pub kind: &'static str,
    pub text: String,
    pub link: String,
    pub link_text: String,
}

/// How far back a refused webhook still warns.
const REFUSALS_WINDOW_MS: i64 = 3600 * 1000;

/// The warnings of a tenant, most serious first.
pub async fn for_tenant(state: &AppState, t: &Catalogue, tenant: &Tenant) -> Vec<Banner> {
    let id = &tenant.row.id;
    let mut out = Vec::new();
    let connections = format!("/t/{id}/connections");
    let (crm, _) = crm_state_view(state, t, tenant).await;
    let crm_words = match crm.state {
        "none" => Some(("warn", t.get("banner.crm-none").to_string())),
        "invalid" | "broken" => Some((
            "error",
            t.fmt(
                "banner.crm-broken",
                &[("reason", crm.reason.as_deref().unwrap_or(""))],
            ),
        )),
        "not-connected" => Some(("warn", t.get("banner.crm-not-connected").to_string())),
        _ => None,
    };
    if let Some((kind, text)) = crm_words {
        out.push(Banner {
            kind,
            text,
            link: format!("{connections}#amocrm"),
            link_text: t.get("banner.fix-connection").to_string(),
        });
    }
    if let Ok(parked) = state.store.parked_count(id).await {
        if parked > 0 {
            out.push(Banner {
                kind: "error",
                text: t.fmt("banner.parked", &[("count", &parked.to_string())]),
                link: format!("/t/{id}/journal?delivery=parked"),
                link_text: t.get("banner.see-parked").to_string(),
            });
        }
    }
    if let Ok(Some(refusal)) = state.store.webhook_refusal(id).await {
        if refusal.refused_at_ms > now_ms() - REFUSALS_WINDOW_MS {
            out.push(Banner {
                kind: "warn",
                text: t.fmt(
                    "banner.refused",
                    &[
                        ("count", &refusal.count_since_accepted.to_string()),
                        ("reason", &refusal.reason),
                    ],
                ),
                link: format!("{connections}#mango"),
                link_text: t.get("banner.check-mango").to_string(),
            });
        }
    }
    out
}
