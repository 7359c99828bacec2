//! What callbridge sends to amoCRM and what it reads back. Request types serialise to the exact
//! wire shape, never with `null` values: amoCRM refuses nulls in places (e.g. note params).

use std::fmt;

use serde::{Serialize, Serializer};

use crate::error::ItemError;

/// An entity kind, named on the wire in the plural (`leads`, `contacts`, ...), which is what the
/// notes paths and the tasks' `entity_type` expect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntityType {
    Leads,
    Contacts,
    Companies,
    Customers,
}

impl EntityType {
    /// The plural wire and path name.
    pub fn as_str(self) -> &'static str {
        match self {
            EntityType::Leads => "leads",
            EntityType::Contacts => "contacts",
            EntityType::Companies => "companies",
            EntityType::Customers => "customers",
        }
    }
}

impl EntityType {
    /// The kind amoCRM names `name` in an answer (the calls answer's `entity_type`: the spelling,
    /// singular or plural, is not documented, so both are taken, in any case). Anything else is
    /// an error naming what came: writing a call's follow-ups onto a guessed kind would put them
    /// on another client's card.
    pub fn from_api(name: &str) -> Result<EntityType, UnknownEntityType> {
        match name.trim().to_ascii_lowercase().as_str() {
            "lead" | "leads" => Ok(EntityType::Leads),
            "contact" | "contacts" => Ok(EntityType::Contacts),
            "company" | "companies" => Ok(EntityType::Companies),
            "customer" | "customers" => Ok(EntityType::Customers),
            _ => Err(UnknownEntityType(name.to_owned())),
        }
    }
}

/// An `entity_type` in a CRM answer that is none of the four kinds callbridge writes to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "amoCRM answered entity_type {0:?}, which is none of lead, contact, company or customer; \
     callbridge does not know where the call went"
)]
pub struct UnknownEntityType(pub String);

impl fmt::Display for EntityType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for EntityType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// An entity created by a batch add.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Created {
    pub id: u64,
    pub request_id: Option<String>,
}

/// `inbound` or `outbound`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CallDirection {
    Inbound,
    Outbound,
}

/// One item of `POST /api/v4/calls`. amoCRM finds the contact or company by `phone` (last 10
/// digits) and attaches a call note to it or to its single open lead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewCall {
    pub direction: CallDirection,
    pub uniq: String,
    /// Seconds.
    pub duration: i64,
    /// The integration's name, shown on the note.
    pub source: String,
    /// The client's number.
    pub phone: String,
    /// Public URL of the recording (mp3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// 1..7 (4 = talked, 6 = no answer, 7 = busy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_status: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_result: Option<String>,
    /// Inbound: who took the call; outbound: who made it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_responsible: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub responsible_user_id: Option<u64>,
    /// Without it the CRM's statistics show the call as made by a robot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_by: Option<u64>,
    /// Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<i64>,
    /// Echoed back; how results and "Entity not found" errors are matched to calls.
    pub request_id: String,
}

/// What `POST /api/v4/calls` did with a batch. "No contact or company with this number" is an
/// expected outcome (the caller falls back to another way of logging the call), so it is data
/// here rather than an [`crate::Error`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CallsOutcome {
    pub created: Vec<CallCreated>,
    /// `request_id`s of the calls amoCRM found no entity for.
    pub not_found: Vec<String>,
    /// Anything else the CRM said about single items, including an "Entity not found" it did not
    /// tie to an item of a batch of several.
    pub other_errors: Vec<ItemError>,
}

/// A call amoCRM attached to an entity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallCreated {
    pub request_id: String,
    /// The call note's id.
    pub id: u64,
    pub entity_id: u64,
    /// As amoCRM names it (`contact`, `lead`, ... the exact spelling is not documented); read it
    /// with [`CallCreated::entity`].
    pub entity_type: String,
}

impl CallCreated {
    /// The kind of entity the call was attached to; an unknown name is an error with it.
    pub fn entity(&self) -> Result<EntityType, UnknownEntityType> {
        EntityType::from_api(&self.entity_type)
    }
}

/// A contact with one work phone number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewContact {
    pub name: String,
    /// Goes into the system PHONE field with enum `WORK`.
    pub phone: String,
    pub responsible_user_id: Option<u64>,
    pub request_id: Option<String>,
}

/// A lead, optionally linked to an existing contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLead {
    pub name: String,
    pub responsible_user_id: Option<u64>,
    pub pipeline_id: Option<u64>,
    pub contact_id: Option<u64>,
    pub request_id: Option<String>,
}

/// A lead created together with a new contact (`POST /api/v4/leads/complex`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewComplexLead {
    pub name: String,
    pub responsible_user_id: Option<u64>,
    pub contact: NewContact,
    pub request_id: Option<String>,
}

/// One result of `POST /api/v4/leads/complex`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ComplexCreated {
    /// The lead's id.
    pub id: u64,
    pub contact_id: Option<u64>,
    /// The lead's `request_id`, when the CRM echoed one.
    pub request_id: Option<String>,
    /// The CRM's duplicate control merged the contact into an existing one.
    pub merged: bool,
}

/// An "incoming lead" (unsorted) of category `sip`: a call the CRM shows in the pipeline's first
/// stage until someone accepts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUnsortedSip {
    pub source_uid: String,
    pub source_name: String,
    pub uniq: String,
    /// Who called (for inbound calls the client's number); also the embedded contact's phone.
    pub from: String,
    /// Who was called (for inbound calls the line or extension).
    pub to: String,
    /// Unix seconds.
    pub called_at: i64,
    pub duration: i64,
    pub link: Option<String>,
    pub service_code: String,
    /// The user the call is shown as taken by (the official library sends it in the metadata).
    pub call_responsible: Option<u64>,
    pub contact_name: String,
    pub lead_name: String,
    pub responsible_user_id: Option<u64>,
    pub request_id: Option<String>,
}

/// One result of `POST /api/v4/leads/unsorted/sip`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnsortedCreated {
    pub uid: String,
    pub lead_id: Option<u64>,
    pub contact_id: Option<u64>,
    pub request_id: Option<String>,
}

/// An unsorted request as the CRM lists it (`GET /api/v4/leads/unsorted`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unsorted {
    pub uid: String,
    pub lead_id: Option<u64>,
    pub contact_id: Option<u64>,
    /// The integration that sent it (`source_uid`), when listed.
    pub source_uid: Option<String>,
    /// `metadata.uniq` of a `sip` request: the call id the sender gave it.
    pub uniq: Option<String>,
    /// Unix seconds, when listed.
    pub created_at: Option<i64>,
}

/// Which pending unsorted requests [`crate::AmoClient::pending_unsorted_sip`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnsortedFilter {
    /// Only these requests (none: every pending one).
    pub uids: Vec<String>,
    /// Requests created from this Unix time on are wanted; the newest-first walk stops once
    /// it reaches older ones.
    pub created_from: Option<i64>,
}

/// A note to add to an entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNote {
    pub entity_id: u64,
    pub note_type: NoteType,
    pub responsible_user_id: Option<u64>,
    pub created_by: Option<u64>,
    pub request_id: Option<String>,
}

/// The kinds of note callbridge writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoteType {
    /// `call_in`
    CallIn { params: CallNoteParams },
    /// `call_out`
    CallOut { params: CallNoteParams },
    /// `common`: plain text.
    Common { text: String },
}

impl NoteType {
    /// The wire name (`call_in`, `call_out`, `common`).
    pub fn as_str(&self) -> &'static str {
        match self {
            NoteType::CallIn { .. } => "call_in",
            NoteType::CallOut { .. } => "call_out",
            NoteType::Common { .. } => "common",
        }
    }
}

/// `params` of a `call_in`/`call_out` note. Absent options are left out, never sent as null
/// (the CRM answers a null `link`, `call_status` or `call_result` with 400 NotNullable).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallNoteParams {
    pub uniq: String,
    pub duration: i64,
    pub source: String,
    pub phone: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_status: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_result: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_responsible: Option<u64>,
}

/// Which notes [`crate::AmoClient::list_notes`] returns; empty lists mean "any".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotesFilter {
    /// Wire names, e.g. `call_in`.
    pub note_types: Vec<String>,
    pub entity_ids: Vec<u64>,
    /// Only notes updated at or after this Unix time.
    pub updated_from: Option<i64>,
    /// Only notes updated at or before this Unix time.
    pub updated_to: Option<i64>,
}

/// A note as the CRM returns it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Note {
    pub id: u64,
    pub entity_id: u64,
    pub note_type: String,
    /// The note's `params` as sent (for call notes: `uniq`, `duration`, `phone`, ...);
    /// `Null` when absent.
    pub params: serde_json::Value,
    pub responsible_user_id: Option<u64>,
    pub created_by: Option<u64>,
    pub created_at: Option<i64>,
}

/// A task to create (for missed calls: "call back", `task_type_id` 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTask {
    pub text: String,
    /// Deadline, Unix seconds.
    pub complete_till: i64,
    /// 1 = call, 2 = meeting; accounts may define more.
    pub task_type_id: u64,
    pub responsible_user_id: Option<u64>,
    pub entity_id: Option<u64>,
    pub entity_type: Option<EntityType>,
    pub request_id: Option<String>,
}

/// Which tasks [`crate::AmoClient::list_tasks`] returns; `None` and empty lists mean "any".
/// `entity_ids` only narrows anything together with `entity_type`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TasksFilter {
    pub is_completed: Option<bool>,
    pub entity_type: Option<EntityType>,
    pub entity_ids: Vec<u64>,
    pub responsible_user_ids: Vec<u64>,
}

/// A task as the CRM returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Task {
    pub id: u64,
    pub text: String,
    pub complete_till: i64,
    pub is_completed: bool,
    pub responsible_user_id: Option<u64>,
    pub entity_id: Option<u64>,
    /// Plural, as sent (`leads`, `contacts`, ...).
    pub entity_type: Option<String>,
}

/// A contact as the CRM returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Contact {
    pub id: u64,
    pub name: String,
    pub responsible_user_id: Option<u64>,
    /// The values of the system PHONE field, as stored.
    pub phones: Vec<String>,
    /// Linked leads (open or closed; see [`crate::AmoClient::leads_by_ids`]).
    pub lead_ids: Vec<u64>,
}

/// Status of a lead that was won.
pub const STATUS_WON: u64 = 142;
/// Status of a lead that was lost.
pub const STATUS_LOST: u64 = 143;

/// A lead as the CRM returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lead {
    pub id: u64,
    pub name: String,
    pub status_id: u64,
    pub pipeline_id: Option<u64>,
    pub responsible_user_id: Option<u64>,
}

impl Lead {
    /// Neither won (142) nor lost (143).
    pub fn is_open(&self) -> bool {
        self.status_id != STATUS_WON && self.status_id != STATUS_LOST
    }
}

/// Pop the incoming-call card for these users (`POST /api/v2/events`, type `phone_call`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallCardEvent {
    /// The caller's number in any format; the CRM finds the entity to show by its last digits.
    pub phone_number: String,
    /// Must not be empty: with no users the CRM notifies every user of the account.
    pub users: Vec<u64>,
}

/// `GET /api/v4/account`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Account {
    pub id: u64,
    pub name: String,
    pub subdomain: Option<String>,
}

/// A CRM user (`GET /api/v4/users`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub id: u64,
    pub name: String,
    pub email: Option<String>,
}

/// A lead pipeline (`GET /api/v4/leads/pipelines`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pipeline {
    pub id: u64,
    pub name: String,
    pub is_main: bool,
    /// Whether the pipeline takes unsorted requests ("incoming leads"); with it off, amoCRM
    /// refuses them. Taken as on when the answer leaves it out, so the CRM's own refusal speaks.
    pub is_unsorted_on: bool,
}

#[cfg(test)]
mod tests {
    use super::EntityType;

    #[test]
    fn entity_types_are_read_in_every_spelling_and_unknown_ones_are_errors() {
        for (name, kind) in [
            ("lead", EntityType::Leads),
            ("Leads", EntityType::Leads),
            ("contact", EntityType::Contacts),
            ("contacts", EntityType::Contacts),
            ("company", EntityType::Companies),
            ("companies", EntityType::Companies),
            ("customer", EntityType::Customers),
            ("CUSTOMERS", EntityType::Customers),
        ] {
            assert_eq!(EntityType::from_api(name), Ok(kind), "{name}");
        }
        for name in ["", "catalog_elements", "talk", "leadss"] {
            let err = EntityType::from_api(name).expect_err(name);
            assert!(err.to_string().contains(&format!("{name:?}")), "{err}");
        }
    }
}
