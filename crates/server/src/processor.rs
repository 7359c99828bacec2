//! The processor: tails the event log, folds events through the core per tenant, pushes live
//! card changes, and stores each completed entry's plan with its outbox items in one
//! transaction.
//!
//! Events this instance stores reach it straight from the appender once committed, already
//! parsed and with their ids (no read-back). The log stays the source of truth: it is read at
//! start-up, after the hand-over channel overflowed, and, on PostgreSQL where other instances
//! append too, every tick for their events.
//!
//! After a crash it rebuilds its state from the log (every event of every entry not yet planned,
//! read from the stored recovery mark on) and goes on; the store's entries table is the
//! exactly-once gate, so a replay, or a second instance on the same PostgreSQL, never plans an
//! entry twice.

use crate::state::{now_ms, AppState, TenantCard};
use crate::worker::work::{CallWork, OutboxWork, TaskWork, TranscriptWork};
use callbridge_core::cards::LiveCards;
use callbridge_core::phone::Phone;
use callbridge_core::plan::{CompletedBy, EntryPlan, Rule};
use callbridge_core::tracker::{Accepted, Completed, Tracker, TrackerConfig};
use callbridge_core::PbxEvent;
use callbridge_mango::webhook::{parse_stored, Webhook};
use callbridge_store::{Committed, NewOutboxItem, NewPlan, SinkReceiver, StoredEvent};
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

struct TenantWork {
    tracker: Tracker,
    cards: LiveCards,
    /// When advancing the tracker can next change anything (`Tracker::next_deadline`); an
    /// event pushed or an entry reopened sets it to now. A step advances only the tenants
    /// that are due, so its cost follows the tenants with something to do, not those with a
    /// call in flight.
    due_at: i64,
}

impl TenantWork {
    /// Due at the next step (an event pushed, an entry reopened): queued once, however many
    /// events the step brings.
    fn due_now(&mut self, due: &mut BinaryHeap<Reverse<(i64, String)>>, tenant_id: &str) {
        if self.due_at != i64::MIN {
            self.due_at = i64::MIN;
            due.push(Reverse((i64::MIN, tenant_id.to_string())));
        }
    }
}

/// Reading the log in id order, tolerating ids that commit out of order (PostgreSQL sequences
/// hand out ids before commit): a gap is waited for a while before it is taken as permanent.
struct Cursor {
    /// Every id up to here is processed (or was a permanent gap).
    through: i64,
    /// Ids above `through` already processed.
    seen: BTreeSet<i64>,
    gap_since: Option<Instant>,
    gap_wait: Duration,
}

impl Cursor {
    fn advance(&mut self) {
        loop {
            while self.seen.remove(&(self.through + 1)) {
                self.through += 1;
            }
            match self.seen.first().copied() {
                None => {
                    self.gap_since = None;
                    return;
                }
                Some(next) => {
                    let since = *self.gap_since.get_or_insert_with(Instant::now);
                    if since.elapsed() < self.gap_wait {
                        return;
                    }
                    // The missing ids were rolled back (a duplicate's insert): skip them.
                    self.through = next - 1;
                    self.gap_since = None;
                }
            }
        }
    }
}

/// Why a processing step (or the recovery at start-up) failed; the step is tried again.
#[derive(Debug, thiserror::Error)]
pub enum ProcessorError {
    #[error(transparent)]
    Store(#[from] callbridge_store::StoreError),
    #[error("plan of entry {entry_id} not serialisable: {source}")]
    Plan {
        entry_id: String,
        source: serde_json::Error,
    },
}

/// Committed events handed over by this instance's appender.
pub type LiveEvents = SinkReceiver<PbxEvent>;

/// While the service runs, plans are stored at most this often (more at once when many
/// complete): every save is a commit, with its own flush to disk on SQLite, taken from the one
/// writer that also acknowledges webhooks. Saved at every step, plans completing under load
/// (2,000 a second in `bench-ingest`) made hundreds of small commits a second and cut ingest
/// from 18,000 to 5,000 events a second while they lasted. A plan waits at most this long more;
/// when nothing was saved for this long, it is saved at once.
const PLAN_SAVE_EVERY: Duration = Duration::from_millis(100);

/// Plans that are saved at once whatever `PLAN_SAVE_EVERY` says: a commit this large is worth
/// its flush.
const PLAN_SAVE_BATCH: usize = 1_000;

/// The shortest sleep until a tenant's next deadline: deadlines closer than this are taken a
/// little late rather than with a burst of steps that each find little to do.
const MIN_WAKE_MS: u64 = 5;

pub struct Processor {
    state: Arc<AppState>,
    tenants: HashMap<String, TenantWork>,
    /// Tenants with an entry in flight (the quiet ones are what the sweep may drop).
    active: HashSet<String>,
    /// Tenants with an entry in flight by when they are next due (`TenantWork::due_at`), the
    /// soonest first: a step pops only those due now, so its cost follows the tenants with
    /// something to do, not those with a call in flight (scanning them all cost a twentieth of
    /// the service's CPU with a call in flight at each of 1,000 tenants). An entry whose time
    /// no longer equals its tenant's `due_at` is stale and skipped.
    due: BinaryHeap<Reverse<(i64, String)>>,
    /// When the quiet tenants were last swept (see [`Processor::sweep_quiet_tenants`]).
    swept_at: Option<Instant>,
    cursor: Cursor,
    live: Option<LiveEvents>,
    /// Every event of the log passes through this instance's appender (SQLite), so with `live`
    /// the log is read only at start-up and after the channel overflowed.
    sole_writer: bool,
    /// The log must be read before the next live batch is trusted.
    need_tail: bool,
    /// No live hand-over (none given, or it stopped): the log is read every step.
    live_off: bool,
    last_tail: Option<Instant>,
    tick: Duration,
    /// Plans not stored yet: a save that failed, or plans held back by `save_every`.
    unsaved: Vec<NewPlan>,
    /// The least time between two saves of plans while the service runs (zero: every step
    /// saves), and when the last one was made. See [`PLAN_SAVE_EVERY`].
    save_every: Duration,
    saved_at: Option<Instant>,
    /// The first event id of every entry folded but not yet planned, by tenant and entry: the
    /// smallest is where recovery must read the log from.
    first_ids: HashMap<String, HashMap<String, i64>>,
    /// The recovery mark last stored, and when it was last worked out.
    mark_stored: i64,
    mark_checked_at: Option<Instant>,
    /// Deleted tenants and the highest event id their log had: their events up to it are
    /// dropped, so nothing of a deleted tenant is planned for one created again with its id.
    purged: HashMap<String, i64>,
}

impl Processor {
    /// A processor that reads everything from the log.
    pub fn new(state: Arc<AppState>) -> Processor {
        Processor::with_live(state, None)
    }

    /// A processor fed by the appender's committed events (`live`), reading the log only when
    /// it has to.
    pub fn with_live(state: Arc<AppState>, live: Option<LiveEvents>) -> Processor {
        let postgres = state.store.backend() == "postgres";
        let gap_wait = if postgres {
            Duration::from_secs(5)
        } else {
            Duration::ZERO
        };
        let tick = Duration::from_millis(state.processing.tick_ms.max(10));
        Processor {
            state,
            tenants: HashMap::new(),
            active: HashSet::new(),
            due: BinaryHeap::new(),
            swept_at: None,
            cursor: Cursor {
                through: 0,
                seen: BTreeSet::new(),
                gap_since: None,
                gap_wait,
            },
            live,
            sole_writer: !postgres,
            need_tail: false,
            live_off: true,
            last_tail: None,
            tick,
            unsaved: Vec::new(),
            save_every: Duration::ZERO,
            saved_at: None,
            first_ids: HashMap::new(),
            mark_stored: 0,
            mark_checked_at: None,
            purged: HashMap::new(),
        }
    }

    fn config(&self) -> TrackerConfig {
        // The live tracker runs on the service's clock in milliseconds (arrivals and `now` alike),
        // so a settle window of one second is one second, not "until the next whole second".
        let defaults = TrackerConfig::default();
        let processing = &self.state.processing;
        let abandon_ms = match processing.abandon_after_ms {
            Some(ms) => i64::try_from(ms).unwrap_or(i64::MAX),
            None => processing.abandon_after_hours.saturating_mul(3_600_000),
        };
        let settle_ms = processing.settle_seconds.saturating_mul(1000);
        // A quiet time as long as the window would only add work.
        let settle_complete_ms = i64::try_from(processing.settle_complete_ms)
            .ok()
            .filter(|ms| *ms < settle_ms);
        TrackerConfig {
            grace_s: processing.grace_seconds.saturating_mul(1000),
            settle_s: settle_ms,
            remember_s: defaults.remember_s * 1000,
            abandon_s: abandon_ms,
            settle_complete_s: settle_complete_ms,
        }
    }

    /// Rebuilds the in-memory state from the log: the events of every unplanned entry.
    pub async fn recover(&mut self) -> Result<usize, ProcessorError> {
        let through = self.state.store.max_event_id().await?;
        // Everything below the mark belongs to planned entries: only the rest is read again.
        let from = self.state.store.recovery_mark().await?;
        let events = self.state.store.unplanned_events(from).await?;
        self.mark_stored = from;
        let mut n = 0;
        // Windows restart now: the PBX re-sends what it had no answer for while we were down,
        // and those stragglers must still count.
        let restarted_at = now_ms();
        for e in events.into_iter().filter(|e| e.id <= through) {
            self.fold_stored(&e, false, restarted_at).await;
            n += 1;
        }
        self.cursor.through = through;
        metrics::gauge!("callbridge_recovery_mark_event_id").set(from as f64);
        metrics::gauge!("callbridge_recovery_events_read").set(n as f64);
        Ok(n)
    }

    /// Runs until `shutdown` turns true.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        match self.recover().await {
            Ok(n) => tracing::info!(
                events = n,
                "processor recovered unplanned entries from the log"
            ),
            Err(e) => {
                tracing::error!(error = %e, "processor recovery failed; reading the whole log");
                self.need_tail = true;
            }
        }
        let mut live = self.live.take();
        self.live_off = live.is_none();
        self.save_every = PLAN_SAVE_EVERY;
        let mut received = None;
        loop {
            let mut batches: Vec<_> = Option::take(&mut received).into_iter().collect();
            if let Some(live) = &mut live {
                // Everything already waiting, so one step folds it all.
                while let Ok(batch) = live.rx.try_recv() {
                    batches.push(batch);
                }
                if live.take_lagged() {
                    self.need_tail = true;
                }
            }
            if let Err(e) = self.step_with(batches).await {
                tracing::error!(error = %e, "processing step failed; retrying");
            }
            // Plans held back are saved when their wait is over, and an entry is planned when
            // its window ends, not a whole tick later.
            let mut tick = match self.saved_at {
                Some(at) if !self.unsaved.is_empty() => (at + self.save_every)
                    .saturating_duration_since(Instant::now())
                    .min(self.tick),
                _ => self.tick,
            };
            if let Some(at) = self.next_due() {
                let wait = u64::try_from(at.saturating_sub(now_ms())).unwrap_or(0);
                tick = tick.min(Duration::from_millis(wait.max(MIN_WAKE_MS)));
            }
            tokio::select! {
                batch = recv_live(&mut live) => {
                    if batch.is_none() {
                        // The appender has stopped (shutting down): read the log from now on.
                        live = None;
                        self.live_off = true;
                    }
                    received = batch;
                }
                _ = self.state.new_events.notified(), if live.is_none() => {}
                _ = tokio::time::sleep(tick) => {}
                _ = shutdown.changed() => {
                    if *shutdown.borrow() {
                        // Plans held back are stored now, not planned again at the next start.
                        self.save_every = Duration::ZERO;
                        if let Err(e) = self.plan_completed().await {
                            tracing::warn!(error = %e, "saving the last plans at shutdown failed; the next start plans them again");
                        }
                        return;
                    }
                }
            }
        }
    }

    /// One round reading everything from the log: fold what is new, then plan what completed.
    pub async fn step(&mut self) -> Result<(), ProcessorError> {
        self.need_tail = true;
        self.step_with(Vec::new()).await
    }

    /// One round: fold the live batches (reading the log first when it must), then plan what
    /// completed.
    async fn step_with(
        &mut self,
        batches: Vec<Vec<Committed<PbxEvent>>>,
    ) -> Result<(), ProcessorError> {
        self.forget_purged_tenants();
        let tail_due = self.need_tail
            || self.live_off
            || (!self.sole_writer && self.last_tail.is_none_or(|t| t.elapsed() >= self.tick));
        if tail_due {
            // On failure the live batches are dropped: they are in the log, above the cursor,
            // and the next tail reads them.
            self.need_tail = true;
            self.tail().await?;
            self.need_tail = false;
            self.last_tail = Some(Instant::now());
        }
        let mut last_arrival = None;
        for batch in batches {
            for c in batch {
                if c.id <= self.cursor.through || self.cursor.seen.contains(&c.id) {
                    continue; // already read from the log
                }
                self.fold_event(
                    &c.event.tenant_id,
                    c.payload,
                    true,
                    c.event.received_at_ms,
                    c.id,
                )
                .await;
                self.cursor.seen.insert(c.id);
                last_arrival = Some(c.event.received_at_ms);
            }
            self.cursor.advance();
        }
        if let Some(arrived) = last_arrival {
            let lag = (now_ms() - arrived).max(0) as f64 / 1000.0;
            metrics::gauge!("callbridge_processing_lag_seconds").set(lag);
        }
        self.plan_completed().await?;
        self.store_recovery_mark().await;
        Ok(())
    }

    /// Stores where recovery would have to read the log from now, at most once a second and
    /// only when it moved on. A failure is only logged: the mark is an optimisation, an older
    /// one stays valid.
    async fn store_recovery_mark(&mut self) {
        if self
            .mark_checked_at
            .is_some_and(|at| at.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        // Once a second at most, moved or not, so a walk over the open entries is cheap enough
        // (walked at every step while a call in flight held the mark, it cost as much as the
        // processor's folding with calls in flight at 1,000 tenants).
        self.mark_checked_at = Some(Instant::now());
        let mark = self
            .first_ids
            .values()
            .flat_map(HashMap::values)
            .copied()
            .fold(self.cursor.through.saturating_add(1), i64::min);
        if mark <= self.mark_stored {
            return;
        }
        match self.state.store.set_recovery_mark(mark, now_ms()).await {
            Ok(()) => {
                self.mark_stored = mark;
                metrics::gauge!("callbridge_recovery_mark_event_id").set(mark as f64);
            }
            Err(e) => {
                // Tried again at the next step, not a second later.
                self.mark_checked_at = None;
                tracing::warn!(error = %e, "storing the recovery mark failed; retrying");
            }
        }
    }

    /// The highest event id folded: the cursor, or above it an id already read while a lower
    /// one is still awaited (PostgreSQL commits ids out of order).
    fn read_through(&self) -> i64 {
        self.cursor
            .seen
            .last()
            .copied()
            .unwrap_or(0)
            .max(self.cursor.through)
    }

    /// An entry is planned (or dropped): recovery no longer needs its events.
    fn forget_first_id(&mut self, tenant_id: &str, entry_id: &str) {
        if let Some(entries) = self.first_ids.get_mut(tenant_id) {
            entries.remove(entry_id);
        }
    }

    /// Folds what is new in the log.
    async fn tail(&mut self) -> Result<(), ProcessorError> {
        loop {
            let batch = self
                .state
                .store
                .events_after(self.cursor.through, 2000)
                .await?;
            let fresh: Vec<StoredEvent> = batch
                .into_iter()
                .filter(|e| !self.cursor.seen.contains(&e.id))
                .collect();
            let full = fresh.len() >= 2000;
            for e in &fresh {
                self.fold_stored(e, true, e.received_at_ms).await;
                self.cursor.seen.insert(e.id);
                let lag = (now_ms() - e.received_at_ms).max(0) as f64 / 1000.0;
                metrics::gauge!("callbridge_processing_lag_seconds").set(lag);
            }
            self.cursor.advance();
            if !full {
                return Ok(());
            }
        }
    }

    /// When the soonest tenant is due. Stale entries on top of the queue (a tenant whose due
    /// time changed since, or that was dropped) are thrown away first, so the processor does
    /// not wake for them.
    fn next_due(&mut self) -> Option<i64> {
        while let Some(Reverse((at, tenant_id))) = self.due.peek() {
            if self.tenants.get(tenant_id).is_some_and(|w| w.due_at == *at) {
                return Some(*at);
            }
            self.due.pop();
        }
        None
    }

    /// Plans every entry whose windows have passed, and stores the plans in one transaction.
    async fn plan_completed(&mut self) -> Result<(), ProcessorError> {
        let now = now_ms();
        self.sweep_quiet_tenants(now);
        let mut tenants = Vec::new();
        while let Some(Reverse((at, _))) = self.due.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((at, tenant_id))) = self.due.pop() else {
                break;
            };
            if let Some(work) = self.tenants.get_mut(&tenant_id) {
                if work.due_at == at {
                    // Taken: a second entry of this tenant with the same time is now stale.
                    work.due_at = i64::MAX;
                    tenants.push(tenant_id);
                }
            }
        }
        for tenant_id in tenants {
            let done = match self.tenants.get_mut(&tenant_id) {
                Some(work) => {
                    let done = work.tracker.advance(now);
                    if work.tracker.in_flight() == 0 {
                        // Nothing in flight: left to the sweep, as a quiet tenant.
                        self.active.remove(&tenant_id);
                    } else if let Some(at) = work.tracker.next_deadline() {
                        work.due_at = at;
                        self.due.push(Reverse((at, tenant_id.clone())));
                    }
                    done
                }
                None => {
                    self.active.remove(&tenant_id);
                    Vec::new()
                }
            };
            for completed in done {
                let entry_id = completed.events.entry_id.clone();
                if !completed.events.has_call_facts() {
                    // Only recording or keypress events arrived: there is no call to write, and
                    // saying "a leg was still up" would send the reader after a leg that never was.
                    tracing::warn!(
                        tenant = %tenant_id,
                        entry = %entry_id,
                        "entry given up after the abandonment horizon with only recording or keypress events, no call legs and no summary; nothing to plan (its call events never arrived)"
                    );
                    metrics::counter!("callbridge_entries_without_legs_total").increment(1);
                    self.forget_first_id(&tenant_id, &entry_id);
                    continue;
                }
                if completed.completed_by == CompletedBy::Abandoned {
                    // A lost summary and a lost hang-up: planned with what is known, so the
                    // entry no longer holds memory and the recovery mark.
                    tracing::warn!(
                        tenant = %tenant_id,
                        entry = %entry_id,
                        "entry given up after the abandonment horizon with no summary and a leg still up; planned with what is known (A4a)"
                    );
                    metrics::counter!("callbridge_entries_abandoned_total").increment(1);
                }
                match self.plan(&tenant_id, completed).await? {
                    Some(plan) => self.unsaved.push(plan),
                    None => self.forget_first_id(&tenant_id, &entry_id),
                }
            }
        }
        if self.unsaved.is_empty() {
            return Ok(());
        }
        let held_back = self
            .saved_at
            .is_some_and(|at| at.elapsed() < self.save_every);
        if held_back && self.unsaved.len() < PLAN_SAVE_BATCH {
            return Ok(());
        }
        self.saved_at = Some(Instant::now());
        // Kept until stored: a failed save is tried again on the next step.
        let saved = self.state.store.save_plans(&self.unsaved, now_ms()).await?;
        // The lanes of the tenants with new work look, and only theirs.
        let tenants: std::collections::HashSet<&str> =
            self.unsaved.iter().map(|p| p.tenant_id.as_str()).collect();
        for tenant in tenants {
            self.state.outbox_ready.wake(tenant);
        }
        let unsaved = std::mem::take(&mut self.unsaved);
        for plan in &unsaved {
            self.forget_first_id(&plan.tenant_id, &plan.entry_id);
        }
        for (plan, saved) in unsaved.into_iter().zip(saved) {
            if saved {
                metrics::counter!("callbridge_entries_completed_total", "completed_by" => plan.completed_by)
                    .increment(1);
            } else {
                metrics::counter!("callbridge_entries_already_planned_total").increment(1);
            }
        }
        Ok(())
    }

    /// Once a minute, the tenants with nothing in flight: their trackers forget the released
    /// entries past the remembering window, and a tenant with nothing left to remember (quiet
    /// for that whole window) is dropped, to be made again by its next event. Thousands of
    /// quiet tenants then cost neither memory nor a visit at every step.
    fn sweep_quiet_tenants(&mut self, now: i64) {
        if self
            .swept_at
            .is_some_and(|at| at.elapsed() < Duration::from_secs(60))
        {
            return;
        }
        self.swept_at = Some(Instant::now());
        let active = &self.active;
        self.tenants.retain(|tenant_id, work| {
            if active.contains(tenant_id) {
                return true;
            }
            // Nothing is in flight, so nothing completes here: only the memory is trimmed.
            let _ = work.tracker.advance(now);
            work.tracker.in_flight() > 0
                || work.tracker.remembered() > 0
                || work.cards.showing() > 0
        });
        self.first_ids.retain(|_, entries| !entries.is_empty());
        metrics::gauge!("callbridge_processor_tenants_held").set(self.tenants.len() as f64);
    }

    /// Folds one stored event in, parsing it again.
    async fn fold_stored(&mut self, stored: &StoredEvent, live: bool, arrived: i64) {
        let event: PbxEvent = match parse_stored(&stored.path, &stored.json) {
            Ok(Webhook::Event(e)) => e,
            Ok(_) => return,
            Err(e) => {
                // Only parsed events are stored, so this is a parser change: keep going.
                tracing::warn!(id = stored.id, error = %e, "stored event no longer parses; skipped");
                return;
            }
        };
        self.fold_event(&stored.tenant_id, event, live, arrived, stored.id)
            .await;
    }

    /// Drops what is held of tenants deleted since the last step (see `AppState::delete_tenant`).
    fn forget_purged_tenants(&mut self) {
        let purged: Vec<(String, i64)> = match self.state.purged_tenants.lock() {
            Ok(mut p) => p.drain().collect(),
            Err(_) => return,
        };
        for (tenant_id, last_event) in purged {
            self.tenants.remove(&tenant_id);
            self.active.remove(&tenant_id);
            self.first_ids.remove(&tenant_id);
            self.unsaved.retain(|p| p.tenant_id != tenant_id);
            self.purged.insert(tenant_id, last_event);
        }
    }

    /// Folds one event in; `arrived` (Unix milliseconds) counts as the entry's activity.
    /// `id` is the event's id in the log.
    async fn fold_event(
        &mut self,
        tenant_id: &str,
        event: PbxEvent,
        live: bool,
        arrived: i64,
        id: i64,
    ) {
        if self.purged.get(tenant_id).is_some_and(|last| id <= *last) {
            return; // an event of a deleted tenant, read before the deletion
        }
        // Entries whose plan reconciliation dropped: their recovered events start them again
        // (registered before those events were appended, so taken before they are folded).
        for (tenant, entry) in self.state.reconciler.take_reopened() {
            if let Some(work) = self.tenants.get_mut(&tenant) {
                work.tracker.reopen(&entry);
                work.due_now(&mut self.due, &tenant);
            }
        }
        if !self.tenants.contains_key(tenant_id) {
            let config = self.config();
            self.tenants.insert(
                tenant_id.to_string(),
                TenantWork {
                    tracker: Tracker::new(config),
                    cards: LiveCards::default(),
                    due_at: i64::MAX,
                },
            );
        }
        let work = self.tenants.get_mut(tenant_id).expect("inserted above");
        if live {
            if let PbxEvent::Call(call) = &event {
                if let Some(tenant) = self.state.tenant(tenant_id).await {
                    for change in work.cards.on_call_event(&tenant.settings, call) {
                        metrics::counter!("callbridge_cards_total", "action" => format!("{:?}", change.action)).increment(1);
                        self.state.card_routes.send(tenant_id, change.clone());
                        // Sent only while a stream listens (no receiver is no error worth a word).
                        let _ = self.state.cards.send(TenantCard {
                            tenant_id: tenant_id.to_string(),
                            change,
                        });
                    }
                }
            }
        }
        let known_first = self
            .first_ids
            .get(tenant_id)
            .and_then(|entries| entries.get(event.entry_id()))
            .copied();
        // The smallest id, not the first folded: on PostgreSQL an event with a lower id can be
        // read after a higher one, and the entry's id range must hold it.
        let entry_id = known_first
            .is_none_or(|first| id < first)
            .then(|| event.entry_id().to_string());
        // A late event of an entry already released changes nothing and is never planned: it
        // must not hold the recovery mark back.
        if work.tracker.push_at(event, arrived) != Accepted::Late {
            work.due_now(&mut self.due, tenant_id);
            if !self.active.contains(tenant_id) {
                self.active.insert(tenant_id.to_string());
            }
            if let Some(entry_id) = entry_id {
                self.first_ids
                    .entry(tenant_id.to_string())
                    .or_default()
                    .insert(entry_id, id);
            }
        }
    }

    /// Plans a completed entry; `None` when its tenant is gone.
    async fn plan(
        &mut self,
        tenant_id: &str,
        completed: Completed,
    ) -> Result<Option<NewPlan>, ProcessorError> {
        let Some(tenant) = self.state.tenant(tenant_id).await else {
            tracing::warn!(tenant = tenant_id, entry = %completed.events.entry_id, "tenant removed; entry not planned");
            return Ok(None);
        };
        let plan = completed.plan(&tenant.settings);
        // The entry's events in the log are ids from its first one to what has been read so
        // far: the journal reads them back by that range ("download events", the settings
        // preview).
        let first_event_id = self
            .first_ids
            .get(tenant_id)
            .and_then(|entries| entries.get(&plan.entry_id))
            .copied();
        let last_event_id = Some(self.read_through());
        let outbox = outbox_items(tenant_id, &plan);
        let unserialisable = |source| ProcessorError::Plan {
            entry_id: plan.entry_id.clone(),
            source,
        };
        let mut value = serde_json::to_value(&plan).map_err(unserialisable)?;
        value["completed_by"] =
            serde_json::to_value(completed.completed_by).map_err(unserialisable)?;
        let completed_by = match completed.completed_by {
            CompletedBy::Summary => "summary",
            CompletedBy::Grace => "grace",
            CompletedBy::EndOfInput => "end_of_input",
            CompletedBy::Abandoned => "abandoned",
        };
        Ok(Some(NewPlan {
            tenant_id: tenant_id.to_string(),
            entry_id: plan.entry_id.clone(),
            completed_by: completed_by.to_string(),
            plan: value,
            outbox,
            first_event_id,
            last_event_id,
        }))
    }
}

/// The next batch from the appender; never, without one.
async fn recv_live(live: &mut Option<LiveEvents>) -> Option<Vec<Committed<PbxEvent>>> {
    match live {
        Some(live) => live.rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The CRM work of a plan: one item per call record (with its entities and task), one per
/// transcript. Keys are stable: tenant, entry, conversation (or `missed`), action.
pub fn outbox_items(tenant_id: &str, plan: &EntryPlan) -> Vec<NewOutboxItem> {
    let mut items = Vec::new();
    for record in &plan.records {
        let conv = record
            .conversation
            .map_or("missed".to_string(), |c| c.to_string());
        let key = |action: &str| format!("{tenant_id}/{}/{conv}/{action}", plan.entry_id);
        let call_item = key("call");
        let call = OutboxWork::Call(CallWork {
            entry_id: plan.entry_id.clone(),
            record: record.clone(),
        });
        items.push(call.into_item(call_item.clone()));
        // Follow-ups go where the call landed, so they wait for the call item's answer.
        if record.transcript {
            let work = OutboxWork::Transcript(TranscriptWork {
                entry_id: plan.entry_id.clone(),
                call_item: call_item.clone(),
                recording_id: record.recording_id.clone(),
                crm_user_id: record.crm_user_id,
                reasons: vec![Rule::C2],
            });
            items.push(work.into_item(key("transcript")));
        }
        if let Some(task) = &record.task {
            let work = OutboxWork::Task(TaskWork {
                entry_id: plan.entry_id.clone(),
                call_item: call_item.clone(),
                client_phone: record.client_phone.as_deref().and_then(Phone::parse),
                task: task.clone(),
                reasons: vec![Rule::M5],
            });
            items.push(work.into_item(key("task")));
        }
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Processing;
    use callbridge_store::Store;

    fn event(path: &str, json: serde_json::Value) -> PbxEvent {
        match parse_stored(path, &json.to_string()) {
            Ok(Webhook::Event(e)) => e,
            other => panic!("not an event: {other:?}"),
        }
    }

    fn summary(entry: &str) -> PbxEvent {
        event(
            "events/summary",
            serde_json::json!({
                "entry_id": entry, "call_direction": 1,
                "from": {"number": "79161234567"}, "to": {"extension": "101"},
                "create_time": 1764000000, "forward_time": 1764000001,
                "talk_time": 1764000002, "end_time": 1764000030, "entry_result": 1,
            }),
        )
    }

    fn ringing(entry: &str) -> PbxEvent {
        event(
            "events/call",
            serde_json::json!({
                "entry_id": entry, "call_id": "C1", "timestamp": 1764000000, "seq": 1,
                "call_state": "Appeared", "location": "abonent",
                "from": {"number": "79161234567"}, "to": {"extension": "101"},
            }),
        )
    }

    #[tokio::test]
    async fn a_step_visits_only_tenants_that_are_due_and_quiet_ones_are_dropped() {
        let dir =
            std::env::temp_dir().join(format!("callbridge-processor-quiet-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open(None, &dir).await.unwrap();
        let processing = Processing {
            settle_seconds: 0,
            ..Processing::default()
        };
        let state = Arc::new(AppState::for_tests(store, processing));
        let mut p = Processor::new(state);
        let now = now_ms();
        // Two tenants whose calls end (a summary), one whose call is still ringing.
        p.fold_event("done-a", summary("A1"), false, now, 1).await;
        p.fold_event("done-b", summary("B1"), false, now, 2).await;
        p.fold_event("ringing", ringing("R1"), false, now, 3).await;
        assert_eq!(p.active.len(), 3);
        p.plan_completed().await.unwrap();
        // Released: no longer visited, but still held to recognise a late re-delivery.
        assert_eq!(
            p.active.iter().map(String::as_str).collect::<Vec<_>>(),
            ["ringing"]
        );
        assert_eq!(p.tenants.len(), 3);
        // Only the ringing tenant waits in the queue, at its next deadline, not now: a step
        // before then pops nothing.
        let queued: Vec<(i64, &str)> = p
            .due
            .iter()
            .map(|Reverse((at, id))| (*at, id.as_str()))
            .collect();
        assert_eq!(queued.len(), 1, "{queued:?}");
        assert_eq!(queued[0].1, "ringing");
        assert!(queued[0].0 > now && queued[0].0 == p.tenants["ringing"].due_at);
        p.plan_completed().await.unwrap();
        assert_eq!(p.due.len(), 1, "nothing due: the queue is untouched");
        // Several events of one tenant in a step queue it once.
        p.fold_event("ringing", ringing("R2"), false, now, 6).await;
        p.fold_event("ringing", ringing("R3"), false, now, 7).await;
        assert_eq!(
            p.due.len(),
            2,
            "the earlier entry, now stale, and one for now"
        );
        p.plan_completed().await.unwrap();
        assert_eq!(p.due.len(), 2, "the stale one and the next deadline");
        assert!(p.due.iter().all(|Reverse((at, _))| *at > now));
        // The processor sleeps until the tenant's real deadline; a stale entry on top of the
        // queue is dropped rather than woken for.
        let deadline = p.tenants["ringing"].due_at;
        p.due.push(Reverse((now, "ringing".to_string())));
        p.due.push(Reverse((now, "no-such-tenant".to_string())));
        assert_eq!(p.next_due(), Some(deadline));
        assert!(p.due.iter().all(|Reverse((at, _))| *at > now));
        p.fold_event("done-a", summary("A1"), false, now, 4).await;
        assert!(!p.active.contains("done-a"), "a late event is not work");

        // Past the remembering window the quiet tenants are dropped; the ringing one stays.
        // The entries were released at the steps' own clock, a little after `now` (on a slow
        // machine, seconds after): the sweep looks a minute past the window to be sure.
        let remember_ms = TrackerConfig::default().remember_s * 1000;
        p.swept_at = None; // the step above swept (nothing yet), and sweeps once a minute
        p.sweep_quiet_tenants(now_ms() + remember_ms + 60_000);
        assert_eq!(p.tenants.keys().collect::<Vec<_>>(), ["ringing"]);
        // A dropped tenant's next call makes its state again.
        p.fold_event("done-a", summary("A2"), false, now, 5).await;
        assert!(p.active.contains("done-a") && p.tenants.contains_key("done-a"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
