//! The log as reconciliation reads it: entries not planned yet with events in a period, and
//! which have a summary. On SQLite and on PostgreSQL (`CALLBRIDGE_TEST_POSTGRES_URL`).

use callbridge_store::{NewEvent, NewOutboxItem};
use std::collections::HashMap;
use support::stores;

mod support;

fn event(tenant: &str, entry: &str, path: &str, key: &str) -> NewEvent {
    NewEvent {
        tenant_id: tenant.into(),
        entry_id: entry.into(),
        path: path.into(),
        dedupe_key: key.into(),
        json: "{}".into(),
        received_at_ms: 1_000,
    }
}

#[tokio::test]
async fn entries_of_a_period_with_whether_a_summary_came() {
    for store in stores("reconcile_seen").await {
        store
            .append_events(&[
                // Before the period.
                event(
                    "t",
                    "early",
                    "events/call",
                    "001763999999:call:early:1:1:Appeared",
                ),
                // Within: legs only; legs and a summary; a recovered summary only.
                event(
                    "t",
                    "legs",
                    "events/call",
                    "001764000000:call:legs:1:1:Appeared",
                ),
                event(
                    "t",
                    "legs",
                    "events/call",
                    "001764000050:call:legs:1:2:Connected",
                ),
                event(
                    "t",
                    "done",
                    "events/call",
                    "001764000010:call:done:1:1:Appeared",
                ),
                event("t", "done", "events/summary", "001764000090:summary:done"),
                event(
                    "t",
                    "recovered",
                    "recovered/summary",
                    "001764000100:summary:recovered",
                ),
                // Its last second is in; the next one is not.
                event(
                    "t",
                    "edge",
                    "events/call",
                    "001764000200:call:edge:1:1:Appeared",
                ),
                event(
                    "t",
                    "after",
                    "events/call",
                    "001764000201:call:after:1:1:Appeared",
                ),
                // Keyed without a time: not looked at.
                event(
                    "t",
                    "stored",
                    "events/record/added",
                    "record-added:stored:r1",
                ),
                // Another tenant.
                event(
                    "u",
                    "other",
                    "events/call",
                    "001764000000:call:other:1:1:Appeared",
                ),
            ])
            .await
            .unwrap();
        let seen = store
            .entries_seen_between("t", 1_764_000_000, 1_764_000_200)
            .await
            .unwrap();
        let want: HashMap<String, bool> = [
            ("legs", false),
            ("done", true),
            ("recovered", true),
            ("edge", false),
        ]
        .into_iter()
        .map(|(e, s)| (e.to_string(), s))
        .collect();
        assert_eq!(seen, want, "{}", store.backend());
        assert!(store
            .entries_seen_between("nobody", 0, i64::MAX / 2)
            .await
            .unwrap()
            .is_empty());

        // Events below the recovery mark belong to planned entries, which reconciliation
        // decides by their plans: the log is read from the mark on.
        let late = store
            .append_events(&[event(
                "t",
                "late",
                "events/call",
                "001764000150:call:late:1:1:Appeared",
            )])
            .await
            .unwrap();
        let callbridge_store::Appended::Stored(late_id) = late[0] else {
            panic!("not stored: {late:?}");
        };
        store.set_recovery_mark(late_id, 2_000).await.unwrap();
        let seen = store
            .entries_seen_between("t", 1_764_000_000, 1_764_000_200)
            .await
            .unwrap();
        let want: HashMap<String, bool> = [("late".to_string(), false)].into_iter().collect();
        assert_eq!(seen, want, "{}", store.backend());
    }
}

#[tokio::test]
async fn only_a_plan_without_summary_and_without_crm_work_is_forgotten() {
    for store in stores("reconcile_forget").await {
        let plan = serde_json::json!({"records": []});
        let call = |entry: &str| NewOutboxItem {
            item_key: format!("t/{entry}/0/call"),
            kind: "call".into(),
            payload: serde_json::json!({}),
        };
        store
            .save_plan("t", "grace", "grace", &plan, &[], 1)
            .await
            .unwrap();
        store
            .save_plan("t", "summary", "summary", &plan, &[], 1)
            .await
            .unwrap();
        store
            .save_plan("t", "written", "grace", &plan, &[call("written")], 1)
            .await
            .unwrap();
        // An entry id that another one's starts with: its items are not the shorter one's.
        store
            .save_plan("t", "ab", "abandoned", &plan, &[], 1)
            .await
            .unwrap();
        store
            .save_plan("t", "ab/cd", "grace", &plan, &[call("ab/cd")], 1)
            .await
            .unwrap();
        let b = store.backend();
        assert!(
            store.forget_unwritten_plan("t", "grace").await.unwrap(),
            "{b}"
        );
        assert!(store.entry("t", "grace").await.unwrap().is_none(), "{b}");
        assert!(
            !store.forget_unwritten_plan("t", "grace").await.unwrap(),
            "{b}: gone"
        );
        assert!(
            !store.forget_unwritten_plan("t", "summary").await.unwrap(),
            "{b}"
        );
        assert!(
            !store.forget_unwritten_plan("t", "written").await.unwrap(),
            "{b}"
        );
        assert!(
            !store.forget_unwritten_plan("u", "ab").await.unwrap(),
            "{b}: other tenant"
        );
        assert!(store.forget_unwritten_plan("t", "ab").await.unwrap(), "{b}");
        assert!(
            !store.forget_unwritten_plan("t", "ab/cd").await.unwrap(),
            "{b}"
        );
        // Planned again afterwards, as the processor does with the recovered summary.
        assert!(
            store
                .save_plan("t", "grace", "summary", &plan, &[], 2)
                .await
                .unwrap(),
            "{b}"
        );
    }
}
