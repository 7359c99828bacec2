//! Endpoints (request shapes on the wire, answers read back), pagination, the calls outcome, and
//! how every kind of failure is reported.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use callbridge_amocrm::*;
use common::*;
use serde_json::{json, Value};

fn new_call(request_id: &str) -> NewCall {
    NewCall {
        direction: CallDirection::Outbound,
        uniq: format!("uniq-{request_id}"),
        duration: 42,
        source: "callbridge".into(),
        phone: "+79161234567".into(),
        link: Some("https://rec.example/1.mp3".into()),
        call_status: Some(4),
        call_result: None,
        call_responsible: Some(1001),
        responsible_user_id: Some(1001),
        created_by: Some(1001),
        created_at: Some(1_718_000_000),
        request_id: request_id.into(),
    }
}

fn calls_answer(calls: Value, errors: Value) -> Answer {
    json(
        200,
        json!({"_total_items": 1, "errors": errors, "_embedded": {"calls": calls}}),
    )
}

// ---------------------------------------------------------------------------------------------
// Headers and configuration

#[tokio::test]
async fn requests_carry_the_user_agent_and_the_bearer() {
    let mock = mock(|_| json(200, json!({"id": 9, "name": "Acme", "subdomain": "acme"}))).await;
    let account = client(&mock.base).account().await.expect("account");
    assert_eq!(
        account,
        Account {
            id: 9,
            name: "Acme".into(),
            subdomain: Some("acme".into())
        }
    );
    let seen = &mock.requests()[0];
    assert_eq!(
        seen.path, "/api/v4/account",
        "the trailing slash of base_url is tolerated"
    );
    assert_eq!(
        seen.headers.get("user-agent").and_then(|v| v.to_str().ok()),
        Some(concat!("callbridge/", env!("CARGO_PKG_VERSION")))
    );
    assert_eq!(seen.bearer().as_deref(), Some(LONG_LIVED_TOKEN));
}

#[test]
fn bad_configuration_is_refused_with_a_reason() {
    let store = || -> Arc<dyn TokenStore> { Arc::new(MemoryTokenStore::new()) };
    let auth = AuthConfig::LongLived { token: "t".into() };
    let cases = [
        (
            AccountConfig::new("acme.amocrm.ru", auth.clone()),
            "not a URL",
        ),
        (
            AccountConfig::new("ftp://acme.amocrm.ru", auth.clone()),
            "http(s)",
        ),
        (
            AccountConfig::new("https://acme.amocrm.ru/?x=1", auth.clone()),
            "query",
        ),
        (
            AccountConfig {
                requests_per_second: 0,
                ..AccountConfig::new("https://acme.amocrm.ru", auth.clone())
            },
            "requests_per_second",
        ),
        (
            AccountConfig::new(
                "https://acme.amocrm.ru",
                AuthConfig::LongLived { token: " ".into() },
            ),
            "long-lived token",
        ),
        (
            AccountConfig::new(
                "https://acme.amocrm.ru",
                AuthConfig::OAuth {
                    client_id: "id".into(),
                    client_secret: "".into(),
                    redirect_uri: "https://x".into(),
                },
            ),
            "client_secret",
        ),
    ];
    for (config, expected) in cases {
        match AmoClient::new(config, store()) {
            Err(Error::Config(why)) => {
                assert!(why.contains(expected), "{why} should mention {expected}")
            }
            Err(other) => panic!("expected Config, got {other:?}"),
            Ok(_) => panic!("accepted a configuration that should mention {expected}"),
        }
    }
    let ok = AmoClient::new(AccountConfig::new("https://acme.amocrm.ru/", auth), store())
        .expect("valid");
    assert_eq!(ok.base_url(), "https://acme.amocrm.ru");
}

// ---------------------------------------------------------------------------------------------
// Reads

#[tokio::test]
async fn users_follow_next_links_until_the_last_page() {
    let mock = mock(|seen| {
        let page: u32 = seen.query_one("page").and_then(|p| p.parse().ok()).unwrap_or(0);
        let users = json!([{"id": page * 10, "name": format!("User {page}"), "email": format!("u{page}@acme.ru")},
                           {"id": page * 10 + 1, "name": format!("User {page}b"), "email": ""}]);
        let mut body = json!({"_page": page, "_embedded": {"users": users}, "_links": {"self": {"href": "x"}}});
        if page < 3 {
            body["_links"]["next"] = json!({"href": format!("/api/v4/users?page={}", page + 1)});
        }
        json(200, body)
    })
    .await;
    let users = client(&mock.base).users().await.expect("users");
    assert_eq!(
        users.iter().map(|u| u.id).collect::<Vec<_>>(),
        vec![10, 11, 20, 21, 30, 31]
    );
    assert_eq!(users[0].email.as_deref(), Some("u1@acme.ru"));
    assert_eq!(users[1].email, None, "an empty email is no email");
    let seen = mock.requests();
    assert_eq!(seen.len(), 3);
    assert!(seen
        .iter()
        .all(|s| s.query_one("limit").as_deref() == Some("250")));
}

#[tokio::test]
async fn a_204_ends_a_list_and_an_empty_list_is_empty() {
    let mock = mock(|seen| match (seen.path.as_str(), seen.query_one("page").as_deref()) {
        ("/api/v4/users", Some("1")) => json(
            200,
            json!({"_embedded": {"users": [{"id": 1, "name": "A"}]}, "_links": {"next": {"href": "n"}}}),
        ),
        _ => no_content(),
    })
    .await;
    let client = client(&mock.base);
    assert_eq!(client.users().await.expect("users").len(), 1);
    assert!(client.pipelines().await.expect("pipelines").is_empty());
    assert!(client
        .find_contacts_by_phone("+7 916 000")
        .await
        .expect("contacts")
        .is_empty());
    assert!(client
        .list_tasks(&TasksFilter::default())
        .await
        .expect("tasks")
        .is_empty());
    assert_eq!(client.contact(5).await.expect("contact"), None);
}

#[tokio::test]
async fn pipelines_are_read() {
    let mock = mock(|_| {
        json(
            200,
            json!({"_embedded": {"pipelines": [
                {"id": 1, "name": "Sales", "is_main": true, "_embedded": {"statuses": []}},
                {"id": 2, "name": "Support", "is_main": false, "is_unsorted_on": false}]}}),
        )
    })
    .await;
    let pipelines = client(&mock.base).pipelines().await.expect("pipelines");
    assert_eq!(
        pipelines,
        vec![
            Pipeline {
                id: 1,
                name: "Sales".into(),
                is_main: true,
                is_unsorted_on: true
            },
            Pipeline {
                id: 2,
                name: "Support".into(),
                is_main: false,
                is_unsorted_on: false
            }
        ]
    );
    assert_eq!(mock.requests()[0].path, "/api/v4/leads/pipelines");
}

fn contact_json(id: u64) -> Value {
    json!({
        "id": id, "name": "Ivan", "responsible_user_id": 1001,
        "custom_fields_values": [
            {"field_id": 1, "field_code": "EMAIL", "values": [{"value": "i@x.ru"}]},
            {"field_id": 2, "field_code": "PHONE", "values": [
                {"value": "+79161234567", "enum_code": "WORK"}, {"value": 89161234568u64, "enum_code": "MOB"}]}
        ],
        "_embedded": {"leads": [{"id": 501}, {"id": 502}]}
    })
}

#[tokio::test]
async fn contacts_by_phone_come_with_phones_and_lead_ids() {
    let mock = mock(|seen| {
        if seen.path == "/api/v4/contacts" {
            json(200, json!({"_embedded": {"contacts": [contact_json(77), contact_json(79), {"id": 78, "name": null, "custom_fields_values": null}]}}))
        } else {
            json(200, contact_json(77))
        }
    })
    .await;
    let client = client(&mock.base);
    let found = client
        .find_contacts_by_phone("+79161234567")
        .await
        .expect("contacts");
    assert_eq!(
        found[0],
        Contact {
            id: 77,
            name: "Ivan".into(),
            responsible_user_id: Some(1001),
            phones: vec!["+79161234567".into(), "89161234568".into()],
            lead_ids: vec![501, 502],
        }
    );
    assert_eq!(
        found.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![77, 79],
        "a contact without phones is not the caller, however the search matched it"
    );
    let seen = &mock.requests()[0];
    assert_eq!(
        seen.query_one("query").as_deref(),
        Some("+79161234567"),
        "the + survives encoding"
    );
    assert_eq!(seen.query_one("with").as_deref(), Some("leads"));

    let one = client.contact(77).await.expect("contact").expect("exists");
    assert_eq!(one.lead_ids, vec![501, 502]);
    assert_eq!(mock.requests()[1].path, "/api/v4/contacts/77");

    let err = client
        .find_contacts_by_phone("  ")
        .await
        .expect_err("empty phone");
    assert!(
        matches!(err, Error::Config(_)),
        "an empty query would list every contact: {err:?}"
    );
    assert_eq!(mock.requests().len(), 2);
}

/// A contact as amoCRM returns it with these PHONE values (and a name).
fn contact_with_phones(id: u64, name: &str, phones: &[&str]) -> Value {
    let values: Vec<Value> = phones.iter().map(|p| json!({"value": p})).collect();
    json!({"id": id, "name": name, "custom_fields_values": [
        {"field_id": 2, "field_code": "PHONE", "values": values}]})
}

#[tokio::test]
async fn phone_lookup_keeps_contacts_whose_phone_field_holds_the_number_in_any_form() {
    let forms = [
        "+79161234567",
        "+7 916 123 45 67",
        "+7 (916) 123-45-67",
        "8 (916) 123-45-67",
        "89161234567",
        "8-916-123-45-67",
        "9161234567",
    ];
    let mut contacts: Vec<Value> = forms
        .iter()
        .enumerate()
        .map(|(i, form)| contact_with_phones(100 + i as u64, "Client", &["+7 495 000-00-00", form]))
        .collect();
    // What the full-text query also returns: the digits in the name, in another field, in
    // another number that merely contains them.
    contacts.push(contact_with_phones(
        200,
        "Client 79161234567",
        &["+7 495 111-11-11"],
    ));
    contacts.push(json!({"id": 201, "name": "Mail", "custom_fields_values": [
        {"field_id": 1, "field_code": "EMAIL", "values": [{"value": "79161234567@example.com"}]}]}));
    contacts.push(contact_with_phones(202, "Other", &["+7 916 123-45-68"]));
    contacts.push(contact_with_phones(203, "Extension", &["4567"]));
    let answer = json!({"_embedded": {"contacts": contacts}});
    let mock = mock(move |_| json(200, answer.clone())).await;
    let client = client(&mock.base);
    for asked in ["+79161234567", "8 (916) 123-45-67", "9161234567"] {
        let found = client
            .find_contacts_by_phone(asked)
            .await
            .expect("contacts");
        assert_eq!(
            found.iter().map(|c| c.id).collect::<Vec<_>>(),
            (100..107).collect::<Vec<u64>>(),
            "asked {asked:?}"
        );
    }
}

#[tokio::test]
async fn a_missing_contact_is_none_on_404_too() {
    let mock = mock(|_| problem(404, json!({"title": "Not Found", "status": 404}))).await;
    assert_eq!(client(&mock.base).contact(1).await.expect("contact"), None);
}

#[tokio::test]
async fn leads_by_ids_filter_in_chunks_and_know_which_are_open() {
    let mock = mock(|seen| {
        let leads: Vec<Value> = seen
            .query_all("filter[id][]")
            .iter()
            .map(|id| {
                let id: u64 = id.parse().expect("id");
                json!({"id": id, "name": format!("Lead {id}"), "status_id": 140 + id % 5, "pipeline_id": 1, "responsible_user_id": 7})
            })
            .collect();
        json(200, json!({"_embedded": {"leads": leads}}))
    })
    .await;
    let ids: Vec<u64> = (1..=60).collect();
    let client = client(&mock.base);
    let leads = client.leads_by_ids(&ids).await.expect("leads");
    assert_eq!(leads.iter().map(|l| l.id).collect::<Vec<_>>(), ids);
    let seen = mock.requests();
    assert_eq!(seen.len(), 2, "60 ids go in two requests");
    assert_eq!(seen[0].query_all("filter[id][]").len(), 50);
    let lead = |id: u64| leads.iter().find(|l| l.id == id).expect("lead");
    assert!(!lead(2).is_open(), "status 142 is won");
    assert!(!lead(3).is_open(), "status 143 is lost");
    assert!(lead(4).is_open());
    assert!(client.leads_by_ids(&[]).await.expect("none").is_empty());
    assert_eq!(mock.requests().len(), 2, "no request for no ids");
}

#[tokio::test]
async fn contacts_by_ids_ask_for_their_leads_in_chunks() {
    let mock = mock(|seen| {
        let contacts: Vec<Value> = seen
            .query_all("filter[id][]")
            .iter()
            .map(|id| {
                let id: u64 = id.parse().expect("id");
                json!({"id": id, "name": format!("C{id}"), "_embedded": {"leads": [{"id": id * 10}]}})
            })
            .collect();
        json(200, json!({"_embedded": {"contacts": contacts}}))
    })
    .await;
    let ids: Vec<u64> = (1..=55).collect();
    let client = client(&mock.base);
    let found = client.contacts_by_ids(&ids).await.expect("contacts");
    assert_eq!(found.iter().map(|c| c.id).collect::<Vec<_>>(), ids);
    assert_eq!(found[4].lead_ids, vec![50]);
    let seen = mock.requests();
    assert_eq!(seen.len(), 2, "55 ids go in two requests");
    assert_eq!(seen[0].query_all("filter[id][]").len(), 50);
    assert_eq!(seen[1].query_one("with").as_deref(), Some("leads"));
    assert!(client.contacts_by_ids(&[]).await.expect("none").is_empty());
    assert_eq!(mock.requests().len(), 2, "no request for no ids");
}

#[tokio::test]
async fn list_notes_sends_the_filters_and_reads_every_page() {
    let mock = mock(|seen| {
        if seen.query_one("page").as_deref() == Some("2") {
            return no_content();
        }
        json(
            200,
            json!({"_embedded": {"notes": [
                {"id": 1, "entity_id": 77, "note_type": "call_in", "params": {"uniq": "u1", "duration": 5},
                 "responsible_user_id": 1001, "created_by": 0, "created_at": 1718000000},
                {"id": 2, "entity_id": 78, "note_type": "call_out"}]},
                   "_links": {"next": {"href": "more"}}}),
        )
    })
    .await;
    let filter = NotesFilter {
        note_types: vec!["call_in".into(), "call_out".into()],
        entity_ids: vec![77, 78],
        updated_from: Some(1_717_000_000),
        updated_to: Some(1_717_000_100),
    };
    let notes = client(&mock.base)
        .list_notes(EntityType::Contacts, &filter)
        .await
        .expect("notes");
    assert_eq!(notes.len(), 2);
    assert_eq!(notes[0].params["uniq"], "u1");
    assert_eq!(notes[0].created_by, Some(0));
    assert_eq!(notes[1].params, Value::Null);
    let seen = mock.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].path, "/api/v4/contacts/notes");
    assert_eq!(
        seen[0].query_all("filter[note_type][]"),
        vec!["call_in", "call_out"]
    );
    assert_eq!(seen[0].query_all("filter[entity_id][]"), vec!["77", "78"]);
    assert_eq!(
        seen[0].query_one("filter[updated_at][from]").as_deref(),
        Some("1717000000")
    );
    assert_eq!(
        seen[0].query_one("filter[updated_at][to]").as_deref(),
        Some("1717000100")
    );
}

#[tokio::test]
async fn list_tasks_sends_the_filters() {
    let mock = mock(|_| {
        json(
            200,
            json!({"_embedded": {"tasks": [{"id": 5, "text": "Call back", "complete_till": 1718003600,
                "is_completed": false, "responsible_user_id": 1001, "entity_id": 77, "entity_type": "contacts"}]}}),
        )
    })
    .await;
    let filter = TasksFilter {
        is_completed: Some(false),
        entity_type: Some(EntityType::Contacts),
        entity_ids: vec![77],
        responsible_user_ids: vec![1001, 1002],
    };
    let tasks = client(&mock.base).list_tasks(&filter).await.expect("tasks");
    assert_eq!(
        tasks,
        vec![Task {
            id: 5,
            text: "Call back".into(),
            complete_till: 1_718_003_600,
            is_completed: false,
            responsible_user_id: Some(1001),
            entity_id: Some(77),
            entity_type: Some("contacts".into()),
        }]
    );
    let seen = &mock.requests()[0];
    assert_eq!(seen.path, "/api/v4/tasks");
    assert_eq!(seen.query_one("filter[is_completed]").as_deref(), Some("0"));
    assert_eq!(
        seen.query_one("filter[entity_type]").as_deref(),
        Some("contacts")
    );
    assert_eq!(seen.query_all("filter[entity_id][]"), vec!["77"]);
    assert_eq!(
        seen.query_all("filter[responsible_user_id][]"),
        vec!["1001", "1002"]
    );
}

// ---------------------------------------------------------------------------------------------
// Writes

#[tokio::test]
async fn contacts_and_leads_are_created_in_the_documented_shape() {
    let mock = mock(|seen| match seen.path.as_str() {
        "/api/v4/contacts" => json(200, json!({"_embedded": {"contacts": [{"id": 11, "request_id": "c1", "_links": {}}]}})),
        _ => json(200, json!({"_embedded": {"leads": [{"id": 21, "request_id": "l1"}, {"id": 22, "request_id": 1}]}})),
    })
    .await;
    let client = client(&mock.base);
    let contacts = client
        .create_contacts(&[NewContact {
            name: "Ivan".into(),
            phone: "+79161234567".into(),
            responsible_user_id: Some(1001),
            request_id: Some("c1".into()),
        }])
        .await
        .expect("contacts");
    assert_eq!(
        contacts,
        vec![Created {
            id: 11,
            request_id: Some("c1".into())
        }]
    );
    let leads = client
        .create_leads(&[
            NewLead {
                name: "Call".into(),
                responsible_user_id: Some(1001),
                pipeline_id: Some(3),
                contact_id: Some(11),
                request_id: Some("l1".into()),
            },
            NewLead {
                name: "Bare".into(),
                responsible_user_id: None,
                pipeline_id: None,
                contact_id: None,
                request_id: None,
            },
        ])
        .await
        .expect("leads");
    assert_eq!(
        leads[1].request_id.as_deref(),
        Some("1"),
        "a numeric request_id is read as text"
    );

    let seen = mock.requests();
    assert_eq!(seen[0].method, "POST");
    assert_eq!(
        seen[0].json(),
        json!([{"name": "Ivan", "responsible_user_id": 1001, "request_id": "c1",
                "custom_fields_values": [{"field_code": "PHONE", "values": [{"value": "+79161234567", "enum_code": "WORK"}]}]}])
    );
    assert_eq!(
        seen[0]
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    assert_eq!(
        seen[1].json(),
        json!([{"name": "Call", "responsible_user_id": 1001, "pipeline_id": 3, "request_id": "l1",
                "_embedded": {"contacts": [{"id": 11}]}},
               {"name": "Bare"}])
    );
}

#[tokio::test]
async fn complex_leads_send_the_contact_embedded_and_read_the_array_answer() {
    let mock = mock(|_| {
        json(
            200,
            json!([{"id": 31, "contact_id": 41, "company_id": null, "request_id": ["cl1"], "merged": false},
                   {"id": 32, "contact_id": null, "request_id": [], "merged": true}]),
        )
    })
    .await;
    let lead = |n: &str| NewComplexLead {
        name: format!("Lead {n}"),
        responsible_user_id: Some(1001),
        contact: NewContact {
            name: format!("Contact {n}"),
            phone: "+79161234567".into(),
            responsible_user_id: Some(1001),
            request_id: Some("ignored".into()),
        },
        request_id: Some(format!("cl{n}")),
    };
    let created = client(&mock.base)
        .create_complex_leads(&[lead("1"), lead("2")])
        .await
        .expect("complex");
    assert_eq!(
        created,
        vec![
            ComplexCreated {
                id: 31,
                contact_id: Some(41),
                request_id: Some("cl1".into()),
                merged: false
            },
            ComplexCreated {
                id: 32,
                contact_id: None,
                request_id: None,
                merged: true
            },
        ]
    );
    let seen = &mock.requests()[0];
    assert_eq!(seen.path, "/api/v4/leads/complex");
    assert_eq!(
        seen.json()[0],
        json!({"name": "Lead 1", "responsible_user_id": 1001, "request_id": "cl1",
               "_embedded": {"contacts": [{"name": "Contact 1", "responsible_user_id": 1001,
                   "custom_fields_values": [{"field_code": "PHONE", "values": [{"value": "+79161234567", "enum_code": "WORK"}]}]}]}})
    );
}

#[tokio::test]
async fn unsorted_sip_sends_metadata_and_the_callers_contact() {
    let mock = mock(|_| {
        json(
            200,
            json!({"_total_items": 1, "_embedded": {"unsorted": [{"uid": "abc-1", "request_id": "u1",
                "_embedded": {"leads": [{"id": 51}], "contacts": [{"id": 61}], "companies": []}}]}}),
        )
    })
    .await;
    let item = NewUnsortedSip {
        source_uid: "callbridge".into(),
        source_name: "callbridge".into(),
        uniq: "entry-1".into(),
        from: "+79161234567".into(),
        to: "101".into(),
        called_at: 1_718_000_000,
        duration: 0,
        link: None,
        service_code: "callbridge".into(),
        call_responsible: Some(1001),
        contact_name: "+79161234567".into(),
        lead_name: "Missed call +79161234567".into(),
        responsible_user_id: None,
        request_id: Some("u1".into()),
    };
    let created = client(&mock.base)
        .add_unsorted_sip(&[item])
        .await
        .expect("unsorted");
    assert_eq!(
        created,
        vec![UnsortedCreated {
            uid: "abc-1".into(),
            lead_id: Some(51),
            contact_id: Some(61),
            request_id: Some("u1".into())
        }]
    );
    let seen = &mock.requests()[0];
    assert_eq!(seen.path, "/api/v4/leads/unsorted/sip");
    assert_eq!(
        seen.json(),
        json!([{"source_uid": "callbridge", "source_name": "callbridge", "created_at": 1718000000, "request_id": "u1",
                "metadata": {"uniq": "entry-1", "from": "+79161234567", "phone": "101", "called_at": 1718000000,
                             "duration": 0, "service_code": "callbridge", "call_responsible": 1001,
                             "is_call_event_needed": true},
                "_embedded": {"leads": [{"name": "Missed call +79161234567"}],
                              "contacts": [{"name": "+79161234567", "custom_fields_values": [
                                  {"field_code": "PHONE", "values": [{"value": "+79161234567", "enum_code": "WORK"}]}]}]}}])
    );
}

#[tokio::test]
async fn call_notes_go_to_the_entity_path_without_nulls() {
    let mock = mock(|_| {
        json(
            200,
            json!({"_embedded": {"notes": [{"id": 71, "entity_id": 77, "request_id": "n1"}]}}),
        )
    })
    .await;
    let note = NewNote {
        entity_id: 77,
        note_type: NoteType::CallIn {
            params: CallNoteParams {
                uniq: "u1".into(),
                duration: 35,
                source: "callbridge".into(),
                phone: "+79161234567".into(),
                link: None,
                call_status: Some(6),
                call_result: None,
                call_responsible: Some(1001),
            },
        },
        responsible_user_id: Some(1001),
        created_by: None,
        request_id: Some("n1".into()),
    };
    let created = client(&mock.base)
        .add_notes(EntityType::Leads, &[note])
        .await
        .expect("notes");
    assert_eq!(
        created,
        vec![Created {
            id: 71,
            request_id: Some("n1".into())
        }]
    );
    let seen = &mock.requests()[0];
    assert_eq!(seen.path, "/api/v4/leads/notes");
    assert_eq!(
        seen.json(),
        json!([{"entity_id": 77, "note_type": "call_in", "responsible_user_id": 1001, "request_id": "n1",
                "params": {"uniq": "u1", "duration": 35, "source": "callbridge", "phone": "+79161234567",
                           "call_status": 6, "call_responsible": 1001}}])
    );
}

#[tokio::test]
async fn tasks_are_created_with_a_plural_entity_type() {
    let mock = mock(|_| {
        json(
            200,
            json!({"_embedded": {"tasks": [{"id": 81, "request_id": "t1"}]}}),
        )
    })
    .await;
    let task = NewTask {
        text: "Call back +79161234567".into(),
        complete_till: 1_718_003_600,
        task_type_id: 1,
        responsible_user_id: Some(1001),
        entity_id: Some(77),
        entity_type: Some(EntityType::Contacts),
        request_id: Some("t1".into()),
    };
    let created = client(&mock.base)
        .create_tasks(&[task])
        .await
        .expect("tasks");
    assert_eq!(created[0].id, 81);
    assert_eq!(
        mock.requests()[0].json(),
        json!([{"text": "Call back +79161234567", "complete_till": 1718003600, "task_type_id": 1,
                "responsible_user_id": 1001, "entity_id": 77, "entity_type": "contacts", "request_id": "t1"}])
    );
}

#[tokio::test]
async fn the_call_card_is_a_v2_phone_call_event() {
    let mock = mock(|_| raw(202, "")).await;
    let client = client(&mock.base);
    client
        .show_call_card(&[CallCardEvent {
            phone_number: "+79161234567".into(),
            users: vec![1001, 1002],
        }])
        .await
        .expect("202");
    let seen = &mock.requests()[0];
    assert_eq!(seen.path, "/api/v2/events");
    assert_eq!(
        seen.json(),
        json!({"add": [{"type": "phone_call", "phone_number": "+79161234567", "users": [1001, 1002]}]})
    );
    let err = client
        .show_call_card(&[CallCardEvent {
            phone_number: "+79161234567".into(),
            users: vec![],
        }])
        .await
        .expect_err("no users");
    assert!(
        matches!(&err, Error::Config(why) if why.contains("every user")),
        "{err:?}"
    );
    assert_eq!(mock.requests().len(), 1);
}

#[tokio::test]
async fn batches_over_fifty_are_refused_before_sending_and_empty_ones_send_nothing() {
    let mock = mock(|_| json(200, json!({}))).await;
    let client = client(&mock.base);
    let calls: Vec<NewCall> = (0..51).map(|i| new_call(&i.to_string())).collect();
    let err = client.add_calls(&calls).await.expect_err("51 calls");
    assert!(
        matches!(&err, Error::Config(why) if why.contains("51")),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    let tasks: Vec<NewTask> = (0..60)
        .map(|i| NewTask {
            text: "x".into(),
            complete_till: i,
            task_type_id: 1,
            responsible_user_id: None,
            entity_id: None,
            entity_type: None,
            request_id: None,
        })
        .collect();
    assert!(matches!(
        client.create_tasks(&tasks).await,
        Err(Error::Config(_))
    ));
    assert_eq!(
        client.add_calls(&[]).await.expect("empty"),
        CallsOutcome::default()
    );
    assert!(client.create_contacts(&[]).await.expect("empty").is_empty());
    assert!(mock.requests().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Calls

#[tokio::test]
async fn calls_are_sent_without_nulls_and_results_matched_by_request_id() {
    let mock = mock(|_| {
        calls_answer(
            json!([{"id": 1111, "entity_id": 2222, "entity_type": "contact", "account_id": 3, "request_id": "a",
                    "_embedded": {"entity": {"id": 2222}}}]),
            json!([{"request_id": "b", "title": "Entity not found", "status": 400}]),
        )
    })
    .await;
    let mut second = new_call("b");
    second.link = None;
    second.call_status = None;
    second.created_at = None;
    let outcome = client(&mock.base)
        .add_calls(&[new_call("a"), second])
        .await
        .expect("calls");
    assert_eq!(
        outcome,
        CallsOutcome {
            created: vec![CallCreated {
                request_id: "a".into(),
                id: 1111,
                entity_id: 2222,
                entity_type: "contact".into()
            }],
            not_found: vec!["b".into()],
            other_errors: vec![],
        }
    );
    let sent = mock.requests()[0].json();
    assert_eq!(
        sent[0],
        json!({"direction": "outbound", "uniq": "uniq-a", "duration": 42, "source": "callbridge",
               "phone": "+79161234567", "link": "https://rec.example/1.mp3", "call_status": 4,
               "call_responsible": 1001, "responsible_user_id": 1001, "created_by": 1001,
               "created_at": 1718000000, "request_id": "a"})
    );
    let keys: Vec<&String> = sent[1].as_object().expect("object").keys().collect();
    assert!(!keys
        .iter()
        .any(|k| ["link", "call_status", "call_result", "created_at"].contains(&k.as_str())));
    assert!(!mock.requests()[0].body.contains("null"));
}

#[tokio::test]
async fn a_400_entity_not_found_is_an_outcome() {
    let mock = mock(|seen| {
        let batch = seen.json().as_array().map(Vec::len).unwrap_or(0);
        match batch {
            // A batch of three: the CRM names two items and leaves one error anonymous.
            3 => problem(
                400,
                json!({"_total_items": 0, "errors": [
                    {"request_id": "x", "title": "Entity not found"},
                    {"request_id": "1", "title": "Entity not found"},
                    {"title": "Entity not found", "status": 400}]}),
            ),
            // A batch of two: one attached, one not found, and still a 400.
            2 => problem(
                400,
                json!({"_total_items": 1,
                       "_embedded": {"calls": [{"id": 9, "entity_id": 8, "entity_type": "lead", "request_id": "p"}]},
                       "errors": [{"request_id": "q", "title": "Entity not found"}]}),
            ),
            _ => problem(400, json!({"_total_items": 0, "errors": [{"title": "Entity not found", "status": 400}]})),
        }
    })
    .await;
    let client = client(&mock.base);

    let single = client
        .add_calls(&[new_call("only")])
        .await
        .expect("outcome");
    assert_eq!(
        single.not_found,
        vec!["only".to_string()],
        "the one call of the batch is the one not found"
    );
    assert!(single.created.is_empty() && single.other_errors.is_empty());

    let batch = client
        .add_calls(&[new_call("x"), new_call("y"), new_call("z")])
        .await
        .expect("outcome");
    let mixed = client
        .add_calls(&[new_call("p"), new_call("q")])
        .await
        .expect("outcome");
    assert_eq!(
        mixed.created,
        vec![CallCreated {
            request_id: "p".into(),
            id: 9,
            entity_id: 8,
            entity_type: "lead".into()
        }],
        "calls attached in a 400 answer are not lost (they would be sent twice)"
    );
    assert_eq!(mixed.not_found, vec!["q".to_string()]);

    // "1" is not a request_id sent but an index: the second call.
    assert_eq!(batch.not_found, vec!["x".to_string(), "y".to_string()]);
    assert_eq!(
        batch.other_errors,
        vec![ItemError {
            request_id: None,
            message: "Entity not found".into()
        }]
    );
}

#[tokio::test]
async fn other_calls_errors_are_rejections_with_items() {
    let mock = mock(|_| {
        problem(
            400,
            json!({"validation-errors": [{"request_id": "b", "errors": [
                       {"code": "NotSupportedChoice", "path": "call_status", "detail": "The value you selected is not a valid choice."}]}],
                   "title": "Bad Request", "type": "https://httpstatus.es/400", "status": 400, "detail": "Request validation failed"}),
        )
    })
    .await;
    let err = client(&mock.base)
        .add_calls(&[new_call("a"), new_call("b")])
        .await
        .expect_err("validation");
    match &err {
        Error::Rejected {
            status,
            message,
            items,
        } => {
            assert_eq!(*status, 400);
            assert_eq!(message, "Bad Request: Request validation failed");
            assert_eq!(items.len(), 1);
            assert_eq!(items[0].request_id.as_deref(), Some("b"));
            assert!(
                items[0].message.contains("call_status: NotSupportedChoice"),
                "{}",
                items[0].message
            );
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
    assert!(!err.is_retryable());
}

// ---------------------------------------------------------------------------------------------
// Failures

#[tokio::test]
async fn status_codes_map_to_errors() {
    let mock = mock(|seen| match seen.path.as_str() {
        "/api/v4/account" => html(503, "<html><body>Service <b>Unavailable</b></body></html>"),
        "/api/v4/users" => html(403, "<html><head><title>403 Forbidden</title></head><body>nginx</body></html>"),
        "/api/v4/leads/pipelines" => html(429, "<html>Too Many Requests</html>"),
        "/api/v4/contacts" => problem(402, json!({"title": "Payment Required", "status": 402, "detail": "Account is not paid"})),
        _ => problem(422, json!({"validation-errors": [{"request_id": "t1", "errors": [{"code": "NotNull", "path": "text"}]}],
                                  "title": "Unprocessable Entity"})),
    })
    .await;
    let client = client(&mock.base);

    let err = client.account().await.expect_err("503");
    match &err {
        Error::Server { status, body } => {
            assert_eq!(*status, 503);
            assert!(body.contains("Unavailable"), "{body}");
        }
        other => panic!("expected Server, got {other:?}"),
    }
    assert!(err.is_retryable());

    let err = client.users().await.expect_err("403");
    assert!(matches!(err, Error::Blocked), "{err:?}");
    assert!(
        !err.is_retryable(),
        "a block must never be retried automatically"
    );

    let err = client.pipelines().await.expect_err("429");
    assert!(matches!(err, Error::RateLimited), "{err:?}");

    let err = client
        .find_contacts_by_phone("+7916")
        .await
        .expect_err("402");
    assert!(
        matches!(&err, Error::Rejected { status: 402, message, items } if message.contains("Account is not paid") && items.is_empty()),
        "{err:?}"
    );

    let err = client
        .create_tasks(&[NewTask {
            text: "".into(),
            complete_till: 0,
            task_type_id: 1,
            responsible_user_id: None,
            entity_id: None,
            entity_type: None,
            request_id: Some("t1".into()),
        }])
        .await
        .expect_err("422");
    match &err {
        Error::Rejected {
            status: 422, items, ..
        } => {
            assert_eq!(
                items,
                &vec![ItemError {
                    request_id: Some("t1".into()),
                    message: "text: NotNull".into()
                }]
            );
        }
        other => panic!("expected Rejected 422, got {other:?}"),
    }
}

#[tokio::test]
async fn a_slow_answer_is_a_timeout() {
    let mock =
        mock(|_| json(200, json!({"id": 1, "name": "x"})).after(Duration::from_secs(3))).await;
    let client = client_with(&mock.base, 1000, Duration::from_millis(300));
    let err = client.account().await.expect_err("timeout");
    assert!(matches!(err, Error::Timeout), "{err:?}");
    assert!(err.is_retryable());
    assert!(err.outcome_unknown());
}

#[tokio::test]
async fn a_refused_connection_is_unreachable_and_certainly_not_received() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let client = client(&format!("http://127.0.0.1:{port}"));
    let err = client.account().await.expect_err("nobody listens");
    assert!(matches!(err, Error::Unreachable(_)), "{err:?}");
    assert!(err.is_retryable());
    assert!(!err.outcome_unknown());
}

#[tokio::test]
async fn malformed_answers_are_decode_errors_naming_the_fault() {
    let hits = Arc::new(AtomicUsize::new(0));
    let mock = mock({
        let hits = hits.clone();
        move |seen| {
            hits.fetch_add(1, Ordering::SeqCst);
            match seen.path.as_str() {
                "/api/v4/account" => raw(200, "{not json"),
                "/api/v4/users" => json(
                    200,
                    json!({"_embedded": {"users": [{"id": 1}, {"id": "two"}]}}),
                ),
                "/api/v4/leads/pipelines" => json(200, json!({"_links": {}})),
                "/api/v4/leads" => json(
                    200,
                    json!({"_embedded": {"leads": [{"id": 1, "name": "no status"}]}}),
                ),
                "/api/v4/calls" => json(
                    200,
                    json!({"_embedded": {"calls": [{"id": -1, "entity_id": 2}]}}),
                ),
                "/api/v4/leads/complex" => json(200, json!({"id": 1})),
                _ => raw(200, ""),
            }
        }
    })
    .await;
    let client = client(&mock.base);
    let decode = |err: Error| match err {
        Error::Decode(why) => why,
        other => panic!("expected Decode, got {other:?}"),
    };
    let why = decode(client.account().await.expect_err("not json"));
    assert!(
        why.contains("GET /api/v4/account") && why.contains("not JSON"),
        "{why}"
    );
    let why = decode(client.users().await.expect_err("bad id"));
    assert!(why.contains("_embedded.users[1].id"), "{why}");
    let why = decode(client.pipelines().await.expect_err("no list"));
    assert!(why.contains("_embedded.pipelines"), "{why}");
    let why = decode(client.leads_by_ids(&[1]).await.expect_err("no status"));
    assert!(
        why.contains("_embedded.leads[0]") && why.contains("status_id"),
        "{why}"
    );
    let why = decode(
        client
            .add_calls(&[new_call("a")])
            .await
            .expect_err("negative id"),
    );
    assert!(why.contains("_embedded.calls[0].id"), "{why}");
    let lead = NewComplexLead {
        name: "x".into(),
        responsible_user_id: None,
        contact: NewContact {
            name: "y".into(),
            phone: "1".into(),
            responsible_user_id: None,
            request_id: None,
        },
        request_id: None,
    };
    let why = decode(
        client
            .create_complex_leads(&[lead])
            .await
            .expect_err("not an array"),
    );
    assert!(why.contains("POST /api/v4/leads/complex"), "{why}");
    let why = decode(
        client
            .create_contacts(&[NewContact {
                name: "y".into(),
                phone: "1".into(),
                responsible_user_id: None,
                request_id: None,
            }])
            .await
            .expect_err("empty body"),
    );
    assert!(why.contains("POST /api/v4/contacts"), "{why}");
    assert_eq!(hits.load(Ordering::SeqCst), 7);
}

#[tokio::test]
async fn whole_account_lists_read_every_page_of_contacts_leads_and_unsorted() {
    let mock = mock(|seen| {
        let page: u32 = seen
            .query_one("page")
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        if page > 2 {
            return no_content();
        }
        let next = json!({"next": {"href": "more"}});
        match seen.path.as_str() {
            "/api/v4/contacts" => json(
                200,
                json!({"_embedded": {"contacts": [{"id": page, "name": format!("C{page}"),
                        "custom_fields_values": null}]}, "_links": next}),
            ),
            "/api/v4/leads" => json(
                200,
                json!({"_embedded": {"leads": [{"id": 10 + page, "status_id": 142}]}, "_links": next}),
            ),
            "/api/v4/leads/unsorted" => json(
                200,
                json!({"_embedded": {"unsorted": [{"uid": format!("u{page}"), "category": "sip",
                        "_embedded": {"leads": [{"id": 20 + page}], "contacts": [{"id": 30 + page}]}}]},
                       "_links": next}),
            ),
            other => panic!("unexpected {other}"),
        }
    })
    .await;
    let client = client(&mock.base);
    let contacts = client.contacts().await.expect("contacts");
    assert_eq!(
        contacts.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(contacts[1].name, "C2");
    let leads = client.leads().await.expect("leads");
    assert_eq!(leads.iter().map(|l| l.id).collect::<Vec<_>>(), vec![11, 12]);
    assert!(!leads[0].is_open());
    let unsorted = client.unsorted().await.expect("unsorted");
    assert_eq!(
        unsorted,
        vec![
            Unsorted {
                uid: "u1".into(),
                lead_id: Some(21),
                contact_id: Some(31),
                source_uid: None,
                uniq: None,
                created_at: None,
            },
            Unsorted {
                uid: "u2".into(),
                lead_id: Some(22),
                contact_id: Some(32),
                source_uid: None,
                uniq: None,
                created_at: None,
            },
        ]
    );
    // Three pages each (the third answers 204), at amoCRM's page size.
    let seen = mock.requests();
    assert_eq!(seen.len(), 9);
    assert!(seen
        .iter()
        .all(|s| s.query_one("limit").as_deref() == Some("250")));
}

/// Pending sip requests, newest first: the uid filter and the category go in the query; with
/// `created_from` the walk stops after the page that reaches older requests; `metadata.uniq`
/// is read, and another category's metadata shape reads as none.
#[tokio::test]
async fn pending_unsorted_requests_are_walked_newest_first_until_older_than_wanted() {
    let mock = mock(|seen| {
        let page: i64 = seen
            .query_one("page")
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        // Page 1: created at 1000 and 900; page 2: 800 and 700; page 3: 600.
        let item = |n: i64| {
            json!({"uid": format!("u{n}"), "source_uid": "callbridge", "category": "sip",
                   "created_at": 1100 - 100 * n,
                   "metadata": if n == 2 { json!([]) } else { json!({"uniq": format!("call-{n}"), "from": "+79161230021"}) },
                   "_embedded": {"leads": [{"id": 600 + n}], "contacts": [{"id": 650 + n}]}})
        };
        let items: Vec<Value> = match page {
            1 => vec![item(1), item(2)],
            2 => vec![item(3), item(4)],
            3 => vec![item(5)],
            _ => return no_content(),
        };
        json(
            200,
            json!({"_embedded": {"unsorted": items}, "_links": {"next": {"href": "more"}}}),
        )
    })
    .await;
    let client = client(&mock.base);
    let filter = UnsortedFilter {
        uids: vec!["u1".into(), "u3".into()],
        created_from: Some(850),
    };
    let found = client.pending_unsorted_sip(&filter).await.expect("list");
    // Page 2 reached 800 < 850: no third page.
    assert_eq!(
        found.iter().map(|u| u.uid.as_str()).collect::<Vec<_>>(),
        vec!["u1", "u2", "u3", "u4"]
    );
    assert_eq!(found[0].uniq.as_deref(), Some("call-1"));
    assert_eq!(found[0].source_uid.as_deref(), Some("callbridge"));
    assert_eq!(
        (found[0].lead_id, found[0].contact_id, found[0].created_at),
        (Some(601), Some(651), Some(1000))
    );
    assert_eq!(found[1].uniq, None, "an array metadata has no uniq");
    let seen = mock.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].path, "/api/v4/leads/unsorted");
    assert_eq!(seen[0].query_all("filter[uid][]"), vec!["u1", "u3"]);
    assert_eq!(seen[0].query_all("filter[category][]"), vec!["sip"]);
    assert_eq!(
        seen[0].query_one("order[created_at]").as_deref(),
        Some("desc")
    );
    // Without a lower bound, every page is read.
    let all = client
        .pending_unsorted_sip(&UnsortedFilter::default())
        .await
        .expect("list");
    assert_eq!(all.len(), 5);
}
