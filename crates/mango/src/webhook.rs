//! Webhook payloads: turn what Mango POSTs (`path` suffix + the `json` form field) into
//! [`callbridge_core::PbxEvent`]s.
//!
//! The parser walks a borrowed [`serde_json::Value`] by hand, so every error names the offending
//! field (`from.extension`, `seq`, ...) and nothing but the few strings that end up in the event is
//! copied.
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
//! be, ...) is a [`WebhookError`] naming the path and the field.

use callbridge_core::{
    CallEvent, CallState, Location, Party, PbxEvent, RecordStoredEvent, RecordingEvent,
    RecordingState, SummaryDirection, SummaryEvent, TransferKind,
};
use serde_json::{Map, Value};

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

/// What one webhook request means to callbridge.
// Nearly every webhook is an event, and it is moved straight into the core: boxing it to shrink the
// rare `Ignored` case would cost an allocation per event for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Webhook {
    /// One of the five event paths the core consumes, parsed.
    Event(PbxEvent),
    /// Any other path (`events/dtmf`, `events/sms`, `result/...`, `ping`, unknown ones). The payload
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

/// Whether `path` (normalised or not) is one of the five event paths that produce a
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
}

fn kind_of(normalized: &str) -> Option<Kind> {
    match normalized {
        PATH_CALL => Some(Kind::Call),
        PATH_SUMMARY => Some(Kind::Summary),
        PATH_RECORDING => Some(Kind::Recording),
        PATH_RECORD_ADDED => Some(Kind::RecordAdded),
        PATH_RECORD_TAGGED => Some(Kind::RecordTagged),
        _ => None,
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
    if let Some(event) = fast::parse(kind, json) {
        return Ok(Webhook::Event(event));
    }
    // The fast path gave up: the payload is malformed (or unusual), and the `Value` path says
    // precisely how.
    let value: Value = serde_json::from_str(json).map_err(|e| WebhookError::Json {
        path: path.to_owned(),
        problem: format!("invalid JSON: {e}"),
    })?;
    parse_kind(kind, path, &value)
}

/// Parse one webhook from its path and the already decoded `json` payload (as in a
/// `callbridge simulate` events file).
pub fn parse_value(path: &str, json: &Value) -> Result<Webhook, WebhookError> {
    let path = normalize_path(path);
    match kind_of(path) {
        Some(kind) => parse_kind(kind, path, json),
        None => Ok(Webhook::Ignored {
            path: path.to_owned(),
        }),
    }
}

fn parse_kind(kind: Kind, path: &str, json: &Value) -> Result<Webhook, WebhookError> {
    let Value::Object(map) = json else {
        return Err(WebhookError::Json {
            path: path.to_owned(),
            problem: format!("expected a JSON object, got {}", describe(json)),
        });
    };
    let f = Fields {
        path,
        prefix: "",
        map,
    };
    let event = match kind {
        Kind::Call => PbxEvent::Call(call(&f)?),
        Kind::Summary => PbxEvent::Summary(summary(&f)?),
        Kind::Recording => PbxEvent::Recording(recording(&f)?),
        Kind::RecordAdded => PbxEvent::RecordAdded(record_stored(&f)?),
        Kind::RecordTagged => PbxEvent::RecordTagged(record_stored(&f)?),
    };
    Ok(Webhook::Event(event))
}

fn call(f: &Fields<'_>) -> Result<CallEvent, WebhookError> {
    Ok(CallEvent {
        entry_id: f.req_str("entry_id")?,
        call_id: f.req_str("call_id")?,
        timestamp: f.req_int("timestamp")?,
        seq: f.opt_int("seq")?.unwrap_or(0),
        call_state: f.req_enum("call_state", parse_call_state, CALL_STATES)?,
        location: f.location("location")?,
        from: f.party("from")?,
        to: f.party("to")?,
        disconnect_reason: f.opt_int("disconnect_reason")?,
        transfer: f.transfer("transfer")?,
        command_id: f.opt_str("command_id")?,
        callback_initiator: f.opt_str("callback_initiator")?,
    })
}

fn summary(f: &Fields<'_>) -> Result<SummaryEvent, WebhookError> {
    let entry_id = f.req_str("entry_id")?;
    let call_direction = match f.opt_int::<i128>("call_direction")? {
        Some(0) => SummaryDirection::Internal,
        Some(1) => SummaryDirection::Inbound,
        Some(2) => SummaryDirection::Outbound,
        _ => SummaryDirection::Unknown,
    };
    let from = f.party("from")?;
    let to = f.party("to")?;
    let line_number = match f.opt_str("line_number")? {
        Some(line) => Some(line),
        None => to.line_number.clone(),
    };
    Ok(SummaryEvent {
        entry_id,
        call_direction,
        from,
        to,
        line_number,
        create_time: f.opt_int("create_time")?.unwrap_or(0),
        forward_time: f.opt_int("forward_time")?.unwrap_or(0),
        talk_time: f.opt_int("talk_time")?.unwrap_or(0),
        end_time: f.opt_int("end_time")?.unwrap_or(0),
        entry_result: f.opt_int("entry_result")?,
        disconnect_reason: f.opt_int("disconnect_reason")?,
    })
}

fn recording(f: &Fields<'_>) -> Result<RecordingEvent, WebhookError> {
    Ok(RecordingEvent {
        entry_id: f.req_str("entry_id")?,
        call_id: f.opt_str("call_id")?,
        recording_id: f.req_str("recording_id")?,
        recording_state: f.req_enum("recording_state", parse_recording_state, RECORDING_STATES)?,
        seq: f.opt_int("seq")?.unwrap_or(0),
        extension: f.opt_str("extension")?,
        timestamp: f.opt_int("timestamp")?.unwrap_or(0),
        completion_code: f.opt_int("completion_code")?,
    })
}

fn record_stored(f: &Fields<'_>) -> Result<RecordStoredEvent, WebhookError> {
    Ok(RecordStoredEvent {
        entry_id: f.req_str("entry_id")?,
        recording_id: f.req_str("recording_id")?,
        user_id: f.opt_int("user_id")?,
        product_id: f.opt_int("product_id")?,
        timestamp: f.opt_int("timestamp")?.unwrap_or(0),
    })
}

const CALL_STATES: &str = "Appeared, Connected, OnHold, Disconnected";
const RECORDING_STATES: &str = "Started, Continued, Completed";

fn parse_call_state(s: &str) -> Option<CallState> {
    match s {
        "Appeared" => Some(CallState::Appeared),
        "Connected" => Some(CallState::Connected),
        "OnHold" => Some(CallState::OnHold),
        "Disconnected" => Some(CallState::Disconnected),
        _ => None,
    }
}

fn parse_recording_state(s: &str) -> Option<RecordingState> {
    match s {
        "Started" => Some(RecordingState::Started),
        "Continued" => Some(RecordingState::Continued),
        "Completed" => Some(RecordingState::Completed),
        _ => None,
    }
}

/// Integer types a field can be read as, with the wording used when a value does not fit.
trait IntField: TryFrom<i128> {
    const EXPECTED: &'static str;
}

impl IntField for u64 {
    const EXPECTED: &'static str = "a non-negative integer";
}
impl IntField for u32 {
    const EXPECTED: &'static str = "a non-negative integer (at most 4294967295)";
}
impl IntField for u8 {
    const EXPECTED: &'static str = "an integer from 0 to 255";
}
impl IntField for i64 {
    const EXPECTED: &'static str = "an integer";
}
impl IntField for i128 {
    const EXPECTED: &'static str = "an integer";
}

/// The fields of one JSON object of the payload: the top level, or `from` / `to` (then `prefix` is
/// `"from."` / `"to."`, used only to name fields in errors).
struct Fields<'a> {
    path: &'a str,
    prefix: &'static str,
    map: &'a Map<String, Value>,
}

impl<'a> Fields<'a> {
    /// The value of a field; `None` when absent or `null`.
    fn get(&self, name: &str) -> Option<&'a Value> {
        match self.map.get(name) {
            None | Some(Value::Null) => None,
            Some(v) => Some(v),
        }
    }

    fn field_name(&self, name: &str) -> String {
        format!("{}{}", self.prefix, name)
    }

    fn missing(&self, name: &str) -> WebhookError {
        WebhookError::MissingField {
            path: self.path.to_owned(),
            field: self.field_name(name),
        }
    }

    fn empty(&self, name: &str) -> WebhookError {
        WebhookError::EmptyField {
            path: self.path.to_owned(),
            field: self.field_name(name),
        }
    }

    fn invalid(&self, name: &str, problem: String) -> WebhookError {
        WebhookError::InvalidField {
            path: self.path.to_owned(),
            field: self.field_name(name),
            problem,
        }
    }

    /// A text field: a string, or an integer written as its decimal digits. `Ok(None)` when
    /// absent, `null` or empty.
    fn opt_str(&self, name: &str) -> Result<Option<String>, WebhookError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(Some(n.to_string())),
            Some(v) => Err(self.invalid(name, format!("expected a string, got {}", describe(v)))),
        }
    }

    /// A required text field: absent or `null` is missing, `""` is empty.
    fn req_str(&self, name: &str) -> Result<String, WebhookError> {
        if matches!(self.get(name), Some(Value::String(s)) if s.is_empty()) {
            return Err(self.empty(name));
        }
        self.opt_str(name)?.ok_or_else(|| self.missing(name))
    }

    /// An integer field. `Ok(None)` when absent, `null` or an empty string.
    fn opt_int<T: IntField>(&self, name: &str) -> Result<Option<T>, WebhookError> {
        let Some(v) = self.get(name) else {
            return Ok(None);
        };
        let wide = match v {
            Value::String(s) if s.trim().is_empty() => return Ok(None),
            Value::String(s) => s.trim().parse::<i128>().ok(),
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Some(i128::from(i))
                } else if let Some(u) = n.as_u64() {
                    Some(i128::from(u))
                } else {
                    // A float: accepted when it is a whole number (`2.0`); `as` saturates, and
                    // the range check below then rejects values too large for the field.
                    n.as_f64()
                        .filter(|x| x.is_finite() && x.fract() == 0.0)
                        .map(|x| x as i128)
                }
            }
            _ => None,
        };
        match wide.and_then(|w| T::try_from(w).ok()) {
            Some(x) => Ok(Some(x)),
            None => Err(self.invalid(
                name,
                format!("expected {}, got {}", T::EXPECTED, describe(v)),
            )),
        }
    }

    /// A required integer field: absent or `null` is missing, `""` is empty.
    fn req_int<T: IntField>(&self, name: &str) -> Result<T, WebhookError> {
        if matches!(self.get(name), Some(Value::String(s)) if s.trim().is_empty()) {
            return Err(self.empty(name));
        }
        self.opt_int(name)?.ok_or_else(|| self.missing(name))
    }

    /// A boolean field: `true`/`false`, `1`/`0`, or those as strings (`"TRUE"` too). Absent,
    /// `null` and `""` are `false`.
    fn opt_bool(&self, name: &str) -> Result<bool, WebhookError> {
        let Some(v) = self.get(name) else {
            return Ok(false);
        };
        let parsed = match v {
            Value::Bool(b) => Some(*b),
            Value::Number(n) => match n.as_f64() {
                Some(0.0) => Some(false),
                Some(1.0) => Some(true),
                _ => None,
            },
            Value::String(s) => {
                let s = s.trim();
                if s.is_empty() || s == "0" || s.eq_ignore_ascii_case("false") {
                    Some(false)
                } else if s == "1" || s.eq_ignore_ascii_case("true") {
                    Some(true)
                } else {
                    None
                }
            }
            _ => None,
        };
        parsed.ok_or_else(|| {
            self.invalid(
                name,
                format!(
                    "expected a boolean (true, false, 1, 0), got {}",
                    describe(v)
                ),
            )
        })
    }

    /// A required string enum field.
    fn req_enum<T>(
        &self,
        name: &str,
        parse: fn(&str) -> Option<T>,
        expected: &str,
    ) -> Result<T, WebhookError> {
        match self.get(name) {
            None => Err(self.missing(name)),
            Some(Value::String(s)) if s.is_empty() => Err(self.empty(name)),
            Some(Value::String(s)) => parse(s).ok_or_else(|| {
                self.invalid(
                    name,
                    format!("unknown value {} (expected {expected})", quote(s)),
                )
            }),
            Some(v) => Err(self.invalid(
                name,
                format!("expected a string (one of {expected}), got {}", describe(v)),
            )),
        }
    }

    /// `location`: known values typed, anything else kept as [`Location::Other`] (an absent
    /// location is `Other("")`).
    fn location(&self, name: &str) -> Result<Location, WebhookError> {
        let raw = self.opt_str(name)?.unwrap_or_default();
        Ok(match raw.as_str() {
            "ivr" => Location::Ivr,
            "queue" => Location::Queue,
            "abonent" => Location::Abonent,
            _ => Location::Other(raw),
        })
    }

    /// `transfer`: an unknown value is dropped rather than rejected.
    fn transfer(&self, name: &str) -> Result<Option<TransferKind>, WebhookError> {
        match self.get(name) {
            Some(Value::String(s)) => Ok(match s.as_str() {
                "consultative" => Some(TransferKind::Consultative),
                "blind" => Some(TransferKind::Blind),
                "return_blind" => Some(TransferKind::ReturnBlind),
                _ => None,
            }),
            // Not a string at all: an unknown value too.
            _ => Ok(None),
        }
    }

    /// `from` / `to`: absent, `null`, `[]` or `""` give an empty party.
    fn party(&self, name: &'static str) -> Result<Party, WebhookError> {
        let prefix = match name {
            "from" => "from.",
            "to" => "to.",
            _ => "party.",
        };
        let map = match self.get(name) {
            None => return Ok(Party::default()),
            Some(Value::Array(a)) if a.is_empty() => return Ok(Party::default()),
            Some(Value::String(s)) if s.is_empty() => return Ok(Party::default()),
            Some(Value::Object(map)) => map,
            Some(v) => {
                return Err(self.invalid(name, format!("expected an object, got {}", describe(v))))
            }
        };
        let p = Fields {
            path: self.path,
            prefix,
            map,
        };
        let was_transferred = p.opt_bool("was_transferred")?;
        let was_transfered = p.opt_bool("was_transfered")?;
        Ok(Party {
            extension: p.opt_str("extension")?,
            number: p.opt_str("number")?,
            taken_from_call_id: p.opt_str("taken_from_call_id")?,
            line_number: p.opt_str("line_number")?,
            acd_group: p.opt_str("acd_group")?,
            was_transferred: was_transferred || was_transfered,
            hold_initiator: p.opt_bool("hold_initiator")?,
        })
    }
}

/// Longest rendering of an offending value in an error message, in characters.
const MAX_SHOWN: usize = 40;

/// A short, one-line rendering of an offending value for error messages.
fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => truncate(n.to_string()),
        Value::String(s) => quote(s),
        Value::Array(_) => "an array".to_owned(),
        Value::Object(_) => "an object".to_owned(),
    }
}

/// A string as a JSON literal (so control characters stay escaped), cut to [`MAX_SHOWN`].
fn quote(s: &str) -> String {
    if s.chars().count() > MAX_SHOWN {
        let cut: String = s.chars().take(MAX_SHOWN).collect();
        format!("{}...", Value::String(cut))
    } else {
        Value::String(s.to_owned()).to_string()
    }
}

fn truncate(s: String) -> String {
    if s.chars().count() > MAX_SHOWN {
        let cut: String = s.chars().take(MAX_SHOWN).collect();
        format!("{cut}...")
    } else {
        s
    }
}

/// The fast path of [`parse_event`]: the `json` text is deserialized straight into flat, borrowed
/// slots (no [`Value`] tree, no `String` per key), then read with the same rules as [`Fields`].
///
/// It only ever answers for payloads the [`Value`] path accepts, with the same event: any problem
/// at all (bad JSON, a malformed field, a duplicate key whose earlier value is bad, ...) makes it
/// give up with `None`, and [`parse_event`] then runs the [`Value`] path for its precise error.
/// Every value, including those of unknown fields, is deserialized through `deserialize_any` as
/// [`Value`] would be, so the text is checked exactly as strictly (string escapes, number range,
/// nesting depth).
mod fast {
    use super::{parse_call_state, parse_recording_state, IntField, Kind};
    use callbridge_core::{
        CallEvent, Location, Party, PbxEvent, RecordStoredEvent, RecordingEvent, SummaryDirection,
        SummaryEvent, TransferKind,
    };
    use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
    use std::borrow::Cow;
    use std::fmt;

    /// One JSON value as far as the parser cares: scalars kept (strings borrowed when they have
    /// no escapes), arrays and objects only described. Absent and `null` are both `Null`.
    #[derive(Debug, Default)]
    enum Lit<'a> {
        #[default]
        Null,
        Bool(bool),
        /// Any JSON integer (`u64` or `i64`).
        Int(i128),
        Float(f64),
        Str(Cow<'a, str>),
        Array {
            empty: bool,
        },
        Object,
    }

    struct LitVisitor;

    impl<'de> Visitor<'de> for LitVisitor {
        type Value = Lit<'de>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Lit<'de>, E> {
            Ok(Lit::Null)
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Lit<'de>, E> {
            Ok(Lit::Bool(v))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Lit<'de>, E> {
            Ok(Lit::Int(i128::from(v)))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Lit<'de>, E> {
            Ok(Lit::Int(i128::from(v)))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Lit<'de>, E> {
            Ok(Lit::Float(v))
        }
        fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Lit<'de>, E> {
            Ok(Lit::Str(Cow::Borrowed(v)))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Lit<'de>, E> {
            Ok(Lit::Str(Cow::Owned(v.to_owned())))
        }
        fn visit_string<E: de::Error>(self, v: String) -> Result<Lit<'de>, E> {
            Ok(Lit::Str(Cow::Owned(v)))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Lit<'de>, A::Error> {
            let mut empty = true;
            while seq.next_element::<Lit<'de>>()?.is_some() {
                empty = false;
            }
            Ok(Lit::Array { empty })
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Lit<'de>, A::Error> {
            while map.next_key::<AnyKey>()?.is_some() {
                map.next_value::<Lit<'de>>()?;
            }
            Ok(Lit::Object)
        }
    }

    impl<'de> Deserialize<'de> for Lit<'de> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(LitVisitor)
        }
    }

    /// An object key that is not looked at (still decoded as a string, as [`Value`] does).
    struct AnyKey;

    impl<'de> Deserialize<'de> for AnyKey {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl Visitor<'_> for V {
                type Value = AnyKey;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a key")
                }
                fn visit_str<E: de::Error>(self, _: &str) -> Result<AnyKey, E> {
                    Ok(AnyKey)
                }
            }
            d.deserialize_str(V)
        }
    }

    /// A key of a known set, as its index in `NAMES` (`None`: unknown, ignored).
    struct Key<const P: bool>(Option<usize>);

    impl<'de, const P: bool> Deserialize<'de> for Key<P> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V<const P: bool>;
            impl<const P: bool> Visitor<'_> for V<P> {
                type Value = Key<P>;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a key")
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<P>, E> {
                    Ok(Key(if P { party_index(v) } else { top_index(v) }))
                }
            }
            d.deserialize_str(V::<P>)
        }
    }

    const TOP_NAMES: &[&str] = &[
        "entry_id",
        "call_id",
        "timestamp",
        "seq",
        "call_state",
        "location",
        "from",
        "to",
        "disconnect_reason",
        "transfer",
        "command_id",
        "callback_initiator",
        "call_direction",
        "line_number",
        "create_time",
        "forward_time",
        "talk_time",
        "end_time",
        "entry_result",
        "recording_id",
        "recording_state",
        "extension",
        "completion_code",
        "user_id",
        "product_id",
    ];
    const TOP_N: usize = 25;

    /// The index of a name in [`TOP_NAMES`] (a `match` is much faster than a search).
    fn top_index(name: &str) -> Option<usize> {
        Some(match name {
            "entry_id" => 0,
            "call_id" => 1,
            "timestamp" => 2,
            "seq" => 3,
            "call_state" => 4,
            "location" => 5,
            "from" => 6,
            "to" => 7,
            "disconnect_reason" => 8,
            "transfer" => 9,
            "command_id" => 10,
            "callback_initiator" => 11,
            "call_direction" => 12,
            "line_number" => 13,
            "create_time" => 14,
            "forward_time" => 15,
            "talk_time" => 16,
            "end_time" => 17,
            "entry_result" => 18,
            "recording_id" => 19,
            "recording_state" => 20,
            "extension" => 21,
            "completion_code" => 22,
            "user_id" => 23,
            "product_id" => 24,
            _ => return None,
        })
    }

    /// The index of a name in [`PARTY_NAMES`].
    fn party_index(name: &str) -> Option<usize> {
        Some(match name {
            "extension" => 0,
            "number" => 1,
            "taken_from_call_id" => 2,
            "line_number" => 3,
            "acd_group" => 4,
            "was_transferred" => 5,
            "was_transfered" => 6,
            "hold_initiator" => 7,
            _ => return None,
        })
    }
    const FROM: usize = 6;
    const TO: usize = 7;

    const PARTY_NAMES: &[&str] = &[
        "extension",
        "number",
        "taken_from_call_id",
        "line_number",
        "acd_group",
        "was_transferred",
        "was_transfered",
        "hold_initiator",
    ];
    const PARTY_N: usize = 8;

    /// A `from` / `to` value: an object's known fields, or any other value.
    #[derive(Debug, Default)]
    enum Slot<'a> {
        #[default]
        Absent,
        Party(Box<[Lit<'a>; PARTY_N]>),
        Other(Lit<'a>),
    }

    struct SlotVisitor;

    macro_rules! forward_to_lit {
        ($($name:ident($ty:ty)),*) => {
            $(fn $name<E: de::Error>(self, v: $ty) -> Result<Slot<'de>, E> {
                LitVisitor.$name(v).map(Slot::Other)
            })*
        };
    }

    impl<'de> Visitor<'de> for SlotVisitor {
        type Value = Slot<'de>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Slot<'de>, E> {
            Ok(Slot::Other(Lit::Null))
        }
        forward_to_lit!(
            visit_bool(bool),
            visit_i64(i64),
            visit_u64(u64),
            visit_f64(f64),
            visit_borrowed_str(&'de str),
            visit_str(&str),
            visit_string(String)
        );
        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Slot<'de>, A::Error> {
            LitVisitor.visit_seq(seq).map(Slot::Other)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Slot<'de>, A::Error> {
            let mut fields: Box<[Lit<'de>; PARTY_N]> = Box::default();
            while let Some(Key::<true>(k)) = map.next_key()? {
                let v: Lit<'de> = map.next_value()?;
                if let Some(i) = k {
                    fields[i] = v;
                }
            }
            Ok(Slot::Party(fields))
        }
    }

    impl<'de> Deserialize<'de> for Slot<'de> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(SlotVisitor)
        }
    }

    /// The top-level object: known fields by index (absent ones `Null`), `from` and `to`.
    struct Top<'a> {
        fields: [Lit<'a>; TOP_N],
        from: Slot<'a>,
        to: Slot<'a>,
    }

    impl<'de> Deserialize<'de> for Top<'de> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Top<'de>;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a JSON object")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Top<'de>, A::Error> {
                    let mut top = Top {
                        fields: Default::default(),
                        from: Slot::Absent,
                        to: Slot::Absent,
                    };
                    // Later duplicates win, as in a `serde_json::Map`.
                    while let Some(Key::<false>(k)) = map.next_key()? {
                        match k {
                            Some(FROM) => top.from = map.next_value()?,
                            Some(TO) => top.to = map.next_value()?,
                            Some(i) => top.fields[i] = map.next_value()?,
                            None => {
                                map.next_value::<Lit<'de>>()?;
                            }
                        }
                    }
                    Ok(top)
                }
            }
            d.deserialize_any(V)
        }
    }

    impl<'a> Top<'a> {
        fn take(&mut self, name: &str) -> Lit<'a> {
            take(&mut self.fields, TOP_NAMES, name)
        }
    }

    fn take<'a>(fields: &mut [Lit<'a>], names: &[&str], name: &str) -> Lit<'a> {
        let i = names
            .iter()
            .position(|n| *n == name)
            .expect("a known field name");
        std::mem::take(&mut fields[i])
    }

    /// Parse `json` for `kind`; `None` when the [`Value`] path may say anything else than the
    /// returned event (it then decides).
    pub(super) fn parse(kind: Kind, json: &str) -> Option<PbxEvent> {
        let mut top: Top<'_> = serde_json::from_str(json).ok()?;
        Some(match kind {
            Kind::Call => PbxEvent::Call(call(&mut top)?),
            Kind::Summary => PbxEvent::Summary(summary(&mut top)?),
            Kind::Recording => PbxEvent::Recording(recording(&mut top)?),
            Kind::RecordAdded => PbxEvent::RecordAdded(record_stored(&mut top)?),
            Kind::RecordTagged => PbxEvent::RecordTagged(record_stored(&mut top)?),
        })
    }

    fn call(t: &mut Top<'_>) -> Option<CallEvent> {
        Some(CallEvent {
            entry_id: req_str(t.take("entry_id"))?,
            call_id: req_str(t.take("call_id"))?,
            timestamp: req_int(t.take("timestamp"))?,
            seq: opt_int(t.take("seq"))?.unwrap_or(0),
            call_state: req_enum(t.take("call_state"), parse_call_state)?,
            location: location(t.take("location"))?,
            from: party(std::mem::take(&mut t.from))?,
            to: party(std::mem::take(&mut t.to))?,
            disconnect_reason: opt_int(t.take("disconnect_reason"))?,
            transfer: transfer(t.take("transfer")),
            command_id: opt_str(t.take("command_id"))?,
            callback_initiator: opt_str(t.take("callback_initiator"))?,
        })
    }

    fn summary(t: &mut Top<'_>) -> Option<SummaryEvent> {
        let entry_id = req_str(t.take("entry_id"))?;
        let call_direction = match opt_int::<i128>(t.take("call_direction"))? {
            Some(0) => SummaryDirection::Internal,
            Some(1) => SummaryDirection::Inbound,
            Some(2) => SummaryDirection::Outbound,
            _ => SummaryDirection::Unknown,
        };
        let from = party(std::mem::take(&mut t.from))?;
        let to = party(std::mem::take(&mut t.to))?;
        let line_number = match opt_str(t.take("line_number"))? {
            Some(line) => Some(line),
            None => to.line_number.clone(),
        };
        Some(SummaryEvent {
            entry_id,
            call_direction,
            from,
            to,
            line_number,
            create_time: opt_int(t.take("create_time"))?.unwrap_or(0),
            forward_time: opt_int(t.take("forward_time"))?.unwrap_or(0),
            talk_time: opt_int(t.take("talk_time"))?.unwrap_or(0),
            end_time: opt_int(t.take("end_time"))?.unwrap_or(0),
            entry_result: opt_int(t.take("entry_result"))?,
            disconnect_reason: opt_int(t.take("disconnect_reason"))?,
        })
    }

    fn recording(t: &mut Top<'_>) -> Option<RecordingEvent> {
        Some(RecordingEvent {
            entry_id: req_str(t.take("entry_id"))?,
            call_id: opt_str(t.take("call_id"))?,
            recording_id: req_str(t.take("recording_id"))?,
            recording_state: req_enum(t.take("recording_state"), parse_recording_state)?,
            seq: opt_int(t.take("seq"))?.unwrap_or(0),
            extension: opt_str(t.take("extension"))?,
            timestamp: opt_int(t.take("timestamp"))?.unwrap_or(0),
            completion_code: opt_int(t.take("completion_code"))?,
        })
    }

    fn record_stored(t: &mut Top<'_>) -> Option<RecordStoredEvent> {
        Some(RecordStoredEvent {
            entry_id: req_str(t.take("entry_id"))?,
            recording_id: req_str(t.take("recording_id"))?,
            user_id: opt_int(t.take("user_id"))?,
            product_id: opt_int(t.take("product_id"))?,
            timestamp: opt_int(t.take("timestamp"))?.unwrap_or(0),
        })
    }

    // The readers below mirror the `Fields` methods of the same names; `None` is "an error there".

    fn opt_str(v: Lit<'_>) -> Option<Option<String>> {
        match v {
            Lit::Null => Some(None),
            Lit::Str(s) if s.is_empty() => Some(None),
            Lit::Str(s) => Some(Some(s.into_owned())),
            Lit::Int(i) => Some(Some(i.to_string())),
            _ => None,
        }
    }

    fn req_str(v: Lit<'_>) -> Option<String> {
        opt_str(v)?
    }

    fn opt_int<T: IntField>(v: Lit<'_>) -> Option<Option<T>> {
        let wide = match v {
            Lit::Null => return Some(None),
            Lit::Str(s) if s.trim().is_empty() => return Some(None),
            Lit::Str(s) => s.trim().parse::<i128>().ok(),
            Lit::Int(i) => Some(i),
            Lit::Float(x) => Some(x)
                .filter(|x| x.is_finite() && x.fract() == 0.0)
                .map(|x| x as i128),
            _ => None,
        };
        wide.and_then(|w| T::try_from(w).ok()).map(Some)
    }

    fn req_int<T: IntField>(v: Lit<'_>) -> Option<T> {
        // Absent, `null` and blank strings are errors there.
        opt_int(v)?
    }

    fn opt_bool(v: Lit<'_>) -> Option<bool> {
        match v {
            Lit::Null => Some(false),
            Lit::Bool(b) => Some(b),
            Lit::Int(i) => match i as f64 {
                0.0 => Some(false),
                1.0 => Some(true),
                _ => None,
            },
            Lit::Float(x) => match x {
                0.0 => Some(false),
                1.0 => Some(true),
                _ => None,
            },
            Lit::Str(s) => {
                let s = s.trim();
                if s.is_empty() || s == "0" || s.eq_ignore_ascii_case("false") {
                    Some(false)
                } else if s == "1" || s.eq_ignore_ascii_case("true") {
                    Some(true)
                } else {
                    None
                }
            }
            _ => None,
        }
    }

    fn req_enum<T>(v: Lit<'_>, parse: fn(&str) -> Option<T>) -> Option<T> {
        match v {
            Lit::Str(s) => parse(&s),
            _ => None,
        }
    }

    fn location(v: Lit<'_>) -> Option<Location> {
        let raw = opt_str(v)?.unwrap_or_default();
        Some(match raw.as_str() {
            "ivr" => Location::Ivr,
            "queue" => Location::Queue,
            "abonent" => Location::Abonent,
            _ => Location::Other(raw),
        })
    }

    fn transfer(v: Lit<'_>) -> Option<TransferKind> {
        match v {
            Lit::Str(s) => match &*s {
                "consultative" => Some(TransferKind::Consultative),
                "blind" => Some(TransferKind::Blind),
                "return_blind" => Some(TransferKind::ReturnBlind),
                _ => None,
            },
            _ => None,
        }
    }

    fn party(slot: Slot<'_>) -> Option<Party> {
        let mut p = match slot {
            Slot::Absent | Slot::Other(Lit::Null) | Slot::Other(Lit::Array { empty: true }) => {
                return Some(Party::default())
            }
            Slot::Other(Lit::Str(s)) if s.is_empty() => return Some(Party::default()),
            Slot::Other(_) => return None,
            Slot::Party(p) => p,
        };
        let mut take = |name: &str| take(&mut p[..], PARTY_NAMES, name);
        let was_transferred = opt_bool(take("was_transferred"))?;
        let was_transfered = opt_bool(take("was_transfered"))?;
        Some(Party {
            extension: opt_str(take("extension"))?,
            number: opt_str(take("number"))?,
            taken_from_call_id: opt_str(take("taken_from_call_id"))?,
            line_number: opt_str(take("line_number"))?,
            acd_group: opt_str(take("acd_group"))?,
            was_transferred: was_transferred || was_transfered,
            hold_initiator: opt_bool(take("hold_initiator"))?,
        })
    }

    #[cfg(test)]
    mod tests {
        use super::{party_index, top_index, PARTY_N, PARTY_NAMES, TOP_N, TOP_NAMES};

        #[test]
        fn name_tables_match_their_sizes() {
            for (i, name) in TOP_NAMES.iter().enumerate() {
                assert_eq!(top_index(name), Some(i), "{name}");
            }
            for (i, name) in PARTY_NAMES.iter().enumerate() {
                assert_eq!(party_index(name), Some(i), "{name}");
            }
            assert_eq!(top_index("number"), None);
            assert_eq!(party_index("seq"), None);
            assert_eq!(TOP_NAMES.len(), TOP_N);
            assert_eq!(PARTY_NAMES.len(), PARTY_N);
            assert_eq!(TOP_NAMES[super::FROM], "from");
            assert_eq!(TOP_NAMES[super::TO], "to");
        }
    }
}

/// The fast path against the [`Value`] path: whenever one accepts a payload, the other does too,
/// with the same event.
#[cfg(test)]
mod fast_path_tests {
    use super::{fast, kind_of, parse_event, parse_value, Webhook};
    use proptest::prelude::*;
    use serde_json::Value;

    const KINDS: &[&str] = &[
        "events/call",
        "events/summary",
        "events/recording",
        "events/record/added",
        "events/record/tagged",
    ];

    /// Both paths on one text: the fast path answers exactly when the `Value` path accepts, and
    /// then with its event; `parse_event` always agrees with `parse_value`.
    fn check(path: &str, json: &str) {
        let kind = kind_of(path).expect("an event path");
        let slow = serde_json::from_str::<Value>(json)
            .ok()
            .map(|v| parse_value(path, &v));
        match (fast::parse(kind, json), &slow) {
            (Some(e), Some(Ok(Webhook::Event(s)))) => assert_eq!(&e, s, "{path} {json}"),
            (None, Some(Ok(_))) => {
                panic!("fast path gave up on an accepted payload: {path} {json}")
            }
            (Some(e), _) => panic!("fast path accepted {path} {json} as {e:?}, slow: {slow:?}"),
            (None, _) => {}
        }
        match slow {
            Some(slow) => assert_eq!(parse_event(path, json), slow, "{path} {json}"),
            None => assert!(parse_event(path, json).is_err()),
        }
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
            let fast = fast::parse(kind_of(path).unwrap(), &text);
            assert_eq!(fast.as_ref(), Some(event), "{text}");
        }
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

    const KEYS: &[&str] = &[
        "entry_id",
        "call_id",
        "timestamp",
        "seq",
        "call_state",
        "location",
        "from",
        "to",
        "disconnect_reason",
        "transfer",
        "command_id",
        "callback_initiator",
        "call_direction",
        "line_number",
        "create_time",
        "forward_time",
        "talk_time",
        "end_time",
        "entry_result",
        "recording_id",
        "recording_state",
        "extension",
        "completion_code",
        "user_id",
        "product_id",
        "number",
        "was_transferred",
        "hold_initiator",
        "unknown",
    ];

    /// A payload that usually gets through: the required fields set, then random fields (which
    /// may repeat, and override the required ones).
    fn payload() -> impl Strategy<Value = (usize, String)> {
        (
            0..KINDS.len(),
            proptest::collection::vec((0..KEYS.len(), 0..VALUES.len()), 0..8),
        )
            .prop_map(|(kind, extra)| {
                let mut fields: Vec<(String, String)> = vec![
                    ("entry_id".into(), "\"e1\"".into()),
                    ("call_id".into(), "\"c1\"".into()),
                    ("recording_id".into(), "\"r1\"".into()),
                    ("timestamp".into(), "1700000000".into()),
                    ("call_state".into(), "\"Connected\"".into()),
                    ("recording_state".into(), "\"Completed\"".into()),
                ];
                for (k, v) in extra {
                    fields.push((KEYS[k].to_owned(), VALUES[v].to_owned()));
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
            proptest::collection::vec((0..KEYS.len(), 0..VALUES.len()), 0..6),
            proptest::collection::vec((0..KEYS.len(), 0..VALUES.len()), 0..6),
        )
            .prop_map(|(kind, from, to)| {
                let obj = |fields: Vec<(usize, usize)>| {
                    let body: Vec<String> = fields
                        .iter()
                        .map(|(k, v)| format!("\"{}\":{}", KEYS[*k], VALUES[*v]))
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
