//! Mango's webhooks: `POST /mango/{tenant}/{path}` with a form-encoded `vpbx_api_key`, `sign`
//! and `json`. A valid event is in the event log, durably, before the 200 goes back.

use crate::problem::Problem;
use crate::state::{now_ms, AppState};
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use callbridge_mango::check_plausible;
use callbridge_mango::webhook::{parse_event, Webhook};
use callbridge_store::{Appended, NewEvent};
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;

/// The 200 Mango gets for anything it need not send again; `stored` says whether it was logged.
fn acknowledged(stored: bool) -> Response {
    (
        StatusCode::OK,
        Json(serde_json::json!({"ok": true, "stored": stored})),
    )
        .into_response()
}

fn rejected(reason: &'static str) {
    metrics::counter!("callbridge_webhooks_total", "result" => "rejected", "reason" => reason)
        .increment(1);
}

/// An oversized body this much larger than the limit (and at least 1 MiB) is still read to its
/// end, and thrown away, before the 413 goes back.
const DRAIN_FACTOR: usize = 16;

/// What a webhook body may be: at most `max_bytes`, arrived within `read_timeout`.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    pub max_bytes: usize,
    pub read_timeout: Duration,
}

/// Holds webhook bodies to the limits: a larger one gets 413, one that does not arrive in time
/// 408 (a client that stops sending would otherwise hold its connection and task for ever).
///
/// An oversized body is read to its end first (up to [`DRAIN_FACTOR`] times the limit), as
/// nginx does: answering while the client is still sending and then closing the connection made
/// the client's write fail, so it saw a broken pipe or a reset instead of the 413. Only a body
/// past that bound is refused without being read.
pub async fn within_limit(
    State(limits): State<BodyLimits>,
    request: Request,
    next: Next,
) -> Response {
    let limit = limits.max_bytes;
    let drain_up_to = limit.saturating_mul(DRAIN_FACTOR).max(1 << 20);
    let too_large = || {
        rejected("too_large");
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Payload Too Large",
            format!("the body is larger than the {limit} bytes accepted"),
        )
        .into_response()
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > drain_up_to as u64) {
        return too_large();
    }
    let (parts, body) = request.into_parts();
    let read = async {
        let mut chunks = body.into_data_stream();
        let (mut kept, mut seen) = (Vec::<Bytes>::new(), 0usize);
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|e| {
                rejected("malformed");
                Problem::new(
                    StatusCode::BAD_REQUEST,
                    "Bad Request",
                    format!("the request body could not be read: {e}"),
                )
                .into_response()
            })?;
            seen = seen.saturating_add(chunk.len());
            if seen > drain_up_to {
                return Err(too_large());
            }
            if seen <= limit {
                kept.push(chunk);
            } else {
                kept.clear();
            }
        }
        if seen > limit {
            return Err(too_large());
        }
        Ok(kept)
    };
    let mut kept = match tokio::time::timeout(limits.read_timeout, read).await {
        Ok(Ok(kept)) => kept,
        Ok(Err(refused)) => return refused,
        Err(_) => {
            rejected("timeout");
            return Problem::new(
                StatusCode::REQUEST_TIMEOUT,
                "Request Timeout",
                format!(
                    "the body did not arrive within {} ms",
                    limits.read_timeout.as_millis()
                ),
            )
            .into_response();
        }
    };
    // One chunk (the usual case) is passed on as it is, without a copy.
    let body = match kept.len() {
        1 => Body::from(kept.remove(0)),
        _ => Body::from(kept.concat()),
    };
    next.run(Request::from_parts(parts, body)).await
}

pub async fn ping(
    State(state): State<Arc<AppState>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    receive(state, tenant, String::new(), headers, body).await
}

pub async fn webhook(
    State(state): State<Arc<AppState>>,
    Path((tenant, path)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    receive(state, tenant, path, headers, body).await
}

/// The key an unknown tenant's requests are compared against, so that they take the same path
/// (and about the same time) as a known tenant's with a wrong key. No real key equals it: keys
/// are checked against a tenant's own key only.
const ABSENT_TENANT_KEY: &[u8] = b"no-such-tenant-0000000000000000000000000000";

/// Handles one webhook. Until the caller has shown the tenant's API key, every answer is the
/// same whether the tenant exists or not (same status, body and headers, checks in the same
/// order: body, content type, fields, key), so tenant ids cannot be probed for.
async fn receive(
    state: Arc<AppState>,
    tenant_id: String,
    path: String,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let forbidden = || {
        Problem::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "unknown tenant, API key or signature",
        )
        .into_response()
    };
    // Mango's connection check may send an empty request: acknowledge it, store nothing. It is
    // acknowledged for any tenant id, known or not, so it tells nobody which ids exist.
    if body.iter().all(u8::is_ascii_whitespace) {
        metrics::counter!("callbridge_webhooks_total", "result" => "ping").increment(1);
        return acknowledged(false);
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type
        .to_ascii_lowercase()
        .starts_with("application/x-www-form-urlencoded")
    {
        rejected("content_type");
        return Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported Media Type",
            format!("expected application/x-www-form-urlencoded, got {content_type:?}"),
        )
        .into_response();
    }
    let (mut key, mut sign, mut json) = (None, None, None);
    for (name, value) in form_urlencoded::parse(&body) {
        match name.as_ref() {
            "vpbx_api_key" => key = Some(value.into_owned()),
            "sign" => sign = Some(value.into_owned()),
            "json" => json = Some(value.into_owned()),
            _ => {}
        }
    }
    let is_ping = path.trim_matches('/') == "ping" || path.is_empty();
    let missing = |field: &str| {
        rejected("malformed");
        Problem::new(
            StatusCode::BAD_REQUEST,
            "Bad Request",
            format!("form field \"{field}\" is missing"),
        )
        .into_response()
    };
    let Some(key) = key else {
        return missing("vpbx_api_key");
    };
    if json.is_none() && !is_ping {
        return missing("json");
    }
    // The tenant is looked up only now, and an unknown one is compared against a stand-in key,
    // so the answers above and the one below do not depend on whether it exists.
    let tenant = state.tenant(&tenant_id).await;
    let expected_key = tenant
        .as_ref()
        .map_or(ABSENT_TENANT_KEY, |t| t.row.mango_api_key.as_bytes());
    let key_matches = bool::from(key.as_bytes().ct_eq(expected_key));
    // One reason for both: `/metrics` needs no token, so its labels must not tell a made-up
    // tenant id from a wrong key either (the log, for the operator, says which).
    let tenant = match tenant {
        Some(tenant) if key_matches => tenant,
        found => {
            tracing::debug!(tenant = %tenant_id, exists = found.is_some(), "webhook refused: unknown tenant or key");
            rejected("unknown_key");
            return forbidden();
        }
    };
    let Some(json) = json else {
        // A ping with the right key (only a ping may come without `json`, checked above).
        return acknowledged(false);
    };
    let Some(sign) = sign else {
        rejected("bad_signature");
        return forbidden();
    };
    if !callbridge_mango::verify(&key, &json, &tenant.row.mango_api_salt, &sign) {
        rejected("bad_signature");
        return forbidden();
    }
    let event = match parse_event(&path, &json) {
        Ok(Webhook::Event(event)) => event,
        Ok(Webhook::Ignored { .. }) => {
            metrics::counter!("callbridge_webhooks_total", "result" => "ignored").increment(1);
            return acknowledged(false);
        }
        Err(e) => {
            rejected("malformed");
            return Problem::new(StatusCode::BAD_REQUEST, "Bad Request", e.to_string())
                .into_response();
        }
    };
    // Well-formed but implausible (a time before 2000 or days ahead, a 60,000-character id,
    // a NUL byte): refused before it reaches the log and, from there, the CRM.
    if let Err(e) = check_plausible(&event, Some(now_ms().div_euclid(1000))) {
        rejected("implausible");
        return Problem::new(StatusCode::BAD_REQUEST, "Bad Request", e.to_string()).into_response();
    }
    let new = NewEvent {
        tenant_id: tenant.row.id.clone(),
        entry_id: event.entry_id().to_string(),
        path: callbridge_mango::webhook::normalize_path(&path).to_string(),
        dedupe_key: event.dedupe_key(),
        json,
        received_at_ms: now_ms(),
    };
    // Once committed, the parsed event goes on to the processor with its id.
    match state.appender.append_with(new, event).await {
        Ok(Appended::Stored(id)) => {
            metrics::counter!("callbridge_webhooks_total", "result" => "accepted").increment(1);
            state.new_events.notify_one();
            (
                StatusCode::OK,
                Json(serde_json::json!({"ok": true, "stored": true, "id": id})),
            )
                .into_response()
        }
        Ok(Appended::Duplicate) => {
            metrics::counter!("callbridge_webhooks_total", "result" => "duplicate").increment(1);
            (
                StatusCode::OK,
                Json(serde_json::json!({"ok": true, "stored": false, "duplicate": true})),
            )
                .into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "event log unavailable");
            rejected("storage");
            // Not acknowledged: the PBX delivers it again.
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Service Unavailable",
                "the event log is unavailable; retry",
            )
            .into_response()
        }
    }
}
