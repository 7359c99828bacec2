//! The plan: what one completed entry writes to the CRM, and why. Its JSON shape is the
//! `simulate` output contract (`docs/simulate.md`); fields may be added, never renamed.
//! A call record is also what the outbox stores for the CRM worker, which reads it back
//! (hence `Deserialize` on the record and what it holds).

use crate::assembler::{Direction, Keypress, MissedKind};
use crate::event::CallTracking;
use crate::settings::{CrmUserId, EntityRules};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A rule id of `docs/rules.md`. Every CRM write carries the ids that decided it (C5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Rule {
    A4,
    A5,
    A6,
    /// An entry neither summarised nor hung up within the tracker's horizon (24 h by default),
    /// planned with what was known when it was given up.
    A4a,
    /// Recovered by reconciliation from the PBX's call statistics: the webhooks of the entry
    /// (or of its end) never arrived. Statistics cannot say who a group offered the call to,
    /// nor the transfers and holds in between.
    A4b,
    P1,
    P2,
    P3,
    P4,
    P5,
    P6,
    P7,
    M1,
    M2,
    M3,
    M4,
    M5,
    C1,
    C2,
    C3,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Answered,
    Missed,
}

/// How the entry was found complete (A4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompletedBy {
    /// The PBX's summary arrived.
    Summary,
    /// All legs disconnected and nothing arrived for the grace period.
    Grace,
    /// All legs disconnected when the input ended (`simulate`).
    EndOfInput,
    /// A4a: nothing arrived for the abandonment horizon while a leg was still up and no summary
    /// came; planned with what was known.
    Abandoned,
}

/// Which processing settings govern the entities a record creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntitySettings {
    Incoming,
    Outgoing,
}

/// The contact / lead / unsorted handling one record triggers (P4, C4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entities {
    pub settings: EntitySettings,
    #[serde(flatten)]
    pub rules: EntityRules,
    /// The responsible user of what gets created.
    pub responsible_crm_user_id: CrmUserId,
}

/// A missed-call task (M5). The CRM worker skips it when the client already has an open
/// missed-call task that day (`dedupe_key`), which only the CRM can tell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub responsible_crm_user_id: CrmUserId,
    /// For a known client, the contact's responsible user takes the task instead.
    pub prefer_contact_owner: bool,
    /// Deadline, Unix seconds.
    pub due_at: i64,
    /// `client phone` + `:` + the local date of the call.
    pub dedupe_key: String,
}

/// One call record written to the CRM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallRecord {
    /// The conversation's index; `None` for a missed entry's single record.
    pub conversation: Option<usize>,
    pub employee_extension: Option<String>,
    pub client_phone: Option<String>,
    pub direction: Direction,
    pub status: Outcome,
    /// amoCRM `call_status`: 4 talked, 5 invalid number, 6 no answer, 7 busy.
    pub call_status: u8,
    pub duration_s: i64,
    pub started_at: i64,
    /// The responsible CRM user.
    pub crm_user_id: CrmUserId,
    pub reasons: Vec<Rule>,
    pub creates_entities: bool,
    pub entities: Option<Entities>,
    pub recording_id: Option<String>,
    pub transcript: bool,
    pub task: Option<Task>,
    /// The entry's line (the number the client called, or the line an employee called from):
    /// written to the CRM with the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line_number: Option<String>,
    /// The call-tracking number the client came through (`dct`): written to the CRM with the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking: Option<CallTracking>,
}

/// A conversation (or a missed entry) deliberately not written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ignored {
    pub conversation: Option<usize>,
    pub employee_extension: Option<String>,
    pub reasons: Vec<Rule>,
}

/// The plan for one completed entry. Read back from the store by the journal (hence
/// `Deserialize`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryPlan {
    pub entry_id: String,
    pub direction: Direction,
    pub outcome: Outcome,
    pub missed_kind: Option<MissedKind>,
    pub client_phone: Option<String>,
    pub line_number: Option<String>,
    pub started_at: i64,
    pub ended_at: i64,
    /// Rules that decided the entry as a whole (A5 for an internal call, A6 for a missed one).
    pub reasons: Vec<Rule>,
    pub records: Vec<CallRecord>,
    pub ignored: Vec<Ignored>,
    /// CRM users shown the call card at any moment of the entry, ascending (C1).
    pub cards: Vec<CrmUserId>,
    /// The call-tracking number the client came through (`dct`), when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking: Option<CallTracking>,
    /// Digits the client keyed in voice menus (`events/dtmf`), in time order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keypresses: Vec<Keypress>,
    /// The PBX's own result of the entry (the summary's `entry_result`, 1 success, 0 missed).
    /// History only: the outcome is decided from the legs (A7).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry_result: Option<u8>,
    /// The PBX's final disconnect code (the summary's, else the last leg's): history only, and
    /// the missed call's amoCRM status (busy, no answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disconnect_reason: Option<u32>,
}
