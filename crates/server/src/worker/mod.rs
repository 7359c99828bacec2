//! The outbox worker: executes stored plans against each tenant's CRM account.
//!
//! - **One deliverer per account.** A tenant's items are delivered by the instance holding its
//!   CRM account's lease (`delivery_leases`, see [`lease`]), through one
//!   [`AmoClient`](callbridge_amocrm::AmoClient) per tenant whose limiter is the account's,
//!   shared by every tenant connected to that account and every kind of work (calls, contacts,
//!   leads, tasks, notes, call cards).
//! - **Two lanes.** The call lane takes call items as soon as they are due (woken by the
//!   processor); the follow-up lane (tasks, transcripts, repeat-client leads) gathers for at least
//!   a second between rounds and uses a handle of the client that leaves places of the account's
//!   window to calls. Each round takes what is due (fresh items first, then a bounded number of
//!   retries, so failing work never starves new work) and batches it, 50 a request.
//! - **Calls.** Optimistic: a call is sent at once; amoCRM attaches it by the client's number.
//!   "Entity not found" means a new client (C4): the configured new-client action runs (contact,
//!   contact + lead, unsorted request, or nothing: the item is parked saying so) and the call goes
//!   out again with the next round. A client whose unsorted request is still pending gets its
//!   later calls as notes on that request's lead, not a second request (see [`new_client`]).
//!   A known client's call lands where amoCRM puts it; the
//!   repeat-client action ("always a lead", "a lead if none is open") is a `lead` follow-up added
//!   when the call is done (see [`repeat`]).
//! - **Follow-ups** (M5 tasks, C2 transcripts, C4 leads) wait for their call and go, batched, to
//!   the entity it landed on (see [`followups`]).
//! - **Exactly once.** Items carry stable keys (the `request_id` and the call's `uniq`). An item is
//!   marked in flight before its request leaves and done with the CRM's ids after; an item still
//!   marked (crash, timeout, 5xx) is looked up among the CRM's call notes by `uniq` before it is
//!   sent again (an unsorted request first among the pending requests by `metadata.uniq`). Ids created on the way (contact, lead) are kept as progress, so a retry does not
//!   create them twice. Remaining window: a contact or lead created by a request whose answer
//!   was lost is created again only if the call's next attempt (amoCRM's match on the last 10
//!   digits) does not find it.
//! - **Errors.** 429: the client's limiter pauses the account; items are retried without counting
//!   an attempt. 5xx and timeouts: jittered exponential backoff. 401 (after the client's one
//!   refresh): the connection is marked broken and delivery stops until the tenant is changed.
//!   403: marked blocked, never retried automatically. A refusal the CRM explains: the item is
//!   parked with the CRM's words (admin API: list, retry).

mod answers;
mod calls;
mod cards;
pub mod crm_port;
mod failures;
mod followups;
mod instances;
mod lease;
mod new_client;
mod repeat;
mod rounds;
#[cfg(test)]
mod tests;
pub mod work;

use crate::state::{now_ms, AppState, Tenant};
use callbridge_core::explain::Lang;
use callbridge_mango::api::{ApiError, VpbxClient};
use callbridge_store::Lane;
use crm_port::CrmPort;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicI64;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// A lease outlives a crashed holder by this much.
const LEASE_TTL_MS: i64 = 15_000;
/// The holder stops this long before its lease could pass to another instance.
const LEASE_SAFETY_MS: i64 = 5_000;
/// Items a round takes: fresh ones, and at most this many retries.
const FRESH_PER_ROUND: i64 = 200;
const RETRIES_PER_ROUND: i64 = 10;
/// Retries a call round takes: after an outage the whole backlog is retries, and it must drain
/// at the account's limit, not ten calls a round.
const CALL_RETRIES_PER_ROUND: i64 = 200;
/// While the CRM does not answer (no connection, 5xx, timeouts), work waits for the account, not
/// each item for itself: the next attempt of everything that failed is this long after the last
/// failure, doubling from [`OUTAGE_RETRY_FIRST_MS`] up to this; each call round then sends one
/// batch as a probe, and the rest only once it got through. So a backlog built during an outage
/// goes out within a few seconds of the CRM's return, at the account's rate.
const OUTAGE_RETRY_MAX_MS: i64 = 4_000;
const OUTAGE_RETRY_FIRST_MS: i64 = 500;
/// How far around the lost requests' times the notes of a settling listing are read: the CRM's
/// clock may differ from ours.
const CLOCK_MARGIN_S: i64 = 60;
/// Places of the account's 7 a second that follow-ups (tasks, transcripts, repeat-client leads)
/// leave free for calls: a call's request never queues behind more than a few of them.
const FOLLOWUP_RESERVE: usize = 3;
/// The follow-up lane gathers work at least this long between rounds, so its requests carry
/// more items each.
const FOLLOWUP_ROUND_MS: u64 = 1_000;
/// An idle lane with nothing pending sleeps at most this long (less a share of its own, so the
/// lanes of tenants started together do not all wake together): every writer of outbox work in
/// this process wakes it, and on PostgreSQL the due-work poller wakes it for what other
/// instances stored (see `rounds::sleep_until_work`), so this is a safety net. With thousands of
/// idle tenants it sets the idle cost: 5,000 tenants' lanes wake about 40 times a second.
const IDLE_MAX_MS: i64 = 300_000;
/// How often, on PostgreSQL, the instance asks which tenants have due work (one query for all
/// tenants) and wakes their lanes; also an idle lane's sleep after a failed look.
const SHARED_DB_IDLE_MS: i64 = 1_000;
/// The shortest idle sleep: what was due but not taken (an in-flight mark still in its grace)
/// is looked at again this often, as before lanes slept until work.
const MIN_IDLE_MS: i64 = 100;
/// Up to this many deliveries starting together ask the store for their own language and let
/// their lanes look for work; more (a start) ask once for all the tenants.
const FEW_TO_START: usize = 8;
/// How often the worker compares its deliveries with the tenants when nothing told it of a
/// change (every change does: `tenants_changed`).
const TENANTS_LOOK_MS: u64 = 5_000;
/// amoCRM's documented batch limit.
const BATCH: usize = 50;
/// Call batches of one round sent concurrently (the limiter still paces them).
const BATCHES_IN_FLIGHT: usize = 3;
/// An in-flight mark younger than this (or than the request timeout and 5 s, if longer) may
/// belong to a request still under way (another instance's, before it lost the lease): it is not
/// checked yet.
const IN_FLIGHT_GRACE_MS: i64 = 25_000;
/// How long a follow-up (transcript, task) waits for its call before asking again.
const WAIT_FOR_CALL_MS: i64 = 1_000;
/// A transcript Mango has not produced yet is asked for again this many times.
const TRANSCRIPT_ATTEMPTS: i64 = 12;
/// Call cards older than this are dropped: by then the call was answered or given up.
const CARD_MAX_AGE: Duration = Duration::from_secs(10);
/// The source name amoCRM shows on call notes.
const SOURCE: &str = "callbridge";

/// The running deliveries by tenant: the tenant's version they started at, their stop signal
/// and their task.
type Running = HashMap<String, (i64, watch::Sender<bool>, tokio::task::JoinHandle<()>)>;

/// Runs until shutdown: keeps one delivery task per tenant with a CRM connection, restarting it
/// when the tenant changes.
pub async fn run(state: Arc<AppState>, mut shutdown: watch::Receiver<bool>) {
    let holder = format!(
        "{}-{}-{:x}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "callbridge".into()),
        std::process::id(),
        now_ms()
    );
    let mut running: Running = HashMap::new();
    // On a shared database the instances spread the accounts between them; the first
    // heartbeat is stored before any delivery starts, so this instance starts knowing the others.
    let shared_database = state.store.backend() != "sqlite";
    let membership = if shared_database {
        Some(
            instances::Membership::join(state.store.clone(), holder.clone(), shutdown.clone())
                .await,
        )
    } else {
        None
    };
    // On a shared database another instance may store work for this one's tenants: one query a
    // second for every tenant wakes the lanes with due work, so idle lanes need not poll. It
    // ends by itself at shutdown.
    if shared_database {
        tokio::spawn(wake_tenants_with_due_work(state.clone(), shutdown.clone()));
    }
    let mut leases = lease::AccountLeases::new(
        state.store.clone(),
        holder,
        shutdown.clone(),
        membership.as_ref().map(|m| m.fleet.clone()),
    );
    loop {
        let tenants: Vec<Arc<Tenant>> = state.tenants.read().await.values().cloned().collect();
        let mut seen = HashSet::new();
        let mut to_start = Vec::new();
        for tenant in tenants {
            seen.insert(tenant.row.id.clone());
            let current = running.get(&tenant.row.id).map(|r| r.0);
            if current == Some(tenant.row.updated_at_ms) {
                continue;
            }
            if let Some((_, stop, task)) = running.remove(&tenant.row.id) {
                let _ = stop.send(true);
                let _ = task.await;
            }
            to_start.push(tenant);
        }
        if !to_start.is_empty() {
            let deliveries = deliveries_to_start(&state, &mut leases, to_start, &mut running).await;
            // Marked "ok" before any delivery runs, so a failure it meets right away is what
            // stays; one transaction for all of them (thousands at a start).
            let ids: Vec<String> = deliveries
                .iter()
                .map(|d| d.tenant_id().to_string())
                .collect();
            let _ = state.store.set_crm_statuses(&ids, "ok", "", now_ms()).await;
            for delivery in deliveries {
                let (stop, stop_rx) = watch::channel(false);
                let (id, version) = (
                    delivery.tenant.row.id.clone(),
                    delivery.tenant.row.updated_at_ms,
                );
                let task = tokio::spawn(delivery.run(stop_rx));
                running.insert(id, (version, stop, task));
            }
        }
        for id in running.keys().cloned().collect::<Vec<_>>() {
            if !seen.contains(&id) {
                if let Some((_, stop, task)) = running.remove(&id) {
                    let _ = stop.send(true);
                    let _ = task.await;
                }
            }
        }
        leases.prune();
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(TENANTS_LOOK_MS)) => {}
            _ = state.tenants_changed.notified() => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            break;
        }
    }
    // Every delivery is told at once, then awaited: each abandons what it waits for.
    let stopping: Vec<_> = running
        .into_values()
        .map(|(_, stop, task)| {
            let _ = stop.send(true);
            (stop, task)
        })
        .collect();
    for (_, task) in stopping {
        let _ = task.await;
    }
    // Give the accounts' leases up, so another instance takes them over at once rather than
    // when they expire.
    leases.released(Duration::from_secs(2)).await;
    if let Some(membership) = membership {
        membership.left(Duration::from_secs(1)).await;
    }
}

/// The deliveries of the tenants to (re)start. Many at once (a start) are built with one query
/// each for all the tenants (their languages, which have pending work) rather than several per
/// tenant: a start with 5,000 tenants asked the store some 25,000 times before it went quiet. A
/// few (a tenant changed) ask for theirs alone, so a PUT's cost does not grow with the tenants.
/// A tenant whose CRM connection cannot be used is marked broken and remembered in `running` at
/// its version, so the error is not repeated every look.
async fn deliveries_to_start(
    state: &Arc<AppState>,
    leases: &mut lease::AccountLeases,
    tenants: Vec<Arc<Tenant>>,
    running: &mut Running,
) -> Vec<TenantDelivery> {
    let many = tenants.len() > FEW_TO_START;
    let languages: HashMap<String, String> = if many {
        state
            .store
            .tenant_languages()
            .await
            .unwrap_or_default()
            .into_iter()
            .collect()
    } else {
        let mut languages = HashMap::new();
        for tenant in &tenants {
            if let Ok(Some(code)) = state.store.tenant_language(&tenant.row.id).await {
                languages.insert(tenant.row.id.clone(), code);
            }
        }
        languages
    };
    // Many: the tenants with no pending item, each with its wake count, read before the store
    // was asked, so work stored after the answer still wakes a lane that skips its first look
    // (see `TenantWake`). A few, or the store could not say: every lane looks for itself.
    let mut quiet: HashMap<String, u64> = HashMap::new();
    if many {
        let counts: Vec<(String, u64)> = tenants
            .iter()
            .map(|t| {
                let count = state.outbox_ready.of(&t.row.id).generation();
                (t.row.id.clone(), count)
            })
            .collect();
        // Due by the end of time: every tenant with a pending item.
        if let Ok(with_work) = state.store.tenants_with_due_work(i64::MAX).await {
            let with_work: HashSet<String> = with_work.into_iter().collect();
            quiet = counts
                .into_iter()
                .filter(|(id, _)| !with_work.contains(id))
                .collect();
        }
    }
    let mut deliveries = Vec::with_capacity(tenants.len());
    for tenant in tenants {
        let client = match state.crm_client(&tenant) {
            Ok(Some(client)) => client,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(tenant = %tenant.row.id, "CRM connection not usable: {e}");
                let _ = state
                    .store
                    .set_crm_status(&tenant.row.id, "broken", &e.to_string(), now_ms())
                    .await;
                // Remember the version, so the error is not repeated every second.
                let (stop, _) = watch::channel(false);
                running.insert(
                    tenant.row.id.clone(),
                    (tenant.row.updated_at_ms, stop, tokio::spawn(async {})),
                );
                continue;
            }
        };
        let Some(account) = crate::crm_clients::account_of(&tenant) else {
            continue;
        };
        // The language of the words written to the CRM; a change takes effect when the
        // tenant's delivery restarts (any change of the tenant restarts it).
        let lang = languages
            .get(&tenant.row.id)
            .map(|code| Lang::from_code(code))
            .unwrap_or_default();
        let quiet_since = quiet.get(&tenant.row.id).copied();
        deliveries.push(TenantDelivery {
            state: state.clone(),
            tenant: tenant.clone(),
            lang,
            background: Arc::new(client.background(FOLLOWUP_RESERVE)),
            client: Arc::new(client),
            vpbx: state.vpbx_clients.client(
                &state.mango_api_url,
                &tenant.row.mango_api_key,
                &tenant.row.mango_api_salt,
            ),
            lease: leases.lease(&lease::account_lease_key(&account)),
            outage_failures: AtomicI64::new(0),
            quiet_since,
        });
    }
    deliveries
}

/// Why a tenant's delivery stopped for good (until the tenant is changed).
#[derive(Debug)]
enum Stop {
    Broken(String),
    Blocked,
}

struct TenantDelivery {
    state: Arc<AppState>,
    tenant: Arc<Tenant>,
    /// The tenant's language, for the reasons in words on each call (`core::explain`).
    lang: Lang,
    client: Arc<dyn CrmPort>,
    /// The same account for follow-ups: leaves [`FOLLOWUP_RESERVE`] places of the window to calls.
    background: Arc<dyn CrmPort>,
    /// The tenant's Mango API, for transcripts (one client, so its rate limits hold).
    vpbx: Result<VpbxClient, ApiError>,
    /// This instance's hold on the CRM account's lease, shared with the deliveries of the
    /// account's other tenants.
    lease: Arc<lease::AccountLease>,
    /// Requests in a row the CRM did not answer (see [`OUTAGE_RETRY_MAX_MS`]); 0 when it does.
    outage_failures: AtomicI64,
    /// The tenant's wake count when it had no pending outbox item at start: its lanes sleep
    /// until woken instead of looking first. `None`: they look.
    quiet_since: Option<u64>,
}

impl TenantDelivery {
    fn tenant_id(&self) -> &str {
        &self.tenant.row.id
    }

    async fn run(self, stop: watch::Receiver<bool>) {
        let this = Arc::new(self);
        let cards = tokio::spawn(this.clone().deliver_cards(stop.clone()));
        let followups = tokio::spawn(this.clone().lane(Lane::FollowUps, stop.clone()));
        this.clone().lane(Lane::Calls, stop.clone()).await;
        let _ = followups.await;
        cards.abort();
        // The account's lease is given up when the last delivery holding it is dropped.
    }
}

#[derive(Debug)]
enum RoundError {
    Store(callbridge_store::StoreError),
    Stop(Stop),
    /// The lease ran out mid-round: what is left stays pending for the new holder.
    LeaseLost,
}

impl From<callbridge_store::StoreError> for RoundError {
    fn from(e: callbridge_store::StoreError) -> Self {
        RoundError::Store(e)
    }
}

/// The due-work poller of a shared database (see `run`): wakes the lanes of every tenant with
/// pending items due, once a second, until shutdown.
async fn wake_tenants_with_due_work(state: Arc<AppState>, mut shutdown: watch::Receiver<bool>) {
    loop {
        if wait(
            &mut shutdown,
            Duration::from_millis(SHARED_DB_IDLE_MS as u64),
        )
        .await
        {
            return;
        }
        match state.store.tenants_with_due_work(now_ms()).await {
            Ok(tenants) => {
                for tenant in tenants {
                    state.outbox_ready.wake(&tenant);
                }
            }
            Err(e) => tracing::warn!("outbox: looking for due work: {e}"),
        }
    }
}

/// Sleeps, or returns true at once when asked to stop.
async fn wait(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}
