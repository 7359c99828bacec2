//! The outbox worker: executes stored plans against each tenant's CRM account.
//!
//! - **One deliverer per account.** A tenant's items are delivered by the instance holding its
//!   lease (`delivery_leases`), through one [`AmoClient`], whose limiter is shared by every kind of
//!   work for that account (calls, contacts, leads, tasks, notes, call cards).
//! - **Two lanes.** The call lane takes call items as soon as they are due (woken by the
//!   processor); the follow-up lane (tasks, transcripts, repeat-client leads) gathers for at least
//!   a second between rounds and uses a handle of the client that leaves places of the account's
//!   window to calls. Each round takes what is due (fresh items first, then a bounded number of
//!   retries, so failing work never starves new work) and batches it, 50 a request.
//! - **Calls.** Optimistic: a call is sent at once; amoCRM attaches it by the client's number.
//!   "Entity not found" means a new client (C4): the configured new-client action runs (contact,
//!   contact + lead, unsorted request, or nothing: the item is parked saying so) and the call goes
//!   out again with the next round. A known client's call lands where amoCRM puts it; the
//!   repeat-client action ("always a lead", "a lead if none is open") is a `lead` follow-up added
//!   when the call is done (see [`repeat`]).
//! - **Follow-ups** (M5 tasks, C2 transcripts, C4 leads) wait for their call and go, batched, to
//!   the entity it landed on (see [`followups`]).
//! - **Exactly once.** Items carry stable keys (the `request_id` and the call's `uniq`). An item is
//!   marked in flight before its request leaves and done with the CRM's ids after; an item still
//!   marked (crash, timeout, 5xx) is looked up among the CRM's call notes by `uniq` before it is
//!   sent again. Ids created on the way (contact, lead) are kept as progress, so a retry does not
//!   create them twice. Remaining window: a contact or lead created by a request whose answer
//!   was lost is created again only if the call's next attempt (amoCRM's match on the last 10
//!   digits) does not find it.
//! - **Errors.** 429: the client's limiter pauses the account; items are retried without counting
//!   an attempt. 5xx and timeouts: jittered exponential backoff. 401 (after the client's one
//!   refresh): the connection is marked broken and delivery stops until the tenant is changed.
//!   403: marked blocked, never retried automatically. A refusal the CRM explains: the item is
//!   parked with the CRM's words (admin API: list, retry).

mod followups;
mod repeat;

use crate::crm;
use crate::state::{now_ms, AppState, Tenant};
use callbridge_amocrm::{
    AmoClient, CallCardEvent, CallDirection, EntityType, Error as CrmError, NewCall,
    NewComplexLead, NewContact, NewUnsortedSip, NotesFilter,
};
use callbridge_core::cards::CardAction;
use callbridge_mango::api::VpbxClient;
use callbridge_store::{AddedItem, Lane, NewOutboxItem, OutboxItem};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
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

/// Runs until shutdown: keeps one delivery task per tenant with a CRM connection, restarting it
/// when the tenant changes.
pub async fn run(state: Arc<AppState>, mut shutdown: watch::Receiver<bool>) {
    let holder = format!(
        "{}-{}-{:x}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "callbridge".into()),
        std::process::id(),
        now_ms()
    );
    let mut running: HashMap<String, (i64, watch::Sender<bool>, tokio::task::JoinHandle<()>)> =
        HashMap::new();
    loop {
        let tenants: Vec<Arc<Tenant>> = state.tenants.read().await.values().cloned().collect();
        let mut seen = HashSet::new();
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
            let client =
                match crm::client(&state.store, &tenant.row, state.allow_insecure_crm_hosts) {
                    Ok(Some(client)) => client,
                    Ok(None) => continue,
                    Err(e) => {
                        tracing::warn!(tenant = %tenant.row.id, "CRM connection not usable: {e}");
                        let _ = state
                            .store
                            .set_crm_status(&tenant.row.id, "broken", &e, now_ms())
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
            let (stop, stop_rx) = watch::channel(false);
            let delivery = TenantDelivery {
                state: state.clone(),
                tenant: tenant.clone(),
                background: client.background(FOLLOWUP_RESERVE),
                client,
                vpbx: VpbxClient::with_base_url(
                    &state.mango_api_url,
                    tenant.row.mango_api_key.clone(),
                    tenant.row.mango_api_salt.clone(),
                )
                .map_err(|e| e.to_string()),
                holder: holder.clone(),
                lease_until: AtomicI64::new(0),
                outage_failures: AtomicI64::new(0),
            };
            let task = tokio::spawn(delivery.run(stop_rx));
            running.insert(
                tenant.row.id.clone(),
                (tenant.row.updated_at_ms, stop, task),
            );
        }
        for id in running.keys().cloned().collect::<Vec<_>>() {
            if !seen.contains(&id) {
                if let Some((_, stop, task)) = running.remove(&id) {
                    let _ = stop.send(true);
                    let _ = task.await;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = state.tenants_changed.notified() => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            break;
        }
    }
    for (_, (_, stop, task)) in running {
        let _ = stop.send(true);
        let _ = task.await;
    }
}

/// Why a tenant's delivery stopped for good (until the tenant is changed).
enum Stop {
    Broken(String),
    Blocked,
}

struct TenantDelivery {
    state: Arc<AppState>,
    tenant: Arc<Tenant>,
    client: AmoClient,
    /// The same account for follow-ups: leaves [`FOLLOWUP_RESERVE`] places of the window to calls.
    background: AmoClient,
    /// The tenant's Mango API, for transcripts (one client, so its rate limits hold).
    vpbx: Result<VpbxClient, String>,
    holder: String,
    /// Until when (Unix ms) this instance holds the tenant's delivery lease; 0 when it does not.
    lease_until: AtomicI64,
    /// Requests in a row the CRM did not answer (see [`OUTAGE_RETRY_MAX_MS`]); 0 when it does.
    outage_failures: AtomicI64,
}

/// What a failed request leaves of its items' in-flight marks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marks {
    /// The request could not change the CRM (a read, or a write whose answer is known).
    Clear,
    /// A write: the mark stays only if its answer was lost (a timeout, a connection broken after
    /// sending); a 5xx, a 429 or no connection at all say the CRM did not act.
    KeepIfLost,
    /// The items are uncertain already (a settling read failed): they stay so.
    Keep,
}

/// The `record` of a call item, as the processor stored it (the `simulate` JSON of a record).
#[derive(Debug, Clone, Deserialize)]
struct CallWork {
    client_phone: Option<String>,
    direction: String,
    call_status: u8,
    duration_s: i64,
    started_at: i64,
    crm_user_id: u64,
    reasons: Vec<String>,
    #[serde(default)]
    entities: Option<EntitiesWork>,
    #[serde(default)]
    recording_id: Option<String>,
    #[serde(default)]
    employee_extension: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct EntitiesWork {
    new_client: String,
    repeat_client: String,
    responsible_crm_user_id: u64,
}

/// What a call item has created so far, kept across retries.
#[derive(Debug, Clone, Default, serde::Serialize, Deserialize)]
struct Progress {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    contact_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lead_id: Option<u64>,
    /// The repeat-client action has run (or was not needed).
    #[serde(default)]
    repeat_done: bool,
    /// The CRM said it does not know the client.
    #[serde(default)]
    new_client: bool,
    /// Where the call went: a `lead` follow-up reads it from its call item each time, so it is
    /// never stored.
    #[serde(skip)]
    landed: Option<Value>,
}

impl Call {
    /// A call item's record and its progress so far; the item's key and the reason when its
    /// record cannot be read.
    fn read(item: OutboxItem) -> Result<Call, (String, String)> {
        match serde_json::from_value::<CallWork>(item.payload["record"].clone()) {
            Ok(work) => {
                let progress = item
                    .crm_response
                    .clone()
                    .and_then(|v| serde_json::from_value(v).ok())
                    .unwrap_or_default();
                Ok(Call {
                    item,
                    work,
                    progress,
                })
            }
            Err(e) => Err((item.item_key, format!("unreadable call record: {e}"))),
        }
    }

    /// Whether the written call still has a repeat-client action to run (C4): the client was
    /// known to the CRM (not created for this call) and the action asks for a lead.
    fn needs_repeat_action(&self) -> bool {
        self.work
            .entities
            .as_ref()
            .is_some_and(|e| matches!(e.repeat_client.as_str(), "always_lead" | "lead_if_no_open"))
            && !self.progress.new_client
            && !self.progress.repeat_done
    }
}

struct Call {
    item: OutboxItem,
    work: CallWork,
    progress: Progress,
}

impl TenantDelivery {
    fn tenant_id(&self) -> &str {
        &self.tenant.row.id
    }

    async fn run(self, stop: watch::Receiver<bool>) {
        let this = Arc::new(self);
        let cards = tokio::spawn(this.clone().deliver_cards(stop.clone()));
        let _ = this
            .state
            .store
            .set_crm_status(this.tenant_id(), "ok", "", now_ms())
            .await;
        let renewer = tokio::spawn(this.clone().keep_lease(stop.clone()));
        let followups = tokio::spawn(this.clone().lane(Lane::FollowUps, stop.clone()));
        this.clone().lane(Lane::Calls, stop.clone()).await;
        let _ = followups.await;
        renewer.abort();
        let _ = renewer.await;
        this.lease_until.store(0, Ordering::SeqCst);
        let _ = this
            .state
            .store
            .release_lease(this.tenant_id(), &this.holder)
            .await;
        cards.abort();
    }

    /// Runs one lane's rounds until shutdown, or until the connection is broken or blocked.
    async fn lane(self: Arc<Self>, lane: Lane, mut stop: watch::Receiver<bool>) {
        let idle = match lane {
            Lane::FollowUps => Duration::from_millis(FOLLOWUP_ROUND_MS),
            _ => Duration::from_millis(100),
        };
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
            let started = tokio::time::Instant::now();
            let result = match lane {
                Lane::FollowUps => self.followup_round().await,
                _ => self.round().await,
            };
            match result {
                Ok(true) if lane == Lane::Calls => {}
                Ok(false) if lane == Lane::Calls => {
                    // Idle: look again when the processor stores new plans, or shortly (retries
                    // come due on their own).
                    let woken = self.state.outbox_ready.notified();
                    tokio::select! {
                        _ = woken => {}
                        _ = tokio::time::sleep(idle) => {}
                        _ = stop.changed() => break,
                    }
                }
                Ok(_) => {
                    let rest = idle.saturating_sub(started.elapsed());
                    if wait(&mut stop, rest.max(Duration::from_millis(100))).await {
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

    /// Takes and keeps the tenant's lease, renewing it well before it expires, independently of
    /// how long a round takes.
    async fn keep_lease(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
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

    fn ensure_lease(&self) -> Result<(), RoundError> {
        if self.lease_ok() {
            Ok(())
        } else {
            Err(RoundError::LeaseLost)
        }
    }

    /// Whether this instance may talk to the tenant's CRM now. Checked before every request
    /// that changes the CRM, so a round that outlives the lease stops sending.
    fn lease_ok(&self) -> bool {
        now_ms() < self.lease_until.load(Ordering::SeqCst)
    }

    /// One round of the call lane: the calls that are due. True when something was done.
    async fn round(&self) -> Result<bool, RoundError> {
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
            match item.kind.as_str() {
                "call" => match Call::read(item) {
                    Ok(call) => calls.push(call),
                    Err((key, why)) => store.park_item(&key, &why).await?,
                },
                other => {
                    store
                        .park_item(
                            &item.item_key,
                            &format!("unknown outbox item kind {other:?}"),
                        )
                        .await?
                }
            }
        }
        if !calls.is_empty() {
            self.deliver_calls(calls).await?;
        }
        Ok(true)
    }

    /// One round of the follow-up lane: tasks, transcripts and repeat-client leads that are due.
    async fn followup_round(&self) -> Result<bool, RoundError> {
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

    async fn deliver_calls(&self, calls: Vec<Call>) -> Result<(), RoundError> {
        let now = now_ms();
        let mut ready = Vec::new();
        let mut uncertain = Vec::new();
        for call in calls {
            match call.item.sent_at_ms {
                Some(sent) if call.item.kind == "call" => {
                    if now - sent < self.in_flight_grace_ms() {
                        // Possibly still under way elsewhere: look again later.
                        self.state
                            .store
                            .retry_item(
                                &call.item.item_key,
                                "waiting for an earlier attempt to settle",
                                sent + self.in_flight_grace_ms(),
                                true,
                                false,
                            )
                            .await?;
                    } else {
                        uncertain.push(call);
                    }
                }
                _ => ready.push(call),
            }
        }
        if !uncertain.is_empty() {
            self.ensure_lease()?;
            ready.extend(self.settle_uncertain(uncertain).await?);
        }
        let mut to_send = Vec::new();
        let mut new_clients = Vec::new();
        for call in ready {
            if call.work.client_phone.is_none() {
                self.state
                    .store
                    .complete_items(
                        &[(
                            call.item.item_key.clone(),
                            json!({"skipped": "no client number", "reasons": call.work.reasons}),
                        )],
                        now_ms(),
                    )
                    .await?;
                continue;
            }
            let created = call.progress.contact_id.is_some() || call.progress.lead_id.is_some();
            if call.progress.new_client && !created {
                new_clients.push(call);
            } else {
                to_send.push(call);
            }
        }
        // Every call goes out first; amoCRM's answer says whether the client is new, and where
        // a known client's call landed, which is what the repeat-client action needs. Calls
        // whose client was created in the previous round go out with them.
        let unknown = self.send_calls(to_send).await?;
        let mut again = Vec::new();
        for call in unknown {
            if call.progress.contact_id.is_some() || call.progress.lead_id.is_some() {
                again.push(call);
            } else {
                new_clients.push(call);
            }
        }
        for call in again {
            self.state
                .store
                .retry_item(
                    &call.item.item_key,
                    "amoCRM did not find the contact just created; trying again",
                    now_ms() + 2_000,
                    false,
                    true,
                )
                .await?;
        }
        if !new_clients.is_empty() {
            self.new_clients(new_clients).await?;
        }
        Ok(())
    }

    /// Items marked in flight whose answer was lost: done if the CRM has a call note with their
    /// `uniq`, else sent again. One listing of call notes per entity kind settles every such item
    /// of the round, read only in the time window of the lost requests (from the earliest call
    /// start or send, to the latest send plus the request timeout, with a clock margin each
    /// side: amoCRM may stamp a note with the call's time or with its own), so recovery reads
    /// the few notes written around the loss, not everything since. Each item is checked once:
    /// one not found loses its mark and goes out again as new.
    async fn settle_uncertain(&self, calls: Vec<Call>) -> Result<Vec<Call>, RoundError> {
        let earliest = calls
            .iter()
            .map(|c| {
                let sent = c.item.sent_at_ms.unwrap_or(0) / 1000;
                sent.min(c.work.started_at)
            })
            .min()
            .unwrap_or(0);
        let latest_sent = calls
            .iter()
            .filter_map(|c| c.item.sent_at_ms)
            .max()
            .unwrap_or(0)
            / 1000;
        let timeout_s = self.client.timeout().as_secs() as i64;
        let filter = NotesFilter {
            note_types: vec!["call_in".into(), "call_out".into()],
            entity_ids: vec![],
            updated_from: Some(earliest - CLOCK_MARGIN_S),
            updated_to: Some(latest_sent + timeout_s + CLOCK_MARGIN_S),
        };
        metrics::counter!("callbridge_crm_uncertain_checked_total").increment(calls.len() as u64);
        let mut found: HashMap<String, Value> = HashMap::new();
        for entity in [EntityType::Contacts, EntityType::Leads] {
            match self.client.list_notes(entity, &filter).await {
                Ok(notes) => {
                    self.outage_failures.store(0, Ordering::SeqCst);
                    for note in notes {
                        if let Some(uniq) = note.params.get("uniq").and_then(Value::as_str) {
                            found.insert(
                                uniq.to_string(),
                                json!({"note_id": note.id, "entity_id": note.entity_id, "entity_type": entity.as_str(), "recovered": true}),
                            );
                        }
                    }
                }
                Err(e) => {
                    self.fail_items(calls.iter().map(|c| &c.item).collect(), e, Marks::Keep)
                        .await?;
                    return Ok(Vec::new());
                }
            }
        }
        let mut again = Vec::new();
        let mut done = Vec::new();
        let mut added = Vec::new();
        for call in calls {
            match found.remove(&call.item.item_key) {
                Some(mut answer) => {
                    answer["reasons"] = json!(call.work.reasons);
                    added.extend(self.repeat_followup(&call));
                    done.push((call.item.item_key.clone(), answer));
                }
                None => again.push(call),
            }
        }
        // Not written: from here on they are new sends, whose own marks say when they left.
        let unsent: Vec<String> = again.iter().map(|c| c.item.item_key.clone()).collect();
        self.state.store.unmark_sending(&unsent).await?;
        for call in &mut again {
            call.item.sent_at_ms = None;
        }
        if !done.is_empty() {
            tracing::info!(tenant = %self.tenant_id(), n = done.len(), "calls found in the CRM after an interrupted attempt");
            self.state
                .store
                .complete_and_add(&done, &added, now_ms())
                .await?;
        }
        Ok(again)
    }

    /// The follow-up item that runs a written call's repeat-client action, if it has one.
    fn repeat_followup(&self, call: &Call) -> Option<AddedItem> {
        if !call.needs_repeat_action() {
            return None;
        }
        let key = match call.item.item_key.strip_suffix("/call") {
            Some(stem) => format!("{stem}/lead"),
            None => format!("{}/lead", call.item.item_key),
        };
        Some(AddedItem {
            tenant_id: self.tenant_id().to_string(),
            entry_id: call.item.entry_id.clone(),
            item: NewOutboxItem {
                item_key: key,
                kind: "lead".into(),
                payload: json!({
                    "call_item": call.item.item_key,
                    "record": call.item.payload["record"],
                    "reasons": ["C4"],
                }),
            },
        })
    }

    /// Sends calls in batches. Returns the ones whose client the CRM does not know, and the
    /// written ones whose repeat-client action is still to run.
    async fn send_calls(&self, calls: Vec<Call>) -> Result<Vec<Call>, RoundError> {
        use futures::StreamExt;
        let mut batches = chunks_of(calls);
        let mut unknown = Vec::new();
        if self.in_outage() && batches.len() > 1 {
            // The CRM did not answer last time: one batch asks whether it is back before the
            // rest are spent on it.
            let probe = batches.remove(0);
            unknown.extend(self.send_batch(probe).await?);
            if self.in_outage() {
                let next = now_ms() + self.outage_delay_ms();
                for call in batches.iter().flatten() {
                    self.state
                        .store
                        .retry_item(
                            &call.item.item_key,
                            "waiting for amoCRM to answer again",
                            next,
                            false,
                            false,
                        )
                        .await?;
                }
                return Ok(unknown);
            }
        }
        // A few batches in flight at once: the database work and the CRM's answer time of one
        // overlap the others', so the account's limit, not our latency, sets the pace.
        let results: Vec<Result<Vec<Call>, RoundError>> = futures::stream::iter(batches)
            .map(|batch| self.send_batch(batch))
            .buffer_unordered(BATCHES_IN_FLIGHT)
            .collect()
            .await;
        for result in results {
            unknown.extend(result?);
        }
        Ok(unknown)
    }

    /// Sends one batch (≤ 50). Returns the calls whose client the CRM does not know.
    async fn send_batch(&self, batch: Vec<Call>) -> Result<Vec<Call>, RoundError> {
        let mut unknown = Vec::new();
        let mut queue = vec![batch];
        while let Some(batch) = queue.pop() {
            self.ensure_lease()?;
            let requests: Vec<NewCall> = batch
                .iter()
                .map(|c| self.new_call(&c.item, &c.work))
                .collect();
            let keys: Vec<String> = batch.iter().map(|c| c.item.item_key.clone()).collect();
            self.state.store.mark_sending(&keys, now_ms()).await?;
            match self.client.add_calls(&requests).await {
                Ok(outcome) => {
                    self.outage_failures.store(0, Ordering::SeqCst);
                    let mut by_key: HashMap<String, Call> = batch
                        .into_iter()
                        .map(|c| (c.item.item_key.clone(), c))
                        .collect();
                    let mut done = Vec::new();
                    let mut added = Vec::new();
                    for created in &outcome.created {
                        if let Some(call) = by_key.remove(&created.request_id) {
                            added.extend(self.repeat_followup(&call));
                            done.push((
                                call.item.item_key.clone(),
                                json!({
                                    "note_id": created.id,
                                    "entity_id": created.entity_id,
                                    "entity_type": plural(&created.entity_type),
                                    "contact_id": call.progress.contact_id,
                                    "lead_id": call.progress.lead_id,
                                    "reasons": call.work.reasons,
                                }),
                            ));
                        }
                    }
                    self.state
                        .store
                        .complete_and_add(&done, &added, now_ms())
                        .await?;
                    metrics::counter!("callbridge_crm_calls_written_total")
                        .increment(done.len() as u64);
                    for key in &outcome.not_found {
                        if let Some(mut call) = by_key.remove(key) {
                            call.progress.new_client = true;
                            unknown.push(call);
                        }
                    }
                    // Not written: the next attempt needs no look in the CRM first.
                    self.state.store.unmark_sending(&outcome.not_found).await?;
                    for err in &outcome.other_errors {
                        let key = err.request_id.clone().unwrap_or_default();
                        if let Some(call) = by_key.remove(&key) {
                            self.state
                                .store
                                .park_item(&call.item.item_key, &format!("amoCRM: {}", err.message))
                                .await?;
                        }
                    }
                    // Anything the answer did not mention was not written: send it again.
                    for (key, _) in by_key {
                        self.state
                            .store
                            .retry_item(
                                &key,
                                "not mentioned in amoCRM's answer",
                                now_ms() + 1000,
                                false,
                                true,
                            )
                            .await?;
                    }
                }
                Err(CrmError::Rejected { message, items, .. }) if batch.len() > 1 => {
                    // Validation fails the whole request: park the items it names, and send the
                    // others one by one to find any it did not name.
                    let named: HashMap<String, String> = items
                        .iter()
                        .filter_map(|i| i.request_id.clone().map(|r| (r, i.message.clone())))
                        .collect();
                    for call in batch {
                        match named.get(&call.item.item_key) {
                            Some(msg) => {
                                self.state
                                    .store
                                    .park_item(&call.item.item_key, &format!("amoCRM: {msg}"))
                                    .await?
                            }
                            None if named.is_empty() => queue.push(vec![call]),
                            None => {
                                self.state
                                    .store
                                    .retry_item(
                                        &call.item.item_key,
                                        &message,
                                        now_ms(),
                                        false,
                                        false,
                                    )
                                    .await?
                            }
                        }
                    }
                }
                Err(e) => {
                    self.failed(batch.iter().map(|c| &c.item), e, true).await?;
                }
            }
        }
        Ok(unknown)
    }

    /// Calls of clients the CRM does not know: the new-client action. The created ids are kept
    /// as progress and the calls stay due: they go out with the next round's first batch
    /// (amoCRM attaches them to the contact, or to its single new lead), one request less than
    /// sending them again here. No call given here has a client created yet: those that have go
    /// out as calls (see [`TenantDelivery::deliver_calls`]).
    async fn new_clients(&self, calls: Vec<Call>) -> Result<(), RoundError> {
        let store = &self.state.store;
        // One client, one contact: a second record creating the same client in this round waits
        // for the first and then finds the client as a repeat one.
        let mut creating: HashSet<String> = HashSet::new();
        let mut new_contacts: Vec<Call> = Vec::new();
        let mut new_leads: Vec<Call> = Vec::new();
        // Records waiting for another record to create their client.
        let mut waiting: Vec<(Call, &'static str)> = Vec::new();
        for mut call in calls {
            self.ensure_lease()?;
            let phone = call.work.client_phone.clone().unwrap_or_default();
            if call.work.entities.is_some() && !creating.insert(last_ten_digits(&phone)) {
                call.progress.new_client = false;
                waiting.push((call, "the same client is being created by another record"));
                continue;
            }
            let Some(entities) = call.work.entities.clone() else {
                // Only the record that creates the entry's entities creates the client; the others
                // wait for it, if there is one still to be written.
                if self.sibling_creates_client(&call.item).await? {
                    waiting.push((
                        call,
                        "waiting for the entry's first record to create the client",
                    ));
                } else {
                    store
                        .park_item(
                            &call.item.item_key,
                            &format!("the client {phone} is not in amoCRM and this record creates no contact (P4, C4); create the contact, then retry"),
                        )
                        .await?;
                }
                continue;
            };
            call.progress.new_client = true;
            match entities.new_client.as_str() {
                // Created together below, up to 50 a request.
                "contact" => new_contacts.push(call),
                "contact_and_lead" => new_leads.push(call),
                "unsorted" => self.unsorted(call, &phone).await?,
                _ => {
                    store
                        .park_item(
                            &call.item.item_key,
                            &format!("the client {phone} is not in amoCRM and the new-client action is manual (C4); create the contact, then retry"),
                        )
                        .await?;
                }
            }
        }
        // The two kinds go out together: independent requests, so neither waits for the other.
        let (contacts, leads) = tokio::join!(
            self.create_contacts(new_contacts),
            self.create_contacts_and_leads(new_leads)
        );
        let mut created_clients = contacts?;
        created_clients.extend(leads?);
        // A record whose client was just created goes out with the next round's first batch;
        // one whose creator is not in this round (failed, or waiting itself) asks again later.
        for (mut call, why) in waiting {
            // Sent as a known client's call next time: by then its contact exists.
            call.progress.new_client = false;
            let phone = call.work.client_phone.as_deref().unwrap_or_default();
            let due = if created_clients.contains(&last_ten_digits(phone)) {
                now_ms()
            } else {
                now_ms() + WAIT_FOR_CALL_MS
            };
            store
                .save_progress(&call.item.item_key, &json!(call.progress))
                .await?;
            store
                .retry_item(&call.item.item_key, why, due, false, false)
                .await?;
        }
        Ok(())
    }

    /// New clients' contacts, up to 50 a request. Returns the clients (last 10 digits) created.
    async fn create_contacts(
        &self,
        new_contacts: Vec<Call>,
    ) -> Result<HashSet<String>, RoundError> {
        let mut created_clients = HashSet::new();
        for chunk in chunks_of(new_contacts) {
            self.ensure_lease()?;
            let requests: Vec<NewContact> = chunk
                .iter()
                .map(|c| {
                    let phone = c.work.client_phone.clone().unwrap_or_default();
                    NewContact {
                        name: format!("Client {phone}"),
                        phone,
                        responsible_user_id: c
                            .work
                            .entities
                            .as_ref()
                            .map(|e| e.responsible_crm_user_id),
                        request_id: Some(c.item.item_key.clone()),
                    }
                })
                .collect();
            match self.client.create_contacts(&requests).await {
                Ok(created) => {
                    for (i, mut call) in chunk.into_iter().enumerate() {
                        call.progress.contact_id =
                            answer_for(&created, &call.item.item_key, i).map(|c| c.id);
                        created_clients.insert(self.keep_created(&call).await?);
                    }
                }
                Err(e) => {
                    self.failed(chunk.iter().map(|c| &c.item), e, false).await?;
                }
            }
        }
        Ok(created_clients)
    }

    /// New clients' contact + lead pairs (complex leads), up to 50 a request. Returns the clients (last 10 digits) created.
    async fn create_contacts_and_leads(
        &self,
        new_leads: Vec<Call>,
    ) -> Result<HashSet<String>, RoundError> {
        let mut created_clients = HashSet::new();
        for chunk in chunks_of(new_leads) {
            self.ensure_lease()?;
            let requests: Vec<NewComplexLead> = chunk
                .iter()
                .map(|c| {
                    let phone = c.work.client_phone.clone().unwrap_or_default();
                    let responsible = c.work.entities.as_ref().map(|e| e.responsible_crm_user_id);
                    NewComplexLead {
                        name: lead_name(&c.work, &phone),
                        responsible_user_id: responsible,
                        contact: NewContact {
                            name: format!("Client {phone}"),
                            phone,
                            responsible_user_id: responsible,
                            request_id: None,
                        },
                        request_id: Some(c.item.item_key.clone()),
                    }
                })
                .collect();
            match self.client.create_complex_leads(&requests).await {
                Ok(created) => {
                    for (i, mut call) in chunk.into_iter().enumerate() {
                        let answer = answer_for(&created, &call.item.item_key, i);
                        if let Some(c) = answer {
                            call.progress.lead_id = Some(c.id);
                            call.progress.contact_id = c.contact_id;
                        }
                        created_clients.insert(self.keep_created(&call).await?);
                    }
                }
                Err(e) => {
                    self.failed(chunk.iter().map(|c| &c.item), e, false).await?;
                }
            }
        }
        Ok(created_clients)
    }

    /// Keeps what was created for a new client's call as its progress; returns the client (last
    /// 10 digits).
    async fn keep_created(&self, call: &Call) -> Result<String, RoundError> {
        self.state
            .store
            .save_progress(&call.item.item_key, &json!(call.progress))
            .await?;
        Ok(last_ten_digits(
            call.work.client_phone.as_deref().unwrap_or_default(),
        ))
    }

    async fn unsorted(&self, call: Call, phone: &str) -> Result<(), RoundError> {
        let entities = call.work.entities.clone();
        let key = call.item.item_key.clone();
        self.state
            .store
            .mark_sending(std::slice::from_ref(&key), now_ms())
            .await?;
        let request = NewUnsortedSip {
            source_uid: SOURCE.into(),
            source_name: "callbridge (Mango Office)".into(),
            uniq: key.clone(),
            from: phone.to_string(),
            to: call.work.employee_extension.clone().unwrap_or_default(),
            called_at: call.work.started_at,
            duration: call.work.duration_s,
            link: self.recording_link(&call.work),
            service_code: SOURCE.into(),
            contact_name: format!("Client {phone}"),
            lead_name: lead_name(&call.work, phone),
            responsible_user_id: entities.map(|e| e.responsible_crm_user_id),
            request_id: Some(key.clone()),
        };
        match self.client.add_unsorted_sip(&[request]).await {
            Ok(created) => {
                let first = created.first();
                self.state
                    .store
                    .complete_items(
                        &[(
                            key,
                            json!({
                                "unsorted_uid": first.map(|c| c.uid.clone()),
                                "lead_id": first.and_then(|c| c.lead_id),
                                "contact_id": first.and_then(|c| c.contact_id),
                                "reasons": call.work.reasons,
                            }),
                        )],
                        now_ms(),
                    )
                    .await?;
            }
            // The unsorted API refuses a second item with the same uniq: an earlier attempt whose
            // answer was lost already landed.
            Err(CrmError::Rejected { message, .. })
                if call.item.sent_at_ms.is_some() && message.to_lowercase().contains("uniq") =>
            {
                self.state
                    .store
                    .complete_items(
                        &[(
                            key,
                            json!({"unsorted": "already present", "reasons": call.work.reasons}),
                        )],
                        now_ms(),
                    )
                    .await?;
            }
            Err(e) => self.failed([&call.item], e, true).await?,
        }
        Ok(())
    }

    /// Whether another record of the same entry will create the client and is not done yet.
    async fn sibling_creates_client(&self, item: &OutboxItem) -> Result<bool, RoundError> {
        let prefix = format!("{}/{}/", self.tenant_id(), item.entry_id);
        for conv in ["0", "1", "2", "3", "4", "5", "6", "7", "missed"] {
            let key = format!("{prefix}{conv}/call");
            if key == item.item_key {
                continue;
            }
            if let Some(other) = self.state.store.outbox_item(&key).await? {
                let creates = other.payload["record"]["entities"].is_object();
                if creates && other.state == "pending" {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// Handles a failed request for `items`. `write`: the request may have changed the CRM, so
    /// its items stay marked in flight if its answer was lost ([`Marks::KeepIfLost`]).
    /// The items are gathered before the returned future starts, so callers can pass an
    /// iterator over their batch.
    fn failed<'a>(
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

    async fn fail_items(
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
    fn in_outage(&self) -> bool {
        self.outage_failures.load(Ordering::SeqCst) > 0
    }

    /// How long work waits after the CRM failed to answer: doubling with the failures in a row,
    /// from [`OUTAGE_RETRY_FIRST_MS`] to [`OUTAGE_RETRY_MAX_MS`].
    fn outage_delay_ms(&self) -> i64 {
        let failures = self.outage_failures.load(Ordering::SeqCst).clamp(1, 16);
        OUTAGE_RETRY_FIRST_MS
            .saturating_mul(1i64 << (failures - 1))
            .min(OUTAGE_RETRY_MAX_MS)
    }

    /// How old an in-flight mark must be before its item is looked up in the CRM.
    fn in_flight_grace_ms(&self) -> i64 {
        let timeout_ms = i64::try_from(self.client.timeout().as_millis()).unwrap_or(i64::MAX);
        IN_FLIGHT_GRACE_MS.max(timeout_ms.saturating_add(5_000))
    }

    fn new_call(&self, item: &OutboxItem, work: &CallWork) -> NewCall {
        let direction = if work.direction == "outbound" {
            CallDirection::Outbound
        } else {
            CallDirection::Inbound
        };
        NewCall {
            direction,
            uniq: item.item_key.clone(),
            duration: work.duration_s,
            source: SOURCE.into(),
            phone: work.client_phone.clone().unwrap_or_default(),
            link: self.recording_link(work),
            call_status: Some(work.call_status),
            // C5: the rule ids that decided the record travel with it.
            call_result: Some(format!("callbridge: {}", work.reasons.join(","))),
            call_responsible: Some(work.crm_user_id),
            responsible_user_id: Some(work.crm_user_id),
            created_by: Some(work.crm_user_id),
            created_at: Some(work.started_at),
            request_id: item.item_key.clone(),
        }
    }

    fn recording_link(&self, work: &CallWork) -> Option<String> {
        work.recording_id.as_ref().map(|id| {
            crate::recordings::link(
                &self.state.public_url,
                &self.tenant.row.id,
                id,
                &self.tenant.row.mango_api_salt,
                crate::recordings::expiry(now_ms(), self.state.recording_link_days),
            )
        })
    }

    /// Sends card pops for this tenant's mapped users while this instance holds the lease.
    async fn deliver_cards(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut rx = self.state.cards.subscribe();
        loop {
            let first = tokio::select! {
                r = rx.recv() => r,
                _ = stop.changed() => return,
            };
            let mut pending: Vec<(tokio::time::Instant, crate::state::TenantCard)> = Vec::new();
            match first {
                Ok(card) => pending.push((tokio::time::Instant::now(), card)),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(tenant = %self.tenant_id(), n, "call cards dropped: the stream lagged");
                    continue;
                }
                Err(_) => return,
            }
            // Gather what rings within a second into one request: at most one of the account's
            // seven requests a second goes to cards, however busy the phones are.
            let deadline = tokio::time::Instant::now() + Duration::from_millis(1000);
            while let Ok(Ok(card)) = tokio::time::timeout_at(deadline, rx.recv()).await {
                pending.push((tokio::time::Instant::now(), card));
            }
            if !self.lease_ok() {
                continue;
            }
            let mut by_phone: BTreeMap<String, Vec<u64>> = BTreeMap::new();
            let mut oldest: Option<tokio::time::Instant> = None;
            for (at, card) in pending {
                if card.tenant_id != self.tenant.row.id
                    || card.change.action != CardAction::Show
                    || at.elapsed() > CARD_MAX_AGE
                {
                    continue;
                }
                oldest = Some(oldest.map_or(at, |o| o.min(at)));
                let Some(phone) = card.change.client_phone.clone() else {
                    continue;
                };
                let users = by_phone.entry(phone).or_default();
                if !users.contains(&card.change.crm_user_id) {
                    users.push(card.change.crm_user_id);
                }
            }
            if by_phone.is_empty() {
                continue;
            }
            let events: Vec<CallCardEvent> = by_phone
                .into_iter()
                .map(|(phone_number, users)| CallCardEvent {
                    phone_number,
                    users,
                })
                .collect();
            // A card is only useful while the phone rings: one that cannot go out in time (the
            // account's requests are taken by a backlog) is dropped, not sent late.
            let left = oldest
                .map(|o| CARD_MAX_AGE.saturating_sub(o.elapsed()))
                .unwrap_or_default();
            match tokio::time::timeout(left, self.client.show_call_card(&events)).await {
                Ok(Ok(())) => metrics::counter!("callbridge_crm_cards_shown_total")
                    .increment(events.len() as u64),
                Ok(Err(e)) => {
                    tracing::debug!(tenant = %self.tenant_id(), "call card not shown: {e}")
                }
                Err(_) => metrics::counter!("callbridge_crm_cards_dropped_total")
                    .increment(events.len() as u64),
            }
        }
    }
}

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

/// Sleeps, or returns true at once when asked to stop.
async fn wait(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}

/// Jittered exponential backoff: 1 s, 2 s, 4 s ... up to 5 minutes, each ±25 %.
fn backoff_ms(attempts: i64) -> i64 {
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

fn error_kind(e: &CrmError) -> &'static str {
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

/// amoCRM's `entity_type` of a call answer, as the plural the notes and tasks paths take.
fn plural(entity_type: &str) -> &'static str {
    match entity_type.trim_end_matches('s') {
        "lead" => "leads",
        "company" | "companie" => "companies",
        "customer" => "customers",
        _ => "contacts",
    }
}

fn landed_entity(answer: &Value) -> Option<(EntityType, u64)> {
    let id = answer["entity_id"].as_u64()?;
    let kind = match answer["entity_type"].as_str()? {
        "leads" => EntityType::Leads,
        "companies" => EntityType::Companies,
        "customers" => EntityType::Customers,
        _ => EntityType::Contacts,
    };
    Some((kind, id))
}

/// The CRM's answer for the item sent `i`-th under `request_id`: matched by the request id it
/// echoes, else by position (amoCRM answers in the order of the request).
fn answer_for<'a, T: EchoesRequest>(created: &'a [T], request_id: &str, i: usize) -> Option<&'a T> {
    created
        .iter()
        .find(|c| c.request_id() == Some(request_id))
        .or_else(|| created.get(i))
}

/// An answer item that may echo the `request_id` it was created under.
trait EchoesRequest {
    fn request_id(&self) -> Option<&str>;
}

impl EchoesRequest for callbridge_amocrm::Created {
    fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }
}

impl EchoesRequest for callbridge_amocrm::ComplexCreated {
    fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }
}

/// Splits work into requests of at most [`BATCH`] items.
fn chunks_of<T>(mut items: Vec<T>) -> Vec<Vec<T>> {
    let mut out = Vec::new();
    while !items.is_empty() {
        let rest = items.split_off(items.len().min(BATCH));
        out.push(items);
        items = rest;
    }
    out
}

/// amoCRM matches numbers on their last 10 digits.
fn last_ten_digits(phone: &str) -> String {
    let digits: Vec<char> = phone.chars().filter(char::is_ascii_digit).collect();
    digits[digits.len().saturating_sub(10)..].iter().collect()
}

fn lead_name(work: &CallWork, phone: &str) -> String {
    let what = if work.direction == "outbound" {
        "Outgoing call to"
    } else {
        "Incoming call from"
    };
    format!("{what} {phone} (callbridge: {})", work.reasons.join(","))
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

    #[test]
    fn entity_types_map_to_plural_paths() {
        assert_eq!(plural("lead"), "leads");
        assert_eq!(plural("leads"), "leads");
        assert_eq!(plural("contact"), "contacts");
        assert_eq!(
            landed_entity(&json!({"entity_id": 5, "entity_type": "leads"})),
            Some((EntityType::Leads, 5))
        );
        assert_eq!(landed_entity(&json!({"unsorted_uid": "x"})), None);
    }
}
