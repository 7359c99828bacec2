//! One [`AmoClient`] per tenant's CRM connection, shared by everything that talks to it (the
//! outbox worker, the card page's contact lookups, the Connections page, the OAuth exchange),
//! and one limiter per CRM *account*, shared by the clients of every tenant connected to it:
//! amoCRM counts its 7 requests a second per account, whoever sends them, so two PBX accounts
//! of one business on one CRM, or a test tenant beside the real one, must queue in one window.
//!
//! The account is known by its origin (`https://acme.amocrm.ru`, lower-cased, see
//! [`callbridge_amocrm::account_origin`]): an amoCRM account is one subdomain, and the origin is
//! known before the first request, which the account's id (from `/api/v4/account`) is not; the
//! limiter must already count that request. Every client also shares one HTTP client (one
//! connection pool per host). A client is kept while the tenant's CRM section is unchanged (a
//! settings save does not reset the account's window); a changed section gets a new client, on
//! the same account limiter when it names the same account.

use crate::crm::{self, CrmConnectionError, DbTokenStore};
use crate::state::Tenant;
use crate::sync::lock;
use callbridge_amocrm::{AccountLimiter, AmoClient};
use callbridge_store::Store;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

#[derive(Default)]
pub struct CrmClients {
    /// Per tenant: the CRM section the client was built from, and the client.
    clients: Mutex<HashMap<String, (String, AmoClient)>>,
    /// Per account origin: the limiter every client of that account counts in.
    accounts: Mutex<HashMap<String, AccountLimiter>>,
    /// The HTTP client of every CRM client, built on first use.
    http: OnceLock<reqwest::Client>,
}

impl CrmClients {
    /// The tenant's client (`None`: no CRM configured), built on first use.
    pub fn client(
        &self,
        store: &Store,
        tenant: &Tenant,
        allow_insecure_hosts: bool,
    ) -> Result<Option<AmoClient>, CrmConnectionError> {
        let section = tenant.row.crm.to_string();
        let mut clients = lock(&self.clients);
        if let Some((built_from, client)) = clients.get(&tenant.row.id) {
            if *built_from == section {
                return Ok(Some(client.clone()));
            }
        }
        clients.remove(&tenant.row.id);
        let Some(conn) = crm::checked_connection(&tenant.row.crm, allow_insecure_hosts)? else {
            return Ok(None);
        };
        let origin = conn.account.base_url.clone();
        let tokens = Arc::new(DbTokenStore {
            store: store.clone(),
            tenant_id: tenant.row.id.clone(),
            origin: origin.clone(),
        });
        let http = match self.http.get() {
            Some(http) => http.clone(),
            None => {
                let built =
                    callbridge_amocrm::shared_http_client().map_err(CrmConnectionError::Client)?;
                self.http.get_or_init(|| built).clone()
            }
        };
        let limiter = self.account_limiter(&origin, conn.account.requests_per_second);
        let client = AmoClient::with_shared(conn.account, tokens, limiter, http)
            .map_err(CrmConnectionError::Client)?;
        clients.insert(tenant.row.id.clone(), (section, client.clone()));
        Ok(Some(client))
    }

    /// The account's limiter, made on first use. Limiters no client holds any more (every
    /// tenant of that account left or moved) are dropped on the way.
    fn account_limiter(&self, origin: &str, requests_per_second: u32) -> AccountLimiter {
        let mut accounts = lock(&self.accounts);
        accounts.retain(|_, limiter| limiter.handles() > 1);
        accounts
            .entry(origin.to_string())
            .or_insert_with(|| AccountLimiter::new(requests_per_second))
            .clone()
    }

    /// Forgets a deleted tenant's client (its account's limiter stays while others use it).
    pub fn forget(&self, tenant_id: &str) {
        lock(&self.clients).remove(tenant_id);
    }
}

/// The CRM account a tenant's `amocrm` section names (its origin, as the limiter and the
/// delivery lease know it); `None` without a usable section.
pub fn account_of(tenant: &Tenant) -> Option<String> {
    let base = tenant.row.crm.get("base_url")?.as_str()?;
    callbridge_amocrm::account_origin(base, true).ok()
}

/// The other tenants connected to the CRM account `tenant` names, sorted; empty when it names
/// none or shares it with nobody. A scan of the tenants in memory: read for one tenant's page,
/// never on a hot path.
pub fn sharing_account<'a>(
    tenant: &Tenant,
    tenants: impl IntoIterator<Item = &'a Arc<Tenant>>,
) -> Vec<String> {
    let Some(account) = account_of(tenant) else {
        return Vec::new();
    };
    let mut others: Vec<String> = tenants
        .into_iter()
        .filter(|other| other.row.id != tenant.row.id)
        .filter(|other| account_of(other).as_deref() == Some(account.as_str()))
        .map(|other| other.row.id.clone())
        .collect();
    others.sort();
    others
}

/// "N tenants, M with a CRM (K accounts)": the start's summary line.
pub fn tenant_summary<'a>(tenants: impl IntoIterator<Item = &'a Arc<Tenant>>) -> String {
    let mut all = 0;
    let mut with_crm = 0;
    let mut accounts = std::collections::HashSet::new();
    for tenant in tenants {
        all += 1;
        if let Some(account) = account_of(tenant) {
            with_crm += 1;
            accounts.insert(account);
        }
    }
    let plural =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    format!(
        "{}, {with_crm} with a CRM ({})",
        plural(all, "tenant", "tenants"),
        plural(accounts.len(), "account", "accounts")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use callbridge_store::TenantRow;

    fn tenant(id: &str, crm: serde_json::Value) -> Arc<Tenant> {
        Arc::new(
            Tenant::from_row(TenantRow {
                id: id.into(),
                mango_api_key: format!("key-{id}"),
                mango_api_salt: "salt".into(),
                settings_toml: String::new(),
                crm,
                updated_at_ms: 1,
            })
            .unwrap(),
        )
    }

    #[test]
    fn tenants_on_one_account_are_found_and_counted_by_its_origin() {
        let section = |base: &str| serde_json::json!({"base_url": base, "long_lived_token": "t"});
        let tenants = [
            tenant("a", section("https://Acme.amocrm.ru/")),
            tenant("b", section("https://acme.amocrm.ru")),
            tenant("c", section("https://other.amocrm.ru")),
            tenant("d", serde_json::Value::Null),
        ];
        assert_eq!(
            account_of(&tenants[0]).as_deref(),
            Some("https://acme.amocrm.ru")
        );
        assert_eq!(sharing_account(&tenants[0], &tenants), ["b"]);
        assert!(sharing_account(&tenants[2], &tenants).is_empty());
        assert!(sharing_account(&tenants[3], &tenants).is_empty());
        assert_eq!(
            tenant_summary(&tenants),
            "4 tenants, 3 with a CRM (2 accounts)"
        );
        assert_eq!(
            tenant_summary(&tenants[..1]),
            "1 tenant, 1 with a CRM (1 account)"
        );
    }
}
