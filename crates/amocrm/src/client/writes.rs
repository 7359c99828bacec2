//! Writes: contacts, leads, complex leads, unsorted requests, notes, tasks, calls and call
//! cards; at most [`MAX_BATCH`] items each, and an empty batch sends nothing. `add_calls` turns
//! amoCRM's "Entity not found" into an outcome (a new client), not an error.

use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::transport::expect_success;
use super::{non_empty, to_json, AmoClient, MAX_BATCH};
use crate::error::{Error, ItemError};
use crate::model::*;
use crate::wire;

fn check_batch(what: &str, len: usize) -> Result<(), Error> {
    if len > MAX_BATCH {
        return Err(Error::Config(format!(
            "{what}: {len} items in one batch; at most {MAX_BATCH} are allowed, split the batch"
        )));
    }
    Ok(())
}

impl AmoClient {
    /// A batch write answered by `_embedded.{key}[]`: at most [`MAX_BATCH`] items, each sent in
    /// its wire shape; an empty batch sends nothing.
    async fn write_batch<'i, I, O, T, W>(
        &self,
        what: &str,
        path: &str,
        items: &'i [I],
        wire_shape: impl Fn(&'i I) -> O,
        key: &str,
    ) -> Result<Vec<T>, Error>
    where
        O: Serialize,
        W: DeserializeOwned + Into<T>,
    {
        check_batch(what, items.len())?;
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let body: Vec<O> = items.iter().map(wire_shape).collect();
        self.post_batch::<T, W>(path, to_json(what, &body)?, key)
            .await
    }

    /// `POST /api/v4/contacts`.
    pub async fn create_contacts(&self, items: &[NewContact]) -> Result<Vec<Created>, Error> {
        self.write_batch::<_, _, Created, wire::CreatedIn>(
            "create_contacts",
            "/api/v4/contacts",
            items,
            wire::ContactOut::new,
            "contacts",
        )
        .await
    }

    /// `POST /api/v4/leads`.
    pub async fn create_leads(&self, items: &[NewLead]) -> Result<Vec<Created>, Error> {
        self.write_batch::<_, _, Created, wire::CreatedIn>(
            "create_leads",
            "/api/v4/leads",
            items,
            wire::LeadOut::new,
            "leads",
        )
        .await
    }

    /// `POST /api/v4/leads/complex`: each lead with a new contact, in one request. The answer is
    /// a plain array in request order.
    pub async fn create_complex_leads(
        &self,
        items: &[NewComplexLead],
    ) -> Result<Vec<ComplexCreated>, Error> {
        check_batch("create_complex_leads", items.len())?;
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let what = "POST /api/v4/leads/complex";
        let body: Vec<_> = items.iter().map(wire::ComplexLeadOut::new).collect();
        let reply = expect_success(
            self.post(
                "/api/v4/leads/complex",
                to_json("create_complex_leads", &body)?,
            )
            .await?,
        )?;
        let root = wire::parse_json(what, &reply.body)?;
        let created: Vec<wire::ComplexIn> = wire::decode_at(what, "", root)?;
        Ok(created.into_iter().map(Into::into).collect())
    }

    /// `POST /api/v4/leads/unsorted/sip`.
    pub async fn add_unsorted_sip(
        &self,
        items: &[NewUnsortedSip],
    ) -> Result<Vec<UnsortedCreated>, Error> {
        self.write_batch::<_, _, UnsortedCreated, wire::UnsortedIn>(
            "add_unsorted_sip",
            "/api/v4/leads/unsorted/sip",
            items,
            wire::UnsortedSipOut::new,
            "unsorted",
        )
        .await
    }

    /// `POST /api/v4/{entity}/notes`.
    pub async fn add_notes(
        &self,
        entity: EntityType,
        items: &[NewNote],
    ) -> Result<Vec<Created>, Error> {
        self.write_batch::<_, _, Created, wire::CreatedIn>(
            "add_notes",
            &format!("/api/v4/{entity}/notes"),
            items,
            wire::NoteOut::new,
            "notes",
        )
        .await
    }

    /// `POST /api/v4/tasks`.
    pub async fn create_tasks(&self, items: &[NewTask]) -> Result<Vec<Created>, Error> {
        self.write_batch::<_, _, Created, wire::CreatedIn>(
            "create_tasks",
            "/api/v4/tasks",
            items,
            wire::TaskOut::new,
            "tasks",
        )
        .await
    }

    /// `POST /api/v4/calls`. "Entity not found" (no contact or company with the number),
    /// whether as a 400 or as `errors[]` beside `_embedded.calls` in a 200, is reported in the
    /// outcome, not as an error. Other refusals (validation errors, ...) are
    /// [`Error::Rejected`].
    pub async fn add_calls(&self, items: &[NewCall]) -> Result<CallsOutcome, Error> {
        check_batch("add_calls", items.len())?;
        if items.is_empty() {
            return Ok(CallsOutcome::default());
        }
        let what = "POST /api/v4/calls";
        let reply = self
            .post("/api/v4/calls", to_json("add_calls", items)?)
            .await?;
        if reply.status == StatusCode::BAD_REQUEST {
            if let Some(root) = entity_not_found_body(&reply.body) {
                return calls_outcome(what, root, items);
            }
        }
        let reply = expect_success(reply)?;
        let root = wire::parse_json(what, &reply.body)?;
        let has_calls = root.get("_embedded").and_then(|e| e.get("calls")).is_some();
        let has_errors = root
            .get("errors")
            .and_then(Value::as_array)
            .is_some_and(|e| !e.is_empty());
        if !has_calls && !has_errors {
            return Err(Error::Decode(format!(
                "{what}: neither _embedded.calls nor errors in the answer"
            )));
        }
        calls_outcome(what, root, items)
    }

    /// `POST /api/v2/events` with `phone_call` events: pop the incoming-call card for the
    /// listed users. amoCRM answers 202.
    pub async fn show_call_card(&self, events: &[CallCardEvent]) -> Result<(), Error> {
        check_batch("show_call_card", events.len())?;
        if events.is_empty() {
            return Ok(());
        }
        for (index, event) in events.iter().enumerate() {
            if event.users.is_empty() {
                return Err(Error::Config(format!(
                    "show_call_card: event {index} has no users; amoCRM would notify every user of the account"
                )));
            }
            non_empty("show_call_card", "phone_number", &event.phone_number)?;
        }
        let body = wire::EventsOut {
            add: events.iter().map(wire::CallEventOut::new).collect(),
        };
        expect_success(
            self.post("/api/v2/events", to_json("show_call_card", &body)?)
                .await?,
        )?;
        Ok(())
    }
}

const ENTITY_NOT_FOUND: &str = "Entity not found";

fn is_entity_not_found(entry: &Value) -> bool {
    entry
        .get("title")
        .and_then(Value::as_str)
        .is_some_and(|t| t.trim().eq_ignore_ascii_case(ENTITY_NOT_FOUND))
}

/// The body of a 400 from `/api/v4/calls` whose `errors[]` are all "Entity not found": an
/// outcome, not a refusal. Any other 400 (validation errors, ...) gives `None` and becomes
/// [`Error::Rejected`].
fn entity_not_found_body(body: &[u8]) -> Option<Value> {
    let root: Value = serde_json::from_slice(body).ok()?;
    let errors = root.get("errors").and_then(Value::as_array)?;
    let has_validation_errors = root
        .get("validation-errors")
        .and_then(Value::as_array)
        .is_some_and(|v| !v.is_empty());
    if errors.is_empty() || has_validation_errors || !errors.iter().all(is_entity_not_found) {
        return None;
    }
    Some(root)
}

/// Created calls (`_embedded.calls`, when present: a 400 may still carry the calls that were
/// attached, and dropping them would send them twice) and the sorted `errors[]`.
fn calls_outcome(what: &str, mut root: Value, items: &[NewCall]) -> Result<CallsOutcome, Error> {
    let mut outcome = CallsOutcome::default();
    if let Some(calls) = root
        .get_mut("_embedded")
        .and_then(|e| e.get_mut("calls"))
        .map(Value::take)
    {
        let calls: Vec<wire::CallIn> = wire::decode_at(what, "_embedded.calls", calls)?;
        for (index, call) in calls.into_iter().enumerate() {
            // Without an echoed request_id the answer's order is the request's.
            let request_id = call
                .request_id
                .or_else(|| items.get(index).map(|i| i.request_id.clone()))
                .unwrap_or_default();
            outcome.created.push(CallCreated {
                request_id,
                id: call.id,
                entity_id: call.entity_id,
                entity_type: call.entity_type.unwrap_or_default(),
            });
        }
    }
    sort_call_errors(&root, items, &mut outcome);
    Ok(outcome)
}

/// Sort `errors[]` of a calls answer into `not_found` and `other_errors`. An "Entity not found"
/// without a `request_id` is pinned on the call only when the batch had one; in a larger batch
/// nobody can tell which call it meant, so it stays an unattributed error.
fn sort_call_errors(root: &Value, items: &[NewCall], outcome: &mut CallsOutcome) {
    let Some(errors) = root.get("errors").and_then(Value::as_array) else {
        return;
    };
    let sent = |id: &str| items.iter().any(|i| i.request_id == id);
    for entry in errors {
        let error = wire::plain_item_error(entry);
        if !is_entity_not_found(entry) {
            outcome.other_errors.push(error);
            continue;
        }
        // The CRM answers with the item's index for items sent without a request_id; every
        // call carries one, but an index is still understood.
        let by_index = |id: &str| {
            id.parse::<usize>()
                .ok()
                .and_then(|index| items.get(index))
                .map(|item| item.request_id.clone())
        };
        match error.request_id {
            Some(id) if sent(&id) => outcome.not_found.push(id),
            Some(id) if by_index(&id).is_some() => outcome.not_found.extend(by_index(&id)),
            None if items.len() == 1 => outcome
                .not_found
                .extend(items.first().map(|i| i.request_id.clone())),
            request_id => outcome.other_errors.push(ItemError {
                request_id,
                message: error.message,
            }),
        }
    }
}
