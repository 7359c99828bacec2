//! Property tests: no input, however odd, makes the parser panic, and what it accepts or rejects
//! does not depend on whether it got the text or the decoded value.

use callbridge_mango::webhook::FIELD_NAMES;
use callbridge_mango::{parse_event, parse_value, Webhook};
use proptest::prelude::*;
use serde_json::{Map, Value};

const PATHS: &[&str] = &[
    "events/call",
    "events/summary",
    "events/recording",
    "events/record/added",
    "events/record/tagged",
    "/events/call/",
    "events/dtmf",
    "ping",
    "",
];

/// Field names the parser looks at, so generated objects actually reach the field code, and one
/// it does not.
fn keys() -> Vec<&'static str> {
    FIELD_NAMES.iter().copied().chain(["unknown"]).collect()
}

/// One valid payload per event path.
const VALID: &[(&str, &str)] = &[
    (
        "events/call",
        r#"{"entry_id":"E","call_id":"C","timestamp":1,"seq":1,"call_state":"Appeared","location":"ivr","from":{"number":"1"},"to":{"extension":"2"}}"#,
    ),
    (
        "events/summary",
        r#"{"entry_id":"E","call_direction":1,"to":{"extension":"2"}}"#,
    ),
    (
        "events/recording",
        r#"{"entry_id":"E","recording_id":"R","recording_state":"Started","seq":1,"timestamp":1}"#,
    ),
    (
        "events/record/added",
        r#"{"entry_id":"E","recording_id":"R","user_id":1}"#,
    ),
    (
        "events/record/tagged",
        r#"{"entry_id":"E","recording_id":"R","product_id":1}"#,
    ),
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from), // NaN / infinities become null
        ".*".prop_map(Value::String),
        prop_oneof![
            Just("Appeared"),
            Just("OnHold"),
            Just("Completed"),
            Just("blind"),
            Just("ivr"),
            Just("true"),
            Just("0"),
            Just("-1"),
            Just("18446744073709551616"),
            Just(""),
            Just(" 7 "),
        ]
        .prop_map(|s| Value::String(s.to_owned())),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(keys()), inner), 0..12).prop_map(|pairs| {
                Value::Object(
                    pairs
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), v))
                        .collect::<Map<_, _>>(),
                )
            }),
        ]
    })
}

fn check_agreement(path: &str, v: &Value) {
    let from_value = parse_value(path, v);
    // serde_json's float parsing does not always round-trip the last digit, so compare the text
    // parser with the value parser on the value as decoded from that same text.
    let text = v.to_string();
    let decoded: Value = serde_json::from_str(&text).expect("serde_json reads its own output");
    assert_eq!(parse_event(path, &text), parse_value(path, &decoded));
    if let Err(e) = &from_value {
        let text = e.to_string();
        assert!(!text.contains('\n'), "{text}");
        assert!(text.starts_with(e.path()), "{text}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn arbitrary_values_never_panic(path in prop::sample::select(PATHS), v in value()) {
        check_agreement(path, &v);
    }

    #[test]
    fn arbitrary_objects_never_panic(
        path in prop::sample::select(PATHS),
        fields in prop::collection::vec((prop::sample::select(keys()), value()), 0..20),
    ) {
        let obj = Value::Object(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect());
        check_agreement(path, &obj);
    }

    /// Start from a valid payload and replace one field with anything: the result is an event, or
    /// an error about exactly that field (or a field nested in it).
    #[test]
    fn one_bad_field_is_the_one_blamed(
        which in 0..VALID.len(),
        key in prop::sample::select(keys()),
        v in value(),
    ) {
        let (path, base) = VALID[which];
        let mut obj: Value = serde_json::from_str(base).unwrap();
        obj.as_object_mut().unwrap().insert(key.to_owned(), v);
        match parse_value(path, &obj) {
            Ok(w) => prop_assert!(w.event().is_some()),
            Err(e) => {
                let field = e.field().unwrap_or_default();
                // `locaton` is read as `location` (Mango's own misspelling): beside a
                // `location` it is that field given twice.
                let alias_of = if key == "locaton" { "location" } else { key };
                prop_assert!(
                    field == key || field == alias_of || field.starts_with(&format!("{key}.")),
                    "replaced {key}, blamed {e}"
                );
            }
        }
    }

    #[test]
    fn arbitrary_strings_never_panic(path in ".{0,24}", body in ".*") {
        let _ = parse_event(&path, &body);
        for known in PATHS {
            let _ = parse_event(known, &body);
        }
    }

    #[test]
    fn non_event_paths_are_always_ignored(path in "[a-z/]{0,20}", body in ".*") {
        prop_assume!(!callbridge_mango::is_event_path(&path));
        prop_assert_eq!(
            parse_event(&path, &body),
            Ok(Webhook::Ignored { path: path.trim_matches('/').to_owned() })
        );
    }
}
