//! OAuth tokens and where they are kept.

use std::fmt;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::config::REDACTED;

/// An OAuth access/refresh token pair. amoCRM's refresh tokens are single-use: every refresh
/// returns a new pair and the old refresh token stops working, so the pair must be saved
/// before the new access token is used (see the crate docs). `Debug` hides both tokens.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuthTokens {
    pub access_token: String,
    pub refresh_token: String,
    /// When the access token expires, in Unix seconds.
    pub expires_at: i64,
    /// When amoCRM issued the pair, in Unix seconds; 0 when not known (a pair saved before this
    /// was kept). The refresh token dies 3 months after it, so a scheduled refresh goes by it
    /// ([`crate::AmoClient::refresh_if_older_than`]).
    #[serde(default)]
    pub issued_at: i64,
}

impl fmt::Debug for OAuthTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthTokens")
            .field("access_token", &format_args!("{REDACTED}"))
            .field("refresh_token", &format_args!("{REDACTED}"))
            .field("expires_at", &self.expires_at)
            .field("issued_at", &self.issued_at)
            .finish()
    }
}

/// A token store failed; the message says what and must not contain a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TokenStoreError(pub String);

impl TokenStoreError {
    pub fn new(message: impl Into<String>) -> Self {
        TokenStoreError(message.into())
    }
}

/// Durable home of one account's OAuth tokens. Keep exactly one per account: a refresh token
/// works once, so two stores (or two copies of one) for the same account lose the connection on
/// the second refresh.
#[async_trait::async_trait]
pub trait TokenStore: Send + Sync + 'static {
    /// The saved tokens, or `None` before the first authorization.
    async fn load(&self) -> Result<Option<OAuthTokens>, TokenStoreError>;
    /// Persist a new pair. Must be durable when it returns: the client uses the new access token
    /// (and so gives up the old refresh token for good) only after this succeeded.
    async fn save(&self, tokens: &OAuthTokens) -> Result<(), TokenStoreError>;
}

/// A [`TokenStore`] in memory, for tests and the demo. Not durable.
#[derive(Default)]
pub struct MemoryTokenStore {
    tokens: Mutex<Option<OAuthTokens>>,
}

impl MemoryTokenStore {
    /// An empty store: the account must be authorized with
    /// [`crate::AmoClient::exchange_code`] first.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store that already holds `tokens`.
    pub fn with_tokens(tokens: OAuthTokens) -> Self {
        MemoryTokenStore {
            tokens: Mutex::new(Some(tokens)),
        }
    }

    /// What the store holds now.
    pub fn current(&self) -> Option<OAuthTokens> {
        // A poisoned lock only means a panic elsewhere mid-assignment of a plain value; the
        // value itself is still whole, so keep serving it.
        self.tokens
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

#[async_trait::async_trait]
impl TokenStore for MemoryTokenStore {
    async fn load(&self) -> Result<Option<OAuthTokens>, TokenStoreError> {
        Ok(self.current())
    }

    async fn save(&self, tokens: &OAuthTokens) -> Result<(), TokenStoreError> {
        *self
            .tokens
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(tokens.clone());
        Ok(())
    }
}
