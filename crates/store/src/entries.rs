//! Planned entries: the plan and its outbox items stored in one transaction, the entry row being
//! the exactly-once gate; and the entries read back for the admin API.

use crate::journal::JournalColumns;
use crate::{with_db, with_writer, Result, Store, StoreError};

/// A completed entry's plan to store (see [`Store::save_plans`]).
#[derive(Debug, Clone, PartialEq)]
pub struct NewPlan {
    pub tenant_id: String,
    pub entry_id: String,
    pub completed_by: String,
    pub plan: serde_json::Value,
    pub outbox: Vec<NewOutboxItem>,
    /// The event log id of the entry's first event, when the planner knows it.
    pub first_event_id: Option<i64>,
    /// The log position the planner had read through when it planned the entry: every event
    /// the plan was made of has an id in `first_event_id..=last_event_id`.
    pub last_event_id: Option<i64>,
}

/// One CRM work item of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOutboxItem {
    /// Stable across retries and replays: `tenant/entry/conversation/action`.
    pub item_key: String,
    pub kind: String,
    pub payload: serde_json::Value,
}

/// A planned entry as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEntry {
    pub tenant_id: String,
    pub entry_id: String,
    pub completed_by: String,
    pub planned_at_ms: i64,
    pub plan: serde_json::Value,
    /// Outbox items of the entry by state (`pending`, `done`, `parked`).
    pub outbox: Vec<(String, String)>,
    /// The entry's event id range (see [`NewPlan`]); `None` for entries planned before it was
    /// kept.
    pub first_event_id: Option<i64>,
    pub last_event_id: Option<i64>,
}

impl StoredEntry {
    /// The entry's delivery as a whole, from its items' states: `parked` when any is parked
    /// (a person must act), else `pending` while any is not done, `delivered` when all are, and
    /// `nothing_to_deliver` for a plan with no CRM work.
    pub fn delivery_state(&self) -> &'static str {
        if self.outbox.is_empty() {
            "nothing_to_deliver"
        } else if self.outbox.iter().any(|(_, s)| s == "parked") {
            "parked"
        } else if self.outbox.iter().any(|(_, s)| s != "done") {
            "pending"
        } else {
            "delivered"
        }
    }
}

impl Store {
    /// Stores an entry's plan and its outbox items in one transaction. Returns false, writing
    /// nothing, when the entry was already planned (by this or another instance).
    pub async fn save_plan(
        &self,
        tenant_id: &str,
        entry_id: &str,
        completed_by: &str,
        plan: &serde_json::Value,
        outbox: &[NewOutboxItem],
        now_ms: i64,
    ) -> Result<bool> {
        let plan = NewPlan {
            tenant_id: tenant_id.to_string(),
            entry_id: entry_id.to_string(),
            completed_by: completed_by.to_string(),
            plan: plan.clone(),
            outbox: outbox.to_vec(),
            first_event_id: None,
            last_event_id: None,
        };
        Ok(self.save_plans(std::slice::from_ref(&plan), now_ms).await?[0])
    }

    /// Stores several entries' plans, each with its outbox items, in one transaction (one
    /// durable write for all). For each plan, true when it was stored; false, writing nothing for
    /// that entry, when the entry was already planned (by this or another instance).
    pub async fn save_plans(&self, plans: &[NewPlan], now_ms: i64) -> Result<Vec<bool>> {
        if plans.is_empty() {
            return Ok(Vec::new());
        }
        // Rows are locked in one order, (tenant, entry), whatever order the plans came in: two
        // instances saving overlapping plans on PostgreSQL then wait for each other instead of
        // deadlocking.
        let mut order: Vec<usize> = (0..plans.len()).collect();
        order.sort_by(|&a, &b| {
            (&plans[a].tenant_id, &plans[a].entry_id)
                .cmp(&(&plans[b].tenant_id, &plans[b].entry_id))
        });
        // Multi-row statements, as the event log's appends: a save is a handful of statements
        // whatever the plans, not one per entry and one per outbox item (each a hand-over to
        // the database's thread while the writer is held, which webhooks then wait for).
        // 12 parameters an entry row, 6 an outbox row: well inside both engines' limits.
        const ENTRY_CHUNK: usize = 400;
        const OUTBOX_CHUNK: usize = 1000;
        let rows: Vec<(&NewPlan, JournalColumns, String)> = order
            .iter()
            .map(|&i| {
                let p = &plans[i];
                (p, JournalColumns::of_plan(&p.plan), p.plan.to_string())
            })
            .collect();
        // Whether each of `rows` was stored. The row inserted for an entry answers its first
        // plan; a repeat in the same save, or an entry planned before, was not saved.
        let mut stored: Vec<bool> = Vec::new();
        with_writer!(self, conn => {
            let mut inserted: std::collections::HashSet<(String, String)> =
                std::collections::HashSet::new();
            let mut tx = sqlx::Connection::begin(conn).await?;
            for chunk in rows.chunks(ENTRY_CHUNK) {
                let mut q = sqlx::QueryBuilder::new(
                    "INSERT INTO entries (tenant_id, entry_id, completed_by, plan, planned_at_ms, \
                     client_phone10, direction, outcome, started_at, extensions, first_event_id, last_event_id) ",
                );
                q.push_values(chunk, |mut row, (p, journal, plan)| {
                    row.push_bind(&p.tenant_id)
                        .push_bind(&p.entry_id)
                        .push_bind(&p.completed_by)
                        .push_bind(plan)
                        .push_bind(now_ms)
                        .push_bind(&journal.client_phone10)
                        .push_bind(&journal.direction)
                        .push_bind(&journal.outcome)
                        .push_bind(journal.started_at)
                        .push_bind(&journal.extensions)
                        .push_bind(p.first_event_id)
                        .push_bind(p.last_event_id);
                });
                q.push(" ON CONFLICT (tenant_id, entry_id) DO NOTHING RETURNING tenant_id, entry_id");
                let new: Vec<(String, String)> = q.build_query_as().fetch_all(&mut *tx).await?;
                inserted.extend(new);
            }
            stored = rows
                .iter()
                .map(|(p, _, _)| inserted.remove(&(p.tenant_id.clone(), p.entry_id.clone())))
                .collect();
            // Only a stored plan's outbox is written: an entry planned already keeps the outbox
            // it was planned with.
            let items: Vec<(&NewPlan, &crate::NewOutboxItem, String)> = rows
                .iter()
                .zip(&stored)
                .filter(|(_, stored)| **stored)
                .flat_map(|((p, _, _), _)| p.outbox.iter().map(move |item| (*p, item, item.payload.to_string())))
                .collect();
            for chunk in items.chunks(OUTBOX_CHUNK) {
                let mut q = sqlx::QueryBuilder::new(
                    "INSERT INTO outbox (item_key, tenant_id, entry_id, kind, payload, state, attempts, next_attempt_at_ms, created_at_ms) ",
                );
                q.push_values(chunk, |mut row, (p, item, payload)| {
                    row.push_bind(&item.item_key)
                        .push_bind(&p.tenant_id)
                        .push_bind(&p.entry_id)
                        .push_bind(&item.kind)
                        .push_bind(payload)
                        .push("'pending'")
                        .push("0")
                        .push_bind(now_ms)
                        .push_bind(now_ms);
                });
                q.push(" ON CONFLICT (item_key) DO NOTHING");
                q.build().execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        // Back in the order the plans came in.
        let mut saved = vec![false; plans.len()];
        for (&i, stored) in order.iter().zip(stored) {
            saved[i] = stored;
        }
        Ok(saved)
    }

    /// Planned entries of a tenant, newest first.
    pub async fn entries(
        &self,
        tenant_id: &str,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<StoredEntry>> {
        Ok(self
            .journal(tenant_id, &crate::JournalFilter::default(), limit, offset)
            .await?
            .entries)
    }

    pub async fn entry(&self, tenant_id: &str, entry_id: &str) -> Result<Option<StoredEntry>> {
        let sql = format!(
            "SELECT {ENTRY_COLUMNS} FROM entries e WHERE e.tenant_id = $1 AND e.entry_id = $2"
        );
        let row: Option<EntryRow> = with_db!(&self.db, pool => {
            sqlx::query_as(&sql)
            .bind(tenant_id)
            .bind(entry_id)
            .fetch_optional(pool)
            .await?
        });
        match row {
            None => Ok(None),
            Some(row) => Ok(Some(self.with_outbox_states(row).await?)),
        }
    }

    pub async fn count_entries(&self, tenant_id: &str) -> Result<i64> {
        Ok(with_db!(&self.db, pool => {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM entries WHERE tenant_id = $1").bind(tenant_id).fetch_one(pool).await?
        }))
    }

    /// A stored row with its outbox items' states read.
    pub(crate) async fn with_outbox_states(&self, row: EntryRow) -> Result<StoredEntry> {
        let (from, to) = entry_item_keys(&row.tenant_id, &row.entry_id);
        let outbox: Vec<(String, String)> = with_db!(&self.db, pool => {
            sqlx::query_as(
                "SELECT item_key, state FROM outbox WHERE item_key >= $1 AND item_key < $2 AND entry_id = $3 ORDER BY item_key",
            )
            .bind(&from)
            .bind(&to)
            .bind(&row.entry_id)
            .fetch_all(pool)
            .await?
        });
        row.into_entry(outbox)
    }
}

/// The outbox keys of one entry's items, as a primary-key range `[from, to)`: every key is
/// `tenant/entry/...`, and `0` is the byte after `/`. (An entry id holding a `/` could share a
/// prefix with another's: callers also compare `entry_id`.)
pub(crate) fn entry_item_keys(tenant_id: &str, entry_id: &str) -> (String, String) {
    (
        format!("{tenant_id}/{entry_id}/"),
        format!("{tenant_id}/{entry_id}0"),
    )
}

/// The columns of `entries e` an [`EntryRow`] reads.
pub(crate) const ENTRY_COLUMNS: &str = "e.tenant_id, e.entry_id, e.completed_by, e.plan, e.planned_at_ms, e.first_event_id, e.last_event_id";

/// A row of `entries`, its plan still JSON text.
#[derive(sqlx::FromRow)]
pub(crate) struct EntryRow {
    pub(crate) tenant_id: String,
    pub(crate) entry_id: String,
    completed_by: String,
    plan: String,
    planned_at_ms: i64,
    pub(crate) first_event_id: Option<i64>,
    pub(crate) last_event_id: Option<i64>,
}

impl EntryRow {
    fn into_entry(self, outbox: Vec<(String, String)>) -> Result<StoredEntry> {
        let plan = serde_json::from_str(&self.plan)
            .map_err(|e| StoreError::Corrupt(format!("plan of {}: {e}", self.entry_id)))?;
        Ok(StoredEntry {
            tenant_id: self.tenant_id,
            entry_id: self.entry_id,
            completed_by: self.completed_by,
            planned_at_ms: self.planned_at_ms,
            plan,
            outbox,
            first_event_id: self.first_event_id,
            last_event_id: self.last_event_id,
        })
    }
}
