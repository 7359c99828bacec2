//! Unsorted ("Incoming leads") items of the `sip` category: add, list, accept, decline.

use super::Listing;
use crate::api::crm::{contact_with_phone, read_contact, read_lead, refuse_companies, view};
use crate::input::{json_array, json_body, kind_of, read_batch, Query, Reader};
use crate::model::{
    now_secs, random_hex, Contact, EntityKind, Note, Unsorted, UnsortedStatus, PIPELINE_ID,
    STATUSES, STATUS_FIRST_CONTACT, STATUS_UNSORTED,
};
use crate::respond::{no_content, ok, ApiError, ApiResult, FieldError};
use crate::server::{Caller, Shared};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State as AxState};
use axum::Extension;
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;
use std::sync::Arc;

const MAX_BATCH: usize = 250;

struct Draft {
    source_uid: String,
    source_name: String,
    created_at: i64,
    metadata: Map<String, Value>,
    lead: crate::model::Lead,
    contact: Option<Contact>,
}

/// Reads `metadata` of a sip item, checking the types of the documented keys.
fn read_metadata(r: &mut Reader<'_>) -> Option<Map<String, Value>> {
    let Some(meta) = r.object("metadata") else {
        if !r.has("metadata") {
            r.fail("FieldMissing", "metadata", "This field is missing.");
        }
        return None;
    };
    let mut m = Reader::new(meta, "metadata.");
    for key in ["uniq", "from", "service_code", "link"] {
        m.string(key);
    }
    match m.raw("phone") {
        Some(Value::String(_) | Value::Number(_)) | None => {}
        Some(other) => {
            let detail = format!("This value should be a string, not {}.", kind_of(other));
            m.fail("InvalidType", "phone", detail);
        }
    }
    for key in ["called_at", "duration"] {
        m.int(key);
    }
    m.bool("is_call_event_needed");
    let ok = m.ok();
    r.errors.append(&mut m.errors);
    if ok {
        meta.as_object().cloned()
    } else {
        None
    }
}

pub async fn add_sip(
    AxState(shared): AxState<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult {
    let items = json_array(&body, MAX_BATCH)?;
    let response = {
        let mut st = shared.state();
        let mut seen: BTreeSet<String> = BTreeSet::new();
        let drafts = read_batch(&items, |r| {
            let source_uid = r.req_string("source_uid");
            let source_name = r.req_string("source_name");
            let pipeline_id = r.id("pipeline_id").unwrap_or(PIPELINE_ID);
            if pipeline_id != PIPELINE_ID {
                r.fail(
                    "NotSupportedChoice",
                    "pipeline_id",
                    format!(
                        "Pipeline {pipeline_id} does not exist (the account has {PIPELINE_ID})."
                    ),
                );
            }
            let created_at = r.int("created_at").unwrap_or_else(now_secs);
            let metadata = read_metadata(r);
            if let Some(uniq) = metadata
                .as_ref()
                .and_then(|m| m.get("uniq"))
                .and_then(Value::as_str)
            {
                let stored = st
                    .unsorted
                    .values()
                    .find(|u| u.metadata.get("uniq").and_then(Value::as_str) == Some(uniq));
                if let Some(existing) = stored {
                    r.fail(
                        "Duplicate",
                        "metadata.uniq",
                        format!(
                            "An incoming lead with metadata.uniq {uniq:?} already exists (uid {}).",
                            existing.uid
                        ),
                    );
                } else if !seen.insert(uniq.to_owned()) {
                    r.fail(
                        "Duplicate",
                        "metadata.uniq",
                        format!("metadata.uniq {uniq:?} appears twice in this request."),
                    );
                }
            }
            let mut lead = None;
            let mut contact = None;
            let mut lead_given = false;
            if let Some(emb) = r.object("_embedded") {
                let mut e = Reader::new(emb, "_embedded.");
                if let Some(leads) = e.array("leads") {
                    if leads.len() > 1 {
                        e.fail(
                            "NotSupportedChoice",
                            "leads",
                            "An incoming lead takes at most 1 lead.",
                        );
                    } else if let Some(l) = leads.first() {
                        lead_given = true;
                        let mut lr = Reader::new(l, "_embedded.leads.0.");
                        lead = read_lead(&mut lr, &st, caller);
                        e.errors.append(&mut lr.errors);
                    }
                }
                if let Some(contacts) = e.array("contacts") {
                    if contacts.len() > 1 {
                        e.fail(
                            "NotSupportedChoice",
                            "contacts",
                            "An incoming lead takes at most 1 contact.",
                        );
                    } else if let Some(c) = contacts.first() {
                        let mut cr = Reader::new(c, "_embedded.contacts.0.");
                        contact = read_contact(&mut cr, &st, caller);
                        e.errors.append(&mut cr.errors);
                    }
                }
                refuse_companies(&mut e);
                r.errors.append(&mut e.errors);
            }
            let (Some(source_uid), Some(source_name), Some(metadata), true) =
                (source_uid, source_name, metadata, r.ok())
            else {
                return None;
            };
            let from = metadata
                .get("from")
                .and_then(Value::as_str)
                .filter(|s| s.chars().any(|c| c.is_ascii_digit()))
                .map(str::to_owned);
            let mut lead = match lead {
                Some(l) => l,
                None if lead_given => return None,
                None => crate::model::Lead {
                    id: 0,
                    name: format!("Входящий звонок {}", from.as_deref().unwrap_or(""))
                        .trim()
                        .to_owned(),
                    price: 0,
                    responsible_user_id: caller.user_id,
                    status_id: STATUS_UNSORTED,
                    pipeline_id: PIPELINE_ID,
                    created_by: 0,
                    updated_by: 0,
                    created_at,
                    updated_at: created_at,
                    closed_at: None,
                    custom_fields_values: Vec::new(),
                    contact_ids: Vec::new(),
                    visible: false,
                    deleted: false,
                },
            };
            // Whatever status was asked, an unsorted item's lead sits in the unsorted stage.
            lead.status_id = STATUS_UNSORTED;
            lead.pipeline_id = pipeline_id;
            lead.visible = false;
            // Without an embedded contact, the caller's number makes one (our assumption).
            let mut contact = contact.or_else(|| {
                from.as_deref()
                    .map(|p| contact_with_phone(p, caller.user_id, created_at))
            });
            if let Some(c) = contact.as_mut() {
                c.visible = false;
            }
            Some(Draft {
                source_uid,
                source_name,
                created_at,
                metadata,
                lead,
                contact,
            })
        })?;
        let mut out = Vec::new();
        for (request_id, d) in drafts {
            let contact_id = d.contact.map(|c| st.insert_contact(c));
            let mut lead = d.lead;
            lead.contact_ids = contact_id.into_iter().collect();
            let lead_id = st.insert_lead(lead);
            let uid = random_hex(20);
            let seq = st.next.unsorted_seq;
            st.next.unsorted_seq += 1;
            let item = Unsorted {
                uid: uid.clone(),
                seq,
                source_uid: d.source_uid,
                source_name: d.source_name,
                pipeline_id: PIPELINE_ID,
                created_at: d.created_at,
                metadata: d.metadata,
                lead_ids: vec![lead_id],
                contact_ids: contact_id.into_iter().collect(),
                status: UnsortedStatus::Pending,
            };
            let v = view(&shared, &st);
            out.push(json!({
                "uid": uid,
                "request_id": request_id,
                "category": "sip",
                "_embedded": v.unsorted_embedded(&item),
            }));
            st.unsorted.insert(uid, item);
        }
        st.touch();
        json!({
            "_total_items": out.len(),
            "_embedded": {"unsorted": out},
        })
    };
    shared.save().await;
    Ok(ok(&response))
}

pub async fn list(AxState(shared): AxState<Arc<Shared>>, RawQuery(raw): RawQuery) -> ApiResult {
    let query = Query::parse(raw.as_deref());
    let at = Listing::new(&shared.base_url, "/api/v4/leads/unsorted", &query)?;
    let uids = query.list("filter[uid]");
    let categories = query.list("filter[category]");
    let pipelines = query.ids("filter[pipeline_id]")?;
    // Every item here is of the sip category.
    let sip_wanted = categories.is_empty() || categories.iter().any(|c| c == "sip");
    let st = shared.state();
    let v = view(&shared, &st);
    let mut found: Vec<&Unsorted> = st
        .unsorted
        .values()
        .filter(|u| u.status == UnsortedStatus::Pending)
        .filter(|u| uids.is_empty() || uids.contains(&u.uid))
        .filter(|_| sip_wanted)
        .filter(|u| pipelines.is_empty() || pipelines.contains(&u.pipeline_id))
        .collect();
    found.sort_by_key(|u| u.seq);
    if query.get("order[created_at]") == Some("desc") {
        found.reverse();
    }
    Ok(at.page("unsorted", found, |u| v.unsorted(u)))
}

pub async fn get_one(AxState(shared): AxState<Arc<Shared>>, Path(uid): Path<String>) -> ApiResult {
    let st = shared.state();
    match st
        .unsorted
        .get(&uid)
        .filter(|u| u.status == UnsortedStatus::Pending)
    {
        Some(u) => Ok(ok(&view(&shared, &st).unsorted(u))),
        None => Ok(no_content()),
    }
}

/// The optional body of accept/decline: `{user_id?, status_id?}`.
fn read_action(
    body: &[u8],
    allow_status: bool,
) -> Result<(Option<u64>, Option<u64>, Value), ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok((None, None, Value::Null));
    }
    let value = json_body(body)?;
    if !value.is_object() {
        return Err(ApiError::bad_request(format!(
            "The request body must be a JSON object, not {}",
            kind_of(&value)
        )));
    }
    let mut r = Reader::new(&value, "");
    let user_id = r.id("user_id");
    let status_id = if allow_status {
        r.id("status_id")
    } else {
        None
    };
    if !r.ok() {
        return Err(ApiError::Validation(vec![("0".into(), r.errors)]));
    }
    Ok((user_id, status_id, value.clone()))
}

fn pending<'a>(st: &'a mut crate::model::State, uid: &str) -> Result<&'a mut Unsorted, ApiError> {
    match st.unsorted.get_mut(uid) {
        None => Err(ApiError::not_found(format!(
            "Incoming lead {uid:?} does not exist"
        ))),
        Some(u) if u.status != UnsortedStatus::Pending => Err(ApiError::bad_request(format!(
            "Incoming lead {uid:?} was already {}",
            if u.status == UnsortedStatus::Accepted {
                "accepted"
            } else {
                "declined"
            }
        ))),
        Some(u) => Ok(u),
    }
}

pub async fn accept(
    AxState(shared): AxState<Arc<Shared>>,
    Path(uid): Path<String>,
    body: Bytes,
) -> ApiResult {
    let (user_id, status_id, _) = read_action(&body, true)?;
    let response = {
        let mut st = shared.state();
        if let Some(uid) = user_id {
            if !st.is_user(uid) {
                return Err(ApiError::one_field(
                    "0",
                    FieldError::new(
                        "NotSupportedChoice",
                        "user_id",
                        format!("User {uid} is not a user of this account."),
                    ),
                ));
            }
        }
        let status = status_id.unwrap_or(STATUS_FIRST_CONTACT);
        if status == STATUS_UNSORTED || !STATUSES.iter().any(|s| s.0 == status) {
            return Err(ApiError::one_field(
                "0",
                FieldError::new(
                    "NotSupportedChoice",
                    "status_id",
                    format!("Status {status} is not a status to accept into."),
                ),
            ));
        }
        let item = pending(&mut st, &uid)?;
        item.status = UnsortedStatus::Accepted;
        let item = item.clone();
        let now = now_secs();
        for id in &item.lead_ids {
            if let Some(l) = st.leads.get_mut(id) {
                l.visible = true;
                l.status_id = status;
                l.updated_at = now;
                if let Some(u) = user_id {
                    l.responsible_user_id = u;
                }
            }
        }
        for id in &item.contact_ids {
            if let Some(c) = st.contacts.get_mut(id) {
                c.visible = true;
                c.updated_at = now;
                if let Some(u) = user_id {
                    c.responsible_user_id = u;
                }
            }
        }
        let wants_call = item
            .metadata
            .get("is_call_event_needed")
            .and_then(Value::as_bool)
            == Some(true);
        if let (true, Some(&lead_id)) = (wants_call, item.lead_ids.first()) {
            let meta = &item.metadata;
            let text = |k: &str| {
                meta.get(k)
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
            };
            let mut params = Map::new();
            params.insert(
                "uniq".into(),
                json!(text("uniq")
                    .map(str::to_owned)
                    .unwrap_or_else(|| random_hex(16))),
            );
            params.insert(
                "duration".into(),
                json!(meta.get("duration").and_then(Value::as_i64).unwrap_or(0)),
            );
            params.insert(
                "source".into(),
                json!(text("service_code").unwrap_or(&item.source_name)),
            );
            let phone = match (text("from"), meta.get("phone")) {
                (Some(from), _) => from.to_owned(),
                (None, Some(Value::String(p))) => p.clone(),
                (None, Some(Value::Number(n))) => n.to_string(),
                _ => String::new(),
            };
            params.insert("phone".into(), json!(phone));
            if let Some(link) = text("link") {
                params.insert("link".into(), json!(link));
            }
            if let Some(cr) = meta
                .get("call_responsible")
                .filter(|v| v.is_string() || v.is_number())
            {
                params.insert("call_responsible".into(), cr.clone());
            }
            let responsible = user_id.unwrap_or_else(|| st.admin_id());
            let at = meta
                .get("called_at")
                .and_then(Value::as_i64)
                .unwrap_or(item.created_at);
            st.insert_note(Note {
                id: 0,
                entity_type: EntityKind::Leads,
                entity_id: lead_id,
                note_type: "call_in".into(),
                params: Value::Object(params),
                responsible_user_id: responsible,
                created_by: 0,
                updated_by: 0,
                created_at: at,
                updated_at: at,
            });
        }
        st.touch();
        let v = view(&shared, &st);
        json!({
            "uid": item.uid,
            "category": "sip",
            "pipeline_id": item.pipeline_id,
            "created_at": item.created_at,
            "_links": v.link(&format!("/api/v4/leads/unsorted/{}", item.uid)),
            "_embedded": v.unsorted_embedded(&item),
        })
    };
    shared.save().await;
    Ok(ok(&response))
}

pub async fn decline(
    AxState(shared): AxState<Arc<Shared>>,
    Path(uid): Path<String>,
    body: Bytes,
) -> ApiResult {
    read_action(&body, false)?;
    let response = {
        let mut st = shared.state();
        let item = pending(&mut st, &uid)?;
        item.status = UnsortedStatus::Declined;
        let item = item.clone();
        for id in &item.lead_ids {
            if let Some(l) = st.leads.get_mut(id) {
                l.deleted = true;
            }
        }
        for id in &item.contact_ids {
            if let Some(c) = st.contacts.get_mut(id) {
                c.deleted = true;
            }
        }
        st.touch();
        let v = view(&shared, &st);
        json!({
            "uid": item.uid,
            "category": "sip",
            "pipeline_id": item.pipeline_id,
            "_links": v.link(&format!("/api/v4/leads/unsorted/{}", item.uid)),
            "_embedded": v.unsorted_embedded(&item),
        })
    };
    shared.save().await;
    Ok(ok(&response))
}
