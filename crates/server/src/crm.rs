//! A tenant's CRM connection: reading `[tenants.amocrm]`, the client built from it, and the
//! OAuth token store kept in the database.
//!
//! The account's tokens go only to the host they were issued for: `base_url` must be the https
//! origin of an amoCRM or Kommo account ([`callbridge_amocrm::account_origin`]) unless the
//! top-level `allow_insecure_crm_hosts` switch is on (sandboxes, tests); a tenant whose base URL
//! changes loses its stored tokens ([`forget_tokens_if_moved`]); and the stored tokens carry the
//! origin they were issued for, so a path that forgets to drop them still never sends them
//! elsewhere ([`DbTokenStore`]).

use crate::state::now_ms;
use callbridge_amocrm::{AccountConfig, AuthConfig, OAuthTokens, TokenStore, TokenStoreError};
use callbridge_store::Store;
use serde::Deserialize;
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

/// Why a tenant's `amocrm` section cannot be used. Each message starts with the key at fault
/// (`amocrm.base_url: ...`), which the config file's errors prefix with the tenant's key.
#[derive(Debug, thiserror::Error)]
pub enum CrmConnectionError {
    /// Not the section's shape: an unknown key, a wrong type (serde's words).
    #[error("amocrm: {0}")]
    Shape(#[source] serde_json::Error),
    #[error("amocrm.base_url: expected http(s)://..., got {0:?}")]
    NotHttp(String),
    #[error(transparent)]
    BaseUrl(#[from] BaseUrlError),
    #[error(
        "amocrm: give either long_lived_token, or client_id + client_secret + redirect_uri (OAuth)"
    )]
    NoAuth,
    #[error("amocrm.requests_per_second: {0} is outside 1..=7 (amoCRM allows 7 per second)")]
    RequestsPerSecond(u32),
    #[error("amocrm.timeout_seconds: must be above 0")]
    ZeroTimeout,
    /// The client refused the account's configuration.
    #[error("amocrm: {0}")]
    Client(#[source] callbridge_amocrm::Error),
}

/// The parsed CRM connection of a tenant.
#[derive(Debug, Clone)]
pub struct CrmConnection {
    pub account: AccountConfig,
}

/// Reads a tenant's `amocrm` section and checks its base URL against the host rule (see the
/// module docs): the one to use before talking to the CRM. `Ok(None)`: no CRM configured.
pub fn checked_connection(
    crm: &serde_json::Value,
    allow_insecure_hosts: bool,
) -> Result<Option<CrmConnection>, CrmConnectionError> {
    let Some(mut conn) = connection(crm)? else {
        return Ok(None);
    };
    conn.account.base_url =
        callbridge_amocrm::account_origin(&conn.account.base_url, allow_insecure_hosts)
            .map_err(BaseUrlError)?;
    Ok(Some(conn))
}

/// Checks only the host rule of a tenant's `amocrm` section (the start-up check of the config
/// file); a section without a string `base_url` is left to [`connection`]'s own errors.
pub fn check_base_url(
    crm: &serde_json::Value,
    allow_insecure_hosts: bool,
) -> Result<(), BaseUrlError> {
    match crm.get("base_url").and_then(serde_json::Value::as_str) {
        Some(base) => callbridge_amocrm::account_origin(base, allow_insecure_hosts)
            .map(drop)
            .map_err(BaseUrlError),
        None => Ok(()),
    }
}

/// A tenant's `amocrm.base_url` breaks the host rule (see the module docs); says why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("amocrm.base_url: {0}")]
pub struct BaseUrlError(#[source] pub callbridge_amocrm::OriginError);

/// The origin a tenant's `amocrm` section names, lower-cased, when it names one.
fn named_origin(crm: &serde_json::Value) -> Option<String> {
    let base = crm.get("base_url")?.as_str()?;
    // The permissive form: only the comparison matters here, not the rule.
    callbridge_amocrm::account_origin(base, true).ok()
}

/// Drops the tenant's stored OAuth tokens when its CRM account address changes (a new host must
/// never receive the old account's tokens; the new account needs its own consent). True when
/// tokens were dropped.
pub async fn forget_tokens_if_moved(
    store: &Store,
    tenant_id: &str,
    old_crm: Option<&serde_json::Value>,
    new_crm: &serde_json::Value,
) -> Result<bool, callbridge_store::StoreError> {
    let Some(old_crm) = old_crm else {
        return Ok(false);
    };
    if named_origin(old_crm) == named_origin(new_crm) {
        return Ok(false);
    }
    let dropped = store.forget_crm_tokens(tenant_id).await?;
    if dropped {
        tracing::warn!(tenant = %tenant_id, "amocrm.base_url changed: the stored OAuth tokens were dropped; authorize the new account");
        store
            .set_crm_status(
                tenant_id,
                "broken",
                "amocrm.base_url changed: the old account's tokens were dropped; authorize again through /api/v1/tenants/{id}/amocrm/authorize",
                now_ms(),
            )
            .await?;
    }
    Ok(dropped)
}

/// Reads a tenant's `amocrm` section without the host rule (the structure only); see
/// [`checked_connection`]. `Ok(None)`: no CRM configured, nothing is delivered.
pub fn connection(crm: &serde_json::Value) -> Result<Option<CrmConnection>, CrmConnectionError> {
    if crm.is_null() || crm.as_object().is_some_and(|o| o.is_empty()) {
        return Ok(None);
    }
    let section: AmoSection =
        serde_json::from_value(crm.clone()).map_err(CrmConnectionError::Shape)?;
    let base = section.base_url.trim();
    if !(base.starts_with("https://") || base.starts_with("http://")) {
        return Err(CrmConnectionError::NotHttp(section.base_url));
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
        _ => return Err(CrmConnectionError::NoAuth),
    };
    let mut account = AccountConfig::new(base.to_string(), auth);
    if let Some(rps) = section.requests_per_second {
        if rps == 0 || rps > 7 {
            return Err(CrmConnectionError::RequestsPerSecond(rps));
        }
        account.requests_per_second = rps;
    }
    if let Some(t) = section.timeout_seconds {
        if t == 0 {
            return Err(CrmConnectionError::ZeroTimeout);
        }
        account.timeout = Duration::from_secs(t);
    }
    Ok(Some(CrmConnection { account }))
}

/// OAuth tokens of one tenant, kept in the `crm_tokens` table (so every instance sees the one
/// current refresh token), bound to the account origin they were issued for: tokens saved for
/// another origin are not handed out (the client then asks for a new consent), so they cannot
/// reach another host even if a path forgot to drop them.
pub struct DbTokenStore {
    pub store: Store,
    pub tenant_id: String,
    /// The origin of the account the client talks to ([`callbridge_amocrm::account_origin`]).
    pub origin: String,
}

/// The stored form: the tokens and the origin they belong to.
#[derive(serde::Serialize, Deserialize)]
struct BoundTokens {
    #[serde(flatten)]
    tokens: OAuthTokens,
    /// Absent in rows saved before tokens were bound.
    #[serde(default)]
    origin: Option<String>,
}

#[async_trait::async_trait]
impl TokenStore for DbTokenStore {
    async fn load(&self) -> Result<Option<OAuthTokens>, TokenStoreError> {
        let value = self
            .store
            .load_crm_tokens(&self.tenant_id)
            .await
            .map_err(|e| TokenStoreError::new(e.to_string()))?;
        let Some(value) = value else {
            return Ok(None);
        };
        let bound: BoundTokens = serde_json::from_value(value)
            .map_err(|e| TokenStoreError::new(format!("tokens: {e}")))?;
        match bound.origin {
            Some(origin) if origin == self.origin => Ok(Some(bound.tokens)),
            Some(_) => {
                tracing::warn!(tenant = %self.tenant_id, "the stored OAuth tokens were issued for another amoCRM address; not using them (authorize again)");
                Ok(None)
            }
            // Saved before tokens were bound: they belong to the address the tenant names now
            // (a change of address drops them), so bind them to it once.
            None => {
                self.save(&bound.tokens).await?;
                Ok(Some(bound.tokens))
            }
        }
    }

    async fn save(&self, tokens: &OAuthTokens) -> Result<(), TokenStoreError> {
        let value = serde_json::to_value(BoundTokens {
            tokens: tokens.clone(),
            origin: Some(self.origin.clone()),
        })
        .map_err(|e| TokenStoreError::new(e.to_string()))?;
        self.store
            .save_crm_tokens(&self.tenant_id, &value, now_ms())
            .await
            .map_err(|e| TokenStoreError::new(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use callbridge_amocrm::OriginError;
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

    /// Issue 14, item 3: tokens are handed out only for the origin they were saved for, and
    /// tokens saved before binding are bound to the tenant's address once.
    #[tokio::test]
    async fn stored_tokens_are_bound_to_the_account_origin() {
        let dir =
            std::env::temp_dir().join(format!("callbridge-crm-binding-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open(None, &dir).await.unwrap();
        store
            .unlock_secrets(callbridge_store::Keyring::new(
                callbridge_store::SecretKey::from_bytes([7; 32]),
                Vec::new(),
            ))
            .await
            .unwrap();
        let tokens = OAuthTokens {
            access_token: "access".into(),
            refresh_token: "refresh".into(),
            expires_at: 4_000_000_000,
            issued_at: 1_700_000_000,
        };
        let at = |origin: &str| DbTokenStore {
            store: store.clone(),
            tenant_id: "acme".into(),
            origin: origin.into(),
        };
        at("https://acme.amocrm.ru").save(&tokens).await.unwrap();
        assert_eq!(
            at("https://acme.amocrm.ru").load().await.unwrap(),
            Some(tokens.clone())
        );
        assert_eq!(at("https://evil.amocrm.ru").load().await.unwrap(), None);
        // An unbound row (saved by an older version) is bound to the address in use now.
        store
            .save_crm_tokens("acme", &serde_json::to_value(&tokens).unwrap(), 1)
            .await
            .unwrap();
        assert_eq!(
            at("https://acme.kommo.com").load().await.unwrap(),
            Some(tokens.clone())
        );
        assert_eq!(at("https://acme.amocrm.ru").load().await.unwrap(), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_host_rule_is_checked_unless_insecure_hosts_are_allowed() {
        let section = json!({"base_url": "http://127.0.0.1:9", "long_lived_token": "t"});
        let e = checked_connection(&section, false).unwrap_err();
        assert!(
            matches!(
                e,
                CrmConnectionError::BaseUrl(BaseUrlError(OriginError::NotHttps { .. }))
            ),
            "{e:?}"
        );
        assert!(e.to_string().starts_with("amocrm.base_url: "), "{e}");
        assert!(check_base_url(&section, false).is_err());
        assert!(checked_connection(&section, true).unwrap().is_some());
        let c = checked_connection(
            &json!({"base_url": "https://Acme.amocrm.com/", "long_lived_token": "t"}),
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.account.base_url, "https://acme.amocrm.com");
    }

    #[test]
    fn bad_sections_name_the_fault() {
        let e = connection(&json!({"base_url": "ftp://x", "long_lived_token": "t"}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("base_url"), "{e}");
        let e = connection(
            &json!({"base_url": "http://x", "long_lived_token": "t", "requests_per_second": 50}),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("requests_per_second"), "{e}");
        let e = connection(&json!({"base_url": "http://x"}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("long_lived_token"), "{e}");
        let e = connection(&json!({"base_url": "http://x", "token": "t"}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("token"), "{e}");
    }
}
