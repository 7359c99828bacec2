//! PBX events as the core sees them: already parsed and typed by an adapter (the `mango` crate
//! turns webhook payloads into these). Field names follow Mango's VPBX realtime API, because that is
//! the first PBX; another PBX adapter maps its own events onto the same shapes.

use serde::{Deserialize, Serialize};

/// One event of the PBX, any kind the core cares about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PbxEvent {
    /// A PBX leg changed state (`events/call`).
    Call(CallEvent),
    /// The PBX's final word on an entry (`events/summary`).
    Summary(SummaryEvent),
    /// A recording started, moved to another leg, or completed (`events/recording`).
    Recording(RecordingEvent),
    /// A recording was stored in the cloud (`events/record/added`).
    RecordAdded(RecordStoredEvent),
    /// Speech analytics finished with a recording (`events/record/tagged`).
    RecordTagged(RecordStoredEvent),
    /// The client keyed digits in a voice menu (`events/dtmf`): kept in the entry's history.
    Dtmf(DtmfEvent),
}

impl PbxEvent {
    /// The entry (one call as the client lives it) this event belongs to.
    pub fn entry_id(&self) -> &str {
        match self {
            PbxEvent::Call(e) => &e.entry_id,
            PbxEvent::Summary(e) => &e.entry_id,
            PbxEvent::Recording(e) => &e.entry_id,
            PbxEvent::RecordAdded(e) | PbxEvent::RecordTagged(e) => &e.entry_id,
            PbxEvent::Dtmf(e) => &e.entry_id,
        }
    }

    /// The event's own time (Unix seconds), used as the stream clock.
    pub fn timestamp(&self) -> i64 {
        match self {
            PbxEvent::Call(e) => e.timestamp,
            PbxEvent::Summary(e) => e.end_time.max(e.create_time),
            PbxEvent::Recording(e) => e.timestamp,
            PbxEvent::RecordAdded(e) | PbxEvent::RecordTagged(e) => e.timestamp,
            PbxEvent::Dtmf(e) => e.timestamp,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub enum CallState {
    Appeared,
    Connected,
    OnHold,
    Disconnected,
}

/// Where the leg is: in the voice menu, waiting in a group's queue, or at an employee / external
/// number. Unknown locations are kept (the PBX adds values over time) and treated as `abonent`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Location {
    Ivr,
    Queue,
    Abonent,
    Other(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferKind {
    Consultative,
    Blind,
    ReturnBlind,
}

/// One side of a PBX leg (`from` or `to` of `events/call`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Party {
    /// Employee extension; absent when the party is not an employee.
    pub extension: Option<String>,
    /// Phone number or device (`sip:...`) as the PBX sent it.
    pub number: Option<String>,
    /// The leg this party was in before it was moved into this one.
    pub taken_from_call_id: Option<String>,
    /// The line the call came in on (only meaningful on `to`).
    pub line_number: Option<String>,
    /// The operator group's extension when the leg was offered through a group.
    pub acd_group: Option<String>,
    pub was_transferred: bool,
    pub hold_initiator: bool,
}

/// `events/call`: one state change of one PBX leg.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CallEvent {
    pub entry_id: String,
    pub call_id: String,
    pub timestamp: i64,
    pub seq: u64,
    pub call_state: CallState,
    pub location: Location,
    pub from: Party,
    pub to: Party,
    pub disconnect_reason: Option<u32>,
    pub transfer: Option<TransferKind>,
    /// Set when the leg was created by an API command (callback, route...).
    pub command_id: Option<String>,
    pub callback_initiator: Option<String>,
    /// `dct`: the call-tracking number the client dialled, when the call came through one
    /// (`None` when absent or `type` 0, "not call-tracking").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking: Option<CallTracking>,
}

/// Call tracking (Mango's `dct`): the advertising number that brought the client in. The visitor
/// and campaign behind it are asked of Mango's DCT API with this number.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CallTracking {
    /// The tracking number; Mango may leave it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<String>,
    pub kind: TrackingKind,
}

/// `dct.type`: 1 a number shown to one visitor at a time (dynamic), 2 one number per advertising
/// channel (static); a later value is kept as unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackingKind {
    Dynamic,
    Static,
    Unknown,
}

/// `events/dtmf`: digits the client keyed in a voice menu.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DtmfEvent {
    pub entry_id: String,
    pub call_id: Option<String>,
    pub timestamp: i64,
    pub seq: u64,
    /// The digits, as keyed (`*` and `#` included).
    pub digits: String,
    /// The menu item the digits were collected in (`location`, e.g. `ivr.1`).
    pub menu: Option<String>,
    /// Who keyed them (`initiator`, a number).
    pub initiator: Option<String>,
}

/// `call_direction` of the summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SummaryDirection {
    Internal,
    Inbound,
    Outbound,
    /// A value this version does not know; the assembler decides from the legs.
    Unknown,
}

/// `events/summary`: the PBX's final event for an entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SummaryEvent {
    pub entry_id: String,
    pub call_direction: SummaryDirection,
    pub from: Party,
    pub to: Party,
    pub line_number: Option<String>,
    pub create_time: i64,
    pub forward_time: i64,
    /// Answer time; 0 when nobody talked.
    pub talk_time: i64,
    pub end_time: i64,
    /// 1 success, 0 missed; not trusted alone (the PBX's own examples contradict it).
    pub entry_result: Option<u8>,
    pub disconnect_reason: Option<u32>,
    /// Rebuilt by reconciliation from the PBX's call statistics, not received as a webhook
    /// (A4b): the plan says so in every record's reasons. Never set by a webhook.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub recovered: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub enum RecordingState {
    Started,
    Continued,
    Completed,
}

/// `events/recording`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RecordingEvent {
    pub entry_id: String,
    pub call_id: Option<String>,
    pub recording_id: String,
    pub recording_state: RecordingState,
    pub seq: u64,
    /// The recorded employee.
    pub extension: Option<String>,
    pub timestamp: i64,
    /// Only on `Completed`: 1000 saved; anything else means no file.
    pub completion_code: Option<u32>,
}

/// `events/record/added` and `events/record/tagged`: the recording is stored / analysed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RecordStoredEvent {
    pub entry_id: String,
    pub recording_id: String,
    /// The PBX's `general.user_id` of the employee (-1 when it belongs to nobody).
    pub user_id: Option<i64>,
    pub product_id: Option<i64>,
    pub timestamp: i64,
}

impl PbxEvent {
    /// A key that is equal for two deliveries of the same PBX event, however they are formatted:
    /// the event log stores each key once per tenant.
    ///
    /// The event's own time leads (zero-padded, so keys sort by it): the log's unique index then
    /// grows at its right edge instead of taking each new key at a random page, which keeps a
    /// commit to a few written pages (the durable write every webhook waits for).
    ///
    /// Every key names the entry: a leg's or a recording's id is only unique within its entry,
    /// and two entries sharing one used to collapse into a single stored event.
    pub fn dedupe_key(&self) -> String {
        match self {
            PbxEvent::Call(e) => format!(
                "{:012}:call:{}:{}:{}:{:?}",
                e.timestamp, e.entry_id, e.call_id, e.seq, e.call_state
            ),
            PbxEvent::Summary(e) => format!("{:012}:summary:{}", e.end_time, e.entry_id),
            PbxEvent::Recording(e) => {
                format!(
                    "{:012}:recording:{}:{}:{:?}:{}",
                    e.timestamp, e.entry_id, e.recording_id, e.recording_state, e.seq
                )
            }
            // One per recording whatever its time, as before: these are rare.
            PbxEvent::RecordAdded(e) => {
                format!("record-added:{}:{}", e.entry_id, e.recording_id)
            }
            PbxEvent::RecordTagged(e) => {
                format!("record-tagged:{}:{}", e.entry_id, e.recording_id)
            }
            PbxEvent::Dtmf(e) => format!(
                "{:012}:dtmf:{}:{}:{}:{}",
                e.timestamp,
                e.entry_id,
                e.call_id.as_deref().unwrap_or(""),
                e.seq,
                e.digits
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leg(entry: &str) -> PbxEvent {
        PbxEvent::Call(CallEvent {
            entry_id: entry.into(),
            call_id: "shared-leg".into(),
            timestamp: 1_764_000_000,
            seq: 1,
            call_state: CallState::Appeared,
            location: Location::Abonent,
            from: Party::default(),
            to: Party::default(),
            disconnect_reason: None,
            transfer: None,
            command_id: None,
            callback_initiator: None,
            tracking: None,
        })
    }

    fn recording(entry: &str) -> RecordingEvent {
        RecordingEvent {
            entry_id: entry.into(),
            call_id: Some("shared-leg".into()),
            recording_id: "shared-recording".into(),
            recording_state: RecordingState::Started,
            seq: 1,
            extension: None,
            timestamp: 1_764_000_000,
            completion_code: None,
        }
    }

    fn stored(entry: &str) -> RecordStoredEvent {
        RecordStoredEvent {
            entry_id: entry.into(),
            recording_id: "shared-recording".into(),
            user_id: None,
            product_id: None,
            timestamp: 1_764_000_000,
        }
    }

    fn keyed(entry: &str) -> DtmfEvent {
        DtmfEvent {
            entry_id: entry.into(),
            call_id: Some("shared-leg".into()),
            timestamp: 1_764_000_000,
            seq: 1,
            digits: "12".into(),
            menu: Some("ivr.1".into()),
            initiator: None,
        }
    }

    #[test]
    fn entries_sharing_a_leg_or_recording_id_keep_apart_and_redeliveries_stay_equal() {
        let pairs = [
            (leg("e1"), leg("e2")),
            (
                PbxEvent::Recording(recording("e1")),
                PbxEvent::Recording(recording("e2")),
            ),
            (
                PbxEvent::RecordAdded(stored("e1")),
                PbxEvent::RecordAdded(stored("e2")),
            ),
            (
                PbxEvent::RecordTagged(stored("e1")),
                PbxEvent::RecordTagged(stored("e2")),
            ),
            (PbxEvent::Dtmf(keyed("e1")), PbxEvent::Dtmf(keyed("e2"))),
        ];
        for (first, second) in pairs {
            assert_ne!(first.dedupe_key(), second.dedupe_key(), "{first:?}");
            assert_eq!(first.dedupe_key(), first.clone().dedupe_key());
            assert!(first.dedupe_key().contains("e1"), "{}", first.dedupe_key());
        }
        // The time still leads, so the log's unique index grows at its end.
        assert!(leg("e1").dedupe_key().starts_with("001764000000:call:e1:"));
    }
}
