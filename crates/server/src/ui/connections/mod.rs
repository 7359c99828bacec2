//! `/t/{tenant}/connections`: the Mango and amoCRM connections of a tenant.
//!
//! Mango (`mango.rs`): the API key, the salt (masked), the webhook URL to paste into Mango, a
//! connection test through the VPBX API, and what was last received or refused. amoCRM
//! (`amocrm.rs`): the integration's settings, "Connect amoCRM" (the OAuth consent shared with
//! the admin API, `crate::oauth::start_consent`), and the connection's state with the account's
//! name.

mod amocrm;
mod mango;

use super::page::{no_tenant, render, Ctx};
use crate::state::AppState;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use amocrm::{state_view as crm_state_view, CrmForm, CrmView};
pub use mango::{MangoForm, MangoView, TestOutcome};

/// The connections page's routes (behind the session guard).
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/t/{tenant}/connections", get(page))
        .route("/t/{tenant}/connections/mango", post(mango::save))
        .route("/t/{tenant}/connections/mango/test", post(mango::test))
        .route("/t/{tenant}/connections/amocrm", post(amocrm::save))
        .route(
            "/t/{tenant}/connections/amocrm/connect",
            post(amocrm::connect),
        )
}

/// What the connections of the tenants need kept while the service runs (the one field of
/// [`AppState`] this page adds).
#[derive(Default)]
pub struct Live {
    /// Refused webhooks, written to the store at most once a second per tenant.
    pub refusals: crate::webhooks::RefusalRecorder,
    /// The amoCRM account each tenant is connected to, as last read.
    accounts: Mutex<HashMap<String, AccountSeen>>,
    /// Why the last UI-started consent of a tenant failed, until the page has shown it.
    oauth_failures: Mutex<HashMap<String, String>>,
    /// When each tenant's Mango connection was last tested (Unix ms).
    tests: Mutex<HashMap<String, i64>>,
}

/// The account behind a tenant's amoCRM connection, as `GET /api/v4/account` last answered.
#[derive(Debug, Clone)]
pub struct AccountSeen {
    /// The account origin the answer came from: a cache entry of another address is not used.
    pub origin: String,
    pub name: Option<String>,
    pub error: Option<String>,
    pub read_at_ms: i64,
}

/// A failed read of the account's name is tried again after this long (a successful one is
/// kept until the connection changes): the page must not spend the account's request budget.
const ACCOUNT_RETRY_MS: i64 = 10 * 60 * 1000;
/// How long the account's name may take before the page is shown without it.
const ACCOUNT_TIMEOUT: Duration = Duration::from_secs(5);

impl Live {
    /// Remembers why a UI-started consent failed, for the page it returns to.
    pub fn oauth_failed(&self, tenant_id: &str, reason: String) {
        if let Ok(mut failures) = self.oauth_failures.lock() {
            failures.insert(tenant_id.to_string(), reason);
        }
    }

    fn take_oauth_failure(&self, tenant_id: &str) -> Option<String> {
        self.oauth_failures.lock().ok()?.remove(tenant_id)
    }

    /// Reads the account's name through `client` and keeps it.
    pub async fn read_account(
        &self,
        tenant_id: &str,
        client: &callbridge_amocrm::AmoClient,
        now_ms: i64,
    ) -> AccountSeen {
        let (name, error) = match tokio::time::timeout(ACCOUNT_TIMEOUT, client.account()).await {
            Ok(Ok(account)) => (Some(account.name), None),
            Ok(Err(e)) => (None, Some(e.to_string())),
            Err(_) => (
                None,
                Some(format!("no answer within {} s", ACCOUNT_TIMEOUT.as_secs())),
            ),
        };
        let seen = AccountSeen {
            origin: client.base_url().to_string(),
            name,
            error,
            read_at_ms: now_ms,
        };
        if let Ok(mut accounts) = self.accounts.lock() {
            accounts.insert(tenant_id.to_string(), seen.clone());
        }
        seen
    }

    /// The kept account of the tenant at `origin`, if it is still good to show.
    fn account(&self, tenant_id: &str, origin: &str, now_ms: i64) -> Option<AccountSeen> {
        let accounts = self.accounts.lock().ok()?;
        let seen = accounts.get(tenant_id)?;
        let fresh = seen.name.is_some() || now_ms - seen.read_at_ms < ACCOUNT_RETRY_MS;
        (seen.origin == origin && fresh).then(|| seen.clone())
    }

    fn forget_account(&self, tenant_id: &str) {
        if let Ok(mut accounts) = self.accounts.lock() {
            accounts.remove(tenant_id);
        }
    }

    /// Takes the tenant's turn to test Mango now, or says how many seconds to wait.
    fn test_turn(&self, tenant_id: &str, now_ms: i64) -> Result<(), i64> {
        let Ok(mut tests) = self.tests.lock() else {
            return Ok(());
        };
        if let Some(last) = tests.get(tenant_id) {
            let wait = last + mango::TEST_EVERY_MS - now_ms;
            if wait > 0 {
                return Err((wait + 999) / 1000);
            }
        }
        tests.insert(tenant_id.to_string(), now_ms);
        Ok(())
    }
}

/// A message at the top of the page.
pub struct Notice {
    /// `ok`, `warn`, `error` or `info` (the stylesheet's `.notice-*`).
    pub kind: &'static str,
    pub text: String,
}

#[derive(Template)]
#[template(path = "connections.html")]
pub struct ConnectionsPage {
    pub ctx: Ctx,
    pub notice: Option<Notice>,
    pub mango: MangoView,
    pub mango_form: MangoForm,
    pub test: Option<TestOutcome>,
    pub crm: CrmView,
    pub crm_form: CrmForm,
}

#[derive(serde::Deserialize)]
struct PageQuery {
    #[serde(default)]
    oauth: String,
    #[serde(default)]
    saved: String,
}

/// `GET /t/{tenant}/connections`; `?oauth=connected|failed` after a consent, `?saved=mango|amocrm`
/// after a save.
async fn page(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
    ctx: Ctx,
) -> Response {
    let Some(tenant) = state.tenant(&id).await else {
        return no_tenant(ctx, &id);
    };
    let crm = amocrm::view(&state, &ctx, &tenant).await;
    let notice = match (q.oauth.as_str(), q.saved.as_str()) {
        ("connected", _) => Some(Notice {
            kind: "ok",
            text: match &crm.account_name {
                Some(name) => ctx
                    .t
                    .fmt("connections.crm.connected-to", &[("account", name)]),
                None => ctx.t.get("connections.crm.connected-no-name").to_string(),
            },
        }),
        ("failed", _) => Some(Notice {
            kind: "error",
            text: ctx.t.fmt(
                "connections.crm.connect-failed",
                &[(
                    "reason",
                    &state
                        .connections
                        .take_oauth_failure(&id)
                        .unwrap_or_else(|| ctx.t.get("connections.crm.no-reason").to_string()),
                )],
            ),
        }),
        (_, "mango") => Some(Notice {
            kind: "ok",
            text: ctx.t.get("connections.mango.saved").to_string(),
        }),
        (_, "amocrm") => Some(Notice {
            kind: "ok",
            text: ctx.t.get("connections.crm.saved").to_string(),
        }),
        _ => None,
    };
    let page = ConnectionsPage {
        mango: mango::view(&state, &ctx, &tenant).await,
        mango_form: MangoForm::from_row(&tenant.row),
        crm_form: CrmForm::from_row(&state, &tenant.row),
        test: None,
        crm,
        notice,
        ctx,
    };
    render(page)
}

/// What a form's answer shows besides the stored state.
pub(super) struct Answer {
    pub status: StatusCode,
    /// The Mango form as given, with its errors (else as stored).
    pub mango_form: Option<MangoForm>,
    /// The amoCRM form as given, with its errors (else as stored).
    pub crm_form: Option<CrmForm>,
    pub test: Option<TestOutcome>,
    pub notice: Option<Notice>,
}

impl Default for Answer {
    fn default() -> Answer {
        Answer {
            status: StatusCode::OK,
            mango_form: None,
            crm_form: None,
            test: None,
            notice: None,
        }
    }
}

/// Renders the page after a form was refused or a test ran: the forms as given, with their
/// errors, and everything else as stored.
async fn render_with(
    state: &Arc<AppState>,
    ctx: Ctx,
    tenant: &crate::state::Tenant,
    answer: Answer,
) -> Response {
    let page = ConnectionsPage {
        mango: mango::view(state, &ctx, tenant).await,
        crm: amocrm::view(state, &ctx, tenant).await,
        mango_form: answer
            .mango_form
            .unwrap_or_else(|| MangoForm::from_row(&tenant.row)),
        crm_form: answer
            .crm_form
            .unwrap_or_else(|| CrmForm::from_row(state, &tenant.row)),
        test: answer.test,
        notice: answer.notice,
        ctx,
    };
    let mut response = render(page);
    *response.status_mut() = answer.status;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mango_test_waits_its_turn() {
        let live = Live::default();
        assert_eq!(live.test_turn("acme", 1_000), Ok(()));
        assert_eq!(live.test_turn("acme", 2_000), Err(9));
        assert_eq!(live.test_turn("other", 2_000), Ok(()));
        assert_eq!(live.test_turn("acme", 11_000), Ok(()));
    }
}
