//! Calls (`POST /api/v4/calls`) and notes on leads and contacts.

use super::{path_id, Listing};
use crate::api::crm::view;
use crate::input::{json_array, read_batch, request_id, Query, Reader};
use crate::model::{now_secs, EntityKind, Note, State};
use crate::respond::{hal, problem_json, ApiError, ApiResult, FieldError};
use crate::server::{Caller, Shared};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State as AxState};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use serde_json::{json, Map, Value};
use std::sync::Arc;

const MAX_CALLS: usize = 50;
const MAX_NOTES: usize = 250;

/// One validated call, ready to be attached.
struct CallDraft {
    request_id: String,
    note_type: &'static str,
    params: Map<String, Value>,
    phone: String,
    responsible_user_id: u64,
    created_by: u64,
    created_at: i64,
}

fn read_call(
    item: &Value,
    index: usize,
    st: &State,
) -> Result<CallDraft, (String, Vec<FieldError>)> {
    let rid = request_id(item, index);
    let mut r = Reader::new(item, "");
    let note_type = match r.req_string("direction").as_deref() {
        Some("inbound") => Some("call_in"),
        Some("outbound") => Some("call_out"),
        Some(other) => {
            r.fail(
                "NotSupportedChoice",
                "direction",
                format!("The value {other:?} is not a valid choice (inbound or outbound)."),
            );
            None
        }
        None => None,
    };
    let duration = r.req_int("duration");
    if duration.is_some_and(|d| d < 0) {
        r.fail(
            "InvalidType",
            "duration",
            "This value should be a non-negative number of seconds.",
        );
    }
    let source = r.req_string("source");
    let phone = r.req_string("phone");
    let uniq = r.string("uniq");
    let link = r.string("link");
    let call_result = r.string("call_result");
    let call_status = r.int("call_status");
    if let Some(s) = call_status {
        if !(1..=7).contains(&s) {
            r.fail(
                "NotSupportedChoice",
                "call_status",
                format!("The value {s} is not a valid choice (1..7)."),
            );
        }
    }
    let call_responsible = match r.raw("call_responsible") {
        Some(v @ (Value::String(_) | Value::Number(_))) => Some(v.clone()),
        Some(_) => {
            r.fail(
                "InvalidType",
                "call_responsible",
                "This value should be a user id or a string.",
            );
            None
        }
        None => None,
    };
    let responsible = r.user("responsible_user_id", |id| st.is_user(id), false);
    let created_by = r.user("created_by", |id| st.is_user(id), true);
    r.user("updated_by", |id| st.is_user(id), true);
    let created_at = r.int("created_at");
    r.int("updated_at");
    let (Some(note_type), Some(duration), Some(source), Some(phone), true) =
        (note_type, duration, source, phone, r.ok())
    else {
        return Err((rid, r.errors));
    };
    let mut params = Map::new();
    // amoCRM requires a uniq on call notes; a call without one gets a fresh id.
    params.insert(
        "uniq".into(),
        json!(uniq.unwrap_or_else(|| crate::model::random_hex(16))),
    );
    params.insert("duration".into(), json!(duration));
    params.insert("source".into(), json!(source));
    params.insert("phone".into(), json!(phone));
    if let Some(link) = link {
        params.insert("link".into(), json!(link));
    }
    if let Some(s) = call_status {
        params.insert("call_status".into(), json!(s));
    }
    if let Some(res) = call_result {
        params.insert("call_result".into(), json!(res));
    }
    if let Some(cr) = call_responsible {
        params.insert("call_responsible".into(), cr);
    }
    let responsible_user_id = responsible.unwrap_or(0);
    Ok(CallDraft {
        request_id: rid,
        note_type,
        params,
        phone,
        responsible_user_id,
        // No created_by means the robot made the call, unless a responsible user is named.
        created_by: created_by.unwrap_or(responsible_user_id),
        created_at: created_at.unwrap_or_else(now_secs),
    })
}

/// Where a call from `phone` lands: the contact with the number (its only open lead if it has
/// exactly one, else its only customer if it has exactly one, else the contact itself), else
/// the company with the number.
fn call_target(st: &State, phone: &str) -> Option<(EntityKind, u64)> {
    if let Some(c) = st.contact_by_phone(phone) {
        let active: Vec<u64> = st
            .leads_of(c.id)
            .iter()
            .filter(|l| l.active())
            .map(|l| l.id)
            .collect();
        if let [only] = active.as_slice() {
            return Some((EntityKind::Leads, *only));
        }
        if let [only] = st.customers_of(c.id).as_slice() {
            return Some((EntityKind::Customers, only.id));
        }
        return Some((EntityKind::Contacts, c.id));
    }
    st.company_by_phone(phone)
        .map(|c| (EntityKind::Companies, c.id))
}

/// `POST /api/v4/calls`.
pub async fn add_calls(AxState(shared): AxState<Arc<Shared>>, body: Bytes) -> ApiResult {
    let items = json_array(&body, MAX_CALLS)?;
    let (status, response) = {
        let mut st = shared.state();
        let mut drafts = Vec::new();
        let mut invalid = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match read_call(item, i, &st) {
                Ok(d) => drafts.push(d),
                Err(e) => invalid.push(e),
            }
        }
        if !invalid.is_empty() {
            return Err(ApiError::Validation(invalid));
        }
        let base = shared.base_url.clone();
        let account_id = st.account.id;
        let mut landed = Vec::new();
        let mut errors = Vec::new();
        for d in drafts {
            let target = call_target(&st, &d.phone);
            let Some((kind, entity_id)) = target else {
                errors.push(json!({
                    "request_id": d.request_id,
                    "title": "Entity not found",
                    "status": 400,
                    "detail": format!("No contact or company has the number {}", d.phone),
                }));
                continue;
            };
            let note_id = st.insert_note(Note {
                id: 0,
                entity_type: kind,
                entity_id,
                note_type: d.note_type.to_owned(),
                params: Value::Object(d.params),
                responsible_user_id: d.responsible_user_id,
                created_by: d.created_by,
                updated_by: d.created_by,
                created_at: d.created_at,
                updated_at: d.created_at,
            });
            let href = format!("{base}/api/v4/{}/{entity_id}", kind.plural());
            landed.push(json!({
                "id": note_id,
                "entity_id": entity_id,
                "entity_type": kind.singular(),
                "account_id": account_id,
                "request_id": d.request_id,
                "_embedded": {"entity": {"id": entity_id, "_links": {"self": {"href": href}}}},
            }));
        }
        let total = landed.len();
        if total > 0 {
            st.touch();
        }
        let body = json!({
            "_total_items": total,
            "errors": errors,
            "_embedded": {"calls": landed},
        });
        let status = if total > 0 {
            StatusCode::OK
        } else {
            StatusCode::BAD_REQUEST
        };
        (status, body)
    };
    if status == StatusCode::OK {
        shared.save().await;
        Ok(hal(status, &response))
    } else {
        Ok(problem_json(status, &response))
    }
}

/// Reads a note's `params`: call notes need `duration`, `source`, `phone`; a common note needs
/// `text`. A `null` anywhere is `NotNullable`, as amoCRM answers.
fn read_params(note_type: &str, r: &mut Reader<'_>) -> Option<Value> {
    let Some(params) = r.raw("params") else {
        if r.has("params") {
            r.fail("NotNullable", "params", "This value should not be null.");
        } else {
            r.fail("FieldMissing", "params", "This field is missing.");
        }
        return None;
    };
    let mut p = Reader::new(params, "params.");
    p.nulls_rejected = true;
    let mut out = Map::new();
    match note_type {
        "call_in" | "call_out" => {
            if let Some(u) = p.string("uniq") {
                out.insert("uniq".into(), json!(u));
            }
            if let Some(d) = p.req_int("duration") {
                out.insert("duration".into(), json!(d));
            }
            if let Some(s) = p.req_string("source") {
                out.insert("source".into(), json!(s));
            }
            if let Some(s) = p.req_string("phone") {
                out.insert("phone".into(), json!(s));
            }
            if let Some(s) = p.string("link") {
                out.insert("link".into(), json!(s));
            }
            if let Some(s) = p.string("call_result") {
                out.insert("call_result".into(), json!(s));
            }
            if let Some(s) = p.int("call_status") {
                if (1..=7).contains(&s) {
                    out.insert("call_status".into(), json!(s));
                } else {
                    p.fail(
                        "NotSupportedChoice",
                        "call_status",
                        format!("The value {s} is not a valid choice (1..7)."),
                    );
                }
            }
            match p.raw("call_responsible") {
                Some(v @ (Value::String(_) | Value::Number(_))) => {
                    out.insert("call_responsible".into(), v.clone());
                }
                Some(_) => p.fail(
                    "InvalidType",
                    "call_responsible",
                    "This value should be a user id or a string.",
                ),
                None => {}
            }
        }
        _ => {
            if let Some(t) = p.req_string("text") {
                out.insert("text".into(), json!(t));
            }
        }
    }
    // Any other key is kept as sent, but a null there is still refused.
    if let Some(obj) = params.as_object() {
        for (k, v) in obj {
            if v.is_null() {
                if !p.errors.iter().any(|e| e.path == format!("params.{k}")) {
                    p.fail("NotNullable", k, "This value should not be null.");
                }
            } else if !out.contains_key(k)
                && !p.errors.iter().any(|e| e.path == format!("params.{k}"))
            {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    let ok = p.ok();
    r.errors.append(&mut p.errors);
    ok.then_some(Value::Object(out))
}

async fn add_notes(
    shared: Arc<Shared>,
    caller: Caller,
    kind: EntityKind,
    path_entity: Option<u64>,
    body: Bytes,
) -> ApiResult {
    let items = json_array(&body, MAX_NOTES)?;
    let response = {
        let mut st = shared.state();
        let drafts = read_batch(&items, |r| {
            let entity_id = match path_entity {
                Some(id) => Some(id),
                None => r.req_id("entity_id"),
            };
            if let Some(id) = entity_id {
                if !st.entity_exists(kind, id) {
                    r.fail(
                        "NotFound",
                        "entity_id",
                        format!("The {} {id} does not exist.", kind.singular()),
                    );
                }
            }
            let note_type = r.req_string("note_type");
            if let Some(t) = note_type.as_deref() {
                if !matches!(t, "call_in" | "call_out" | "common") {
                    r.fail(
                        "NotSupportedChoice",
                        "note_type",
                        format!("Note type {t:?} is not supported by the sandbox (call_in, call_out, common)."),
                    );
                }
            }
            let params = note_type
                .as_deref()
                .filter(|t| matches!(*t, "call_in" | "call_out" | "common"))
                .and_then(|t| read_params(t, r));
            let responsible = r.user("responsible_user_id", |id| st.is_user(id), false);
            let created_by = r.user("created_by", |id| st.is_user(id), true);
            let created_at = r.int("created_at");
            r.bool("is_need_to_trigger_digital_pipeline");
            let (entity_id, note_type, params) = (entity_id?, note_type?, params?);
            let created_by = created_by.unwrap_or(caller.user_id);
            let at = created_at.unwrap_or_else(now_secs);
            Some(Note {
                id: 0,
                entity_type: kind,
                entity_id,
                note_type,
                params,
                responsible_user_id: responsible.unwrap_or(caller.user_id),
                created_by,
                updated_by: created_by,
                created_at: at,
                updated_at: at,
            })
        })?;
        let base = shared.base_url.clone();
        let mut created = Vec::new();
        for (rid, note) in drafts {
            let entity_id = note.entity_id;
            let id = st.insert_note(note);
            created.push(json!({
                "id": id,
                "entity_id": entity_id,
                "request_id": rid,
                "_links": {"self": {"href": format!("{base}/api/v4/{}/{entity_id}/notes/{id}", kind.plural())}},
            }));
        }
        st.touch();
        let path = match path_entity {
            Some(id) => format!("/api/v4/{}/{id}/notes", kind.plural()),
            None => format!("/api/v4/{}/notes", kind.plural()),
        };
        json!({
            "_links": {"self": {"href": format!("{base}{path}")}},
            "_embedded": {"notes": created},
        })
    };
    shared.save().await;
    Ok(hal(StatusCode::OK, &response))
}

fn list_notes(
    shared: &Shared,
    kind: EntityKind,
    path_entity: Option<u64>,
    raw: Option<String>,
) -> Result<Response, ApiError> {
    let path = match path_entity {
        Some(id) => format!("/api/v4/{}/{id}/notes", kind.plural()),
        None => format!("/api/v4/{}/notes", kind.plural()),
    };
    let query = Query::parse(raw.as_deref());
    let at = Listing::new(&shared.base_url, &path, &query)?;
    let types = query.list("filter[note_type]");
    let ids = query.ids("filter[id]")?;
    let mut entity_ids = query.ids("filter[entity_id]")?;
    if let Some(id) = path_entity {
        entity_ids = vec![id];
    }
    let from = match query.int("filter[updated_at][from]")? {
        Some(v) => Some(v),
        None => query.int("filter[updated_at]")?,
    };
    let to = query.int("filter[updated_at][to]")?;
    let st = shared.state();
    let v = view(shared, &st);
    let found: Vec<&Note> = st
        .notes
        .values()
        .filter(|n| n.entity_type == kind && st.entity_exists(kind, n.entity_id))
        .filter(|n| entity_ids.is_empty() || entity_ids.contains(&n.entity_id))
        .filter(|n| ids.is_empty() || ids.contains(&n.id))
        .filter(|n| types.is_empty() || types.contains(&n.note_type))
        .filter(|n| from.is_none_or(|f| n.updated_at >= f))
        .filter(|n| to.is_none_or(|t| n.updated_at <= t))
        .collect();
    Ok(at.page("notes", found, |n| v.note(n)))
}

pub async fn list_lead_notes(
    AxState(shared): AxState<Arc<Shared>>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    list_notes(&shared, EntityKind::Leads, None, raw)
}

pub async fn list_contact_notes(
    AxState(shared): AxState<Arc<Shared>>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    list_notes(&shared, EntityKind::Contacts, None, raw)
}

pub async fn list_company_notes(
    AxState(shared): AxState<Arc<Shared>>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    list_notes(&shared, EntityKind::Companies, None, raw)
}

pub async fn list_customer_notes(
    AxState(shared): AxState<Arc<Shared>>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    list_notes(&shared, EntityKind::Customers, None, raw)
}

pub async fn add_company_notes(
    AxState(shared): AxState<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult {
    add_notes(shared, caller, EntityKind::Companies, None, body).await
}

pub async fn add_customer_notes(
    AxState(shared): AxState<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult {
    add_notes(shared, caller, EntityKind::Customers, None, body).await
}

pub async fn list_one_lead_notes(
    AxState(shared): AxState<Arc<Shared>>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let id = path_id(&id, "Lead")?;
    list_notes(&shared, EntityKind::Leads, Some(id), raw)
}

pub async fn list_one_contact_notes(
    AxState(shared): AxState<Arc<Shared>>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let id = path_id(&id, "Contact")?;
    list_notes(&shared, EntityKind::Contacts, Some(id), raw)
}

pub async fn add_lead_notes(
    AxState(shared): AxState<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult {
    add_notes(shared, caller, EntityKind::Leads, None, body).await
}

pub async fn add_contact_notes(
    AxState(shared): AxState<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult {
    add_notes(shared, caller, EntityKind::Contacts, None, body).await
}

pub async fn add_one_lead_notes(
    AxState(shared): AxState<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let id = path_id(&id, "Lead")?;
    add_notes(shared, caller, EntityKind::Leads, Some(id), body).await
}

pub async fn add_one_contact_notes(
    AxState(shared): AxState<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let id = path_id(&id, "Contact")?;
    add_notes(shared, caller, EntityKind::Contacts, Some(id), body).await
}
