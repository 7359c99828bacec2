//! The way back: a core [`PbxEvent`] rendered as the webhook Mango would POST for it (the path and
//! the `json` payload), for the Mango emulator and for generated `simulate` inputs.
//!
//! [`to_json`] is the inverse of [`crate::webhook::parse_value`]: parsing what it renders gives the
//! event back, for every event the parser can produce. Absent optional fields are left out, `false`
//! flags too (the parser reads absent as `false`), and numbers are JSON numbers, as Mango sends them.
//!
//! A summary reconciliation rebuilt from statistics (`recovered`) goes under
//! [`PATH_RECOVERED_SUMMARY`], which [`crate::webhook::parse_stored`] reads back with the mark.
//!
//! One shape has no JSON of its own: a summary whose `line_number` is `None` while `to.line_number`
//! is set, because the parser fills the first from the second. The parser never produces it.

use crate::webhook::{
    PATH_CALL, PATH_DTMF, PATH_RECORDING, PATH_RECORD_ADDED, PATH_RECORD_TAGGED,
    PATH_RECOVERED_SUMMARY, PATH_SUMMARY,
};
use callbridge_core::{
    CallEvent, CallState, CallTracking, DtmfEvent, Location, Party, PbxEvent, RecordStoredEvent,
    RecordingEvent, RecordingState, SummaryDirection, SummaryEvent, TrackingKind, TransferKind,
};
use serde_json::{Map, Value};

/// The webhook path (`events/call`, ...) and `json` payload of an event.
pub fn to_json(event: &PbxEvent) -> (&'static str, Value) {
    match event {
        PbxEvent::Call(e) => (PATH_CALL, call(e)),
        // A summary rebuilt from statistics is logged under its own path, which keeps the mark.
        PbxEvent::Summary(e) if e.recovered => (PATH_RECOVERED_SUMMARY, summary(e)),
        PbxEvent::Summary(e) => (PATH_SUMMARY, summary(e)),
        PbxEvent::Recording(e) => (PATH_RECORDING, recording(e)),
        PbxEvent::RecordAdded(e) => (PATH_RECORD_ADDED, record_stored(e)),
        PbxEvent::RecordTagged(e) => (PATH_RECORD_TAGGED, record_stored(e)),
        PbxEvent::Dtmf(e) => (PATH_DTMF, dtmf(e)),
    }
}

/// A JSON object under construction; optional fields are only written when present.
struct Obj(Map<String, Value>);

impl Obj {
    fn new() -> Self {
        Obj(Map::new())
    }

    fn set(&mut self, key: &str, value: impl Into<Value>) -> &mut Self {
        self.0.insert(key.to_owned(), value.into());
        self
    }

    fn opt<T: Into<Value>>(&mut self, key: &str, value: Option<T>) -> &mut Self {
        if let Some(v) = value {
            self.0.insert(key.to_owned(), v.into());
        }
        self
    }

    fn opt_str(&mut self, key: &str, value: &Option<String>) -> &mut Self {
        self.opt(key, value.as_deref())
    }

    fn flag(&mut self, key: &str, value: bool) -> &mut Self {
        if value {
            self.0.insert(key.to_owned(), Value::Bool(true));
        }
        self
    }

    fn done(&mut self) -> Value {
        Value::Object(std::mem::take(&mut self.0))
    }
}

fn party(p: &Party) -> Value {
    Obj::new()
        .opt_str("extension", &p.extension)
        .opt_str("number", &p.number)
        .opt_str("taken_from_call_id", &p.taken_from_call_id)
        .opt_str("line_number", &p.line_number)
        .opt_str("acd_group", &p.acd_group)
        .flag("was_transferred", p.was_transferred)
        .flag("hold_initiator", p.hold_initiator)
        .done()
}

fn call_state(s: CallState) -> &'static str {
    match s {
        CallState::Appeared => "Appeared",
        CallState::Connected => "Connected",
        CallState::OnHold => "OnHold",
        CallState::Disconnected => "Disconnected",
    }
}

fn location(l: &Location) -> Option<&str> {
    match l {
        Location::Ivr => Some("ivr"),
        Location::Queue => Some("queue"),
        Location::Abonent => Some("abonent"),
        // The parser keeps an absent location as `Other("")`.
        Location::Other(s) if s.is_empty() => None,
        Location::Other(s) => Some(s),
    }
}

fn transfer(t: TransferKind) -> &'static str {
    match t {
        TransferKind::Consultative => "consultative",
        TransferKind::Blind => "blind",
        TransferKind::ReturnBlind => "return_blind",
    }
}

fn call(e: &CallEvent) -> Value {
    Obj::new()
        .set("entry_id", e.entry_id.as_str())
        .set("call_id", e.call_id.as_str())
        .set("timestamp", e.timestamp)
        .set("seq", e.seq)
        .set("call_state", call_state(e.call_state))
        .opt("location", location(&e.location))
        .set("from", party(&e.from))
        .set("to", party(&e.to))
        .opt("disconnect_reason", e.disconnect_reason)
        .opt("transfer", e.transfer.map(transfer))
        .opt_str("command_id", &e.command_id)
        .opt_str("callback_initiator", &e.callback_initiator)
        .opt("dct", e.tracking.as_ref().map(tracking))
        .done()
}

fn tracking(t: &CallTracking) -> Value {
    let kind = match t.kind {
        TrackingKind::Dynamic => 1,
        TrackingKind::Static => 2,
        // A type this version does not know; 3 reads back as unknown.
        TrackingKind::Unknown => 3,
    };
    Obj::new()
        .opt_str("number", &t.number)
        .set("type", kind)
        .done()
}

fn dtmf(e: &DtmfEvent) -> Value {
    Obj::new()
        .set("entry_id", e.entry_id.as_str())
        .opt_str("call_id", &e.call_id)
        .set("timestamp", e.timestamp)
        .set("seq", e.seq)
        .set("dtmf", e.digits.as_str())
        .opt_str("location", &e.menu)
        .opt_str("initiator", &e.initiator)
        .done()
}

fn summary(e: &SummaryEvent) -> Value {
    let direction = match e.call_direction {
        SummaryDirection::Internal => Some(0),
        SummaryDirection::Inbound => Some(1),
        SummaryDirection::Outbound => Some(2),
        SummaryDirection::Unknown => None,
    };
    Obj::new()
        .set("entry_id", e.entry_id.as_str())
        .opt("call_direction", direction)
        .set("from", party(&e.from))
        .set("to", party(&e.to))
        .opt_str("line_number", &e.line_number)
        .set("create_time", e.create_time)
        .set("forward_time", e.forward_time)
        .set("talk_time", e.talk_time)
        .set("end_time", e.end_time)
        .opt("entry_result", e.entry_result)
        .opt("disconnect_reason", e.disconnect_reason)
        .done()
}

fn recording(e: &RecordingEvent) -> Value {
    let state = match e.recording_state {
        RecordingState::Started => "Started",
        RecordingState::Continued => "Continued",
        RecordingState::Completed => "Completed",
    };
    let mut obj = Obj::new();
    obj.set("recording_id", e.recording_id.as_str())
        .set("recording_state", state)
        .set("seq", e.seq)
        .set("entry_id", e.entry_id.as_str())
        .opt_str("call_id", &e.call_id)
        .opt_str("extension", &e.extension)
        .set("timestamp", e.timestamp)
        .opt("completion_code", e.completion_code);
    // Mango names where a saved recording went; the parser does not need it.
    if e.recording_state == RecordingState::Completed && e.completion_code == Some(1000) {
        obj.set("recipient", "Cloud");
    }
    obj.done()
}

fn record_stored(e: &RecordStoredEvent) -> Value {
    Obj::new()
        .set("entry_id", e.entry_id.as_str())
        .opt("product_id", e.product_id)
        .opt("user_id", e.user_id)
        .set("timestamp", e.timestamp)
        .set("recording_id", e.recording_id.as_str())
        .done()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::{parse_event, parse_value, Webhook};

    fn full_party(tag: &str) -> Party {
        Party {
            extension: Some(format!("{tag}1")),
            number: Some(format!("7916{tag}")),
            taken_from_call_id: Some(format!("leg-{tag}")),
            line_number: Some("74951234567".into()),
            acd_group: Some("300".into()),
            was_transferred: true,
            hold_initiator: true,
        }
    }

    fn samples() -> Vec<PbxEvent> {
        let call = CallEvent {
            entry_id: "ZW50cnk6MQ==".into(),
            call_id: "leg-1".into(),
            timestamp: 1_764_000_000,
            seq: 3,
            call_state: CallState::OnHold,
            location: Location::Queue,
            from: full_party("0"),
            to: full_party("9"),
            disconnect_reason: Some(1120),
            transfer: Some(TransferKind::ReturnBlind),
            command_id: Some("cmd-1".into()),
            callback_initiator: Some("API".into()),
            tracking: None,
        };
        let summary = SummaryEvent {
            entry_id: "e".into(),
            call_direction: SummaryDirection::Outbound,
            from: full_party("1"),
            to: Party::default(),
            line_number: Some("78005553535".into()),
            create_time: 1,
            forward_time: 2,
            talk_time: 0,
            end_time: 4,
            entry_result: Some(0),
            disconnect_reason: Some(1121),
            recovered: false,
        };
        let recording = RecordingEvent {
            entry_id: "e".into(),
            call_id: Some("leg".into()),
            recording_id: "rec".into(),
            recording_state: RecordingState::Completed,
            seq: 2,
            extension: Some("101".into()),
            timestamp: 9,
            completion_code: Some(1000),
        };
        let stored = RecordStoredEvent {
            entry_id: "e".into(),
            recording_id: "rec".into(),
            user_id: Some(-1),
            product_id: Some(300_022_532),
            timestamp: 10,
        };
        let mut out = vec![
            PbxEvent::Call(call.clone()),
            PbxEvent::Summary(summary.clone()),
            PbxEvent::Recording(recording.clone()),
            PbxEvent::RecordAdded(stored.clone()),
            PbxEvent::RecordTagged(stored.clone()),
        ];
        // Every optional field absent, every enum value.
        for (state, location) in [
            (CallState::Appeared, Location::Ivr),
            (CallState::Connected, Location::Abonent),
            (CallState::Disconnected, Location::Other(String::new())),
            (
                CallState::Disconnected,
                Location::Other("conference".into()),
            ),
        ] {
            out.push(PbxEvent::Call(CallEvent {
                call_state: state,
                location,
                from: Party::default(),
                to: Party::default(),
                disconnect_reason: None,
                transfer: None,
                command_id: None,
                callback_initiator: None,
                tracking: None,
                ..call.clone()
            }));
        }
        for t in [TransferKind::Consultative, TransferKind::Blind] {
            out.push(PbxEvent::Call(CallEvent {
                transfer: Some(t),
                ..call.clone()
            }));
        }
        for d in [
            SummaryDirection::Internal,
            SummaryDirection::Inbound,
            SummaryDirection::Unknown,
        ] {
            out.push(PbxEvent::Summary(SummaryEvent {
                call_direction: d,
                line_number: None,
                entry_result: None,
                disconnect_reason: None,
                ..summary.clone()
            }));
        }
        for (state, code) in [
            (RecordingState::Started, None),
            (RecordingState::Continued, None),
            (RecordingState::Completed, Some(4002)),
        ] {
            out.push(PbxEvent::Recording(RecordingEvent {
                recording_state: state,
                completion_code: code,
                call_id: None,
                extension: None,
                ..recording.clone()
            }));
        }
        out.push(PbxEvent::RecordAdded(RecordStoredEvent {
            user_id: None,
            product_id: None,
            ..stored
        }));
        out
    }

    #[test]
    fn parsing_the_rendering_gives_the_event_back() {
        for event in samples() {
            let (path, json) = to_json(&event);
            assert_eq!(
                parse_value(path, &json),
                Ok(Webhook::Event(event.clone())),
                "{json}"
            );
            // As posted: the payload as a string.
            assert_eq!(
                parse_event(path, &json.to_string()),
                Ok(Webhook::Event(event))
            );
        }
    }

    #[test]
    fn renders_mango_shapes() {
        let (path, json) = to_json(&samples()[0]);
        assert_eq!(path, "events/call");
        assert_eq!(json["call_state"], "OnHold");
        assert_eq!(json["location"], "queue");
        assert_eq!(json["to"]["acd_group"], "300");
        assert_eq!(json["timestamp"], 1_764_000_000);
        assert_eq!(json["transfer"], "return_blind");
        let (_, json) = to_json(&samples()[5]);
        assert_eq!(json["from"], serde_json::json!({}));
        assert!(json.get("disconnect_reason").is_none());
        let (path, json) = to_json(&samples()[1]);
        assert_eq!(
            (path, &json["call_direction"]),
            ("events/summary", &2.into())
        );
        let (path, json) = to_json(&samples()[2]);
        assert_eq!(
            (path, &json["recipient"]),
            ("events/recording", &"Cloud".into())
        );
        assert_eq!(to_json(&samples()[4]).0, "events/record/tagged");
    }

    #[test]
    fn a_recovered_summary_keeps_its_mark_through_the_log_and_no_webhook_can_claim_it() {
        let summary = samples()
            .into_iter()
            .find_map(|e| match e {
                PbxEvent::Summary(s) => Some(s),
                _ => None,
            })
            .expect("a summary sample");
        let recovered = PbxEvent::Summary(SummaryEvent {
            recovered: true,
            ..summary
        });
        let (path, json) = to_json(&recovered);
        assert_eq!(path, PATH_RECOVERED_SUMMARY);
        let text = json.to_string();
        assert_eq!(
            crate::webhook::parse_stored(path, &text),
            Ok(Webhook::Event(recovered.clone()))
        );
        // As a webhook, the path is not an event: ignored, never stored as recovered.
        assert!(matches!(
            parse_event(path, &text),
            Ok(Webhook::Ignored { .. })
        ));
        // A webhook summary stays a webhook summary through the log.
        let Webhook::Event(PbxEvent::Summary(plain)) =
            crate::webhook::parse_stored(PATH_SUMMARY, &text).unwrap()
        else {
            panic!("a summary")
        };
        assert!(!plain.recovered);
    }
}
