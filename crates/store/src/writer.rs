//! Writes and their health: SQLite's one writer connection (replaced after a failed write), the
//! outcome of the last write that `/readyz` reports, the probe write that turns it healthy again,
//! and the background WAL checkpointer.

use crate::{Result, Store};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::ConnectOptions;
use std::sync::Weak;
use std::time::Duration;

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
        let outcome: $crate::Result<_> = $crate::writer::write_outcome!($store, $conn => $body);
        $store.health.record(&outcome);
        outcome?
    }};
}
pub(crate) use with_writer;

/// [`with_writer!`] without recording the outcome in the store's health, for bookkeeping
/// writes too small to tell whether the store has room (the arrival counts rewrite rows in
/// place, so they succeed on a store too full for an append, and must not turn it green):
/// the outcome as a `Result`.
macro_rules! write_outcome {
    ($store:expr, $conn:ident => $body:expr) => {{
        match (&$store.db, &$store.writer) {
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
        }
    }};
}
pub(crate) use write_outcome;

/// SQLite's writer connection, opened again after a failed write (see `with_writer!`).
#[derive(Debug)]
pub(crate) struct Writer {
    pub(crate) conn: Option<SqliteConnection>,
    pub(crate) options: SqliteConnectOptions,
    /// Test seam: `PRAGMA max_page_count` applied to every writer connection opened, so a test
    /// can fill the database up as a full disk would.
    pub(crate) page_limit: Option<i64>,
    /// Checkpoints that copied every frame back, so the next commit starts the WAL over (a
    /// test's clock: see [`Store::wal_checkpoints`]).
    pub(crate) full_checkpoints: u64,
}

impl Writer {
    /// The open connection, opening a fresh one when the last was discarded.
    pub(crate) async fn connection(&mut self) -> Result<&mut SqliteConnection> {
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
    pub(crate) async fn discard(&mut self) {
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
    pub(crate) fn record<T>(&self, outcome: &Result<T>) {
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

impl Store {
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
pub(crate) async fn checkpointer(
    writer: Weak<tokio::sync::Mutex<Writer>>,
    health: Weak<WriteHealth>,
) {
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
