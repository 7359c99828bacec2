//! Parsing of individual webhook payloads: the documented examples, leniency, ignored paths and
//! every rejection.

use callbridge_core::{
    CallEvent, CallState, CallTracking, DtmfEvent, Location, Party, PbxEvent, RecordStoredEvent,
    RecordingEvent, RecordingState, SummaryDirection, SummaryEvent, TrackingKind, TransferKind,
};
use callbridge_mango::{
    is_event_path, normalize_path, parse_event, parse_value, Webhook, WebhookError,
};
use serde_json::{json, Value};

fn event(path: &str, json: &str) -> PbxEvent {
    match parse_event(path, json) {
        Ok(Webhook::Event(e)) => e,
        other => panic!("{path} {json}: expected an event, got {other:?}"),
    }
}

fn call(json: &str) -> CallEvent {
    match event("events/call", json) {
        PbxEvent::Call(c) => c,
        other => panic!("expected a call event, got {other:?}"),
    }
}

fn summary(json: &str) -> SummaryEvent {
    match event("events/summary", json) {
        PbxEvent::Summary(s) => s,
        other => panic!("expected a summary event, got {other:?}"),
    }
}

fn recording(json: &str) -> RecordingEvent {
    match event("events/recording", json) {
        PbxEvent::Recording(r) => r,
        other => panic!("expected a recording event, got {other:?}"),
    }
}

fn record_added(json: &str) -> RecordStoredEvent {
    match event("events/record/added", json) {
        PbxEvent::RecordAdded(r) => r,
        other => panic!("expected a record/added event, got {other:?}"),
    }
}

fn error(path: &str, json: &str) -> WebhookError {
    match parse_event(path, json) {
        Err(e) => e,
        Ok(w) => panic!("{path} {json}: expected an error, got {w:?}"),
    }
}

fn error_text(path: &str, json: &str) -> String {
    error(path, json).to_string()
}

/// A minimal valid `events/call` object with `extra` merged over it (a `null` in `extra` removes
/// the key).
fn call_with(extra: Value) -> String {
    let mut base = json!({
        "entry_id": "E1", "call_id": "C1", "timestamp": 1764000000, "seq": 1,
        "call_state": "Appeared", "location": "abonent",
    });
    merge(&mut base, extra);
    base.to_string()
}

fn summary_with(extra: Value) -> String {
    let mut base = json!({"entry_id": "E1"});
    merge(&mut base, extra);
    base.to_string()
}

fn recording_with(extra: Value) -> String {
    let mut base = json!({
        "entry_id": "E1", "call_id": "C1", "recording_id": "R1", "recording_state": "Started",
        "seq": 1, "extension": "101", "timestamp": 1764000007,
    });
    merge(&mut base, extra);
    base.to_string()
}

fn record_with(extra: Value) -> String {
    let mut base = json!({
        "entry_id": "E1", "product_id": 300022532, "user_id": 300049012,
        "timestamp": 1764000087, "recording_id": "R1",
    });
    merge(&mut base, extra);
    base.to_string()
}

fn merge(base: &mut Value, extra: Value) {
    let (Value::Object(b), Value::Object(e)) = (base, extra) else {
        panic!("merge needs objects");
    };
    for (k, v) in e {
        if v.is_null() {
            b.remove(&k);
        } else {
            b.insert(k, v);
        }
    }
}

// ---------------------------------------------------------------- documented examples

#[test]
fn call_example_from_the_docs_parses_fully() {
    let c = call(
        r#"{"entry_id":"1MN0Q1MDOQ==","call_id":"MIxEyNTzTo6NDxkzNMMOzNQ==","timestamp":1558422128,"seq":2,
 "call_state":"Disconnected","location":"abonent",
 "from":{"number":"79001234567","taken_from_call_id":"oMNTMyzTzNTo6NxNkDIxOxM3EMNTj"},
 "to":{"extension":"29","number":"sip:user00000@tech.mangosip.ru","line_number":"sip:line00000@tech.mangosip.ru","acd_group":"303"},
 "disconnect_reason":1131,"dct":{"number":"74001234567","type":1}}"#,
    );
    assert_eq!(
        c,
        CallEvent {
            entry_id: "1MN0Q1MDOQ==".into(),
            call_id: "MIxEyNTzTo6NDxkzNMMOzNQ==".into(),
            timestamp: 1558422128,
            seq: 2,
            call_state: CallState::Disconnected,
            location: Location::Abonent,
            from: Party {
                number: Some("79001234567".into()),
                taken_from_call_id: Some("oMNTMyzTzNTo6NxNkDIxOxM3EMNTj".into()),
                ..Party::default()
            },
            to: Party {
                extension: Some("29".into()),
                number: Some("sip:user00000@tech.mangosip.ru".into()),
                line_number: Some("sip:line00000@tech.mangosip.ru".into()),
                acd_group: Some("303".into()),
                ..Party::default()
            },
            disconnect_reason: Some(1131),
            transfer: None,
            command_id: None,
            callback_initiator: None,
            tracking: Some(CallTracking {
                number: Some("74001234567".into()),
                kind: TrackingKind::Dynamic,
            }),
        }
    );
}

#[test]
fn call_with_all_optional_fields() {
    let c = call(&call_with(json!({
        "call_state": "OnHold",
        "location": "queue",
        "from": {"extension": "101", "hold_initiator": true},
        "to": {"number": "79001234567", "was_transferred": true},
        "transfer": "return_blind",
        "command_id": "cmd.1",
        "callback_initiator": "API",
        "task_id": 77,
    })));
    assert_eq!(c.call_state, CallState::OnHold);
    assert_eq!(c.location, Location::Queue);
    assert!(c.from.hold_initiator);
    assert!(!c.from.was_transferred);
    assert!(c.to.was_transferred);
    assert!(!c.to.hold_initiator);
    assert_eq!(c.transfer, Some(TransferKind::ReturnBlind));
    assert_eq!(c.command_id.as_deref(), Some("cmd.1"));
    assert_eq!(c.callback_initiator.as_deref(), Some("API"));
}

#[test]
fn summary_example_from_the_docs_parses_fully() {
    let s = summary(
        r#"{"entry_id":"232wc3e3w3s222","call_direction":1,"from":{"number":"7800123635242"},"to":{"extension":"123","number":"7800123456789"},"line_number":"7800123456789","create_time":1399906976,"forward_time":1399906978,"talk_time":1399906980,"end_time":1399906990,"entry_result":1,"disconnect_reason":1100}"#,
    );
    assert_eq!(
        s,
        SummaryEvent {
            entry_id: "232wc3e3w3s222".into(),
            call_direction: SummaryDirection::Inbound,
            from: Party {
                number: Some("7800123635242".into()),
                ..Party::default()
            },
            to: Party {
                extension: Some("123".into()),
                number: Some("7800123456789".into()),
                ..Party::default()
            },
            line_number: Some("7800123456789".into()),
            create_time: 1399906976,
            forward_time: 1399906978,
            talk_time: 1399906980,
            end_time: 1399906990,
            entry_result: Some(1),
            disconnect_reason: Some(1100),
            recovered: false,
        }
    );
}

#[test]
fn recording_example_from_the_docs_with_string_timestamp() {
    let r = recording(
        r#"{"recording_id":"r100:777:500:256","recording_state":"Started","seq":1,"call_id":"100:500:256","entry_id":"232wc3e3w3s222","extension":"1234","timestamp":"1399906976","command_id":"cmd.12.vpbx.12345.external.system.com.net"}"#,
    );
    assert_eq!(
        r,
        RecordingEvent {
            entry_id: "232wc3e3w3s222".into(),
            call_id: Some("100:500:256".into()),
            recording_id: "r100:777:500:256".into(),
            recording_state: RecordingState::Started,
            seq: 1,
            extension: Some("1234".into()),
            timestamp: 1399906976,
            completion_code: None,
        }
    );
}

#[test]
fn recording_states_and_completion_code() {
    let r = recording(&recording_with(
        json!({"recording_state": "Completed", "completion_code": 1000, "recipient": "Cloud"}),
    ));
    assert_eq!(r.recording_state, RecordingState::Completed);
    assert_eq!(r.completion_code, Some(1000));
    let r = recording(&recording_with(
        json!({"recording_state": "Continued", "call_id": "C2"}),
    ));
    assert_eq!(r.recording_state, RecordingState::Continued);
    assert_eq!(r.call_id.as_deref(), Some("C2"));
}

#[test]
fn recording_optional_fields_may_be_absent() {
    let r = recording(r#"{"entry_id":"E","recording_id":"R","recording_state":"Started"}"#);
    assert_eq!(r.call_id, None);
    assert_eq!(r.extension, None);
    assert_eq!(r.seq, 0);
    assert_eq!(r.timestamp, 0);
    assert_eq!(r.completion_code, None);
}

#[test]
fn record_added_and_tagged_examples() {
    let text = r#"{"entry_id":"NTAwOTQxMTAyMg==","product_id":300022532,"user_id":300049012,"timestamp":1578664187,"recording_id":"MToxMDAwNjA4NTo1MDA5NDExMDIyOjE="}"#;
    let expected = RecordStoredEvent {
        entry_id: "NTAwOTQxMTAyMg==".into(),
        recording_id: "MToxMDAwNjA4NTo1MDA5NDExMDIyOjE=".into(),
        user_id: Some(300049012),
        product_id: Some(300022532),
        timestamp: 1578664187,
    };
    assert_eq!(
        event("events/record/added", text),
        PbxEvent::RecordAdded(expected.clone())
    );
    assert_eq!(
        event("events/record/tagged", text),
        PbxEvent::RecordTagged(expected)
    );
}

#[test]
fn record_user_id_may_be_minus_one_and_ids_absent() {
    let r = record_added(&record_with(json!({"user_id": -1})));
    assert_eq!(r.user_id, Some(-1));
    let r = record_added(r#"{"entry_id":"E","recording_id":"R"}"#);
    assert_eq!((r.user_id, r.product_id, r.timestamp), (None, None, 0));
}

// ---------------------------------------------------------------- leniency: numbers as strings

#[test]
fn call_integers_accept_numbers_and_strings() {
    for (seq, ts, reason) in [
        (json!(2), json!(1399906976), json!(1131)),
        (json!("2"), json!("1399906976"), json!("1131")),
        (json!(" 2 "), json!(1399906976.0), json!("1131")),
    ] {
        let c = call(&call_with(
            json!({"seq": seq, "timestamp": ts, "disconnect_reason": reason}),
        ));
        assert_eq!(c.seq, 2);
        assert_eq!(c.timestamp, 1399906976);
        assert_eq!(c.disconnect_reason, Some(1131));
    }
}

#[test]
fn party_text_fields_accept_numbers_and_strings() {
    for (ext, group) in [(json!(29), json!(303)), (json!("29"), json!("303"))] {
        let c = call(&call_with(json!({
            "from": {"extension": ext.clone(), "number": 79001234567u64},
            "to": {"extension": ext, "acd_group": group, "line_number": 74951234567u64},
        })));
        assert_eq!(c.from.extension.as_deref(), Some("29"));
        assert_eq!(c.from.number.as_deref(), Some("79001234567"));
        assert_eq!(c.to.extension.as_deref(), Some("29"));
        assert_eq!(c.to.acd_group.as_deref(), Some("303"));
        assert_eq!(c.to.line_number.as_deref(), Some("74951234567"));
    }
}

#[test]
fn summary_integers_accept_numbers_and_strings() {
    let as_numbers = summary(&summary_with(json!({
        "call_direction": 2, "create_time": 100, "forward_time": 101, "talk_time": 105,
        "end_time": 160, "entry_result": 1, "disconnect_reason": 1110,
    })));
    let as_strings = summary(&summary_with(json!({
        "call_direction": "2", "create_time": "100", "forward_time": "101", "talk_time": "105",
        "end_time": "160", "entry_result": "1", "disconnect_reason": "1110",
    })));
    assert_eq!(as_numbers, as_strings);
    assert_eq!(as_numbers.call_direction, SummaryDirection::Outbound);
    assert_eq!(
        (
            as_numbers.create_time,
            as_numbers.forward_time,
            as_numbers.talk_time,
            as_numbers.end_time
        ),
        (100, 101, 105, 160)
    );
    assert_eq!(as_numbers.entry_result, Some(1));
    assert_eq!(as_numbers.disconnect_reason, Some(1110));
}

#[test]
fn recording_integers_and_extension_accept_numbers_and_strings() {
    let a = recording(&recording_with(
        json!({"seq": 3, "timestamp": 1764000007, "extension": 107, "completion_code": 1000}),
    ));
    let b = recording(&recording_with(
        json!({"seq": "3", "timestamp": "1764000007", "extension": "107", "completion_code": "1000"}),
    ));
    assert_eq!(a, b);
    assert_eq!(
        (a.seq, a.timestamp, a.completion_code),
        (3, 1764000007, Some(1000))
    );
    assert_eq!(a.extension.as_deref(), Some("107"));
}

#[test]
fn record_ids_accept_numbers_and_strings() {
    let a = record_added(&record_with(
        json!({"user_id": 5, "product_id": 6, "timestamp": 7}),
    ));
    let b = record_added(&record_with(
        json!({"user_id": "5", "product_id": "6", "timestamp": "7"}),
    ));
    assert_eq!(a, b);
    assert_eq!(
        (a.user_id, a.product_id, a.timestamp),
        (Some(5), Some(6), 7)
    );
    assert_eq!(
        record_added(&record_with(json!({"user_id": "-1"}))).user_id,
        Some(-1)
    );
}

#[test]
fn empty_string_and_null_mean_absent_for_optional_fields() {
    let c = call(&call_with(json!({
        "seq": "",
        "disconnect_reason": "",
        "transfer": "",
        "command_id": "",
        "from": {"extension": "", "number": "", "acd_group": "", "was_transferred": ""},
        "to": {"extension": Value::Null, "line_number": "", "hold_initiator": ""},
    })));
    assert_eq!(c.seq, 0);
    assert_eq!(c.disconnect_reason, None);
    assert_eq!(c.transfer, None);
    assert_eq!(c.command_id, None);
    assert_eq!(c.from, Party::default());
    assert_eq!(c.to, Party::default());

    // `null` values written explicitly (merge() would drop them, so spell the JSON out).
    let c = call(
        r#"{"entry_id":"E","call_id":"C","timestamp":1,"call_state":"Connected","seq":null,
            "location":null,"from":null,"to":{"number":null},"disconnect_reason":null,
            "transfer":null,"callback_initiator":null}"#,
    );
    assert_eq!(c.seq, 0);
    assert_eq!(c.location, Location::Other(String::new()));
    assert_eq!((c.from, c.to), (Party::default(), Party::default()));
    assert_eq!(
        (c.disconnect_reason, c.transfer, c.callback_initiator),
        (None, None, None)
    );

    let s = summary(
        r#"{"entry_id":"E","call_direction":"","line_number":"","create_time":null,"talk_time":"",
            "entry_result":"","disconnect_reason":null,"from":"","to":[]}"#,
    );
    assert_eq!(s.call_direction, SummaryDirection::Unknown);
    assert_eq!(s.line_number, None);
    assert_eq!((s.create_time, s.talk_time), (0, 0));
    assert_eq!((s.entry_result, s.disconnect_reason), (None, None));
    assert_eq!((s.from, s.to), (Party::default(), Party::default()));

    let r = record_added(r#"{"entry_id":"E","recording_id":"R","user_id":"","product_id":null}"#);
    assert_eq!((r.user_id, r.product_id), (None, None));
}

#[test]
fn seq_missing_defaults_to_zero() {
    let c = call(&call_with(json!({"seq": null})));
    assert_eq!(c.seq, 0);
}

// ---------------------------------------------------------------- leniency: booleans

#[test]
fn was_transferred_both_spellings_and_bool_forms() {
    for key in ["was_transferred", "was_transfered"] {
        for (value, expected) in [
            (json!(true), true),
            (json!(false), false),
            (json!("true"), true),
            (json!("false"), false),
            (json!("TRUE"), true),
            (json!(1), true),
            (json!(0), false),
            (json!("1"), true),
            (json!("0"), false),
        ] {
            let c = call(&call_with(json!({
                "call_state": "Disconnected",
                "from": {key: value.clone()},
                "to": {key: value.clone()},
            })));
            assert_eq!(c.from.was_transferred, expected, "from.{key} = {value}");
            assert_eq!(c.to.was_transferred, expected, "to.{key} = {value}");
        }
    }
}

#[test]
fn was_transferred_true_under_either_spelling_wins() {
    let c = call(&call_with(json!({
        "from": {"was_transferred": false, "was_transfered": true},
        "to": {"was_transferred": true, "was_transfered": false},
    })));
    assert!(c.from.was_transferred);
    assert!(c.to.was_transferred);
}

#[test]
fn hold_initiator_bool_forms() {
    for (value, expected) in [
        (json!(true), true),
        (json!("false"), false),
        (json!(1), true),
    ] {
        let c = call(&call_with(
            json!({"call_state": "OnHold", "to": {"hold_initiator": value}}),
        ));
        assert_eq!(c.to.hold_initiator, expected);
    }
}

// ---------------------------------------------------------------- leniency: enums and extras

#[test]
fn location_values() {
    for (raw, expected) in [
        ("ivr", Location::Ivr),
        ("queue", Location::Queue),
        ("abonent", Location::Abonent),
        ("ivr.1", Location::Other("ivr.1".into())),
        ("Abonent", Location::Other("Abonent".into())),
        ("conference", Location::Other("conference".into())),
    ] {
        assert_eq!(
            call(&call_with(json!({"location": raw}))).location,
            expected,
            "{raw}"
        );
    }
    assert_eq!(
        call(&call_with(json!({"location": null}))).location,
        Location::Other(String::new())
    );
}

#[test]
fn transfer_values_and_unknown_ignored() {
    for (raw, expected) in [
        (json!("consultative"), Some(TransferKind::Consultative)),
        (json!("blind"), Some(TransferKind::Blind)),
        (json!("return_blind"), Some(TransferKind::ReturnBlind)),
        (json!("Blind"), None),
        (json!("attended"), None),
        (json!(3), None),
        (json!({"kind": "blind"}), None),
    ] {
        assert_eq!(
            call(&call_with(json!({"transfer": raw.clone()}))).transfer,
            expected,
            "{raw}"
        );
    }
}

#[test]
fn every_call_state() {
    for (raw, expected) in [
        ("Appeared", CallState::Appeared),
        ("Connected", CallState::Connected),
        ("OnHold", CallState::OnHold),
        ("Disconnected", CallState::Disconnected),
    ] {
        assert_eq!(
            call(&call_with(json!({"call_state": raw}))).call_state,
            expected
        );
    }
}

#[test]
fn call_direction_values() {
    for (raw, expected) in [
        (json!(0), SummaryDirection::Internal),
        (json!(1), SummaryDirection::Inbound),
        (json!(2), SummaryDirection::Outbound),
        (json!("0"), SummaryDirection::Internal),
        (json!(3), SummaryDirection::Unknown),
        (json!(-1), SummaryDirection::Unknown),
        (json!("7"), SummaryDirection::Unknown),
        (
            json!(99999999999999999999u128.to_string()),
            SummaryDirection::Unknown,
        ),
    ] {
        assert_eq!(
            summary(&summary_with(json!({"call_direction": raw.clone()}))).call_direction,
            expected,
            "{raw}"
        );
    }
    assert_eq!(
        summary(&summary_with(json!({}))).call_direction,
        SummaryDirection::Unknown
    );
}

#[test]
fn summary_minimal_has_defaults() {
    let s = summary(r#"{"entry_id":"E"}"#);
    assert_eq!(
        s,
        SummaryEvent {
            entry_id: "E".into(),
            call_direction: SummaryDirection::Unknown,
            from: Party::default(),
            to: Party::default(),
            line_number: None,
            create_time: 0,
            forward_time: 0,
            talk_time: 0,
            end_time: 0,
            entry_result: None,
            disconnect_reason: None,
            recovered: false,
        }
    );
}

#[test]
fn summary_ivr_example_with_empty_to() {
    // [API-2017] example 2: ended in IVR, `"to":{}`.
    let s = summary(
        r#"{"entry_id":"X","call_direction":1,"from":{"number":"74955404444"},"to":{},"line_number":"74952150438","create_time":1488272633,"forward_time":0,"talk_time":0,"end_time":1488272662,"entry_result":1,"disconnect_reason":1170}"#,
    );
    assert_eq!(s.to, Party::default());
    assert_eq!(s.talk_time, 0);
    assert_eq!(s.disconnect_reason, Some(1170));
}

#[test]
fn summary_line_number_top_level_or_under_to() {
    let s = summary(&summary_with(json!({"to": {"line_number": "74951234567"}})));
    assert_eq!(s.line_number.as_deref(), Some("74951234567"));
    assert_eq!(s.to.line_number.as_deref(), Some("74951234567"));
    // The top-level one wins when both are present.
    let s = summary(&summary_with(
        json!({"line_number": "111", "to": {"line_number": "222"}}),
    ));
    assert_eq!(s.line_number.as_deref(), Some("111"));
    // An empty top-level one falls back to `to`.
    let s = summary(&summary_with(
        json!({"line_number": "", "to": {"line_number": "222"}}),
    ));
    assert_eq!(s.line_number.as_deref(), Some("222"));
}

#[test]
fn summary_talk_time_absent_is_zero() {
    let s = summary(&summary_with(json!({"create_time": 5, "end_time": 9})));
    assert_eq!((s.create_time, s.talk_time, s.end_time), (5, 0, 9));
}

#[test]
fn unknown_fields_are_ignored_everywhere() {
    let plain = call(&call_with(
        json!({"from": {"number": "1"}, "to": {"extension": "2"}}),
    ));
    let extra = call(&call_with(json!({
        "from": {"number": "1", "nickname": ["x"], "was_transferrrred": "junk"},
        "to": {"extension": "2", "device": {"deep": [1, 2, {"a": null}]}},
        "dct": {"type": 0, "campaign": "unknown inside dct too"},
        "sip_call_id": "abc@host",
        "task_id": "not even a number",
        "campaign_id": 7,
        "future_field": {"anything": true},
    })));
    assert_eq!(plain, extra);

    let s = summary(&summary_with(json!({"sip_call_id": 5, "whatever": [1]})));
    assert_eq!(s, summary(r#"{"entry_id":"E1"}"#));
    let r = recording(&recording_with(
        json!({"recipient": "CloudAndMail", "x": {}}),
    ));
    assert_eq!(r, recording(&recording_with(json!({}))));
    let rec = record_added(&record_with(json!({"extra": [null]})));
    assert_eq!(rec, record_added(&record_with(json!({}))));
}

// ---------------------------------------------------------------- paths

#[test]
fn paths_are_normalised_and_case_sensitive() {
    let body = call_with(json!({}));
    for path in [
        "events/call",
        "/events/call",
        "events/call/",
        "/events/call/",
        "//events/call//",
    ] {
        assert!(
            matches!(
                parse_event(path, &body),
                Ok(Webhook::Event(PbxEvent::Call(_)))
            ),
            "{path}"
        );
    }
    assert_eq!(
        normalize_path("/events/record/added/"),
        "events/record/added"
    );
    assert!(is_event_path("/events/summary/"));
    assert!(!is_event_path("Events/Call"));
    assert_eq!(
        parse_event("Events/Call", &body),
        Ok(Webhook::Ignored {
            path: "Events/Call".into()
        })
    );
}

#[test]
fn other_paths_are_ignored_without_reading_the_body() {
    for (path, normalised) in [
        ("events/sms", "events/sms"),
        ("events/recognized/offline", "events/recognized/offline"),
        ("result/callback", "result/callback"),
        ("/result/calls_connect/", "result/calls_connect"),
        ("result/stats", "result/stats"),
        ("result/stat", "result/stat"),
        ("ping", "ping"),
        ("events/ab/", "events/ab"),
        ("events/user/status_changed", "events/user/status_changed"),
        ("events/callx", "events/callx"),
        ("events", "events"),
        ("", ""),
        ("/", ""),
    ] {
        // Garbage, empty, and a body valid on `events/dtmf`: all ignored alike.
        for body in [
            "",
            "not json",
            r#"{"seq":2,"dtmf":"123","call_id":"C","entry_id":"E"}"#,
        ] {
            assert_eq!(
                parse_event(path, body),
                Ok(Webhook::Ignored {
                    path: normalised.to_owned()
                }),
                "{path:?} {body:?}"
            );
        }
        assert_eq!(
            parse_value(path, &json!([1, 2])),
            Ok(Webhook::Ignored {
                path: normalised.to_owned()
            })
        );
    }
}

#[test]
fn webhook_accessors() {
    let w = parse_event("events/summary", r#"{"entry_id":"E"}"#).unwrap();
    assert_eq!(w.event().map(PbxEvent::entry_id), Some("E"));
    assert_eq!(
        w.into_event().map(|e| e.entry_id().to_owned()),
        Some("E".to_owned())
    );
    let ignored = parse_event("ping", "").unwrap();
    assert_eq!(ignored.event(), None);
    assert_eq!(ignored.into_event(), None);
}

// ---------------------------------------------------------------- rejections

#[test]
fn invalid_json_text_names_the_problem() {
    let e = error("events/call", r#"{"entry_id": "#);
    assert!(matches!(e, WebhookError::Json { .. }), "{e:?}");
    assert_eq!(e.path(), "events/call");
    assert_eq!(e.field(), None);
    let text = e.to_string();
    assert!(
        text.starts_with("events/call: json: invalid JSON: "),
        "{text}"
    );
    assert!(text.contains("EOF while parsing"), "{text}");

    let text = error_text("/events/summary/", "");
    assert!(
        text.starts_with("events/summary: json: invalid JSON: EOF"),
        "{text}"
    );
    let text = error_text("events/recording", "{'a': 1}");
    assert!(text.contains("key must be a string"), "{text}");
}

#[test]
fn non_object_json_is_rejected() {
    for (body, got) in [
        ("[]", "an array"),
        ("[1,2]", "an array"),
        ("\"text\"", "\"text\""),
        ("42", "42"),
        ("true", "true"),
        ("null", "null"),
    ] {
        assert_eq!(
            error_text("events/call", body),
            format!("events/call: json: expected a JSON object, got {got}")
        );
    }
    let e = parse_value("events/record/tagged", &json!("x")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "events/record/tagged: json: expected a JSON object, got \"x\""
    );
}

#[test]
fn missing_required_fields_are_named() {
    for field in ["entry_id", "call_id", "call_state", "timestamp"] {
        let e = error("events/call", &call_with(json!({field: null})));
        assert_eq!(
            e.to_string(),
            format!("events/call: missing field \"{field}\"")
        );
        assert_eq!(e.field(), Some(field));
        assert!(matches!(e, WebhookError::MissingField { .. }));
    }
    for field in ["entry_id", "recording_id", "recording_state"] {
        assert_eq!(
            error_text("events/recording", &recording_with(json!({field: null}))),
            format!("events/recording: missing field \"{field}\"")
        );
    }
    for path in ["events/record/added", "events/record/tagged"] {
        for field in ["entry_id", "recording_id"] {
            assert_eq!(
                error_text(path, &record_with(json!({field: null}))),
                format!("{path}: missing field \"{field}\"")
            );
        }
    }
    assert_eq!(
        error_text("events/summary", "{}"),
        "events/summary: missing field \"entry_id\""
    );
    // Explicit null is missing too.
    assert_eq!(
        error_text("events/summary", r#"{"entry_id":null}"#),
        "events/summary: missing field \"entry_id\""
    );
}

#[test]
fn empty_required_fields_are_named() {
    assert_eq!(
        error_text("events/summary", r#"{"entry_id":""}"#),
        "events/summary: field \"entry_id\" must not be empty"
    );
    for field in ["entry_id", "call_id", "call_state", "timestamp"] {
        let e = error("events/call", &call_with(json!({field: ""})));
        assert_eq!(
            e.to_string(),
            format!("events/call: field \"{field}\" must not be empty")
        );
        assert!(matches!(e, WebhookError::EmptyField { .. }));
    }
    assert_eq!(
        error_text(
            "events/recording",
            &recording_with(json!({"recording_state": ""}))
        ),
        "events/recording: field \"recording_state\" must not be empty"
    );
    assert_eq!(
        error_text(
            "events/record/added",
            &record_with(json!({"recording_id": ""}))
        ),
        "events/record/added: field \"recording_id\" must not be empty"
    );
}

#[test]
fn unknown_call_state_is_rejected_with_the_expected_values() {
    let e = error("events/call", &call_with(json!({"call_state": "Ringing"})));
    assert_eq!(
        e.to_string(),
        "events/call: field \"call_state\": unknown value \"Ringing\" (expected Appeared, Connected, OnHold, Disconnected)"
    );
    assert!(
        matches!(&e, WebhookError::InvalidField { path, field, .. } if path == "events/call" && field == "call_state")
    );
    // Case-sensitive.
    assert!(error_text(
        "events/call",
        &call_with(json!({"call_state": "connected"}))
    )
    .contains("unknown value \"connected\""));
    assert_eq!(
        error_text("events/call", &call_with(json!({"call_state": 2}))),
        "events/call: field \"call_state\": expected a string (one of Appeared, Connected, OnHold, Disconnected), got 2"
    );
}

#[test]
fn unknown_recording_state_is_rejected() {
    assert_eq!(
        error_text("events/recording", &recording_with(json!({"recording_state": "Paused"}))),
        "events/recording: field \"recording_state\": unknown value \"Paused\" (expected Started, Continued, Completed)"
    );
}

#[test]
fn non_numeric_integers_are_rejected_with_the_value() {
    assert_eq!(
        error_text("events/call", &call_with(json!({"seq": "abc"}))),
        "events/call: field \"seq\": expected a non-negative integer, got \"abc\""
    );
    assert_eq!(
        error_text("events/call", &call_with(json!({"seq": -1}))),
        "events/call: field \"seq\": expected a non-negative integer, got -1"
    );
    assert_eq!(
        error_text("events/call", &call_with(json!({"seq": 1.5}))),
        "events/call: field \"seq\": expected a non-negative integer, got 1.5"
    );
    assert_eq!(
        error_text("events/call", &call_with(json!({"timestamp": true}))),
        "events/call: field \"timestamp\": expected an integer, got true"
    );
    assert_eq!(
        error_text("events/call", &call_with(json!({"timestamp": [1]}))),
        "events/call: field \"timestamp\": expected an integer, got an array"
    );
    assert_eq!(
        error_text("events/call", &call_with(json!({"disconnect_reason": "11x0"}))),
        "events/call: field \"disconnect_reason\": expected a non-negative integer (at most 4294967295), got \"11x0\""
    );
    assert_eq!(
        error_text("events/call", &call_with(json!({"disconnect_reason": 5000000000u64}))),
        "events/call: field \"disconnect_reason\": expected a non-negative integer (at most 4294967295), got 5000000000"
    );
    assert_eq!(
        error_text(
            "events/summary",
            &summary_with(json!({"entry_result": 300}))
        ),
        "events/summary: field \"entry_result\": expected an integer from 0 to 255, got 300"
    );
    assert_eq!(
        error_text(
            "events/summary",
            &summary_with(json!({"talk_time": "soon"}))
        ),
        "events/summary: field \"talk_time\": expected an integer, got \"soon\""
    );
    assert_eq!(
        error_text(
            "events/summary",
            &summary_with(json!({"call_direction": "inbound"}))
        ),
        "events/summary: field \"call_direction\": expected an integer, got \"inbound\""
    );
    assert_eq!(
        error_text("events/recording", &recording_with(json!({"completion_code": {}}))),
        "events/recording: field \"completion_code\": expected a non-negative integer (at most 4294967295), got an object"
    );
    assert_eq!(
        error_text(
            "events/record/added",
            &record_with(json!({"user_id": "me"}))
        ),
        "events/record/added: field \"user_id\": expected an integer, got \"me\""
    );
    assert_eq!(
        error_text(
            "events/record/tagged",
            &record_with(json!({"product_id": 1e30}))
        ),
        "events/record/tagged: field \"product_id\": expected an integer, got 1e+30"
    );
}

#[test]
fn long_offending_values_are_shortened_to_one_line() {
    let long = format!("{}\n{}", "x".repeat(100), "y".repeat(100));
    let text = error_text("events/call", &call_with(json!({"seq": long})));
    assert_eq!(
        text,
        format!(
            "events/call: field \"seq\": expected a non-negative integer, got \"{}\"...",
            "x".repeat(40)
        )
    );
    assert!(!text.contains('\n'));
    let text = error_text("events/call", &call_with(json!({"call_state": "a\nb"})));
    assert!(text.contains(r#"unknown value "a\nb""#), "{text}");
}

#[test]
fn nested_party_errors_name_the_dotted_field() {
    assert_eq!(
        error_text(
            "events/call",
            &call_with(json!({"from": {"extension": true}}))
        ),
        "events/call: field \"from.extension\": expected a string, got true"
    );
    assert_eq!(
        error_text("events/call", &call_with(json!({"to": {"number": 7.5}}))),
        "events/call: field \"to.number\": expected a string, got 7.5"
    );
    assert_eq!(
        error_text("events/call", &call_with(json!({"to": {"was_transferred": "yes"}}))),
        "events/call: field \"to.was_transferred\": expected a boolean (true, false, 1, 0), got \"yes\""
    );
    assert_eq!(
        error_text(
            "events/call",
            &call_with(json!({"from": {"was_transfered": 2}}))
        ),
        "events/call: field \"from.was_transfered\": expected a boolean (true, false, 1, 0), got 2"
    );
    assert_eq!(
        error_text("events/summary", &summary_with(json!({"to": {"hold_initiator": []}}))),
        "events/summary: field \"to.hold_initiator\": expected a boolean (true, false, 1, 0), got an array"
    );
    let e = error(
        "events/call",
        &call_with(json!({"to": {"acd_group": {"id": 1}}})),
    );
    assert_eq!(e.field(), Some("to.acd_group"));
    assert_eq!(e.path(), "events/call");
}

#[test]
fn party_that_is_not_an_object_is_rejected() {
    assert_eq!(
        error_text("events/call", &call_with(json!({"from": "79001234567"}))),
        "events/call: field \"from\": expected an object, got \"79001234567\""
    );
    assert_eq!(
        error_text("events/summary", &summary_with(json!({"to": [1]}))),
        "events/summary: field \"to\": expected an object, got an array"
    );
    assert_eq!(
        error_text("events/summary", &summary_with(json!({"to": 5}))),
        "events/summary: field \"to\": expected an object, got 5"
    );
}

#[test]
fn ids_must_be_text_or_integers() {
    assert_eq!(
        error_text("events/call", &call_with(json!({"entry_id": {"a": 1}}))),
        "events/call: field \"entry_id\": expected a string, got an object"
    );
    // An integer id is kept as its digits.
    assert_eq!(call(&call_with(json!({"call_id": 123}))).call_id, "123");
    assert_eq!(
        error_text("events/call", &call_with(json!({"location": false}))),
        "events/call: field \"location\": expected a string, got false"
    );
}

#[test]
fn parse_value_and_parse_event_agree() {
    for (path, body) in [
        (
            "events/call",
            call_with(json!({"seq": "4", "from": {"extension": 5}})),
        ),
        (
            "events/summary",
            summary_with(json!({"call_direction": "1", "to": []})),
        ),
        ("events/recording", recording_with(json!({}))),
        ("events/record/added", record_with(json!({}))),
        ("events/call", call_with(json!({"seq": "x"}))),
        ("events/summary", "{}".to_owned()),
    ] {
        let value: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            parse_event(path, &body),
            parse_value(path, &value),
            "{path} {body}"
        );
    }
}

#[test]
fn error_is_a_std_error_and_one_line() {
    let e: Box<dyn std::error::Error> =
        Box::new(error("events/call", &call_with(json!({"seq": "abc"}))));
    assert!(!e.to_string().contains('\n'));
    assert!(e.to_string().contains("\"seq\""));
}

// ---------------------------------------------------------------- dedupe keys

#[test]
fn dedupe_keys_match_redeliveries_however_formatted_and_sort_by_the_events_time() {
    let key = |path: &str, json: &str| event(path, json).dedupe_key();
    // The same event with its numbers as strings is the same event.
    let first = key("events/call", &call_with(json!({})));
    let as_strings = key(
        "events/call",
        &call_with(json!({"timestamp": "1764000000", "seq": "1"})),
    );
    assert_eq!(first, as_strings);
    // Another step of the same call is another event.
    let next_seq = key("events/call", &call_with(json!({"seq": 2})));
    let connected = key(
        "events/call",
        &call_with(json!({"call_state": "Connected"})),
    );
    assert_ne!(first, next_seq);
    assert_ne!(first, connected);
    // Keys lead with the event's time, so the log's unique index grows at its end: a later
    // event of a call whose id sorts first still sorts after.
    let later = key(
        "events/call",
        &call_with(json!({"call_id": "A0", "timestamp": 1764000001})),
    );
    assert!(later > first, "{later} should sort after {first}");
    let summary_key = key(
        "events/summary",
        &summary_with(json!({"create_time": 1764000000, "end_time": 1764000090})),
    );
    let recording_key = key("events/recording", &recording_with(json!({})));
    assert!(summary_key > recording_key && recording_key > first);
    // A recording's stored/tagged notices are one per recording, whatever their time.
    assert_eq!(
        key("events/record/added", &record_with(json!({}))),
        key(
            "events/record/added",
            &record_with(json!({"timestamp": 1764000099}))
        )
    );
}

/// `events/dtmf` as the PBX documents it: string `timestamp`, menu item in `location`, and the
/// numbers the core has no use for. The digits and the menu are kept for the entry's history.
#[test]
fn keypresses_are_read_into_the_entry_history() {
    let json = r#"{"seq":1,"dtmf":"124","timestamp":"1764100000","call_id":"C1","entry_id":"E1","location":"ivr.2","initiator":"79000000000","from_number":"79000000000","to_number":"74950000000","line_number":"74950000000"}"#;
    assert_eq!(
        parse_event("events/dtmf", json),
        Ok(Webhook::Event(PbxEvent::Dtmf(DtmfEvent {
            entry_id: "E1".into(),
            call_id: Some("C1".into()),
            timestamp: 1_764_100_000,
            seq: 1,
            digits: "124".into(),
            menu: Some("ivr.2".into()),
            initiator: Some("79000000000".into()),
        })))
    );
    assert_eq!(
        parse_event("events/dtmf", r#"{"entry_id":"E1","call_id":"C1"}"#),
        Err(WebhookError::MissingField {
            path: "events/dtmf".into(),
            field: "dtmf".into()
        })
    );
}

/// `dct` on `events/call`: type 0 is "not call-tracking"; 1 and 2 keep the number; PHP's `[]` is
/// none; anything but an object is refused naming the field.
#[test]
fn call_tracking_is_kept() {
    let call = |dct: &str| {
        format!(
            r#"{{"entry_id":"E","call_id":"C","timestamp":1764100000,"seq":1,"call_state":"Disconnected","location":"abonent","from":{{"number":"79001234567"}},"to":{{"extension":"29"}},"disconnect_reason":1131,"dct":{dct}}}"#
        )
    };
    let tracking = |dct: &str| match parse_event("events/call", &call(dct)) {
        Ok(Webhook::Event(PbxEvent::Call(e))) => Ok(e.tracking),
        other => Err(format!("{other:?}")),
    };
    assert_eq!(tracking(r#"{"type":0}"#), Ok(None));
    assert_eq!(tracking("[]"), Ok(None));
    assert_eq!(tracking("null"), Ok(None));
    assert_eq!(
        tracking(r#"{"number":"74001234567","type":1}"#),
        Ok(Some(CallTracking {
            number: Some("74001234567".into()),
            kind: TrackingKind::Dynamic
        }))
    );
    assert_eq!(
        tracking(r#"{"number":74001234567,"type":"2"}"#),
        Ok(Some(CallTracking {
            number: Some("74001234567".into()),
            kind: TrackingKind::Static
        }))
    );
    assert_eq!(
        tracking(r#"{"number":"74001234567","type":7}"#),
        Ok(Some(CallTracking {
            number: Some("74001234567".into()),
            kind: TrackingKind::Unknown
        }))
    );
    assert_eq!(
        parse_event("events/call", &call(r#""74001234567""#)),
        Err(WebhookError::InvalidField {
            path: "events/call".into(),
            field: "dct".into(),
            problem: "expected an object, got \"74001234567\"".into()
        })
    );
    assert_eq!(
        parse_event("events/call", &call(r#"{"type":"x"}"#))
            .unwrap_err()
            .field(),
        Some("dct.type")
    );
}

/// Mango's own examples misspell `location` as `locaton`: read as the same field.
#[test]
fn the_misspelt_location_is_read() {
    let json = r#"{"entry_id":"E","call_id":"C","timestamp":1764100000,"seq":1,"call_state":"Appeared","locaton":"ivr","from":{"number":"79001234567"},"to":{"number":"74950000000","line_number":"74950000000"}}"#;
    match parse_event("events/call", json) {
        Ok(Webhook::Event(PbxEvent::Call(e))) => assert_eq!(e.location, Location::Ivr),
        other => panic!("{other:?}"),
    }
}
