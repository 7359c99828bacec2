//! Opening the database: SQLite in the data folder (with its writer connection and
//! checkpointer) or PostgreSQL, and running the same SQL on either.

use crate::arrivals::arrival_flusher;
use crate::data_dir::{prepare_data_dir, prepare_database_files};
use crate::writer::checkpointer;
use crate::{schema, Result, Store, StoreError, WeakStore, Writer};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::ConnectOptions;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

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
            arrivals: Arc::default(),
        };
        store.migrate().await?;
        // The WAL and shared-memory files exist now (created 0600 after the database file);
        // made private again in case an older version left them wider.
        prepare_database_files(&db_path)?;
        tokio::spawn(checkpointer(
            Arc::downgrade(&writer),
            Arc::downgrade(&store.health),
        ));
        tokio::spawn(arrival_flusher(WeakStore::of(&store)));
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
            arrivals: Arc::default(),
        };
        store.migrate().await?;
        tokio::spawn(arrival_flusher(WeakStore::of(&store)));
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
