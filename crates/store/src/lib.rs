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
mod secrets;
mod settings_versions;
mod ui_auth;

pub use appender::{sink, Appender, Committed, Sink, SinkReceiver};
pub use outbox::{AddedItem, CrmStatus, Lane, OAuthState, OutboxCounts, OutboxItem};
pub use secrets::{KeyError, Keyring, SecretKey, Unlocked, CRM_SECRET_FIELDS};
pub use settings_versions::SettingsVersion;
pub use ui_auth::{SignInFailures, UiSession};

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
    #[error("secrets: {0}")]
    Secrets(String),
    #[error("the secret key (id {given}) is not the one the database's secrets are encrypted with (id {stored}); configure that key, or give it as a previous key to rotate to the new one")]
    WrongSecretKey { stored: String, given: String },
    #[error("the event log could not store the event: {0}")]
    AppendFailed(String),
    #[error("data folder {path}: {problem}")]
    DataDir { path: String, problem: String },
    #[error(
        "data folder lock {path} is held by {holder}: only one callbridge serve may use a SQLite \
         data folder; to run several instances, give them one PostgreSQL database (database_url)"
    )]
    Locked { path: String, holder: String },
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
///
/// The outcome is recorded in the store's [`WriteHealth`] (what `/readyz` reports). On SQLite a
/// failed body also replaces the writer connection: after a failed COMMIT (a full disk answers
/// SQLITE_FULL there) SQLite may or may not have rolled back, and sqlx's own count of open
/// transactions no longer matches the connection, so the next `begin` became a SAVEPOINT inside
/// a dead transaction and every later "commit" only released it: webhooks were acknowledged
/// that were never stored. Closing the connection rolls back whatever it held; the next write
/// opens a fresh one.
macro_rules! with_writer {
    ($store:expr, $conn:ident => $body:expr) => {{
        let outcome: $crate::Result<_> = match (&$store.db, &$store.writer) {
            ($crate::Db::Sqlite(_), Some(writer)) => {
                let mut guard = writer.lock().await;
                let outcome: $crate::Result<_> = async {
                    let $conn: &mut sqlx::SqliteConnection = guard.connection().await?;
                    Ok($body)
                }
                .await;
                if outcome.is_err() {
                    guard.discard().await;
                }
                outcome
            }
            ($crate::Db::Sqlite(pool), None) => {
                async {
                    let mut pooled = pool.acquire().await?;
                    let $conn: &mut sqlx::SqliteConnection = &mut *pooled;
                    Ok($body)
                }
                .await
            }
            ($crate::Db::Postgres(pool), _) => {
                async {
                    let mut pooled = pool.acquire().await?;
                    let $conn: &mut sqlx::PgConnection = &mut *pooled;
                    Ok($body)
                }
                .await
            }
        };
        $store.health.record(&outcome);
        outcome?
    }};
}
pub(crate) use with_writer;

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

/// A tenant as stored: one PBX account linked to one CRM account. Its `Debug` hides the salt and
/// the CRM section's secrets, so a logged or printed row shows none of them.
#[derive(Clone, PartialEq, Eq)]
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

impl std::fmt::Debug for TenantRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantRow")
            .field("id", &self.id)
            .field("mango_api_key", &self.mango_api_key)
            .field("mango_api_salt", &secrets::HIDDEN)
            .field("settings_toml", &self.settings_toml)
            .field("crm", &secrets::hide_crm_secrets(&self.crm))
            .field("updated_at_ms", &self.updated_at_ms)
            .finish()
    }
}

#[derive(Clone, Debug)]
pub struct Store {
    db: Db,
    /// SQLite only: the one connection every event-log and plan write goes through.
    writer: Option<Arc<tokio::sync::Mutex<Writer>>>,
    /// Whether the last write succeeded: what `/readyz` reports.
    health: Arc<WriteHealth>,
    /// The keys secrets at rest are sealed with, set by [`Store::unlock_secrets`].
    secrets: Arc<std::sync::OnceLock<Keyring>>,
}

/// SQLite's writer connection, opened again after a failed write (see `with_writer!`).
#[derive(Debug)]
pub(crate) struct Writer {
    conn: Option<SqliteConnection>,
    options: SqliteConnectOptions,
    /// Test seam: `PRAGMA max_page_count` applied to every writer connection opened, so a test
    /// can fill the database up as a full disk would.
    page_limit: Option<i64>,
    /// Checkpoints that copied every frame back, so the next commit starts the WAL over (a
    /// test's clock: see [`Store::wal_checkpoints`]).
    full_checkpoints: u64,
}

impl Writer {
    /// The open connection, opening a fresh one when the last was discarded.
    async fn connection(&mut self) -> Result<&mut SqliteConnection> {
        if self.conn.is_none() {
            let mut conn = self.options.connect().await?;
            if let Some(pages) = self.page_limit {
                sqlx::query(&format!("PRAGMA max_page_count = {pages}"))
                    .execute(&mut conn)
                    .await?;
            }
            self.conn = Some(conn);
        }
        Ok(self.conn.as_mut().expect("opened above"))
    }

    /// Closes the connection after a failed write: closing rolls back whatever transaction it
    /// still held, so nothing half-done lingers and sqlx's bookkeeping starts afresh.
    async fn discard(&mut self) {
        if let Some(conn) = self.conn.take() {
            if let Err(e) = sqlx::Connection::close(conn).await {
                tracing::warn!(error = %e, "closing the failed writer connection");
            }
        }
    }
}

/// The outcome of the store's last write. A failed write makes the store unhealthy until a later
/// write (a request's or the probe's) succeeds.
#[derive(Debug, Default)]
pub struct WriteHealth {
    failure: std::sync::Mutex<Option<String>>,
}

impl WriteHealth {
    fn record<T>(&self, outcome: &Result<T>) {
        let mut failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        match outcome {
            Ok(_) => {
                if failure.take().is_some() {
                    tracing::info!("the store writes again");
                    metrics::gauge!("callbridge_store_writable").set(1.0);
                }
            }
            Err(e) => {
                if failure.is_none() {
                    tracing::error!(error = %e, "the store cannot write; answering 503 until it can");
                    metrics::gauge!("callbridge_store_writable").set(0.0);
                }
                *failure = Some(e.to_string());
            }
        }
    }

    /// Why the last write failed; `None` while writes succeed.
    pub fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// The data folder's exclusive lock (`callbridge.lock`, holding the pid), held while the value
/// lives. One `serve` per SQLite data folder: two writers would split the event stream between
/// them and plan entries from half their events.
#[derive(Debug)]
pub struct DataDirLock {
    _file: std::fs::File,
    path: std::path::PathBuf,
}

impl DataDirLock {
    /// Takes the lock at once, or says which process holds it.
    pub fn acquire(data_dir: &Path) -> Result<DataDirLock> {
        use std::io::{Read, Seek, Write};
        prepare_data_dir(data_dir)?;
        let path = data_dir.join("callbridge.lock");
        let io_error = |e: std::io::Error| StoreError::DataDir {
            path: path.display().to_string(),
            problem: e.to_string(),
        };
        let mut options = std::fs::OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&path).map_err(io_error)?;
        restrict(&path, 0o600).map_err(io_error)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let holder = if holder.is_empty() {
                    "another process".to_string()
                } else {
                    format!("process {holder}")
                };
                return Err(StoreError::Locked {
                    path: path.display().to_string(),
                    holder,
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io_error(e)),
        }
        file.set_len(0).map_err(io_error)?;
        file.rewind().map_err(io_error)?;
        writeln!(file, "{}", std::process::id()).map_err(io_error)?;
        file.sync_all().map_err(io_error)?;
        Ok(DataDirLock { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Sets a file's or folder's permission bits (Unix; elsewhere nothing to do).
fn restrict(path: &Path, mode: u32) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
    }
    #[cfg(not(unix))]
    {
        let _ = (path, mode);
        Ok(())
    }
}

/// Creates the data folder if needed and makes it private (0700), also when it already
/// existed with wider rights: it holds the database with the tenants' keys and tokens.
fn prepare_data_dir(data_dir: &Path) -> Result<()> {
    let problem = |e: std::io::Error| StoreError::DataDir {
        path: data_dir.display().to_string(),
        problem: e.to_string(),
    };
    std::fs::create_dir_all(data_dir).map_err(problem)?;
    restrict(data_dir, 0o700).map_err(problem)
}

/// The database file exists and is private (0600) before SQLite opens it: SQLite creates the
/// `-wal` and `-shm` files with the database file's permissions. Files left by an older version
/// are made private as well.
fn prepare_database_files(db_path: &Path) -> Result<()> {
    let problem = |path: &Path, e: std::io::Error| StoreError::DataDir {
        path: path.display().to_string(),
        problem: e.to_string(),
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(db_path).map_err(|e| problem(db_path, e))?;
    for suffix in ["", "-wal", "-shm"] {
        let mut name = db_path.as_os_str().to_owned();
        name.push(suffix);
        let path = std::path::PathBuf::from(name);
        if path.exists() {
            restrict(&path, 0o600).map_err(|e| problem(&path, e))?;
        }
    }
    Ok(())
}

impl Store {
    /// Opens (creating if needed) the SQLite database `callbridge.db` in `data_dir`. The folder
    /// is made private (0700) and the database files 0600.
    pub async fn open_sqlite(data_dir: &Path) -> Result<Store> {
        prepare_data_dir(data_dir)?;
        let db_path = data_dir.join("callbridge.db");
        prepare_database_files(&db_path)?;
        let options = SqliteConnectOptions::new()
            .filename(&db_path)
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
        let writer = Writer {
            conn: Some(options.connect().await?),
            options,
            page_limit: None,
            full_checkpoints: 0,
        };
        let writer = Arc::new(tokio::sync::Mutex::new(writer));
        let store = Store {
            db: Db::Sqlite(pool),
            writer: Some(writer.clone()),
            secrets: Default::default(),
            health: Arc::default(),
        };
        store.migrate().await?;
        // The WAL and shared-memory files exist now (created 0600 after the database file);
        // made private again in case an older version left them wider.
        prepare_database_files(&db_path)?;
        tokio::spawn(checkpointer(
            Arc::downgrade(&writer),
            Arc::downgrade(&store.health),
        ));
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
            secrets: Default::default(),
            health: Arc::default(),
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

    /// Why the store cannot write, while it cannot: the last write (a request's, a plan's or the
    /// probe's) failed. `None` while writes succeed.
    pub fn write_failure(&self) -> Option<String> {
        self.health.failure()
    }

    /// Ready to write? While the last write failed, a probe write (a row of [`PROBE_BYTES`]
    /// written and removed in one durable transaction) decides, so readiness turns green as soon
    /// as the disk has room again, without waiting for traffic. The error is the probe's.
    pub async fn check_writable(&self) -> Result<()> {
        if self.health.failure().is_none() {
            return Ok(());
        }
        let filler = probe_filler();
        with_writer!(self, conn => {
            let mut tx = sqlx::Connection::begin(conn).await?;
            sqlx::query(PROBE_INSERT).bind(&filler).execute(&mut *tx).await?;
            sqlx::query(PROBE_DELETE).execute(&mut *tx).await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Test seam: limits the SQLite writer connection (this one and every one opened after a
    /// failure) to `pages` database pages, so writes fail with SQLITE_FULL as on a full disk;
    /// `None` lifts the limit. No effect on PostgreSQL.
    #[doc(hidden)]
    pub async fn set_writer_page_limit(&self, pages: Option<i64>) -> Result<()> {
        if let Some(writer) = &self.writer {
            let mut writer = writer.lock().await;
            writer.page_limit = pages;
            let conn = writer.connection().await?;
            // SQLite's own ceiling: the default when no limit is wanted.
            let pages = pages.unwrap_or(4_294_967_294);
            sqlx::query(&format!("PRAGMA max_page_count = {pages}"))
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }

    /// Test seam: how many background checkpoints have copied the whole WAL back (SQLite; 0 on
    /// PostgreSQL), so a test can wait for checkpoints instead of for time.
    #[doc(hidden)]
    pub async fn wal_checkpoints(&self) -> u64 {
        match &self.writer {
            Some(writer) => writer.lock().await.full_checkpoints,
            None => 0,
        }
    }

    /// Test seam: the database's size in pages, as the SQLite writer connection sees it.
    #[doc(hidden)]
    pub async fn writer_page_count(&self) -> Result<i64> {
        match &self.writer {
            Some(writer) => {
                let mut writer = writer.lock().await;
                let conn = writer.connection().await?;
                Ok(sqlx::query_scalar("PRAGMA page_count")
                    .fetch_one(&mut *conn)
                    .await?)
            }
            None => Ok(0),
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
        let rows: Vec<EntryRow> = with_db!(&self.db, pool => {
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
            let outbox = self.outbox_states(&row.tenant_id, &row.entry_id).await?;
            out.push(row.into_entry(outbox)?);
        }
        Ok(out)
    }

    pub async fn entry(&self, tenant_id: &str, entry_id: &str) -> Result<Option<StoredEntry>> {
        let row: Option<EntryRow> = with_db!(&self.db, pool => {
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
                let outbox = self.outbox_states(&row.tenant_id, &row.entry_id).await?;
                Ok(Some(row.into_entry(outbox)?))
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

    /// Stores a tenant, its salt and the CRM section's secrets sealed under the secret key.
    pub async fn upsert_tenant(&self, t: &TenantRow) -> Result<()> {
        let keyring = self.keyring()?;
        let salt = keyring.seal(&secrets::salt_place(&t.id), &t.mango_api_salt)?;
        let crm = keyring.seal_crm(&t.id, &t.crm)?.to_string();
        with_db!(&self.db, pool => {
            sqlx::query(
                "INSERT INTO tenants (id, mango_api_key, mango_api_salt, settings_toml, crm, updated_at_ms) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (id) DO UPDATE SET mango_api_key = excluded.mango_api_key, mango_api_salt = excluded.mango_api_salt, \
                 settings_toml = excluded.settings_toml, crm = excluded.crm, updated_at_ms = excluded.updated_at_ms",
            )
            .bind(&t.id)
            .bind(&t.mango_api_key)
            .bind(&salt)
            .bind(&t.settings_toml)
            .bind(&crm)
            .bind(t.updated_at_ms)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// The ids of the tenants the config file manages (see [`Store::mark_config_tenants`]).
    pub async fn config_tenant_ids(&self) -> Result<Vec<String>> {
        Ok(with_db!(&self.db, pool => {
            sqlx::query_scalar("SELECT id FROM tenants WHERE from_config = 1 ORDER BY id")
                .fetch_all(pool)
                .await?
        }))
    }

    /// Records that exactly `ids` are the config file's tenants: marks them, and unmarks any
    /// other (so a tenant is the file's only while the file names it). The admin API's upsert
    /// leaves the mark as it is.
    pub async fn mark_config_tenants(&self, ids: &[String]) -> Result<()> {
        with_db!(&self.db, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query("UPDATE tenants SET from_config = 0 WHERE from_config = 1")
                .execute(&mut *tx)
                .await?;
            for id in ids {
                sqlx::query("UPDATE tenants SET from_config = 1 WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    pub async fn tenants(&self) -> Result<Vec<TenantRow>> {
        let rows: Vec<SealedTenantRow> = with_db!(&self.db, pool => {
            sqlx::query_as("SELECT id, mango_api_key, mango_api_salt, settings_toml, crm, updated_at_ms FROM tenants ORDER BY id")
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(|r| self.tenant_row(r)).collect()
    }

    pub async fn tenant(&self, id: &str) -> Result<Option<TenantRow>> {
        let row: Option<SealedTenantRow> = with_db!(&self.db, pool => {
            sqlx::query_as("SELECT id, mango_api_key, mango_api_salt, settings_toml, crm, updated_at_ms FROM tenants WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        row.map(|r| self.tenant_row(r)).transpose()
    }

    /// A stored tenant with its secrets opened.
    fn tenant_row(&self, row: SealedTenantRow) -> Result<TenantRow> {
        let keyring = self.keyring()?;
        let crm = serde_json::from_str(&row.crm)
            .map_err(|e| StoreError::Corrupt(format!("crm of tenant {}: {e}", row.id)))?;
        Ok(TenantRow {
            mango_api_salt: keyring.open(&secrets::salt_place(&row.id), &row.mango_api_salt)?,
            crm: keyring.open_crm(&row.id, &crm)?,
            id: row.id,
            mango_api_key: row.mango_api_key,
            settings_toml: row.settings_toml,
            updated_at_ms: row.updated_at_ms,
        })
    }

    /// Deletes a tenant and everything kept for it, in one transaction: its events, planned
    /// entries, outbox, OAuth tokens, CRM status and delivery lease. A tenant created later with
    /// the same id starts empty. False when there was no such tenant.
    pub async fn delete_tenant(&self, id: &str) -> Result<bool> {
        Ok(self.purge_tenant(id).await?.is_some())
    }

    /// [`Store::delete_tenant`], telling the highest event id the tenant's log had (0: none), so
    /// a processor can drop the tenant's events it still holds; `None`: there was no such tenant.
    /// Rows left under the id by a deletion from before this rule are removed all the same.
    pub async fn purge_tenant(&self, id: &str) -> Result<Option<i64>> {
        let (existed, last_event) = with_writer!(self, conn => {
            let mut tx = sqlx::Connection::begin(conn).await?;
            let existed = sqlx::query("DELETE FROM tenants WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 1;
            let max: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM events WHERE tenant_id = $1")
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
            let last_event = max.unwrap_or(0);
            for table in ["events", "entries", "outbox", "crm_tokens", "crm_status", "delivery_leases", "settings_versions", "webhook_refusals"] {
                sqlx::query(&format!("DELETE FROM {table} WHERE tenant_id = $1"))
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            (existed, last_event)
        });
        Ok(existed.then_some(last_event))
    }
}

/// Bytes the write probe stores and removes: about the size of a busy group commit, so a disk
/// with room for the probe has room for webhooks again.
pub const PROBE_BYTES: usize = 32 * 1024;

const PROBE_INSERT: &str = "INSERT INTO write_probe (id, filler) VALUES (1, $1) \
     ON CONFLICT (id) DO UPDATE SET filler = excluded.filler";
const PROBE_DELETE: &str = "DELETE FROM write_probe WHERE id = 1";

fn probe_filler() -> String {
    "x".repeat(PROBE_BYTES)
}

/// SQLite's WAL checkpoints, twice a second, on the writer connection between two commits;
/// while the store cannot write, a probe write instead, so it turns healthy again by itself.
///
/// SQLite starts the WAL over from its beginning only when the writer begins a transaction with
/// every frame already copied back. A checkpoint on a connection of its own never got there under
/// steady load, since commits landed while it copied: at 2,000 events/s the WAL grew by about
/// 5,600 frames (22 MB) a second without end, each commit extending the file. Between two
/// commits a checkpoint copies everything (2-5 ms at 2,000 events/s, about 20 ms at 20,000, the
/// writer waiting meanwhile) and the next commit writes over the WAL from its start. Stops when
/// the store is dropped.
async fn checkpointer(writer: Weak<tokio::sync::Mutex<Writer>>, health: Weak<WriteHealth>) {
    let mut every = tokio::time::interval(Duration::from_millis(500));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    loop {
        every.tick().await;
        let (Some(writer), Some(health)) = (writer.upgrade(), health.upgrade()) else {
            return;
        };
        let mut writer = writer.lock().await;
        if health.failure().is_some() {
            let probed: Result<()> = async {
                let conn = writer.connection().await?;
                let mut tx = sqlx::Connection::begin(conn).await?;
                sqlx::query(PROBE_INSERT)
                    .bind(probe_filler())
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(PROBE_DELETE).execute(&mut *tx).await?;
                tx.commit().await?;
                Ok(())
            }
            .await;
            if probed.is_err() {
                writer.discard().await;
            }
            health.record(&probed);
            continue;
        }
        let conn = match writer.connection().await {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(error = %e, "opening the writer connection for a checkpoint");
                continue;
            }
        };
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
            Ok(_) => writer.full_checkpoints += 1,
            Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed; retrying"),
        }
    }
}

/// A row of `entries`, its plan still JSON text.
#[derive(sqlx::FromRow)]
struct EntryRow {
    tenant_id: String,
    entry_id: String,
    completed_by: String,
    plan: String,
    planned_at_ms: i64,
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
        })
    }
}

/// A row of `tenants`, its salt and CRM secrets still sealed.
#[derive(sqlx::FromRow)]
struct SealedTenantRow {
    id: String,
    mango_api_key: String,
    mango_api_salt: String,
    settings_toml: String,
    crm: String,
    updated_at_ms: i64,
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

#[cfg(test)]
mod tests {
    use super::TenantRow;

    #[test]
    fn a_tenant_rows_debug_shows_no_secret() {
        let row = TenantRow {
            id: "acme".into(),
            mango_api_key: "key-acme".into(),
            mango_api_salt: "salt-Q7w9Zk2mXv4Lp8Rt".into(),
            settings_toml: "plan = \"basic\"\n".into(),
            crm: serde_json::json!({
                "base_url": "https://acme.amocrm.ru",
                "long_lived_token": "longlived-Hx3Nc8Pq1Wz6Ty0",
                "client_id": "cb-client",
                "client_secret": "secret-Bv5Kd2Js9Fm4Ga7",
            }),
            updated_at_ms: 1,
        };
        for shown in [format!("{row:?}"), format!("{row:#?}")] {
            for secret in [
                "salt-Q7w9Zk2mXv4Lp8Rt",
                "longlived-Hx3Nc8Pq1Wz6Ty0",
                "secret-Bv5Kd2Js9Fm4Ga7",
            ] {
                assert!(!shown.contains(secret), "{secret} shown in {shown}");
            }
            // What is not secret is still there to read.
            for visible in ["acme", "key-acme", "https://acme.amocrm.ru", "cb-client"] {
                assert!(shown.contains(visible), "{visible} missing from {shown}");
            }
        }
    }
}
