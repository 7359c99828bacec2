//! A tenant's CRM connection: reading `[tenants.amocrm]`, the client built from it, and the
//! OAuth token store kept in the database.

use crate::state::now_ms;
use callbridge_amocrm::{
    AccountConfig, AmoClient, AuthConfig, OAuthTokens, TokenStore, TokenStoreError,
};
use callbridge_store::{Store, TenantRow};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

/// `[tenants.amocrm]` as written in the config file or sent to the admin API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct AmoSection {
    base_url: String,
    #[serde(default)]
    long_lived_token: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    client_secret: Option<String>,
    #[serde(default)]
    redirect_uri: Option<String>,
    #[serde(default)]
    requests_per_second: Option<u32>,
    #[serde(default)]
    timeout_seconds: Option<u64>,
}

/// The parsed CRM connection of a tenant.
#[derive(Debug, Clone)]
pub struct CrmConnection {
    pub account: AccountConfig,
}

/// Reads a tenant's `amocrm` section. `Ok(None)`: no CRM configured, nothing is delivered.
pub fn connection(crm: &serde_json::Value) -> Result<Option<CrmConnection>, String> {
    if crm.is_null() || crm.as_object().is_some_and(|o| o.is_empty()) {
        return Ok(None);
    }
    let section: AmoSection =
        serde_json::from_value(crm.clone()).map_err(|e| format!("amocrm: {e}"))?;
    let base = section.base_url.trim();
    if !(base.starts_with("https://") || base.starts_with("http://")) {
        return Err(format!(
            "amocrm.base_url: expected http(s)://..., got {:?}",
            section.base_url
        ));
    }
    let auth = match (
        section.long_lived_token,
        section.client_id,
        section.client_secret,
        section.redirect_uri,
    ) {
        (Some(token), None, None, None) if !token.trim().is_empty() => {
            AuthConfig::LongLived { token }
        }
        (None, Some(client_id), Some(client_secret), Some(redirect_uri)) => AuthConfig::OAuth {
            client_id,
            client_secret,
            redirect_uri,
        },
        _ => {
            return Err("amocrm: give either long_lived_token, or client_id + client_secret + redirect_uri (OAuth)".into())
        }
    };
    let mut account = AccountConfig::new(base.to_string(), auth);
    if let Some(rps) = section.requests_per_second {
        if rps == 0 || rps > 7 {
            return Err(format!(
                "amocrm.requests_per_second: {rps} is outside 1..=7 (amoCRM allows 7 per second)"
            ));
        }
        account.requests_per_second = rps;
    }
    if let Some(t) = section.timeout_seconds {
        if t == 0 {
            return Err("amocrm.timeout_seconds: must be above 0".into());
        }
        account.timeout = Duration::from_secs(t);
    }
    Ok(Some(CrmConnection { account }))
}

/// OAuth tokens of one tenant, kept in the `crm_tokens` table (so every instance sees the one
/// current refresh token).
pub struct DbTokenStore {
    pub store: Store,
    pub tenant_id: String,
}

#[async_trait::async_trait]
impl TokenStore for DbTokenStore {
    async fn load(&self) -> Result<Option<OAuthTokens>, TokenStoreError> {
        let value = self
            .store
            .load_crm_tokens(&self.tenant_id)
            .await
            .map_err(|e| TokenStoreError::new(e.to_string()))?;
        value
            .map(|v| {
                serde_json::from_value(v).map_err(|e| TokenStoreError::new(format!("tokens: {e}")))
            })
            .transpose()
    }

    async fn save(&self, tokens: &OAuthTokens) -> Result<(), TokenStoreError> {
        let value =
            serde_json::to_value(tokens).map_err(|e| TokenStoreError::new(e.to_string()))?;
        self.store
            .save_crm_tokens(&self.tenant_id, &value, now_ms())
            .await
            .map_err(|e| TokenStoreError::new(e.to_string()))
    }
}

/// The client of a tenant's CRM account.
pub fn client(store: &Store, row: &TenantRow) -> Result<Option<AmoClient>, String> {
    let Some(conn) = connection(&row.crm)? else {
        return Ok(None);
    };
    let tokens = Arc::new(DbTokenStore {
        store: store.clone(),
        tenant_id: row.id.clone(),
    });
    AmoClient::new(conn.account, tokens)
        .map(Some)
        .map_err(|e| format!("amocrm: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_long_lived_and_oauth_sections() {
        let c = connection(&json!({"base_url": "http://127.0.0.1:9", "long_lived_token": "t0ken"}))
            .unwrap()
            .unwrap();
        assert_eq!(c.account.requests_per_second, 7);
        assert!(matches!(c.account.auth, AuthConfig::LongLived { .. }));
        let c = connection(&json!({"base_url": "https://a.amocrm.ru", "client_id": "id", "client_secret": "s", "redirect_uri": "https://x/cb", "requests_per_second": 5}))
            .unwrap()
            .unwrap();
        assert_eq!(c.account.requests_per_second, 5);
        assert!(connection(&serde_json::Value::Null).unwrap().is_none());
    }

    #[test]
    fn bad_sections_name_the_fault() {
        let e = connection(&json!({"base_url": "ftp://x", "long_lived_token": "t"})).unwrap_err();
        assert!(e.contains("base_url"), "{e}");
        let e = connection(
            &json!({"base_url": "http://x", "long_lived_token": "t", "requests_per_second": 50}),
        )
        .unwrap_err();
        assert!(e.contains("requests_per_second"), "{e}");
        let e = connection(&json!({"base_url": "http://x"})).unwrap_err();
        assert!(e.contains("long_lived_token"), "{e}");
        let e = connection(&json!({"base_url": "http://x", "token": "t"})).unwrap_err();
        assert!(e.contains("token"), "{e}");
    }
}
