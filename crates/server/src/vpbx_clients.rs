//! One Mango VPBX API client per API key, shared by everything that calls the API for a tenant
//! (the outbox worker's transcripts, the directory refresh, reconciliation, recording links), on
//! one HTTP client for all of them.
//!
//! Why shared: a [`VpbxClient`] spaces its requests per endpoint, as Mango asks, and that
//! spacing holds only if every caller of a key goes through the same client. And an HTTP client
//! each (its own connection pool and TLS setup) cost time and memory per tenant at start-up
//! with thousands of tenants, for an API that is one host.

use crate::sync::lock;
use callbridge_mango::api::{http_client, ApiError, VpbxClient};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

#[derive(Default)]
pub struct VpbxClients {
    /// By base URL and API key.
    clients: Mutex<HashMap<(String, String), VpbxClient>>,
    /// The HTTP client of every API client, built on first use.
    http: OnceLock<reqwest::Client>,
}

impl VpbxClients {
    /// The client for `api_key` at `base_url`, made on first use; a changed salt gets a new one.
    pub fn client(
        &self,
        base_url: &str,
        api_key: &str,
        api_salt: &str,
    ) -> Result<VpbxClient, ApiError> {
        let key = (base_url.to_owned(), api_key.to_owned());
        let mut clients = lock(&self.clients);
        if let Some(client) = clients.get(&key) {
            if client.signs_with(api_key, api_salt) {
                return Ok(client.clone());
            }
        }
        let client = VpbxClient::with_http(base_url, api_key, api_salt, self.http()?)?;
        clients.insert(key, client.clone());
        Ok(client)
    }

    /// A client used once (a connection test with keys not saved yet): on the shared HTTP
    /// client, not kept.
    pub fn one_off(
        &self,
        base_url: &str,
        api_key: &str,
        api_salt: &str,
    ) -> Result<VpbxClient, ApiError> {
        VpbxClient::with_http(base_url, api_key, api_salt, self.http()?)
    }

    /// Forgets the clients of keys no tenant uses any more.
    pub fn retain_keys<'a>(&self, in_use: impl IntoIterator<Item = &'a str>) {
        let in_use: std::collections::HashSet<&str> = in_use.into_iter().collect();
        lock(&self.clients).retain(|(_, key), _| in_use.contains(key.as_str()));
    }

    fn http(&self) -> Result<reqwest::Client, ApiError> {
        if let Some(http) = self.http.get() {
            return Ok(http.clone());
        }
        let http = http_client()?;
        Ok(self.http.get_or_init(|| http).clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_client_per_key_and_a_changed_salt_gets_a_new_one() {
        let clients = VpbxClients::default();
        let url = "http://mango.test/vpbx/";
        let a = clients.client(url, "key-a", "salt-1").unwrap();
        assert!(a.signs_with("key-a", "salt-1"));
        // The same key again: the same client (its request spacing is shared).
        let again = clients.client(url, "key-a", "salt-1").unwrap();
        assert!(again.same_as(&a));
        // A changed salt: a new client signing with it, in the old one's place.
        let resalted = clients.client(url, "key-a", "salt-2").unwrap();
        assert!(resalted.signs_with("key-a", "salt-2") && !resalted.same_as(&a));
        assert!(clients
            .client(url, "key-a", "salt-2")
            .unwrap()
            .same_as(&resalted));
        // Another key, another client; a key no tenant uses is forgotten.
        let b = clients.client(url, "key-b", "salt-1").unwrap();
        assert!(!b.same_as(&resalted));
        clients.retain_keys(["key-b"]);
        assert_eq!(lock(&clients.clients).len(), 1);
        // A bad base URL is an error naming it, not a panic.
        let err = clients.client("ftp://x", "key-c", "s").unwrap_err();
        assert!(err.to_string().contains("ftp://x"), "{err}");
    }
}
