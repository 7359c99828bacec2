//! The fleet: which instance delivers for which CRM account when several instances share one
//! PostgreSQL database.
//!
//! Every instance says it is alive in `delivery_instances` every [`BEAT_MS`]; an instance not
//! heard of for [`LEASE_TTL_MS`] is counted out. Each account belongs to one of the live
//! instances, chosen by rendezvous hashing with bounded loads: every account ranks the
//! instances by a hash of instance name and account key, and goes, in the order of the account
//! keys, to the first in its ranking that holds fewer than its share (the accounts divided by
//! the instances, rounded up). Every instance computes the same owners from the same list of
//! instances and accounts without talking to the others (they deliver for the same tenants, so
//! they know the same accounts); the split is even however few the accounts (plain rendezvous
//! hashing put all 4 accounts of a test on one of 2 instances one time in 8); and when an
//! instance joins or leaves, mostly the accounts it takes or leaves change hands. Only the
//! owner tries to take the account's lease (`lease.rs`); an
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
use crate::sync::lock;
use callbridge_store::Store;
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How often an instance says it is alive and reads who else is.
const BEAT_MS: i64 = LEASE_TTL_MS / 5;

/// Who is alive, as this instance last read it, and the accounts it delivers for.
#[derive(Debug, Clone)]
pub(super) struct Fleet {
    me: String,
    live: watch::Receiver<Vec<String>>,
    accounts: Arc<Mutex<Accounts>>,
}

/// The accounts this instance delivers for, and their owners as last worked out.
#[derive(Debug, Default)]
struct Accounts {
    keys: BTreeSet<String>,
    /// The owner of every key, for the live list it was worked out from; `None` once the keys
    /// changed. Worked out again only when either changes, not at every lease renewal.
    owners: Option<(Vec<String>, HashMap<String, String>)>,
}

impl Fleet {
    /// Whether this instance owns the account now (see the module's words).
    pub(super) fn owns(&self, key: &str) -> bool {
        let live = self.live.borrow();
        let mut accounts = lock(&self.accounts);
        let Accounts { keys, owners } = &mut *accounts;
        if !keys.contains(key) {
            // Not (or no longer) one of this instance's accounts: plain rendezvous hashing.
            return owner(&live, &self.me, key) == self.me;
        }
        let stale = owners.as_ref().is_none_or(|(seen, _)| *seen != *live);
        if stale {
            *owners = Some((live.clone(), assign(&live, &self.me, keys)));
        }
        owners
            .as_ref()
            .and_then(|(_, owners)| owners.get(key))
            .is_some_and(|owner| *owner == self.me)
    }

    /// Counts the account among this instance's (its first delivery started).
    pub(super) fn add_account(&self, key: &str) {
        let mut accounts = lock(&self.accounts);
        if accounts.keys.insert(key.to_string()) {
            accounts.owners = None;
        }
    }

    /// No delivery of this instance holds the account any more.
    pub(super) fn remove_account(&self, key: &str) {
        let mut accounts = lock(&self.accounts);
        if accounts.keys.remove(key) {
            accounts.owners = None;
        }
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

/// The owner of every key: rendezvous hashing with bounded loads (see the module's words).
fn assign(live: &[String], me: &str, keys: &BTreeSet<String>) -> HashMap<String, String> {
    let mut instances: Vec<&str> = live.iter().map(String::as_str).collect();
    instances.push(me);
    instances.sort_unstable();
    instances.dedup();
    let share = keys.len().div_ceil(instances.len());
    let mut load = vec![0usize; instances.len()];
    let mut owners = HashMap::with_capacity(keys.len());
    let mut ranked = Vec::with_capacity(instances.len());
    for key in keys {
        ranked.clear();
        ranked.extend(
            instances
                .iter()
                .enumerate()
                .map(|(i, name)| (score(name, key), i)),
        );
        // Highest hash first; a tie goes to the later name, as in `owner`.
        ranked.sort_unstable_by(|a, b| b.cmp(a));
        let chosen = ranked
            .iter()
            .map(|&(_, i)| i)
            .find(|&i| load[i] < share)
            .unwrap_or(ranked[0].1);
        load[chosen] += 1;
        owners.insert(key.clone(), instances[chosen].to_string());
    }
    owners
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
            fleet: Fleet {
                me,
                live,
                accounts: Arc::default(),
            },
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

    fn keys(n: usize) -> BTreeSet<String> {
        (0..n)
            .map(|a| format!("amocrm:https://shop{a}.amocrm.ru"))
            .collect()
    }

    fn loads(owners: &HashMap<String, String>, live: &[String]) -> Vec<usize> {
        live.iter()
            .map(|name| owners.values().filter(|o| *o == name).count())
            .collect()
    }

    #[test]
    fn bounded_loads_split_few_accounts_evenly_and_every_instance_agrees() {
        // Plain rendezvous hashing puts all of 4 accounts on one of 2 instances one time in
        // 8; the bounded split never does, whatever the names.
        for run in 0..200 {
            let live: Vec<String> = (0..2).map(|i| format!("host-{run}-{i}")).collect();
            let accounts = keys(4);
            let views: Vec<_> = live.iter().map(|me| assign(&live, me, &accounts)).collect();
            assert!(views.windows(2).all(|w| w[0] == w[1]), "{views:?}");
            assert_eq!(loads(&views[0], &live), [2, 2], "{:?}", views[0]);
        }
        for (instances, accounts) in [(3, 30), (3, 31), (2, 3), (5, 1_000)] {
            let live = names(instances);
            let owners = assign(&live, &live[0], &keys(accounts));
            let share = accounts.div_ceil(instances);
            let loads = loads(&owners, &live);
            assert_eq!(loads.iter().sum::<usize>(), accounts);
            // No instance above its share, so none far below it either.
            let least = accounts - (instances - 1) * share;
            assert!(loads.iter().all(|&l| l <= share && l >= least), "{loads:?}");
        }
    }

    #[test]
    fn with_bounded_loads_an_instance_leaving_moves_few_other_accounts() {
        let three = names(3);
        let two = names(2);
        let accounts = keys(1_000);
        let before = assign(&three, &three[0], &accounts);
        let after = assign(&two, &two[0], &accounts);
        let moved_between_stayers = accounts
            .iter()
            .filter(|k| before[*k] != "host-2" && before[*k] != after[*k])
            .count();
        // Its own third must move; of the rest only those bumped by a full share may.
        assert!(moved_between_stayers < 100, "{moved_between_stayers}");
    }

    #[test]
    fn the_fleet_works_owners_out_from_the_accounts_it_knows() {
        let live = names(2);
        let (_tx, rx) = watch::channel(live.clone());
        let fleets: Vec<Fleet> = live
            .iter()
            .map(|me| Fleet {
                me: me.clone(),
                live: rx.clone(),
                accounts: Arc::default(),
            })
            .collect();
        for key in keys(4) {
            fleets.iter().for_each(|f| f.add_account(&key));
        }
        for key in keys(4) {
            let owning = fleets.iter().filter(|f| f.owns(&key)).count();
            assert_eq!(owning, 1, "{key}");
        }
        let mine = |f: &Fleet| keys(4).iter().filter(|k| f.owns(k)).count();
        assert_eq!(fleets.iter().map(mine).collect::<Vec<_>>(), [2, 2]);
        // An account dropped by both: the other three are split 2 and 1 again.
        let dropped = keys(4).into_iter().next().unwrap();
        fleets.iter().for_each(|f| f.remove_account(&dropped));
        let mut split: Vec<usize> = fleets
            .iter()
            .map(|f| keys(4).iter().skip(1).filter(|k| f.owns(k)).count())
            .collect();
        split.sort_unstable();
        assert_eq!(split, [1, 2]);
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
