//! The client's CRM contact and open leads for a card, looked up by phone when the card
//! appears: through the tenant's one client (its limiter holds amoCRM's 7 requests a second),
//! at most once a minute per (tenant, phone), so a group of ten phones ringing for one client
//! makes one lookup (the first asks, the others wait for its answer).

use crate::state::{AppState, Tenant};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long an answer is used before the CRM is asked again.
const FRESH_FOR: Duration = Duration::from_secs(60);
/// A failed lookup is tried again sooner: the CRM may be back.
const FAILURE_FRESH_FOR: Duration = Duration::from_secs(10);
/// A card never waits longer than this for the CRM.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(8);
/// Contacts and leads shown on a card at most.
const SHOWN: usize = 3;
/// Places of the account's 7 a second a lookup leaves to the worker's calls (as follow-ups do).
const CALLS_RESERVE: usize = 3;
/// Past this many remembered phones, stale answers are dropped.
const PRUNE_ABOVE: usize = 1_000;

/// What the CRM said about a card's client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "crm", rename_all = "snake_case")]
pub enum CrmLookup {
    Found {
        contacts: Vec<FoundContact>,
    },
    /// The CRM knows no contact with this number.
    NotFound,
    /// The tenant has no CRM connection.
    NotConnected,
    /// The CRM could not be asked (no answer, refused); the card still shows the number.
    Unavailable,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FoundContact {
    pub name: String,
    pub url: String,
    /// The contact's open leads (neither won nor lost).
    pub leads: Vec<FoundLead>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FoundLead {
    pub name: String,
    pub url: String,
}

type Slot = Arc<tokio::sync::Mutex<Option<(Instant, CrmLookup)>>>;

/// Answers per (tenant, phone).
#[derive(Default)]
pub struct ContactCache {
    slots: Mutex<HashMap<(String, String), Slot>>,
}

impl ContactCache {
    fn slot(&self, tenant: &str, phone: &str) -> Slot {
        let mut slots = self
            .slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if slots.len() > PRUNE_ABOVE {
            // A slot being filled is locked: kept.
            slots.retain(|_, slot| match slot.try_lock() {
                Ok(answer) => answer
                    .as_ref()
                    .is_some_and(|(at, _)| at.elapsed() < FRESH_FOR),
                Err(_) => true,
            });
        }
        slots
            .entry((tenant.to_string(), phone.to_string()))
            .or_default()
            .clone()
    }
}

/// The client's contact and open leads, from the cache when fresh.
pub async fn lookup(state: &AppState, tenant: &Tenant, phone: &str) -> CrmLookup {
    let slot = state.card_pages.contacts.slot(&tenant.row.id, phone);
    let mut answer = slot.lock().await;
    if let Some((at, found)) = answer.as_ref() {
        let fresh_for = match found {
            CrmLookup::Unavailable => FAILURE_FRESH_FOR,
            _ => FRESH_FOR,
        };
        if at.elapsed() < fresh_for {
            return found.clone();
        }
    }
    let found = ask(state, tenant, phone).await;
    *answer = Some((Instant::now(), found.clone()));
    found
}

async fn ask(state: &AppState, tenant: &Tenant, phone: &str) -> CrmLookup {
    let client = match state.crm_client(tenant) {
        Ok(Some(client)) => client,
        Ok(None) => return CrmLookup::NotConnected,
        Err(e) => {
            tracing::warn!(tenant = %tenant.row.id, error = %e, "card contact: CRM connection not usable");
            return CrmLookup::Unavailable;
        }
    };
    // Calls keep their places of the account's window: a card's lookup waits like a follow-up.
    let client = client.background(CALLS_RESERVE);
    let base = client.base_url().to_string();
    let asked = async {
        let contacts = client.find_contacts_by_phone(phone).await?;
        let contacts: Vec<_> = contacts.into_iter().take(SHOWN).collect();
        let lead_ids: Vec<u64> = contacts.iter().flat_map(|c| c.lead_ids.clone()).collect();
        let leads = if lead_ids.is_empty() {
            Vec::new()
        } else {
            client.leads_by_ids(&lead_ids).await?
        };
        Ok::<_, callbridge_amocrm::Error>((contacts, leads))
    };
    let (contacts, leads) = match tokio::time::timeout(LOOKUP_TIMEOUT, asked).await {
        Ok(Ok(found)) => found,
        Ok(Err(e)) => {
            tracing::warn!(tenant = %tenant.row.id, error = %e, "card contact: the CRM could not be asked");
            return CrmLookup::Unavailable;
        }
        Err(_) => {
            tracing::warn!(tenant = %tenant.row.id, "card contact: no answer from the CRM in time");
            return CrmLookup::Unavailable;
        }
    };
    if contacts.is_empty() {
        return CrmLookup::NotFound;
    }
    CrmLookup::Found {
        contacts: contacts
            .into_iter()
            .map(|c| FoundContact {
                url: format!("{base}/contacts/detail/{}", c.id),
                leads: leads
                    .iter()
                    .filter(|l| l.is_open() && c.lead_ids.contains(&l.id))
                    .take(SHOWN)
                    .map(|l| FoundLead {
                        name: l.name.clone(),
                        url: format!("{base}/leads/detail/{}", l.id),
                    })
                    .collect(),
                name: c.name,
            })
            .collect(),
    }
}
