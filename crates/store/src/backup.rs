//! An online backup of the SQLite store: `VACUUM INTO` reads one consistent snapshot of the
//! database (WAL included) inside a read transaction, while the service goes on writing, and
//! writes it as a single compact file. A file copy of `callbridge.db` would miss what is still in
//! the WAL, or catch a checkpoint half-way. PostgreSQL is backed up with its own tools (pg_dump).

use crate::{Result, StoreError};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What a finished backup wrote.
#[derive(Debug, Clone)]
pub struct BackupReport {
    pub path: PathBuf,
    pub bytes: u64,
    /// The newest migration in the copy: the release it needs at least.
    pub schema_version: i64,
}

/// Backs the SQLite store in `data_dir` up to `to`, a file that must not exist yet. Written under
/// a temporary name beside `to` and renamed when complete, so `to` is never half a backup; the
/// file is private (0600) like the database. Safe while `serve` runs.
pub async fn backup_sqlite(data_dir: &Path, to: &Path) -> Result<BackupReport> {
    let db_path = data_dir.join("callbridge.db");
    if !db_path.is_file() {
        return Err(StoreError::Backup(format!(
            "{}: no callbridge database here (give the service's data folder)",
            data_dir.display()
        )));
    }
    if to.exists() {
        return Err(StoreError::Backup(format!(
            "{}: already exists; give a new file name (a backup never overwrites)",
            to.display()
        )));
    }
    let partial = to.with_file_name(format!(
        ".{}.partial",
        to.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "backup".into())
    ));
    let _ = std::fs::remove_file(&partial);
    // Read-only: the backup never migrates or otherwise changes the live store.
    let mut conn = SqliteConnectOptions::new()
        .filename(&db_path)
        .read_only(true)
        .busy_timeout(Duration::from_secs(30))
        .connect()
        .await?;
    let schema_version: Option<i64> =
        sqlx::query_scalar("SELECT MAX(version) FROM schema_migrations")
            .fetch_one(&mut conn)
            .await
            .map_err(|e| {
                StoreError::Backup(format!(
                    "{}: not a callbridge database ({e})",
                    db_path.display()
                ))
            })?;
    let target = partial
        .to_str()
        .ok_or_else(|| StoreError::Backup(format!("{}: the path is not UTF-8", to.display())))?;
    let vacuumed = sqlx::query("VACUUM INTO ?1")
        .bind(target)
        .execute(&mut conn)
        .await;
    conn.close().await?;
    if let Err(e) = vacuumed {
        let _ = std::fs::remove_file(&partial);
        return Err(StoreError::Backup(format!("writing {}: {e}", to.display())));
    }
    let finish = || -> std::io::Result<u64> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o600))?;
        }
        std::fs::File::open(&partial)?.sync_all()?;
        std::fs::rename(&partial, to)?;
        Ok(std::fs::metadata(to)?.len())
    };
    let bytes = finish().map_err(|e| {
        let _ = std::fs::remove_file(&partial);
        StoreError::Backup(format!("finishing {}: {e}", to.display()))
    })?;
    Ok(BackupReport {
        path: to.to_path_buf(),
        bytes,
        schema_version: schema_version.unwrap_or(0),
    })
}
