//! The data folder: its exclusive lock, and private permissions on it and the database files.

use crate::{Result, StoreError};
use std::path::Path;

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
pub(crate) fn prepare_data_dir(data_dir: &Path) -> Result<()> {
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
///
/// An existing database file is never opened here, only changed by path (chmod): closing any
/// descriptor of the file drops every POSIX lock this process holds on it, SQLite's included.
/// Without its shared lock a WAL connection looks absent to other processes, so the last
/// connection of another process on the database (`callbridge admin set-password` beside a
/// running `serve`) checkpointed and removed the WAL under the running service, whose reads then
/// failed with "disk I/O error" (SQLITE_IOERR_SHORT_READ).
pub(crate) fn prepare_database_files(db_path: &Path) -> Result<()> {
    let problem = |path: &Path, e: std::io::Error| StoreError::DataDir {
        path: path.display().to_string(),
        problem: e.to_string(),
    };
    if !db_path.exists() {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        options.open(db_path).map_err(|e| problem(db_path, e))?;
    }
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
