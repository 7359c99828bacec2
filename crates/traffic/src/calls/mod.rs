//! One call (entry) at a time: the PBX legs, summary and recordings Mango sends for it, and what
//! the call really was (the ground truth).

mod build;
mod legs;
mod scenes;

use crate::rng::Rng;
use crate::staff::{GroupStrategy, Staff};
use callbridge_core::{
    CallEvent, CallState, Direction, Location, MissedKind, Party, PbxEvent, RecordStoredEvent,
    RecordingEvent, RecordingState, SummaryDirection, SummaryEvent, TransferKind,
};

/// The kinds of call the generator produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CallKind {
    /// A client calls an employee (directly on a line, or by extension from the voice menu) who
    /// answers.
    DirectAnswered,
    /// Voice menu, then a ring-all group: every member rings, one answers.
    RingAllAnswered,
    /// A one-by-one group: the first member does not answer, the 2nd or 3rd does.
    OneByOneAnswered,
    /// A group call nobody answered (ring-all or one-by-one; sometimes nobody was free to ring).
    MissedGroup,
    /// The client hung up in the voice menu.
    MissedIvr,
    /// 2-3 employees in a chain of consultative transfers.
    ConsultativeTransfer,
    /// 2-3 employees in a chain of blind transfers.
    BlindTransfer,
    /// An employee calls a client who answers.
    OutboundAnswered,
    /// An employee calls a client who is busy (1121).
    OutboundBusy,
    /// An employee calls a client who does not answer (1111).
    OutboundNoAnswer,
    /// One employee calls another.
    Internal,
}

impl CallKind {
    pub const ALL: [CallKind; 11] = [
        CallKind::DirectAnswered,
        CallKind::RingAllAnswered,
        CallKind::OneByOneAnswered,
        CallKind::MissedGroup,
        CallKind::MissedIvr,
        CallKind::ConsultativeTransfer,
        CallKind::BlindTransfer,
        CallKind::OutboundAnswered,
        CallKind::OutboundBusy,
        CallKind::OutboundNoAnswer,
        CallKind::Internal,
    ];
}

/// What a generated call really was: what a correct core must make of its events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallTruth {
    pub entry_id: String,
    pub kind: CallKind,
    pub direction: Direction,
    /// A client talked to an employee (internal calls: the callee answered).
    pub answered: bool,
    /// Extensions of the employees who talked with the client, one per conversation, in order.
    pub talkers: Vec<String>,
    /// The recording each conversation should carry (`None`: not recorded, or not saved).
    pub recordings: Vec<Option<String>>,
    /// For a missed external call: how it was missed.
    pub missed: Option<MissedKind>,
    /// For a missed call: the first employee the call was offered to (the summary's `to`).
    pub first_offered: Option<String>,
    /// The operator group the call went through.
    pub group: Option<String>,
    pub summary_lost: bool,
    /// The call's first event time.
    pub started_at: i64,
    /// Distinct events generated for the entry (before duplicated deliveries).
    pub events: usize,
}

impl CallTruth {
    /// Conversations between the client and one employee the assembler must find.
    pub fn conversations(&self) -> usize {
        self.talkers.len()
    }
}

/// Probabilities and ranges of one call that the caller controls.
pub(crate) struct CallOptions {
    pub lost_summary: bool,
    pub recorded: bool,
}

struct Leg {
    id: String,
    seq: u64,
    location: Location,
    from: Party,
    to: Party,
    transfer: Option<TransferKind>,
}

/// Builds one entry's events in causal order (events of one second keep the order they are
/// made in).
pub(crate) struct CallBuilder<'a> {
    staff: &'a Staff,
    rng: &'a mut Rng,
    seed: u64,
    index: u64,
    entry_id: String,
    legs: u32,
    recordings: u32,
    pub events: Vec<PbxEvent>,
}

/// A conversation as scripted: for recordings and the truth.
struct Talk {
    employee: usize,
    leg: String,
    start: i64,
    end: i64,
}

/// Where a client leg stands once an employee has answered.
struct Answered {
    leg: Leg,
    employee: usize,
    at: i64,
    /// The client is the leg's `from` (inbound) rather than its `to` (outbound).
    client_on_from: bool,
}

const PRODUCT_ID: i64 = 300_022_532;

/// A summary to send at the end: direction, from, to, line, (create, forward, talk, end) times,
/// answered, disconnect reason.
type SummaryPlan = (
    SummaryDirection,
    Party,
    Party,
    Option<String>,
    (i64, i64, i64, i64),
    bool,
    u32,
);

/// Standard base64 with padding, as Mango's ids look.
pub(crate) fn b64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::b64;

    #[test]
    fn base64_matches_known_ids() {
        // Mango's entry ids in the scenarios are base64 of "entry:N".
        assert_eq!(b64(b"entry:3"), "ZW50cnk6Mw==");
        assert_eq!(b64(b"entry:104"), "ZW50cnk6MTA0");
        assert_eq!(b64(b"ab"), "YWI=");
    }
}
