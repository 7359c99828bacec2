//! Mango's webhooks: `POST /mango/{tenant}/{path}` with a form-encoded `vpbx_api_key`, `sign`
//! and `json`. A valid event is in the event log, durably, before the 200 goes back.

use crate::error::WebhookError;
use crate::state::{now_ms, AppState};
use crate::tenant_id::TenantId;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use callbridge_mango::check_plausible;
use callbridge_mango::webhook::{parse_event, Webhook, WebhookForm};
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
/// An oversized body is read to its end first (up to `DRAIN_FACTOR` times the limit), as
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
    let too_large = || WebhookError::TooLarge { limit };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > drain_up_to as u64) {
        return too_large().into_response();
    }
    let (parts, body) = request.into_parts();
    let read = async {
        let mut chunks = body.into_data_stream();
        let (mut kept, mut seen) = (Vec::<Bytes>::new(), 0usize);
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(WebhookError::Unreadable)?;
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
        Ok(Err(refused)) => return refused.into_response(),
        Err(_) => return WebhookError::TooSlow(limits.read_timeout).into_response(),
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
) -> Result<Response, WebhookError> {
    let answer = receive(state.clone(), tenant.clone(), String::new(), headers, body).await;
    if let Err(refused) = &answer {
        note_refusal(&state, &tenant, refusal_reason(refused)).await;
    }
    answer
}

pub async fn webhook(
    State(state): State<Arc<AppState>>,
    Path((tenant, path)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, WebhookError> {
    let answer = receive(state.clone(), tenant.clone(), path, headers, body).await;
    if let Err(refused) = &answer {
        note_refusal(&state, &tenant, refusal_reason(refused)).await;
    }
    answer
}

/// Keeps a refusal for the Connections page when it concerns a tenant that exists (requests to
/// made-up tenant ids leave nothing, so they cannot fill memory or the table).
async fn note_refusal(state: &Arc<AppState>, tenant_id: &str, reason: Option<String>) {
    let Some(reason) = reason else {
        return;
    };
    if state.tenants.read().await.contains_key(tenant_id) {
        state.connections.refusals.note(state, tenant_id, reason);
    }
}

/// How a refusal is kept: a short code the page turns into words, and for a body that could not
/// be read as an event, what was wrong with it. `None`: not the sender's fault (the event log
/// was unavailable), or refused before the tenant was looked at (size, time).
fn refusal_reason(refused: &WebhookError) -> Option<String> {
    /// Enough of a parse error to name the field, bounded whatever the body held.
    const DETAIL_CHARS: usize = 200;
    let with_detail = |code: &str| {
        let detail: String = refused.to_string().chars().take(DETAIL_CHARS).collect();
        format!("{code}: {detail}")
    };
    Some(match refused {
        WebhookError::UnknownKey => "unknown_key".into(),
        WebhookError::BadSignature => "bad_signature".into(),
        WebhookError::Malformed(_)
        | WebhookError::MissingField(_)
        | WebhookError::Unreadable(_) => with_detail("malformed"),
        WebhookError::ContentType(_) => with_detail("content_type"),
        WebhookError::Implausible(_) => with_detail("implausible"),
        WebhookError::TooLarge { .. } | WebhookError::TooSlow(_) | WebhookError::Storage(_) => {
            return None
        }
    })
}

/// Refused webhooks per tenant, written to the store at most once a second per tenant: a
/// sender refused a thousand times a second costs one write a second, and the webhook's answer
/// never waits for the write (it runs in a task of its own).
#[derive(Default)]
pub struct RefusalRecorder {
    pending: std::sync::Mutex<std::collections::HashMap<String, PendingRefusals>>,
}

/// Refusals of one tenant not written yet.
#[derive(Default)]
struct PendingRefusals {
    /// When the last write was started (Unix ms).
    written_at_ms: i64,
    /// A write is scheduled and will take whatever is pending when it runs.
    scheduled: bool,
    count: i64,
    reason: String,
    at_ms: i64,
}

/// At most one write per tenant in this many milliseconds.
const REFUSAL_WRITE_EVERY_MS: i64 = 1000;

impl RefusalRecorder {
    /// Counts one refusal of `tenant_id`'s webhooks and schedules its write.
    pub fn note(&self, state: &Arc<AppState>, tenant_id: &str, reason: String) {
        let now = now_ms();
        let delay_ms = {
            let Ok(mut pending) = self.pending.lock() else {
                return;
            };
            let p = pending.entry(tenant_id.to_string()).or_default();
            p.count += 1;
            p.reason = reason;
            p.at_ms = now;
            if p.scheduled {
                return;
            }
            p.scheduled = true;
            (p.written_at_ms + REFUSAL_WRITE_EVERY_MS - now).max(0)
        };
        let state = state.clone();
        let tenant = tenant_id.to_string();
        tokio::spawn(async move {
            if delay_ms > 0 {
                tokio::time::sleep(Duration::from_millis(delay_ms as u64)).await;
            }
            let taken = state.connections.refusals.take(&tenant);
            // Deleted meanwhile: a row now would greet a new tenant of that id.
            if state.tenant(&tenant).await.is_none() {
                return;
            }
            if let Some((at_ms, reason, count)) = taken {
                if let Err(e) = state
                    .store
                    .record_webhook_refusal(&tenant, at_ms, &reason, count)
                    .await
                {
                    tracing::warn!(tenant = %tenant, error = %e, "could not record a refused webhook");
                }
            }
        });
    }

    /// What is pending for the tenant, marked written now.
    fn take(&self, tenant_id: &str) -> Option<(i64, String, i64)> {
        let mut pending = self.pending.lock().ok()?;
        let p = pending.get_mut(tenant_id)?;
        p.scheduled = false;
        p.written_at_ms = now_ms();
        let count = std::mem::take(&mut p.count);
        (count > 0).then(|| (p.at_ms, std::mem::take(&mut p.reason), count))
    }
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
) -> Result<Response, WebhookError> {
    // Mango's connection check may send an empty request: acknowledge it, store nothing. It is
    // acknowledged for any tenant id, known or not, so it tells nobody which ids exist.
    if body.iter().all(u8::is_ascii_whitespace) {
        metrics::counter!("callbridge_webhooks_total", "result" => "ping").increment(1);
        return Ok(acknowledged(false));
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type
        .to_ascii_lowercase()
        .starts_with("application/x-www-form-urlencoded")
    {
        return Err(WebhookError::ContentType(content_type.to_string()));
    }
    let WebhookForm {
        vpbx_api_key: key,
        sign,
        json,
    } = WebhookForm::read(&body);
    let is_ping = path.trim_matches('/') == "ping" || path.is_empty();
    let key = key.ok_or(WebhookError::MissingField("vpbx_api_key"))?;
    if json.is_none() && !is_ping {
        return Err(WebhookError::MissingField("json"));
    }
    // The tenant is looked up only now, and an unknown one is compared against a stand-in key,
    // so the answers above and the one below do not depend on whether it exists. An id no tenant
    // can have is unknown without a look-up.
    let tenant = match TenantId::parse(&tenant_id) {
        Ok(id) => state.tenant(&id).await,
        Err(_) => None,
    };
    let expected_key = tenant
        .as_ref()
        .map_or(ABSENT_TENANT_KEY, |t| t.row.mango_api_key.as_bytes());
    let key_matches = bool::from(key.as_bytes().ct_eq(expected_key));
    let tenant = match tenant {
        Some(tenant) if key_matches => tenant,
        found => {
            tracing::debug!(tenant = %tenant_id, exists = found.is_some(), "webhook refused: unknown tenant or key");
            return Err(WebhookError::UnknownKey);
        }
    };
    let Some(json) = json else {
        // A ping with the right key (only a ping may come without `json`, checked above).
        return Ok(acknowledged(false));
    };
    let sign = sign.ok_or(WebhookError::BadSignature)?;
    if !callbridge_mango::verify(&key, &json, &tenant.row.mango_api_salt, &sign) {
        return Err(WebhookError::BadSignature);
    }
    let event = match parse_event(&path, &json).map_err(WebhookError::Malformed)? {
        Webhook::Event(event) => event,
        Webhook::Ignored { .. } => {
            metrics::counter!("callbridge_webhooks_total", "result" => "ignored").increment(1);
            return Ok(acknowledged(false));
        }
    };
    tracing::Span::current().record(
        crate::request_span::ENTRY,
        tracing::field::display(event.entry_id()),
    );
    // Well-formed but implausible (a time before 2000 or days ahead, a 60,000-character id,
    // a NUL byte): refused before it reaches the log and, from there, the CRM.
    check_plausible(&event, Some(now_ms().div_euclid(1000))).map_err(WebhookError::Implausible)?;
    let new = NewEvent {
        tenant_id: tenant.row.id.clone(),
        entry_id: event.entry_id().to_string(),
        path: callbridge_mango::webhook::normalize_path(&path).to_string(),
        dedupe_key: event.dedupe_key(),
        json,
        received_at_ms: now_ms(),
    };
    // Once committed, the parsed event goes on to the processor with its id.
    let appended = state
        .appender
        .append_with(new, event)
        .await
        .map_err(WebhookError::Storage)?;
    Ok(match appended {
        Appended::Stored(id) => {
            metrics::counter!("callbridge_webhooks_total", "result" => "accepted").increment(1);
            state.new_events.notify_one();
            (
                StatusCode::OK,
                Json(serde_json::json!({"ok": true, "stored": true, "id": id})),
            )
                .into_response()
        }
        Appended::Duplicate => {
            metrics::counter!("callbridge_webhooks_total", "result" => "duplicate").increment(1);
            (
                StatusCode::OK,
                Json(serde_json::json!({"ok": true, "stored": false, "duplicate": true})),
            )
                .into_response()
        }
    })
}
