//! The log as reconciliation reads it: entries with events in a period, and which have a
//! summary. On SQLite and on PostgreSQL (`CALLBRIDGE_TEST_POSTGRES_URL`).

use callbridge_store::NewEvent;
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
    }
}
