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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A CRM that answers the first request 429 (an HTML page, as amoCRM does) and then one
    /// page of contacts.
    async fn crm_with_one_429() -> (String, Arc<AtomicUsize>) {
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let app = axum::Router::new().route(
            "/api/v4/contacts",
            axum::routing::get(move || {
                let n = counter.fetch_add(1, Ordering::SeqCst);
                async move {
                    use axum::response::IntoResponse;
                    if n == 0 {
                        (
                            axum::http::StatusCode::TOO_MANY_REQUESTS,
                            "<html>Too Many Requests</html>",
                        )
                            .into_response()
                    } else {
                        axum::Json(serde_json::json!({
                            "_embedded": {"contacts": [{"id": 7, "name": "Known client"}]}
                        }))
                        .into_response()
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        (base, hits)
    }

    #[tokio::test]
    async fn a_429_is_read_again_after_the_clients_pause() {
        let (base, hits) = crm_with_one_429().await;
        let reader = CrmReader::new(&base, "token", 5).expect("reader");
        let contacts = reader.contacts().await.expect("read after the 429");
        assert_eq!(contacts.len(), 1);
        assert_eq!(contacts[0].id, 7);
        assert_eq!(hits.load(Ordering::SeqCst), 2, "one 429, one read");
    }
}
