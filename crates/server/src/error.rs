//! The service's errors as types: one enum per route family, each variant's status, title and
//! words written once, answered as `application/problem+json` (RFC 9457, see [`Problem`]); and the
//! start-up errors the binary prints.
//!
//! The words are part of the contract: Mango, scripts and tests read them, so a variant's text is
//! changed only on purpose. A title is the status's reason phrase ("Bad Request", "Not Found")
//! unless a variant names its own.

use crate::card_tokens::{self, TokenError};
use crate::config::InvalidSalt;
use crate::problem::Problem;
use crate::recordings::LinkError;
use crate::secret_key::SecretKeyError;
use crate::tenant_id::InvalidTenantId;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use callbridge_store::StoreError;
use std::time::Duration;

/// A refusal answered as a problem: its status, and a title when the status's reason phrase is
/// not the one to show. The detail is the error's `Display`.
trait Refusal: std::fmt::Display {
    fn status(&self) -> StatusCode;
    fn title(&self) -> Option<&'static str> {
        None
    }
}

fn problem(refusal: &impl Refusal) -> Response {
    let status = refusal.status();
    let title = refusal
        .title()
        .or(status.canonical_reason())
        .unwrap_or("Error");
    Problem::new(status, title, refusal.to_string()).into_response()
}

/// A caller without a valid admin or card token: 401, saying what to send instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("a valid admin token is required (Authorization: Bearer ...)")]
    AdminTokenMissing,
    #[error("the admin token is accepted in the Authorization header only (Authorization: Bearer ...), not as ?token=")]
    AdminTokenInQuery,
    #[error("the admin token is not valid")]
    AdminTokenInvalid,
    #[error("a card token (?token=..., from POST /api/v1/tenants/{{id}}/cards/tokens) or the admin token (Authorization: Bearer ...) is required")]
    CardTokenMissing,
    #[error("the admin token is accepted in the Authorization header only, not as ?token=; use a card token in the URL")]
    AdminTokenInCardUrl,
    #[error("the card token has expired; ask for a new one")]
    CardTokenExpired,
    #[error("the card token is invalid")]
    CardTokenInvalid,
    #[error("the card token is for another user or tenant")]
    CardTokenForOther,
    #[error("the card token is invalid: its tenant no longer exists")]
    CardTokenTenantGone,
}

impl From<TokenError> for AuthError {
    fn from(e: TokenError) -> AuthError {
        match e {
            TokenError::Expired => AuthError::CardTokenExpired,
            TokenError::Invalid => AuthError::CardTokenInvalid,
        }
    }
}

impl Refusal for AuthError {
    fn status(&self) -> StatusCode {
        StatusCode::UNAUTHORIZED
    }
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        problem(&self)
    }
}

/// Why an admin API request (`/api/v1/...`) is refused.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// A JSON body that did not parse, in serde's words (which name the field).
    #[error("{0}")]
    MalformedBody(String),
    #[error("tenant id {0}")]
    InvalidTenantId(#[from] InvalidTenantId),
    #[error("{0} is required")]
    Required(&'static str),
    #[error("mango_api_salt: {0}")]
    InvalidSalt(#[from] InvalidSalt),
    #[error("name the tenant: ?tenant=ID")]
    TenantNotNamed,
    #[error(
        "ttl_seconds: must be between 1 and {max} (7 days), got {0}",
        max = card_tokens::MAX_TTL_SECONDS
    )]
    TtlOutOfRange(u64),
    #[error("crm_user_id: name the CRM user whose cards to stream (?crm_user_id=N)")]
    CrmUserNotNamed,
    #[error("state: expected pending, done or parked, got {0:?}")]
    UnknownOutboxState(String),
    #[error("give either item_key or all_parked: true")]
    RetryTargetNotNamed,
    /// A query parameter of the entries API that does not say what it must (its name first).
    #[error("{name}: {problem}")]
    InvalidFilter { name: &'static str, problem: String },
    #[error("no tenant {0:?}")]
    NoTenant(String),
    #[error("no planned entry {0:?}")]
    NoEntry(String),
    #[error("no parked item {item_key:?} for tenant {tenant:?}")]
    NoParkedItem { tenant: String, item_key: String },
    #[error("settings_toml: {0}")]
    InvalidSettings(#[source] callbridge_core::SettingsError),
    /// The CRM section's own words (they name the key).
    #[error("{0}")]
    InvalidCrmConnection(#[source] crate::crm::CrmConnectionError),
    #[error("mango_api_key is used by another tenant")]
    KeyInUse,
    /// The store failed: logged with its cause, answered without it.
    #[error("the store is unavailable")]
    Store(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A reconciliation refused or failed, in its own words (a bad period names the field).
    #[error("{0}")]
    Reconcile(#[from] crate::reconcile::ReconcileError),
}

impl From<JsonRejection> for AdminError {
    fn from(e: JsonRejection) -> AdminError {
        AdminError::MalformedBody(e.body_text())
    }
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> AdminError {
        AdminError::Store(Box::new(e))
    }
}

impl From<ReloadError> for AdminError {
    fn from(e: ReloadError) -> AdminError {
        AdminError::Store(Box::new(e))
    }
}

impl Refusal for AdminError {
    fn status(&self) -> StatusCode {
        match self {
            AdminError::Auth(e) => e.status(),
            AdminError::MalformedBody(_)
            | AdminError::InvalidTenantId(_)
            | AdminError::Required(_)
            | AdminError::InvalidSalt(_)
            | AdminError::TenantNotNamed
            | AdminError::TtlOutOfRange(_)
            | AdminError::CrmUserNotNamed
            | AdminError::UnknownOutboxState(_)
            | AdminError::RetryTargetNotNamed
            | AdminError::InvalidFilter { .. } => StatusCode::BAD_REQUEST,
            AdminError::NoTenant(_) | AdminError::NoEntry(_) | AdminError::NoParkedItem { .. } => {
                StatusCode::NOT_FOUND
            }
            AdminError::InvalidSettings(_) | AdminError::InvalidCrmConnection(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            AdminError::KeyInUse => StatusCode::CONFLICT,
            AdminError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            AdminError::Reconcile(e) => {
                use crate::reconcile::ReconcileError;
                match e {
                    ReconcileError::NoTenant(_) => StatusCode::NOT_FOUND,
                    ReconcileError::Period(_) => StatusCode::BAD_REQUEST,
                    ReconcileError::Busy(_) => StatusCode::CONFLICT,
                    ReconcileError::Mango(_) => StatusCode::BAD_GATEWAY,
                    ReconcileError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
                }
            }
        }
    }

    fn title(&self) -> Option<&'static str> {
        match self {
            AdminError::InvalidSettings(_) => Some("Invalid settings"),
            AdminError::InvalidCrmConnection(_) => Some("Invalid CRM connection"),
            _ => None,
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        if let AdminError::Store(e) = &self {
            tracing::error!(error = %e, "store error");
        }
        if let AdminError::Reconcile(crate::reconcile::ReconcileError::Store(e)) = &self {
            tracing::error!(error = %e, "store error during reconciliation");
        }
        problem(&self)
    }
}

/// Why an OAuth authorize or callback request is refused.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    #[error("no tenant {0:?}")]
    NoTenant(String),
    #[error("the tenant has no amocrm section")]
    NoCrmSection,
    /// The section was removed between the authorize request and the callback.
    #[error("no amocrm section")]
    CrmSectionGone,
    #[error("{0}")]
    InvalidCrmConnection(#[source] crate::crm::CrmConnectionError),
    #[error(
        "the tenant uses a long-lived token; OAuth needs client_id, client_secret and redirect_uri"
    )]
    NotOAuth,
    #[error("the operating system gave no random bytes for the OAuth state")]
    NoRandomness(#[source] getrandom::Error),
    #[error("code and state are required (amoCRM sends both)")]
    CodeOrStateMissing,
    /// The one answer to every callback whose state cannot be used, so it tells nothing about
    /// tenants or about which check failed.
    #[error(
        "unknown, used or expired state: start again from /api/v1/tenants/{{id}}/amocrm/authorize"
    )]
    StateRefused,
    #[error("{0}")]
    CodeRefused(#[source] callbridge_amocrm::Error),
    /// The store could not be read or could not keep a state.
    #[error("{0}")]
    StoreUnavailable(#[source] StoreError),
    /// The tokens were taken but the tenant could not be touched afterwards.
    #[error("{0}")]
    StoreWrite(#[source] StoreError),
}

impl Refusal for OAuthError {
    fn status(&self) -> StatusCode {
        match self {
            OAuthError::NoTenant(_) => StatusCode::NOT_FOUND,
            OAuthError::NoCrmSection
            | OAuthError::CrmSectionGone
            | OAuthError::InvalidCrmConnection(_)
            | OAuthError::NotOAuth => StatusCode::CONFLICT,
            OAuthError::NoRandomness(_) | OAuthError::StoreWrite(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            OAuthError::CodeOrStateMissing => StatusCode::BAD_REQUEST,
            OAuthError::StateRefused => StatusCode::FORBIDDEN,
            OAuthError::CodeRefused(_) => StatusCode::BAD_GATEWAY,
            OAuthError::StoreUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn title(&self) -> Option<&'static str> {
        match self {
            OAuthError::NoCrmSection | OAuthError::CrmSectionGone => Some("No CRM connection"),
            OAuthError::InvalidCrmConnection(_) => Some("Invalid CRM connection"),
            OAuthError::NotOAuth => Some("Not an OAuth connection"),
            OAuthError::NoRandomness(_) => Some("No randomness"),
            OAuthError::CodeRefused(_) => Some("amoCRM refused the code"),
            OAuthError::StoreUnavailable(_) | OAuthError::StoreWrite(_) => Some("Store"),
            _ => None,
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        if let OAuthError::NoRandomness(e) = &self {
            tracing::error!("no randomness for an OAuth state: {e}");
        }
        problem(&self)
    }
}

/// What a caller who has not proved the tenant's key (or signed with it) is told, whatever the
/// reason, so tenant ids cannot be probed for.
const UNPROVEN: &str = "unknown tenant, API key or signature";

/// Why a Mango webhook is refused. Each refusal is counted in `callbridge_webhooks_total` under
/// its reason.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("the body is larger than the {limit} bytes accepted")]
    TooLarge { limit: usize },
    #[error("the request body could not be read: {0}")]
    Unreadable(#[source] axum::Error),
    #[error("the body did not arrive within {} ms", .0.as_millis())]
    TooSlow(Duration),
    #[error("expected application/x-www-form-urlencoded, got {0:?}")]
    ContentType(String),
    #[error("form field \"{0}\" is missing")]
    MissingField(&'static str),
    /// No such tenant, or not its key.
    #[error("{}", UNPROVEN)]
    UnknownKey,
    /// The tenant's key, but no signature or a wrong one.
    #[error("{}", UNPROVEN)]
    BadSignature,
    #[error("{0}")]
    Malformed(#[source] callbridge_mango::WebhookError),
    /// Well-formed but implausible (a time before 2000 or days ahead, an overlong id, a NUL).
    #[error("{0}")]
    Implausible(#[source] callbridge_mango::WebhookError),
    /// Not acknowledged, so the PBX delivers it again.
    #[error("the event log is unavailable; retry")]
    Storage(#[source] StoreError),
}

impl WebhookError {
    /// The `reason` label of the refusal's metric. One for an unknown tenant and a wrong key:
    /// `/metrics` needs no token, so its labels must not tell a made-up tenant id from a wrong key
    /// either (the log, for the operator, says which).
    fn reason(&self) -> &'static str {
        match self {
            WebhookError::TooLarge { .. } => "too_large",
            WebhookError::Unreadable(_)
            | WebhookError::MissingField(_)
            | WebhookError::Malformed(_) => "malformed",
            WebhookError::TooSlow(_) => "timeout",
            WebhookError::ContentType(_) => "content_type",
            WebhookError::UnknownKey => "unknown_key",
            WebhookError::BadSignature => "bad_signature",
            WebhookError::Implausible(_) => "implausible",
            WebhookError::Storage(_) => "storage",
        }
    }
}

impl Refusal for WebhookError {
    fn status(&self) -> StatusCode {
        match self {
            WebhookError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            WebhookError::Unreadable(_)
            | WebhookError::MissingField(_)
            | WebhookError::Malformed(_)
            | WebhookError::Implausible(_) => StatusCode::BAD_REQUEST,
            WebhookError::TooSlow(_) => StatusCode::REQUEST_TIMEOUT,
            WebhookError::ContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            WebhookError::UnknownKey | WebhookError::BadSignature => StatusCode::FORBIDDEN,
            WebhookError::Storage(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for WebhookError {
    fn into_response(self) -> Response {
        if let WebhookError::Storage(e) = &self {
            tracing::error!(error = %e, "event log unavailable");
        }
        metrics::counter!("callbridge_webhooks_total", "result" => "rejected", "reason" => self.reason())
            .increment(1);
        problem(&self)
    }
}

/// Why a recording link does not redirect to the recording.
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    /// Not signed by this service for this tenant (or no such tenant).
    #[error("the link's signature does not match")]
    BadLink,
    #[error(
        "this recording link has expired; open the call in callbridge's admin API for a new one"
    )]
    Expired,
    #[error("{0}")]
    MangoApi(#[source] callbridge_mango::api::ApiError),
}

impl From<LinkError> for RecordingError {
    fn from(e: LinkError) -> RecordingError {
        match e {
            LinkError::BadSignature => RecordingError::BadLink,
            LinkError::Expired => RecordingError::Expired,
        }
    }
}

impl Refusal for RecordingError {
    fn status(&self) -> StatusCode {
        match self {
            RecordingError::BadLink => StatusCode::FORBIDDEN,
            RecordingError::Expired => StatusCode::GONE,
            RecordingError::MangoApi(_) => StatusCode::BAD_GATEWAY,
        }
    }

    fn title(&self) -> Option<&'static str> {
        Some(match self {
            RecordingError::BadLink => "bad recording link",
            RecordingError::Expired => "recording link expired",
            RecordingError::MangoApi(_) => "Mango API",
        })
    }
}

impl IntoResponse for RecordingError {
    fn into_response(self) -> Response {
        problem(&self)
    }
}

/// Why the tenants could not be loaded from the store into the cache.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("tenant {tenant}: {source}")]
    Settings {
        tenant: String,
        source: callbridge_core::SettingsError,
    },
}

/// Why the service did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data folder's lock, or opening the store.
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    SecretKey(#[from] SecretKeyError),
    #[error("tenants: {0}")]
    ConfigTenants(#[source] StoreError),
    #[error("tenant {tenant}: cannot delete: {source}")]
    DeleteTenant { tenant: String, source: StoreError },
    #[error("tenant {tenant}: {source}")]
    Tenant { tenant: String, source: StoreError },
    #[error("listen on {address}: {source}")]
    Listen {
        address: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    LocalAddress(#[source] std::io::Error),
    #[error(transparent)]
    Reload(#[from] ReloadError),
    #[error(transparent)]
    FirstPassword(#[from] crate::ui::session::FirstPasswordError),
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn answer(response: Response) -> (u16, serde_json::Value) {
        let status = response.status().as_u16();
        let content_type = response.headers()[axum::http::header::CONTENT_TYPE].clone();
        assert_eq!(content_type, "application/problem+json");
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    /// The titles clients knew when each handler wrote its own: the status's reason phrase for
    /// the plain refusals, the variant's own for the rest.
    #[tokio::test]
    async fn refusals_keep_their_status_title_and_words() {
        let cases: Vec<(Response, u16, &str, &str)> = vec![
            (
                AuthError::AdminTokenInvalid.into_response(),
                401,
                "Unauthorized",
                "the admin token is not valid",
            ),
            (
                AdminError::NoTenant("acme".into()).into_response(),
                404,
                "Not Found",
                "no tenant \"acme\"",
            ),
            (
                AdminError::TtlOutOfRange(0).into_response(),
                400,
                "Bad Request",
                "ttl_seconds: must be between 1 and 604800 (7 days), got 0",
            ),
            (
                AdminError::KeyInUse.into_response(),
                409,
                "Conflict",
                "mango_api_key is used by another tenant",
            ),
            (
                AdminError::from(StoreError::AppenderStopped).into_response(),
                503,
                "Service Unavailable",
                "the store is unavailable",
            ),
            (
                AdminError::InvalidCrmConnection(crate::crm::CrmConnectionError::ZeroTimeout)
                    .into_response(),
                422,
                "Invalid CRM connection",
                "amocrm.timeout_seconds: must be above 0",
            ),
            (
                OAuthError::StateRefused.into_response(),
                403,
                "Forbidden",
                "unknown, used or expired state: start again from /api/v1/tenants/{id}/amocrm/authorize",
            ),
            (
                OAuthError::NotOAuth.into_response(),
                409,
                "Not an OAuth connection",
                "the tenant uses a long-lived token; OAuth needs client_id, client_secret and redirect_uri",
            ),
            (
                WebhookError::TooLarge { limit: 1024 }.into_response(),
                413,
                "Payload Too Large",
                "the body is larger than the 1024 bytes accepted",
            ),
            (
                WebhookError::TooSlow(Duration::from_millis(250)).into_response(),
                408,
                "Request Timeout",
                "the body did not arrive within 250 ms",
            ),
            (
                WebhookError::ContentType("text/plain".into()).into_response(),
                415,
                "Unsupported Media Type",
                "expected application/x-www-form-urlencoded, got \"text/plain\"",
            ),
            (
                WebhookError::MissingField("json").into_response(),
                400,
                "Bad Request",
                "form field \"json\" is missing",
            ),
            (
                WebhookError::Storage(StoreError::AppenderStopped).into_response(),
                503,
                "Service Unavailable",
                "the event log is unavailable; retry",
            ),
            (
                RecordingError::Expired.into_response(),
                410,
                "recording link expired",
                "this recording link has expired; open the call in callbridge's admin API for a new one",
            ),
        ];
        for (response, status, title, detail) in cases {
            let (got_status, body) = answer(response).await;
            assert_eq!(got_status, status, "{body}");
            assert_eq!(body["status"], status, "{body}");
            assert_eq!(body["title"], title, "{body}");
            assert_eq!(body["detail"], detail, "{body}");
            assert_eq!(body["type"], "about:blank", "{body}");
        }
    }

    /// An unknown tenant and a wrong signature read the same to the caller; only the metric's
    /// reason (and the log) tell them apart.
    #[tokio::test]
    async fn unproven_webhooks_get_one_answer() {
        let (a_status, a) = answer(WebhookError::UnknownKey.into_response()).await;
        let (b_status, b) = answer(WebhookError::BadSignature.into_response()).await;
        assert_eq!((a_status, &a), (b_status, &b));
        assert_eq!(a["detail"], UNPROVEN);
        assert_ne!(
            WebhookError::UnknownKey.reason(),
            WebhookError::BadSignature.reason()
        );
    }
}
