//! amoCRM's JSON: the request bodies built from the public types, and lenient readers for the
//! answers. Readers never panic; a value that is present and unusable becomes
//! [`Error::Decode`] naming the endpoint and the JSON path.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::error::{Error, ItemError};
use crate::model::*;

// ---------------------------------------------------------------------------------------------
// Request bodies

#[derive(Serialize)]
struct PhoneValue<'a> {
    value: &'a str,
    enum_code: &'static str,
}

#[derive(Serialize)]
struct PhoneField<'a> {
    field_code: &'static str,
    values: [PhoneValue<'a>; 1],
}

fn phone_field(phone: &str) -> [PhoneField<'_>; 1] {
    [PhoneField {
        field_code: "PHONE",
        values: [PhoneValue {
            value: phone,
            enum_code: "WORK",
        }],
    }]
}

#[derive(Serialize)]
pub(crate) struct ContactOut<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    responsible_user_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
    custom_fields_values: [PhoneField<'a>; 1],
}

impl<'a> ContactOut<'a> {
    pub(crate) fn new(contact: &'a NewContact) -> Self {
        ContactOut {
            name: &contact.name,
            responsible_user_id: contact.responsible_user_id,
            request_id: contact.request_id.as_deref(),
            custom_fields_values: phone_field(&contact.phone),
        }
    }

    /// A contact embedded in another entity: its own `request_id` is not documented there, so it
    /// is left out rather than risk a validation error.
    fn embedded(contact: &'a NewContact) -> Self {
        ContactOut {
            request_id: None,
            ..ContactOut::new(contact)
        }
    }
}

#[derive(Serialize)]
struct IdRef {
    id: u64,
}

#[derive(Serialize)]
struct LeadContacts {
    contacts: [IdRef; 1],
}

#[derive(Serialize)]
pub(crate) struct LeadOut<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    responsible_user_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pipeline_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
    #[serde(rename = "_embedded", skip_serializing_if = "Option::is_none")]
    embedded: Option<LeadContacts>,
}

impl<'a> LeadOut<'a> {
    pub(crate) fn new(lead: &'a NewLead) -> Self {
        LeadOut {
            name: &lead.name,
            responsible_user_id: lead.responsible_user_id,
            pipeline_id: lead.pipeline_id,
            request_id: lead.request_id.as_deref(),
            embedded: lead.contact_id.map(|id| LeadContacts {
                contacts: [IdRef { id }],
            }),
        }
    }
}

#[derive(Serialize)]
struct ComplexEmbedded<'a> {
    contacts: [ContactOut<'a>; 1],
}

#[derive(Serialize)]
pub(crate) struct ComplexLeadOut<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    responsible_user_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
    #[serde(rename = "_embedded")]
    embedded: ComplexEmbedded<'a>,
}

impl<'a> ComplexLeadOut<'a> {
    pub(crate) fn new(lead: &'a NewComplexLead) -> Self {
        ComplexLeadOut {
            name: &lead.name,
            responsible_user_id: lead.responsible_user_id,
            request_id: lead.request_id.as_deref(),
            embedded: ComplexEmbedded {
                contacts: [ContactOut::embedded(&lead.contact)],
            },
        }
    }
}

#[derive(Serialize)]
struct SipMetadata<'a> {
    uniq: &'a str,
    from: &'a str,
    phone: &'a str,
    called_at: i64,
    duration: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    link: Option<&'a str>,
    service_code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    call_responsible: Option<u64>,
    /// Puts the call on the entity's timeline once the item is accepted.
    is_call_event_needed: bool,
}

#[derive(Serialize)]
struct UnsortedLead<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    responsible_user_id: Option<u64>,
}

#[derive(Serialize)]
struct UnsortedEmbedded<'a> {
    leads: [UnsortedLead<'a>; 1],
    contacts: [ContactOut<'a>; 1],
}

#[derive(Serialize)]
pub(crate) struct UnsortedSipOut<'a> {
    source_uid: &'a str,
    source_name: &'a str,
    created_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
    metadata: SipMetadata<'a>,
    #[serde(rename = "_embedded")]
    embedded: UnsortedEmbedded<'a>,
}

impl<'a> UnsortedSipOut<'a> {
    pub(crate) fn new(item: &'a NewUnsortedSip) -> Self {
        UnsortedSipOut {
            source_uid: &item.source_uid,
            source_name: &item.source_name,
            created_at: item.called_at,
            request_id: item.request_id.as_deref(),
            metadata: SipMetadata {
                uniq: &item.uniq,
                from: &item.from,
                phone: &item.to,
                called_at: item.called_at,
                duration: item.duration,
                link: item.link.as_deref(),
                service_code: &item.service_code,
                call_responsible: item.call_responsible,
                is_call_event_needed: true,
            },
            embedded: UnsortedEmbedded {
                leads: [UnsortedLead {
                    name: &item.lead_name,
                    responsible_user_id: item.responsible_user_id,
                }],
                // The contact created when the item is accepted gets the caller's number.
                contacts: [ContactOut {
                    name: &item.contact_name,
                    responsible_user_id: item.responsible_user_id,
                    request_id: None,
                    custom_fields_values: phone_field(&item.from),
                }],
            },
        }
    }
}

#[derive(Serialize)]
#[serde(untagged)]
enum NoteParamsOut<'a> {
    Call(&'a CallNoteParams),
    Common { text: &'a str },
}

#[derive(Serialize)]
pub(crate) struct NoteOut<'a> {
    entity_id: u64,
    note_type: &'static str,
    params: NoteParamsOut<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    responsible_user_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_by: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
}

impl<'a> NoteOut<'a> {
    pub(crate) fn new(note: &'a NewNote) -> Self {
        let params = match &note.note_type {
            NoteType::CallIn { params } | NoteType::CallOut { params } => {
                NoteParamsOut::Call(params)
            }
            NoteType::Common { text } => NoteParamsOut::Common { text },
        };
        NoteOut {
            entity_id: note.entity_id,
            note_type: note.note_type.as_str(),
            params,
            responsible_user_id: note.responsible_user_id,
            created_by: note.created_by,
            request_id: note.request_id.as_deref(),
        }
    }
}

#[derive(Serialize)]
pub(crate) struct TaskOut<'a> {
    text: &'a str,
    complete_till: i64,
    task_type_id: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    responsible_user_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    entity_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    entity_type: Option<EntityType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
}

impl<'a> TaskOut<'a> {
    pub(crate) fn new(task: &'a NewTask) -> Self {
        TaskOut {
            text: &task.text,
            complete_till: task.complete_till,
            task_type_id: task.task_type_id,
            responsible_user_id: task.responsible_user_id,
            entity_id: task.entity_id,
            entity_type: task.entity_type,
            request_id: task.request_id.as_deref(),
        }
    }
}

#[derive(Serialize)]
pub(crate) struct CallEventOut<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    phone_number: &'a str,
    users: &'a [u64],
}

impl<'a> CallEventOut<'a> {
    pub(crate) fn new(event: &'a CallCardEvent) -> Self {
        CallEventOut {
            kind: "phone_call",
            phone_number: &event.phone_number,
            users: &event.users,
        }
    }
}

#[derive(Serialize)]
pub(crate) struct EventsOut<'a> {
    pub(crate) add: Vec<CallEventOut<'a>>,
}

// ---------------------------------------------------------------------------------------------
// Answers

/// The body as JSON, or a Decode error naming the endpoint.
pub(crate) fn parse_json(what: &str, body: &[u8]) -> Result<Value, Error> {
    serde_json::from_slice(body)
        .map_err(|e| Error::Decode(format!("{what}: body is not JSON: {e}")))
}

/// Deserialise `value` (found at `path` in the answer) into `T`, naming the exact path of a
/// bad field in the error.
pub(crate) fn decode_at<T: DeserializeOwned>(
    what: &str,
    path: &str,
    value: Value,
) -> Result<T, Error> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let inner = e.path().to_string();
        let full = match (path.is_empty(), inner.as_str()) {
            (true, _) => inner.clone(),
            (false, ".") => path.to_string(),
            (false, _) if inner.starts_with('[') => format!("{path}{inner}"),
            (false, _) => format!("{path}.{inner}"),
        };
        Error::Decode(format!("{what}: {full}: {}", e.into_inner()))
    })
}

/// `_embedded.{key}` of a HAL answer as a list of `T`.
pub(crate) fn embedded_list<T: DeserializeOwned>(
    what: &str,
    root: &mut Value,
    key: &str,
) -> Result<Vec<T>, Error> {
    let Some(list) = root
        .get_mut("_embedded")
        .and_then(|embedded| embedded.get_mut(key))
        .map(Value::take)
    else {
        return Err(Error::Decode(format!(
            "{what}: no _embedded.{key} in the answer"
        )));
    };
    decode_at(what, &format!("_embedded.{key}"), list)
}

/// Whether a HAL list answer links to a next page.
pub(crate) fn has_next_page(root: &Value) -> bool {
    root.get("_links")
        .and_then(|links| links.get("next"))
        .is_some_and(|next| !next.is_null())
}

/// Text of a JSON value that may be a string, a number, or (as `request_id` in complex-lead
/// answers) an array of them.
fn text_of(value: Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s),
        Value::Number(n) => Some(n.to_string()),
        Value::Array(items) => items.into_iter().find_map(text_of),
        _ => None,
    }
}

fn lenient_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<Value>::deserialize(d)?.and_then(text_of))
}

#[derive(Deserialize)]
pub(crate) struct IdOnly {
    pub(crate) id: u64,
}

#[derive(Deserialize)]
pub(crate) struct AccountIn {
    id: u64,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    subdomain: Option<String>,
}

impl From<AccountIn> for Account {
    fn from(a: AccountIn) -> Self {
        Account {
            id: a.id,
            name: a.name.unwrap_or_default(),
            subdomain: a.subdomain,
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct UserIn {
    id: u64,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    email: Option<String>,
}

impl From<UserIn> for User {
    fn from(u: UserIn) -> Self {
        User {
            id: u.id,
            name: u.name.unwrap_or_default(),
            email: u.email.filter(|e| !e.is_empty()),
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct PipelineIn {
    id: u64,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    is_main: Option<bool>,
    #[serde(default)]
    is_unsorted_on: Option<bool>,
}

impl From<PipelineIn> for Pipeline {
    fn from(p: PipelineIn) -> Self {
        Pipeline {
            id: p.id,
            name: p.name.unwrap_or_default(),
            is_main: p.is_main.unwrap_or(false),
            is_unsorted_on: p.is_unsorted_on.unwrap_or(true),
        }
    }
}

#[derive(Deserialize)]
struct CustomFieldIn {
    #[serde(default)]
    field_code: Option<String>,
    #[serde(default)]
    values: Option<Vec<CustomValueIn>>,
}

#[derive(Deserialize)]
struct CustomValueIn {
    #[serde(default, deserialize_with = "lenient_text")]
    value: Option<String>,
}

#[derive(Deserialize, Default)]
struct ContactEmbeddedIn {
    #[serde(default)]
    leads: Option<Vec<IdOnly>>,
}

#[derive(Deserialize)]
pub(crate) struct ContactIn {
    id: u64,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    responsible_user_id: Option<u64>,
    /// `null` (not `[]`) when the contact has no custom field values.
    #[serde(default)]
    custom_fields_values: Option<Vec<CustomFieldIn>>,
    #[serde(default, rename = "_embedded")]
    embedded: Option<ContactEmbeddedIn>,
}

impl From<ContactIn> for Contact {
    fn from(c: ContactIn) -> Self {
        let phones = c
            .custom_fields_values
            .unwrap_or_default()
            .into_iter()
            .filter(|field| field.field_code.as_deref() == Some("PHONE"))
            .flat_map(|field| field.values.unwrap_or_default())
            .filter_map(|value| value.value)
            .collect();
        let lead_ids = c
            .embedded
            .and_then(|e| e.leads)
            .unwrap_or_default()
            .into_iter()
            .map(|lead| lead.id)
            .collect();
        Contact {
            id: c.id,
            name: c.name.unwrap_or_default(),
            responsible_user_id: c.responsible_user_id,
            phones,
            lead_ids,
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct LeadIn {
    id: u64,
    #[serde(default)]
    name: Option<String>,
    status_id: u64,
    #[serde(default)]
    pipeline_id: Option<u64>,
    #[serde(default)]
    responsible_user_id: Option<u64>,
}

impl From<LeadIn> for Lead {
    fn from(l: LeadIn) -> Self {
        Lead {
            id: l.id,
            name: l.name.unwrap_or_default(),
            status_id: l.status_id,
            pipeline_id: l.pipeline_id,
            responsible_user_id: l.responsible_user_id,
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct CreatedIn {
    id: u64,
    #[serde(default, deserialize_with = "lenient_text")]
    request_id: Option<String>,
}

impl From<CreatedIn> for Created {
    fn from(c: CreatedIn) -> Self {
        Created {
            id: c.id,
            request_id: c.request_id,
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct ComplexIn {
    id: u64,
    #[serde(default)]
    contact_id: Option<u64>,
    #[serde(default, deserialize_with = "lenient_text")]
    request_id: Option<String>,
    #[serde(default)]
    merged: Option<bool>,
}

impl From<ComplexIn> for ComplexCreated {
    fn from(c: ComplexIn) -> Self {
        ComplexCreated {
            id: c.id,
            contact_id: c.contact_id,
            request_id: c.request_id,
            merged: c.merged.unwrap_or(false),
        }
    }
}

#[derive(Deserialize, Default)]
struct UnsortedEmbeddedIn {
    #[serde(default)]
    leads: Option<Vec<IdOnly>>,
    #[serde(default)]
    contacts: Option<Vec<IdOnly>>,
}

#[derive(Deserialize, Default)]
struct UnsortedMetadataIn {
    #[serde(default, deserialize_with = "lenient_text")]
    uniq: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct UnsortedIn {
    uid: String,
    #[serde(default, deserialize_with = "lenient_text")]
    request_id: Option<String>,
    #[serde(default, deserialize_with = "lenient_text")]
    source_uid: Option<String>,
    #[serde(default)]
    created_at: Option<i64>,
    /// Its shape depends on the category; only `uniq` is read, and a metadata that is not an
    /// object with it (another category's) reads as none.
    #[serde(default, deserialize_with = "lenient_metadata")]
    metadata: Option<UnsortedMetadataIn>,
    #[serde(default, rename = "_embedded")]
    embedded: Option<UnsortedEmbeddedIn>,
}

fn lenient_metadata<'de, D>(d: D) -> Result<Option<UnsortedMetadataIn>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let value = Value::deserialize(d)?;
    Ok(serde_json::from_value(value).ok())
}

impl From<UnsortedIn> for UnsortedCreated {
    fn from(u: UnsortedIn) -> Self {
        let request_id = u.request_id.clone();
        let listed = Unsorted::from(u);
        UnsortedCreated {
            uid: listed.uid,
            lead_id: listed.lead_id,
            contact_id: listed.contact_id,
            request_id,
        }
    }
}

impl From<UnsortedIn> for Unsorted {
    fn from(u: UnsortedIn) -> Self {
        let embedded = u.embedded.unwrap_or_default();
        let first = |list: Option<Vec<IdOnly>>| list.and_then(|l| l.first().map(|x| x.id));
        Unsorted {
            uid: u.uid,
            lead_id: first(embedded.leads),
            contact_id: first(embedded.contacts),
            source_uid: u.source_uid,
            uniq: u.metadata.and_then(|m| m.uniq),
            created_at: u.created_at,
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct CallIn {
    pub(crate) id: u64,
    pub(crate) entity_id: u64,
    #[serde(default, deserialize_with = "lenient_text")]
    pub(crate) entity_type: Option<String>,
    #[serde(default, deserialize_with = "lenient_text")]
    pub(crate) request_id: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct NoteIn {
    id: u64,
    entity_id: u64,
    #[serde(default, deserialize_with = "lenient_text")]
    note_type: Option<String>,
    #[serde(default)]
    params: Option<Value>,
    #[serde(default)]
    responsible_user_id: Option<u64>,
    #[serde(default)]
    created_by: Option<u64>,
    #[serde(default)]
    created_at: Option<i64>,
}

impl From<NoteIn> for Note {
    fn from(n: NoteIn) -> Self {
        Note {
            id: n.id,
            entity_id: n.entity_id,
            note_type: n.note_type.unwrap_or_default(),
            params: n.params.unwrap_or(Value::Null),
            responsible_user_id: n.responsible_user_id,
            created_by: n.created_by,
            created_at: n.created_at,
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct TaskIn {
    id: u64,
    #[serde(default)]
    text: Option<String>,
    complete_till: i64,
    #[serde(default)]
    is_completed: Option<bool>,
    #[serde(default)]
    responsible_user_id: Option<u64>,
    #[serde(default)]
    entity_id: Option<u64>,
    #[serde(default)]
    entity_type: Option<String>,
}

impl From<TaskIn> for Task {
    fn from(t: TaskIn) -> Self {
        Task {
            id: t.id,
            text: t.text.unwrap_or_default(),
            complete_till: t.complete_till,
            is_completed: t.is_completed.unwrap_or(false),
            responsible_user_id: t.responsible_user_id,
            entity_id: t.entity_id,
            entity_type: t.entity_type,
        }
    }
}

/// A token-endpoint answer.
#[derive(Deserialize)]
pub(crate) struct TokenIn {
    pub(crate) access_token: String,
    pub(crate) refresh_token: String,
    #[serde(default)]
    pub(crate) expires_in: Option<i64>,
}

// ---------------------------------------------------------------------------------------------
// Error bodies

/// Longest piece of a non-JSON or server-error body kept in an error.
const SNIPPET_CHARS: usize = 300;

/// The first `max` characters of `text`, whitespace collapsed, on a character boundary.
pub(crate) fn snippet(text: &str, max: usize) -> String {
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match collapsed.char_indices().nth(max) {
        Some((cut, _)) => format!("{}...", &collapsed[..cut]),
        None => collapsed,
    }
}

/// A body for an error message: a short, printable summary, never the whole body.
pub(crate) fn body_snippet(body: &[u8]) -> String {
    snippet(&String::from_utf8_lossy(body), SNIPPET_CHARS)
}

fn str_field<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// One `errors[]` entry (the calls endpoint's shape): `title`, `detail`, maybe `request_id`.
pub(crate) fn plain_item_error(entry: &Value) -> ItemError {
    let request_id = entry.get("request_id").cloned().and_then(text_of);
    let parts: Vec<&str> = ["title", "detail"]
        .iter()
        .filter_map(|key| str_field(entry, key))
        .collect();
    let message = if parts.is_empty() {
        snippet(&entry.to_string(), SNIPPET_CHARS)
    } else {
        parts.join(": ")
    };
    ItemError {
        request_id,
        message,
    }
}

/// One `validation-errors[]` entry: `request_id` and `errors[{code, path, detail}]`.
fn validation_item_error(entry: &Value) -> ItemError {
    let request_id = entry.get("request_id").cloned().and_then(text_of);
    let problems: Vec<String> = entry
        .get("errors")
        .and_then(Value::as_array)
        .map(|errors| {
            errors
                .iter()
                .map(|e| {
                    let path = str_field(e, "path").unwrap_or("?");
                    let code = str_field(e, "code").unwrap_or("invalid");
                    match str_field(e, "detail") {
                        Some(detail) => format!("{path}: {code} ({detail})"),
                        None => format!("{path}: {code}"),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let message = if problems.is_empty() {
        snippet(&entry.to_string(), SNIPPET_CHARS)
    } else {
        problems.join("; ")
    };
    ItemError {
        request_id,
        message,
    }
}

/// What an error answer says: a one-line message and the batch items it blames. Works on
/// `application/problem+json`, on the calls endpoint's `errors[]`, and on HTML or empty bodies.
pub(crate) fn describe_problem(status: u16, body: &[u8]) -> (String, Vec<ItemError>) {
    let Ok(root) = serde_json::from_slice::<Value>(body) else {
        let text = body_snippet(body);
        let message = if text.is_empty() {
            format!("HTTP {status} with an empty body")
        } else {
            format!("HTTP {status}, non-JSON body: {text}")
        };
        return (message, Vec::new());
    };
    let parts: Vec<&str> = ["title", "detail", "hint"]
        .iter()
        .filter_map(|key| str_field(&root, key))
        .collect();
    let mut items: Vec<ItemError> = root
        .get("validation-errors")
        .and_then(Value::as_array)
        .map(|entries| entries.iter().map(validation_item_error).collect())
        .unwrap_or_default();
    if let Some(errors) = root.get("errors").and_then(Value::as_array) {
        items.extend(errors.iter().map(plain_item_error));
    }
    let message = if parts.is_empty() {
        format!(
            "HTTP {status}: {}",
            snippet(&root.to_string(), SNIPPET_CHARS)
        )
    } else {
        parts.join(": ")
    };
    (message, items)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn calls_never_carry_nulls() {
        let call = NewCall {
            direction: CallDirection::Inbound,
            uniq: "u1".into(),
            duration: 5,
            source: "callbridge".into(),
            phone: "+79161234567".into(),
            link: None,
            call_status: Some(4),
            call_result: None,
            call_responsible: None,
            responsible_user_id: None,
            created_by: None,
            created_at: None,
            request_id: "r1".into(),
        };
        let value = serde_json::to_value(&call).expect("serialise");
        assert_eq!(
            value,
            json!({"direction":"inbound","uniq":"u1","duration":5,"source":"callbridge",
                   "phone":"+79161234567","call_status":4,"request_id":"r1"})
        );
    }

    #[test]
    fn note_params_follow_the_note_type() {
        let note = NewNote {
            entity_id: 7,
            note_type: NoteType::Common { text: "hi".into() },
            responsible_user_id: None,
            created_by: Some(3),
            request_id: None,
        };
        assert_eq!(
            serde_json::to_value(NoteOut::new(&note)).expect("serialise"),
            json!({"entity_id":7,"note_type":"common","params":{"text":"hi"},"created_by":3})
        );
    }

    #[test]
    fn validation_errors_map_to_items_by_request_id() {
        let body = br#"{"validation-errors":[{"request_id":"c2","errors":[{"code":"NotSupportedChoice","path":"custom_fields_values.0.field_id","detail":"The value you selected is not a valid choice."}]}],"title":"Bad Request","type":"https://httpstatus.es/400","status":400,"detail":"Request validation failed"}"#;
        let (message, items) = describe_problem(400, body);
        assert_eq!(message, "Bad Request: Request validation failed");
        assert_eq!(
            items,
            vec![ItemError {
                request_id: Some("c2".into()),
                message: "custom_fields_values.0.field_id: NotSupportedChoice (The value you selected is not a valid choice.)".into(),
            }]
        );
    }

    #[test]
    fn html_and_empty_bodies_describe_without_error() {
        let (message, items) = describe_problem(429, b"<html>\n<body>429   Too Many</body></html>");
        assert_eq!(
            message,
            "HTTP 429, non-JSON body: <html> <body>429 Too Many</body></html>"
        );
        assert!(items.is_empty());
        let (message, _) = describe_problem(404, b"");
        assert_eq!(message, "HTTP 404 with an empty body");
    }

    #[test]
    fn snippet_cuts_on_char_boundaries() {
        assert_eq!(snippet("привет мир", 6), "привет...");
        assert_eq!(snippet("short", 10), "short");
    }

    #[test]
    fn decode_errors_name_the_path() {
        let mut root = json!({"_embedded": {"leads": [{"id": 1, "status_id": 142}, {"id": "x", "status_id": 1}]}});
        let err = embedded_list::<LeadIn>("GET /api/v4/leads", &mut root, "leads")
            .err()
            .expect("a decode error");
        let text = err.to_string();
        assert!(
            text.contains("GET /api/v4/leads: _embedded.leads[1].id: invalid type"),
            "{text}"
        );
    }
}
