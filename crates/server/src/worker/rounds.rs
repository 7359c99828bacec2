//! The two lanes and their rounds: what is due is taken and handed to the call or follow-up
//! delivery; a round's error decides whether the lane pauses, waits or stops.

use super::calls::Call;
use super::{wait, RoundError, Stop, TenantDelivery};
use super::{CALL_RETRIES_PER_ROUND, FOLLOWUP_ROUND_MS, FRESH_PER_ROUND, RETRIES_PER_ROUND};
use super::{IDLE_MAX_MS, MIN_IDLE_MS, SHARED_DB_IDLE_MS};
use crate::state::now_ms;
use callbridge_store::Lane;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

impl TenantDelivery {
    /// Runs one lane's rounds until shutdown, or until the connection is broken or blocked.
    pub(super) async fn lane(self: Arc<Self>, lane: Lane, mut stop: watch::Receiver<bool>) {
        // The follow-up lane gathers work between rounds.
        let idle = Duration::from_millis(FOLLOWUP_ROUND_MS);
        // A tenant without pending work at start sleeps first instead of looking: thousands of
        // tenants starting together would otherwise each ask the store twice a lane.
        let mut quiet_at_start = self.quiet_since;
        loop {
            if *stop.borrow() {
                break;
            }
            if !self.lease_ok() {
                if wait(&mut stop, Duration::from_millis(500)).await {
                    break;
                }
                continue;
            }
            if let Some(count) = quiet_at_start.take() {
                if self
                    .sleep_until_work_since(lane, &mut stop, Some(count))
                    .await
                {
                    break;
                }
                continue;
            }
            let started = tokio::time::Instant::now();
            let round = async {
                match lane {
                    Lane::FollowUps => self.followup_round().await,
                    _ => self.round().await,
                }
            };
            // Shutdown abandons the round wherever it waits (the account's 429 pause, a
            // back-off, a slow answer): items not sent stay pending, items marked in flight are
            // settled by the lost-answer lookup at the next start, as after a crash.
            let result = tokio::select! {
                result = round => result,
                _ = stop.wait_for(|stop| *stop) => {
                    tracing::debug!(tenant = %self.tenant_id(), ?lane, "shutdown: round abandoned, its work stays pending");
                    break;
                }
            };
            match result {
                Ok(true) if lane == Lane::Calls => {
                    // Calls done may have added follow-ups (repeat-client leads) and let others
                    // waiting for their call go: the follow-up lane looks.
                    self.state.outbox_ready.wake(self.tenant_id());
                }
                Ok(false) if lane == Lane::Calls => {
                    if self.sleep_until_work(lane, &mut stop).await {
                        break;
                    }
                }
                Ok(did_work) => {
                    let rest = idle.saturating_sub(started.elapsed());
                    if wait(&mut stop, rest.max(Duration::from_millis(100))).await {
                        break;
                    }
                    if !did_work && self.sleep_until_work(lane, &mut stop).await {
                        break;
                    }
                }
                Err(RoundError::LeaseLost) => {
                    tracing::info!(tenant = %self.tenant_id(), "delivery lease lost mid-round; pausing");
                }
                Err(RoundError::Store(e)) => {
                    tracing::warn!(tenant = %self.tenant_id(), "outbox: {e}");
                    if wait(&mut stop, Duration::from_secs(1)).await {
                        break;
                    }
                }
                Err(RoundError::Stop(reason)) => {
                    let (state, detail) = match &reason {
                        Stop::Broken(d) => ("broken", d.clone()),
                        Stop::Blocked => (
                            "blocked",
                            "amoCRM answered 403: the account or IP is blocked; contact amoCRM support, then save the tenant again".to_string(),
                        ),
                    };
                    tracing::error!(tenant = %self.tenant_id(), state, "CRM delivery stopped: {detail}");
                    metrics::counter!("callbridge_crm_connection_stopped_total", "state" => state)
                        .increment(1);
                    let _ = self
                        .state
                        .store
                        .set_crm_status(self.tenant_id(), state, &detail, now_ms())
                        .await;
                    // Wait for the tenant to be changed (the supervisor restarts us) or shutdown.
                    while !*stop.borrow() {
                        if stop.changed().await.is_err() {
                            break;
                        }
                    }
                    break;
                }
            }
        }
    }

    /// An idle lane sleeps until its next item is due or it is woken ([`AppState::outbox_ready`]:
    /// plans stored, items retried, calls done), not polling: a thousand idle tenants cost
    /// nothing. True when asked to stop.
    ///
    /// [`AppState::outbox_ready`]: crate::state::AppState::outbox_ready
    async fn sleep_until_work(&self, lane: Lane, stop: &mut watch::Receiver<bool>) -> bool {
        self.sleep_until_work_since(lane, stop, None).await
    }

    /// [`Self::sleep_until_work`]; with `quiet_since`, the tenant had no pending item when its
    /// wake count was that: unless it was woken since, there is nothing to look for.
    async fn sleep_until_work_since(
        &self,
        lane: Lane,
        stop: &mut watch::Receiver<bool>,
        quiet_since: Option<u64>,
    ) -> bool {
        let wakes = self.state.outbox_ready.of(self.tenant_id());
        let woken = wakes.notify.notified();
        tokio::pin!(woken);
        // Registered before looking, so work stored after the look still wakes the lane.
        woken.as_mut().enable();
        if quiet_since.is_some_and(|count| count != wakes.generation()) {
            return false; // woken since the tenants were asked: look now
        }
        // Every writer of outbox work wakes the lane (this process's directly, other instances'
        // through the due-work poller), so the cap is a safety net. Each tenant's lane takes up
        // to a fifth off it, its own share, so lanes started together drift apart.
        let cap = IDLE_MAX_MS - idle_share(self.tenant_id(), lane, IDLE_MAX_MS / 5);
        let next_due = match quiet_since {
            Some(_) => Ok(None),
            None => self.state.store.next_due_in(self.tenant_id(), lane).await,
        };
        let sleep_ms = match next_due {
            Ok(Some(at)) => (at - now_ms()).clamp(0, cap),
            Ok(None) => cap,
            Err(e) => {
                tracing::warn!(tenant = %self.tenant_id(), "outbox: {e}");
                SHARED_DB_IDLE_MS
            }
        };
        // Never a busy loop, whatever the store says is due.
        let sleep = Duration::from_millis(sleep_ms.max(MIN_IDLE_MS) as u64);
        tokio::select! {
            _ = woken => false,
            _ = tokio::time::sleep(sleep) => *stop.borrow(),
            _ = stop.changed() => true,
        }
    }

    /// One round of the call lane: the calls that are due. True when something was done.
    pub(super) async fn round(&self) -> Result<bool, RoundError> {
        let store = &self.state.store;
        // While the account's window is full, calls gather: the round reads what is due once a
        // request could go, so a busy account sends fuller batches instead of queueing small ones.
        self.client.wait_for_place().await;
        let now = now_ms();
        let items = store
            .due_items_in(
                self.tenant_id(),
                Lane::Calls,
                now,
                FRESH_PER_ROUND,
                CALL_RETRIES_PER_ROUND,
            )
            .await?;
        if items.is_empty() {
            return Ok(false);
        }
        let mut calls = Vec::new();
        for item in items {
            // The lane holds `call` items only; anything else is parked by the reader.
            match Call::read(item) {
                Ok(call) => calls.push(call),
                Err((key, why)) => store.park_item(&key, &why).await?,
            }
        }
        if !calls.is_empty() {
            self.deliver_calls(calls).await?;
        }
        Ok(true)
    }

    /// One round of the follow-up lane: tasks, transcripts and repeat-client leads that are due.
    pub(super) async fn followup_round(&self) -> Result<bool, RoundError> {
        let items = self
            .state
            .store
            .due_items_in(
                self.tenant_id(),
                Lane::FollowUps,
                now_ms(),
                FRESH_PER_ROUND,
                RETRIES_PER_ROUND,
            )
            .await?;
        if items.is_empty() {
            return Ok(false);
        }
        self.deliver_followups(items).await?;
        Ok(true)
    }
}

/// A share of `span` fixed for the tenant's lane (a stable hash, no randomness needed).
fn idle_share(tenant_id: &str, lane: Lane, span: i64) -> i64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    tenant_id.hash(&mut hasher);
    matches!(lane, Lane::Calls).hash(&mut hasher);
    let span = u64::try_from(span.max(1)).unwrap_or(1);
    i64::try_from(hasher.finish() % span).unwrap_or(0)
}
