//! The client's error type and the per-item errors amoCRM reports inside batch answers.

use serde::Serialize;

/// One batch item the CRM refused, matched back to the request by `request_id` when the answer
/// carried one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ItemError {
    /// The `request_id` the item was sent with (or its index, when it was sent without one);
    /// `None` when the CRM did not say which item it meant.
    pub request_id: Option<String>,
    /// What the CRM said, e.g. `custom_fields_values.0.field_id: NotSupportedChoice (The value
    /// you selected is not a valid choice.)` or `Entity not found`.
    pub message: String,
}

/// What went wrong with a request. No variant ever holds a token, a client secret or an
/// authorization code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// HTTP 429. The client's rate limiter has already paused the whole account for a
    /// cool-down; the caller retries later (the retry waits for the cool-down by itself).
    #[error("amoCRM rate limit exceeded (HTTP 429); requests to this account are paused for a cool-down")]
    RateLimited,
    /// HTTP 403: amoCRM blocked API access for the account or this IP (after rate-limit abuse,
    /// or by the account's IP allow-list). Only amoCRM support lifts it, so never retry
    /// automatically: more requests make it worse.
    #[error("amoCRM blocked API access for this account or IP (HTTP 403); contact amoCRM support, do not retry")]
    Blocked,
    /// HTTP 401 after the one refresh the client allows itself, a refresh token the CRM
    /// refused (e.g. "Token has been revoked"), a rejected long-lived token, or no stored tokens
    /// at all: the connection is broken until someone re-authorizes the integration.
    #[error("amoCRM authorization failed: {0}")]
    Unauthorized(String),
    /// HTTP 5xx; `body` is truncated.
    #[error("amoCRM server error (HTTP {status}): {body}")]
    Server { status: u16, body: String },
    /// The request did not complete within the configured timeout.
    #[error("amoCRM request timed out")]
    Timeout,
    /// No connection could be made (refused, unreachable, DNS, connect timeout): the request
    /// never left, so the CRM certainly did not act on it.
    #[error("amoCRM unreachable: {0}")]
    Unreachable(String),
    /// Connection, TLS or protocol failure after the connection was made, before a complete
    /// answer arrived: the CRM may have acted on the request.
    #[error("amoCRM request failed: {0}")]
    Transport(String),
    /// The CRM understood the request and refused it (400, 402, 404, 422 and other 4xx). Not
    /// retryable: sending the same request again gets the same answer. `items` lists the batch
    /// items a `validation-errors` answer blamed, by `request_id`.
    #[error(
        "amoCRM rejected the request (HTTP {status}): {message}{}",
        items_suffix(items)
    )]
    Rejected {
        status: u16,
        message: String,
        items: Vec<ItemError>,
    },
    /// A successful answer that could not be understood; the message names the part at fault.
    #[error("malformed answer from amoCRM: {0}")]
    Decode(String),
    /// The token store failed to load or save OAuth tokens.
    #[error("token store: {0}")]
    TokenStore(String),
    /// The client or a call was given something unusable (bad base URL, a batch over the
    /// limit, an OAuth call on a long-lived-token account, ...).
    #[error("amoCRM client configuration: {0}")]
    Config(String),
}

fn items_suffix(items: &[ItemError]) -> String {
    if items.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = items
        .iter()
        .map(|item| match &item.request_id {
            Some(id) => format!("[{id}] {}", item.message),
            None => item.message.clone(),
        })
        .collect();
    format!(" ({})", parts.join("; "))
}

impl Error {
    /// Whether sending the same request again later can succeed: rate limiting, server errors,
    /// timeouts and transport failures. Everything else needs a change (of the request, the
    /// configuration or the authorization) first.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::RateLimited
                | Error::Server { .. }
                | Error::Timeout
                | Error::Unreachable(_)
                | Error::Transport(_)
        )
    }

    /// Whether the CRM may have acted on a request that ended with this error, though its answer
    /// was lost: a timeout, or a connection that broke after the request was sent. Everything
    /// else either never reached the CRM (no connection) or is the CRM's own answer (a 5xx, a
    /// 429, a refusal), which says it did not do the work; a writer need not look before
    /// sending such a request again.
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, Error::Timeout | Error::Transport(_))
    }
}

impl From<crate::tokens::TokenStoreError> for Error {
    fn from(err: crate::tokens::TokenStoreError) -> Self {
        Error::TokenStore(err.0)
    }
}
