//! The CRM API over real HTTP: search, calls and where they land, notes, unsorted, leads, tasks,
//! the call card, and the error shapes.

mod support;

use serde_json::{json, Value};
use support::*;

fn call(phone: &str, request_id: &str) -> Value {
    json!({"direction": "inbound", "uniq": format!("u-{request_id}"), "duration": 42, "source": "test-pbx",
           "phone": phone, "link": "https://pbx.example.com/r.mp3", "call_status": 4,
           "call_result": "Talked", "call_responsible": 1002, "responsible_user_id": 1002,
           "request_id": request_id})
}

#[tokio::test]
async fn contact_search_by_phone_and_name_and_204_when_empty() {
    let sandbox = start_with(config()).await;
    let api = Api::new(&sandbox);

    for q in [
        "+79161234567",
        "89161234567",
        "9161234567",
        "1234567",
        "+7 (916) 123-45-67",
    ] {
        let r = api
            .get(&format!(
                "/api/v4/contacts?query={}&with=leads",
                urlencode(q)
            ))
            .await;
        assert_eq!(r.status, 200, "{q}: {}", r.text);
        assert!(r.content_type.starts_with("application/hal+json"));
        let found = r.json["_embedded"]["contacts"].as_array().unwrap();
        assert_eq!(found.len(), 1, "{q}");
        assert_eq!(found[0]["name"], "Known client");
        assert_eq!(found[0]["custom_fields_values"][0]["field_code"], "PHONE");
        assert_eq!(found[0]["_embedded"]["leads"], json!([]));
    }
    let r = api.get("/api/v4/contacts?query=open&with=leads").await;
    let found = r.json["_embedded"]["contacts"].as_array().unwrap();
    assert_eq!(found.len(), 2, "{}", r.text);
    assert_eq!(found[0]["_embedded"]["leads"].as_array().unwrap().len(), 2);

    let r = api.get("/api/v4/contacts?query=%2B79990001122").await;
    assert_eq!(r.status, 204);
    assert!(r.text.is_empty());
    assert!(r.content_type.is_empty());

    // Paging: one per page, _links.next until the end, then 204.
    let r = api.get("/api/v4/contacts?limit=2").await;
    assert_eq!(r.json["_embedded"]["contacts"].as_array().unwrap().len(), 2);
    assert!(r.json["_links"]["next"]["href"]
        .as_str()
        .unwrap()
        .contains("page=2"));
    let r = api.get("/api/v4/contacts?limit=2&page=2").await;
    assert_eq!(r.json["_embedded"]["contacts"].as_array().unwrap().len(), 1);
    assert!(r.json["_links"].get("next").is_none());
    assert_eq!(api.get("/api/v4/contacts?limit=2&page=3").await.status, 204);
    let r = api.get("/api/v4/contacts?limit=500").await;
    assert_eq!(r.status, 400);
    assert!(r.json["detail"].as_str().unwrap().contains("limit"));

    let id = api.contact_id("Known").await;
    let r = api.get(&format!("/api/v4/contacts/{id}")).await;
    assert_eq!(r.json["id"], id);
    assert_eq!(api.get("/api/v4/contacts/999").await.status, 204);
    sandbox.shutdown().await;
}

#[tokio::test]
async fn calls_land_on_the_single_active_lead_or_else_the_contact() {
    let sandbox = start_with(config()).await;
    let api = Api::new(&sandbox);
    let known = api.contact_id("Known client").await;
    let two_open = api.contact_id("Two open").await;
    let won_open = api.contact_id("Won and open").await;
    let leads = api
        .get(&format!("/api/v4/contacts/{won_open}?with=leads"))
        .await;
    let lead_ids: Vec<u64> = leads.json["_embedded"]["leads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_u64().unwrap())
        .collect();
    assert_eq!(lead_ids.len(), 2);
    let open_lead = {
        let mut open = None;
        for id in &lead_ids {
            let l = api.get(&format!("/api/v4/leads/{id}")).await;
            if l.json["status_id"] != 142 {
                open = Some(*id);
            }
        }
        open.unwrap()
    };

    let r = api
        .post(
            "/api/v4/calls",
            &json!([
                call("8 (916) 123-45-67", "a"),
                call("+79030000002", "b"),
                call("79030000003", "c")
            ]),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["_total_items"], 3);
    assert_eq!(r.json["errors"], json!([]));
    let calls = r.json["_embedded"]["calls"].as_array().unwrap();
    let by_rid = |rid: &str| {
        calls
            .iter()
            .find(|c| c["request_id"] == rid)
            .unwrap()
            .clone()
    };
    assert_eq!(by_rid("a")["entity_type"], "contact");
    assert_eq!(by_rid("a")["entity_id"], known);
    // Two open leads: the contact.
    assert_eq!(by_rid("b")["entity_type"], "contact");
    assert_eq!(by_rid("b")["entity_id"], two_open);
    // One won, one open: the open lead.
    assert_eq!(by_rid("c")["entity_type"], "lead");
    assert_eq!(by_rid("c")["entity_id"], open_lead);
    assert_eq!(by_rid("c")["account_id"], 31_000_001);

    // The call is a call_in note with the call's fields.
    let notes = api
        .get(&format!(
            "/api/v4/leads/{open_lead}/notes?filter[note_type][]=call_in"
        ))
        .await;
    assert_eq!(notes.status, 200, "{}", notes.text);
    let note = &notes.json["_embedded"]["notes"][0];
    assert_eq!(note["id"], by_rid("c")["id"]);
    assert_eq!(note["note_type"], "call_in");
    assert_eq!(
        note["params"],
        json!({"uniq": "u-c", "duration": 42, "source": "test-pbx", "phone": "79030000003",
               "link": "https://pbx.example.com/r.mp3", "call_status": 4, "call_result": "Talked",
               "call_responsible": 1002})
    );
    assert_eq!(note["responsible_user_id"], 1002);
    assert_eq!(note["created_by"], 1002);
    sandbox.shutdown().await;
}

#[tokio::test]
async fn partial_batch_is_200_with_errors_and_all_unknown_is_400() {
    let sandbox = start_with(config()).await;
    let api = Api::new(&sandbox);
    let r = api
        .post(
            "/api/v4/calls",
            &json!([
                call("+79161234567", "known"),
                call("+70000000001", "stranger")
            ]),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["_total_items"], 1);
    assert_eq!(r.json["_embedded"]["calls"][0]["request_id"], "known");
    let errors = r.json["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["request_id"], "stranger");
    assert_eq!(errors[0]["title"], "Entity not found");
    assert_eq!(errors[0]["status"], 400);

    let mut robot = call("+70000000002", "x");
    robot.as_object_mut().unwrap().remove("request_id");
    let r = api
        .post("/api/v4/calls", &json!([robot, call("+70000000003", "y")]))
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.content_type.starts_with("application/problem+json"));
    assert_eq!(r.json["_total_items"], 0);
    assert_eq!(r.json["errors"][0]["title"], "Entity not found");
    // Without a request_id the item's index is echoed.
    assert_eq!(r.json["errors"][0]["request_id"], "0");
    assert_eq!(r.json["errors"][1]["request_id"], "y");
    assert_eq!(r.json["_embedded"]["calls"], json!([]));

    // Nothing was stored for the strangers; one note for the known contact.
    let known = api.contact_id("Known client").await;
    let notes = api.get(&format!("/api/v4/contacts/{known}/notes")).await;
    assert_eq!(
        notes.json["_embedded"]["notes"].as_array().unwrap().len(),
        1
    );
    sandbox.shutdown().await;
}

#[tokio::test]
async fn invalid_calls_are_rejected_whole_with_validation_errors() {
    let sandbox = start_with(config()).await;
    let api = Api::new(&sandbox);
    let r = api
        .post(
            "/api/v4/calls",
            &json!([
                call("+79161234567", "fine"),
                {"direction": "sideways", "duration": "long", "phone": "+79161234567", "request_id": "bad"},
                {"direction": "outbound", "duration": 1, "source": "s", "phone": "+79161234567",
                 "call_status": 9, "created_by": 4242}
            ]),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.json["detail"], "Request validation failed");
    let items = r.json["validation-errors"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["request_id"], "bad");
    let paths: Vec<&str> = items[0]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, vec!["direction", "duration", "source"]);
    assert_eq!(items[1]["request_id"], "2");
    let codes: Vec<(&str, &str)> = items[1]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["code"].as_str().unwrap(), e["path"].as_str().unwrap()))
        .collect();
    assert_eq!(
        codes,
        vec![
            ("NotSupportedChoice", "call_status"),
            ("NotSupportedChoice", "created_by")
        ]
    );
    let known = api.contact_id("Known client").await;
    assert_eq!(
        api.get(&format!("/api/v4/contacts/{known}/notes"))
            .await
            .status,
        204
    );

    let many: Vec<Value> = (0..51)
        .map(|i| call("+79161234567", &i.to_string()))
        .collect();
    let r = api.post("/api/v4/calls", &Value::Array(many)).await;
    assert_eq!(r.status, 400);
    assert!(
        r.json["detail"].as_str().unwrap().contains("at most 50"),
        "{}",
        r.text
    );

    let r = api
        .post("/api/v4/calls", &call("+79161234567", "not-an-array"))
        .await;
    assert_eq!(r.status, 400);
    assert!(
        r.json["detail"].as_str().unwrap().contains("array"),
        "{}",
        r.text
    );
    let r = api.post_raw("/api/v4/calls", "[{\"direction\": ").await;
    assert_eq!(r.status, 400);
    assert!(
        r.json["detail"]
            .as_str()
            .unwrap()
            .starts_with("Malformed JSON"),
        "{}",
        r.text
    );
    sandbox.shutdown().await;
}

#[tokio::test]
async fn notes_reject_nulls_and_list_with_filters() {
    let sandbox = start_with(config()).await;
    let api = Api::new(&sandbox);
    let known = api.contact_id("Known client").await;
    let r = api
        .post(
            "/api/v4/contacts/notes",
            &json!([{"entity_id": known, "note_type": "call_out", "request_id": "n1",
                     "params": {"uniq": "x", "duration": 5, "source": "s", "phone": "+79161234567",
                                "link": null, "call_result": null, "call_status": null}}]),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    let errors = r.json["validation-errors"][0]["errors"].as_array().unwrap();
    let got: Vec<(&str, &str)> = errors
        .iter()
        .map(|e| (e["code"].as_str().unwrap(), e["path"].as_str().unwrap()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("NotNullable", "params.link"),
            ("NotNullable", "params.call_result"),
            ("NotNullable", "params.call_status")
        ]
    );
    assert_eq!(r.json["validation-errors"][0]["request_id"], "n1");

    let good = |uniq: &str, kind: &str| {
        json!({"entity_id": known, "note_type": kind,
               "params": {"uniq": uniq, "duration": 5, "source": "s", "phone": "+79161234567"}})
    };
    let r = api
        .post(
            "/api/v4/contacts/notes",
            &json!([
                good("1", "call_out"),
                good("2", "call_in"),
                good("3", "call_in")
            ]),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let ids: Vec<u64> = r.json["_embedded"]["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids.len(), 3);
    let r = api
        .post(
            &format!("/api/v4/contacts/{known}/notes"),
            &json!([{"note_type": "common", "params": {"text": "hello"}}]),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["_embedded"]["notes"][0]["entity_id"], known);

    let r = api.get(&format!("/api/v4/contacts/notes?filter[entity_id][]={known}&filter[note_type][]=call_in&limit=1")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json["_embedded"]["notes"][0]["params"]["uniq"], "2");
    let next = r.json["_links"]["next"]["href"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = next.strip_prefix(&api.base).unwrap();
    let r = api.get(path).await;
    assert_eq!(r.json["_embedded"]["notes"][0]["params"]["uniq"], "3");
    assert!(r.json["_links"].get("next").is_none());
    let r = api
        .get("/api/v4/contacts/notes?filter[note_type][0]=call_out&filter[note_type][0]=common")
        .await;
    assert_eq!(r.json["_embedded"]["notes"].as_array().unwrap().len(), 2);
    let r = api
        .get("/api/v4/contacts/notes?filter[updated_at][from]=4102444800")
        .await;
    assert_eq!(r.status, 204);
    let r = api.get("/api/v4/leads/notes").await;
    assert_eq!(r.status, 204);

    // Unknown entity, unknown note type.
    let r = api
        .post(
            "/api/v4/leads/424242/notes",
            &json!([{"note_type": "common", "params": {"text": "x"}}]),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json["validation-errors"][0]["errors"][0]["code"],
        "NotFound"
    );
    let r = api
        .post(
            "/api/v4/contacts/notes",
            &json!([{"entity_id": known, "note_type": "sms_in", "params": {}}]),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json["validation-errors"][0]["errors"][0]["path"],
        "note_type"
    );
    sandbox.shutdown().await;
}

#[tokio::test]
async fn new_contacts_and_leads_are_searchable_and_receive_calls() {
    let sandbox = start_with(config()).await;
    let api = Api::new(&sandbox);
    let r = api
        .post(
            "/api/v4/contacts",
            &json!([{"name": "New person", "responsible_user_id": 1002, "request_id": "c1",
                     "custom_fields_values": [{"field_code": "PHONE", "values": [{"value": "+7 495 111-22-33", "enum_code": "WORK"}]}]}]),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let contact = r.json["_embedded"]["contacts"][0]["id"].as_u64().unwrap();
    assert_eq!(r.json["_embedded"]["contacts"][0]["request_id"], "c1");
    assert_eq!(api.contact_id("84951112233").await, contact);

    let r = api
        .post(
            "/api/v4/leads",
            &json!([{"name": "Deal", "price": 100, "_embedded": {"contacts": [{"id": contact}]}}]),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let lead = r.json["_embedded"]["leads"][0]["id"].as_u64().unwrap();
    let r = api
        .get(&format!("/api/v4/leads/{lead}?with=contacts"))
        .await;
    assert_eq!(r.json["_embedded"]["contacts"][0]["id"], contact);
    assert_eq!(r.json["status_id"], 7_000_011);
    let r = api
        .get(&format!("/api/v4/leads?filter[id][]={lead}&with=contacts"))
        .await;
    assert_eq!(r.json["_embedded"]["leads"].as_array().unwrap().len(), 1);

    let r = api
        .post("/api/v4/calls", &json!([call("+74951112233", "z")]))
        .await;
    assert_eq!(r.json["_embedded"]["calls"][0]["entity_type"], "lead");
    assert_eq!(r.json["_embedded"]["calls"][0]["entity_id"], lead);

    // Complex: lead with a new contact.
    let r = api
        .post(
            "/api/v4/leads/complex",
            &json!([{"name": "Complex", "_embedded": {"contacts": [{"first_name": "Anna",
                "custom_fields_values": [{"field_code": "PHONE", "values": [{"value": "+79001112233"}]}]}]}}]),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let item = &r.json[0];
    assert_eq!(item["merged"], false);
    assert_eq!(item["request_id"], json!(["0"]));
    assert!(item["company_id"].is_null());
    let new_contact = item["contact_id"].as_u64().unwrap();
    assert_eq!(api.contact_id("+79001112233").await, new_contact);

    let many: Vec<Value> = (0..51).map(|_| json!({"name": "x"})).collect();
    assert_eq!(
        api.post("/api/v4/leads/complex", &Value::Array(many))
            .await
            .status,
        400
    );
    let r = api
        .post("/api/v4/contacts", &json!([{"name": "x", "custom_fields_values": [{"field_code": "FAX", "values": [{"value": "1"}]}]}]))
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json["validation-errors"][0]["errors"][0]["path"],
        "custom_fields_values.0.field_code"
    );
    sandbox.shutdown().await;
}

#[tokio::test]
async fn unsorted_sip_rejects_duplicates_and_accept_makes_it_visible() {
    let sandbox = start_with(config()).await;
    let api = Api::new(&sandbox);
    let item = |uniq: &str, phone: &str| {
        json!({"source_uid": "pbx", "source_name": "Test PBX", "request_id": uniq,
               "metadata": {"uniq": uniq, "from": phone, "phone": "101", "called_at": 1_718_000_000,
                            "duration": 12, "link": "https://pbx.example.com/1.mp3", "service_code": "pbx",
                            "is_call_event_needed": true},
               "_embedded": {"leads": [{"name": format!("Call {phone}")}],
                             "contacts": [{"name": phone, "custom_fields_values": [{"field_code": "PHONE", "values": [{"value": phone}]}]}]}})
    };
    let r = api
        .post(
            "/api/v4/leads/unsorted/sip",
            &json!([item("call-1", "+79265550001")]),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let added = &r.json["_embedded"]["unsorted"][0];
    let uid = added["uid"].as_str().unwrap().to_owned();
    let lead = added["_embedded"]["leads"][0]["id"].as_u64().unwrap();
    let contact = added["_embedded"]["contacts"][0]["id"].as_u64().unwrap();

    // Not visible before acceptance: search, calls and direct reads miss it.
    assert_eq!(
        api.get("/api/v4/contacts?query=79265550001").await.status,
        204
    );
    assert_eq!(api.get(&format!("/api/v4/leads/{lead}")).await.status, 204);
    assert_eq!(
        api.post("/api/v4/calls", &json!([call("+79265550001", "early")]))
            .await
            .status,
        400
    );

    // Duplicate uniq, in a later request or in the same one.
    let r = api
        .post(
            "/api/v4/leads/unsorted/sip",
            &json!([
                item("call-2", "+79265550002"),
                item("call-1", "+79265550001")
            ]),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.content_type.starts_with("application/problem+json"));
    let err = &r.json["validation-errors"][0];
    assert_eq!(err["request_id"], "call-1");
    assert_eq!(err["errors"][0]["path"], "metadata.uniq");
    assert!(err["errors"][0]["detail"]
        .as_str()
        .unwrap()
        .contains("call-1"));
    let r = api
        .post(
            "/api/v4/leads/unsorted/sip",
            &json!([item("dup", "+79265550003"), item("dup", "+79265550003")]),
        )
        .await;
    assert_eq!(r.status, 400);
    let r = api
        .post(
            "/api/v4/leads/unsorted/sip",
            &json!([{"source_name": "x", "metadata": {}}]),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json["validation-errors"][0]["errors"][0]["path"],
        "source_uid"
    );

    let r = api
        .get(&format!("/api/v4/leads/unsorted?filter[uid]={uid}"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let listed = &r.json["_embedded"]["unsorted"][0];
    assert_eq!(listed["category"], "sip");
    assert_eq!(listed["metadata"]["uniq"], "call-1");
    assert!(listed["metadata"].get("is_call_event_needed").is_none());
    assert_eq!(
        api.get(&format!("/api/v4/leads/unsorted/{uid}"))
            .await
            .status,
        200
    );

    let r = api
        .post(
            &format!("/api/v4/leads/unsorted/{uid}/accept"),
            &json!({"user_id": 1002}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["_embedded"]["leads"][0]["id"], lead);
    assert_eq!(api.contact_id("79265550001").await, contact);
    let l = api
        .get(&format!("/api/v4/leads/{lead}?with=contacts"))
        .await;
    assert_eq!(l.json["status_id"], 7_000_011);
    assert_eq!(l.json["responsible_user_id"], 1002);
    assert_eq!(l.json["_embedded"]["contacts"][0]["id"], contact);
    let notes = api.get(&format!("/api/v4/leads/{lead}/notes")).await;
    let note = &notes.json["_embedded"]["notes"][0];
    assert_eq!(note["note_type"], "call_in");
    assert_eq!(note["params"]["uniq"], "call-1");
    assert_eq!(note["params"]["phone"], "+79265550001");
    assert_eq!(note["params"]["duration"], 12);
    // It has left the unsorted list; accepting twice is refused.
    assert_eq!(api.get("/api/v4/leads/unsorted").await.status, 204);
    assert_eq!(
        api.post(&format!("/api/v4/leads/unsorted/{uid}/accept"), &json!({}))
            .await
            .status,
        400
    );
    assert_eq!(
        api.post("/api/v4/leads/unsorted/nope/accept", &json!({}))
            .await
            .status,
        404
    );

    // Now the number is known: a call lands on the accepted lead.
    let r = api
        .post("/api/v4/calls", &json!([call("+79265550001", "later")]))
        .await;
    assert_eq!(r.json["_embedded"]["calls"][0]["entity_id"], lead);

    // Decline removes the item and its entities.
    let r = api
        .post(
            "/api/v4/leads/unsorted/sip",
            &json!([item("call-9", "+79265550009")]),
        )
        .await;
    let uid9 = r.json["_embedded"]["unsorted"][0]["uid"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = api
        .delete(&format!("/api/v4/leads/unsorted/{uid9}/decline"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        api.get("/api/v4/contacts?query=79265550009").await.status,
        204
    );
    assert_eq!(api.get("/api/v4/leads/unsorted").await.status, 204);
    sandbox.shutdown().await;
}

#[tokio::test]
async fn tasks_add_filter_and_complete() {
    let sandbox = start_with(config()).await;
    let api = Api::new(&sandbox);
    let known = api.contact_id("Known client").await;
    let r = api
        .post(
            "/api/v4/tasks",
            &json!([{"text": "Call back", "complete_till": 1_900_000_000, "entity_type": "contacts",
                     "entity_id": known, "responsible_user_id": 1002},
                    {"text": "Other", "complete_till": 1_900_000_000}]),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let id = r.json["_embedded"]["tasks"][0]["id"].as_u64().unwrap();

    let r = api
        .get(&format!("/api/v4/tasks?filter[entity_type]=contacts&filter[entity_id][]={known}&filter[is_completed]=0"))
        .await;
    let tasks = r.json["_embedded"]["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0]["task_type_id"], 1);
    assert_eq!(tasks[0]["responsible_user_id"], 1002);
    let r = api
        .get("/api/v4/tasks?filter[responsible_user_id][]=1001")
        .await;
    assert_eq!(r.json["_embedded"]["tasks"].as_array().unwrap().len(), 1);

    let r = api
        .patch(
            &format!("/api/v4/tasks/{id}"),
            &json!({"is_completed": true, "result": {"text": "done"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        api.get("/api/v4/tasks?filter[is_completed]=1").await.json["_embedded"]["tasks"][0]["id"],
        id
    );
    assert_eq!(
        api.patch("/api/v4/tasks/1", &json!({"is_completed": true}))
            .await
            .status,
        404
    );

    let r = api.post("/api/v4/tasks", &json!([{"text": "x", "complete_till": 1, "entity_type": "contact", "entity_id": known}])).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json["validation-errors"][0]["errors"][0]["path"],
        "entity_type"
    );
    let r = api
        .post("/api/v4/tasks", &json!([{"complete_till": 1}]))
        .await;
    assert_eq!(r.json["validation-errors"][0]["errors"][0]["path"], "text");
    sandbox.shutdown().await;
}

#[tokio::test]
async fn call_card_events_are_accepted_and_recorded() {
    let sandbox = start_with(config()).await;
    let api = Api::new(&sandbox);
    let r = api
        .post("/api/v2/events", &json!({"add": [{"type": "phone_call", "phone_number": "+79161234567", "users": [1001, "1002"]}]}))
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    let r = api
        .post(
            "/api/v2/events",
            &json!({"add": [{"type": "incoming_call", "phone_number": "1"}]}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json["validation-errors"][0]["errors"][0]["path"], "type");
    let r = api.post("/api/v2/events", &json!([1])).await;
    assert_eq!(r.status, 400);

    let events = sandbox.call_events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].phone_number, "+79161234567");
    assert_eq!(events[0].users, vec![json!(1001), json!("1002")]);
    let over_http = send(
        &client(),
        reqwest::Method::GET,
        &format!("{}/_sandbox/call_events", api.base),
        None,
        None,
    )
    .await;
    assert_eq!(over_http.json[0]["phone_number"], "+79161234567");
    assert!(over_http.json[0]["received_at_ms"].as_u64().unwrap() > 1_600_000_000_000);
    sandbox.shutdown().await;
}

#[tokio::test]
async fn reference_endpoints_and_error_shapes() {
    let sandbox = start_with(config()).await;
    let api = Api::new(&sandbox);
    let r = api.get("/api/v4/users?limit=1").await;
    assert_eq!(r.json["_total_items"], 2);
    assert_eq!(r.json["_page_count"], 2);
    assert_eq!(r.json["_embedded"]["users"][0]["id"], 1001);
    assert!(r.json["_links"]["next"].is_object());

    let r = api.get("/api/v4/leads/pipelines").await;
    let statuses = r.json["_embedded"]["pipelines"][0]["_embedded"]["statuses"]
        .as_array()
        .unwrap();
    let ids: Vec<u64> = statuses.iter().map(|s| s["id"].as_u64().unwrap()).collect();
    assert!(ids.contains(&142) && ids.contains(&143));
    assert!(
        statuses.iter().any(|s| s["type"] == 1),
        "an unsorted status"
    );

    let r = api.get("/api/v4/account?with=task_types").await;
    assert_eq!(r.json["_embedded"]["task_types"][0]["id"], 1);

    let r = api.get("/api/v4/nothing/here").await;
    assert_eq!(r.status, 404);
    assert!(r.content_type.starts_with("application/problem+json"));
    assert!(r.json["detail"]
        .as_str()
        .unwrap()
        .contains("/api/v4/nothing/here"));
    let r = api.delete("/api/v4/contacts").await;
    assert_eq!(r.status, 405);
    assert!(r.content_type.starts_with("application/problem+json"));
    let r = api.get("/api/v4/leads/abc").await;
    assert_eq!(r.status, 404);
    let r = api.post("/api/v4/contacts", &json!([])).await;
    assert_eq!(r.status, 400);
    let r = api.post_raw("/api/v4/contacts", "").await;
    assert_eq!(r.status, 400);
    assert!(r.json["detail"].as_str().unwrap().contains("empty"));
    let stats = sandbox.stats();
    assert_eq!(stats.by_route.get("GET /api/v4/users"), Some(&1));
    assert_eq!(stats.by_route.get("GET (no route)"), Some(&1));
    sandbox.shutdown().await;
}

#[tokio::test]
async fn garbage_bodies_get_4xx_and_never_break_the_server() {
    let sandbox = start_with(config()).await;
    let api = Api::new(&sandbox);
    let known = api.contact_id("Known client").await;
    let routes = [
        "/api/v4/contacts".to_owned(),
        "/api/v4/leads".to_owned(),
        "/api/v4/leads/complex".to_owned(),
        "/api/v4/calls".to_owned(),
        "/api/v4/contacts/notes".to_owned(),
        "/api/v4/leads/notes".to_owned(),
        format!("/api/v4/contacts/{known}/notes"),
        "/api/v4/tasks".to_owned(),
        "/api/v4/leads/unsorted/sip".to_owned(),
        "/api/v2/events".to_owned(),
        "/oauth2/access_token".to_owned(),
    ];
    let bodies = [
        "null",
        "1",
        "\"x\"",
        "[]",
        "[null]",
        "[1]",
        "[[]]",
        "[\"s\"]",
        "{}",
        "[{}]",
        r#"[{"entity_id": -1, "note_type": 5, "params": []}]"#,
        r#"[{"entity_id": 18446744073709551615, "note_type": "common", "params": {"text": null}}]"#,
        r#"[{"direction": "inbound", "duration": 1e300, "source": "s", "phone": "1"}]"#,
        r#"[{"direction": "inbound", "duration": -5, "source": "s", "phone": "+7"}]"#,
        r#"[{"name": {"a": 1}, "custom_fields_values": {"x": 1}, "_embedded": []}]"#,
        r#"[{"custom_fields_values": [{"field_code": "PHONE", "values": [{"value": null}, 3, {"value": ""}]}]}]"#,
        r#"[{"_embedded": {"contacts": [{"id": "x"}, null], "leads": "y"}}]"#,
        r#"[{"source_uid": "a", "source_name": "b", "metadata": {"uniq": 5, "duration": "x"}, "_embedded": {"leads": [1, 2]}}]"#,
        r#"[{"text": "t", "complete_till": "soon", "entity_type": "leads", "entity_id": 1, "result": 7}]"#,
        r#"{"add": [{"type": "phone_call", "phone_number": 5, "users": [{"id": 1}]}]}"#,
        r#"{"add": "x"}"#,
        r#"{"grant_type": ["x"], "client_id": {}}"#,
        "[{\"name\": \"\u{0000}\u{FFFF}ÿ\"}]",
        "{\"a\":",
        "\u{FEFF}[]",
    ];
    for route in &routes {
        for body in bodies {
            let r = api.post_raw(route, body).await;
            assert!(
                r.status.is_client_error() || r.status.is_success(),
                "{route} with {body}: {} {}",
                r.status,
                r.text
            );
            if r.status.is_client_error() && r.status != 404 {
                assert!(
                    r.content_type.starts_with("application/problem+json"),
                    "{route} {body}: {}",
                    r.content_type
                );
                let detail = &r.json["detail"];
                assert!(
                    detail.as_str().is_some_and(|d| !d.is_empty()),
                    "{route} {body}: {}",
                    r.text
                );
            }
        }
    }
    // Deep nesting is refused by the parser's recursion limit, not by a stack overflow.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert_eq!(api.post_raw("/api/v4/calls", &deep).await.status, 400);
    assert_eq!(api.get("/api/v4/account").await.status, 200);
    // Garbage in query strings and path ids.
    for path in [
        "/api/v4/contacts?page=-1",
        "/api/v4/contacts?limit=abc",
        "/api/v4/contacts?filter[id][]=x",
        "/api/v4/tasks?filter[is_completed]=maybe",
        "/api/v4/contacts/99999999999999999999999",
        "/api/v4/contacts/notes?filter[updated_at][from]=yesterday",
    ] {
        let r = api.get(path).await;
        assert!(r.status.is_client_error(), "{path}: {}", r.status);
    }
    sandbox.shutdown().await;
}

#[tokio::test]
async fn companies_and_customers_without_notes_answer_204_behind_the_token() {
    let sandbox = start_with(config()).await;
    let api = Api::new(&sandbox);
    for kind in ["companies", "customers"] {
        let r = api
            .get(&format!(
                "/api/v4/{kind}/notes?filter[note_type][]=call_in&filter[note_type][]=call_out"
            ))
            .await;
        assert_eq!(r.status, 204, "{kind}: {}", r.text);
        assert!(r.text.is_empty(), "{kind}: {}", r.text);
    }
    // Still behind the token like every API route.
    let r = send(
        &client(),
        reqwest::Method::GET,
        &format!("{}/api/v4/companies/notes", sandbox.base_url()),
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.text);
}

/// Companies and customers: created over the API, a call lands on the company that has the
/// number and on a contact's only customer, and their notes are listed and written like the
/// others'. Bad input is refused naming the field.
#[tokio::test]
async fn calls_land_on_companies_and_customers_whose_notes_are_served() {
    let sandbox = start_with(config()).await;
    let api = Api::new(&sandbox);
    let r = api
        .post(
            "/api/v4/companies",
            &json!([{"name": "Acme LLC", "request_id": "co",
                     "custom_fields_values": [{"field_code": "PHONE", "values": [{"value": "+7 (495) 111-22-33"}]}]}]),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let company = r.json["_embedded"]["companies"][0]["id"].as_u64().unwrap();
    let r = api
        .post(
            "/api/v4/contacts",
            &json!([{"name": "Petrov", "custom_fields_values": [{"field_code": "PHONE", "values": [{"value": "89165550001"}]}]}]),
        )
        .await;
    let petrov = r.json["_embedded"]["contacts"][0]["id"].as_u64().unwrap();
    let r = api
        .post(
            "/api/v4/customers",
            &json!([{"name": "Petrov, monthly box", "_embedded": {"contacts": [{"id": petrov}]}}]),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let customer = r.json["_embedded"]["customers"][0]["id"].as_u64().unwrap();
    let listed = api.get("/api/v4/customers").await;
    assert_eq!(
        listed.json["_embedded"]["customers"][0]["_embedded"]["contacts"][0]["id"],
        json!(petrov)
    );
    let listed = api.get("/api/v4/companies?query=4951112233").await;
    assert_eq!(
        listed.json["_embedded"]["companies"][0]["id"],
        json!(company)
    );

    let r = api
        .post(
            "/api/v4/calls",
            &json!([
                call("84951112233", "to-company"),
                call("+7 916 555 00 01", "to-customer")
            ]),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let landed = r.json["_embedded"]["calls"].as_array().unwrap();
    assert_eq!(
        (
            landed[0]["entity_type"].clone(),
            landed[0]["entity_id"].clone()
        ),
        (json!("company"), json!(company))
    );
    assert_eq!(
        (
            landed[1]["entity_type"].clone(),
            landed[1]["entity_id"].clone()
        ),
        (json!("customer"), json!(customer))
    );
    for (kind, uniq) in [
        ("companies", "u-to-company"),
        ("customers", "u-to-customer"),
    ] {
        let notes = api
            .get(&format!("/api/v4/{kind}/notes?filter[note_type][]=call_in"))
            .await;
        assert_eq!(notes.status, 200, "{kind}: {}", notes.text);
        assert_eq!(
            notes.json["_embedded"]["notes"][0]["params"]["uniq"],
            json!(uniq)
        );
    }
    let r = api
        .post(
            "/api/v4/companies/notes",
            &json!([{"entity_id": company, "note_type": "common", "params": {"text": "Called back"}}]),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);

    // Bad input: a company without a name, a customer of a contact that does not exist, a note
    // on a customer that does not exist.
    let r = api.post("/api/v4/companies", &json!([{"name": " "}])).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("\"name\""), "{}", r.text);
    let r = api
        .post(
            "/api/v4/customers",
            &json!([{"name": "Ghost", "_embedded": {"contacts": [{"id": 4242}]}}]),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("_embedded.contacts.0.id"), "{}", r.text);
    let r = api
        .post(
            "/api/v4/customers/notes",
            &json!([{"entity_id": 4242, "note_type": "common", "params": {"text": "x"}}]),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(
        r.text.contains("The customer 4242 does not exist"),
        "{}",
        r.text
    );
}

/// A pending request's lead is not listed but exists by id: notes can be added to it and are
/// listed; once the request is declined the lead is gone and so are its notes.
#[tokio::test]
async fn a_pending_requests_lead_takes_notes_until_the_request_is_declined() {
    let sandbox = start_with(config()).await;
    let api = Api::new(&sandbox);
    let r = api
        .post(
            "/api/v4/leads/unsorted/sip",
            &json!([{"source_uid": "pbx", "source_name": "Test PBX",
                     "metadata": {"uniq": "first", "from": "+79265550009", "phone": "101",
                                  "called_at": 1_718_000_000, "duration": 3, "service_code": "pbx"}}]),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let added = &r.json["_embedded"]["unsorted"][0];
    let uid = added["uid"].as_str().unwrap().to_owned();
    let lead = added["_embedded"]["leads"][0]["id"].as_u64().unwrap();
    let note = json!([{"entity_id": lead, "note_type": "call_in",
                       "params": {"uniq": "second", "duration": 5, "source": "pbx", "phone": "+79265550009"}}]);
    let r = api.post("/api/v4/leads/notes", &note).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let listed = api
        .get(&format!("/api/v4/leads/notes?filter[entity_id][]={lead}"))
        .await;
    assert_eq!(
        listed.json["_embedded"]["notes"][0]["params"]["uniq"],
        "second"
    );
    assert_eq!(api.get(&format!("/api/v4/leads/{lead}")).await.status, 204);

    let r = api
        .delete(&format!("/api/v4/leads/unsorted/{uid}/decline"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let listed = api
        .get(&format!("/api/v4/leads/notes?filter[entity_id][]={lead}"))
        .await;
    assert_eq!(listed.status, 204, "{}", listed.text);
    let r = api.post("/api/v4/leads/notes", &note).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(
        r.text.contains(&format!("The lead {lead} does not exist")),
        "{}",
        r.text
    );
    assert_eq!(
        api.get(&format!("/api/v4/leads/unsorted?filter[uid][]={uid}"))
            .await
            .status,
        204
    );
}
