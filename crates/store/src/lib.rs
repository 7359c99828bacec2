//! callbridge's persistence, behind one type for both backends.
//!
//! - **Event log**: every accepted webhook, raw, with its entry id and a dedupe key; appended
//!   durably before the PBX gets its 200. Concurrent appends are committed together (group
//!   commit), so one fsync serves many requests.
//! - **Entries**: one row per planned entry, holding its plan. Inserting the row is the
//!   exactly-once gate: the plan and its outbox items are written in the same transaction, and a
//!   second planner (another instance, or a replay after a crash) finds the row and writes
//!   nothing.
//! - **Outbox**: the CRM work of each plan, with a stable idempotency key per item.
//! - **Tenants**: PBX account + CRM account + settings.
//!
//! SQLite (embedded, WAL) is the default; a `postgres://` URL selects PostgreSQL. The SQL is
//! written once, with `$n` placeholders both engines accept.

mod appender;
mod outbox;
mod schema;

pub use appender::{sink, Appender, Committed, Sink, SinkReceiver};
pub use outbox::{AddedItem, CrmStatus, Lane, OAuthState, OutboxCounts, OutboxItem};

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::ConnectOptions;
use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("invalid database URL {url:?}: {problem}")]
    Url { url: String, problem: String },
    #[error("the event log writer has stopped")]
    AppenderStopped,
    #[error("stored data is malformed: {0}")]
    Corrupt(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// The database, SQLite or PostgreSQL.
#[derive(Clone, Debug)]
pub enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs the same body against whichever pool the store holds. The body is compiled once per
/// backend, so the SQL and the Rust types must suit both.
macro_rules! with_db {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::Db::Sqlite($pool) => $body,
            $crate::Db::Postgres($pool) => $body,
        }
    };
}
pub(crate) use with_db;

/// Runs a writing body on the store's write connection: on SQLite the one dedicated writer
/// connection, taken in turn through an async lock (so writers queue in the process instead of
/// sleeping in SQLite's busy handler); on PostgreSQL a pooled connection. `$conn` is a
/// `&mut` connection of either engine.
macro_rules! with_writer {
    ($store:expr, $conn:ident => $body:expr) => {
        match (&$store.db, &$store.writer) {
            ($crate::Db::Sqlite(_), Some(writer)) => {
                let mut guard = writer.lock().await;
                let $conn: &mut sqlx::SqliteConnection = &mut *guard;
                $body
            }
            ($crate::Db::Sqlite(pool), None) => {
                let mut pooled = pool.acquire().await?;
                let $conn: &mut sqlx::SqliteConnection = &mut *pooled;
                $body
            }
            ($crate::Db::Postgres(pool), _) => {
                let mut pooled = pool.acquire().await?;
                let $conn: &mut sqlx::PgConnection = &mut *pooled;
                $body
            }
        }
    };
}

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

/// An event read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub id: i64,
    pub tenant_id: String,
    pub entry_id: String,
    pub path: String,
    pub json: String,
    pub received_at_ms: i64,
}

/// A completed entry's plan to store (see [`Store::save_plans`]).
#[derive(Debug, Clone, PartialEq)]
pub struct NewPlan {
    pub tenant_id: String,
    pub entry_id: String,
    pub completed_by: String,
    pub plan: serde_json::Value,
    pub outbox: Vec<NewOutboxItem>,
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
}

/// A tenant as stored: one PBX account linked to one CRM account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRow {
    pub id: String,
    pub mango_api_key: String,
    pub mango_api_salt: String,
    /// The settings document (TOML, the `simulate` schema).
    pub settings_toml: String,
    /// The CRM connection (JSON), filled by the CRM adapter.
    pub crm: serde_json::Value,
    pub updated_at_ms: i64,
}

#[derive(Clone, Debug)]
pub struct Store {
    db: Db,
    /// SQLite only: the one connection every event-log and plan write goes through.
    writer: Option<Arc<tokio::sync::Mutex<SqliteConnection>>>,
}

impl Store {
    /// Opens (creating if needed) the SQLite database `callbridge.db` in `data_dir`.
    pub async fn open_sqlite(data_dir: &Path) -> Result<Store> {
        std::fs::create_dir_all(data_dir).map_err(|e| StoreError::Url {
            url: data_dir.display().to_string(),
            problem: e.to_string(),
        })?;
        let options = SqliteConnectOptions::new()
            .filename(data_dir.join("callbridge.db"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit survives power loss, which is what acknowledging a webhook promises.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            // No checkpoint inside a commit: the background checkpointer below does it, off the
            // acknowledgement path (a checkpoint copies and fsyncs pages while the writer waits).
            .pragma("wal_autocheckpoint", "0")
            // Once a checkpoint has caught up, the WAL file is cut back to this size on reuse.
            .pragma("journal_size_limit", "67108864");
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options.clone())
            .await?;
        let writer = options.connect().await?;
        let writer = Arc::new(tokio::sync::Mutex::new(writer));
        let store = Store {
            db: Db::Sqlite(pool),
            writer: Some(writer.clone()),
        };
        store.migrate().await?;
        tokio::spawn(checkpointer(Arc::downgrade(&writer)));
        Ok(store)
    }

    /// Connects to PostgreSQL.
    pub async fn open_postgres(url: &str) -> Result<Store> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await?;
        let store = Store {
            db: Db::Postgres(pool),
            writer: None,
        };
        store.migrate().await?;
        Ok(store)
    }

    /// `database_url` when set (only `postgres://` and `postgresql://` are accepted), else SQLite
    /// in `data_dir`.
    pub async fn open(database_url: Option<&str>, data_dir: &Path) -> Result<Store> {
        match database_url {
            None => Store::open_sqlite(data_dir).await,
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Store::open_postgres(url).await
            }
            Some(url) => Err(StoreError::Url {
                url: redact(url),
                problem: "expected postgres://...; leave it unset for the embedded SQLite".into(),
            }),
        }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn backend(&self) -> &'static str {
        match self.db {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }

    async fn migrate(&self) -> Result<()> {
        schema::migrate(&self.db).await
    }

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
                q.push(" ON CONFLICT (tenant_id, dedupe_key) DO NOTHING RETURNING id, tenant_id, dedupe_key");
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
                    Some(id) => Appended::Stored(id),
                    None => Appended::Duplicate,
                },
            )
            .collect())
    }

    /// Events with an id above `after_id`, oldest first.
    pub async fn events_after(&self, after_id: i64, limit: i64) -> Result<Vec<StoredEvent>> {
        let rows: Vec<(i64, String, String, String, String, i64)> = with_db!(&self.db, pool => {
            sqlx::query_as(
                "SELECT id, tenant_id, entry_id, path, json, received_at_ms FROM events WHERE id > $1 ORDER BY id LIMIT $2",
            )
            .bind(after_id)
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        Ok(rows.into_iter().map(stored_event).collect())
    }

    /// Every event from id `from_id` on of the entries not planned yet, oldest first: what a
    /// processor folds again after a restart (`from_id` is the [`Store::recovery_mark`]).
    pub async fn unplanned_events(&self, from_id: i64) -> Result<Vec<StoredEvent>> {
        let rows: Vec<(i64, String, String, String, String, i64)> = with_db!(&self.db, pool => {
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
        Ok(rows.into_iter().map(stored_event).collect())
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

    pub async fn count_events(&self, tenant_id: &str) -> Result<i64> {
        Ok(with_db!(&self.db, pool => {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM events WHERE tenant_id = $1").bind(tenant_id).fetch_one(pool).await?
        }))
    }

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
                let inserted = sqlx::query(
                    "INSERT INTO entries (tenant_id, entry_id, completed_by, plan, planned_at_ms) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (tenant_id, entry_id) DO NOTHING",
                )
                .bind(&p.tenant_id)
                .bind(&p.entry_id)
                .bind(&p.completed_by)
                .bind(p.plan.to_string())
                .bind(now_ms)
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
        let rows: Vec<(String, String, String, String, i64)> = with_db!(&self.db, pool => {
            sqlx::query_as(
                "SELECT tenant_id, entry_id, completed_by, plan, planned_at_ms FROM entries WHERE tenant_id = $1 \
                 ORDER BY planned_at_ms DESC, entry_id DESC LIMIT $2 OFFSET $3",
            )
            .bind(tenant_id)
            .bind(limit)
            .bind(offset)
            .fetch_all(pool)
            .await?
        });
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let outbox = self.outbox_states(&row.0, &row.1).await?;
            out.push(stored_entry(row, outbox)?);
        }
        Ok(out)
    }

    pub async fn entry(&self, tenant_id: &str, entry_id: &str) -> Result<Option<StoredEntry>> {
        let row: Option<(String, String, String, String, i64)> = with_db!(&self.db, pool => {
            sqlx::query_as(
                "SELECT tenant_id, entry_id, completed_by, plan, planned_at_ms FROM entries WHERE tenant_id = $1 AND entry_id = $2",
            )
            .bind(tenant_id)
            .bind(entry_id)
            .fetch_optional(pool)
            .await?
        });
        match row {
            None => Ok(None),
            Some(row) => {
                let outbox = self.outbox_states(&row.0, &row.1).await?;
                Ok(Some(stored_entry(row, outbox)?))
            }
        }
    }

    pub async fn count_entries(&self, tenant_id: &str) -> Result<i64> {
        Ok(with_db!(&self.db, pool => {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM entries WHERE tenant_id = $1").bind(tenant_id).fetch_one(pool).await?
        }))
    }

    async fn outbox_states(
        &self,
        tenant_id: &str,
        entry_id: &str,
    ) -> Result<Vec<(String, String)>> {
        Ok(with_db!(&self.db, pool => {
            sqlx::query_as(
                "SELECT item_key, state FROM outbox WHERE tenant_id = $1 AND entry_id = $2 ORDER BY item_key",
            )
            .bind(tenant_id)
            .bind(entry_id)
            .fetch_all(pool)
            .await?
        }))
    }

    pub async fn upsert_tenant(&self, t: &TenantRow) -> Result<()> {
        let crm = t.crm.to_string();
        with_db!(&self.db, pool => {
            sqlx::query(
                "INSERT INTO tenants (id, mango_api_key, mango_api_salt, settings_toml, crm, updated_at_ms) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (id) DO UPDATE SET mango_api_key = excluded.mango_api_key, mango_api_salt = excluded.mango_api_salt, \
                 settings_toml = excluded.settings_toml, crm = excluded.crm, updated_at_ms = excluded.updated_at_ms",
            )
            .bind(&t.id)
            .bind(&t.mango_api_key)
            .bind(&t.mango_api_salt)
            .bind(&t.settings_toml)
            .bind(&crm)
            .bind(t.updated_at_ms)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    pub async fn tenants(&self) -> Result<Vec<TenantRow>> {
        let rows: Vec<(String, String, String, String, String, i64)> = with_db!(&self.db, pool => {
            sqlx::query_as("SELECT id, mango_api_key, mango_api_salt, settings_toml, crm, updated_at_ms FROM tenants ORDER BY id")
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(tenant_row).collect()
    }

    pub async fn tenant(&self, id: &str) -> Result<Option<TenantRow>> {
        let row: Option<(String, String, String, String, String, i64)> = with_db!(&self.db, pool => {
            sqlx::query_as("SELECT id, mango_api_key, mango_api_salt, settings_toml, crm, updated_at_ms FROM tenants WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        row.map(tenant_row).transpose()
    }

    pub async fn delete_tenant(&self, id: &str) -> Result<bool> {
        Ok(with_db!(&self.db, pool => {
            sqlx::query("DELETE FROM tenants WHERE id = $1").bind(id).execute(pool).await?.rows_affected() == 1
        }))
    }
}

/// SQLite's WAL checkpoints, twice a second, on the writer connection between two commits.
///
/// SQLite starts the WAL over from its beginning only when the writer begins a transaction with
/// every frame already copied back. A checkpoint on a connection of its own never got there under
/// steady load, since commits landed while it copied: at 2,000 events/s the WAL grew by about
/// 5,600 frames (22 MB) a second without end, each commit extending the file. Between two
/// commits a checkpoint copies everything (2-5 ms at 2,000 events/s, about 20 ms at 20,000, the
/// writer waiting meanwhile) and the next commit writes over the WAL from its start. Stops when
/// the store is dropped.
async fn checkpointer(writer: Weak<tokio::sync::Mutex<SqliteConnection>>) {
    let mut every = tokio::time::interval(Duration::from_millis(500));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    loop {
        every.tick().await;
        let Some(writer) = writer.upgrade() else {
            return;
        };
        let mut conn = writer.lock().await;
        // (busy, frames in the WAL, frames copied back); the WAL restarts only once all are.
        match sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(&mut *conn)
            .await
        {
            Ok((_, frames, copied)) if copied < frames => tracing::debug!(
                frames,
                copied,
                "WAL checkpoint held back by a reader; the next one continues"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed; retrying"),
        }
    }
}

fn stored_event(r: (i64, String, String, String, String, i64)) -> StoredEvent {
    StoredEvent {
        id: r.0,
        tenant_id: r.1,
        entry_id: r.2,
        path: r.3,
        json: r.4,
        received_at_ms: r.5,
    }
}

fn stored_entry(
    r: (String, String, String, String, i64),
    outbox: Vec<(String, String)>,
) -> Result<StoredEntry> {
    let plan = serde_json::from_str(&r.3)
        .map_err(|e| StoreError::Corrupt(format!("plan of {}: {e}", r.1)))?;
    Ok(StoredEntry {
        tenant_id: r.0,
        entry_id: r.1,
        completed_by: r.2,
        planned_at_ms: r.4,
        plan,
        outbox,
    })
}

fn tenant_row(r: (String, String, String, String, String, i64)) -> Result<TenantRow> {
    let crm = serde_json::from_str(&r.4)
        .map_err(|e| StoreError::Corrupt(format!("crm of tenant {}: {e}", r.0)))?;
    Ok(TenantRow {
        id: r.0,
        mango_api_key: r.1,
        mango_api_salt: r.2,
        settings_toml: r.3,
        crm,
        updated_at_ms: r.5,
    })
}

/// A database URL with its password hidden, for messages and logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}
