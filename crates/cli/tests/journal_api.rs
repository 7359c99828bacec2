//! The call journal through the entries API (issue 19): real calls served by `callbridge serve`,
//! found by their filters, and each entry's events downloaded and replayed with
//! `callbridge simulate` into the very plan the service stored (the promise: any surprise
//! can be replayed).

mod support;

use callbridge_test_support::{drop_postgres_database, fresh_postgres_database};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;
use support::*;

/// Downloads every entry's events and checks that `simulate` on them, with the tenant's
/// settings, gives the stored plan. Returns how many entries were replayed.
fn every_entry_replays_to_its_plan(
    http: &reqwest::blocking::Client,
    base: &str,
    tenant: &str,
    settings: &Path,
    entries: &[Value],
    dir: &Path,
) -> usize {
    let mut failures = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let entry_id = entry["entry_id"].as_str().unwrap();
        let answer = http
            .get(format!("{base}/api/v1/entries/{entry_id}/events"))
            .query(&[("tenant", tenant)])
            .bearer_auth(TOKEN)
            .send()
            .unwrap();
        assert_eq!(answer.status(), 200, "{entry_id}");
        let header = |name: &str| {
            answer.headers()[name]
                .to_str()
                .unwrap_or_default()
                .to_string()
        };
        assert_eq!(header("content-type"), "application/x-ndjson");
        let disposition = header("content-disposition");
        assert!(
            disposition.starts_with("attachment; filename=\"") && disposition.ends_with(".jsonl\""),
            "{disposition}"
        );
        let body = answer.text().unwrap();
        assert!(!body.is_empty(), "{entry_id}: no events");
        for line in body.lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            assert!(v["path"].as_str().unwrap().starts_with("events/"), "{line}");
            assert!(v["json"].is_object(), "{line}");
        }
        let file = dir.join(format!("entry-{i}.jsonl"));
        std::fs::write(&file, &body).unwrap();
        let replayed = simulate(settings, &file);
        let got = plans_by_entry(replayed["entries"].as_array().unwrap());
        let want = plans_by_entry(std::slice::from_ref(entry));
        if got != want {
            failures.push(format!(
                "{entry_id}:\n  replayed: {got:?}\n  stored:   {want:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    entries.len()
}

#[test]
fn each_scenarios_entry_downloads_as_events_that_simulate_turns_into_its_plan() {
    let dir = temp_dir("journal-replay");
    let cases = scenario_tenants();
    let tenants: Vec<Tenant> = cases
        .iter()
        .map(|(t, _)| Tenant {
            id: t.id.clone(),
            key: t.key.clone(),
            salt: t.salt.clone(),
            settings: t.settings.clone(),
            amocrm: None,
        })
        .collect();
    let server = Server::start(&dir, &tenants, None);
    let http = client();
    for (i, (t, case)) in cases.iter().enumerate() {
        for line in jumble(&lines_of(&case.join("events.jsonl")), i as u64 + 1) {
            assert_eq!(post_line(&http, &server.base, t, &line), 200);
        }
    }
    let mut replayed = 0;
    for (t, case) in &cases {
        let expected = simulate(&case.join("settings.toml"), &case.join("events.jsonl"));
        let n = expected["entries"].as_array().unwrap().len();
        let entries = wait_for_entries(&http, &server.base, &t.id, n, Duration::from_secs(20));
        assert_eq!(entries.len(), n, "{}", case.display());
        replayed += every_entry_replays_to_its_plan(
            &http,
            &server.base,
            &t.id,
            &case.join("settings.toml"),
            &entries,
            &dir,
        );
    }
    assert!(replayed >= cases.len(), "{replayed}");
    let missing = http
        .get(format!(
            "{}/api/v1/entries/no-such-entry/events",
            server.base
        ))
        .query(&[("tenant", cases[0].0.id.as_str())])
        .bearer_auth(TOKEN)
        .send()
        .unwrap();
    assert_eq!(missing.status(), 404);
}

/// The list through the API with these filters: (total, entry ids).
fn filtered(
    http: &reqwest::blocking::Client,
    base: &str,
    tenant: &str,
    filters: &[(&str, &str)],
) -> (u64, Vec<String>) {
    let mut query = vec![("tenant", tenant), ("limit", "500")];
    query.extend_from_slice(filters);
    let answer = http
        .get(format!("{base}/api/v1/entries"))
        .query(&query)
        .bearer_auth(TOKEN)
        .send()
        .unwrap();
    assert_eq!(answer.status(), 200, "{filters:?}");
    let page: Value = answer.json().unwrap();
    let ids = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["entry_id"].as_str().unwrap().to_string())
        .collect();
    (page["total"].as_u64().unwrap(), ids)
}

/// Generated traffic on PostgreSQL: every filter of the API finds exactly the entries whose plan
/// says so, a number typed as a person types it included, and the downloads replay.
#[test]
fn the_entries_api_filters_generated_calls_on_postgres_as_their_plans_say() {
    let url = fresh_postgres_database("journal_api");
    let dir = temp_dir("journal-api");
    let (events, settings) = generated(&dir, 60);
    let t = Tenant {
        id: "acme".into(),
        key: "k-acme".into(),
        salt: "s-acme-0000000000000000000000000".into(),
        settings: settings.clone(),
        amocrm: None,
    };
    let server = Server::start_with_grace(&dir, std::slice::from_ref(&t), Some(&url), 2);
    let http = client();
    for line in lines_of(&events) {
        assert_eq!(post_line(&http, &server.base, &t, &line), 200);
    }
    let expected = simulate(&settings, &events);
    let n = expected["entries"].as_array().unwrap().len();
    let all = wait_for_entries(&http, &server.base, &t.id, n, Duration::from_secs(40));
    assert_eq!(all.len(), n);

    let ids_where = |keep: &dyn Fn(&Value) -> bool| -> (u64, Vec<String>) {
        let ids: Vec<String> = all
            .iter()
            .filter(|e| keep(e))
            .map(|e| e["entry_id"].as_str().unwrap().to_string())
            .collect();
        (ids.len() as u64, ids)
    };
    for direction in ["inbound", "outbound", "internal"] {
        assert_eq!(
            filtered(&http, &server.base, &t.id, &[("direction", direction)]),
            ids_where(&|e| e["direction"] == direction),
            "{direction}"
        );
    }
    assert_eq!(
        filtered(&http, &server.base, &t.id, &[("outcome", "missed")]),
        ids_where(&|e| e["outcome"] == "missed")
    );
    // Nothing is delivered here (no CRM): entries with records wait, the rest have nothing to.
    assert_eq!(
        filtered(&http, &server.base, &t.id, &[("delivery", "pending")]),
        ids_where(&|e| !e["records"].as_array().unwrap().is_empty())
    );
    assert_eq!(
        filtered(
            &http,
            &server.base,
            &t.id,
            &[("delivery", "nothing_to_deliver")]
        ),
        ids_where(&|e| e["records"].as_array().unwrap().is_empty())
    );
    // A client's number, typed as "8 (916) 123-45-67" would be.
    let phone = all
        .iter()
        .find_map(|e| e["client_phone"].as_str().filter(|p| p.len() == 11))
        .expect("a client with an 11-digit number")
        .to_string();
    let typed = format!(
        "8 ({}) {}-{}-{}",
        &phone[1..4],
        &phone[4..7],
        &phone[7..9],
        &phone[9..]
    );
    let by_phone = filtered(&http, &server.base, &t.id, &[("phone", &typed)]);
    assert!(by_phone.0 >= 1, "{typed}");
    assert_eq!(
        by_phone,
        ids_where(&|e| e["client_phone"] == phone.as_str())
    );
    // An employee's extension, among records and ignored conversations.
    let extension = all
        .iter()
        .find_map(|e| e["records"][0]["employee_extension"].as_str())
        .expect("a record with an employee")
        .to_string();
    let has_extension = |e: &Value| {
        ["records", "ignored"].iter().any(|list| {
            e[*list]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["employee_extension"] == extension.as_str())
        })
    };
    assert_eq!(
        filtered(&http, &server.base, &t.id, &[("extension", &extension)]),
        ids_where(&has_extension)
    );
    // Planned today (UTC), and nothing planned tomorrow or before 1970-01-02.
    let planned_ms = all[0]["planned_at_ms"].as_i64().unwrap();
    let day = callbridge_core::policy::civil_date(planned_ms.div_euclid(86_400_000));
    assert_eq!(
        filtered(&http, &server.base, &t.id, &[("from", &day), ("to", &day)]).0,
        n as u64
    );
    assert_eq!(
        filtered(&http, &server.base, &t.id, &[("to", "1970-01-01")]).0,
        0
    );
    // A refusal names the parameter.
    let bad = http
        .get(format!("{}/api/v1/entries", server.base))
        .query(&[("tenant", "acme"), ("direction", "sideways")])
        .bearer_auth(TOKEN)
        .send()
        .unwrap();
    assert_eq!(bad.status(), 400);
    let problem: Value = bad.json().unwrap();
    assert_eq!(
        problem["detail"],
        "direction: expected inbound, outbound, internal, got \"sideways\""
    );
    // Downloads replay on PostgreSQL too (its ids commit out of order).
    every_entry_replays_to_its_plan(&http, &server.base, &t.id, &settings, &all[..10], &dir);
    drop(server);
    drop_postgres_database(&url);
}
