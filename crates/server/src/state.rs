//! Shared state of the service: the store, the event-log appender, tenants, the card channel.

use crate::config::Processing;
use callbridge_core::cards::CardChange;
use callbridge_core::ValidSettings;
use callbridge_store::{Appender, Store, TenantRow};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{broadcast, Notify, RwLock};

/// A tenant ready for use: its row and its validated settings.
#[derive(Debug)]
pub struct Tenant {
    pub row: TenantRow,
    pub settings: Arc<ValidSettings>,
}

/// A card change for one tenant, as sent on the stream.
#[derive(Debug, Clone)]
pub struct TenantCard {
    pub tenant_id: String,
    pub change: CardChange,
}

pub struct AppState {
    pub store: Store,
    /// Carries each parsed event along, handed to the processor once committed.
    pub appender: Appender<callbridge_core::PbxEvent>,
    pub tenants: RwLock<HashMap<String, Arc<Tenant>>>,
    pub admin_token: String,
    pub public_url: String,
    pub processing: Processing,
    /// Wakes the processor when a webhook was stored.
    pub new_events: Notify,
    /// Wakes the CRM worker's call lanes when plans with outbox items were stored.
    pub outbox_ready: Notify,
    pub cards: broadcast::Sender<TenantCard>,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    /// The PBX staff of each tenant, from the VPBX API.
    pub directories: RwLock<HashMap<String, crate::directory::Directory>>,
    /// The VPBX API base URL the directories are loaded from.
    pub mango_api_url: String,
    /// `allow_insecure_crm_hosts`: CRM base URLs may name any host (sandboxes, tests).
    pub allow_insecure_crm_hosts: bool,
}

impl AppState {
    /// Reloads every tenant from the store into the cache.
    pub async fn reload_tenants(&self) -> Result<(), String> {
        let rows = self.store.tenants().await.map_err(|e| e.to_string())?;
        let mut map = HashMap::new();
        for row in rows {
            let settings = ValidSettings::parse_toml(&row.settings_toml)
                .map_err(|e| format!("tenant {}: {e}", row.id))?;
            map.insert(
                row.id.clone(),
                Arc::new(Tenant {
                    row,
                    settings: Arc::new(settings),
                }),
            );
        }
        *self.tenants.write().await = map;
        Ok(())
    }

    pub async fn tenant(&self, id: &str) -> Option<Arc<Tenant>> {
        self.tenants.read().await.get(id).cloned()
    }
}

/// Shows a secret's first and last characters only.
pub fn mask(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    if chars.len() <= 8 {
        "***".into()
    } else {
        format!(
            "{}***{}",
            chars[..2].iter().collect::<String>(),
            chars[chars.len() - 2..].iter().collect::<String>()
        )
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
