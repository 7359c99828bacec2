//! The tenant's delivery lease: one instance delivers an account's work at a time.

use super::{wait, RoundError, TenantDelivery, LEASE_SAFETY_MS, LEASE_TTL_MS};
use crate::state::now_ms;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

impl TenantDelivery {
    /// Takes and keeps the tenant's lease, renewing it well before it expires, independently of
    /// how long a round takes.
    pub(super) async fn keep_lease(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        loop {
            let now = now_ms();
            match self
                .state
                .store
                .acquire_lease(self.tenant_id(), &self.holder, LEASE_TTL_MS, now)
                .await
            {
                // Trust the lease a little less long than the database keeps it, so this
                // instance stops before another may start.
                Ok(true) => self
                    .lease_until
                    .store(now + LEASE_TTL_MS - LEASE_SAFETY_MS, Ordering::SeqCst),
                Ok(false) => self.lease_until.store(0, Ordering::SeqCst),
                Err(e) => tracing::warn!(tenant = %self.tenant_id(), "lease: {e}"),
            }
            let every = if self.lease_ok() {
                LEASE_TTL_MS / 5
            } else {
                2_000
            };
            if wait(&mut stop, Duration::from_millis(every as u64)).await {
                return;
            }
        }
    }

    pub(super) fn ensure_lease(&self) -> Result<(), RoundError> {
        if self.lease_ok() {
            Ok(())
        } else {
            Err(RoundError::LeaseLost)
        }
    }

    /// Whether this instance may talk to the tenant's CRM now. Checked before every request
    /// that changes the CRM, so a round that outlives the lease stops sending.
    pub(super) fn lease_ok(&self) -> bool {
        now_ms() < self.lease_until.load(Ordering::SeqCst)
    }
}
