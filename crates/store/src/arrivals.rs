//! Per tenant: how many events the log stored and the newest arrival (its path and time), in the
//! small table `tenant_arrivals` (migration 14).
//!
//! Why a table of its own: the event log's unique index leads with the event's key, not the
//! tenant (so a commit's new keys land on the index's last pages whichever tenants sent them;
//! see `schema.rs`), and so it cannot answer "this tenant's newest event" or "how many events
//! has this tenant" without reading every tenant's events. Writing the table with every commit
//! would bring the per-tenant page writes back, so each store tallies what it appended in
//! memory and a background task adds the tallies to the table once a second, in one statement
//! for all tenants. Reads add this store's tallies not written yet, so on one instance (SQLite,
//! or one of several on PostgreSQL) they are exact; another instance's arrivals show up to a
//! second late. A crash loses the last second's tallies: the count then falls short by what
//! arrived in that second and the newest arrival shows an older one, until the next event.

use crate::writer::write_outcome;
use crate::{with_db, Result, Store};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// One tenant's appends not yet added to `tenant_arrivals`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Tally {
    stored: i64,
    last_path: String,
    last_received_at_ms: i64,
}

impl Tally {
    /// Takes an arrival as the newest unless a later one is already here (the table's upsert
    /// in `flush_arrivals` decides the same way). The path is copied only when it changes.
    fn see(&mut self, path: &str, received_at_ms: i64) {
        if received_at_ms >= self.last_received_at_ms {
            if self.last_path != path {
                self.last_path = path.to_owned();
            }
            self.last_received_at_ms = received_at_ms;
        }
    }

    fn add(&mut self, other: Tally) {
        self.stored += other.stored;
        self.see(&other.last_path, other.last_received_at_ms);
    }
}

/// The tallies of events this store appended, by tenant, since they were last written.
#[derive(Debug, Default)]
pub(crate) struct ArrivalTallies {
    pending: Mutex<HashMap<String, Tally>>,
    /// Held for writing while a flush moves tallies from `pending` into the table, and for
    /// reading while a count adds the two: a count never sees a tally in neither or in both.
    pub(crate) flushing: tokio::sync::RwLock<()>,
}

/// How often the tallies are added to the table.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Rows a statement; 4 parameters a row keeps both engines well inside their limits.
const FLUSH_CHUNK: usize = 500;

impl ArrivalTallies {
    /// Counts one stored event.
    pub(crate) fn note(&self, tenant_id: &str, path: &str, received_at_ms: i64) {
        let Ok(mut pending) = self.pending.lock() else {
            return;
        };
        let tally = match pending.get_mut(tenant_id) {
            Some(tally) => tally,
            None => pending.entry(tenant_id.to_owned()).or_default(),
        };
        tally.stored += 1;
        tally.see(path, received_at_ms);
    }

    fn is_empty(&self) -> bool {
        self.pending.lock().map_or(true, |p| p.is_empty())
    }

    fn get(&self, tenant_id: &str) -> Option<Tally> {
        self.pending.lock().ok()?.get(tenant_id).cloned()
    }

    fn take_all(&self) -> HashMap<String, Tally> {
        self.pending
            .lock()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default()
    }

    /// Puts back tallies whose write failed, adding what arrived meanwhile.
    fn restore(&self, taken: HashMap<String, Tally>) {
        let Ok(mut pending) = self.pending.lock() else {
            return;
        };
        for (tenant, mut tally) in taken {
            if let Some(newer) = pending.remove(&tenant) {
                tally.add(newer);
            }
            pending.insert(tenant, tally);
        }
    }

    pub(crate) fn forget(&self, tenant_id: &str) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.remove(tenant_id);
        }
    }
}

/// A tenant's newest stored event.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct LastReceived {
    /// The webhook's path as stored (`events/call`, `events/summary`, …): its kind.
    pub path: String,
    pub received_at_ms: i64,
}

impl Store {
    /// Adds the tallies of events appended since the last call to `tenant_arrivals`. Runs once
    /// a second by itself; call it at shutdown so the last second is not lost. On failure the
    /// tallies are kept for the next call.
    pub async fn flush_arrivals(&self) -> Result<()> {
        if self.arrivals.is_empty() {
            return Ok(());
        }
        // Not recorded in the store's health: rewriting these rows in place succeeds on a
        // store too full for an append, and must not report it writable.
        let outcome: Result<()> = write_outcome!(self, conn => {
            // Taken once the write connection is held, so counts wait only for the write.
            let _flushing = self.arrivals.flushing.write().await;
            // Taken under the flushing lock, which a tenant's deletion holds too, so the
            // deletion cannot fall between taking its tally and writing it back.
            let taken = self.arrivals.take_all();
            let rows: Vec<(&String, &Tally)> = taken.iter().collect();
            let written: Result<()> = async {
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                for chunk in rows.chunks(FLUSH_CHUNK) {
                    let mut q = sqlx::QueryBuilder::new(
                        "INSERT INTO tenant_arrivals (tenant_id, events_stored, last_path, last_received_at_ms) ",
                    );
                    q.push_values(chunk, |mut row, (tenant, tally)| {
                        row.push_bind(tenant.as_str())
                            .push_bind(tally.stored)
                            .push_bind(tally.last_path.as_str())
                            .push_bind(tally.last_received_at_ms);
                    });
                    q.push(
                        " ON CONFLICT (tenant_id) DO UPDATE SET \
                         events_stored = tenant_arrivals.events_stored + excluded.events_stored, \
                         last_path = CASE WHEN excluded.last_received_at_ms >= tenant_arrivals.last_received_at_ms \
                           THEN excluded.last_path ELSE tenant_arrivals.last_path END, \
                         last_received_at_ms = CASE WHEN excluded.last_received_at_ms >= tenant_arrivals.last_received_at_ms \
                           THEN excluded.last_received_at_ms ELSE tenant_arrivals.last_received_at_ms END",
                    );
                    q.build().execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(())
            }
            .await;
            if written.is_err() {
                self.arrivals.restore(taken);
            }
            written?
        });
        outcome
    }

    /// The tenant's newest stored event, by arrival.
    pub async fn last_received_event(&self, tenant_id: &str) -> Result<Option<LastReceived>> {
        let _reading = self.arrivals.flushing.read().await;
        let stored: Option<LastReceived> = with_db!(&self.db, pool => {
            sqlx::query_as(
                "SELECT last_path AS path, last_received_at_ms AS received_at_ms FROM tenant_arrivals WHERE tenant_id = $1",
            )
            .bind(tenant_id)
            .fetch_optional(pool)
            .await?
        });
        let pending = self.arrivals.get(tenant_id).map(|t| LastReceived {
            path: t.last_path,
            received_at_ms: t.last_received_at_ms,
        });
        Ok(match (stored, pending) {
            (Some(s), Some(p)) if s.received_at_ms > p.received_at_ms => Some(s),
            (s, p) => p.or(s),
        })
    }

    /// When this store last stored an event of the tenant that it has not written to the table
    /// yet (0: none): what a refusal's count compares against besides the table.
    pub(crate) fn pending_arrival_ms(&self, tenant_id: &str) -> i64 {
        self.arrivals
            .get(tenant_id)
            .map_or(0, |t| t.last_received_at_ms)
    }

    /// How many events the log stored for the tenant (duplicates are not stored).
    pub async fn count_events(&self, tenant_id: &str) -> Result<i64> {
        let _reading = self.arrivals.flushing.read().await;
        let stored: Option<i64> = with_db!(&self.db, pool => {
            sqlx::query_scalar("SELECT events_stored FROM tenant_arrivals WHERE tenant_id = $1")
                .bind(tenant_id)
                .fetch_optional(pool)
                .await?
        });
        Ok(stored.unwrap_or(0) + self.arrivals.get(tenant_id).map_or(0, |t| t.stored))
    }
}

/// Adds the tallies to the table once a second until the store is dropped.
pub(crate) async fn arrival_flusher(store: crate::WeakStore) {
    let mut every = tokio::time::interval(FLUSH_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    loop {
        every.tick().await;
        let Some(store) = store.upgrade() else {
            return;
        };
        if let Err(e) = store.flush_arrivals().await {
            tracing::warn!(error = %e, "writing the tenants' arrival counts failed; retrying");
        }
    }
}

/// What the flusher holds of a store: it ends once the store's last clone is gone.
#[derive(Debug)]
pub(crate) struct WeakStore {
    pub(crate) db: crate::Db,
    pub(crate) writer: Option<Weak<tokio::sync::Mutex<crate::Writer>>>,
    pub(crate) health: Weak<crate::WriteHealth>,
    pub(crate) arrivals: Weak<ArrivalTallies>,
}

impl WeakStore {
    pub(crate) fn of(store: &Store) -> WeakStore {
        WeakStore {
            db: store.db.clone(),
            writer: store.writer.as_ref().map(Arc::downgrade),
            health: Arc::downgrade(&store.health),
            arrivals: Arc::downgrade(&store.arrivals),
        }
    }

    fn upgrade(&self) -> Option<Store> {
        let writer = match &self.writer {
            Some(w) => Some(w.upgrade()?),
            None => None,
        };
        Some(Store {
            db: self.db.clone(),
            writer,
            health: self.health.upgrade()?,
            secrets: Default::default(),
            arrivals: self.arrivals.upgrade()?,
        })
    }
}
