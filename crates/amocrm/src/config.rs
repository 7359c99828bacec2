//! How to reach one amoCRM account. `Debug` never shows a secret.

use std::fmt;
use std::time::Duration;

/// amoCRM's documented limit is 7 requests per second.
pub const DEFAULT_REQUESTS_PER_SECOND: u32 = 7;
/// The official library's whole-request timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);

/// One CRM account: where it is, how to authorize, and how fast to talk to it. The derived
/// `Debug` is safe: [`AuthConfig`]'s own `Debug` hides the secrets.
#[derive(Clone, Debug)]
pub struct AccountConfig {
    /// The account's own host, e.g. `https://acme.amocrm.ru` (or a local stand-in such as
    /// `http://127.0.0.1:8080`). A trailing slash is tolerated.
    pub base_url: String,
    pub auth: AuthConfig,
    /// At most this many requests start in any sliding second (see the crate docs).
    pub requests_per_second: u32,
    /// Whole-request timeout, body included.
    pub timeout: Duration,
}

impl AccountConfig {
    /// A configuration with the default rate (7/s) and timeout (20 s).
    pub fn new(base_url: impl Into<String>, auth: AuthConfig) -> Self {
        AccountConfig {
            base_url: base_url.into(),
            auth,
            requests_per_second: DEFAULT_REQUESTS_PER_SECOND,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// How requests are authorized.
#[derive(Clone)]
pub enum AuthConfig {
    /// A private integration's long-lived token: no refresh; a 401 means it expired or was
    /// revoked.
    LongLived { token: String },
    /// OAuth 2.0 authorization-code flow: tokens live in the [`crate::TokenStore`] and are
    /// refreshed by the client.
    OAuth {
        client_id: String,
        client_secret: String,
        redirect_uri: String,
    },
}

/// What `Debug` prints in place of a secret.
pub(crate) const REDACTED: &str = "<redacted>";

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthConfig::LongLived { .. } => f
                .debug_struct("LongLived")
                .field("token", &format_args!("{REDACTED}"))
                .finish(),
            // The client id and redirect URI are public (they appear in the browser's OAuth
            // URL); only the secret is hidden.
            AuthConfig::OAuth {
                client_id,
                redirect_uri,
                ..
            } => f
                .debug_struct("OAuth")
                .field("client_id", client_id)
                .field("client_secret", &format_args!("{REDACTED}"))
                .field("redirect_uri", redirect_uri)
                .finish(),
        }
    }
}
