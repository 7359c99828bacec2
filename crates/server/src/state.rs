//! Shared state of the service: the store, the event-log appender, tenants, the card channel.

use crate::config::Processing;
use crate::error::ReloadError;
use callbridge_core::cards::CardChange;
use callbridge_core::ValidSettings;
use callbridge_store::{Appender, Store, TenantRow};
use secrecy::SecretString;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{broadcast, Notify, RwLock};

/// A tenant ready for use: its row and its validated settings.
#[derive(Debug)]
pub struct Tenant {
    pub row: TenantRow,
    pub settings: Arc<ValidSettings>,
}

impl Tenant {
    /// The tenant of a stored row, its settings parsed and validated.
    pub fn from_row(row: TenantRow) -> Result<Tenant, ReloadError> {
        let settings = ValidSettings::parse_toml(&row.settings_toml).map_err(|source| {
            ReloadError::Settings {
                tenant: row.id.clone(),
                source,
            }
        })?;
        Ok(Tenant {
            row,
            settings: Arc::new(settings),
        })
    }
}

/// A card change for one tenant, as sent on the stream.
#[derive(Debug, Clone)]
pub struct TenantCard {
    pub tenant_id: String,
    pub change: CardChange,
}

/// The card changes of each tenant, to the task that pops its cards in amoCRM. Through the
/// stream's broadcast every change would wake every tenant's task, so with thousands of tenants
/// one ringing phone would cost thousands of wake-ups; here it reaches its own tenant only.
#[derive(Default)]
pub struct CardRoutes {
    routes: std::sync::Mutex<HashMap<String, tokio::sync::mpsc::Sender<CardChange>>>,
}

impl CardRoutes {
    /// Card changes a tenant's card task waits on: cards are only worth popping while the
    /// phone rings, so what does not fit is dropped, not queued.
    const CAPACITY: usize = 256;

    /// The tenant's card changes from now on; replaces the receiver of an earlier delivery of
    /// the tenant (whose task then ends).
    pub fn register(&self, tenant_id: &str) -> tokio::sync::mpsc::Receiver<CardChange> {
        let (tx, rx) = tokio::sync::mpsc::channel(Self::CAPACITY);
        if let Ok(mut routes) = self.routes.lock() {
            routes.insert(tenant_id.to_string(), tx);
        }
        rx
    }

    /// Hands a change to the tenant's card task, if it has one.
    pub fn send(&self, tenant_id: &str, change: CardChange) {
        let Ok(mut routes) = self.routes.lock() else {
            return;
        };
        let Some(tx) = routes.get(tenant_id) else {
            return;
        };
        match tx.try_send(change) {
            Ok(()) => {}
            Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                metrics::counter!("callbridge_crm_cards_dropped_total").increment(1);
            }
            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => {
                routes.remove(tenant_id);
            }
        }
    }
}

pub struct AppState {
    pub store: Store,
    /// Carries each parsed event along, handed to the processor once committed.
    pub appender: Appender<callbridge_core::PbxEvent>,
    pub tenants: RwLock<HashMap<String, Arc<Tenant>>>,
    pub admin_token: SecretString,
    pub public_url: String,
    pub processing: Processing,
    /// Wakes the processor when a webhook was stored.
    pub new_events: Notify,
    /// Wakes a tenant's delivery lanes when it has new outbox work (plans stored, items
    /// retried, follow-ups added): an idle lane sleeps until then or until its next item is due.
    pub outbox_ready: OutboxWakes,
    /// Every card change, for the card streams (`GET /api/v1/cards/stream`, card pages).
    pub cards: broadcast::Sender<TenantCard>,
    /// Each CRM-connected tenant's card task, reached directly (see [`CardRoutes`]).
    pub card_routes: CardRoutes,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    /// The PBX staff of each tenant, from the VPBX API.
    pub directories: RwLock<HashMap<String, crate::directory::Directory>>,
    /// The VPBX API base URL the directories are loaded from.
    pub mango_api_url: String,
    /// How long recording links in call notes play (`recording_link_days`).
    pub recording_link_days: u64,
    /// How many of the newest calls the settings preview replays (`preview_entries`).
    pub preview_entries: i64,
    /// Signs card-stream tokens; derived from the secret key, so every instance sharing the
    /// database accepts the others' tokens and a key rotation revokes them.
    pub card_token_key: [u8; 32],
    /// Tenants deleted while running, with the highest event id their log had: the processor
    /// drops what it holds of them (and any of those events still on their way to it).
    pub purged_tenants: std::sync::Mutex<HashMap<String, i64>>,
    /// Wakes the CRM worker when a tenant was deleted, so its delivery stops at once.
    pub tenants_changed: Notify,
    /// `allow_insecure_crm_hosts`: CRM base URLs may name any host (sandboxes, tests).
    pub allow_insecure_crm_hosts: bool,
    /// The CRM's users of each tenant as the settings window last read them (a minute's cache).
    pub crm_users: crate::ui::settings::CrmUsersCache,
    /// What the Connections page keeps while running: refused webhooks waiting to be written,
    /// the amoCRM account names read, the Mango tests' turns.
    pub connections: crate::ui::connections::Live,
    /// The tenants the configuration file defines, and that file (set at start).
    pub file_tenants: FileTenants,
    /// One CRM client per tenant account, shared by the worker and the card pages.
    pub crm_clients: crate::crm_clients::CrmClients,
    /// One Mango API client per API key, on one HTTP client.
    pub vpbx_clients: crate::vpbx_clients::VpbxClients,
    /// The card pages' revocations and contact lookups.
    pub card_pages: crate::ui::card_page::Live,
    /// Reconciliation from Mango's statistics: its settings and the runs under way.
    pub reconciler: crate::reconcile::Reconciler,
    /// Set when shutdown begins: `/readyz` answers 503 from then on, so a balancer stops sending
    /// before the listener closes.
    pub stopping: std::sync::atomic::AtomicBool,
}

/// One wake-up per tenant for its delivery lanes, so new work for one tenant wakes that
/// tenant's lanes only: with thousands of tenants, waking every lane for every stored plan
/// would cost a query per tenant per plan.
#[derive(Default)]
pub struct OutboxWakes {
    by_tenant: std::sync::Mutex<HashMap<String, Arc<TenantWake>>>,
}

/// One tenant's wake-up, and how many times it was woken.
#[derive(Default)]
pub struct TenantWake {
    pub notify: Notify,
    /// Counts the wakes: a lane that skipped its first look because its tenant had no work at
    /// start (one query for all the tenants instead of one per lane) compares it with the
    /// count read before that query, so work stored in between is still seen.
    generation: std::sync::atomic::AtomicU64,
}

impl TenantWake {
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl OutboxWakes {
    /// The tenant's wake-up; a lane registers on it (`notify.notified()`) before it looks for
    /// work.
    pub fn of(&self, tenant_id: &str) -> Arc<TenantWake> {
        let mut map = self
            .by_tenant
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        map.entry(tenant_id.to_string()).or_default().clone()
    }

    /// Wakes the tenant's lanes that are waiting (a lane mid-round looks again after it).
    pub fn wake(&self, tenant_id: &str) {
        let notify = self
            .by_tenant
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(tenant_id)
            .cloned();
        if let Some(wake) = notify {
            wake.generation
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            wake.notify.notify_waiters();
        }
    }

    /// Forgets a deleted tenant's wake-up.
    pub fn forget(&self, tenant_id: &str) {
        self.by_tenant
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(tenant_id);
    }
}

/// The configuration file's tenants: the file seeds them, the database keeps later changes
/// until the file's entry changes (see `start`).
#[derive(Debug, Clone, Default)]
pub struct FileTenants {
    /// The file as given to `serve` (`None`: the tenants came from the environment).
    pub file: Option<String>,
    pub ids: std::collections::BTreeSet<String>,
}

impl AppState {
    /// A state over `store` with no tenants, the given processing windows and defaults
    /// elsewhere: the unit tests of the worker and the processor.
    #[cfg(test)]
    pub(crate) fn for_tests(store: Store, processing: Processing) -> AppState {
        let (cards, _) = broadcast::channel(16);
        AppState {
            appender: Appender::spawn_with_sink(store.clone(), 16, None),
            store,
            tenants: RwLock::new(Default::default()),
            admin_token: String::new().into(),
            public_url: "http://callbridge.test".into(),
            processing,
            new_events: Notify::new(),
            outbox_ready: Default::default(),
            cards,
            card_routes: Default::default(),
            metrics: crate::metrics_handle(),
            directories: RwLock::new(Default::default()),
            mango_api_url: "http://mango.test".into(),
            recording_link_days: 7,
            preview_entries: 200,
            card_token_key: [0; 32],
            purged_tenants: Default::default(),
            tenants_changed: Notify::new(),
            allow_insecure_crm_hosts: true,
            crm_users: Default::default(),
            connections: Default::default(),
            crm_clients: Default::default(),
            vpbx_clients: Default::default(),
            card_pages: Default::default(),
            reconciler: Default::default(),
            file_tenants: Default::default(),
            stopping: Default::default(),
        }
    }

    /// Loads every tenant from the store into the cache: at start only. A change to one tenant
    /// goes through [`AppState::reload_tenant`], which leaves the others as they are.
    pub async fn reload_tenants(&self) -> Result<(), ReloadError> {
        let rows = self.store.tenants().await?;
        let mut map = HashMap::new();
        for row in rows {
            let tenant = Tenant::from_row(row)?;
            map.insert(tenant.row.id.clone(), Arc::new(tenant));
        }
        *self.tenants.write().await = map;
        Ok(())
    }

    /// Reloads one tenant from the store (the one source of truth, with the configuration file
    /// that seeds it) after it was written: only its row is read and only its settings parsed,
    /// so a change costs the same with ten tenants or ten thousand. A tenant no longer stored
    /// leaves the cache. Wakes the CRM worker, which restarts the tenant's delivery.
    pub async fn reload_tenant(&self, id: &str) -> Result<(), ReloadError> {
        match self.store.tenant(id).await? {
            Some(row) => {
                let tenant = Arc::new(Tenant::from_row(row)?);
                self.tenants.write().await.insert(id.to_string(), tenant);
            }
            None => {
                self.tenants.write().await.remove(id);
            }
        }
        self.tenants_changed.notify_one();
        Ok(())
    }

    /// Deletes a tenant and everything kept for it: the store's rows (one transaction), its
    /// directory, and (through `purged_tenants`) the processor's open entries; the CRM worker
    /// stops its delivery when the tenant leaves the cache. False when there was no such tenant.
    /// Also what a tenant removed from the configuration file goes through.
    pub async fn delete_tenant(&self, id: &str) -> Result<bool, callbridge_store::StoreError> {
        let Some(last_event) = self.store.purge_tenant(id).await? else {
            return Ok(false);
        };
        if let Ok(mut purged) = self.purged_tenants.lock() {
            purged.insert(id.to_string(), last_event);
        }
        self.directories.write().await.remove(id);
        self.tenants.write().await.remove(id);
        self.crm_clients.forget(id);
        self.outbox_ready.forget(id);
        // Wakes the processor, so it forgets the tenant before a new one of that id is created,
        // and the worker, so the tenant's delivery stops now rather than at its next look.
        self.new_events.notify_one();
        self.tenants_changed.notify_one();
        tracing::info!(
            tenant = id,
            "tenant deleted with its events, plans, outbox and tokens"
        );
        Ok(true)
    }

    pub async fn tenant(&self, id: &str) -> Option<Arc<Tenant>> {
        self.tenants.read().await.get(id).cloned()
    }

    /// The tenant's shared amoCRM client under this service's host policy
    /// (`allow_insecure_crm_hosts`); `None` when the tenant has no CRM connection. Every reader
    /// and writer of the account goes through it, so its limiter counts them all.
    pub fn crm_client(
        &self,
        tenant: &Tenant,
    ) -> Result<Option<callbridge_amocrm::AmoClient>, crate::crm::CrmConnectionError> {
        self.crm_clients
            .client(&self.store, tenant, self.allow_insecure_crm_hosts)
    }
}

/// Secrets shorter than this are masked entirely: their last characters would be too large a
/// share of them.
const MASK_SHOWS_TAIL_FROM: usize = 16;

/// Masks a secret for display: `***` and, for a secret of 16 characters or more, its last two
/// characters (enough to tell two apart, too few to help guess one). Never its start, which for
/// tokens is often a fixed prefix.
pub fn mask(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    if chars.len() < MASK_SHOWS_TAIL_FROM {
        "***".into()
    } else {
        format!("***{}", chars[chars.len() - 2..].iter().collect::<String>())
    }
}

/// CRM connection settings with tokens and secrets masked.
pub fn redact_crm(crm: &serde_json::Value) -> serde_json::Value {
    match crm {
        serde_json::Value::Object(map) => serde_json::Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let secret = ["token", "secret", "password"]
                        .iter()
                        .any(|s| k.contains(s));
                    (
                        k.clone(),
                        if secret {
                            serde_json::Value::String(mask(v.as_str().unwrap_or("")))
                        } else {
                            v.clone()
                        },
                    )
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::mask;

    #[test]
    fn masks_show_at_most_the_last_two_characters() {
        assert_eq!(mask(""), "***");
        assert_eq!(mask("a"), "***");
        assert_eq!(mask("abcdefghijklmno"), "***");
        assert_eq!(mask("abcdefghijklmnop"), "***op");
        let long = "0123456789abcdef0123456789abcdef";
        let shown = mask(long);
        assert_eq!(shown, "***ef");
        assert!(!shown.contains("01"), "{shown}");
        // Characters, not bytes: no panic on a multi-byte tail.
        assert_eq!(mask("ключ-ключ-ключ-ключ"), "***юч");
    }
}
