//! The CRM's users (`GET /api/v4/users`) as the settings window shows them: read at most once a
//! minute per tenant, so opening tabs costs the account's request budget nothing worth counting.

use crate::state::{AppState, Tenant};
use callbridge_amocrm::User;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a read list is used before the CRM is asked again.
const FRESH_FOR: Duration = Duration::from_secs(60);
/// A failed read is retried sooner: the owner may just have fixed the connection.
const FAILURE_FRESH_FOR: Duration = Duration::from_secs(10);
/// A page never waits longer than this for the CRM.
const READ_TIMEOUT: Duration = Duration::from_secs(8);

/// What the window knows of a tenant's CRM users.
#[derive(Debug, Clone)]
pub enum CrmUsers {
    /// The tenant has no CRM connection.
    NotConnected,
    /// The CRM could not be read; the reason, in the client's words.
    Failed(String),
    Loaded(Vec<User>),
}

impl CrmUsers {
    pub fn list(&self) -> &[User] {
        match self {
            CrmUsers::Loaded(users) => users,
            _ => &[],
        }
    }
}

struct Entry {
    /// The tenant's CRM section when the list was read: a changed connection is read again.
    crm: String,
    read_at: Instant,
    users: CrmUsers,
    /// The last list read successfully from this connection, kept through failed reads: what
    /// names users where a stale name beats an id ([`known_crm_users`]).
    last_loaded: Vec<User>,
}

/// Per tenant, the last list read. Each tenant has its own lock, so a slow CRM holds up only its
/// own tenant's pages, and two tabs opened at once cause one request.
#[derive(Default)]
pub struct CrmUsersCache {
    tenants: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Entry>>>>>,
}

impl CrmUsersCache {
    fn slot(&self, tenant: &str) -> Arc<tokio::sync::Mutex<Option<Entry>>> {
        let mut all = self
            .tenants
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        all.entry(tenant.to_string()).or_default().clone()
    }
}

/// The tenant's CRM users, from the cache when fresh.
pub async fn crm_users(state: &AppState, tenant: &Tenant) -> CrmUsers {
    let slot = state.crm_users.slot(&tenant.row.id);
    let mut entry = slot.lock().await;
    let crm = tenant.row.crm.to_string();
    if let Some(e) = entry.as_ref() {
        let fresh_for = match e.users {
            CrmUsers::Failed(_) => FAILURE_FRESH_FOR,
            _ => FRESH_FOR,
        };
        if e.crm == crm && e.read_at.elapsed() < fresh_for {
            return e.users.clone();
        }
    }
    let users = read(state, tenant).await;
    let last_loaded = match (&users, entry.take()) {
        (CrmUsers::Loaded(list), _) => list.clone(),
        (_, Some(old)) if old.crm == crm => old.last_loaded,
        _ => Vec::new(),
    };
    *entry = Some(Entry {
        crm,
        read_at: Instant::now(),
        users: users.clone(),
        last_loaded,
    });
    users
}

/// The tenant's CRM users as last read, however long ago, without asking the CRM: for answers
/// that must not spend the account's request budget or wait for it (the entries API). Empty
/// when the list was never read for the tenant's current connection.
pub async fn known_crm_users(state: &AppState, tenant: &Tenant) -> Vec<User> {
    let slot = state.crm_users.slot(&tenant.row.id);
    let entry = slot.lock().await;
    let crm = tenant.row.crm.to_string();
    match entry.as_ref() {
        Some(e) if e.crm == crm => e.last_loaded.clone(),
        _ => Vec::new(),
    }
}

async fn read(state: &AppState, tenant: &Tenant) -> CrmUsers {
    // The account's one client: its limiter counts these reads with the worker's requests.
    let client = match state.crm_client(tenant) {
        Ok(Some(client)) => client,
        Ok(None) => return CrmUsers::NotConnected,
        Err(e) => return CrmUsers::Failed(e.to_string()),
    };
    match tokio::time::timeout(READ_TIMEOUT, client.users()).await {
        Ok(Ok(mut users)) => {
            users.sort_by(|a, b| {
                a.name
                    .to_lowercase()
                    .cmp(&b.name.to_lowercase())
                    .then(a.id.cmp(&b.id))
            });
            CrmUsers::Loaded(users)
        }
        Ok(Err(e)) => {
            tracing::warn!(tenant = %tenant.row.id, error = %e, "CRM users could not be read");
            CrmUsers::Failed(e.to_string())
        }
        Err(_) => CrmUsers::Failed(format!("no answer within {} s", READ_TIMEOUT.as_secs())),
    }
}

/// The CRM users' names by id, for the reasons in words. `ask_crm`: read the list first when it
/// is not fresh (pages); otherwise only what was last read (the API). A failed read keeps the
/// names last read.
pub async fn crm_user_names(
    state: &AppState,
    tenant: &Tenant,
    ask_crm: bool,
) -> std::collections::BTreeMap<callbridge_core::settings::CrmUserId, String> {
    if ask_crm {
        crm_users(state, tenant).await;
    }
    known_crm_users(state, tenant)
        .await
        .into_iter()
        .filter_map(|u| {
            Some((
                callbridge_core::settings::CrmUserId::new(u.id).ok()?,
                u.name,
            ))
        })
        .collect()
}
