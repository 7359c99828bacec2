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
