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
        let mut saved = vec![false; plans.len()];
        with_writer!(self, conn => {
            let mut tx = sqlx::Connection::begin(conn).await?;
            for &i in &order {
                let p = &plans[i];
                let journal = JournalColumns::of_plan(&p.plan);
                let inserted = sqlx::query(
                    "INSERT INTO entries (tenant_id, entry_id, completed_by, plan, planned_at_ms, \
                     client_phone10, direction, outcome, started_at, extensions, first_event_id, last_event_id) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
                     ON CONFLICT (tenant_id, entry_id) DO NOTHING",
                )
                .bind(&p.tenant_id)
                .bind(&p.entry_id)
                .bind(&p.completed_by)
                .bind(p.plan.to_string())
                .bind(now_ms)
                .bind(journal.client_phone10)
                .bind(journal.direction)
                .bind(journal.outcome)
                .bind(journal.started_at)
                .bind(journal.extensions)
                .bind(p.first_event_id)
                .bind(p.last_event_id)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
                // An entry planned already keeps the outbox it was planned with.
                if inserted {
                    for item in &p.outbox {
                        sqlx::query(
                            "INSERT INTO outbox (item_key, tenant_id, entry_id, kind, payload, state, attempts, next_attempt_at_ms, created_at_ms) \
                             VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $6) ON CONFLICT (item_key) DO NOTHING",
                        )
                        .bind(&item.item_key)
                        .bind(&p.tenant_id)
                        .bind(&p.entry_id)
                        .bind(&item.kind)
                        .bind(item.payload.to_string())
                        .bind(now_ms)
                        .execute(&mut *tx)
                        .await?;
                    }
                }
                saved[i] = inserted;
            }
            tx.commit().await?;
        });
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
