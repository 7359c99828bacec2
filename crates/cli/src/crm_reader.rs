//! Reading an amoCRM account (in practice the sandbox) back after delivery, as an integration
//! would: through the amocrm client, whose limiter paces the reads. A 429 (the account's second
//! still full of the service's last requests) makes the client pause the account; the read is
//! then tried again, and waits out that pause by itself.

use anyhow::{anyhow, bail, Result};
use callbridge_amocrm::{
    AccountConfig, AmoClient, AuthConfig, Contact, EntityType, Error as CrmError, Lead,
    MemoryTokenStore, Note, NotesFilter, Task, TasksFilter, Unsorted,
};
use std::future::Future;
use std::sync::Arc;

/// Attempts of one read that keeps getting 429.
const ATTEMPTS: usize = 5;

pub struct CrmReader {
    client: AmoClient,
}

impl CrmReader {
    /// A reader of the account at `base_url` with a long-lived token, sending at most
    /// `requests_per_second` requests in any second.
    pub fn new(base_url: &str, token: &str, requests_per_second: u32) -> Result<CrmReader> {
        let mut config = AccountConfig::new(
            base_url,
            AuthConfig::LongLived {
                token: token.to_string(),
            },
        );
        config.requests_per_second = requests_per_second;
        let client = AmoClient::new(config, Arc::new(MemoryTokenStore::new()))
            .map_err(|e| anyhow!("amoCRM reader: {e}"))?;
        Ok(CrmReader { client })
    }

    /// Every call note (`call_in`, `call_out`) on entities of one kind.
    pub async fn call_notes(&self, entity: EntityType) -> Result<Vec<Note>> {
        let filter = NotesFilter {
            note_types: vec!["call_in".into(), "call_out".into()],
            ..NotesFilter::default()
        };
        self.read(&format!("{entity} call notes"), || {
            self.client.list_notes(entity, &filter)
        })
        .await
    }

    pub async fn contacts(&self) -> Result<Vec<Contact>> {
        self.read("contacts", || self.client.contacts()).await
    }

    pub async fn leads(&self) -> Result<Vec<Lead>> {
        self.read("leads", || self.client.leads()).await
    }

    pub async fn tasks(&self) -> Result<Vec<Task>> {
        let all = TasksFilter::default();
        self.read("tasks", || self.client.list_tasks(&all)).await
    }

    pub async fn unsorted(&self) -> Result<Vec<Unsorted>> {
        self.read("unsorted requests", || self.client.unsorted())
            .await
    }

    /// One read, again after a 429, a few times.
    async fn read<T, F, Fut>(&self, what: &str, read: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, CrmError>>,
    {
        for _ in 0..ATTEMPTS {
            match read().await {
                Err(CrmError::RateLimited) => continue,
                Err(e) => bail!("reading the CRM's {what}: {e}"),
                Ok(items) => return Ok(items),
            }
        }
        bail!("reading the CRM's {what}: still rate limited after {ATTEMPTS} attempts")
    }
}
