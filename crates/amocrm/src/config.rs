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

/// The hosts amoCRM and Kommo serve accounts on: `{subdomain}.amocrm.ru`, `.amocrm.com`,
/// `.kommo.com`.
pub const ACCOUNT_HOST_SUFFIXES: &[&str] = &[".amocrm.ru", ".amocrm.com", ".kommo.com"];

/// The rule an account's base URL must follow, as every [`OriginError`] states it.
const ORIGIN_RULE: &str = "must be the https origin of an amoCRM or Kommo account, \
                           e.g. https://acme.amocrm.ru (hosts *.amocrm.ru, *.amocrm.com, *.kommo.com)";
/// How to admit a sandbox's address instead.
const INSECURE_HINT: &str = "allow_insecure_crm_hosts = true admits other hosts, for sandboxes";

/// Why a base URL is not an account origin ([`account_origin`]). Each message states the rule
/// and quotes no more of the URL than the caller gave (never a user name or password).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginError {
    #[error("{text:?} is not a URL ({reason}); {ORIGIN_RULE}")]
    NotAUrl { text: String, reason: String },
    #[error("must not carry a user name or password; {ORIGIN_RULE}")]
    Credentials,
    #[error("{text:?} must not have a query or fragment; {ORIGIN_RULE}")]
    QueryOrFragment { text: String },
    #[error("{text:?} must not have a path; {ORIGIN_RULE}")]
    Path { text: String },
    #[error("{text:?} has no host; {ORIGIN_RULE}")]
    NoHost { text: String },
    /// With `allow_any_host`: still only http(s).
    #[error("{text:?} must be an http(s) URL")]
    NotHttp { text: String },
    #[error("{text:?} is not https; {ORIGIN_RULE} ({INSECURE_HINT})")]
    NotHttps { text: String },
    #[error(
        "host {host:?} is not an amoCRM or Kommo account host; {ORIGIN_RULE} ({INSECURE_HINT})"
    )]
    NotAccountHost { host: String },
    #[error("{text:?} must not name a port; {ORIGIN_RULE}")]
    Port { text: String },
}

/// Checks an account's base URL and returns its origin (`https://acme.amocrm.ru`), the form
/// tokens are bound to.
///
/// The URL receives the account's tokens, so it must be the origin of an amoCRM or Kommo
/// account: `https`, a host `{subdomain}.amocrm.ru|.amocrm.com|.kommo.com` with one label
/// before the suffix, no port, no user or password, no path beyond `/`, no query or fragment.
/// `allow_any_host` (for sandboxes and tests) admits `http` and any host, still as a bare
/// origin. The error says which rule failed, never more of the URL than the caller gave.
pub fn account_origin(base_url: &str, allow_any_host: bool) -> Result<String, OriginError> {
    let text = base_url.trim();
    let quoted = || text.to_string();
    let url = reqwest::Url::parse(text).map_err(|e| OriginError::NotAUrl {
        text: quoted(),
        reason: e.to_string(),
    })?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(OriginError::Credentials);
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(OriginError::QueryOrFragment { text: quoted() });
    }
    if !matches!(url.path(), "" | "/") {
        return Err(OriginError::Path { text: quoted() });
    }
    let Some(host) = url.host_str().map(str::to_ascii_lowercase) else {
        return Err(OriginError::NoHost { text: quoted() });
    };
    let scheme = url.scheme();
    if allow_any_host {
        if !matches!(scheme, "http" | "https") {
            return Err(OriginError::NotHttp { text: quoted() });
        }
    } else {
        if scheme != "https" {
            return Err(OriginError::NotHttps { text: quoted() });
        }
        let account = ACCOUNT_HOST_SUFFIXES
            .iter()
            .find_map(|suffix| host.strip_suffix(suffix));
        let one_label = account.is_some_and(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        });
        if !one_label {
            return Err(OriginError::NotAccountHost { host });
        }
        if url.port().is_some() {
            return Err(OriginError::Port { text: quoted() });
        }
    }
    Ok(match url.port() {
        Some(port) => format!("{scheme}://{host}:{port}"),
        None => format!("{scheme}://{host}"),
    })
}

#[cfg(test)]
mod tests {
    use super::account_origin;

    #[test]
    fn only_amocrm_and_kommo_account_origins_pass_the_strict_rule() {
        for (url, origin) in [
            ("https://acme.amocrm.ru", "https://acme.amocrm.ru"),
            ("https://Acme.amoCRM.ru/", "https://acme.amocrm.ru"),
            ("https://acme.amocrm.com", "https://acme.amocrm.com"),
            (" https://acme-2.kommo.com/ ", "https://acme-2.kommo.com"),
        ] {
            assert_eq!(account_origin(url, false).as_deref(), Ok(origin), "{url}");
        }
        for url in [
            "http://acme.amocrm.ru",
            "https://evil.example.com",
            "https://acme.amocrm.ru.evil.com",
            "https://evilamocrm.ru",
            "https://amocrm.ru",
            "https://a.b.amocrm.ru",
            "https://user:pw@acme.amocrm.ru",
            "https://user@acme.amocrm.ru",
            "https://acme.amocrm.ru/api",
            "https://acme.amocrm.ru/?x=1",
            "https://acme.amocrm.ru:8443",
            "https://127.0.0.1",
            "http://127.0.0.1:8090",
            "ftp://acme.amocrm.ru",
            "acme.amocrm.ru",
        ] {
            let e = account_origin(url, false).expect_err(url).to_string();
            assert!(e.contains("amoCRM"), "{url}: {e}");
            assert!(!e.contains("pw@"), "{url}: {e}");
        }
    }

    #[test]
    fn each_refusal_names_the_rule_it_breaks() {
        use super::OriginError as E;
        let text = |t: &str| t.to_string();
        for (url, expected) in [
            ("acme.amocrm.ru", None),
            ("https://user:pw@acme.amocrm.ru", Some(E::Credentials)),
            (
                "https://acme.amocrm.ru/?x=1",
                Some(E::QueryOrFragment {
                    text: text("https://acme.amocrm.ru/?x=1"),
                }),
            ),
            (
                "https://acme.amocrm.ru/api",
                Some(E::Path {
                    text: text("https://acme.amocrm.ru/api"),
                }),
            ),
            (
                "http://acme.amocrm.ru",
                Some(E::NotHttps {
                    text: text("http://acme.amocrm.ru"),
                }),
            ),
            (
                "https://evil.example.com",
                Some(E::NotAccountHost {
                    host: text("evil.example.com"),
                }),
            ),
            (
                "https://acme.amocrm.ru:8443",
                Some(E::Port {
                    text: text("https://acme.amocrm.ru:8443"),
                }),
            ),
        ] {
            let e = account_origin(url, false).expect_err(url);
            match expected {
                Some(expected) => assert_eq!(e, expected, "{url}"),
                None => assert!(matches!(e, E::NotAUrl { .. }), "{url}: {e:?}"),
            }
        }
        // The message is the one the config check has always shown.
        assert_eq!(
            account_origin("http://acme.amocrm.ru", false)
                .expect_err("http")
                .to_string(),
            "\"http://acme.amocrm.ru\" is not https; must be the https origin of an amoCRM or \
             Kommo account, e.g. https://acme.amocrm.ru (hosts *.amocrm.ru, *.amocrm.com, \
             *.kommo.com) (allow_insecure_crm_hosts = true admits other hosts, for sandboxes)"
        );
        assert!(matches!(
            account_origin("ftp://127.0.0.1", true),
            Err(E::NotHttp { .. })
        ));
    }

    #[test]
    fn the_insecure_switch_admits_loopback_but_still_only_an_origin() {
        assert_eq!(
            account_origin("http://127.0.0.1:8090/", true).as_deref(),
            Ok("http://127.0.0.1:8090")
        );
        assert!(account_origin("http://u:p@127.0.0.1:8090", true).is_err());
        assert!(account_origin("http://127.0.0.1:8090/x", true).is_err());
        assert!(account_origin("ftp://127.0.0.1", true).is_err());
    }
}
