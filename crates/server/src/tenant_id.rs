//! A tenant's id, checked where it enters: the config file, the admin API's path, a webhook's
//! path. Ids appear in URLs and inside card tokens (split at `.`), so they are held to lower-case
//! letters, digits, `-` and `_`, 1 to 64 characters.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A tenant id that passed [`TenantId::parse`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantId(String);

/// Why a text is not a tenant id; holds the text refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} must be 1-64 characters of a-z, 0-9, '-' and '_'")]
pub struct InvalidTenantId(pub String);

/// The longest id accepted.
pub const TENANT_ID_MAX_CHARS: usize = 64;

impl TenantId {
    pub fn parse(id: &str) -> Result<TenantId, InvalidTenantId> {
        let ok = !id.is_empty()
            && id.len() <= TENANT_ID_MAX_CHARS
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if ok {
            Ok(TenantId(id.to_string()))
        } else {
            Err(InvalidTenantId(id.to_string()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl TryFrom<String> for TenantId {
    type Error = InvalidTenantId;

    fn try_from(id: String) -> Result<TenantId, InvalidTenantId> {
        TenantId::parse(&id)
    }
}

impl From<TenantId> for String {
    fn from(id: TenantId) -> String {
        id.0
    }
}

/// Read as text wherever the store and the routes take `&str` (see `docs/architecture.md`).
impl std::ops::Deref for TenantId {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for TenantId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_safe_ids_are_accepted() {
        for id in ["acme", "a", "shop-2_b", &"x".repeat(TENANT_ID_MAX_CHARS)] {
            assert_eq!(
                TenantId::parse(id).map(|t| t.to_string()),
                Ok(id.to_string())
            );
        }
    }

    #[test]
    fn other_ids_are_refused_naming_the_text() {
        for id in ["", "Acme", "a.b", "a/b", "a b", "тест", &"x".repeat(65)] {
            let err = TenantId::parse(id).unwrap_err();
            assert_eq!(err, InvalidTenantId(id.to_string()));
            assert!(err.to_string().contains("a-z, 0-9"), "{err}");
        }
    }

    #[test]
    fn reads_and_writes_as_a_string() {
        let id: TenantId = serde_json::from_str("\"acme\"").unwrap();
        assert_eq!(id.as_str(), "acme");
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"acme\"");
        assert!(serde_json::from_str::<TenantId>("\"a.b\"")
            .unwrap_err()
            .to_string()
            .contains("must be 1-64 characters"));
    }
}
