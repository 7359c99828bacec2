//! What reconciliation asks of the event log: which entries of a period it holds events of, and
//! whether one of them is a summary.

use crate::{with_db, with_writer, Result, Store};
use std::collections::HashMap;

/// The log paths of a summary: received as a webhook, or rebuilt from statistics.
const SUMMARY_PATHS: [&str; 2] = ["events/summary", "recovered/summary"];

impl Store {
    /// The tenant's entries not planned yet with an event whose own time is within `from..=to`
    /// (Unix seconds), each with whether a summary is among its events. Reconciliation asks
    /// this only of entries without a plan (a planned one is decided by its plan), so the log
    /// is read from the recovery mark on: every event below it belongs to a planned entry. An
    /// entry planned meanwhile may be among the answer too. The keys of call, summary and
    /// recording events lead with the event's time, zero-padded to 12 digits
    /// (`PbxEvent::dedupe_key`), which bounds the period. Events keyed without a time (a
    /// recording's stored and tagged notices) are not looked at: an entry known only from them
    /// is an entry the log never saw a call of.
    ///
    /// Why not a range of the tenant's keys: the log's unique index leads with the key, not the
    /// tenant (appends stay cheap with many tenants; `schema.rs`, migration 14), so that range
    /// would pass every tenant's events of the period, once per tenant reconciled. The log
    /// from the mark on is what is still in flight, whatever the number of tenants.
    pub async fn entries_seen_between(
        &self,
        tenant_id: &str,
        from: i64,
        to: i64,
    ) -> Result<HashMap<String, bool>> {
        let low = format!("{:012}", from.max(0));
        let high = format!("{:012}", to.max(0).saturating_add(1));
        let mark = self.recovery_mark().await?;
        let rows: Vec<(String, i64)> = with_db!(&self.db, pool => {
            sqlx::query_as(
                "SELECT entry_id, CAST(MAX(CASE WHEN path IN ($5, $6) THEN 1 ELSE 0 END) AS BIGINT) \
                 FROM events WHERE id >= $1 AND tenant_id = $2 AND dedupe_key >= $3 AND dedupe_key < $4 \
                 GROUP BY entry_id",
            )
            .bind(mark)
            .bind(tenant_id)
            .bind(&low)
            .bind(&high)
            .bind(SUMMARY_PATHS[0])
            .bind(SUMMARY_PATHS[1])
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|(entry, summary)| (entry, summary != 0))
            .collect())
    }

    /// Forgets the plan of an entry that was completed without its summary (grace or
    /// abandonment) and gave the CRM nothing to do: no outbox item of it exists. Its events
    /// stay in the log. True when the plan was forgotten; false when there was none, it came
    /// from a summary, or something of it is (or was) on its way to the CRM, which a new plan
    /// could then double. One statement, so a plan's outbox items cannot slip in between the
    /// check and the delete (they are written in the plan's own transaction).
    pub async fn forget_unwritten_plan(&self, tenant_id: &str, entry_id: &str) -> Result<bool> {
        // The outbox's keys start with `tenant/entry/`: a range of its primary key.
        let low = format!("{tenant_id}/{entry_id}/");
        let high = format!("{tenant_id}/{entry_id}0");
        let affected = with_writer!(self, conn => {
            sqlx::query(
                "DELETE FROM entries WHERE tenant_id = $1 AND entry_id = $2 \
                 AND completed_by <> 'summary' AND NOT EXISTS (SELECT 1 FROM outbox \
                 WHERE item_key >= $3 AND item_key < $4 AND tenant_id = $1 AND entry_id = $2)",
            )
            .bind(tenant_id)
            .bind(entry_id)
            .bind(&low)
            .bind(&high)
            .execute(&mut *conn)
            .await?
            .rows_affected()
        });
        Ok(affected == 1)
    }
}
