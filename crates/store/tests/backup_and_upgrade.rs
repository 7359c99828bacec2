//! The SQLite online backup taken while writes go on (every event acknowledged before it began is
//! in the copy, and the copy opens as a store), and a store newer than the binary refused at start
//! on SQLite and PostgreSQL.

use callbridge_store::{backup_sqlite, Appender, Db, NewEvent, Store, StoreError};
use callbridge_test_support::fresh_postgres_database;
use std::path::PathBuf;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("callbridge-backup-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn event(n: usize) -> NewEvent {
    NewEvent {
        tenant_id: "t".into(),
        entry_id: format!("e{n}"),
        path: "events/call".into(),
        dedupe_key: format!("{n:012}:call:l{n}:1:Appeared"),
        json: format!("{{\"n\":{n}}}"),
        received_at_ms: 1_000,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_online_backup_of_a_live_store_holds_every_acknowledged_event_and_opens() {
    let live = temp_dir("live");
    let store = Store::open_sqlite(&live).await.unwrap();
    let appender = Appender::spawn(store.clone(), 64);
    for n in 0..300 {
        appender.append(event(n)).await.unwrap();
    }
    // Writes go on while the backup runs: the WAL holds uncheckpointed pages.
    let writing = {
        let appender = appender.clone();
        tokio::spawn(async move {
            for n in 300..1_300 {
                appender.append(event(n)).await.unwrap();
            }
        })
    };
    let copy_dir = temp_dir("copy");
    std::fs::create_dir_all(&copy_dir).unwrap();
    let to = copy_dir.join("callbridge.db");
    let report = backup_sqlite(&live, &to).await.expect("backup");
    assert_eq!(report.path, to);
    assert!(report.bytes > 0 && report.schema_version > 0, "{report:?}");
    writing.await.unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&to).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the backup is private");
    }
    // No temporary file left beside it.
    let names: Vec<_> = std::fs::read_dir(&copy_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["callbridge.db"], "{names:?}");

    let restored = Store::open_sqlite(&copy_dir).await.expect("the copy opens");
    // The log's rows themselves: the per-tenant counts (`tenant_arrivals`) are written a
    // second behind the log, so a copy's may fall short by the last second's arrivals.
    let Db::Sqlite(copy_pool) = restored.db() else {
        panic!("the copy is SQLite")
    };
    let in_copy: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events WHERE tenant_id = 't'")
        .fetch_one(copy_pool)
        .await
        .unwrap();
    assert!(
        (300..=1_300).contains(&in_copy),
        "the copy has the 300 events acknowledged before it began, and at most the rest: {in_copy}"
    );
    assert_eq!(store.count_events("t").await.unwrap(), 1_300);

    // Never over an existing file, and a folder with no database is named.
    let again = backup_sqlite(&live, &to).await.unwrap_err().to_string();
    assert!(again.contains("already exists"), "{again}");
    let empty = temp_dir("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let none = backup_sqlite(&empty, &empty.join("b.db"))
        .await
        .unwrap_err()
        .to_string();
    assert!(none.contains("no callbridge database"), "{none}");
    for dir in [live, copy_dir, empty] {
        std::fs::remove_dir_all(dir).unwrap();
    }
}

async fn mark_newer(store: &Store) {
    let sql = "INSERT INTO schema_migrations (version, name) VALUES (9999, 'from the future')";
    match store.db() {
        Db::Sqlite(pool) => sqlx::query(sql).execute(pool).await.map(drop).unwrap(),
        Db::Postgres(pool) => sqlx::query(sql).execute(pool).await.map(drop).unwrap(),
    }
}

fn assert_newer_refused(result: Result<Store, StoreError>) {
    match result {
        Err(e @ StoreError::NewerSchema { stored: 9999, .. }) => {
            let said = e.to_string();
            assert!(said.contains("newer than this callbridge"), "{said}");
            assert!(said.contains("backup"), "{said}");
        }
        Err(other) => panic!("refused for another reason: {other}"),
        Ok(_) => panic!("a store from a newer release was opened"),
    }
}

#[tokio::test]
async fn a_sqlite_store_from_a_newer_release_is_refused() {
    let dir = temp_dir("newer");
    let store = Store::open_sqlite(&dir).await.unwrap();
    mark_newer(&store).await;
    drop(store);
    assert_newer_refused(Store::open_sqlite(&dir).await);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_postgres_store_from_a_newer_release_is_refused() {
    let url = fresh_postgres_database("newer_schema");
    let store = Store::open_postgres(&url).await.unwrap();
    mark_newer(&store).await;
    drop(store);
    assert_newer_refused(Store::open_postgres(&url).await);
}
