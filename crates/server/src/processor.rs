//! The processor: tails the event log, folds events through the core per tenant, pushes live
//! card changes, and stores each completed entry's plan with its outbox items in one
//! transaction.
//!
//! After a crash it rebuilds its state from the log (every event of every entry not yet planned)
//! and goes on; the store's entries table is the exactly-once gate, so a replay, or a second
//! instance on the same PostgreSQL, never plans an entry twice.

use crate::state::{now_ms, AppState, TenantCard};
use callbridge_core::cards::LiveCards;
use callbridge_core::plan::{CompletedBy, EntryPlan, Rule};
use callbridge_core::tracker::{Completed, Tracker, TrackerConfig};
use callbridge_core::{policy, PbxEvent};
use callbridge_mango::webhook::{parse_event, Webhook};
use callbridge_store::{NewOutboxItem, StoredEvent};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

struct TenantWork {
    tracker: Tracker,
    cards: LiveCards,
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

pub struct Processor {
    state: Arc<AppState>,
    tenants: HashMap<String, TenantWork>,
    cursor: Cursor,
}

impl Processor {
    pub fn new(state: Arc<AppState>) -> Processor {
        let gap_wait = if state.store.backend() == "postgres" {
            Duration::from_secs(5)
        } else {
            Duration::ZERO
        };
        Processor {
            state,
            tenants: HashMap::new(),
            cursor: Cursor {
                through: 0,
                seen: BTreeSet::new(),
                gap_since: None,
                gap_wait,
            },
        }
    }

    fn config(&self) -> TrackerConfig {
        // The live tracker runs on the service's clock in milliseconds (arrivals and `now` alike),
        // so a settle window of one second is one second, not "until the next whole second".
        let defaults = TrackerConfig::default();
        TrackerConfig {
            grace_s: self.state.processing.grace_seconds.saturating_mul(1000),
            settle_s: self.state.processing.settle_seconds.saturating_mul(1000),
            remember_s: defaults.remember_s * 1000,
        }
    }

    /// Rebuilds the in-memory state from the log: the events of every unplanned entry.
    pub async fn recover(&mut self) -> Result<usize, String> {
        let through = self
            .state
            .store
            .max_event_id()
            .await
            .map_err(|e| e.to_string())?;
        let events = self
            .state
            .store
            .unplanned_events()
            .await
            .map_err(|e| e.to_string())?;
        let mut n = 0;
        // Windows restart now: the PBX re-sends what it had no answer for while we were down,
        // and those stragglers must still count.
        let restarted_at = now_ms();
        for e in events.into_iter().filter(|e| e.id <= through) {
            self.fold(&e, false, restarted_at).await;
            n += 1;
        }
        self.cursor.through = through;
        Ok(n)
    }

    /// Runs until `shutdown` turns true.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        match self.recover().await {
            Ok(n) => tracing::info!(
                events = n,
                "processor recovered unplanned entries from the log"
            ),
            Err(e) => tracing::error!(error = %e, "processor recovery failed"),
        }
        let tick = Duration::from_millis(self.state.processing.tick_ms.max(10));
        loop {
            if let Err(e) = self.step().await {
                tracing::error!(error = %e, "processing step failed; retrying");
            }
            tokio::select! {
                _ = self.state.new_events.notified() => {}
                _ = tokio::time::sleep(tick) => {}
                _ = shutdown.changed() => {
                    if *shutdown.borrow() {
                        return;
                    }
                }
            }
        }
    }

    /// One round: fold what is new in the log, then plan what completed.
    pub async fn step(&mut self) -> Result<(), String> {
        loop {
            let batch = self
                .state
                .store
                .events_after(self.cursor.through, 2000)
                .await
                .map_err(|e| e.to_string())?;
            let fresh: Vec<StoredEvent> = batch
                .into_iter()
                .filter(|e| !self.cursor.seen.contains(&e.id))
                .collect();
            let full = fresh.len() >= 2000;
            for e in &fresh {
                self.fold(e, true, e.received_at_ms).await;
                self.cursor.seen.insert(e.id);
                let lag = (now_ms() - e.received_at_ms).max(0) as f64 / 1000.0;
                metrics::gauge!("callbridge_processing_lag_seconds").set(lag);
            }
            self.cursor.advance();
            if !full {
                break;
            }
        }
        let now = now_ms();
        let tenants: Vec<String> = self.tenants.keys().cloned().collect();
        for tenant_id in tenants {
            let done = self
                .tenants
                .get_mut(&tenant_id)
                .map(|w| w.tracker.advance(now))
                .unwrap_or_default();
            for completed in done {
                self.plan(&tenant_id, completed).await?;
            }
        }
        Ok(())
    }

    /// Folds one stored event in; `arrived` (Unix milliseconds) counts as the entry's activity.
    async fn fold(&mut self, stored: &StoredEvent, live: bool, arrived: i64) {
        let event: PbxEvent = match parse_event(&stored.path, &stored.json) {
            Ok(Webhook::Event(e)) => e,
            Ok(_) => return,
            Err(e) => {
                // Only parsed events are stored, so this is a parser change: keep going.
                tracing::warn!(id = stored.id, error = %e, "stored event no longer parses; skipped");
                return;
            }
        };
        let config = self.config();
        let work = self
            .tenants
            .entry(stored.tenant_id.clone())
            .or_insert_with(|| TenantWork {
                tracker: Tracker::new(config),
                cards: LiveCards::default(),
            });
        if live {
            if let PbxEvent::Call(call) = &event {
                if let Some(tenant) = self.state.tenant(&stored.tenant_id).await {
                    for change in work.cards.on_call_event(&tenant.settings, call) {
                        metrics::counter!("callbridge_cards_total", "action" => format!("{:?}", change.action)).increment(1);
                        let _ = self.state.cards.send(TenantCard {
                            tenant_id: stored.tenant_id.clone(),
                            change,
                        });
                    }
                }
            }
        }
        work.tracker.push_at(event, arrived);
    }

    async fn plan(&mut self, tenant_id: &str, completed: Completed) -> Result<(), String> {
        let Some(tenant) = self.state.tenant(tenant_id).await else {
            tracing::warn!(tenant = tenant_id, entry = %completed.events.entry_id, "tenant removed; entry not planned");
            return Ok(());
        };
        let plan = policy::plan(&tenant.settings, &completed.events.assemble());
        let outbox = outbox_items(tenant_id, &plan);
        let mut value = serde_json::to_value(&plan).map_err(|e| e.to_string())?;
        value["completed_by"] =
            serde_json::to_value(completed.completed_by).map_err(|e| e.to_string())?;
        let completed_by = match completed.completed_by {
            CompletedBy::Summary => "summary",
            CompletedBy::Grace => "grace",
            CompletedBy::EndOfInput => "end_of_input",
        };
        let saved = self
            .state
            .store
            .save_plan(
                tenant_id,
                &plan.entry_id,
                completed_by,
                &value,
                &outbox,
                now_ms(),
            )
            .await
            .map_err(|e| e.to_string())?;
        if saved {
            metrics::counter!("callbridge_entries_completed_total", "completed_by" => completed_by)
                .increment(1);
        } else {
            metrics::counter!("callbridge_entries_already_planned_total").increment(1);
        }
        Ok(())
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
        let call_item = format!("{tenant_id}/{}/{conv}/call", plan.entry_id);
        items.push(NewOutboxItem {
            item_key: call_item.clone(),
            kind: "call".into(),
            payload: serde_json::json!({"entry_id": plan.entry_id, "record": record}),
        });
        // Follow-ups go where the call landed, so they wait for the call item's answer.
        if record.transcript {
            items.push(NewOutboxItem {
                item_key: format!("{tenant_id}/{}/{conv}/transcript", plan.entry_id),
                kind: "transcript".into(),
                payload: serde_json::json!({
                    "entry_id": plan.entry_id,
                    "call_item": call_item,
                    "recording_id": record.recording_id,
                    "crm_user_id": record.crm_user_id,
                    "reasons": [Rule::C2],
                }),
            });
        }
        if let Some(task) = &record.task {
            items.push(NewOutboxItem {
                item_key: format!("{tenant_id}/{}/{conv}/task", plan.entry_id),
                kind: "task".into(),
                payload: serde_json::json!({
                    "entry_id": plan.entry_id,
                    "call_item": call_item,
                    "client_phone": record.client_phone,
                    "task": task,
                    "reasons": [Rule::M5],
                }),
            });
        }
    }
    items
}
