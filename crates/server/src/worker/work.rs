//! The outbox contract: what the processor stores for the worker, one typed item per CRM write.
//!
//! An item's payload is an [`OutboxWork`] as JSON, tagged with its `kind` (the store's `kind`
//! column says the same, for the lanes) and the contract's version `v`. Rows stored before the
//! version existed (no `v`, no `kind` inside) had the same fields: they are read by taking the
//! kind from the column, so an upgrade delivers what an older build planned.

use callbridge_core::phone::Phone;
use callbridge_core::plan::{CallRecord, Rule, Task};
use callbridge_core::settings::CrmUserId;
use callbridge_store::NewOutboxItem;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The payload version this build writes; it reads this one and the untagged rows before it.
pub const WORK_VERSION: u64 = 2;

/// One item of CRM work, as stored in the outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OutboxWork {
    /// A call record written as a call note (and the new-client action, C4).
    Call(CallWork),
    /// C2: the transcript of the call's recording, a note where the call landed.
    Transcript(TranscriptWork),
    /// M5: the missed-call task, on the entity where the call landed.
    Task(TaskWork),
    /// C4: the repeat-client action of a written call (added by the worker, not the processor).
    Lead(LeadWork),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallWork {
    pub entry_id: String,
    pub record: CallRecord,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TranscriptWork {
    pub entry_id: String,
    /// The key of the call item whose landing place the note goes to.
    pub call_item: String,
    pub recording_id: Option<String>,
    pub crm_user_id: CrmUserId,
    pub reasons: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskWork {
    pub entry_id: String,
    /// The key of the call item whose landing place the task goes to.
    pub call_item: String,
    pub client_phone: Option<Phone>,
    pub task: Task,
    pub reasons: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeadWork {
    /// The written call whose client gets the lead.
    pub call_item: String,
    pub record: CallRecord,
}

/// Why an outbox item cannot be read as work.
#[derive(Debug, thiserror::Error)]
pub enum WorkError {
    #[error("unknown outbox item kind {0:?}")]
    UnknownKind(String),
    #[error("outbox item of contract version {0}, newer than this build reads ({WORK_VERSION})")]
    NewerVersion(u64),
    #[error("outbox item kind {column:?} but its payload says {payload:?}")]
    KindMismatch {
        column: String,
        payload: &'static str,
    },
    #[error("unreadable {kind} item: {source}")]
    Unreadable {
        kind: String,
        source: serde_json::Error,
    },
}

const KINDS: [&str; 4] = ["call", "transcript", "task", "lead"];

impl OutboxWork {
    /// The store's `kind` column (and the payload's tag).
    pub fn kind(&self) -> &'static str {
        match self {
            OutboxWork::Call(_) => "call",
            OutboxWork::Transcript(_) => "transcript",
            OutboxWork::Task(_) => "task",
            OutboxWork::Lead(_) => "lead",
        }
    }

    /// The item to store under `item_key`.
    pub fn into_item(self, item_key: String) -> NewOutboxItem {
        let kind = self.kind();
        let mut payload =
            serde_json::to_value(&self).expect("outbox work serialises (plain data, string keys)");
        payload["v"] = Value::from(WORK_VERSION);
        NewOutboxItem {
            item_key,
            kind: kind.into(),
            payload,
        }
    }

    /// Reads a stored item's work: `kind` is its column, `payload` its payload, of this version
    /// or from before the version tag.
    pub fn read(kind: &str, payload: &Value) -> Result<OutboxWork, WorkError> {
        if !KINDS.contains(&kind) {
            return Err(WorkError::UnknownKind(kind.to_string()));
        }
        let unreadable = |source| WorkError::Unreadable {
            kind: kind.to_string(),
            source,
        };
        let work = match payload.get("v").and_then(Value::as_u64) {
            Some(v) if v > WORK_VERSION => return Err(WorkError::NewerVersion(v)),
            Some(_) => OutboxWork::deserialize(payload).map_err(unreadable)?,
            None => {
                // Before the version tag: the same fields, the kind only in the column.
                let mut tagged = payload.clone();
                if let Some(fields) = tagged.as_object_mut() {
                    fields.insert("kind".into(), Value::from(kind));
                }
                serde_json::from_value(tagged).map_err(unreadable)?
            }
        };
        if work.kind() != kind {
            return Err(WorkError::KindMismatch {
                column: kind.to_string(),
                payload: work.kind(),
            });
        }
        Ok(work)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::tests::{
        legacy_call_payload, legacy_lead_payload, legacy_task_payload, legacy_transcript_payload,
    };
    use callbridge_core::settings::{NewClientAction, RepeatClientAction};
    use serde_json::json;

    #[test]
    fn rows_from_before_the_version_tag_read_as_typed_work() {
        let OutboxWork::Call(call) = OutboxWork::read("call", &legacy_call_payload()).unwrap()
        else {
            panic!("not a call")
        };
        assert_eq!(call.entry_id, "ZW50cnk6MTIx");
        assert_eq!(call.record.client_phone.as_deref(), Some("79161230021"));
        assert_eq!(
            call.record.reasons,
            [Rule::P1, Rule::P4, Rule::M4, Rule::M5]
        );
        let entities = call.record.entities.unwrap();
        assert_eq!(entities.rules.new_client, NewClientAction::ContactAndLead);
        assert_eq!(entities.responsible_crm_user_id.get(), 1001);
        assert_eq!(
            call.record.task.unwrap().dedupe_key,
            "79161230021:2025-11-26"
        );

        let OutboxWork::Task(task) = OutboxWork::read("task", &legacy_task_payload()).unwrap()
        else {
            panic!("not a task")
        };
        assert_eq!(task.call_item, "acme/ZW50cnk6MTIx/missed/call");
        assert_eq!(task.task.due_at, 1764108928);

        let transcript = OutboxWork::read("transcript", &legacy_transcript_payload()).unwrap();
        let OutboxWork::Transcript(transcript) = transcript else {
            panic!("not a transcript")
        };
        assert_eq!(
            transcript.recording_id.as_deref(),
            Some("MToxMDAwNjA4NTo1MDA5NDExNzoxMDE=")
        );
        assert_eq!(transcript.crm_user_id.get(), 1001);

        let OutboxWork::Lead(lead) = OutboxWork::read("lead", &legacy_lead_payload()).unwrap()
        else {
            panic!("not a lead")
        };
        let rules = lead.record.entities.unwrap().rules;
        assert_eq!(rules.repeat_client, RepeatClientAction::AlwaysLead);
    }

    #[test]
    fn written_work_carries_kind_and_version_and_reads_back() {
        for (kind, legacy) in [
            ("call", legacy_call_payload()),
            ("task", legacy_task_payload()),
            ("transcript", legacy_transcript_payload()),
            ("lead", legacy_lead_payload()),
        ] {
            let work = OutboxWork::read(kind, &legacy).unwrap();
            let item = work.clone().into_item(format!("t/e/0/{kind}"));
            assert_eq!(item.kind, kind);
            assert_eq!(item.payload["v"], json!(WORK_VERSION));
            assert_eq!(item.payload["kind"], json!(kind));
            // The fields older readers (and the admin API's readers) know keep their names.
            for (field, value) in legacy.as_object().unwrap() {
                if field != "reasons" || kind != "lead" {
                    assert_eq!(&item.payload[field], value, "{kind}.{field}");
                }
            }
            assert_eq!(OutboxWork::read(kind, &item.payload).unwrap(), work);
        }
    }

    #[test]
    fn unknown_kinds_newer_versions_and_mismatches_are_refused() {
        let call = OutboxWork::read("call", &legacy_call_payload()).unwrap();
        let mut payload = call.into_item("k".into()).payload;
        assert!(matches!(
            OutboxWork::read("fax", &payload),
            Err(WorkError::UnknownKind(_))
        ));
        assert!(matches!(
            OutboxWork::read("task", &payload),
            Err(WorkError::Unreadable { .. } | WorkError::KindMismatch { .. })
        ));
        payload["v"] = json!(WORK_VERSION + 1);
        assert!(matches!(
            OutboxWork::read("call", &payload),
            Err(WorkError::NewerVersion(_))
        ));
        assert!(matches!(
            OutboxWork::read("call", &json!({"entry_id": "e"})),
            Err(WorkError::Unreadable { .. })
        ));
    }
}
