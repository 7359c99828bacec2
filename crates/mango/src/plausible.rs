//! Plausibility of a parsed event: bounds a well-formed payload must still keep before it is
//! stored and, later, written to the CRM.
//!
//! [`parse_event`](crate::parse_event) accepts anything of the right shape; a hostile or broken
//! sender could still log a call at 1970 or at the year 146 million, a 60,000-character id, or
//! text with NUL bytes, and the CRM would get it. The bounds here, all documented for operators:
//!
//! - **times** (Unix seconds): not before [`EARLIEST_TIME`] (2000-01-01T00:00:00Z) and, when the
//!   caller passes its clock, not more than [`MAX_AHEAD_SECONDS`] (one day) past it. Old but
//!   plausible times stay accepted: replays of recorded traffic post them. Optional time fields
//!   the parser defaults to 0 when absent (`timestamp` of the recording events, the summary's
//!   times) may stay 0, which means "not given"; a required one (`events/call`'s `timestamp`)
//!   may not.
//! - **text** (ids, numbers, extensions, group names, `location`, ...): at most
//!   [`MAX_TEXT_CHARS`] characters (Mango's own ids are under 40; numbers under 20), and no
//!   control characters (U+0000-U+001F, U+007F-U+009F).
//!
//! The crate has no clock: the server passes `now`; `simulate`, which replays a file with no
//! "now" of its own, passes `None` and so checks everything but the upper time bound.

use crate::webhook::{WebhookError, PATH_CALL, PATH_RECORDING, PATH_RECORD_ADDED};
use crate::webhook::{PATH_DTMF, PATH_RECORD_TAGGED, PATH_SUMMARY};
use callbridge_core::{Location, Party, PbxEvent};

/// 2000-01-01T00:00:00Z: nothing the PBX reports happened earlier.
pub const EARLIEST_TIME: i64 = 946_684_800;
/// How far past the receiver's clock an event's time may be (clock skew, time zones gone wrong).
pub const MAX_AHEAD_SECONDS: i64 = 86_400;
/// The longest id, number or other text field accepted, in characters.
pub const MAX_TEXT_CHARS: usize = 128;

/// Checks `event`'s times and text against the bounds of this module. `now` is the receiver's
/// clock in Unix seconds; `None` skips the "too far ahead" bound. The error names the path, the
/// field and the bound.
pub fn check_plausible(event: &PbxEvent, now: Option<i64>) -> Result<(), WebhookError> {
    let c = Checker { now, path: "" };
    match event {
        PbxEvent::Call(e) => {
            let c = Checker {
                path: PATH_CALL,
                ..c
            };
            c.text("entry_id", &e.entry_id)?;
            c.text("call_id", &e.call_id)?;
            c.time("timestamp", e.timestamp, false)?;
            if let Location::Other(raw) = &e.location {
                c.text("location", raw)?;
            }
            c.party("from", &e.from)?;
            c.party("to", &e.to)?;
            c.opt_text("command_id", e.command_id.as_deref())?;
            c.opt_text("callback_initiator", e.callback_initiator.as_deref())?;
            match &e.tracking {
                Some(t) => c.opt_text("dct.number", t.number.as_deref()),
                None => Ok(()),
            }
        }
        PbxEvent::Summary(e) => {
            let c = Checker {
                path: PATH_SUMMARY,
                ..c
            };
            c.text("entry_id", &e.entry_id)?;
            c.party("from", &e.from)?;
            c.party("to", &e.to)?;
            c.opt_text("line_number", e.line_number.as_deref())?;
            c.time("create_time", e.create_time, true)?;
            c.time("forward_time", e.forward_time, true)?;
            c.time("talk_time", e.talk_time, true)?;
            c.time("end_time", e.end_time, true)
        }
        PbxEvent::Recording(e) => {
            let c = Checker {
                path: PATH_RECORDING,
                ..c
            };
            c.text("entry_id", &e.entry_id)?;
            c.opt_text("call_id", e.call_id.as_deref())?;
            c.text("recording_id", &e.recording_id)?;
            c.opt_text("extension", e.extension.as_deref())?;
            c.time("timestamp", e.timestamp, true)
        }
        PbxEvent::RecordAdded(e) | PbxEvent::RecordTagged(e) => {
            let path = if matches!(event, PbxEvent::RecordAdded(_)) {
                PATH_RECORD_ADDED
            } else {
                PATH_RECORD_TAGGED
            };
            let c = Checker { path, ..c };
            c.text("entry_id", &e.entry_id)?;
            c.text("recording_id", &e.recording_id)?;
            c.time("timestamp", e.timestamp, true)
        }
        PbxEvent::Dtmf(e) => {
            let c = Checker {
                path: PATH_DTMF,
                ..c
            };
            c.text("entry_id", &e.entry_id)?;
            c.opt_text("call_id", e.call_id.as_deref())?;
            c.text("dtmf", &e.digits)?;
            c.opt_text("location", e.menu.as_deref())?;
            c.opt_text("initiator", e.initiator.as_deref())?;
            c.time("timestamp", e.timestamp, true)
        }
    }
}

struct Checker<'a> {
    now: Option<i64>,
    path: &'a str,
}

impl Checker<'_> {
    fn refuse(&self, field: &str, problem: String) -> WebhookError {
        WebhookError::InvalidField {
            path: self.path.to_owned(),
            field: field.to_owned(),
            problem,
        }
    }

    /// `zero_is_absent`: the parser fills 0 in for an absent optional time.
    fn time(&self, field: &str, value: i64, zero_is_absent: bool) -> Result<(), WebhookError> {
        if value == 0 && zero_is_absent {
            return Ok(());
        }
        if value < EARLIEST_TIME {
            return Err(self.refuse(
                field,
                format!("{value} is before 2000-01-01 (Unix time {EARLIEST_TIME})"),
            ));
        }
        if let Some(now) = self.now {
            let latest = now.saturating_add(MAX_AHEAD_SECONDS);
            if value > latest {
                return Err(self.refuse(
                    field,
                    format!(
                        "{value} is more than a day ({MAX_AHEAD_SECONDS} s) ahead of the server's clock ({now})"
                    ),
                ));
            }
        }
        Ok(())
    }

    fn text(&self, field: &str, value: &str) -> Result<(), WebhookError> {
        // No more bytes than the bound: no more characters either, nothing to count (nearly
        // every value). Counting stops past the bound: a huge value costs no more than a short
        // one.
        if value.len() > MAX_TEXT_CHARS && value.chars().nth(MAX_TEXT_CHARS).is_some() {
            return Err(self.refuse(
                field,
                format!(
                    "longer than {MAX_TEXT_CHARS} characters ({} bytes)",
                    value.len()
                ),
            ));
        }
        // Printable ASCII (nearly every value) has no control character; a byte test the
        // compiler vectorises, before the character walk that finds U+0080-U+009F too.
        if value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Ok(());
        }
        if let Some((at, ch)) = value.char_indices().find(|(_, ch)| ch.is_control()) {
            return Err(self.refuse(
                field,
                format!(
                    "control character U+{:04X} at byte {at} (not allowed in text)",
                    u32::from(ch)
                ),
            ));
        }
        Ok(())
    }

    fn opt_text(&self, field: &str, value: Option<&str>) -> Result<(), WebhookError> {
        value.map_or(Ok(()), |v| self.text(field, v))
    }

    fn party(&self, name: &str, p: &Party) -> Result<(), WebhookError> {
        let fields = [
            ("extension", &p.extension),
            ("number", &p.number),
            ("taken_from_call_id", &p.taken_from_call_id),
            ("line_number", &p.line_number),
            ("acd_group", &p.acd_group),
        ];
        for (field, value) in fields {
            self.opt_text(&format!("{name}.{field}"), value.as_deref())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::{parse_event, Webhook};

    const NOW: i64 = 1_764_000_000;

    fn call(entry_id: &str, timestamp: &str) -> PbxEvent {
        let json = format!(
            r#"{{"entry_id":{},"call_id":"c1","timestamp":{timestamp},"seq":1,"call_state":"Appeared","location":"ivr","from":{{"number":"74950000000"}},"to":{{"extension":"101"}}}}"#,
            serde_json::Value::String(entry_id.to_owned())
        );
        match parse_event(PATH_CALL, &json).expect("well-formed") {
            Webhook::Event(e) => e,
            other => panic!("{other:?}"),
        }
    }

    fn refused(event: &PbxEvent, now: Option<i64>) -> String {
        check_plausible(event, now)
            .expect_err("refused")
            .to_string()
    }

    #[test]
    fn a_recorded_call_of_last_year_is_plausible() {
        check_plausible(&call("E1", "1733000000"), Some(NOW)).unwrap();
        // Up to a day of clock skew ahead is fine.
        check_plausible(&call("E1", &(NOW + 86_400).to_string()), Some(NOW)).unwrap();
        check_plausible(&call("E1", &EARLIEST_TIME.to_string()), Some(NOW)).unwrap();
    }

    #[test]
    fn times_before_2000_are_refused_naming_field_and_bound() {
        for t in ["-1", "0", "946684799", "86400"] {
            let e = refused(&call("E1", t), Some(NOW));
            assert!(e.contains("events/call"), "{e}");
            assert!(e.contains("\"timestamp\""), "{e}");
            assert!(e.contains("before 2000-01-01"), "{t}: {e}");
            // And without a clock (simulate) too.
            refused(&call("E1", t), None);
        }
    }

    #[test]
    fn times_more_than_a_day_ahead_are_refused_when_the_clock_is_known() {
        for t in [(NOW + 86_401).to_string(), (1i64 << 62).to_string()] {
            let e = refused(&call("E1", &t), Some(NOW));
            assert!(e.contains("\"timestamp\""), "{e}");
            assert!(e.contains("more than a day"), "{e}");
            // Without a clock there is no upper bound to check.
            check_plausible(&call("E1", &t), None).unwrap();
        }
    }

    #[test]
    fn long_ids_are_refused_naming_the_field_and_the_bound() {
        check_plausible(&call(&"e".repeat(128), "1733000000"), Some(NOW)).unwrap();
        for n in [129, 60_000] {
            let e = refused(&call(&"e".repeat(n), "1733000000"), Some(NOW));
            assert!(e.contains("\"entry_id\""), "{e}");
            assert!(e.contains("longer than 128 characters"), "{e}");
            // The value itself is not echoed back.
            assert!(e.len() < 200, "{e}");
        }
        // Characters, not bytes: 128 Cyrillic letters are fine.
        check_plausible(&call(&"ж".repeat(128), "1733000000"), Some(NOW)).unwrap();
    }

    #[test]
    fn control_characters_are_refused_anywhere_in_text() {
        let e = refused(&call("E\u{0}1", "1733000000"), Some(NOW));
        assert!(e.contains("\"entry_id\""), "{e}");
        assert!(e.contains("U+0000"), "{e}");
        let json = r#"{"entry_id":"E1","call_id":"c1","timestamp":1733000000,"call_state":"Appeared","from":{"number":"7495\n0000000"}}"#;
        let Webhook::Event(event) = parse_event(PATH_CALL, json).unwrap() else {
            panic!()
        };
        let e = refused(&event, Some(NOW));
        assert!(e.contains("\"from.number\""), "{e}");
        assert!(e.contains("U+000A"), "{e}");
        // DEL, and a C1 control after text that is not ASCII (past the all-ASCII shortcut).
        let e = refused(&call("E\u{7f}1", "1733000000"), Some(NOW));
        assert!(e.contains("U+007F"), "{e}");
        let e = refused(&call("Звонок\u{85}1", "1733000000"), Some(NOW));
        assert!(e.contains("U+0085"), "{e}");
        // Text beyond ASCII with no control character is fine.
        assert!(check_plausible(&call("Звонок-1", "1733000000"), Some(NOW)).is_ok());
    }

    #[test]
    fn summaries_and_recordings_are_checked_too_and_absent_times_pass() {
        let summary = r#"{"entry_id":"E1","call_direction":1,"from":{"number":"74950000000"},"to":{"extension":"1"},"create_time":1733000000,"end_time":1733000100,"talk_time":0}"#;
        let Webhook::Event(event) = parse_event(PATH_SUMMARY, summary).unwrap() else {
            panic!()
        };
        check_plausible(&event, Some(NOW)).unwrap();
        let bad = summary.replace("1733000100", "4611686018427387904");
        let Webhook::Event(event) = parse_event(PATH_SUMMARY, &bad).unwrap() else {
            panic!()
        };
        let e = refused(&event, Some(NOW));
        assert!(
            e.contains("events/summary") && e.contains("\"end_time\""),
            "{e}"
        );
        // A recording event without a timestamp (0: not given) is fine; with -5 it is not.
        let rec = r#"{"entry_id":"E1","recording_id":"R1","recording_state":"Completed"}"#;
        let Webhook::Event(event) = parse_event(PATH_RECORDING, rec).unwrap() else {
            panic!()
        };
        check_plausible(&event, Some(NOW)).unwrap();
        let rec =
            r#"{"entry_id":"E1","recording_id":"R1","recording_state":"Completed","timestamp":-5}"#;
        let Webhook::Event(event) = parse_event(PATH_RECORDING, rec).unwrap() else {
            panic!()
        };
        assert!(refused(&event, Some(NOW)).contains("events/recording"));
        let added = format!(
            r#"{{"entry_id":"E1","recording_id":"{}"}}"#,
            "r".repeat(200)
        );
        let Webhook::Event(event) = parse_event(PATH_RECORD_ADDED, &added).unwrap() else {
            panic!()
        };
        let e = refused(&event, None);
        assert!(
            e.contains("events/record/added") && e.contains("recording_id"),
            "{e}"
        );
    }
}
