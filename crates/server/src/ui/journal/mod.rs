//! `/t/{tenant}/journal`: the call journal, the page an owner opens when a manager asks "where
//! is my call?".
//!
//! The list: entries newest first, a page at a time, searched by the client's number in any
//! form a person types and filtered by date, employee, direction, outcome and delivery state.
//! An entry (`/t/{tenant}/journal/{entry}`): its conversations on a timeline, who each landed on
//! and why in words (`core::explain`, the sentences the entries API and the CRM note carry),
//! the recordings (played through this service, so the page needs no other origin), the CRM
//! delivery with a link to the record and a retry for parked items, and its raw webhooks as a
//! `simulate` input file.

mod filter;
mod view;

pub use filter::JournalQuery;
pub use view::{format_phone, local_time};

use super::page::{self, render, Ctx};
use super::settings::crm_user_names;
use crate::state::{now_ms, AppState};
use askama::Template;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use callbridge_core::explain::{self, Lang as WordsLang, Names};
use std::sync::Arc;
use view::{Conversation, NotWritten, Row};

/// Entries on one page of the list.
pub const PAGE_SIZE: i64 = 25;

/// The journal's routes (behind the session guard).
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/t/{tenant}/journal", get(list))
        .route("/t/{tenant}/journal/{entry}", get(entry_page))
        .route("/t/{tenant}/journal/{entry}/retry", post(retry))
        .route("/t/{tenant}/journal/{entry}/events.jsonl", get(events))
        .route(
            "/t/{tenant}/journal/{entry}/recordings/{recording}",
            get(recording),
        )
}

/// The sentences' language for the page's language.
fn words_lang(ctx: &Ctx) -> WordsLang {
    WordsLang::from_code(ctx.lang.code())
}

#[derive(Template)]
#[template(path = "journal.html")]
struct ListPage {
    ctx: Ctx,
    query: JournalQuery,
    problems: Vec<String>,
    rows: Vec<Row>,
    total: i64,
    page: i64,
    pages: i64,
    employees: Vec<(String, String)>,
    prev_link: Option<String>,
    next_link: Option<String>,
}

impl ListPage {
    fn selected(&self, field: &str, value: &str) -> bool {
        self.query.value(field) == value
    }

    fn delivery_label(&self, state: &str) -> String {
        self.ctx
            .t
            .get(&format!("journal.delivery.{state}"))
            .to_string()
    }

    fn badge(&self, state: &str) -> &'static str {
        view::delivery_badge(state)
    }
}

/// `GET /t/{tenant}/journal?q=&from=&to=&employee=&direction=&outcome=&delivery=&page=`.
async fn list(
    State(state): State<Arc<AppState>>,
    Path(tenant_id): Path<String>,
    Query(query): Query<JournalQuery>,
    ctx: Ctx,
) -> Response {
    let Some(tenant) = state.tenant(&tenant_id).await else {
        return page::no_tenant(ctx, &tenant_id);
    };
    let settings = tenant.settings.settings();
    let (filter, problems) = query.filter(ctx.t, settings.utc_offset_minutes);
    let page = query.page();
    let found = state
        .store
        .journal(&tenant_id, &filter, PAGE_SIZE, (page - 1) * PAGE_SIZE)
        .await;
    let found = match found {
        Ok(found) => found,
        Err(e) => return read_failed(ctx, &tenant_id, e),
    };
    let users = crm_user_names(&state, &tenant, true).await;
    let names = Names::new(settings, words_lang(&ctx)).with_crm_users(&users);
    let rows = found
        .entries
        .iter()
        .map(|e| Row::new(ctx.t, e, &names, settings.utc_offset_minutes))
        .collect();
    let pages = ((found.total + PAGE_SIZE - 1) / PAGE_SIZE).max(1);
    let link = |p: i64| format!("/t/{tenant_id}/journal?{}", query.with_page(p));
    let employees = settings
        .employees
        .iter()
        .map(|e| (e.extension.clone(), names.employee(Some(&e.extension))))
        .collect();
    render(ListPage {
        prev_link: (page > 1).then(|| link(page - 1)),
        next_link: (page < pages).then(|| link(page + 1)),
        ctx,
        query,
        problems,
        rows,
        total: found.total,
        page,
        pages,
        employees,
    })
}

/// One CRM work item of the entry as the page shows it.
struct Delivery {
    kind: String,
    state: String,
    attempts: i64,
    error: Option<String>,
    link: Option<(String, String)>,
}

#[derive(Template)]
#[template(path = "journal_entry.html")]
struct EntryPage {
    ctx: Ctx,
    entry_id: String,
    client: String,
    when: String,
    direction: String,
    outcome: String,
    length: String,
    entry_why: String,
    entry_rules: String,
    conversations: Vec<Conversation>,
    not_written: Vec<NotWritten>,
    pbx_facts: Vec<view::Fact>,
    timeline_height: i64,
    timeline_label: String,
    delivery_state: &'static str,
    deliveries: Vec<Delivery>,
    parked: bool,
    notice: Option<String>,
    unreadable: bool,
}

impl EntryPage {
    fn delivery_label(&self, state: &str) -> String {
        self.ctx
            .t
            .get(&format!("journal.delivery.{state}"))
            .to_string()
    }

    fn badge(&self, state: &str) -> &'static str {
        view::delivery_badge(state)
    }

    fn recording_src(&self, id: &str) -> String {
        let enc = |t: &str| form_urlencoded::byte_serialize(t.as_bytes()).collect::<String>();
        format!(
            "/t/{}/journal/{}/recordings/{}",
            self.ctx.tenant_id(),
            enc(&self.entry_id),
            enc(id)
        )
    }

    fn entry_path(&self) -> String {
        let enc = form_urlencoded::byte_serialize(self.entry_id.as_bytes()).collect::<String>();
        format!("/t/{}/journal/{enc}", self.ctx.tenant_id())
    }
}

#[derive(serde::Deserialize, Default)]
struct EntryQuery {
    #[serde(default)]
    retried: Option<i64>,
}

/// `GET /t/{tenant}/journal/{entry}`.
async fn entry_page(
    State(state): State<Arc<AppState>>,
    Path((tenant_id, entry_id)): Path<(String, String)>,
    Query(q): Query<EntryQuery>,
    ctx: Ctx,
) -> Response {
    let Some(tenant) = state.tenant(&tenant_id).await else {
        return page::no_tenant(ctx, &tenant_id);
    };
    let entry = match state.store.entry(&tenant_id, &entry_id).await {
        Ok(Some(entry)) => entry,
        Ok(None) => return no_entry(ctx, &entry_id),
        Err(e) => return read_failed(ctx, &tenant_id, e),
    };
    let items = match state.store.entry_outbox(&tenant_id, &entry_id).await {
        Ok(items) => items,
        Err(e) => return read_failed(ctx, &tenant_id, e),
    };
    let settings = tenant.settings.settings();
    let offset = settings.utc_offset_minutes;
    let users = crm_user_names(&state, &tenant, true).await;
    let names = Names::new(settings, words_lang(&ctx)).with_crm_users(&users);
    let base_url = tenant.row.crm.get("base_url").and_then(|v| v.as_str());
    let deliveries: Vec<Delivery> = items
        .iter()
        .map(|item| Delivery {
            kind: item.kind.clone(),
            state: item.state.clone(),
            attempts: item.attempts,
            error: item.last_error.clone(),
            link: item
                .crm_response
                .as_ref()
                .and_then(|answer| view::crm_link(base_url, answer)),
        })
        .collect();
    let delivery_state = entry.delivery_state();
    let notice = q
        .retried
        .map(|n| ctx.t.fmt("journal.retried", &[("count", &n.to_string())]));
    let t = ctx.t;
    let page = match view::read_plan(&entry) {
        Some(plan) => {
            let conversations = view::conversations(t, &plan, &names, offset);
            let timeline_label = conversations
                .iter()
                .map(|c| format!("{}: {} → {}, {}", c.title, c.who, c.user, c.length))
                .collect::<Vec<_>>()
                .join("; ");
            EntryPage {
                entry_id: entry.entry_id.clone(),
                client: plan
                    .client_phone
                    .as_deref()
                    .map(view::format_phone)
                    .unwrap_or_else(|| "—".into()),
                when: view::local_time(plan.started_at, offset),
                direction: t.get(view::direction_key(plan.direction)).to_string(),
                outcome: t.get(view::outcome_key(plan.outcome)).to_string(),
                length: view::duration(plan.ended_at - plan.started_at),
                entry_why: explain::entry_why(&plan, &names),
                entry_rules: plan
                    .reasons
                    .iter()
                    .map(|r| r.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                timeline_height: (conversations.len() as i64).max(1) * view::BAR_ROW + 8,
                timeline_label,
                conversations,
                not_written: view::not_written(&plan, &names),
                pbx_facts: view::pbx_facts(t, &plan, offset),
                delivery_state,
                parked: delivery_state == "parked",
                deliveries,
                notice,
                unreadable: false,
                ctx,
            }
        }
        None => EntryPage {
            entry_id: entry.entry_id.clone(),
            client: "—".into(),
            when: page::utc_time(entry.planned_at_ms, false),
            direction: "—".into(),
            outcome: "—".into(),
            length: "—".into(),
            entry_why: String::new(),
            entry_rules: String::new(),
            conversations: Vec::new(),
            not_written: Vec::new(),
            pbx_facts: Vec::new(),
            timeline_height: 0,
            timeline_label: String::new(),
            delivery_state,
            parked: delivery_state == "parked",
            deliveries,
            notice,
            unreadable: true,
            ctx,
        },
    };
    render(page)
}

fn no_entry(ctx: Ctx, entry_id: &str) -> Response {
    let text = ctx.t.fmt("journal.no-entry", &[("entry", entry_id)]);
    page::message(ctx, StatusCode::NOT_FOUND, "error.not-found", text)
}

/// `POST /t/{tenant}/journal/{entry}/retry`: sends the entry's parked items again.
async fn retry(
    State(state): State<Arc<AppState>>,
    Path((tenant_id, entry_id)): Path<(String, String)>,
    ctx: Ctx,
) -> Response {
    if state.tenant(&tenant_id).await.is_none() {
        return page::no_tenant(ctx, &tenant_id);
    }
    let items = match state.store.entry_outbox(&tenant_id, &entry_id).await {
        Ok(items) => items,
        Err(e) => return read_failed(ctx, &tenant_id, e),
    };
    let mut retried = 0;
    for item in items.iter().filter(|i| i.state == "parked") {
        match state
            .store
            .unpark_item(&tenant_id, &item.item_key, now_ms())
            .await
        {
            Ok(true) => retried += 1,
            Ok(false) => {}
            Err(e) => {
                tracing::error!(tenant = %tenant_id, item = %item.item_key, error = %e, "journal retry failed");
            }
        }
    }
    if retried > 0 {
        state.outbox_ready.wake(&tenant_id);
    }
    let enc = form_urlencoded::byte_serialize(entry_id.as_bytes()).collect::<String>();
    Redirect::to(&format!("/t/{tenant_id}/journal/{enc}?retried={retried}")).into_response()
}

/// `GET /t/{tenant}/journal/{entry}/events.jsonl`: the entry's webhooks as `callbridge
/// simulate` reads them, one `{"path", "json"}` a line, in the order they were received.
async fn events(
    State(state): State<Arc<AppState>>,
    Path((tenant_id, entry_id)): Path<(String, String)>,
    ctx: Ctx,
) -> Response {
    if state.tenant(&tenant_id).await.is_none() {
        return page::no_tenant(ctx, &tenant_id);
    }
    match state.store.entry(&tenant_id, &entry_id).await {
        Ok(Some(_)) => {}
        Ok(None) => return no_entry(ctx, &entry_id),
        Err(e) => return read_failed(ctx, &tenant_id, e),
    }
    match state.store.entry_events(&tenant_id, &entry_id).await {
        Ok(stored) => crate::admin::events_download(&entry_id, &stored),
        Err(e) => read_failed(ctx, &tenant_id, e),
    }
}

/// The page for a store that could not be read (logged with the reason; the page says so).
fn read_failed(ctx: Ctx, tenant_id: &str, e: callbridge_store::StoreError) -> Response {
    tracing::error!(tenant = %tenant_id, error = %e, "journal read failed");
    let text = ctx.t.get("error.store").to_string();
    page::message(ctx, StatusCode::SERVICE_UNAVAILABLE, "journal.title", text)
}

/// The client that fetches recordings from Mango for the page (one, so its connections are
/// reused).
fn media_client() -> &'static reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()
            .unwrap_or_default()
    })
}

/// `GET /t/{tenant}/journal/{entry}/recordings/{id}`: the recording's audio, fetched from
/// Mango through a fresh link and passed through (with the browser's `Range`, so seeking
/// works), so the page plays it from its own origin. Only a recording of this entry is served.
async fn recording(
    State(state): State<Arc<AppState>>,
    Path((tenant_id, entry_id, recording_id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let Some(tenant) = state.tenant(&tenant_id).await else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let of_entry = match state.store.entry(&tenant_id, &entry_id).await {
        Ok(Some(entry)) => view::read_plan(&entry).is_some_and(|plan| {
            plan.records
                .iter()
                .any(|r| r.recording_id.as_deref() == Some(recording_id.as_str()))
        }),
        _ => false,
    };
    if !of_entry {
        return StatusCode::NOT_FOUND.into_response();
    }
    let url = match crate::recordings::fresh_link(&state, &tenant, &recording_id).await {
        Ok(url) => url,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let mut request = media_client().get(&url);
    if let Some(range) = headers.get(header::RANGE) {
        request = request.header(header::RANGE, range.clone());
    }
    let upstream = match request.send().await {
        Ok(upstream) if upstream.status().is_success() => upstream,
        Ok(upstream) => {
            let text = format!("Mango answered {} for the recording", upstream.status());
            return (StatusCode::BAD_GATEWAY, text).into_response();
        }
        Err(e) => {
            tracing::warn!(tenant = %tenant_id, "journal recording fetch: {e}");
            let text = "Mango's recording could not be fetched".to_string();
            return (StatusCode::BAD_GATEWAY, text).into_response();
        }
    };
    let status = StatusCode::from_u16(upstream.status().as_u16()).unwrap_or(StatusCode::OK);
    let mut response = Response::builder().status(status);
    for name in [
        header::CONTENT_TYPE,
        header::CONTENT_LENGTH,
        header::CONTENT_RANGE,
        header::ACCEPT_RANGES,
    ] {
        if let Some(value) = upstream.headers().get(name.as_str()) {
            if let Ok(value) = header::HeaderValue::from_bytes(value.as_bytes()) {
                response = response.header(name, value);
            }
        }
    }
    response
        .body(Body::from_stream(upstream.bytes_stream()))
        .unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response())
}
