//! Store tests. Each runs on SQLite and on the PostgreSQL named by `CALLBRIDGE_TEST_POSTGRES_URL`
//! (a fresh database per test); without it they fail saying so (`scripts/test.sh` sets it).

use callbridge_store::{
    AddedItem, Appended, Appender, Lane, NewEvent, NewOutboxItem, Store, TenantRow,
};
use callbridge_test_support::wait_until_async;
use std::sync::atomic::Ordering;
use support::stores;

mod support;

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

#[tokio::test]
async fn a_redelivered_event_is_stored_once() {
    for store in stores("dedupe").await {
        let first = store
            .append_events(&[event("t", "e1", "k1"), event("t", "e1", "k1")])
            .await
            .unwrap();
        assert!(
            matches!(first[0], Appended::Stored(_)),
            "{}",
            store.backend()
        );
        assert_eq!(
            first[1],
            Appended::Duplicate,
            "{}: a duplicate within one batch",
            store.backend()
        );
        let again = store
            .append_events(&[event("t", "e1", "k1")])
            .await
            .unwrap();
        assert_eq!(again[0], Appended::Duplicate);
        // The same key in another tenant is another event.
        assert!(matches!(
            store
                .append_events(&[event("u", "e1", "k1")])
                .await
                .unwrap()[0],
            Appended::Stored(_)
        ));
        assert_eq!(store.count_events("t").await.unwrap(), 1);
    }
}

#[tokio::test]
async fn concurrent_appends_are_all_committed_in_order_of_ids() {
    for store in stores("group").await {
        let appender = Appender::spawn(store.clone(), 256);
        let mut tasks = Vec::new();
        for i in 0..500 {
            let a = appender.clone();
            tasks.push(tokio::spawn(async move {
                a.append(event("t", &format!("e{}", i % 50), &format!("k{i}")))
                    .await
            }));
        }
        let mut ids = Vec::new();
        for t in tasks {
            match t.await.unwrap().unwrap() {
                Appended::Stored(id) => ids.push(id),
                Appended::Duplicate => panic!("no duplicates were sent"),
            }
        }
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 500, "{}", store.backend());
        let read = store.events_after(0, 10_000).await.unwrap();
        assert_eq!(read.len(), 500);
        assert!(read.windows(2).all(|w| w[0].id < w[1].id));
        assert_eq!(
            store.events_after(ids[249], 10_000).await.unwrap().len(),
            250
        );
    }
}

#[tokio::test]
async fn committed_events_reach_the_sink_in_id_order_and_an_overflow_is_flagged() {
    for store in stores("sink").await {
        let b = store.backend();
        let (sink, mut live) = callbridge_store::sink::<u32>(1);
        let appender = Appender::spawn_with_sink(store.clone(), 64, Some(sink));
        let first = appender
            .append_with(event("t", "e1", "k1"), 1)
            .await
            .unwrap();
        // A duplicate is answered but not handed on.
        assert_eq!(
            appender
                .append_with(event("t", "e1", "k1"), 2)
                .await
                .unwrap(),
            Appended::Duplicate,
            "{b}"
        );
        // The channel holds one batch: the next one is dropped and flagged.
        appender
            .append_with(event("t", "e1", "k2"), 3)
            .await
            .unwrap();
        let batch = live.rx.recv().await.unwrap();
        assert_eq!(batch.len(), 1, "{b}");
        assert_eq!(Appended::Stored(batch[0].id), first, "{b}");
        assert_eq!(
            (batch[0].payload, batch[0].event.dedupe_key.as_str()),
            (1, "k1")
        );
        assert!(live.take_lagged(), "{b}");
        assert!(!live.take_lagged(), "{b}");
        assert!(live.rx.try_recv().is_err(), "{b}");
        // What was dropped is in the log.
        assert_eq!(store.events_after(0, 10).await.unwrap().len(), 2, "{b}");
        // A batch of several comes in id order.
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let a = appender.clone();
                tokio::spawn(
                    async move { a.append_with(event("t", "e2", &format!("m{i}")), i).await },
                )
            })
            .collect();
        let mut got = Vec::new();
        for t in tasks {
            t.await.unwrap().unwrap();
            while let Ok(batch) = live.rx.try_recv() {
                assert!(batch.windows(2).all(|w| w[0].id < w[1].id), "{b}");
                got.extend(batch.into_iter().map(|c| c.id));
            }
        }
        if !live.take_lagged() {
            assert_eq!(got.len(), 20, "{b}");
        }
        assert!(got.windows(2).all(|w| w[0] < w[1]), "{b}");
    }
}

#[tokio::test]
async fn plans_saved_together_each_once() {
    for store in stores("plans").await {
        let plan = |entry: &str| callbridge_store::NewPlan {
            tenant_id: "t".into(),
            entry_id: entry.into(),
            completed_by: "summary".into(),
            plan: serde_json::json!({"entry_id": entry}),
            outbox: vec![NewOutboxItem {
                item_key: format!("t/{entry}/0/call"),
                kind: "call".into(),
                payload: serde_json::json!({}),
            }],
            first_event_id: None,
            last_event_id: None,
        };
        assert_eq!(
            store.save_plans(&[plan("a"), plan("b")], 1).await.unwrap(),
            vec![true, true]
        );
        assert_eq!(
            store.save_plans(&[plan("b"), plan("c")], 2).await.unwrap(),
            vec![false, true],
            "{}",
            store.backend()
        );
        assert_eq!(store.count_entries("t").await.unwrap(), 3);
        let b = store.entry("t", "b").await.unwrap().unwrap();
        assert_eq!((b.planned_at_ms, b.outbox.len()), (1, 1));
        // The same entry twice in one save: the first is saved, the repeat is not.
        assert_eq!(
            store.save_plans(&[plan("d"), plan("d")], 3).await.unwrap(),
            vec![true, false],
            "{}",
            store.backend()
        );
        // A repeat with other outbox items writes none of them: only the stored plan's go.
        let mut other = plan("e");
        other.outbox[0].item_key = "t/e/9/call".into();
        assert_eq!(
            store.save_plans(&[plan("e"), other], 3).await.unwrap(),
            vec![true, false]
        );
        let e = store.entry("t", "e").await.unwrap().unwrap();
        assert_eq!(e.outbox.len(), 1, "{} {:?}", store.backend(), e.outbox);
        // A save larger than one multi-row statement, unordered, with planned entries among
        // the new: each answer is its own plan's, and every new entry has its outbox item.
        let many: Vec<_> = (0..950)
            .rev()
            .map(|n| plan(&format!("m{n:04}")))
            .chain([plan("a"), plan("c")])
            .collect();
        let saved = store.save_plans(&many, 4).await.unwrap();
        assert_eq!(saved.iter().filter(|s| **s).count(), 950);
        assert_eq!(saved[950..], [false, false]);
        assert_eq!(store.count_entries("t").await.unwrap(), 955);
        let m = store.entry("t", "m0421").await.unwrap().unwrap();
        assert_eq!(
            (m.planned_at_ms, m.outbox.len()),
            (4, 1),
            "{}",
            store.backend()
        );
        assert_eq!(m.outbox[0].1, "pending", "{:?}", m.outbox);
    }
}

#[tokio::test]
async fn a_plan_is_saved_once_with_its_outbox() {
    for store in stores("plan").await {
        store
            .append_events(&[event("t", "e1", "a"), event("t", "e2", "b")])
            .await
            .unwrap();
        let plan = serde_json::json!({"entry_id": "e1", "records": [1, 2]});
        let outbox = vec![
            NewOutboxItem {
                item_key: "t/e1/0/call".into(),
                kind: "call".into(),
                payload: serde_json::json!({"n": 0}),
            },
            NewOutboxItem {
                item_key: "t/e1/1/call".into(),
                kind: "call".into(),
                payload: serde_json::json!({"n": 1}),
            },
        ];
        // Two planners race for the same entry: exactly one wins.
        let (a, b) = tokio::join!(
            store.save_plan("t", "e1", "summary", &plan, &outbox, 5),
            store.save_plan("t", "e1", "summary", &plan, &outbox, 6)
        );
        assert_eq!(
            u8::from(a.unwrap()) + u8::from(b.unwrap()),
            1,
            "{}",
            store.backend()
        );
        assert!(!store
            .save_plan("t", "e1", "grace", &plan, &outbox, 7)
            .await
            .unwrap());
        let entry = store.entry("t", "e1").await.unwrap().expect("planned");
        assert_eq!(entry.plan, plan);
        assert_eq!(entry.outbox.len(), 2);
        assert!(entry.outbox.iter().all(|(_, state)| state == "pending"));
        // Only the unplanned entry's events are left to fold after a restart.
        let left = store.unplanned_events(0).await.unwrap();
        assert_eq!(
            left.iter().map(|e| e.entry_id.as_str()).collect::<Vec<_>>(),
            vec!["e2"]
        );
        // From the recovery mark on only: nothing below it is read again.
        assert_eq!(store.recovery_mark().await.unwrap(), 0);
        let e2 = left[0].id;
        store.set_recovery_mark(e2, 8).await.unwrap();
        assert_eq!(store.recovery_mark().await.unwrap(), e2);
        assert_eq!(store.unplanned_events(e2).await.unwrap(), left);
        store.set_recovery_mark(e2 + 1, 9).await.unwrap();
        assert_eq!(store.recovery_mark().await.unwrap(), e2 + 1);
        assert!(store.unplanned_events(e2 + 1).await.unwrap().is_empty());
        assert_eq!(store.entries("t", 10, 0).await.unwrap().len(), 1);
        assert_eq!(store.count_entries("t").await.unwrap(), 1);
    }
}

#[tokio::test]
async fn the_outbox_lifecycle_leases_tokens_and_status() {
    for store in stores("outbox").await {
        let items: Vec<NewOutboxItem> = (0..3)
            .map(|i| NewOutboxItem {
                item_key: format!("t/e1/{i}/call"),
                kind: "call".into(),
                payload: serde_json::json!({"n": i}),
            })
            .collect();
        assert!(store
            .save_plan("t", "e1", "summary", &serde_json::json!({}), &items, 100)
            .await
            .unwrap());
        let b = store.backend();
        // One holder at a time; the lease passes on only after it expires.
        assert!(
            store.acquire_lease("t", "a", 1_000, 100).await.unwrap(),
            "{b}"
        );
        assert!(
            !store.acquire_lease("t", "b", 1_000, 500).await.unwrap(),
            "{b}"
        );
        assert!(
            store.acquire_lease("t", "a", 1_000, 600).await.unwrap(),
            "{b}"
        );
        assert!(
            store.acquire_lease("t", "b", 1_000, 1_700).await.unwrap(),
            "{b}"
        );
        store.release_lease("t", "b").await.unwrap();
        assert!(
            store.acquire_lease("t", "a", 1_000, 1_701).await.unwrap(),
            "{b}"
        );

        let due = store.due_items("t", 200, 10, 10).await.unwrap();
        assert_eq!(due.len(), 3, "{b}");
        let keys: Vec<String> = due.iter().map(|i| i.item_key.clone()).collect();
        store.mark_sending(&keys, 150).await.unwrap();
        store
            .complete_items(&[(keys[0].clone(), serde_json::json!({"note_id": 7}))], 160)
            .await
            .unwrap();
        // An uncertain failure keeps the in-flight mark; a certain one clears it.
        store
            .retry_item(&keys[1], "timeout", 10_000, true, true)
            .await
            .unwrap();
        store
            .retry_item(&keys[2], "429", 300, false, false)
            .await
            .unwrap();
        let one = store.outbox_item(&keys[1]).await.unwrap().unwrap();
        assert_eq!(
            (one.attempts, one.sent_at_ms, one.last_error.as_deref()),
            (1, Some(150), Some("timeout")),
            "{b}"
        );
        let two = store.outbox_item(&keys[2]).await.unwrap().unwrap();
        assert_eq!((two.attempts, two.sent_at_ms), (0, None), "{b}");
        // Fresh work first; the retry is not due yet.
        let due = store.due_items("t", 400, 10, 10).await.unwrap();
        assert_eq!(
            due.iter().map(|i| i.item_key.as_str()).collect::<Vec<_>>(),
            vec![keys[2].as_str()],
            "{b}"
        );
        assert_eq!(store.next_due_at("t").await.unwrap(), Some(300), "{b}");
        store
            .save_progress(&keys[2], &serde_json::json!({"contact_id": 5}))
            .await
            .unwrap();
        store
            .park_item(&keys[2], "amoCRM: bad phone")
            .await
            .unwrap();
        let parked = store
            .outbox_items_in_state("t", "parked", 10)
            .await
            .unwrap();
        assert_eq!(parked.len(), 1, "{b}");
        assert_eq!(
            parked[0].crm_response,
            Some(serde_json::json!({"contact_id": 5})),
            "{b}"
        );
        let counts = store.outbox_counts("t").await.unwrap();
        assert_eq!(
            (counts.pending, counts.done, counts.parked),
            (1, 1, 1),
            "{b}"
        );
        assert!(store.unpark_item("t", &keys[2], 500).await.unwrap(), "{b}");
        assert!(!store.unpark_item("t", &keys[2], 500).await.unwrap(), "{b}");
        let done = store.outbox_item(&keys[0]).await.unwrap().unwrap();
        assert_eq!(
            (done.state.as_str(), done.done_at_ms, done.sent_at_ms),
            ("done", Some(160), None),
            "{b}"
        );

        assert_eq!(store.load_crm_tokens("t").await.unwrap(), None, "{b}");
        let tokens =
            serde_json::json!({"access_token": "a", "refresh_token": "r", "expires_at": 1});
        store.save_crm_tokens("t", &tokens, 1).await.unwrap();
        store.save_crm_tokens("t", &tokens, 2).await.unwrap();
        assert_eq!(
            store.load_crm_tokens("t").await.unwrap(),
            Some(tokens),
            "{b}"
        );
        store.set_crm_status("t", "broken", "401", 3).await.unwrap();
        store.set_crm_status("t", "ok", "", 4).await.unwrap();
        let status = store.crm_status("t").await.unwrap().unwrap();
        assert_eq!(
            (status.state.as_str(), status.updated_at_ms),
            ("ok", 4),
            "{b}"
        );
        // The broken ones of all tenants, in one query.
        assert!(
            store.crm_statuses_in("broken").await.unwrap().is_empty(),
            "{b}"
        );
        store
            .set_crm_status("u", "broken", "401 Unauthorized", 5)
            .await
            .unwrap();
        store
            .set_crm_status("v", "broken", "account blocked", 6)
            .await
            .unwrap();
        let broken: Vec<(String, String)> = store
            .crm_statuses_in("broken")
            .await
            .unwrap()
            .into_iter()
            .map(|(id, s)| (id, s.detail))
            .collect();
        assert_eq!(
            broken,
            [
                ("u".to_string(), "401 Unauthorized".to_string()),
                ("v".to_string(), "account blocked".to_string())
            ],
            "{b}"
        );
    }
}

#[tokio::test]
async fn tenants_round_trip() {
    for store in stores("tenants").await {
        let mut t = TenantRow {
            id: "acme".into(),
            mango_api_key: "key".into(),
            mango_api_salt: "salt".into(),
            settings_toml: "plan = \"extended\"\n".into(),
            crm: serde_json::json!({"base_url": "http://127.0.0.1:1"}),
            updated_at_ms: 1,
        };
        store.upsert_tenant(&t).await.unwrap();
        t.settings_toml = "plan = \"basic\"\n".into();
        t.updated_at_ms = 2;
        store.upsert_tenant(&t).await.unwrap();
        assert_eq!(store.tenants().await.unwrap(), vec![t.clone()]);
        assert_eq!(store.tenant("acme").await.unwrap(), Some(t));
        assert!(store.delete_tenant("acme").await.unwrap());
        assert_eq!(store.tenant("acme").await.unwrap(), None);
    }
}

#[tokio::test]
async fn reopening_keeps_everything_and_migrations_run_once() {
    let dir = std::env::temp_dir().join(format!("callbridge-store-reopen-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = Store::open(None, &dir).await.unwrap();
    store.append_events(&[event("t", "e1", "a")]).await.unwrap();
    drop(store);
    let store = Store::open(None, &dir).await.unwrap();
    assert_eq!(store.max_event_id().await.unwrap(), 1);
}

#[tokio::test]
async fn a_non_postgres_url_is_refused_without_showing_the_password() {
    let err = Store::open(Some("mysql://u:secret@host/db"), std::path::Path::new("."))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("mysql://u:***@host/db") && !err.contains("secret"),
        "{err}"
    );
}

#[tokio::test]
async fn lanes_split_calls_from_follow_ups_and_a_finished_call_adds_its_follow_up_once() {
    for store in stores("lanes").await {
        let b = store.backend();
        let item = |key: &str, kind: &str| NewOutboxItem {
            item_key: key.into(),
            kind: kind.into(),
            payload: serde_json::json!({}),
        };
        let items = vec![item("t/e1/0/call", "call"), item("t/e1/0/task", "task")];
        assert!(store
            .save_plan("t", "e1", "summary", &serde_json::json!({}), &items, 100)
            .await
            .unwrap());
        let keys = |items: Vec<callbridge_store::OutboxItem>| -> Vec<String> {
            items.into_iter().map(|i| i.item_key).collect()
        };
        let calls = store
            .due_items_in("t", Lane::Calls, 200, 10, 10)
            .await
            .unwrap();
        assert_eq!(keys(calls), vec!["t/e1/0/call"], "{b}");
        let follow = store
            .due_items_in("t", Lane::FollowUps, 200, 10, 10)
            .await
            .unwrap();
        assert_eq!(keys(follow), vec!["t/e1/0/task"], "{b}");
        assert_eq!(store.due_items("t", 200, 10, 10).await.unwrap().len(), 2);

        // A definite "not written" clears the in-flight mark.
        let call_key = vec!["t/e1/0/call".to_string()];
        store.mark_sending(&call_key, 150).await.unwrap();
        store.unmark_sending(&call_key).await.unwrap();
        let call = store.outbox_item("t/e1/0/call").await.unwrap().unwrap();
        assert_eq!(call.sent_at_ms, None, "{b}");

        let lead = AddedItem {
            tenant_id: "t".into(),
            entry_id: "e1".into(),
            item: NewOutboxItem {
                item_key: "t/e1/0/lead".into(),
                kind: "lead".into(),
                payload: serde_json::json!({"call_item": "t/e1/0/call"}),
            },
        };
        let done = vec![("t/e1/0/call".to_string(), serde_json::json!({"note_id": 1}))];
        store
            .complete_and_add(&done, std::slice::from_ref(&lead), 300)
            .await
            .unwrap();
        // Again (a replay after a crash): the item exists and is left as it is.
        store.complete_and_add(&done, &[lead], 400).await.unwrap();
        let call = store.outbox_item("t/e1/0/call").await.unwrap().unwrap();
        assert_eq!(
            (call.state.as_str(), call.done_at_ms),
            ("done", Some(300)),
            "{b}"
        );
        let added = store.outbox_item("t/e1/0/lead").await.unwrap().unwrap();
        assert_eq!(
            (
                added.state.as_str(),
                added.kind.as_str(),
                added.created_at_ms
            ),
            ("pending", "lead", 300),
            "{b}"
        );
        assert_eq!(added.payload["call_item"], "t/e1/0/call", "{b}");
        let follow = store
            .due_items_in("t", Lane::FollowUps, 500, 10, 10)
            .await
            .unwrap();
        assert_eq!(keys(follow), vec!["t/e1/0/task", "t/e1/0/lead"], "{b}");
        assert!(store
            .due_items_in("t", Lane::Calls, 500, 10, 10)
            .await
            .unwrap()
            .is_empty());
        let entry = store.entry("t", "e1").await.unwrap().unwrap();
        assert_eq!(entry.outbox.len(), 3, "{b}");
    }
}

/// Under appends that never pause, the WAL must still start over from its beginning after each
/// checkpoint instead of growing with every commit. The WAL's size a little after the first
/// checkpoint is compared with its size after several more: a growing WAL (what a checkpoint off
/// the writer connection gave) is several times larger by then, a reused one about the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_steady_appends_the_wal_starts_over_instead_of_growing() {
    let dir = support::sqlite_dir("wal");
    let store = Store::open(None, &dir).await.unwrap();
    let appender = Appender::spawn(store.clone(), 64);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..8 {
        let (appender, stop) = (appender.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("{w}-{n}");
                let appended = appender.append(event("t", &key, &key)).await.unwrap();
                assert!(matches!(appended, Appended::Stored(_)));
                n += 1;
            }
            n
        }));
    }
    let wal = dir.join("callbridge.db-wal");
    let size = || std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    // The checkpointer runs every 500 ms: `early` is the WAL's size after its first two
    // checkpoints (about 1 s), `late` after fourteen more (about 8 s). Counting checkpoints, not
    // time, keeps the two measures comparable on a busy machine, where checkpoints are delayed.
    // The file's size is its high-water mark, so a delayed checkpoint still lets a reused WAL
    // grow to a few times its early size (seen: 3.1x with the PostgreSQL tests alongside); a
    // growing one is about 16 / 2 = 8 times larger by then, whatever the rate of appends.
    let checkpoints_reach = |n: u64| {
        let store = &store;
        async move {
            wait_until_async(
                &format!("{n} full WAL checkpoints"),
                std::time::Duration::from_secs(60),
                || async { (store.wal_checkpoints().await >= n).then_some(()) },
            )
            .await;
        }
    };
    checkpoints_reach(2).await;
    let early = size();
    let from = store.wal_checkpoints().await;
    checkpoints_reach(from + 14).await;
    let late = size();
    stop.store(true, Ordering::Relaxed);
    let mut appended = 0;
    for w in writers {
        appended += w.await.unwrap();
    }
    assert_eq!(store.count_events("t").await.unwrap(), appended as i64);
    assert!(early > 0, "the WAL was never written");
    assert!(
        late < early * 5,
        "the WAL grew from {early} to {late} bytes under steady appends ({appended} events)"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_config_files_tenants_are_marked_and_an_upsert_keeps_the_mark() {
    for store in stores("config_tenants").await {
        let row = |id: &str| TenantRow {
            id: id.into(),
            mango_api_key: format!("key-{id}"),
            mango_api_salt: "salt".into(),
            settings_toml: String::new(),
            crm: serde_json::Value::Null,
            updated_at_ms: 1,
        };
        for id in ["file-a", "file-b", "api"] {
            store.upsert_tenant(&row(id)).await.unwrap();
        }
        assert!(store.config_tenant_ids().await.unwrap().is_empty());
        store
            .mark_config_tenants(&["file-a".into(), "file-b".into()])
            .await
            .unwrap();
        assert_eq!(
            store.config_tenant_ids().await.unwrap(),
            ["file-a", "file-b"]
        );
        // The admin API's upsert of a file tenant leaves it the file's.
        store.upsert_tenant(&row("file-b")).await.unwrap();
        assert_eq!(
            store.config_tenant_ids().await.unwrap(),
            ["file-a", "file-b"]
        );
        // The next start names only file-a: file-b is the file's no more.
        store.mark_config_tenants(&["file-a".into()]).await.unwrap();
        assert_eq!(store.config_tenant_ids().await.unwrap(), ["file-a"]);
    }
}

/// Issue 14, item 9: a consent state is taken at most once, and not at all once expired; item 3:
/// a tenant's tokens can be dropped.
#[tokio::test]
async fn oauth_states_are_single_use_and_expire_and_tokens_can_be_forgotten() {
    use callbridge_store::OAuthState;
    for store in stores("oauth_states").await {
        let pending = OAuthState {
            tenant_id: "acme".into(),
            nonce_hash: "nonce-hash".into(),
        };
        store
            .create_oauth_state("live", &pending, 10_000, 1_000)
            .await
            .unwrap();
        store
            .create_oauth_state("stale", &pending, 1_500, 1_000)
            .await
            .unwrap();
        assert_eq!(
            store.take_oauth_state("unknown", 2_000).await.unwrap(),
            None
        );
        // Expired: refused, and gone.
        assert_eq!(store.take_oauth_state("stale", 2_000).await.unwrap(), None);
        assert_eq!(
            store.take_oauth_state("live", 2_000).await.unwrap(),
            Some(pending.clone())
        );
        // Used: refused.
        assert_eq!(store.take_oauth_state("live", 2_000).await.unwrap(), None);
        // Creating a state clears the expired ones.
        store
            .create_oauth_state("old", &pending, 3_000, 2_000)
            .await
            .unwrap();
        store
            .create_oauth_state("new", &pending, 90_000, 5_000)
            .await
            .unwrap();
        assert_eq!(store.take_oauth_state("old", 0).await.unwrap(), None);

        assert!(!store.forget_crm_tokens("acme").await.unwrap());
        store
            .save_crm_tokens("acme", &serde_json::json!({"access_token": "a"}), 1)
            .await
            .unwrap();
        assert!(store.forget_crm_tokens("acme").await.unwrap());
        assert_eq!(store.load_crm_tokens("acme").await.unwrap(), None);
    }
}

/// A settings save is the tenant's current settings and a numbered version, together; a save for
/// a tenant that does not exist writes nothing.
#[tokio::test]
async fn settings_saves_are_numbered_versions_of_the_tenants_settings() {
    for store in stores("settings_versions").await {
        let row = callbridge_store::TenantRow {
            id: "acme".into(),
            mango_api_key: "k".into(),
            mango_api_salt: "s".into(),
            settings_toml: "plan = \"basic\"\n".into(),
            crm: serde_json::Value::Null,
            updated_at_ms: 1,
        };
        store.upsert_tenant(&row).await.unwrap();
        let v1 = store
            .save_tenant_settings(
                "acme",
                "plan = \"extended\"\n",
                "admin (web UI)",
                "plan",
                10,
            )
            .await
            .unwrap();
        let v2 = store
            .save_tenant_settings("acme", "plan = \"basic\"\n", "config file", "plan", 20)
            .await
            .unwrap();
        assert_eq!((v1, v2), (Some(1), Some(2)));
        assert_eq!(
            store.tenant("acme").await.unwrap().unwrap().settings_toml,
            "plan = \"basic\"\n"
        );
        let versions = store.settings_versions("acme", 10).await.unwrap();
        assert_eq!(
            versions.iter().map(|v| v.version).collect::<Vec<_>>(),
            vec![2, 1]
        );
        assert_eq!(versions[1].author, "admin (web UI)");
        let first = store.settings_version("acme", 1).await.unwrap().unwrap();
        assert_eq!(first.settings_toml, "plan = \"extended\"\n");
        assert_eq!(first.created_at_ms, 10);
        assert_eq!(
            store
                .save_tenant_settings("nobody", "", "x", "y", 30)
                .await
                .unwrap(),
            None
        );
        assert!(store
            .settings_versions("nobody", 10)
            .await
            .unwrap()
            .is_empty());
        // Deleting the tenant deletes its history.
        store.delete_tenant("acme").await.unwrap();
        assert!(store
            .settings_versions("acme", 10)
            .await
            .unwrap()
            .is_empty());
    }
}

/// Stores tenant `acme` (no CRM connection).
async fn add_tenant_acme(store: &Store) {
    let row = callbridge_store::TenantRow {
        id: "acme".into(),
        mango_api_key: "k".into(),
        mango_api_salt: "s".into(),
        settings_toml: String::new(),
        crm: serde_json::Value::Null,
        updated_at_ms: 1,
    };
    store.upsert_tenant(&row).await.unwrap();
}

/// Card links: kept by their token's digest, listed per tenant, touched, revoked (deleted), and
/// deleted with their tenant.
#[tokio::test]
async fn card_links_are_found_by_digest_until_revoked_or_their_tenant_goes() {
    for store in stores("card_links").await {
        add_tenant_acme(&store).await;
        let link = |hash: &'static str, user| callbridge_store::NewCardLink {
            tenant_id: "acme",
            crm_user_id: user,
            token_hash: hash,
            token_prefix: "3fa91c0b",
            created_at_ms: 10,
        };
        let a = store.create_card_link(&link("hash-a", 1001)).await.unwrap();
        let b = store.create_card_link(&link("hash-b", 1002)).await.unwrap();
        assert_ne!(a, b);
        // A digest is unique: the same token cannot become two links.
        assert!(store.create_card_link(&link("hash-a", 1003)).await.is_err());
        let found = store.card_link_by_hash("hash-a").await.unwrap().unwrap();
        assert_eq!(
            (found.id, found.crm_user_id, found.last_used_ms),
            (a, 1001, None)
        );
        store.touch_card_link(a, 99).await.unwrap();
        let listed = store.card_links("acme").await.unwrap();
        assert_eq!(listed.iter().map(|l| l.id).collect::<Vec<_>>(), vec![a, b]);
        assert_eq!(listed[0].last_used_ms, Some(99));
        assert!(store.card_links("other").await.unwrap().is_empty());
        // Another tenant cannot revoke or see the link as its own.
        assert!(!store.revoke_card_link("other", a).await.unwrap());
        assert!(!store.card_link_live("other", a).await.unwrap());
        assert!(store.card_link_live("acme", a).await.unwrap());
        assert!(store.revoke_card_link("acme", a).await.unwrap());
        assert!(!store.revoke_card_link("acme", a).await.unwrap());
        assert!(!store.card_link_live("acme", a).await.unwrap());
        assert_eq!(store.card_link_by_hash("hash-a").await.unwrap(), None);
        store.delete_tenant("acme").await.unwrap();
        assert_eq!(store.card_link_by_hash("hash-b").await.unwrap(), None);
    }
}

/// Unsorted requests by client: one per tenant and number, replaced by a newer one, forgotten
/// only under its own uid, and deleted with their tenant.
#[tokio::test]
async fn unsorted_requests_are_remembered_per_client_until_forgotten_or_their_tenant_goes() {
    for store in stores("unsorted_requests").await {
        add_tenant_acme(&store).await;
        let request = |uid: &str, lead| callbridge_store::UnsortedRequest {
            tenant_id: "acme".into(),
            client_phone10: "9161230021".into(),
            uid: uid.into(),
            lead_id: Some(lead),
            contact_id: None,
            created_at_ms: 10,
        };
        assert_eq!(
            store.unsorted_request("acme", "9161230021").await.unwrap(),
            None
        );
        store
            .remember_unsorted_request(&request("u1", 601))
            .await
            .unwrap();
        store
            .remember_unsorted_request(&request("u2", 602))
            .await
            .unwrap();
        // The newer request replaces the older one for the client.
        let found = store.unsorted_request("acme", "9161230021").await.unwrap();
        assert_eq!(found, Some(request("u2", 602)));
        assert_eq!(
            store.unsorted_request("other", "9161230021").await.unwrap(),
            None
        );
        // Forgetting the old uid keeps the newer request.
        store
            .forget_unsorted_request("acme", "9161230021", "u1")
            .await
            .unwrap();
        assert!(store
            .unsorted_request("acme", "9161230021")
            .await
            .unwrap()
            .is_some());
        store
            .forget_unsorted_request("acme", "9161230021", "u2")
            .await
            .unwrap();
        assert_eq!(
            store.unsorted_request("acme", "9161230021").await.unwrap(),
            None
        );
        store
            .remember_unsorted_request(&request("u3", 603))
            .await
            .unwrap();
        store.delete_tenant("acme").await.unwrap();
        assert_eq!(
            store.unsorted_request("acme", "9161230021").await.unwrap(),
            None
        );
    }
}
