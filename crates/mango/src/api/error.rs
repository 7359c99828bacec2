//! What a request to the Mango VPBX API can end in, with Mango's codes explained.

/// What went wrong with a request. No variant ever holds the API salt.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The client could not be built (bad base URL, TLS set-up).
    #[error("Mango API client configuration: {0}")]
    Config(String),
    /// Mango rejected the signature (code 3102) or the key (code 3105): `vpbx_api_key` or
    /// `vpbx_api_salt` is wrong. Mango blocks keys that keep sending such requests.
    #[error(
        "Mango rejected the credentials on {endpoint} (HTTP {status}, code {code}: {}); check vpbx_api_key and vpbx_api_salt",
        code_meaning(*code)
    )]
    BadCredentials {
        endpoint: &'static str,
        status: u16,
        code: i64,
    },
    /// HTTP 429: Mango's rate limit was exceeded.
    #[error("Mango rate limit exceeded on {endpoint} (HTTP 429{})", detail(*code, message.as_deref()))]
    RateLimited {
        endpoint: &'static str,
        code: Option<i64>,
        message: Option<String>,
    },
    /// HTTP 401 without a credentials code: Mango blocks a key for a while after too many invalid
    /// requests (more than 1 per 2 minutes).
    #[error("Mango blocked requests on {endpoint} (HTTP 401{}); invalid requests block the key for a while", detail(*code, message.as_deref()))]
    Blocked {
        endpoint: &'static str,
        code: Option<i64>,
        message: Option<String>,
    },
    /// Any other unsuccessful HTTP status, with Mango's code and message when the body has them
    /// (e.g. 420 with `{"code":3104}` for a badly formatted request).
    #[error("Mango answered HTTP {status} on {endpoint}{}", detail(*code, message.as_deref()))]
    Http {
        endpoint: &'static str,
        status: u16,
        code: Option<i64>,
        message: Option<String>,
    },
    /// A successful HTTP status whose body reports a `result` other than 1000.
    #[error("Mango refused the request on {endpoint} (result {code}: {}{})", code_meaning(*code), message.as_deref().map(|m| format!("; {m}")).unwrap_or_default())]
    Refused {
        endpoint: &'static str,
        code: i64,
        message: Option<String>,
    },
    /// The request did not complete: connection, TLS, timeout, or reading the body.
    #[error("request to Mango {endpoint} failed: {source}")]
    Transport {
        endpoint: &'static str,
        #[source]
        source: reqwest::Error,
    },
    /// The answer could not be understood; `what` names the part at fault.
    #[error("malformed answer from Mango {endpoint}: {what}")]
    Malformed {
        endpoint: &'static str,
        what: String,
    },
    /// `stats/result` kept answering "not ready" (HTTP 204) for longer than the caller waits.
    #[error(
        "Mango's statistics were not ready after {waited_s} s (stats/result kept answering 204)"
    )]
    StatsNotReady { waited_s: u64 },
    /// `stats/result` answered 404: the key is unknown or has expired.
    #[error(
        "Mango no longer knows the statistics key (stats/result answered 404: unknown or expired)"
    )]
    StatsKeyExpired,
}

impl ApiError {
    /// Mango's numeric code, when the answer carried one.
    pub fn code(&self) -> Option<i64> {
        match self {
            ApiError::BadCredentials { code, .. } | ApiError::Refused { code, .. } => Some(*code),
            ApiError::RateLimited { code, .. }
            | ApiError::Blocked { code, .. }
            | ApiError::Http { code, .. } => *code,
            _ => None,
        }
    }
}

fn detail(code: Option<i64>, message: Option<&str>) -> String {
    let mut out = String::new();
    if let Some(code) = code {
        out.push_str(&format!(", code {code}"));
        let meaning = code_meaning(code);
        if !meaning.is_empty() {
            out.push_str(&format!(": {meaning}"));
        }
    }
    if let Some(message) = message {
        out.push_str(&format!(", message {message:?}"));
    }
    out
}

/// A short description of the request-level codes (3xxx) and a few others.
pub(super) fn code_meaning(code: i64) -> &'static str {
    match code {
        3100 => "invalid parameters",
        3101 => "request is not a POST",
        3102 => "signature mismatch",
        3103 => "required parameter missing",
        3104 => "badly formatted request",
        3105 => "invalid vpbx_api_key",
        3320 => "recording not found",
        5001 => "Mango server overloaded",
        5003 => "Mango technical error",
        _ => "",
    }
}
