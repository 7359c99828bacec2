//! The fleet: which instance delivers for which CRM account when several instances share one
//! PostgreSQL database.
//!
//! Every instance says it is alive in `delivery_instances` every [`BEAT_MS`]; an instance not
//! heard of for [`LEASE_TTL_MS`] is counted out. Each account belongs to one of the live
//! instances, chosen by rendezvous hashing (the highest hash of instance name and account key):
//! every instance computes the same owner from the same list without talking to the others, the
//! accounts spread evenly, and when an instance joins or leaves only the accounts it takes or
//! leaves change hands. Only the owner tries to take the account's lease (`lease.rs`); an
//! instance holding a lease it no longer owns (a new instance joined) stops sending and gives it
//! up a little later, so its requests still under way finish before the new owner starts.
//!
//! An instance killed without a word stops being heard; [`LEASE_TTL_MS`] later the others count
//! it out, and its leases, no longer renewed, have expired by then too: its accounts are taken
//! over within about the lease time.
//!
//! Every instance must deliver for the same tenants (they share the database; tenants from a
//! config file must come from the same file on each): an owner that has no delivery for an
//! account leaves it undelivered.

use super::LEASE_TTL_MS;
use crate::state::now_ms;
use callbridge_store::Store;
use sha2::{Digest, Sha256};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How often an instance says it is alive and reads who else is.
const BEAT_MS: i64 = LEASE_TTL_MS / 5;

/// Who is alive, as this instance last read it.
#[derive(Debug, Clone)]
pub(super) struct Fleet {
    me: String,
    live: watch::Receiver<Vec<String>>,
}

impl Fleet {
    /// Whether this instance owns the account now (see the module's words).
    pub(super) fn owns(&self, key: &str) -> bool {
        owner(&self.live.borrow(), &self.me, key) == self.me
    }

    /// Waits until the list of live instances changes (for ever once the heartbeat task ended).
    pub(super) async fn changed(&mut self) {
        if self.live.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// The owner of `key` among `live`, `me` counted in whatever the list says.
fn owner<'a>(live: &'a [String], me: &'a str, key: &str) -> &'a str {
    live.iter()
        .map(String::as_str)
        .chain(std::iter::once(me))
        .max_by_key(|name| (score(name, key), *name))
        .unwrap_or(me)
}

/// A stable hash of the pair (the same on every instance and every release).
fn score(name: &str, key: &str) -> u64 {
    let digest = Sha256::new()
        .chain_update(name.as_bytes())
        .chain_update([0u8])
        .chain_update(key.as_bytes())
        .finalize();
    u64::from_be_bytes(
        digest[..8]
            .try_into()
            .expect("a SHA-256 digest has 32 bytes"),
    )
}

/// This instance in the fleet: joined once the first heartbeat is stored and the live list
/// read, so its deliveries start knowing the others; a task beats until shutdown, then says
/// this instance is leaving.
pub(super) struct Membership {
    pub(super) fleet: Fleet,
    task: JoinHandle<()>,
}

impl Membership {
    pub(super) async fn join(store: Store, me: String, shutdown: watch::Receiver<bool>) -> Self {
        let first = beat(&store, &me).await.unwrap_or_default();
        let (tx, live) = watch::channel(first);
        let task = tokio::spawn(beating(store, me.clone(), tx, shutdown));
        Membership {
            fleet: Fleet { me, live },
            task,
        }
    }

    /// Waits, at most `bound`, for the leaving word to be stored (after shutdown was signalled).
    pub(super) async fn left(self, bound: Duration) {
        let _ = tokio::time::timeout(bound, self.task).await;
    }
}

async fn beat(store: &Store, me: &str) -> Option<Vec<String>> {
    match store.instance_heartbeat(me, now_ms(), LEASE_TTL_MS).await {
        Ok(live) => Some(live),
        Err(e) => {
            tracing::warn!("instance heartbeat: {e}");
            None
        }
    }
}

async fn beating(
    store: Store,
    me: String,
    live: watch::Sender<Vec<String>>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(BEAT_MS as u64)) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            break;
        }
        if let Some(names) = beat(&store, &me).await {
            live.send_if_modified(|current| {
                let changed = *current != names;
                if changed {
                    tracing::info!(
                        instances = names.len(),
                        "delivery instances: {}",
                        names.join(", ")
                    );
                    *current = names;
                }
                changed
            });
        }
    }
    if let Err(e) = store.instance_leaves(&me).await {
        tracing::warn!("instance leaving: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("host-{i}")).collect()
    }

    #[test]
    fn every_instance_computes_the_same_owner_and_accounts_spread_evenly() {
        let live = names(3);
        let mut counts = [0usize; 3];
        for a in 0..3_000 {
            let key = format!("amocrm:https://shop{a}.amocrm.ru");
            let seen: Vec<&str> = live.iter().map(|me| owner(&live, me, &key)).collect();
            assert!(seen.windows(2).all(|w| w[0] == w[1]), "{key}: {seen:?}");
            let i = live.iter().position(|n| n == seen[0]).unwrap();
            counts[i] += 1;
        }
        // 1,000 each expected; a fair split stays well within 10%.
        assert!(
            counts.iter().all(|&c| (900..=1_100).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn an_instance_leaving_moves_only_its_own_accounts() {
        let three = names(3);
        let two = names(2);
        for a in 0..1_000 {
            let key = format!("amocrm:https://shop{a}.amocrm.ru");
            let before = owner(&three, &three[0], &key);
            let after = owner(&two, &two[0], &key);
            if before != "host-2" {
                assert_eq!(before, after, "{key} moved though its owner stayed");
            }
        }
    }

    #[test]
    fn an_instance_not_yet_in_the_list_counts_itself() {
        let live = names(1);
        let mine = (0..100)
            .filter(|a| owner(&live, "late", &format!("k{a}")) == "late")
            .count();
        assert!(mine > 20 && mine < 80, "{mine}");
    }
}
