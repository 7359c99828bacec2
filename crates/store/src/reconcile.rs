//! What reconciliation asks of the event log: which entries of a period it holds events of, and
//! whether one of them is a summary.

use crate::{with_db, Result, Store};
use std::collections::HashMap;

/// The log paths of a summary: received as a webhook, or rebuilt from statistics.
const SUMMARY_PATHS: [&str; 2] = ["events/summary", "recovered/summary"];

impl Store {
    /// The tenant's entries with an event whose own time is within `from..=to` (Unix seconds),
    /// each with whether a summary is among its events. One range scan of the log's unique
    /// `(tenant_id, dedupe_key)` index: the keys of call, summary and recording events lead with
    /// the event's time, zero-padded to 12 digits (`PbxEvent::dedupe_key`). Events keyed without
    /// a time (a recording's stored and tagged notices) are not looked at: an entry known only
    /// from them is an entry the log never saw a call of.
    pub async fn entries_seen_between(
        &self,
        tenant_id: &str,
        from: i64,
        to: i64,
    ) -> Result<HashMap<String, bool>> {
        let low = format!("{:012}", from.max(0));
        let high = format!("{:012}", to.max(0).saturating_add(1));
        let rows: Vec<(String, i64)> = with_db!(&self.db, pool => {
            sqlx::query_as(
                "SELECT entry_id, CAST(MAX(CASE WHEN path IN ($4, $5) THEN 1 ELSE 0 END) AS BIGINT) \
                 FROM events WHERE tenant_id = $1 AND dedupe_key >= $2 AND dedupe_key < $3 \
                 GROUP BY entry_id",
            )
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
}
