//! Reconciliation (issue 15): a tenant's calls of a period, as Mango's statistics know them,
//! against what the event log holds. A call whose webhooks never arrived, or whose end never
//! did, is rebuilt from its statistics row (`callbridge_mango::recover`) and appended to the
//! event log, from where it takes the same road as a webhook: processor, plan, outbox, CRM.
//!
//! Exactly once: an entry already planned is left alone (its plan row is the gate, and what it
//! planned is delivered or on its way), with one exception that cannot double anything: a plan
//! made without the summary that gave the CRM nothing (no outbox item at all), for a call the
//! statistics say was answered, is dropped and the entry planned again from the row. An entry
//! whose summary is in the log is left to the processor. Only the others get events, whose log
//! keys are those the webhooks would have had, so a webhook that turns up afterwards is a
//! duplicate, and a second run appends nothing.
//!
//! Triggers: the daily run ([`run_daily`], `reconcile.daily_hour_utc` or a tenant's
//! `reconcile_hour_utc`), `POST /api/v1/tenants/{id}/reconcile`, and `callbridge reconcile`
//! (which calls that route). One run per tenant at a time: Mango allows one statistics request
//! per 2 s per key.

use crate::config::Reconcile;
use crate::state::{now_ms, AppState};
use crate::sync::lock;
use callbridge_mango::api::ApiError;
use callbridge_mango::recover::{merge_rows, recovered_events};
use callbridge_store::{Appended, NewEvent, StoreError};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The longest period Mango's statistics answer for.
pub const MAX_PERIOD_SECONDS: i64 = 31 * 86_400;
/// No period starts before 2000 (a sign of seconds mistaken for something else).
const EARLIEST: i64 = 946_684_800;
/// The log is searched this much around the calls' own times: a leg event may come a little
/// before the time the statistics give as the start.
const LOG_MARGIN_SECONDS: i64 = 600;

/// What is wrong with a requested period; the words name the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeriodError {
    #[error("from: {0} is before 2000-01-01 (Unix seconds expected)")]
    FromTooEarly(i64),
    #[error("to: must be after from ({from}), got {to}")]
    NotAfterFrom { from: i64, to: i64 },
    #[error("to: {to} is in the future (now {now})")]
    InTheFuture { to: i64, now: i64 },
    #[error(
        "the period is {0} s long; Mango's statistics answer for at most 31 days ({MAX_PERIOD_SECONDS} s)"
    )]
    TooLong(i64),
}

/// Checks a period `from..=to` (Unix seconds) at `now`.
pub fn check_period(from: i64, to: i64, now: i64) -> Result<(), PeriodError> {
    if from < EARLIEST {
        return Err(PeriodError::FromTooEarly(from));
    }
    if to <= from {
        return Err(PeriodError::NotAfterFrom { from, to });
    }
    if to > now + 60 {
        return Err(PeriodError::InTheFuture { to, now });
    }
    if to - from > MAX_PERIOD_SECONDS {
        return Err(PeriodError::TooLong(to - from));
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("no tenant {0:?}")]
    NoTenant(String),
    #[error(transparent)]
    Period(#[from] PeriodError),
    #[error("a reconciliation of tenant {0:?} is already running")]
    Busy(String),
    /// Mango's statistics could not be read (its words; never the salt).
    #[error("Mango's statistics: {0}")]
    Mango(#[from] ApiError),
    #[error("the store: {0}")]
    Store(#[from] StoreError),
}

/// What one run found and did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ReconcileReport {
    pub tenant: String,
    pub from: i64,
    pub to: i64,
    /// Statistics rows read, and the distinct calls (entries) they describe.
    pub rows: usize,
    pub entries: usize,
    /// Rows that could not be read, described (line, field, problem).
    pub bad_rows: Vec<String>,
    /// Entries already planned: delivered or on their way, left alone.
    pub already_planned: usize,
    /// Entries planned without their summary and with nothing for the CRM (a missed call
    /// nobody is told of) that the statistics say were answered: planned again from the
    /// statistics. Nothing of them had been written, so nothing is written twice.
    pub replanned: usize,
    /// Entries whose summary the log has: the processor plans them, left alone.
    pub in_progress: usize,
    /// Entries the log had part of (no summary): their end added from the statistics.
    pub merged: usize,
    /// Entries the log had nothing of: rebuilt from the statistics.
    pub recovered: usize,
    /// Events appended to the log (0 when nothing was missing).
    pub events_appended: usize,
    pub seconds: f64,
}

/// The reconciliation's configuration and the tenants running now (their Mango clients are the
/// shared ones of `AppState::vpbx_clients`).
#[derive(Default)]
pub struct Reconciler {
    pub config: Reconcile,
    running: Mutex<HashSet<String>>,
    /// `(tenant, entry)` whose plan a run forgot, for the processor to re-open before the
    /// recovered events reach it; the flag spares the processor a lock per event.
    reopened: Mutex<Vec<(String, String)>>,
    reopen_pending: AtomicBool,
}

/// Marks a tenant as running until dropped.
struct RunGuard<'a> {
    reconciler: &'a Reconciler,
    tenant: String,
}

impl Drop for RunGuard<'_> {
    fn drop(&mut self) {
        lock(&self.reconciler.running).remove(&self.tenant);
    }
}

impl Reconciler {
    pub fn new(config: Reconcile) -> Reconciler {
        Reconciler {
            config,
            ..Reconciler::default()
        }
    }

    fn start(&self, tenant: &str) -> Result<RunGuard<'_>, ReconcileError> {
        if !lock(&self.running).insert(tenant.to_owned()) {
            return Err(ReconcileError::Busy(tenant.to_owned()));
        }
        Ok(RunGuard {
            reconciler: self,
            tenant: tenant.to_owned(),
        })
    }

    fn reopen(&self, tenant: &str, entry: &str) {
        lock(&self.reopened).push((tenant.to_owned(), entry.to_owned()));
        self.reopen_pending.store(true, Ordering::Release);
    }

    /// The entries to re-open since the last call (the processor asks before each event).
    pub fn take_reopened(&self) -> Vec<(String, String)> {
        if !self.reopen_pending.swap(false, Ordering::AcqRel) {
            return Vec::new();
        }
        std::mem::take(&mut *lock(&self.reopened))
    }
}

/// Reconciles `tenant_id`'s calls that started within `from..=to` (Unix seconds).
pub async fn reconcile(
    state: &AppState,
    tenant_id: &str,
    from: i64,
    to: i64,
) -> Result<ReconcileReport, ReconcileError> {
    let started = Instant::now();
    check_period(from, to, now_ms() / 1000)?;
    let tenant = state
        .tenant(tenant_id)
        .await
        .ok_or_else(|| ReconcileError::NoTenant(tenant_id.to_owned()))?;
    let reconciler = &state.reconciler;
    let _running = reconciler.start(tenant_id)?;
    let client = state.vpbx_clients.client(
        &state.mango_api_url,
        &tenant.row.mango_api_key,
        &tenant.row.mango_api_salt,
    )?;
    let table = client
        .call_stats(
            from,
            to,
            Duration::from_millis(reconciler.config.poll_ms),
            Duration::from_secs(reconciler.config.wait_seconds),
        )
        .await?;
    let mut report = ReconcileReport {
        tenant: tenant_id.to_owned(),
        from,
        to,
        rows: table.rows.len(),
        bad_rows: table.bad_rows.iter().map(ToString::to_string).collect(),
        ..ReconcileReport::default()
    };
    for bad in &table.bad_rows {
        tracing::warn!(tenant = tenant_id, %bad, "a statistics row could not be read; skipped");
    }
    let calls = merge_rows(&table.rows);
    report.entries = calls.len();
    let last_end = calls.values().map(|r| r.finish).max().unwrap_or(to);
    let seen = state
        .store
        .entries_seen_between(
            tenant_id,
            from - LOG_MARGIN_SECONDS,
            last_end.max(to) + LOG_MARGIN_SECONDS,
        )
        .await?;
    let now_s = now_ms() / 1000;
    for (entry_id, row) in &calls {
        // The bounds a webhook must keep hold for rebuilt events too (times from 2000 to a day
        // ahead, short text without control characters): an odd row is reported, not stored.
        let events = recovered_events(row);
        if let Some(e) = events
            .iter()
            .find_map(|e| callbridge_mango::check_plausible(e, Some(now_s)).err())
        {
            let fault = format!("entry {entry_id:?}: {e}");
            tracing::warn!(tenant = tenant_id, %fault, "a statistics row is implausible; skipped");
            report.bad_rows.push(fault);
            continue;
        }
        if let Some(planned) = state.store.entry(tenant_id, entry_id).await? {
            // The webhooks stopped mid-call and the grace period completed the entry from its
            // first legs (a voice-menu miss, say) while the PBX says somebody answered: when
            // that plan gave the CRM nothing, it is dropped and planned again from the row.
            let unwritten = planned.completed_by != "summary"
                && planned.outbox.is_empty()
                && planned.plan["records"].as_array().is_none_or(Vec::is_empty);
            if unwritten
                && row.answer.is_some()
                && state
                    .store
                    .forget_unwritten_plan(tenant_id, entry_id)
                    .await?
            {
                reconciler.reopen(tenant_id, entry_id);
                report.replanned += 1;
            } else {
                report.already_planned += 1;
                continue;
            }
        } else {
            match seen.get(entry_id) {
                Some(true) => {
                    report.in_progress += 1;
                    continue;
                }
                Some(false) => report.merged += 1,
                None => report.recovered += 1,
            }
        }
        for event in events {
            let (path, json) = callbridge_mango::wire::to_json(&event);
            let new = NewEvent {
                tenant_id: tenant_id.to_owned(),
                entry_id: entry_id.clone(),
                path: path.to_owned(),
                dedupe_key: event.dedupe_key(),
                json: json.to_string(),
                received_at_ms: now_ms(),
            };
            if let Appended::Stored(_) = state.appender.append_with(new, event).await? {
                report.events_appended += 1;
            }
        }
    }
    if report.events_appended > 0 {
        state.new_events.notify_one();
    }
    report.seconds = (started.elapsed().as_secs_f64() * 10.0).round() / 10.0;
    metrics::counter!("callbridge_reconcile_runs_total", "result" => "ok").increment(1);
    metrics::counter!("callbridge_reconcile_entries_total", "kind" => "recovered")
        .increment(report.recovered as u64);
    metrics::counter!("callbridge_reconcile_entries_total", "kind" => "merged")
        .increment(report.merged as u64);
    metrics::counter!("callbridge_reconcile_entries_total", "kind" => "replanned")
        .increment(report.replanned as u64);
    tracing::info!(
        tenant = tenant_id,
        from,
        to,
        rows = report.rows,
        recovered = report.recovered,
        merged = report.merged,
        already_planned = report.already_planned,
        replanned = report.replanned,
        in_progress = report.in_progress,
        bad_rows = report.bad_rows.len(),
        events_appended = report.events_appended,
        "reconciled from Mango's statistics"
    );
    Ok(report)
}

/// The day (days since 1970, UTC) to run for when, at `now`, a tenant whose hour is `hour` and
/// that last ran on `last_day` is due: within its hour, not yet that day. A service started
/// within the hour still runs that day; one started after it waits for the next.
fn due_day(now: i64, hour: Option<u8>, last_day: Option<i64>) -> Option<i64> {
    let (day, now_hour) = (now.div_euclid(86_400), now.rem_euclid(86_400) / 3_600);
    (hour.map(i64::from) == Some(now_hour) && last_day != Some(day)).then_some(day)
}

/// The daily run: once a minute, each tenant whose hour (its `reconcile_hour_utc`, else
/// `daily_hour`) has come and that has not run today is reconciled over the last
/// `look_back_hours`, up to a minute ago. Tenants run one after another.
pub async fn run_daily(
    state: Arc<AppState>,
    daily_hour: Option<u8>,
    tenant_hours: HashMap<String, u8>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut last_day: HashMap<String, i64> = HashMap::new();
    loop {
        let now = now_ms() / 1000;
        let tenants: Vec<String> = state.tenants.read().await.keys().cloned().collect();
        for tenant in tenants {
            let hour = tenant_hours.get(&tenant).copied().or(daily_hour);
            let Some(day) = due_day(now, hour, last_day.get(&tenant).copied()) else {
                continue;
            };
            last_day.insert(tenant.clone(), day);
            let look_back = state.reconciler.config.look_back_hours * 3_600;
            let to = now - 60;
            let from = to - look_back.min(MAX_PERIOD_SECONDS);
            if let Err(e) = reconcile(&state, &tenant, from, to).await {
                metrics::counter!("callbridge_reconcile_runs_total", "result" => "error")
                    .increment(1);
                tracing::warn!(tenant, error = %e, "daily reconciliation failed");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(60)) => {}
            _ = shutdown.changed() => {
                if *shutdown.borrow() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_764_000_000;

    #[test]
    fn periods_are_checked_naming_what_is_wrong() {
        assert_eq!(check_period(NOW - 86_400, NOW, NOW), Ok(()));
        assert_eq!(check_period(5, NOW, NOW), Err(PeriodError::FromTooEarly(5)));
        assert_eq!(
            check_period(NOW, NOW, NOW),
            Err(PeriodError::NotAfterFrom { from: NOW, to: NOW })
        );
        assert!(matches!(
            check_period(NOW - 10, NOW + 3_600, NOW),
            Err(PeriodError::InTheFuture { .. })
        ));
        assert_eq!(
            check_period(NOW - 40 * 86_400, NOW, NOW),
            Err(PeriodError::TooLong(40 * 86_400))
        );
        assert!(check_period(NOW - 40 * 86_400, NOW, NOW)
            .unwrap_err()
            .to_string()
            .contains("31 days"));
    }

    #[test]
    fn the_daily_run_is_due_once_within_its_hour() {
        let day = 20_000;
        let at = |hour: i64, minute: i64| day * 86_400 + hour * 3_600 + minute * 60;
        assert_eq!(due_day(at(3, 0), Some(3), None), Some(day));
        assert_eq!(due_day(at(3, 59), Some(3), Some(day - 1)), Some(day));
        assert_eq!(due_day(at(3, 30), Some(3), Some(day)), None, "ran today");
        assert_eq!(due_day(at(2, 59), Some(3), None), None);
        assert_eq!(
            due_day(at(4, 0), Some(3), None),
            None,
            "missed hours wait a day"
        );
        assert_eq!(due_day(at(0, 10), Some(0), Some(day - 1)), Some(day));
        assert_eq!(
            due_day(at(3, 0), None, None),
            None,
            "no hour: on demand only"
        );
    }

    #[test]
    fn one_run_per_tenant_at_a_time() {
        let reconciler = Reconciler::default();
        let first = reconciler.start("acme").unwrap();
        assert!(matches!(
            reconciler.start("acme"),
            Err(ReconcileError::Busy(t)) if t == "acme"
        ));
        let other = reconciler.start("globex");
        assert!(other.is_ok());
        drop(first);
        assert!(reconciler.start("acme").is_ok());
    }
}
