//! `/api/v1/entries`: planned entries in the `simulate` shape with their delivery state,
//! filtered as the call journal filters them; an entry's raw events as `simulate` reads them.

use super::why::Explainer;
use crate::error::AdminError;
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use callbridge_core::phone::search_digits;
use callbridge_core::policy::parse_civil_date;
use callbridge_store::{DeliveryFilter, JournalFilter, StoredEntry, StoredEvent};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::sync::Arc;

#[derive(Deserialize)]
pub struct EntriesQuery {
    tenant: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
    /// The client's number as a person types it (`8 (916) 123-45-67`), or a piece of it.
    phone: Option<String>,
    /// Planned on or after: a UTC date (`2025-11-24`) or Unix milliseconds.
    from: Option<String>,
    /// Planned up to: a UTC date, through its end, or Unix milliseconds (before that instant).
    to: Option<String>,
    /// An employee's extension.
    extension: Option<String>,
    direction: Option<String>,
    outcome: Option<String>,
    /// `parked`, `pending`, `delivered` or `nothing_to_deliver`.
    delivery: Option<String>,
}

/// The query's filters, each value checked; an empty parameter (as a form sends it) is no
/// filter.
fn journal_filter(q: &EntriesQuery) -> Result<JournalFilter, AdminError> {
    let invalid = |name: &'static str, problem: String| AdminError::InvalidFilter { name, problem };
    let one_of = |name: &'static str, value: Option<&str>, allowed: &[&str]| {
        value
            .map(|v| {
                if allowed.contains(&v) {
                    Ok(v.to_string())
                } else {
                    Err(invalid(
                        name,
                        format!("expected {}, got {v:?}", allowed.join(", ")),
                    ))
                }
            })
            .transpose()
    };
    let phone_digits = given(&q.phone)
        .map(|typed| search_digits(typed).map_err(|e| invalid("phone", e.to_string())))
        .transpose()?;
    let from_ms = given(&q.from)
        .map(|v| instant_ms(v, false).ok_or_else(|| invalid("from", bad_instant(v))))
        .transpose()?;
    let to_ms = given(&q.to)
        .map(|v| instant_ms(v, true).ok_or_else(|| invalid("to", bad_instant(v))))
        .transpose()?;
    if let (Some(from), Some(to)) = (from_ms, to_ms) {
        if from >= to {
            return Err(invalid(
                "from",
                format!(
                    "{:?} is not before to {:?}",
                    given(&q.from).unwrap_or_default(),
                    given(&q.to).unwrap_or_default()
                ),
            ));
        }
    }
    let extension = given(&q.extension)
        .map(|ext| {
            if ext.len() <= 16 && ext.bytes().all(|b| b.is_ascii_digit()) {
                Ok(ext.to_string())
            } else {
                Err(invalid(
                    "extension",
                    format!("expected an employee's extension (up to 16 digits), got {ext:?}"),
                ))
            }
        })
        .transpose()?;
    let delivery_names: Vec<&str> = DeliveryFilter::ALL.iter().map(|(n, _)| *n).collect();
    let delivery = one_of("delivery", given(&q.delivery), &delivery_names)?
        .and_then(|name| DeliveryFilter::from_name(&name));
    Ok(JournalFilter {
        phone_digits,
        from_ms,
        to_ms,
        extension,
        direction: one_of(
            "direction",
            given(&q.direction),
            &["inbound", "outbound", "internal"],
        )?,
        outcome: one_of("outcome", given(&q.outcome), &["answered", "missed"])?,
        delivery,
    })
}

/// A parameter's value, trimmed; `None` when absent or empty.
fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

const DAY_MS: i64 = 86_400_000;

/// Unix milliseconds of a date's start (or, for `end_of_day`, of the next day's start: a range
/// `to` a date holds all of that day) or of a number of milliseconds as given.
fn instant_ms(value: &str, end_of_day: bool) -> Option<i64> {
    if let Some(days) = parse_civil_date(value) {
        return Some((days + i64::from(end_of_day)) * DAY_MS);
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        return value.parse().ok();
    }
    None
}

fn bad_instant(value: &str) -> String {
    format!("expected a date (YYYY-MM-DD, UTC) or Unix milliseconds, got {value:?}")
}

/// An entry as the API returns it: its plan with the reasons in words beside the rule ids, its
/// delivery state and items.
fn entry_json(e: &StoredEntry, why: &Explainer) -> serde_json::Value {
    let mut v = e.plan.clone();
    why.annotate(&mut v);
    v["delivery"] = serde_json::json!({
        "state": e.delivery_state(),
        "items": e.outbox.iter().map(|(k, s)| serde_json::json!({"key": k, "state": s})).collect::<Vec<_>>(),
    });
    v["planned_at_ms"] = e.planned_at_ms.into();
    v
}

/// What words the tenant's entries are explained in.
async fn explainer(state: &AppState, tenant: &str) -> Result<Explainer, AdminError> {
    let loaded = state
        .tenant(tenant)
        .await
        .ok_or_else(|| AdminError::NoTenant(tenant.to_string()))?;
    Ok(Explainer::new(state, loaded).await)
}

/// The tenant a request is about: named, or the only one there is.
async fn resolve_tenant(state: &AppState, named: Option<String>) -> Result<String, AdminError> {
    if let Some(t) = named {
        return if state.tenant(&t).await.is_some() {
            Ok(t)
        } else {
            Err(AdminError::NoTenant(t))
        };
    }
    let tenants = state.tenants.read().await;
    match tenants.len() {
        1 => Ok(tenants.keys().next().cloned().unwrap_or_default()),
        _ => Err(AdminError::TenantNotNamed),
    }
}

/// `GET /api/v1/entries?tenant=ID&limit=50&offset=0`: planned entries, newest first, narrowed
/// by `phone`, `from`, `to`, `extension`, `direction`, `outcome` and `delivery` (see
/// [`EntriesQuery`]); `total` counts the filtered list.
pub async fn list_entries(
    State(state): State<Arc<AppState>>,
    Query(q): Query<EntriesQuery>,
) -> Result<Json<serde_json::Value>, AdminError> {
    let filter = journal_filter(&q)?;
    let tenant = resolve_tenant(&state, q.tenant).await?;
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let offset = q.offset.unwrap_or(0).max(0);
    let page = state.store.journal(&tenant, &filter, limit, offset).await?;
    let why = explainer(&state, &tenant).await?;
    Ok(Json(serde_json::json!({
        "tenant": tenant,
        "total": page.total,
        "limit": limit,
        "offset": offset,
        "entries": page.entries.iter().map(|e| entry_json(e, &why)).collect::<Vec<_>>(),
    })))
}

pub async fn get_entry(
    State(state): State<Arc<AppState>>,
    Path(entry_id): Path<String>,
    Query(q): Query<EntriesQuery>,
) -> Result<Json<serde_json::Value>, AdminError> {
    let tenant = resolve_tenant(&state, q.tenant).await?;
    match state.store.entry(&tenant, &entry_id).await? {
        Some(e) => {
            let why = explainer(&state, &tenant).await?;
            Ok(Json(entry_json(&e, &why)))
        }
        None => Err(AdminError::NoEntry(entry_id)),
    }
}

/// One line of `simulate`'s input: the webhook's path and its `json` form field, embedded as
/// JSON when it is (as received, byte for byte), else as the string it was.
#[derive(Serialize)]
struct EventLine<'a> {
    path: &'a str,
    json: JsonField<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum JsonField<'a> {
    Json(&'a RawValue),
    Text(&'a str),
}

/// The events as JSON Lines, oldest first.
fn event_lines(events: &[StoredEvent]) -> String {
    let mut out = String::new();
    for e in events {
        let json = serde_json::from_str::<&RawValue>(&e.json)
            .map_or(JsonField::Text(&e.json), JsonField::Json);
        let line = EventLine {
            path: &e.path,
            json,
        };
        // Serialising borrowed strings and valid JSON cannot fail.
        if let Ok(text) = serde_json::to_string(&line) {
            out.push_str(&text);
            out.push('\n');
        }
    }
    out
}

/// `GET /api/v1/entries/{id}/events?tenant=ID`: the webhooks the entry was planned from, as
/// `callbridge simulate --events` reads them (JSON Lines), for download.
pub async fn get_entry_events(
    State(state): State<Arc<AppState>>,
    Path(entry_id): Path<String>,
    Query(q): Query<EntriesQuery>,
) -> Result<Response, AdminError> {
    let tenant = resolve_tenant(&state, q.tenant).await?;
    if state.store.entry(&tenant, &entry_id).await?.is_none() {
        return Err(AdminError::NoEntry(entry_id));
    }
    let events = state.store.entry_events(&tenant, &entry_id).await?;
    Ok(events_download(&entry_id, &events))
}

/// The events of an entry as a file to download (the API's and the journal's): JSON Lines
/// named after the entry.
pub fn events_download(entry_id: &str, events: &[StoredEvent]) -> Response {
    // Entry ids are Mango's (base64: `+`, `/`, `=`): a file name keeps the safe characters.
    let file: String = entry_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_=.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    (
        [
            (header::CONTENT_TYPE, "application/x-ndjson".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file}.jsonl\""),
            ),
        ],
        event_lines(events),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The query of these pairs as axum's `Query` extractor reads it.
    fn query(pairs: &[(&str, &str)]) -> EntriesQuery {
        let text = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        let uri: axum::http::Uri = format!("/?{text}").parse().unwrap();
        Query::<EntriesQuery>::try_from_uri(&uri).unwrap().0
    }

    fn refusal(pairs: &[(&str, &str)]) -> String {
        match journal_filter(&query(pairs)) {
            Err(e) => e.to_string(),
            Ok(f) => panic!("{pairs:?} accepted as {f:?}"),
        }
    }

    #[test]
    fn every_filter_is_read_and_a_bad_value_is_named() {
        let f = journal_filter(&query(&[
            ("phone", "8 (916) 123-45-67"),
            ("from", "2025-11-24"),
            ("to", "2025-11-24"),
            ("extension", "105"),
            ("direction", "inbound"),
            ("outcome", "missed"),
            ("delivery", "nothing_to_deliver"),
        ]))
        .unwrap();
        let day = parse_civil_date("2025-11-24").unwrap() * DAY_MS;
        assert_eq!(
            f,
            JournalFilter {
                phone_digits: Some("9161234567".into()),
                from_ms: Some(day),
                to_ms: Some(day + DAY_MS),
                extension: Some("105".into()),
                direction: Some("inbound".into()),
                outcome: Some("missed".into()),
                delivery: Some(DeliveryFilter::NothingToDeliver),
            }
        );
        let ms = journal_filter(&query(&[
            ("from", "1764000000000"),
            ("to", "1764000000001"),
        ]))
        .unwrap();
        assert_eq!(
            (ms.from_ms, ms.to_ms),
            (Some(1764000000000), Some(1764000000001))
        );
        // Empty parameters, as a form sends them, filter nothing.
        assert_eq!(
            journal_filter(&query(&[
                ("phone", ""),
                ("direction", " "),
                ("delivery", "")
            ]))
            .unwrap(),
            JournalFilter::default()
        );
        for (pairs, words) in [
            (
                vec![("phone", "abc")],
                "phone: \"abc\": 'a' is not part of a phone number",
            ),
            (
                vec![("from", "yesterday")],
                "from: expected a date (YYYY-MM-DD, UTC) or Unix milliseconds, got \"yesterday\"",
            ),
            (vec![("to", "2025-02-30")], "to: expected a date"),
            (
                vec![("from", "2025-11-25"), ("to", "2025-11-24")],
                "from: \"2025-11-25\" is not before to \"2025-11-24\"",
            ),
            (
                vec![("extension", "10%")],
                "extension: expected an employee's extension",
            ),
            (
                vec![("direction", "in")],
                "direction: expected inbound, outbound, internal, got \"in\"",
            ),
            (
                vec![("outcome", "lost")],
                "outcome: expected answered, missed",
            ),
            (
                vec![("delivery", "done")],
                "delivery: expected parked, pending, delivered, nothing_to_deliver, got \"done\"",
            ),
        ] {
            let got = refusal(&pairs);
            assert!(got.starts_with(words), "{pairs:?}: {got}");
        }
    }

    #[test]
    fn events_are_written_as_simulate_reads_them() {
        let event = |id, json: &str| StoredEvent {
            id,
            tenant_id: "t".into(),
            entry_id: "e".into(),
            path: "events/call".into(),
            json: json.into(),
            received_at_ms: 0,
        };
        let text = event_lines(&[
            event(1, r#"{"entry_id":"e","seq":1,  "z":0,"a":1}"#),
            event(2, "not json"),
        ]);
        assert_eq!(
            text,
            "{\"path\":\"events/call\",\"json\":{\"entry_id\":\"e\",\"seq\":1,  \"z\":0,\"a\":1}}\n\
             {\"path\":\"events/call\",\"json\":\"not json\"}\n"
        );
    }
}
