//! The admin API under `/api/v1`, behind `Authorization: Bearer <admin_token>` (in the header
//! only, never the URL): tenants and their settings, planned entries, card-stream tokens. The
//! live card stream takes either the admin token in the header or a scoped card token in the URL.

use crate::card_tokens;
use crate::config::validate_tenant_id;
use crate::problem::Problem;
use crate::state::{mask, now_ms, AppState};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use callbridge_core::ValidSettings;
use callbridge_store::{StoredEntry, TenantRow};
use serde::Deserialize;
use std::convert::Infallible;
use std::sync::Arc;
use subtle::ConstantTimeEq;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::StreamExt;

/// The bearer token of a request's `Authorization` header.
fn bearer(request_headers: &axum::http::HeaderMap) -> Option<&str> {
    request_headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

fn is_admin_token(state: &AppState, given: &str) -> bool {
    bool::from(given.as_bytes().ct_eq(state.admin_token.as_bytes()))
}

fn unauthorized(detail: impl Into<String>) -> Response {
    Problem::new(StatusCode::UNAUTHORIZED, "Unauthorized", detail).into_response()
}

/// Checks the admin token, from the `Authorization` header only: a token in the URL ends up in
/// proxy logs and browser history. (The card stream, which browsers open with EventSource,
/// takes a scoped token in the URL instead; see [`card_stream`].)
pub async fn require_token(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    match bearer(request.headers()) {
        Some(given) if is_admin_token(&state, given) => next.run(request).await,
        Some(_) => unauthorized("the admin token is not valid"),
        None => {
            let in_query = request
                .uri()
                .query()
                .is_some_and(|q| form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k == "token"));
            unauthorized(if in_query {
                "the admin token is accepted in the Authorization header only (Authorization: Bearer ...), not as ?token="
            } else {
                "a valid admin token is required (Authorization: Bearer ...)"
            })
        }
    }
}

/// A JSON body that did not parse: 400 with serde's words (which name the field).
fn malformed_body(e: axum::extract::rejection::JsonRejection) -> Response {
    Problem::new(StatusCode::BAD_REQUEST, "Bad Request", e.body_text()).into_response()
}

fn no_tenant(id: &str) -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "Not Found",
        format!("no tenant {id:?}"),
    )
}

fn store_error(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "store error");
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "Service Unavailable",
        "the store is unavailable",
    )
    .into_response()
}

fn tenant_json(state: &AppState, row: &TenantRow) -> serde_json::Value {
    serde_json::json!({
        "id": row.id,
        "mango_api_key": mask(&row.mango_api_key),
        "mango_api_salt": "***",
        "settings_toml": row.settings_toml,
        "amocrm": redact_crm(&row.crm),
        "webhook_url": format!("{}/mango/{}/", state.public_url.trim_end_matches('/'), row.id),
        "updated_at_ms": row.updated_at_ms,
    })
}

/// CRM connection settings with tokens and secrets masked.
fn redact_crm(crm: &serde_json::Value) -> serde_json::Value {
    match crm {
        serde_json::Value::Object(map) => serde_json::Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let secret = ["token", "secret", "password"]
                        .iter()
                        .any(|s| k.contains(s));
                    (
                        k.clone(),
                        if secret {
                            serde_json::Value::String(mask(v.as_str().unwrap_or("")))
                        } else {
                            v.clone()
                        },
                    )
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

pub async fn list_tenants(State(state): State<Arc<AppState>>) -> Response {
    match state.store.tenants().await {
        Ok(rows) => Json(serde_json::json!({"tenants": rows.iter().map(|r| tenant_json(&state, r)).collect::<Vec<_>>()})).into_response(),
        Err(e) => store_error(e),
    }
}

pub async fn get_tenant(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    match state.store.tenant(&id).await {
        Ok(Some(row)) => {
            let mut v = tenant_json(&state, &row);
            match (
                state.store.count_events(&id).await,
                state.store.count_entries(&id).await,
            ) {
                (Ok(events), Ok(entries)) => {
                    v["events"] = events.into();
                    v["entries"] = entries.into();
                }
                (Err(e), _) | (_, Err(e)) => return store_error(e),
            }
            match (
                state.store.outbox_counts(&id).await,
                state.store.crm_status(&id).await,
            ) {
                (Ok(counts), Ok(status)) => {
                    v["outbox"] = serde_json::json!(counts);
                    v["crm_status"] = serde_json::json!(status);
                }
                (Err(e), _) | (_, Err(e)) => return store_error(e),
            }
            Json(v).into_response()
        }
        Ok(None) => no_tenant(&id).into_response(),
        Err(e) => store_error(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantBody {
    mango_api_key: Option<String>,
    mango_api_salt: Option<String>,
    settings_toml: Option<String>,
    amocrm: Option<serde_json::Value>,
}

/// Creates or changes a tenant. Absent fields keep their stored value; the settings are
/// validated before anything is stored (S1, S2, S4 errors name the key).
pub async fn put_tenant(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Result<Json<TenantBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => return malformed_body(e),
    };
    if let Err(m) = validate_tenant_id(&id) {
        return Problem::new(
            StatusCode::BAD_REQUEST,
            "Bad Request",
            format!("tenant id {m}"),
        )
        .into_response();
    }
    let existing = match state.store.tenant(&id).await {
        Ok(t) => t,
        Err(e) => return store_error(e),
    };
    let pick = |new: Option<String>, old: Option<&str>, field: &str| -> Result<String, Problem> {
        match new.or(old.map(str::to_string)) {
            Some(v) if !v.trim().is_empty() => Ok(v),
            _ => Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "Bad Request",
                format!("{field} is required"),
            )),
        }
    };
    let key = match pick(
        body.mango_api_key,
        existing.as_ref().map(|t| t.mango_api_key.as_str()),
        "mango_api_key",
    ) {
        Ok(v) => v,
        Err(p) => return p.into_response(),
    };
    // A new salt is held to Mango's length; a stored one is kept as it is.
    if let Some(given) = &body.mango_api_salt {
        if let Err(m) = crate::config::validate_mango_salt(given) {
            return Problem::new(
                StatusCode::BAD_REQUEST,
                "Bad Request",
                format!("mango_api_salt: {m}"),
            )
            .into_response();
        }
    }
    let salt = match pick(
        body.mango_api_salt,
        existing.as_ref().map(|t| t.mango_api_salt.as_str()),
        "mango_api_salt",
    ) {
        Ok(v) => v,
        Err(p) => return p.into_response(),
    };
    let settings_toml = body
        .settings_toml
        .or(existing.as_ref().map(|t| t.settings_toml.clone()))
        .unwrap_or_default();
    if let Err(e) = ValidSettings::parse_toml(&settings_toml) {
        return Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid settings",
            format!("settings_toml: {e}"),
        )
        .into_response();
    }
    let crm = body
        .amocrm
        .or(existing.as_ref().map(|t| t.crm.clone()))
        .unwrap_or(serde_json::Value::Null);
    if let Err(e) = crate::crm::checked_connection(&crm, state.allow_insecure_crm_hosts) {
        return Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid CRM connection",
            e,
        )
        .into_response();
    }
    // Before the row names the new address: the worker restarted for it must find no tokens.
    if let Err(e) = crate::crm::forget_tokens_if_moved(
        &state.store,
        &id,
        existing.as_ref().map(|t| &t.crm),
        &crm,
    )
    .await
    {
        return store_error(e);
    }
    let row = TenantRow {
        id: id.clone(),
        mango_api_key: key,
        mango_api_salt: salt,
        settings_toml,
        crm,
        updated_at_ms: now_ms(),
    };
    if let Err(e) = state.store.upsert_tenant(&row).await {
        return if e.to_string().contains("UNIQUE") || e.to_string().contains("unique") {
            Problem::new(
                StatusCode::CONFLICT,
                "Conflict",
                "mango_api_key is used by another tenant",
            )
            .into_response()
        } else {
            store_error(e)
        };
    }
    if let Err(e) = state.reload_tenants().await {
        return store_error(e);
    }
    let status = if existing.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    (status, Json(tenant_json(&state, &row))).into_response()
}

/// `DELETE /api/v1/tenants/{id}`: the tenant and everything kept for it (events, plans, outbox,
/// OAuth tokens, CRM status, delivery lease, directory, the processor's open entries); its
/// delivery stops. A tenant created again with the id starts empty.
pub async fn delete_tenant(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    match state.delete_tenant(&id).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => no_tenant(&id).into_response(),
        Err(e) => store_error(e),
    }
}

#[derive(Deserialize)]
pub struct EntriesQuery {
    tenant: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

fn entry_json(e: &StoredEntry) -> serde_json::Value {
    let mut v = e.plan.clone();
    let pending = e.outbox.iter().filter(|(_, s)| s == "pending").count();
    let parked = e.outbox.iter().filter(|(_, s)| s == "parked").count();
    v["delivery"] = serde_json::json!({
        "state": if e.outbox.is_empty() { "nothing_to_deliver" } else if parked > 0 { "parked" } else if pending > 0 { "pending" } else { "delivered" },
        "items": e.outbox.iter().map(|(k, s)| serde_json::json!({"key": k, "state": s})).collect::<Vec<_>>(),
    });
    v["planned_at_ms"] = e.planned_at_ms.into();
    v
}

/// The tenant a request is about: named, or the only one there is.
async fn resolve_tenant(state: &AppState, named: Option<String>) -> Result<String, Problem> {
    if let Some(t) = named {
        return if state.tenant(&t).await.is_some() {
            Ok(t)
        } else {
            Err(no_tenant(&t))
        };
    }
    let tenants = state.tenants.read().await;
    match tenants.len() {
        1 => Ok(tenants.keys().next().cloned().unwrap_or_default()),
        _ => Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "Bad Request",
            "name the tenant: ?tenant=ID",
        )),
    }
}

/// `GET /api/v1/entries?tenant=ID&limit=50&offset=0`: planned entries, newest first.
pub async fn list_entries(
    State(state): State<Arc<AppState>>,
    Query(q): Query<EntriesQuery>,
) -> Response {
    let tenant = match resolve_tenant(&state, q.tenant).await {
        Ok(t) => t,
        Err(p) => return p.into_response(),
    };
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let offset = q.offset.unwrap_or(0).max(0);
    let (entries, total) = match (
        state.store.entries(&tenant, limit, offset).await,
        state.store.count_entries(&tenant).await,
    ) {
        (Ok(e), Ok(t)) => (e, t),
        (Err(e), _) | (_, Err(e)) => return store_error(e),
    };
    Json(serde_json::json!({
        "tenant": tenant,
        "total": total,
        "limit": limit,
        "offset": offset,
        "entries": entries.iter().map(entry_json).collect::<Vec<_>>(),
    }))
    .into_response()
}

pub async fn get_entry(
    State(state): State<Arc<AppState>>,
    Path(entry_id): Path<String>,
    Query(q): Query<EntriesQuery>,
) -> Response {
    let tenant = match resolve_tenant(&state, q.tenant).await {
        Ok(t) => t,
        Err(p) => return p.into_response(),
    };
    match state.store.entry(&tenant, &entry_id).await {
        Ok(Some(e)) => Json(entry_json(&e)).into_response(),
        Ok(None) => Problem::new(
            StatusCode::NOT_FOUND,
            "Not Found",
            format!("no planned entry {entry_id:?}"),
        )
        .into_response(),
        Err(e) => store_error(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardTokenBody {
    crm_user_id: u64,
    ttl_seconds: Option<u64>,
}

/// `POST /api/v1/tenants/{id}/cards/tokens` with `{"crm_user_id": N, "ttl_seconds": S}`: a token
/// for the card stream that shows that CRM user's cards of this tenant only, for `S` seconds
/// (default 12 hours, at most 7 days). The token goes in the stream's URL (`?token=`), which is
/// what a browser's EventSource can send.
pub async fn mint_card_token(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Result<Json<CardTokenBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => return malformed_body(e),
    };
    if state.tenant(&id).await.is_none() {
        return no_tenant(&id).into_response();
    }
    let ttl = body.ttl_seconds.unwrap_or(card_tokens::DEFAULT_TTL_SECONDS);
    if !(1..=card_tokens::MAX_TTL_SECONDS).contains(&ttl) {
        return Problem::new(
            StatusCode::BAD_REQUEST,
            "Bad Request",
            format!(
                "ttl_seconds: must be between 1 and {} (7 days), got {ttl}",
                card_tokens::MAX_TTL_SECONDS
            ),
        )
        .into_response();
    }
    let scope = card_tokens::Scope {
        tenant_id: id.clone(),
        crm_user_id: body.crm_user_id,
        expires_at: now_ms() / 1000 + ttl as i64,
    };
    let token = card_tokens::mint(&state.card_token_key, &scope);
    let stream_url = format!(
        "{}/api/v1/cards/stream?token={token}",
        state.public_url.trim_end_matches('/')
    );
    (
        StatusCode::CREATED,
        Json(serde_json::json!({
            "tenant": id,
            "crm_user_id": scope.crm_user_id,
            "expires_at": scope.expires_at,
            "token": token,
            "stream_url": stream_url,
        })),
    )
        .into_response()
}

#[derive(Deserialize)]
pub struct CardsQuery {
    crm_user_id: Option<u64>,
    tenant: Option<String>,
    token: Option<String>,
}

/// `GET /api/v1/cards/stream`: Server-Sent Events, one `card` event per show or hide of a user's
/// call card. Either with a scoped token, `?token=<card token>` (that user's cards of that
/// tenant; `crm_user_id` and `tenant` may be left out), or with the admin token in the
/// `Authorization` header and `?crm_user_id=N[&tenant=ID]`. An expired token, a token for another
/// user or tenant, and the admin token in the URL are refused with 401 saying which.
pub async fn card_stream(
    State(state): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
    Query(q): Query<CardsQuery>,
) -> Response {
    let (user, tenant) = if let Some(given) = bearer(&headers) {
        if !is_admin_token(&state, given) {
            return unauthorized("the admin token is not valid");
        }
        let Some(user) = q.crm_user_id else {
            return Problem::new(
                StatusCode::BAD_REQUEST,
                "Bad Request",
                "crm_user_id: name the CRM user whose cards to stream (?crm_user_id=N)",
            )
            .into_response();
        };
        (user, q.tenant)
    } else {
        let Some(token) = q.token.as_deref().filter(|t| !t.is_empty()) else {
            return unauthorized(
                "a card token (?token=..., from POST /api/v1/tenants/{id}/cards/tokens) or the admin token (Authorization: Bearer ...) is required",
            );
        };
        if is_admin_token(&state, token) {
            return unauthorized(
                "the admin token is accepted in the Authorization header only, not as ?token=; use a card token in the URL",
            );
        }
        let scope = match card_tokens::verify(&state.card_token_key, token, now_ms() / 1000) {
            Ok(scope) => scope,
            Err(card_tokens::TokenError::Expired) => {
                return unauthorized("the card token has expired; ask for a new one")
            }
            Err(card_tokens::TokenError::Invalid) => {
                return unauthorized("the card token is invalid")
            }
        };
        if q.crm_user_id.is_some_and(|u| u != scope.crm_user_id)
            || q.tenant.as_deref().is_some_and(|t| t != scope.tenant_id)
        {
            return unauthorized("the card token is for another user or tenant");
        }
        if state.tenant(&scope.tenant_id).await.is_none() {
            return unauthorized("the card token is invalid: its tenant no longer exists");
        }
        (scope.crm_user_id, Some(scope.tenant_id))
    };
    let stream = BroadcastStream::new(state.cards.subscribe()).filter_map(move |msg| {
        let card = msg.ok()?;
        if card.change.crm_user_id != user || tenant.as_deref().is_some_and(|t| t != card.tenant_id)
        {
            return None;
        }
        let mut data = serde_json::to_value(&card.change).ok()?;
        data["tenant"] = card.tenant_id.into();
        Some(Ok::<_, Infallible>(
            Event::default().event("card").data(data.to_string()),
        ))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// `GET /api/v1/tenants/{id}/directory`: the PBX's employees and groups as last loaded, each
/// employee with the CRM user the mapping table gives them (null: unmapped).
pub async fn get_directory(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    let Some(tenant) = state.tenant(&id).await else {
        return no_tenant(&id).into_response();
    };
    let directory = state
        .directories
        .read()
        .await
        .get(&id)
        .cloned()
        .unwrap_or_default();
    let employees: Vec<serde_json::Value> = directory
        .users
        .iter()
        .map(|u| {
            let crm = u
                .extension
                .as_deref()
                .and_then(|e| tenant.settings.crm_user_of(e));
            serde_json::json!({"user": u, "crm_user_id": crm, "mapped": crm.is_some()})
        })
        .collect();
    Json(serde_json::json!({
        "tenant": id,
        "refreshed_at_ms": directory.refreshed_at_ms,
        "error": directory.error,
        "employees": employees,
        "groups": directory.groups,
    }))
    .into_response()
}

#[derive(Deserialize)]
pub struct OutboxQuery {
    state: Option<String>,
    limit: Option<i64>,
}

/// `GET /api/v1/tenants/{id}/outbox?state=parked`: CRM work items of a state (default parked),
/// with the CRM's words for each refusal.
pub async fn list_outbox(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(q): Query<OutboxQuery>,
) -> Response {
    let wanted = q.state.unwrap_or_else(|| "parked".into());
    if !["pending", "done", "parked"].contains(&wanted.as_str()) {
        return Problem::new(
            StatusCode::BAD_REQUEST,
            "Bad Request",
            format!("state: expected pending, done or parked, got {wanted:?}"),
        )
        .into_response();
    }
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    match state.store.tenant(&id).await {
        Ok(Some(_)) => {}
        Ok(None) => return no_tenant(&id).into_response(),
        Err(e) => return store_error(e),
    }
    match state.store.outbox_items_in_state(&id, &wanted, limit).await {
        Ok(items) => Json(serde_json::json!({
            "tenant": id,
            "state": wanted,
            "items": items.iter().map(|i| serde_json::json!({
                "item_key": i.item_key,
                "entry_id": i.entry_id,
                "kind": i.kind,
                "attempts": i.attempts,
                "last_error": i.last_error,
                "crm_response": i.crm_response,
                "payload": i.payload,
                "created_at_ms": i.created_at_ms,
                "done_at_ms": i.done_at_ms,
            })).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(e) => store_error(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryBody {
    item_key: Option<String>,
    #[serde(default)]
    all_parked: bool,
}

/// `POST /api/v1/tenants/{id}/outbox/retry` with `{"item_key": "..."}` or `{"all_parked": true}`:
/// sends parked items again.
pub async fn retry_outbox(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Result<Json<RetryBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => return malformed_body(e),
    };
    let keys: Vec<String> = match (body.item_key, body.all_parked) {
        (Some(key), false) => vec![key],
        (None, true) => match state
            .store
            .outbox_items_in_state(&id, "parked", 10_000)
            .await
        {
            Ok(items) => items.into_iter().map(|i| i.item_key).collect(),
            Err(e) => return store_error(e),
        },
        _ => {
            return Problem::new(
                StatusCode::BAD_REQUEST,
                "Bad Request",
                "give either item_key or all_parked: true",
            )
            .into_response()
        }
    };
    let mut retried = Vec::new();
    for key in &keys {
        match state.store.unpark_item(&id, key, now_ms()).await {
            Ok(true) => retried.push(key.clone()),
            Ok(false) => {}
            Err(e) => return store_error(e),
        }
    }
    if retried.is_empty() && !keys.is_empty() {
        return Problem::new(
            StatusCode::NOT_FOUND,
            "Not Found",
            format!("no parked item {:?} for tenant {id:?}", keys[0]),
        )
        .into_response();
    }
    Json(serde_json::json!({"retried": retried})).into_response()
}
