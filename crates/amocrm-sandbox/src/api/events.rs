//! `POST /api/v2/events`: the incoming-call card pop.

use crate::input::{json_body, kind_of, Reader};
use crate::model::{now_ms, CallEvent};
use crate::respond::{ApiError, ApiResult, FieldError};
use crate::server::Shared;
use axum::body::Bytes;
use axum::extract::State as AxState;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::Value;
use std::sync::Arc;

/// Takes `{"add": [{"type": "phone_call", "phone_number": "..", "users": [..]}]}` and answers
/// 202 with no body; the pops are kept for `GET /_sandbox/call_events`.
pub async fn add(AxState(shared): AxState<Arc<Shared>>, body: Bytes) -> ApiResult {
    let value = json_body(&body)?;
    let Some(items) = value.get("add") else {
        return Err(ApiError::bad_request(if value.is_object() {
            "The request body needs an \"add\" array of events".to_owned()
        } else {
            format!(
                "The request body must be a JSON object, not {}",
                kind_of(&value)
            )
        }));
    };
    let Some(items) = items.as_array().filter(|a| !a.is_empty()) else {
        return Err(ApiError::bad_request(
            "\"add\" must be a non-empty array of events",
        ));
    };
    let mut events = Vec::new();
    let mut errors: Vec<(String, Vec<FieldError>)> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let mut r = Reader::new(item, "");
        let kind = r.req_string("type");
        if let Some(k) = kind.as_deref() {
            if k != "phone_call" {
                r.fail(
                    "NotSupportedChoice",
                    "type",
                    format!("Event type {k:?} is not supported (only phone_call)."),
                );
            }
        }
        let phone = r.req_string("phone_number");
        let users = match r.raw("users") {
            None => Vec::new(),
            Some(Value::Array(users)) => {
                for (j, u) in users.iter().enumerate() {
                    let fine = u.as_u64().is_some()
                        || u.as_str().is_some_and(|s| s.parse::<u64>().is_ok());
                    if !fine {
                        r.fail(
                            "InvalidType",
                            &format!("users.{j}"),
                            "A user id (number or numeric string) is expected.",
                        );
                    }
                }
                users.clone()
            }
            Some(other) => {
                let detail = format!(
                    "This value should be an array of user ids, not {}.",
                    kind_of(other)
                );
                r.fail("InvalidType", "users", detail);
                Vec::new()
            }
        };
        match (phone, r.ok()) {
            (Some(phone_number), true) => events.push(CallEvent {
                received_at_ms: now_ms(),
                phone_number,
                users,
            }),
            _ => errors.push((i.to_string(), r.errors)),
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    {
        let mut st = shared.state();
        st.call_events.extend(events);
        st.touch();
    }
    shared.save().await;
    Ok(StatusCode::ACCEPTED.into_response())
}
