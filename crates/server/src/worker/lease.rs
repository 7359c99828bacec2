//! The CRM account's delivery lease: one instance sends to an account at a time, for every
//! tenant connected to it, so the account's limiter (one per account in each instance, see
//! `crm_clients`) is the only one counting its requests, however many instances share the
//! database.
//!
//! Each instance keeps one [`AccountLease`] per account it delivers for, shared by the
//! deliveries of that account's tenants; a task renews it while any of them holds it and gives
//! it up when the last one lets go (or at shutdown).
//!
//! On PostgreSQL only the account's owner in the fleet (see [`super::instances`]) takes the
//! lease, so the accounts spread over the instances. On SQLite this process is the only one
//! (the data folder's lock says so): the lease is held in memory, with no write to renew it.

use super::cards::AccountCards;
use super::instances::Fleet;
use super::{wait, RoundError, TenantDelivery, LEASE_SAFETY_MS, LEASE_TTL_MS};
use crate::state::now_ms;
use callbridge_store::Store;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// This instance's hold on one account's lease.
pub(super) struct AccountLease {
    /// Until when (Unix ms) this instance may send to the account; 0 when it may not.
    pub(super) until: Arc<AtomicI64>,
    /// The account's call cards, from all its tenants, in one request a second; sent only
    /// while this lease is held.
    pub(super) cards: AccountCards,
    /// Dropped with the last delivery holding the lease: the renewing task then gives it up.
    _holders: watch::Sender<bool>,
}

/// Whether a lease held until `until` (Unix ms) lets this instance talk to the account now.
pub(super) fn held_now(until: &AtomicI64) -> bool {
    now_ms() < until.load(Ordering::SeqCst)
}

impl AccountLease {
    /// A lease not held yet, with the account's card batch; `holders` is dropped with the last
    /// delivery holding it.
    fn new(key: &str, holders: watch::Sender<bool>) -> Arc<AccountLease> {
        let until = Arc::new(AtomicI64::new(0));
        Arc::new(AccountLease {
            cards: AccountCards::start(key.to_string(), until.clone()),
            until,
            _holders: holders,
        })
    }

    /// Whether this instance may talk to the account now.
    pub(super) fn ok(&self) -> bool {
        held_now(&self.until)
    }

    /// A lease nobody renews (held only as the caller sets `until`): the worker's unit tests.
    #[cfg(test)]
    pub(super) fn unrenewed() -> Arc<AccountLease> {
        AccountLease::new("test-account", watch::channel(false).0)
    }
}

/// The lease key of an account in `delivery_leases` (whose `tenant_id` column holds it): tenant
/// ids cannot contain ':', so the two kinds of key never meet.
pub(super) fn account_lease_key(origin: &str) -> String {
    format!("amocrm:{origin}")
}

/// The accounts this instance holds (or tries to hold) leases for.
pub(super) struct AccountLeases {
    store: Store,
    /// Names this instance in the lease table.
    holder: String,
    /// Told at shutdown: every renewing task gives its lease up.
    shutdown: watch::Receiver<bool>,
    /// The instances sharing the database; `None` on SQLite, where this process is alone.
    fleet: Option<Fleet>,
    /// Distinguishes successive holds of one account by this instance: a hold given up while a
    /// new one begins must not delete the new one's row.
    generation: AtomicU64,
    held: HashMap<String, (Weak<AccountLease>, JoinHandle<()>)>,
    /// No request goes to an account before this (SQLite; see `keep_alone`).
    first_send_at: tokio::time::Instant,
}

impl AccountLeases {
    pub(super) fn new(
        store: Store,
        holder: String,
        shutdown: watch::Receiver<bool>,
        fleet: Option<Fleet>,
    ) -> Self {
        AccountLeases {
            store,
            holder,
            shutdown,
            fleet,
            generation: AtomicU64::new(0),
            held: HashMap::new(),
            first_send_at: tokio::time::Instant::now()
                + callbridge_amocrm::RATE_WINDOW
                + callbridge_amocrm::RATE_WINDOW_MARGIN,
        }
    }

    /// The account's lease, shared with the other deliveries of this instance to that account;
    /// a renewing task is started for an account not held yet.
    pub(super) fn lease(&mut self, key: &str) -> Arc<AccountLease> {
        if let Some(lease) = self.held.get(key).and_then(|(weak, _)| weak.upgrade()) {
            return lease;
        }
        let (holders, gone) = watch::channel(false);
        let lease = AccountLease::new(key, holders);
        let generation = self.generation.fetch_add(1, Ordering::Relaxed);
        let task = match &self.fleet {
            Some(fleet) => {
                fleet.add_account(key);
                tokio::spawn(keep(
                    self.store.clone(),
                    fleet.clone(),
                    key.to_string(),
                    format!("{}/{generation}", self.holder),
                    lease.until.clone(),
                    gone,
                    self.shutdown.clone(),
                ))
            }
            None => tokio::spawn(keep_alone(
                lease.until.clone(),
                self.first_send_at,
                gone,
                self.shutdown.clone(),
            )),
        };
        self.held
            .insert(key.to_string(), (Arc::downgrade(&lease), task));
        lease
    }

    /// Forgets accounts no delivery holds any more (their tasks have given the lease up, or are
    /// about to).
    pub(super) fn prune(&mut self) {
        let fleet = &self.fleet;
        self.held.retain(|key, (weak, task)| {
            let kept = weak.strong_count() > 0 || !task.is_finished();
            if let (false, Some(fleet)) = (kept, fleet) {
                // No longer one of this instance's accounts: the others' shares grow back.
                fleet.remove_account(key);
            }
            kept
        });
    }

    /// Waits, at most `bound`, for every renewing task to give its lease up (after shutdown was
    /// signalled), so another instance may take the accounts over at once.
    pub(super) async fn released(self, bound: Duration) {
        let all = async {
            for (_, task) in self.held.into_values() {
                let _ = task.await;
            }
        };
        let _ = tokio::time::timeout(bound, all).await;
    }
}

/// SQLite: this process is the only one that can deliver (the data folder's lock), so the lease
/// is held until no delivery holds it or the service stops, with nothing stored. It is taken
/// only once the account's rate window has passed since the worker started (`first_send_at`):
/// a process that replaced a crashed one cannot know what that one sent in its last second,
/// which amoCRM still counts.
async fn keep_alone(
    until: Arc<AtomicI64>,
    first_send_at: tokio::time::Instant,
    mut gone: watch::Receiver<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    tokio::select! {
        _ = tokio::time::sleep_until(first_send_at) => {}
        _ = gone.changed() => return,
        _ = shutdown.changed() => return,
    }
    until.store(i64::MAX, Ordering::SeqCst);
    if !*shutdown.borrow() {
        tokio::select! {
            // The last holder let go: `gone`'s sender was dropped.
            _ = gone.changed() => {}
            _ = shutdown.changed() => {}
        }
    }
    until.store(0, Ordering::SeqCst);
}

/// Takes and keeps the account's lease while this instance owns the account in the fleet,
/// renewing it well before it expires, independently of how long a round takes, until no
/// delivery holds it, the account passes to another instance, or the service stops; then gives
/// it up.
async fn keep(
    store: Store,
    mut fleet: Fleet,
    key: String,
    holder: String,
    until: Arc<AtomicI64>,
    mut gone: watch::Receiver<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let now = now_ms();
        let holding = now < until.load(Ordering::SeqCst);
        if fleet.owns(&key) {
            match store.acquire_lease(&key, &holder, LEASE_TTL_MS, now).await {
                // Trust the lease a little less long than the database keeps it, so this
                // instance stops before another may start.
                Ok(true) => until.store(now + LEASE_TTL_MS - LEASE_SAFETY_MS, Ordering::SeqCst),
                Ok(false) => until.store(0, Ordering::SeqCst),
                Err(e) => tracing::warn!(account = %key, "lease: {e}"),
            }
        } else if holding {
            // Another instance owns the account now (one joined): stop sending at once, and
            // give the lease up only after the safety margin, as if it had expired, so requests
            // still under way end before the new owner starts.
            until.store(0, Ordering::SeqCst);
            tracing::info!(account = %key, "account passes to another instance");
            let stop = tokio::select! {
                stopped = wait(&mut gone, Duration::from_millis(LEASE_SAFETY_MS as u64)) => stopped,
                _ = shutdown.changed() => true,
            };
            if stop {
                break;
            }
            if let Err(e) = store.release_lease(&key, &holder).await {
                tracing::warn!(account = %key, "lease release: {e}");
            }
        }
        // Renew well inside the lease's time; an owner waiting for the previous holder to give
        // the account up asks often, so the hand-over leaves the account idle no longer than
        // the holder's safety margin.
        let every = if now_ms() < until.load(Ordering::SeqCst) {
            LEASE_TTL_MS / 5
        } else if fleet.owns(&key) {
            500
        } else {
            2_000
        };
        let pause = Duration::from_millis(every as u64);
        let stop = tokio::select! {
            // The last holder let go: `gone`'s sender was dropped.
            stopped = wait(&mut gone, pause) => stopped,
            _ = shutdown.changed() => true,
            // An instance joined or left: the account may change hands now, not at the next
            // renewal.
            () = fleet.changed() => false,
        };
        if stop || *shutdown.borrow() {
            break;
        }
    }
    until.store(0, Ordering::SeqCst);
    if let Err(e) = store.release_lease(&key, &holder).await {
        tracing::warn!(account = %key, "lease release: {e}");
    }
}

impl TenantDelivery {
    pub(super) fn ensure_lease(&self) -> Result<(), RoundError> {
        if self.lease_ok() {
            Ok(())
        } else {
            Err(RoundError::LeaseLost)
        }
    }

    /// Whether this instance may talk to the tenant's CRM account now. Checked before every
    /// request that changes the CRM, so a round that outlives the lease stops sending.
    pub(super) fn lease_ok(&self) -> bool {
        self.lease.ok()
    }
}
