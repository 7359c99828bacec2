//! Tasks: add, list with filters, complete.

use super::{path_id, Listing};
use crate::api::crm::view;
use crate::input::{json_array, json_body, kind_of, read_batch, Query, Reader};
use crate::model::{now_secs, EntityKind, Task};
use crate::respond::{added_batch, ok, ApiError, ApiResult};
use crate::server::{Caller, Shared};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State as AxState};
use axum::Extension;
use serde_json::json;
use std::sync::Arc;

const MAX_BATCH: usize = 250;
const ENTITY_TYPES: [&str; 4] = ["leads", "contacts", "companies", "customers"];

pub async fn add(
    AxState(shared): AxState<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult {
    let items = json_array(&body, MAX_BATCH)?;
    let response = {
        let mut st = shared.state();
        let drafts = read_batch(&items, |r| {
            let text = r.req_string("text");
            let complete_till = r.req_int("complete_till");
            let task_type_id = r.id("task_type_id").unwrap_or(1);
            if task_type_id != 1 && task_type_id != 2 {
                r.fail(
                    "NotSupportedChoice",
                    "task_type_id",
                    format!("Task type {task_type_id} does not exist (1 = follow-up/call, 2 = meeting)."),
                );
            }
            let entity_type = r.string("entity_type");
            let entity_id = r.id("entity_id");
            match (entity_type.as_deref(), entity_id) {
                (Some(t), _) if !ENTITY_TYPES.contains(&t) => r.fail(
                    "NotSupportedChoice",
                    "entity_type",
                    format!("Entity type {t:?} is not a valid choice; use the plural: leads, contacts, companies, customers."),
                ),
                (Some(t @ ("leads" | "contacts")), Some(id)) => {
                    let kind = if t == "leads" { EntityKind::Leads } else { EntityKind::Contacts };
                    if !st.entity_listed(kind, id) {
                        r.fail("NotFound", "entity_id", format!("The {} {id} does not exist.", kind.singular()));
                    }
                }
                (Some(_), None) => r.fail("FieldMissing", "entity_id", "entity_id is required with entity_type."),
                (None, Some(_)) => r.fail("FieldMissing", "entity_type", "entity_type is required with entity_id."),
                _ => {}
            }
            let responsible = r
                .user("responsible_user_id", |id| st.is_user(id), false)
                .unwrap_or(caller.user_id);
            let created_by = r
                .user("created_by", |id| st.is_user(id), true)
                .unwrap_or(caller.user_id);
            let duration = r.int("duration").unwrap_or(0);
            let is_completed = r.bool("is_completed").unwrap_or(false);
            let result_text = r
                .object("result")
                .and_then(|res| res.get("text"))
                .and_then(|t| t.as_str())
                .map(str::to_owned);
            let created_at = r.int("created_at").unwrap_or_else(now_secs);
            Some(Task {
                id: 0,
                text: text?,
                complete_till: complete_till?,
                task_type_id,
                entity_type,
                entity_id,
                responsible_user_id: responsible,
                created_by,
                updated_by: created_by,
                created_at,
                updated_at: created_at,
                duration,
                is_completed,
                result_text,
            })
        })?;
        let answer = added_batch(&shared.base_url, "tasks", drafts, |task| {
            st.insert_task(task)
        });
        st.touch();
        answer
    };
    shared.save().await;
    Ok(ok(&response))
}

fn parse_bool(name: &str, v: &str) -> Result<bool, ApiError> {
    match v {
        "1" | "true" => Ok(true),
        "0" | "false" => Ok(false),
        _ => Err(ApiError::bad_request(format!(
            "Query parameter {name}: {v:?} is not a boolean (use 1/0 or true/false)"
        ))),
    }
}

pub async fn list(AxState(shared): AxState<Arc<Shared>>, RawQuery(raw): RawQuery) -> ApiResult {
    let query = Query::parse(raw.as_deref());
    let at = Listing::new(&shared.base_url, "/api/v4/tasks", &query)?;
    let completed = match query.get("filter[is_completed]") {
        Some(v) => Some(parse_bool("filter[is_completed]", v)?),
        None => None,
    };
    let entity_types = query.list("filter[entity_type]");
    let entity_ids = query.ids("filter[entity_id]")?;
    let responsible = query.ids("filter[responsible_user_id]")?;
    let types = query.ids("filter[task_type]")?;
    let ids = query.ids("filter[id]")?;
    let st = shared.state();
    let v = view(&shared, &st);
    let found: Vec<&Task> = st
        .tasks
        .values()
        .filter(|t| completed.is_none_or(|c| t.is_completed == c))
        .filter(|t| {
            entity_types.is_empty()
                || t.entity_type
                    .as_ref()
                    .is_some_and(|e| entity_types.contains(e))
        })
        .filter(|t| entity_ids.is_empty() || t.entity_id.is_some_and(|e| entity_ids.contains(&e)))
        .filter(|t| responsible.is_empty() || responsible.contains(&t.responsible_user_id))
        .filter(|t| types.is_empty() || types.contains(&t.task_type_id))
        .filter(|t| ids.is_empty() || ids.contains(&t.id))
        .collect();
    Ok(at.page("tasks", found, |t| v.task(t)))
}

/// `PATCH /api/v4/tasks/{id}`: `is_completed`, `text`, `complete_till`, `responsible_user_id`,
/// `result.text`.
pub async fn update(
    AxState(shared): AxState<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let id = path_id(&id, "Task")?;
    let value = json_body(&body)?;
    if !value.is_object() {
        return Err(ApiError::bad_request(format!(
            "The request body must be a JSON object, not {}",
            kind_of(&value)
        )));
    }
    let response = {
        let mut st = shared.state();
        let mut r = Reader::new(&value, "");
        let is_completed = r.bool("is_completed");
        let text = r.string("text");
        let complete_till = r.int("complete_till");
        let responsible = r.user("responsible_user_id", |uid| st.is_user(uid), false);
        let result_text = r
            .object("result")
            .and_then(|res| res.get("text"))
            .and_then(|t| t.as_str())
            .map(str::to_owned);
        if !r.ok() {
            return Err(ApiError::Validation(vec![("0".into(), r.errors)]));
        }
        let now = now_secs();
        let Some(task) = st.tasks.get_mut(&id) else {
            return Err(ApiError::not_found(format!("Task {id} does not exist")));
        };
        if let Some(c) = is_completed {
            task.is_completed = c;
        }
        if let Some(t) = text {
            task.text = t;
        }
        if let Some(c) = complete_till {
            task.complete_till = c;
        }
        if let Some(u) = responsible {
            task.responsible_user_id = u;
        }
        if result_text.is_some() {
            task.result_text = result_text;
        }
        task.updated_at = now;
        task.updated_by = caller.user_id;
        st.touch();
        json!({
            "id": id,
            "updated_at": now,
            "_links": {"self": {"href": format!("{}/api/v4/tasks/{id}", shared.base_url)}},
        })
    };
    shared.save().await;
    Ok(ok(&response))
}
