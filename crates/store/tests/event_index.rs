//! The event log's unique index led by the event's key (migration 14) and what took over the
//! reads the tenant-led index used to answer: per-tenant arrival counts, written by each store
//! once a second. On SQLite and PostgreSQL.

use callbridge_store::{Appended, Db, NewEvent, Store};
use callbridge_test_support::wait_until_async;
use std::time::Duration;
use support::{places, Place};

mod support;

fn event(tenant: &str, key: &str, path: &str, received_at_ms: i64) -> NewEvent {
    NewEvent {
        tenant_id: tenant.into(),
        entry_id: format!("entry-{key}"),
        path: path.into(),
        dedupe_key: key.into(),
        json: "{}".into(),
        received_at_ms,
    }
}

/// Runs the statements in order on one connection (a schema change on one pooled SQLite
/// connection is not always seen at once by the next).
macro_rules! on_one_connection {
    ($pool:expr, $statements:expr) => {{
        let mut conn = $pool.acquire().await.unwrap();
        for sql in $statements {
            sqlx::query(sql)
                .execute(&mut *conn)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
    }};
}

async fn run(store: &Store, statements: &[&str]) {
    match store.db() {
        Db::Sqlite(pool) => on_one_connection!(pool, statements),
        Db::Postgres(pool) => on_one_connection!(pool, statements),
    }
}

async fn texts(store: &Store, sql: &str) -> Vec<String> {
    match store.db() {
        Db::Sqlite(pool) => sqlx::query_scalar(sql).fetch_all(pool).await,
        Db::Postgres(pool) => sqlx::query_scalar(sql).fetch_all(pool).await,
    }
    .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// The definitions of the events table's unique constraints, as the engine reports them.
async fn unique_definitions(store: &Store) -> String {
    match store.db() {
        Db::Sqlite(_) => texts(
            store,
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'events'",
        )
        .await
        .join("\n"),
        Db::Postgres(_) => texts(
            store,
            "SELECT indexdef FROM pg_indexes WHERE tablename = 'events' ORDER BY indexname",
        )
        .await
        .join("\n"),
    }
}

/// Back to the schema before migration 14: the tenant-led unique index, no arrival counts.
async fn undo_migration_14(store: &Store) {
    match store.db() {
        Db::Sqlite(_) => {
            run(
                store,
                &[
                    "CREATE TABLE events_old (id INTEGER PRIMARY KEY AUTOINCREMENT, tenant_id TEXT NOT NULL, \
                     entry_id TEXT NOT NULL, path TEXT NOT NULL, dedupe_key TEXT NOT NULL, json TEXT NOT NULL, \
                     received_at_ms BIGINT NOT NULL, UNIQUE (tenant_id, dedupe_key))",
                    "INSERT INTO events_old SELECT * FROM events",
                    "DROP TABLE events",
                    "ALTER TABLE events_old RENAME TO events",
                ],
            )
            .await
        }
        Db::Postgres(_) => {
            run(
                store,
                &[
                    "ALTER TABLE events ADD CONSTRAINT events_tenant_id_dedupe_key_key UNIQUE (tenant_id, dedupe_key)",
                    "ALTER TABLE events DROP CONSTRAINT events_key_tenant",
                ],
            )
            .await
        }
    }
    run(
        store,
        &[
            "DROP TABLE tenant_arrivals",
            "DELETE FROM schema_migrations WHERE version = 14",
        ],
    )
    .await;
}

#[tokio::test]
async fn migration_14_leads_the_unique_index_with_the_key_and_keeps_every_event_and_id() {
    for place in places("key_first_migration") {
        let store = place.open_unlocked().await;
        let b = store.backend();
        assert!(
            unique_definitions(&store)
                .await
                .contains("(dedupe_key, tenant_id)"),
            "{b}: a fresh store has the key-led index"
        );
        undo_migration_14(&store).await;
        let before = unique_definitions(&store).await;
        assert!(before.contains("(tenant_id, dedupe_key)"), "{b}: {before}");
        assert!(!before.contains("(dedupe_key, tenant_id)"), "{b}: {before}");
        // Events written by the old schema, straight into the table (no tallies in memory).
        run(
            &store,
            &[
                "INSERT INTO events (tenant_id, entry_id, path, dedupe_key, json, received_at_ms) VALUES \
                 ('a', 'e1', 'events/call', '001764000001:call:e1', '{}', 5000), \
                 ('a', 'e1', 'events/summary', '001764000009:summary:e1', '{}', 9000), \
                 ('a', 'e0', 'events/call', '001764000000:call:e0', '{}', 7000), \
                 ('b', 'e1', 'events/call', '001764000001:call:e1', '{}', 6000), \
                 ('b', 'e2', 'events/call', '001764000002:call:e2', '{}', 8000)",
                // The highest id is deleted: it is not handed out again after the rebuild.
                "DELETE FROM events WHERE path = 'events/call' AND tenant_id = 'b' AND entry_id = 'e2'",
            ],
        )
        .await;
        let ids_before = texts(
            &store,
            "SELECT CAST(id AS TEXT) || ':' || tenant_id || ':' || dedupe_key FROM events ORDER BY id",
        )
        .await;
        assert_eq!(ids_before.len(), 4, "{b}");
        drop(store);

        let store = place.open_unlocked().await;
        let after = unique_definitions(&store).await;
        assert!(after.contains("(dedupe_key, tenant_id)"), "{b}: {after}");
        assert!(!after.contains("(tenant_id, dedupe_key)"), "{b}: {after}");
        let ids_after = texts(
            &store,
            "SELECT CAST(id AS TEXT) || ':' || tenant_id || ':' || dedupe_key FROM events ORDER BY id",
        )
        .await;
        assert_eq!(ids_after, ids_before, "{b}: every event kept with its id");
        // The counts and the newest arrival were filled from the log.
        assert_eq!(store.count_events("a").await.unwrap(), 3, "{b}");
        assert_eq!(store.count_events("b").await.unwrap(), 1, "{b}");
        let last = store.last_received_event("a").await.unwrap().unwrap();
        assert_eq!(
            (last.path.as_str(), last.received_at_ms),
            ("events/summary", 9000),
            "{b}"
        );
        // Deduplication holds per tenant under the new index.
        let again = store
            .append_events(&[
                event("a", "001764000001:call:e1", "events/call", 10_000),
                event("c", "001764000001:call:e1", "events/call", 10_000),
            ])
            .await
            .unwrap();
        assert_eq!(again[0], Appended::Duplicate, "{b}");
        let Appended::Stored(new_id) = again[1] else {
            panic!("{b}: another tenant's equal key is another event: {again:?}")
        };
        assert!(
            new_id > 5,
            "{b}: the deleted id 5 is not reused (got {new_id})"
        );
        assert_eq!(store.count_events("c").await.unwrap(), 1, "{b}");
        // Reconciliation's window still finds the tenant's entries of a period, and only its.
        let seen = store
            .entries_seen_between("a", 1_764_000_000, 1_764_000_005)
            .await
            .unwrap();
        assert_eq!(seen.len(), 2, "{b}: {seen:?}");
        assert_eq!(
            seen.get("e1"),
            Some(&false),
            "{b}: the summary is after the window"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arrival_counts_reach_the_table_within_seconds_and_survive_a_restart() {
    for place in places("arrival_counts") {
        let store = place.open_unlocked().await;
        let b = store.backend();
        let results = store
            .append_events(&[
                event("t", "001764000001:call:x", "events/call", 1_000),
                event("t", "001764000002:summary:x", "events/summary", 3_000),
                event("t", "001764000001:call:x", "events/call", 4_000),
            ])
            .await
            .unwrap();
        assert_eq!(results[2], Appended::Duplicate, "{b}");
        // Read at once from this store's own tallies, before any write.
        assert_eq!(store.count_events("t").await.unwrap(), 2, "{b}");
        assert_eq!(
            store
                .last_received_event("t")
                .await
                .unwrap()
                .map(|l| l.path),
            Some("events/summary".to_string()),
            "{b}"
        );

        if let Place::Postgres(_) = place {
            // Another instance on the database sees them once the background write ran.
            let other = place.open_unlocked().await;
            wait_until_async(
                "the other instance sees the arrivals",
                Duration::from_secs(10),
                || async { (other.count_events("t").await.unwrap() == 2).then_some(()) },
            )
            .await;
            let last = other.last_received_event("t").await.unwrap().unwrap();
            assert_eq!(
                (last.path.as_str(), last.received_at_ms),
                ("events/summary", 3_000)
            );
        }
        // Written with the next event's tally added to the row, never in place of it.
        store
            .append_events(&[event("t", "001764000005:call:y", "events/call", 2_000)])
            .await
            .unwrap();
        store.flush_arrivals().await.unwrap();
        drop(store);
        let store = place.open_unlocked().await;
        assert_eq!(store.count_events("t").await.unwrap(), 3, "{b}");
        let last = store.last_received_event("t").await.unwrap().unwrap();
        assert_eq!(
            (last.path.as_str(), last.received_at_ms),
            ("events/summary", 3_000),
            "{b}: an event that arrived earlier does not replace the newest"
        );

        // Deleted with the tenant: what is written and what is still in memory.
        store
            .append_events(&[event("t", "001764000006:call:z", "events/call", 5_000)])
            .await
            .unwrap();
        store.delete_tenant("t").await.unwrap();
        assert_eq!(store.count_events("t").await.unwrap(), 0, "{b}");
        store.flush_arrivals().await.unwrap();
        assert_eq!(store.count_events("t").await.unwrap(), 0, "{b}");
        assert_eq!(store.last_received_event("t").await.unwrap(), None, "{b}");
    }
}
