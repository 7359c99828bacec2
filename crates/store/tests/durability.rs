//! A full store: no append is reported stored that is not in the log, readiness turns red with
//! the reason and green again by itself, and the writer recovers without reopening the store.
//! Also the data folder's lock and the files' permissions.
//!
//! Two ways to fill the store: SQLite's `max_page_count` on the writer connection (the store's
//! test seam), and a real filesystem running out of space (a small tmpfs; needs root, which
//! these tests have here and in CI; a refused mount fails the test saying why).

use callbridge_store::{Appended, Appender, DataDirLock, NewEvent, Store, StoreError};
use callbridge_test_support::{fresh_postgres_database, Tmpfs};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "callbridge-durability-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// An event with a payload of about `bytes`, unique by `n`.
fn event(n: usize, bytes: usize) -> NewEvent {
    NewEvent {
        tenant_id: "t".into(),
        entry_id: format!("e{n}"),
        path: "events/call".into(),
        dedupe_key: format!("{n:012}:call:l{n}:1:Appeared"),
        json: format!("{{\"n\":{n},\"pad\":\"{}\"}}", "p".repeat(bytes)),
        received_at_ms: 1_000,
    }
}

/// Appends events `from..to`, `concurrency` at a time through the group-committing appender;
/// returns the numbers reported stored and the errors seen.
async fn append_range(
    appender: &Appender,
    from: usize,
    to: usize,
    bytes: usize,
    concurrency: usize,
) -> (Vec<usize>, Vec<String>) {
    let mut stored = Vec::new();
    let mut errors = Vec::new();
    let mut n = from;
    while n < to {
        let mut round = Vec::new();
        for i in n..(n + concurrency).min(to) {
            let appender = appender.clone();
            round.push(tokio::spawn(async move {
                (i, appender.append(event(i, bytes)).await)
            }));
        }
        n += concurrency;
        for task in round {
            let (i, result) = task.await.unwrap();
            match result {
                Ok(Appended::Stored(_)) => stored.push(i),
                Ok(Appended::Duplicate) => panic!("event {i} is new, not a duplicate"),
                Err(e) => {
                    assert!(
                        matches!(e, StoreError::AppendFailed(_)),
                        "an append error says the event was not stored: {e:?}"
                    );
                    errors.push(e.to_string());
                }
            }
        }
    }
    (stored, errors)
}

/// The event numbers in the log.
async fn logged(store: &Store) -> HashSet<usize> {
    let events = store.events_after(0, 1_000_000).await.unwrap();
    events
        .iter()
        .map(|e| e.entry_id[1..].parse::<usize>().unwrap())
        .collect()
}

/// Waits up to 10 s for the store to report itself writable again without any append.
async fn wait_writable(store: &Store) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.write_failure().is_some() {
        assert!(
            Instant::now() < deadline,
            "the store never turned healthy again: {:?}",
            store.write_failure()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    store.check_writable().await.expect("writable once healthy");
}

#[tokio::test]
async fn a_store_at_its_page_limit_refuses_appends_and_recovers_without_reopening() {
    let dir = temp_dir("page-limit");
    let store = Store::open_sqlite(&dir).await.unwrap();
    let appender = Appender::spawn(store.clone(), 64);
    let (before, errors) = append_range(&appender, 0, 50, 500, 10).await;
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(before.len(), 50);
    store.check_writable().await.expect("writable again");

    let pages = store.writer_page_count().await.unwrap();
    store.set_writer_page_limit(Some(pages + 4)).await.unwrap();
    let (during, errors) = append_range(&appender, 50, 1_050, 2_000, 25).await;
    assert!(!errors.is_empty(), "the page limit was never reached");
    assert!(
        errors[0].contains("full"),
        "the error names the cause: {}",
        errors[0]
    );
    // Red, with the reason, and still red when asked again (the probe cannot write either).
    let reason = store
        .write_failure()
        .expect("unhealthy after failed appends");
    assert!(reason.contains("full"), "{reason}");
    let probe = store
        .check_writable()
        .await
        .expect_err("still full")
        .to_string();
    assert!(probe.contains("full"), "{probe}");
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert!(
        store.write_failure().is_some(),
        "the background probe must not turn a full store green"
    );

    // Room again: green by itself (the background probe), and appends work on the same store.
    store.set_writer_page_limit(None).await.unwrap();
    wait_writable(&store).await;
    let (after, errors) = append_range(&appender, 1_050, 1_150, 500, 10).await;
    assert!(errors.is_empty(), "appends after recovery: {errors:?}");
    assert_eq!(after.len(), 100);

    let acknowledged: Vec<usize> = before
        .iter()
        .chain(&during)
        .chain(&after)
        .copied()
        .collect();
    drop(appender);
    drop(store);
    let reopened = Store::open_sqlite(&dir).await.unwrap();
    let log = logged(&reopened).await;
    let missing: Vec<_> = acknowledged.iter().filter(|n| !log.contains(n)).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not in the log: {missing:?}"
    );
    // And nothing refused slipped in: the log holds exactly what was acknowledged.
    assert_eq!(log.len(), acknowledged.len());
}

#[tokio::test]
async fn a_full_filesystem_loses_no_acknowledged_event_and_the_writer_recovers() {
    let mount = temp_dir("tmpfs");
    let fs = Tmpfs::mount(&mount, "1m");
    let dir = mount.join("data");
    let store = Store::open_sqlite(&dir).await.unwrap();
    let appender = Appender::spawn(store.clone(), 64);
    let mut acknowledged = Vec::new();
    let mut refused = 0;
    let mut next = 0;
    let mut refused_rounds = 0;
    // Until the filesystem is full: three rounds in a row wholly refused.
    while next < 20_000 && refused_rounds < 3 {
        let (stored, errors) = append_range(&appender, next, next + 50, 1_000, 50).await;
        next += 50;
        acknowledged.extend(stored);
        refused += errors.len();
        if errors.len() == 50 {
            refused_rounds += 1;
        } else {
            refused_rounds = 0;
        }
    }
    assert!(refused > 0, "the 1 MB filesystem never filled up");
    assert_eq!(
        refused_rounds,
        3,
        "appends went on being acknowledged on a full 1 MB filesystem ({} of them)",
        acknowledged.len()
    );
    let reason = store.write_failure().expect("unhealthy on a full disk");
    assert!(reason.contains("full"), "{reason}");

    fs.resize("16m");
    wait_writable(&store).await;
    let (stored, errors) = append_range(&appender, next, next + 200, 1_000, 50).await;
    assert!(errors.is_empty(), "after the disk grew: {errors:?}");
    acknowledged.extend(stored);

    drop(appender);
    drop(store);
    let reopened = Store::open_sqlite(&dir).await.unwrap();
    let log = logged(&reopened).await;
    let missing: Vec<_> = acknowledged.iter().filter(|n| !log.contains(n)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged events are not in the log: {:?}",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
    drop(reopened);
    drop(fs);
}

#[tokio::test]
async fn a_second_holder_of_the_data_folder_is_refused_naming_the_first() {
    let dir = temp_dir("lock");
    let first = DataDirLock::acquire(&dir).unwrap();
    let second = DataDirLock::acquire(&dir).expect_err("the folder is taken");
    let message = second.to_string();
    assert!(
        message.contains(&format!("process {}", std::process::id())),
        "{message}"
    );
    assert!(message.contains("PostgreSQL"), "{message}");
    drop(first);
    DataDirLock::acquire(&dir).expect("free again once the first is gone");
}

#[cfg(unix)]
#[tokio::test]
async fn the_data_folder_and_database_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir("modes");
    // An existing folder with wide rights, as older versions left it.
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let _lock = DataDirLock::acquire(&dir).unwrap();
    let store = Store::open_sqlite(&dir).await.unwrap();
    store.append_events(&[event(1, 10)]).await.unwrap();
    let mode = |name: &str| {
        std::fs::metadata(dir.join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    for name in [
        "callbridge.db",
        "callbridge.db-wal",
        "callbridge.db-shm",
        "callbridge.lock",
    ] {
        assert_eq!(mode(name), 0o600, "{name}");
    }
}

/// SQLite in WAL mode keeps a shared POSIX lock on the database file while a connection is open;
/// another process's last connection takes the exclusive lock to learn that it is the last one,
/// then checkpoints and deletes the WAL. POSIX locks belong to the process and all of them on a
/// file go when any descriptor of that file is closed, so opening the store must not open and
/// close the database file behind SQLite's back: once it did (making the files private), and
/// `callbridge admin set-password` beside a running `serve` deleted the WAL under it (its reads
/// then failed with "disk I/O error").
#[cfg(target_os = "linux")]
#[tokio::test]
async fn an_open_store_keeps_sqlites_lock_on_the_database_file() {
    use std::os::unix::fs::MetadataExt;
    let dir = temp_dir("posix-lock");
    // Twice: creating the database, and opening the one that exists (the second process's case).
    for round in ["new", "existing"] {
        let store = Store::open_sqlite(&dir).await.unwrap();
        store.append_events(&[event(1, 10)]).await.unwrap();
        assert_eq!(store.events_after(0, 10).await.unwrap().len(), 1, "{round}");
        let inode = std::fs::metadata(dir.join("callbridge.db")).unwrap().ino();
        let pid = std::process::id().to_string();
        let locks = std::fs::read_to_string("/proc/locks").unwrap();
        let held = locks.lines().any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.get(1) == Some(&"POSIX")
                && fields.get(4) == Some(&pid.as_str())
                && fields
                    .get(5)
                    .and_then(|f| f.rsplit(':').next())
                    .is_some_and(|i| i == inode.to_string())
        });
        assert!(
            held,
            "{round}: no POSIX lock of this process on the database file:\n{locks}"
        );
        drop(store);
    }
}

/// PostgreSQL: a failed append reaches the caller as an error (the webhook answers 503), makes
/// the store unhealthy with the reason, and a probe write turns it healthy again. Needs
/// `CALLBRIDGE_TEST_POSTGRES_URL`, as the other PostgreSQL store tests.
#[tokio::test]
async fn a_failed_append_on_postgres_is_an_error_and_marks_the_store_unhealthy() {
    let url = fresh_postgres_database("durability");
    let store = Store::open(Some(&url), Path::new(".")).await.unwrap();
    let callbridge_store::Db::Postgres(pool) = store.db() else {
        panic!("a PostgreSQL store");
    };
    // The database refuses one entry's events, as it would refuse a write on a full disk.
    sqlx::query("ALTER TABLE events ADD CONSTRAINT refuse_one CHECK (entry_id <> 'e7')")
        .execute(pool)
        .await
        .unwrap();
    let appender = Appender::spawn(store.clone(), 64);
    let refused = appender.append(event(7, 10)).await;
    assert!(
        matches!(refused, Err(StoreError::AppendFailed(_))),
        "{refused:?}"
    );
    let reason = store
        .write_failure()
        .expect("unhealthy after a failed append");
    assert!(reason.contains("refuse_one"), "{reason}");
    // The probe writes elsewhere and succeeds: healthy again without an append.
    store.check_writable().await.expect("writable again");
    assert_eq!(store.write_failure(), None);
    assert!(matches!(
        appender.append(event(8, 10)).await,
        Ok(Appended::Stored(_))
    ));
    assert_eq!(logged(&store).await, HashSet::from([8]));
}
