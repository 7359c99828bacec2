//! One [`AmoClient`] per tenant's CRM account, shared by everything that talks to it (the
//! outbox worker, the card page's contact lookups), so that amoCRM's 7 requests a second are
//! counted by one limiter. A client is kept while the tenant's CRM section is unchanged (a
//! settings save does not reset the account's window); a changed section gets a new client.

use crate::crm::{self, CrmConnectionError};
use crate::state::Tenant;
use callbridge_amocrm::AmoClient;
use callbridge_store::Store;
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Default)]
pub struct CrmClients {
    /// Per tenant: the CRM section the client was built from, and the client.
    clients: Mutex<HashMap<String, (String, AmoClient)>>,
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
        let mut clients = self
            .clients
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((built_from, client)) = clients.get(&tenant.row.id) {
            if *built_from == section {
                return Ok(Some(client.clone()));
            }
        }
        clients.remove(&tenant.row.id);
        let Some(client) = crm::client(store, &tenant.row, allow_insecure_hosts)? else {
            return Ok(None);
        };
        clients.insert(tenant.row.id.clone(), (section, client.clone()));
        Ok(Some(client))
    }
}
