//! Webhook payloads: turn what Mango POSTs (`path` suffix + the `json` form field) into
//! [`callbridge_core::PbxEvent`]s.
//!
//! One parser: serde derives a reader per payload ([`payload`], every field named once), the
//! leniency below is one `deserialize_with` function per kind of field ([`lenient`]), and
//! `serde_path_to_error` names the field of an error (`from.extension`, `seq`, ...). The text is
//! read straight into the event (no `serde_json::Value` tree); [`parse_value`] reads an already
//! decoded value with the same code.
//!
//! # Leniency
//!
//! Real Mango payloads do not always match the documentation tables, so the parser accepts:
//!
//! - integers (`seq`, `timestamp`, `disconnect_reason`, `call_direction`, `entry_result`,
//!   `completion_code`, `user_id`, `product_id`, the summary times) as a JSON number, as a number with
//!   no fractional part (`2.0`), or as a string holding an integer (`"2"`);
//! - text fields (`extension`, `acd_group`, `number`, ids ...) as a string or an integer
//!   (`"extension": 29` becomes `"29"`);
//! - booleans (`was_transferred`, `hold_initiator`) as `true`/`false`, `1`/`0`, or those as strings;
//!   the misspelling `was_transfered` is read too;
//! - `null` or an empty string as "absent" for every optional field, and `[]` as an empty party
//!   (what PHP's `json_encode` makes of an empty map);
//! - unknown fields anywhere; an unknown `location` (kept as [`Location::Other`]), an unknown
//!   `transfer` (dropped) and an unknown `call_direction` number ([`SummaryDirection::Unknown`]).
//!
//! What is truly malformed (a missing or empty id, an unknown `call_state`, text where a number must
//! be, a field given twice, ...) is a [`WebhookError`] naming the path and the field. When a
//! payload has several faults, the first one in the text is named (a missing field after all
//! others).
//!
//! [`Location::Other`]: callbridge_core::Location::Other
//! [`SummaryDirection::Unknown`]: callbridge_core::SummaryDirection::Unknown

mod form;
mod lenient;
mod payload;

#[doc(hidden)]
pub use form::WebhookForm;
pub use payload::FIELD_NAMES;

use callbridge_core::PbxEvent;
use serde::Deserializer;
use serde_json::Value;

/// `events/call`: a leg changed state.
pub const PATH_CALL: &str = "events/call";
/// `events/summary`: the final event of an entry.
pub const PATH_SUMMARY: &str = "events/summary";
/// `events/recording`: recording lifecycle.
pub const PATH_RECORDING: &str = "events/recording";
/// `events/record/added`: the recording is stored in the cloud.
pub const PATH_RECORD_ADDED: &str = "events/record/added";
/// `events/record/tagged`: speech analytics finished with a recording.
pub const PATH_RECORD_TAGGED: &str = "events/record/tagged";
/// `events/dtmf`: the client keyed digits in a voice menu.
pub const PATH_DTMF: &str = "events/dtmf";
/// Where the event log keeps a summary that reconciliation rebuilt from the PBX's call
/// statistics (rule A4b). Not a webhook: [`parse_event`] ignores the path (a webhook cannot claim
/// to be recovered), [`parse_stored`] reads it.
pub const PATH_RECOVERED_SUMMARY: &str = "recovered/summary";

/// What one webhook request means to callbridge.
// Nearly every webhook is an event, and it is moved straight into the core: boxing it to shrink the
// rare `Ignored` case would cost an allocation per event for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Webhook {
    /// One of the six event paths the core consumes, parsed.
    Event(PbxEvent),
    /// Any other path (`events/sms`, `result/...`, `ping`, unknown ones). The payload
    /// is not looked at; `path` is the normalised path.
    Ignored { path: String },
}

impl Webhook {
    /// The parsed event, if this webhook carries one.
    pub fn event(&self) -> Option<&PbxEvent> {
        match self {
            Webhook::Event(e) => Some(e),
            Webhook::Ignored { .. } => None,
        }
    }

    /// The parsed event by value, if this webhook carries one.
    pub fn into_event(self) -> Option<PbxEvent> {
        match self {
            Webhook::Event(e) => Some(e),
            Webhook::Ignored { .. } => None,
        }
    }
}

/// A webhook payload that cannot be turned into an event. Every variant carries the (normalised)
/// path; `Display` is one line, e.g. `events/call: missing field "entry_id"`. A server answers these
/// with HTTP 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// The `json` text is not JSON, or not a JSON object.
    #[error("{path}: json: {problem}")]
    Json { path: String, problem: String },
    /// A required field is absent or `null`.
    #[error("{path}: missing field \"{field}\"")]
    MissingField { path: String, field: String },
    /// A required field is an empty string.
    #[error("{path}: field \"{field}\" must not be empty")]
    EmptyField { path: String, field: String },
    /// A field is present but its value cannot be used.
    #[error("{path}: field \"{field}\": {problem}")]
    InvalidField {
        path: String,
        field: String,
        problem: String,
    },
}

impl WebhookError {
    /// The normalised webhook path the error is about.
    pub fn path(&self) -> &str {
        match self {
            WebhookError::Json { path, .. }
            | WebhookError::MissingField { path, .. }
            | WebhookError::EmptyField { path, .. }
            | WebhookError::InvalidField { path, .. } => path,
        }
    }

    /// The field at fault (dotted for nested ones, e.g. `to.extension`); `None` when the whole
    /// `json` is at fault.
    pub fn field(&self) -> Option<&str> {
        match self {
            WebhookError::Json { .. } => None,
            WebhookError::MissingField { field, .. }
            | WebhookError::EmptyField { field, .. }
            | WebhookError::InvalidField { field, .. } => Some(field),
        }
    }
}

/// The path with leading and trailing `/` removed (`"/events/call/"` -> `"events/call"`). Otherwise
/// unchanged: matching is case-sensitive.
pub fn normalize_path(path: &str) -> &str {
    path.trim_matches('/')
}

/// Whether `path` (normalised or not) is one of the six event paths that produce a
/// [`Webhook::Event`].
pub fn is_event_path(path: &str) -> bool {
    kind_of(normalize_path(path)).is_some()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Call,
    Summary,
    Recording,
    RecordAdded,
    RecordTagged,
    Dtmf,
}

fn kind_of(normalized: &str) -> Option<Kind> {
    match normalized {
        PATH_CALL => Some(Kind::Call),
        PATH_SUMMARY => Some(Kind::Summary),
        PATH_RECORDING => Some(Kind::Recording),
        PATH_RECORD_ADDED => Some(Kind::RecordAdded),
        PATH_RECORD_TAGGED => Some(Kind::RecordTagged),
        PATH_DTMF => Some(Kind::Dtmf),
        _ => None,
    }
}

impl Kind {
    /// The event of this kind from a whole payload (an object, or a problem at the root).
    fn read<'de, D: Deserializer<'de>>(self, d: D) -> Result<PbxEvent, D::Error> {
        Ok(match self {
            Kind::Call => PbxEvent::Call(lenient::payload(d)?),
            Kind::Summary => PbxEvent::Summary(lenient::payload(d)?),
            Kind::Recording => PbxEvent::Recording(lenient::payload(d)?),
            Kind::RecordAdded => PbxEvent::RecordAdded(lenient::payload(d)?),
            Kind::RecordTagged => PbxEvent::RecordTagged(lenient::payload(d)?),
            Kind::Dtmf => PbxEvent::Dtmf(lenient::payload(d)?),
        })
    }
}

/// Parse one webhook from its path and the raw `json` form field, as received.
///
/// For ignored paths the text is not parsed at all (Mango's connection test may send an empty
/// body).
pub fn parse_event(path: &str, json: &str) -> Result<Webhook, WebhookError> {
    let path = normalize_path(path);
    let Some(kind) = kind_of(path) else {
        return Ok(Webhook::Ignored {
            path: path.to_owned(),
        });
    };
    // Nearly every payload is well-formed: read it without tracking the path (which costs a
    // `String` per key), and read it again with the tracking only to say what is wrong.
    let mut text = serde_json::Deserializer::from_str(json);
    if let Ok(event) = kind.read(&mut text) {
        if text.end().is_ok() {
            return Ok(Webhook::Event(event));
        }
    }
    let mut track = serde_path_to_error::Track::new();
    let mut text = serde_json::Deserializer::from_str(json);
    let read = kind.read(serde_path_to_error::Deserializer::new(
        &mut text, &mut track,
    ));
    let error = match read.and_then(|_| text.end()) {
        Ok(()) => unreachable!("the same text read twice is judged alike"),
        Err(e) => e,
    };
    Err(classify(path, &track.path(), &error))
}

/// Parse an event as the event log keeps it: a webhook's path and `json`, or a summary that
/// reconciliation rebuilt from statistics ([`PATH_RECOVERED_SUMMARY`], read as a summary and
/// marked recovered).
pub fn parse_stored(path: &str, json: &str) -> Result<Webhook, WebhookError> {
    if normalize_path(path) != PATH_RECOVERED_SUMMARY {
        return parse_event(path, json);
    }
    Ok(match parse_event(PATH_SUMMARY, json)? {
        Webhook::Event(PbxEvent::Summary(mut summary)) => {
            summary.recovered = true;
            Webhook::Event(PbxEvent::Summary(summary))
        }
        other => other,
    })
}

/// Parse one webhook from its path and the already decoded `json` payload (as in a
/// `callbridge simulate` events file).
pub fn parse_value(path: &str, json: &Value) -> Result<Webhook, WebhookError> {
    let path = normalize_path(path);
    let Some(kind) = kind_of(path) else {
        return Ok(Webhook::Ignored {
            path: path.to_owned(),
        });
    };
    if let Ok(event) = kind.read(json) {
        return Ok(Webhook::Event(event));
    }
    let mut track = serde_path_to_error::Track::new();
    match kind.read(serde_path_to_error::Deserializer::new(json, &mut track)) {
        Ok(_) => unreachable!("the same value read twice is judged alike"),
        Err(e) => Err(classify(path, &track.path(), &e)),
    }
}

/// The [`WebhookError`] for what serde said went wrong at `at` (the field's path, empty at the
/// root).
fn classify(path: &str, at: &serde_path_to_error::Path, e: &serde_json::Error) -> WebhookError {
    let path = path.to_owned();
    if e.classify() != serde_json::error::Category::Data {
        return WebhookError::Json {
            path,
            problem: format!("invalid JSON: {e}"),
        };
    }
    // serde_json appends where in the text the error is; the field's name says it better.
    let message = e.to_string();
    let message = if e.line() == 0 {
        message.as_str()
    } else {
        let position = format!(" at line {} column {}", e.line(), e.column());
        message.strip_suffix(&position).unwrap_or(&message)
    };
    let field: Vec<&str> = at
        .iter()
        .filter_map(|segment| match segment {
            serde_path_to_error::Segment::Map { key } => Some(key.as_str()),
            _ => None,
        })
        .collect();
    let field = field.join(".");
    // The two problems serde's derive reports itself, at the object that lacks or repeats a field.
    let named = |prefix: &str| {
        let name = message.strip_prefix(prefix)?.strip_suffix('`')?;
        Some(if field.is_empty() {
            name.to_owned()
        } else {
            format!("{field}.{name}")
        })
    };
    if let Some(field) = named("missing field `") {
        return WebhookError::MissingField { path, field };
    }
    if let Some(field) = named("duplicate field `") {
        return WebhookError::InvalidField {
            path,
            field,
            problem: "given more than once".to_owned(),
        };
    }
    match message {
        _ if field.is_empty() => WebhookError::Json {
            path,
            problem: message.to_owned(),
        },
        lenient::MISSING => WebhookError::MissingField { path, field },
        lenient::EMPTY => WebhookError::EmptyField { path, field },
        problem => WebhookError::InvalidField {
            path,
            field,
            problem: problem.to_owned(),
        },
    }
}

/// The text against its decoded [`Value`]: both are read by the same derived code, and this pins
/// that they are judged alike (the text exactly as strictly as `serde_json` decodes a [`Value`],
/// also in fields nobody reads).
#[cfg(test)]
mod text_and_value_tests {
    use super::{parse_event, parse_value, Webhook, WebhookError};
    use proptest::prelude::*;
    use serde_json::Value;

    const KINDS: &[&str] = &[
        "events/call",
        "events/summary",
        "events/recording",
        "events/record/added",
        "events/record/tagged",
        "events/dtmf",
    ];

    /// `parse_event` on a text accepts it exactly when `parse_value` accepts its decoded value,
    /// with the same event, and refuses a text `serde_json` cannot decode. Errors are compared
    /// only when the payload has one fault: with several, each names the first in its own order
    /// (the text's, or the decoded value's sorted keys), and a field given twice is refused in
    /// the text while the decoded value kept its last copy.
    fn check(path: &str, json: &str) {
        let text = parse_event(path, json);
        match serde_json::from_str::<Value>(json) {
            Err(_) => assert!(text.is_err(), "{path} {json}: {text:?}"),
            Ok(value) => match (text, parse_value(path, &value)) {
                (Err(_), Err(_)) => {}
                (Err(_), Ok(_)) if repeats_a_key(json) => {}
                (text, value) => assert_eq!(text, value, "{path} {json}"),
            },
        }
    }

    /// Whether an object anywhere in the (valid) JSON text has a key twice.
    fn repeats_a_key(json: &str) -> bool {
        use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
        struct Repeats(bool);
        impl<'de> Deserialize<'de> for Repeats {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = Repeats;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str("JSON")
                    }
                    fn visit_bool<E>(self, _: bool) -> Result<Repeats, E> {
                        Ok(Repeats(false))
                    }
                    fn visit_i64<E>(self, _: i64) -> Result<Repeats, E> {
                        Ok(Repeats(false))
                    }
                    fn visit_u64<E>(self, _: u64) -> Result<Repeats, E> {
                        Ok(Repeats(false))
                    }
                    fn visit_f64<E>(self, _: f64) -> Result<Repeats, E> {
                        Ok(Repeats(false))
                    }
                    fn visit_str<E>(self, _: &str) -> Result<Repeats, E> {
                        Ok(Repeats(false))
                    }
                    fn visit_unit<E>(self) -> Result<Repeats, E> {
                        Ok(Repeats(false))
                    }
                    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Repeats, A::Error> {
                        let mut any = false;
                        while let Some(Repeats(r)) = seq.next_element()? {
                            any |= r;
                        }
                        Ok(Repeats(any))
                    }
                    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Repeats, A::Error> {
                        let mut keys = std::collections::HashSet::new();
                        let mut any = false;
                        while let Some(key) = map.next_key::<String>()? {
                            any |= !keys.insert(key);
                            any |= map.next_value::<Repeats>()?.0;
                        }
                        Ok(Repeats(any))
                    }
                }
                d.deserialize_any(V)
            }
        }
        serde_json::from_str::<Repeats>(json).is_ok_and(|r| r.0)
    }

    #[test]
    fn generated_traffic_parses_the_same_both_ways() {
        let t = callbridge_traffic::generate(&callbridge_traffic::Config {
            calls: 2_000,
            seed: 7,
            duplicates: 0.05,
            reorder: 0.05,
            lost_summaries: 0.01,
            ..callbridge_traffic::Config::default()
        });
        assert!(t.events.len() > 2_000);
        for event in &t.events {
            let (path, json) = crate::wire::to_json(event);
            let text = json.to_string();
            check(path, &text);
            assert_eq!(
                parse_event(path, &text)
                    .ok()
                    .and_then(Webhook::into_event)
                    .as_ref(),
                Some(event),
                "{text}"
            );
        }
    }

    #[test]
    fn a_field_given_twice_is_named() {
        for (path, json, field) in [
            (
                "events/call",
                r#"{"entry_id":"e","entry_id":"f","call_id":"c","timestamp":1,"call_state":"Appeared"}"#,
                "entry_id",
            ),
            (
                "events/call",
                r#"{"entry_id":"e","call_id":"c","timestamp":1,"call_state":"Appeared","from":{"extension":"1","extension":2}}"#,
                "from.extension",
            ),
        ] {
            assert_eq!(
                parse_event(path, json),
                Err(WebhookError::InvalidField {
                    path: path.to_owned(),
                    field: field.to_owned(),
                    problem: "given more than once".to_owned()
                })
            );
        }
        // Unknown fields may repeat.
        let json = r#"{"entry_id":"e","recording_id":"r","x":1,"x":2}"#;
        assert!(parse_event("events/record/added", json).is_ok());
    }

    #[test]
    fn text_level_oddities() {
        for (path, json) in [
            (
                "events/call",
                r#"{"entry_id":"e","call_id":"c","timestamp":1,"call_state":"Appeared","x":"\ud800"}"#,
            ),
            (
                "events/call",
                r#"{"entry_id":"e","call_id":"c","timestamp":1,"call_state":"Appeared","x":1e400}"#,
            ),
            (
                "events/call",
                r#"{"entry_id":"e","call_id":"c","timestamp":1,"call_state":"Appeared","x":"a	b"}"#,
            ),
            (
                "events/call",
                r#"{"entry_id":"e","call_id":"c","timestamp":1,"call_state":"Appeared","x":"\q"}"#,
            ),
            (
                "events/call",
                r#"{"entry_id":"e","call_id":"c","timestamp":1,"call_state":"Appeared"} x"#,
            ),
            (
                "events/call",
                r#"{"entry\u005fid":"\u0065","call_id":"c","timestamp":1,"call_state":"Appeared"}"#,
            ),
            (
                "events/call",
                r#"{"entry_id":"e","call_id":"c","timestamp":1,"call_state":"Appeared","from":{"\ud800":1}}"#,
            ),
            (
                "events/call",
                r#"{"entry_id":"e","entry_id":"f","call_id":"c","timestamp":1,"call_state":"Appeared"}"#,
            ),
            (
                "events/call",
                r#"{"entry_id":[],"entry_id":"f","call_id":"c","timestamp":1,"call_state":"Appeared"}"#,
            ),
            (
                "events/call",
                r#"{"entry_id":"f","entry_id":[],"call_id":"c","timestamp":1,"call_state":"Appeared"}"#,
            ),
            (
                "events/call",
                r#"{"entry_id":"e","call_id":"c","timestamp":1,"call_state":"Appeared","from":{"extension":[]},"from":[]}"#,
            ),
            (
                "events/summary",
                r#"{"entry_id":"e","to":{"line_number":"7"},"from":"","call_direction":"1"}"#,
            ),
            (
                "events/recording",
                r#"{"entry_id":"e","recording_id":"r","recording_state":"Started","from":5}"#,
            ),
            ("events/record/added", r#"[]"#),
            (
                "events/record/added",
                r#"{"entry_id":"e","recording_id":"r","user_id":-0}"#,
            ),
            (
                "events/record/added",
                r#"{"entry_id":"e","recording_id":"r","user_id":-0.0}"#,
            ),
        ] {
            check(path, json);
        }
        let deep = format!(
            r#"{{"entry_id":"e","recording_id":"r","x":{}{}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        check("events/record/added", &deep);
        let ok_depth = format!(
            r#"{{"entry_id":"e","recording_id":"r","x":{}{}}}"#,
            "[".repeat(100),
            "]".repeat(100)
        );
        check("events/record/added", &ok_depth);
    }

    /// JSON texts of values that sit on the edges of the lenient rules.
    const VALUES: &[&str] = &[
        "null",
        "true",
        "false",
        "0",
        "1",
        "2",
        "-1",
        "255",
        "256",
        "4294967295",
        "4294967296",
        "18446744073709551615",
        "18446744073709551616",
        "-9223372036854775808",
        "-9223372036854775809",
        "2.0",
        "2.5",
        "-0",
        "-0.0",
        "1e3",
        "1.0e20",
        "1e40",
        "\"\"",
        "\" \"",
        "\"0\"",
        "\"1\"",
        "\" 7 \"",
        "\"+3\"",
        "\"-3\"",
        "\"2.0\"",
        "\"x\"",
        "\"TRUE\"",
        "\"False\"",
        "\"true \"",
        "\"\\u0031\"",
        "\"ivr\"",
        "\"queue\"",
        "\"abonent\"",
        "\"sip:1@x\"",
        "\"Appeared\"",
        "\"Connected\"",
        "\"OnHold\"",
        "\"Disconnected\"",
        "\"Started\"",
        "\"Continued\"",
        "\"Completed\"",
        "\"blind\"",
        "\"consultative\"",
        "\"return_blind\"",
        "\"\\u00e9t\\u00e9\"",
        "\"a\\\"b\"",
        "[]",
        "[1]",
        "[[]]",
        "{}",
        "{\"a\":1}",
        "{\"extension\":\"101\",\"was_transferred\":\"1\"}",
        "{\"extension\":29,\"was_transfered\":1,\"hold_initiator\":\"false\",\"line_number\":\"\"}",
        "{\"number\":\"+7\",\"acd_group\":5,\"taken_from_call_id\":null,\"was_transferred\":2}",
        "{\"line_number\":\"74950000000\",\"number\":[]}",
    ];

    /// The field names the parser reads (`FIELD_NAMES`), and at index `KEY_COUNT - 1` one it
    /// does not.
    const KEY_COUNT: usize = super::FIELD_NAMES.len() + 1;

    fn key(i: usize) -> &'static str {
        super::FIELD_NAMES.get(i).copied().unwrap_or("unknown")
    }

    /// A payload that usually gets through: the required fields set, then random fields (which
    /// may repeat, and override the required ones).
    fn payload() -> impl Strategy<Value = (usize, String)> {
        (
            0..KINDS.len(),
            proptest::collection::vec((0..KEY_COUNT, 0..VALUES.len()), 0..8),
        )
            .prop_map(|(kind, extra)| {
                let mut fields: Vec<(String, String)> = vec![
                    ("entry_id".into(), "\"e1\"".into()),
                    ("call_id".into(), "\"c1\"".into()),
                    ("recording_id".into(), "\"r1\"".into()),
                    ("timestamp".into(), "1700000000".into()),
                    ("call_state".into(), "\"Connected\"".into()),
                    ("recording_state".into(), "\"Completed\"".into()),
                    ("dtmf".into(), "\"12#\"".into()),
                ];
                for (k, v) in extra {
                    fields.push((key(k).to_owned(), VALUES[v].to_owned()));
                }
                let body: Vec<String> =
                    fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
                (kind, format!("{{{}}}", body.join(",")))
            })
    }

    /// A party object with random fields.
    fn with_party() -> impl Strategy<Value = (usize, String)> {
        (
            0..2usize,
            proptest::collection::vec((0..KEY_COUNT, 0..VALUES.len()), 0..6),
            proptest::collection::vec((0..KEY_COUNT, 0..VALUES.len()), 0..6),
        )
            .prop_map(|(kind, from, to)| {
                let obj = |fields: Vec<(usize, usize)>| {
                    let body: Vec<String> = fields
                        .iter()
                        .map(|(k, v)| format!("\"{}\":{}", key(*k), VALUES[*v]))
                        .collect();
                    format!("{{{}}}", body.join(","))
                };
                let json = format!(
                    "{{\"entry_id\":\"e\",\"call_id\":\"c\",\"timestamp\":1,\"call_state\":\"OnHold\",\"from\":{},\"to\":{}}}",
                    obj(from),
                    obj(to)
                );
                (kind, json)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn random_payloads_parse_the_same_both_ways((kind, json) in payload()) {
            check(KINDS[kind], &json);
        }

        #[test]
        fn random_parties_parse_the_same_both_ways((kind, json) in with_party()) {
            check(KINDS[kind], &json);
        }

        #[test]
        fn arbitrary_text_parses_the_same_both_ways(kind in 0..KINDS.len(), json in "\\PC{0,40}") {
            check(KINDS[kind], &json);
        }
    }
}
