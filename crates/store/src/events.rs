//! The event log: every accepted webhook, raw, appended durably (see `appender.rs` for the group
//! commit), and read back by the processor; the recovery mark.

use crate::{with_db, with_writer, Result, Store};

/// A webhook to append to the event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub tenant_id: String,
    pub entry_id: String,
    /// The path Mango appended (`events/call`, ...).
    pub path: String,
    /// Equal for two deliveries of the same PBX event (`PbxEvent::dedupe_key`).
    pub dedupe_key: String,
    /// The `json` form field exactly as received.
    pub json: String,
    /// Unix milliseconds.
    pub received_at_ms: i64,
}

/// What the log did with an appended event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Stored with this id.
    Stored(i64),
    /// The same event was already in the log.
    Duplicate,
}

/// An event read back from the log; its fields are the columns read, by name.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredEvent {
    pub id: i64,
    pub tenant_id: String,
    pub entry_id: String,
    pub path: String,
    pub json: String,
    pub received_at_ms: i64,
}

impl Store {
    /// Appends events in one transaction, as one multi-row statement per chunk; each result says
    /// whether the event was new (the first of equal dedupe keys wins, also within the batch).
    pub async fn append_events(&self, events: &[NewEvent]) -> Result<Vec<Appended>> {
        // 6 parameters a row; stay well inside both engines' parameter limits.
        const CHUNK: usize = 1000;
        let mut stored: std::collections::HashMap<(String, String), i64> =
            std::collections::HashMap::new();
        with_writer!(self, conn => {
            let mut tx = sqlx::Connection::begin(conn).await?;
            for chunk in events.chunks(CHUNK) {
                let mut q = sqlx::QueryBuilder::new(
                    "INSERT INTO events (tenant_id, entry_id, path, dedupe_key, json, received_at_ms) ",
                );
                q.push_values(chunk, |mut row, e| {
                    row.push_bind(&e.tenant_id)
                        .push_bind(&e.entry_id)
                        .push_bind(&e.path)
                        .push_bind(&e.dedupe_key)
                        .push_bind(&e.json)
                        .push_bind(e.received_at_ms);
                });
                q.push(" ON CONFLICT (dedupe_key, tenant_id) DO NOTHING RETURNING id, tenant_id, dedupe_key");
                let rows: Vec<(i64, String, String)> = q.build_query_as().fetch_all(&mut *tx).await?;
                for (id, tenant, key) in rows {
                    stored.insert((tenant, key), id);
                }
            }
            tx.commit().await?;
        });
        // The row inserted for a key answers its first occurrence; later ones are duplicates.
        Ok(events
            .iter()
            .map(
                |e| match stored.remove(&(e.tenant_id.clone(), e.dedupe_key.clone())) {
                    Some(id) => {
                        self.arrivals.note(&e.tenant_id, &e.path, e.received_at_ms);
                        Appended::Stored(id)
                    }
                    None => Appended::Duplicate,
                },
            )
            .collect())
    }

    /// Events with an id above `after_id`, oldest first.
    pub async fn events_after(&self, after_id: i64, limit: i64) -> Result<Vec<StoredEvent>> {
        let rows: Vec<StoredEvent> = with_db!(&self.db, pool => {
            sqlx::query_as(
                "SELECT id, tenant_id, entry_id, path, json, received_at_ms FROM events WHERE id > $1 ORDER BY id LIMIT $2",
            )
            .bind(after_id)
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }

    /// Every event from id `from_id` on of the entries not planned yet, oldest first: what a
    /// processor folds again after a restart (`from_id` is the [`Store::recovery_mark`]).
    pub async fn unplanned_events(&self, from_id: i64) -> Result<Vec<StoredEvent>> {
        let rows: Vec<StoredEvent> = with_db!(&self.db, pool => {
            sqlx::query_as(
                "SELECT e.id, e.tenant_id, e.entry_id, e.path, e.json, e.received_at_ms FROM events e \
                 WHERE e.id >= $1 \
                 AND NOT EXISTS (SELECT 1 FROM entries p WHERE p.tenant_id = e.tenant_id AND p.entry_id = e.entry_id) \
                 ORDER BY e.id",
            )
            .bind(from_id)
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }

    /// Where start-up recovery reads the log from: every event below this id belongs to an
    /// entry already planned. 0 until a processor has stored one.
    pub async fn recovery_mark(&self) -> Result<i64> {
        let mark: Option<i64> = with_db!(&self.db, pool => {
            sqlx::query_scalar("SELECT first_unplanned_event_id FROM recovery_mark WHERE id = 1")
                .fetch_optional(pool)
                .await?
        });
        Ok(mark.unwrap_or(0))
    }

    /// Stores the recovery mark. Any processor's mark is a valid one (the entries below it are
    /// planned, and planned entries stay planned), so the last one written wins.
    pub async fn set_recovery_mark(
        &self,
        first_unplanned_event_id: i64,
        now_ms: i64,
    ) -> Result<()> {
        with_writer!(self, conn => {
            sqlx::query(
                "INSERT INTO recovery_mark (id, first_unplanned_event_id, updated_at_ms) VALUES (1, $1, $2) \
                 ON CONFLICT (id) DO UPDATE SET first_unplanned_event_id = excluded.first_unplanned_event_id, \
                 updated_at_ms = excluded.updated_at_ms",
            )
            .bind(first_unplanned_event_id)
            .bind(now_ms)
            .execute(&mut *conn)
            .await?;
        });
        Ok(())
    }

    pub async fn max_event_id(&self) -> Result<i64> {
        let id: Option<i64> = with_db!(&self.db, pool => {
            sqlx::query_scalar("SELECT MAX(id) FROM events").fetch_one(pool).await?
        });
        Ok(id.unwrap_or(0))
    }
}
