//! The call journal's reads (issue 19), on SQLite and on the PostgreSQL named by
//! `CALLBRIDGE_TEST_POSTGRES_URL`: each filter, the events of an entry by its id range, the
//! outbox of an entry by its key range, and migration 10 filling the columns of older rows.

use callbridge_store::{
    Appended, Db, DeliveryFilter, JournalFilter, NewEvent, NewOutboxItem, NewPlan, Store,
};
use serde_json::{json, Value};
use support::{places, stores};

mod support;

/// A plan in the `simulate` shape, with the fields the journal reads.
fn plan(
    entry: &str,
    direction: &str,
    outcome: &str,
    phone: Option<&str>,
    records: &[&str],
    ignored: &[&str],
) -> Value {
    json!({
        "entry_id": entry,
        "direction": direction,
        "outcome": outcome,
        "client_phone": phone,
        "started_at": 1_764_000_000,
        "records": records.iter().map(|e| json!({"employee_extension": e})).collect::<Vec<_>>(),
        "ignored": ignored.iter().map(|e| json!({"employee_extension": e})).collect::<Vec<_>>(),
    })
}

fn item(tenant: &str, entry: &str, action: &str) -> NewOutboxItem {
    NewOutboxItem {
        item_key: format!("{tenant}/{entry}/0/{action}"),
        kind: action.into(),
        payload: json!({"entry": entry}),
    }
}

fn new_plan(tenant: &str, plan: Value, outbox: Vec<NewOutboxItem>) -> NewPlan {
    NewPlan {
        tenant_id: tenant.into(),
        entry_id: plan["entry_id"].as_str().unwrap().into(),
        completed_by: "summary".into(),
        plan,
        outbox,
        first_event_id: None,
        last_event_id: None,
    }
}

/// Five entries of tenant `t` (and one of `u`) covering every filter:
///
/// | entry | planned | direction | outcome | number | extensions | delivery |
/// |---|---|---|---|---|---|---|
/// | e1 | 1000 | inbound | answered | 79161234567 | 105 | delivered |
/// | e2 | 2000 | outbound | answered | 79035550101 | 101 | pending |
/// | e3 | 3000 | inbound | missed | 79161234567 | 101, 105 (ignored) | parked (+ a pending task) |
/// | e4 | 4000 | internal | answered | none | none | nothing to deliver |
/// | e1/x | 5000 | inbound | answered | 442079460958 | 7 | parked |
///
/// `e1/x` holds a slash, so its item keys fall inside `e1`'s key range: `e1` must stay
/// delivered.
async fn five_entries(store: &Store) {
    let saves = [
        (
            1000,
            new_plan(
                "t",
                plan(
                    "e1",
                    "inbound",
                    "answered",
                    Some("79161234567"),
                    &["105"],
                    &[],
                ),
                vec![item("t", "e1", "call")],
            ),
        ),
        (
            2000,
            new_plan(
                "t",
                plan(
                    "e2",
                    "outbound",
                    "answered",
                    Some("79035550101"),
                    &["101"],
                    &[],
                ),
                vec![item("t", "e2", "call")],
            ),
        ),
        (
            3000,
            new_plan(
                "t",
                plan(
                    "e3",
                    "inbound",
                    "missed",
                    Some("79161234567"),
                    &["101"],
                    &["105"],
                ),
                vec![item("t", "e3", "call"), item("t", "e3", "task")],
            ),
        ),
        (
            4000,
            new_plan(
                "t",
                plan("e4", "internal", "answered", None, &[], &[]),
                vec![],
            ),
        ),
        (
            5000,
            new_plan(
                "t",
                plan(
                    "e1/x",
                    "inbound",
                    "answered",
                    Some("442079460958"),
                    &["7"],
                    &[],
                ),
                vec![item("t", "e1/x", "call")],
            ),
        ),
        (
            6000,
            new_plan(
                "u",
                plan(
                    "e1",
                    "inbound",
                    "answered",
                    Some("79161234567"),
                    &["105"],
                    &[],
                ),
                vec![item("u", "e1", "call")],
            ),
        ),
    ];
    for (at, p) in saves {
        assert_eq!(store.save_plans(&[p], at).await.unwrap(), vec![true]);
    }
    store
        .complete_items(&[("t/e1/0/call".into(), json!({"call_id": 11}))], 7000)
        .await
        .unwrap();
    store
        .park_item("t/e3/0/call", "amoCRM: responsible_user_id not found")
        .await
        .unwrap();
    store
        .park_item("t/e1/x/0/call", "amoCRM: bad phone")
        .await
        .unwrap();
}

async fn listed(store: &Store, filter: JournalFilter) -> (i64, Vec<String>) {
    let page = store.journal("t", &filter, 50, 0).await.unwrap();
    let ids = page.entries.into_iter().map(|e| e.entry_id).collect();
    (page.total, ids)
}

fn expect(ids: &[&str]) -> (i64, Vec<String>) {
    (
        ids.len() as i64,
        ids.iter().map(|s| s.to_string()).collect(),
    )
}

#[tokio::test]
async fn every_journal_filter_narrows_the_list_and_the_total() {
    for store in stores("journal").await {
        let b = store.backend();
        five_entries(&store).await;
        let phone = |digits: &str| JournalFilter {
            phone_digits: Some(digits.into()),
            ..JournalFilter::default()
        };
        let cases: Vec<(&str, JournalFilter, Vec<&str>)> = vec![
            (
                "none",
                JournalFilter::default(),
                vec!["e1/x", "e4", "e3", "e2", "e1"],
            ),
            ("11 digits", phone("79161234567"), vec!["e3", "e1"]),
            ("trunk 8", phone("89161234567"), vec!["e3", "e1"]),
            ("ten digits", phone("9161234567"), vec!["e3", "e1"]),
            ("a piece", phone("1234"), vec!["e3", "e1"]),
            ("a foreign number's tail", phone("0958"), vec!["e1/x"]),
            ("no such digits", phone("000000"), vec![]),
            ("a wildcard is a character", phone("%"), vec![]),
            ("empty", phone(""), vec!["e1/x", "e4", "e3", "e2", "e1"]),
            (
                "time",
                JournalFilter {
                    from_ms: Some(2000),
                    to_ms: Some(4000),
                    ..JournalFilter::default()
                },
                vec!["e3", "e2"],
            ),
            (
                "extension 105",
                JournalFilter {
                    extension: Some("105".into()),
                    ..JournalFilter::default()
                },
                vec!["e3", "e1"],
            ),
            (
                "extension 10 is not 101 or 105",
                JournalFilter {
                    extension: Some("10".into()),
                    ..JournalFilter::default()
                },
                vec![],
            ),
            (
                "inbound",
                JournalFilter {
                    direction: Some("inbound".into()),
                    ..JournalFilter::default()
                },
                vec!["e1/x", "e3", "e1"],
            ),
            (
                "missed",
                JournalFilter {
                    outcome: Some("missed".into()),
                    ..JournalFilter::default()
                },
                vec!["e3"],
            ),
            (
                "combined",
                JournalFilter {
                    phone_digits: Some("1234".into()),
                    direction: Some("inbound".into()),
                    extension: Some("105".into()),
                    delivery: Some(DeliveryFilter::Parked),
                    ..JournalFilter::default()
                },
                vec!["e3"],
            ),
        ];
        for (state, ids) in [
            (DeliveryFilter::Parked, vec!["e1/x", "e3"]),
            (DeliveryFilter::Pending, vec!["e2"]),
            (DeliveryFilter::Delivered, vec!["e1"]),
            (DeliveryFilter::NothingToDeliver, vec!["e4"]),
        ] {
            let filter = JournalFilter {
                delivery: Some(state),
                ..JournalFilter::default()
            };
            assert_eq!(listed(&store, filter).await, expect(&ids), "{b}: {state:?}");
        }
        for (case, filter, ids) in cases {
            assert_eq!(listed(&store, filter).await, expect(&ids), "{b}: {case}");
        }
        // A page further on keeps the total of the whole filtered list.
        let page = store
            .journal("t", &JournalFilter::default(), 2, 1)
            .await
            .unwrap();
        assert_eq!(page.total, 5, "{b}");
        let ids: Vec<&str> = page.entries.iter().map(|e| e.entry_id.as_str()).collect();
        assert_eq!(ids, ["e4", "e3"], "{b}");
        // Each entry carries its own items only (not those of `e1/x`, inside its key range).
        let e1 = store.entry("t", "e1").await.unwrap().unwrap();
        assert_eq!(
            e1.outbox,
            vec![("t/e1/0/call".to_string(), "done".to_string())],
            "{b}"
        );
        let u = store
            .journal("u", &JournalFilter::default(), 50, 0)
            .await
            .unwrap();
        assert_eq!((u.total, u.entries.len()), (1, 1), "{b}");
    }
}

#[tokio::test]
async fn an_entrys_outbox_is_its_key_range_with_answers_and_reasons() {
    for store in stores("entry_outbox").await {
        let b = store.backend();
        five_entries(&store).await;
        let e3 = store.entry_outbox("t", "e3").await.unwrap();
        let summary: Vec<(&str, &str, Option<&str>)> = e3
            .iter()
            .map(|i| {
                (
                    i.item_key.as_str(),
                    i.state.as_str(),
                    i.last_error.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "t/e3/0/call",
                    "parked",
                    Some("amoCRM: responsible_user_id not found")
                ),
                ("t/e3/0/task", "pending", None),
            ],
            "{b}"
        );
        let e1 = store.entry_outbox("t", "e1").await.unwrap();
        assert_eq!(e1.len(), 1, "{b}: not e1/x's item");
        assert_eq!(e1[0].crm_response, Some(json!({"call_id": 11})), "{b}");
        assert_eq!(e1[0].payload, json!({"entry": "e1"}), "{b}");
        assert_eq!(store.entry_outbox("t", "e1/x").await.unwrap().len(), 1);
        assert!(store.entry_outbox("t", "e4").await.unwrap().is_empty());
        assert!(store.entry_outbox("t", "nope").await.unwrap().is_empty());
    }
}

fn event(tenant: &str, entry: &str, key: &str) -> NewEvent {
    NewEvent {
        tenant_id: tenant.into(),
        entry_id: entry.into(),
        path: "events/call".into(),
        dedupe_key: key.into(),
        json: format!("{{\"entry_id\":\"{entry}\",\"k\":\"{key}\"}}"),
        received_at_ms: 1_000,
    }
}

async fn append(store: &Store, tenant: &str, entry: &str, key: &str) -> i64 {
    match store
        .append_events(&[event(tenant, entry, key)])
        .await
        .unwrap()[..]
    {
        [Appended::Stored(id)] => id,
        ref other => panic!("{key}: {other:?}"),
    }
}

#[tokio::test]
async fn an_entrys_events_are_its_id_range_or_without_one_a_scan() {
    for store in stores("entry_events").await {
        let b = store.backend();
        let a1 = append(&store, "t", "A", "a1").await;
        let b1 = append(&store, "t", "B", "b1").await;
        let a2 = append(&store, "t", "A", "a2").await;
        let x1 = append(&store, "u", "A", "x1").await;
        let b2 = append(&store, "t", "B", "b2").await;
        let mut a = new_plan(
            "t",
            plan("A", "inbound", "answered", None, &[], &[]),
            vec![],
        );
        (a.first_event_id, a.last_event_id) = (Some(a1), Some(b2));
        // B was planned before ranges were kept.
        let old_b = new_plan(
            "t",
            plan("B", "inbound", "answered", None, &[], &[]),
            vec![],
        );
        store.save_plans(&[a], 10).await.unwrap();
        store.save_plans(&[old_b], 20).await.unwrap();
        // A straggler of A after it was planned: not what the plan was made of.
        append(&store, "t", "A", "a3").await;
        let ids = |events: &[callbridge_store::StoredEvent]| -> Vec<i64> {
            events.iter().map(|e| e.id).collect()
        };
        let of_a = store.entry_events("t", "A").await.unwrap();
        assert_eq!(ids(&of_a), [a1, a2], "{b}");
        assert_eq!(of_a[0].path, "events/call");
        assert_eq!(of_a[0].json, "{\"entry_id\":\"A\",\"k\":\"a1\"}");
        assert_eq!(
            ids(&store.entry_events("t", "B").await.unwrap()),
            [b1, b2],
            "{b}: the scan"
        );
        // Not planned (yet): the scan finds whatever the log holds.
        assert!(store.entry_events("t", "C").await.unwrap().is_empty());
        assert_eq!(
            ids(&store.entry_events("u", "A").await.unwrap()),
            [x1],
            "{b}"
        );

        let recent = store.recent_entries_with_events("t", 10).await.unwrap();
        let got: Vec<(&str, Vec<i64>)> = recent
            .iter()
            .map(|e| (e.entry.entry_id.as_str(), ids(&e.events)))
            .collect();
        assert_eq!(got, [("B", vec![b1, b2]), ("A", vec![a1, a2])], "{b}");
        let newest = store.recent_entries_with_events("t", 1).await.unwrap();
        assert_eq!(newest.len(), 1);
        assert_eq!(newest[0].entry.entry_id, "B");
        assert!(store
            .recent_entries_with_events("nobody", 5)
            .await
            .unwrap()
            .is_empty());
    }
}

/// Statements run on whichever engine the store has.
async fn run(store: &Store, statements: &[&str]) {
    for sql in statements {
        match store.db() {
            Db::Sqlite(pool) => sqlx::query(sql).execute(pool).await.map(|_| ()),
            Db::Postgres(pool) => sqlx::query(sql).execute(pool).await.map(|_| ()),
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

#[tokio::test]
async fn migration_10_fills_the_journal_columns_of_entries_planned_before_it() {
    for place in places("journal_migration") {
        let store = place.open_unlocked().await;
        let b = store.backend();
        // Back to the schema of migration 9.
        run(
            &store,
            &[
                "DROP INDEX entries_journal",
                "DROP INDEX entries_by_phone",
                "CREATE INDEX entries_by_time ON entries (tenant_id, planned_at_ms)",
                "ALTER TABLE entries DROP COLUMN client_phone10",
                "ALTER TABLE entries DROP COLUMN direction",
                "ALTER TABLE entries DROP COLUMN outcome",
                "ALTER TABLE entries DROP COLUMN started_at",
                "ALTER TABLE entries DROP COLUMN extensions",
                "ALTER TABLE entries DROP COLUMN first_event_id",
                "ALTER TABLE entries DROP COLUMN last_event_id",
                "DELETE FROM schema_migrations WHERE version = 10",
            ],
        )
        .await;
        if b == "postgres" {
            run(
                &store,
                &["ALTER TABLE outbox ALTER COLUMN item_key TYPE TEXT COLLATE \"default\""],
            )
            .await;
        }
        let old = plan(
            "old",
            "outbound",
            "missed",
            Some("79161234567"),
            &["105"],
            &["101"],
        );
        for i in 0..1200 {
            // More rows than one chunk of the fill.
            let sql = format!(
                "INSERT INTO entries (tenant_id, entry_id, completed_by, plan, planned_at_ms) \
                 VALUES ('t', 'old{i:04}', 'summary', '{}', {i})",
                plan(&format!("old{i:04}"), "inbound", "answered", None, &[], &[])
            );
            run(&store, &[&sql]).await;
        }
        let sql = format!(
            "INSERT INTO entries (tenant_id, entry_id, completed_by, plan, planned_at_ms) \
             VALUES ('t', 'old', 'summary', '{old}', 5000), ('t', 'broken', 'summary', '{{', 4000)"
        );
        run(&store, &[&sql]).await;
        let event_id = append(&store, "t", "old", "o1").await;
        drop(store);

        let store = place.open_unlocked().await;
        let filter = JournalFilter {
            phone_digits: Some("9161234567".into()),
            extension: Some("101".into()),
            direction: Some("outbound".into()),
            outcome: Some("missed".into()),
            ..JournalFilter::default()
        };
        let page = store.journal("t", &filter, 10, 0).await.unwrap();
        assert_eq!(page.total, 1, "{b}");
        assert_eq!(page.entries[0].entry_id, "old");
        assert_eq!(page.entries[0].first_event_id, None);
        let inbound = JournalFilter {
            direction: Some("inbound".into()),
            ..JournalFilter::default()
        };
        assert_eq!(
            store.journal("t", &inbound, 1, 0).await.unwrap().total,
            1200,
            "{b}"
        );
        let ids: Vec<i64> = store
            .entry_events("t", "old")
            .await
            .unwrap()
            .iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(ids, [event_id], "{b}");
        // The malformed plan kept empty columns and is reported when read.
        assert!(store.entry("t", "broken").await.is_err());
        // The outbox's keys are in byte order again (PostgreSQL) and the range reads work.
        store
            .save_plans(
                &[new_plan(
                    "t",
                    plan("new", "inbound", "answered", None, &[], &[]),
                    vec![item("t", "new", "call")],
                )],
                9000,
            )
            .await
            .unwrap();
        assert_eq!(store.entry_outbox("t", "new").await.unwrap().len(), 1);
    }
}
