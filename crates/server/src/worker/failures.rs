//! What a failed request does to its items: 429 pauses, 401 and 403 stop the tenant's delivery,
//! a refusal the CRM explains parks, 5xx and timeouts back off (the whole account while the CRM
//! does not answer).

use super::{RoundError, Stop, TenantDelivery};
use super::{IN_FLIGHT_GRACE_MS, OUTAGE_RETRY_FIRST_MS, OUTAGE_RETRY_MAX_MS};
use crate::state::now_ms;
use callbridge_amocrm::Error as CrmError;
use callbridge_store::OutboxItem;
use std::sync::atomic::Ordering;

/// What a failed request leaves of its items' in-flight marks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Marks {
    /// The request could not change the CRM (a read, or a write whose answer is known).
    Clear,
    /// A write: the mark stays only if its answer was lost (a timeout, a connection broken after
    /// sending); a 5xx, a 429 or no connection at all say the CRM did not act.
    KeepIfLost,
    /// The items are uncertain already (a settling read failed): they stay so.
    Keep,
}

impl TenantDelivery {
    /// Handles a failed request for `items`. `write`: the request may have changed the CRM, so
    /// its items stay marked in flight if its answer was lost ([`Marks::KeepIfLost`]).
    /// The items are gathered before the returned future starts, so callers can pass an
    /// iterator over their batch.
    pub(super) fn failed<'a>(
        &'a self,
        items: impl IntoIterator<Item = &'a OutboxItem>,
        error: CrmError,
        write: bool,
    ) -> impl std::future::Future<Output = Result<(), RoundError>> + Send + 'a {
        let items: Vec<&OutboxItem> = items.into_iter().collect();
        let marks = if write {
            Marks::KeepIfLost
        } else {
            Marks::Clear
        };
        self.fail_items(items, error, marks)
    }

    pub(super) async fn fail_items(
        &self,
        items: Vec<&OutboxItem>,
        error: CrmError,
        marks: Marks,
    ) -> Result<(), RoundError> {
        let store = &self.state.store;
        let text = error.to_string();
        let keep_mark = match marks {
            Marks::Clear => false,
            Marks::KeepIfLost => error.outcome_unknown(),
            Marks::Keep => true,
        };
        let outage = matches!(
            error,
            CrmError::Server { .. }
                | CrmError::Timeout
                | CrmError::Unreachable(_)
                | CrmError::Transport(_)
        );
        if outage {
            self.outage_failures.fetch_add(1, Ordering::SeqCst);
        }
        metrics::counter!("callbridge_crm_errors_total", "kind" => error_kind(&error)).increment(1);
        match error {
            CrmError::RateLimited => {
                for item in items {
                    store
                        .retry_item(&item.item_key, &text, now_ms() + 1_000, keep_mark, false)
                        .await?;
                }
            }
            CrmError::Unauthorized(detail) => {
                for item in items {
                    store
                        .retry_item(&item.item_key, &text, now_ms(), keep_mark, false)
                        .await?;
                }
                return Err(RoundError::Stop(Stop::Broken(format!(
                    "amoCRM refused the credentials: {detail}; fix the tenant's amocrm section (or authorize again), then save the tenant"
                ))));
            }
            CrmError::Blocked => {
                for item in items {
                    store
                        .retry_item(&item.item_key, &text, now_ms(), keep_mark, false)
                        .await?;
                }
                return Err(RoundError::Stop(Stop::Blocked));
            }
            CrmError::Rejected {
                message,
                items: errs,
                ..
            } => {
                let detail = errs
                    .iter()
                    .map(|e| e.message.clone())
                    .collect::<Vec<_>>()
                    .join("; ");
                let why = if detail.is_empty() {
                    message
                } else {
                    format!("{message}: {detail}")
                };
                for item in items {
                    store
                        .park_item(&item.item_key, &format!("amoCRM refused: {why}"))
                        .await?;
                }
            }
            CrmError::Config(_) => {
                for item in items {
                    store.park_item(&item.item_key, &text).await?;
                }
            }
            _ => {
                for item in items {
                    let next = if outage {
                        now_ms() + self.outage_delay_ms()
                    } else {
                        now_ms() + backoff_ms(item.attempts)
                    };
                    store
                        .retry_item(&item.item_key, &text, next, keep_mark, true)
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// Whether the CRM failed to answer the last request (see [`OUTAGE_RETRY_MAX_MS`]).
    pub(super) fn in_outage(&self) -> bool {
        self.outage_failures.load(Ordering::SeqCst) > 0
    }

    /// How long work waits after the CRM failed to answer: doubling with the failures in a row,
    /// from [`OUTAGE_RETRY_FIRST_MS`] to [`OUTAGE_RETRY_MAX_MS`].
    pub(super) fn outage_delay_ms(&self) -> i64 {
        let failures = self.outage_failures.load(Ordering::SeqCst).clamp(1, 16);
        OUTAGE_RETRY_FIRST_MS
            .saturating_mul(1i64 << (failures - 1))
            .min(OUTAGE_RETRY_MAX_MS)
    }

    /// How old an in-flight mark must be before its item is looked up in the CRM.
    pub(super) fn in_flight_grace_ms(&self) -> i64 {
        let timeout_ms = i64::try_from(self.client.timeout().as_millis()).unwrap_or(i64::MAX);
        IN_FLIGHT_GRACE_MS.max(timeout_ms.saturating_add(5_000))
    }
}

/// Jittered exponential backoff: 1 s, 2 s, 4 s ... up to 5 minutes, each ±25 %.
pub(super) fn backoff_ms(attempts: i64) -> i64 {
    let base = 1_000i64
        .saturating_mul(1i64 << attempts.clamp(0, 9))
        .min(300_000);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as i64)
        .unwrap_or(0);
    let jitter = (nanos % 500) - 250; // -25 % .. +25 %, in thousandths
    base + base * jitter / 1000
}

pub(super) fn error_kind(e: &CrmError) -> &'static str {
    match e {
        CrmError::RateLimited => "rate_limited",
        CrmError::Blocked => "blocked",
        CrmError::Unauthorized(_) => "unauthorized",
        CrmError::Server { .. } => "server",
        CrmError::Timeout => "timeout",
        CrmError::Transport(_) => "transport",
        CrmError::Unreachable(_) => "unreachable",
        CrmError::Rejected { .. } => "rejected",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_a_cap() {
        for attempts in 0..20 {
            let b = backoff_ms(attempts);
            let base = (1_000i64 << attempts.min(9)).min(300_000);
            assert!(b >= base * 3 / 4 && b <= base * 5 / 4, "{attempts}: {b}");
        }
        assert!(backoff_ms(30) <= 375_000);
    }
}
