//! The six payloads, each field named once: serde derives the readers (`remote` ones build the
//! core's event types directly), and [`super::lenient`] supplies the leniency of every field.
//!
//! A field without `default` is required (absent: serde's `missing field`); fields of other paths
//! and unknown ones are skipped (read as strictly as a `serde_json::Value` would be).

use super::lenient::{self, FromFields};
use callbridge_core::{
    CallEvent, CallState, CallTracking, DtmfEvent, Location, Party, RecordStoredEvent,
    RecordingEvent, RecordingState, SummaryDirection, SummaryEvent, TrackingKind, TransferKind,
};
use serde::de::value::MapAccessDeserializer;
use serde::de::MapAccess;
use serde::Deserialize;

/// Every field name the six payloads (and their parties) read, each once. The property tests
/// build their generated payloads from it, so that generated objects reach the field code; a unit
/// test below keeps it equal to the names the derives read.
#[doc(hidden)]
pub const FIELD_NAMES: &[&str] = &[
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
    "taken_from_call_id",
    "acd_group",
    "was_transferred",
    "was_transfered",
    "hold_initiator",
    "dct",
    "type",
    "locaton",
    "dtmf",
    "initiator",
];

#[derive(Deserialize)]
#[serde(remote = "CallEvent")]
struct CallFields {
    #[serde(deserialize_with = "lenient::required_text")]
    entry_id: String,
    #[serde(deserialize_with = "lenient::required_text")]
    call_id: String,
    #[serde(deserialize_with = "lenient::required_int")]
    timestamp: i64,
    #[serde(default, deserialize_with = "lenient::int_or_zero")]
    seq: u64,
    #[serde(deserialize_with = "lenient::named")]
    call_state: CallState,
    /// `locaton`: the misspelling of Mango's own documented examples.
    #[serde(
        alias = "locaton",
        default = "lenient::no_location",
        deserialize_with = "lenient::location"
    )]
    location: Location,
    #[serde(default, deserialize_with = "lenient::party")]
    from: Party,
    #[serde(default, deserialize_with = "lenient::party")]
    to: Party,
    #[serde(default, deserialize_with = "lenient::int")]
    disconnect_reason: Option<u32>,
    #[serde(default, deserialize_with = "lenient::transfer")]
    transfer: Option<TransferKind>,
    #[serde(default, deserialize_with = "lenient::text")]
    command_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    callback_initiator: Option<String>,
    #[serde(rename = "dct", default, deserialize_with = "lenient::tracking")]
    tracking: Option<CallTracking>,
}

/// `events/dtmf`.
#[derive(Deserialize)]
#[serde(remote = "DtmfEvent")]
struct DtmfFields {
    #[serde(deserialize_with = "lenient::required_text")]
    entry_id: String,
    #[serde(default, deserialize_with = "lenient::text")]
    call_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::int_or_zero")]
    timestamp: i64,
    #[serde(default, deserialize_with = "lenient::int_or_zero")]
    seq: u64,
    #[serde(rename = "dtmf", deserialize_with = "lenient::required_text")]
    digits: String,
    #[serde(
        rename = "location",
        alias = "locaton",
        default,
        deserialize_with = "lenient::text"
    )]
    menu: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    initiator: Option<String>,
}

/// `dct` of `events/call`.
#[derive(Deserialize)]
pub(super) struct TrackingFields {
    #[serde(default, deserialize_with = "lenient::text")]
    number: Option<String>,
    #[serde(rename = "type", default, deserialize_with = "lenient::int")]
    kind: Option<u32>,
}

impl TrackingFields {
    /// `None` for `type` 0 ("not call-tracking"); an absent type with a number is still a
    /// tracked call of unknown kind.
    pub(super) fn into_tracking(self) -> Option<CallTracking> {
        let kind = match self.kind {
            Some(0) => return None,
            None if self.number.is_none() => return None,
            Some(1) => TrackingKind::Dynamic,
            Some(2) => TrackingKind::Static,
            _ => TrackingKind::Unknown,
        };
        Some(CallTracking {
            number: self.number,
            kind,
        })
    }
}

impl FromFields for TrackingFields {
    fn from_fields<'de, A: MapAccess<'de>>(map: A) -> Result<Self, A::Error> {
        TrackingFields::deserialize(MapAccessDeserializer::new(map))
    }
}

#[derive(Deserialize)]
#[serde(remote = "SummaryEvent")]
struct SummaryFields {
    #[serde(deserialize_with = "lenient::required_text")]
    entry_id: String,
    #[serde(
        default = "lenient::unknown_direction",
        deserialize_with = "lenient::direction"
    )]
    call_direction: SummaryDirection,
    #[serde(default, deserialize_with = "lenient::party")]
    from: Party,
    #[serde(default, deserialize_with = "lenient::party")]
    to: Party,
    /// When absent, `to.line_number` (filled in by [`FromFields`]).
    #[serde(default, deserialize_with = "lenient::text")]
    line_number: Option<String>,
    #[serde(default, deserialize_with = "lenient::int_or_zero")]
    create_time: i64,
    #[serde(default, deserialize_with = "lenient::int_or_zero")]
    forward_time: i64,
    #[serde(default, deserialize_with = "lenient::int_or_zero")]
    talk_time: i64,
    #[serde(default, deserialize_with = "lenient::int_or_zero")]
    end_time: i64,
    #[serde(default, deserialize_with = "lenient::int")]
    entry_result: Option<u8>,
    #[serde(default, deserialize_with = "lenient::int")]
    disconnect_reason: Option<u32>,
    /// Only reconciliation marks a summary recovered (see `webhook::parse_stored`); a webhook
    /// cannot.
    #[serde(skip)]
    recovered: bool,
}

#[derive(Deserialize)]
#[serde(remote = "RecordingEvent")]
struct RecordingFields {
    #[serde(deserialize_with = "lenient::required_text")]
    entry_id: String,
    #[serde(default, deserialize_with = "lenient::text")]
    call_id: Option<String>,
    #[serde(deserialize_with = "lenient::required_text")]
    recording_id: String,
    #[serde(deserialize_with = "lenient::named")]
    recording_state: RecordingState,
    #[serde(default, deserialize_with = "lenient::int_or_zero")]
    seq: u64,
    #[serde(default, deserialize_with = "lenient::text")]
    extension: Option<String>,
    #[serde(default, deserialize_with = "lenient::int_or_zero")]
    timestamp: i64,
    #[serde(default, deserialize_with = "lenient::int")]
    completion_code: Option<u32>,
}

/// `events/record/added` and `events/record/tagged`.
#[derive(Deserialize)]
#[serde(remote = "RecordStoredEvent")]
struct RecordStoredFields {
    #[serde(deserialize_with = "lenient::required_text")]
    entry_id: String,
    #[serde(deserialize_with = "lenient::required_text")]
    recording_id: String,
    #[serde(default, deserialize_with = "lenient::int")]
    user_id: Option<i64>,
    #[serde(default, deserialize_with = "lenient::int")]
    product_id: Option<i64>,
    #[serde(default, deserialize_with = "lenient::int_or_zero")]
    timestamp: i64,
}

/// `from` / `to`. Not a remote of [`Party`]: both spellings of `was_transferred` are read (Mango
/// sends `was_transfered` too), and either being true makes the party transferred.
#[derive(Deserialize)]
pub(super) struct PartyFields {
    #[serde(default, deserialize_with = "lenient::text")]
    extension: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    number: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    taken_from_call_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    line_number: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    acd_group: Option<String>,
    #[serde(default, deserialize_with = "lenient::flag")]
    was_transferred: bool,
    #[serde(default, deserialize_with = "lenient::flag")]
    was_transfered: bool,
    #[serde(default, deserialize_with = "lenient::flag")]
    hold_initiator: bool,
}

impl From<PartyFields> for Party {
    fn from(p: PartyFields) -> Party {
        Party {
            extension: p.extension,
            number: p.number,
            taken_from_call_id: p.taken_from_call_id,
            line_number: p.line_number,
            acd_group: p.acd_group,
            was_transferred: p.was_transferred || p.was_transfered,
            hold_initiator: p.hold_initiator,
        }
    }
}

impl FromFields for PartyFields {
    fn from_fields<'de, A: MapAccess<'de>>(map: A) -> Result<Self, A::Error> {
        PartyFields::deserialize(MapAccessDeserializer::new(map))
    }
}

impl FromFields for CallEvent {
    fn from_fields<'de, A: MapAccess<'de>>(map: A) -> Result<Self, A::Error> {
        CallFields::deserialize(MapAccessDeserializer::new(map))
    }
}

impl FromFields for SummaryEvent {
    fn from_fields<'de, A: MapAccess<'de>>(map: A) -> Result<Self, A::Error> {
        let mut summary = SummaryFields::deserialize(MapAccessDeserializer::new(map))?;
        if summary.line_number.is_none() {
            summary.line_number = summary.to.line_number.clone();
        }
        Ok(summary)
    }
}

impl FromFields for RecordingEvent {
    fn from_fields<'de, A: MapAccess<'de>>(map: A) -> Result<Self, A::Error> {
        RecordingFields::deserialize(MapAccessDeserializer::new(map))
    }
}

impl FromFields for DtmfEvent {
    fn from_fields<'de, A: MapAccess<'de>>(map: A) -> Result<Self, A::Error> {
        DtmfFields::deserialize(MapAccessDeserializer::new(map))
    }
}

impl FromFields for RecordStoredEvent {
    fn from_fields<'de, A: MapAccess<'de>>(map: A) -> Result<Self, A::Error> {
        RecordStoredFields::deserialize(MapAccessDeserializer::new(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::{self, Deserializer, Visitor};
    use std::collections::BTreeSet;

    /// A deserializer that only notes the field names a derived reader asks for.
    struct Names<'a>(&'a mut BTreeSet<&'static str>);

    impl<'de> Deserializer<'de> for Names<'_> {
        type Error = de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("only the field names are read"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            self.0.extend(fields);
            Err(de::Error::custom("only the field names are read"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
            ignored_any
        }
    }

    #[test]
    fn field_names_are_the_names_the_payloads_read() {
        let mut read = BTreeSet::new();
        let _ = CallFields::deserialize(Names(&mut read));
        let _ = SummaryFields::deserialize(Names(&mut read));
        let _ = RecordingFields::deserialize(Names(&mut read));
        let _ = RecordStoredFields::deserialize(Names(&mut read));
        let _ = PartyFields::deserialize(Names(&mut read));
        let _ = DtmfFields::deserialize(Names(&mut read));
        let _ = TrackingFields::deserialize(Names(&mut read));
        let listed: BTreeSet<&str> = FIELD_NAMES.iter().copied().collect();
        assert_eq!(listed.len(), FIELD_NAMES.len(), "a name is listed twice");
        assert_eq!(listed, read);
    }
}
