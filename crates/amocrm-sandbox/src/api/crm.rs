//! Account, users, pipelines, contacts and leads (plain and complex).

use super::{path_id, Listing};
use crate::input::{json_array, read_batch, Query, Reader};
use crate::model::{
    last10, now_secs, phone_field, Contact, Customer, EntityKind, Lead, State, View,
    EMAIL_FIELD_ID, PHONE_FIELD_ID, PIPELINE_ID, STATUSES, STATUS_LOST, STATUS_UNSORTED,
    STATUS_WON,
};
use crate::respond::{added_batch, no_content, ok, ApiResult};
use crate::server::{Caller, Shared};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State as AxState};
use axum::Extension;
use serde_json::{json, Map, Value};
use std::sync::Arc;

const MAX_BATCH: usize = 250;
const MAX_COMPLEX: usize = 50;

pub fn view<'a>(shared: &'a Shared, st: &State) -> View<'a> {
    View {
        base: &shared.base_url,
        account_id: st.account.id,
    }
}

pub async fn account(
    AxState(shared): AxState<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let query = Query::parse(raw.as_deref());
    let with = query.with();
    let st = shared.state();
    let v = view(&shared, &st);
    let mut body = json!({
        "id": st.account.id,
        "name": st.account.name,
        "subdomain": st.account.subdomain,
        "created_at": st.account.created_at,
        "created_by": st.admin_id(),
        "updated_at": st.account.created_at,
        "updated_by": st.admin_id(),
        "current_user_id": caller.user_id,
        "country": "RU",
        "currency": "RUB",
        "currency_symbol": "₽",
        "customers_mode": "disabled",
        "is_unsorted_on": true,
        "mobile_feature_version": 0,
        "is_loss_reason_enabled": true,
        "is_helpbot_enabled": false,
        "is_technical_account": true,
        "contact_name_display_order": 1,
        "_links": v.link("/api/v4/account"),
    });
    let mut embedded = Map::new();
    if with.iter().any(|w| w == "task_types") {
        embedded.insert(
            "task_types".into(),
            json!([
                {"id": 1, "name": "Связаться", "color": null, "icon_id": null, "code": "FOLLOW_UP"},
                {"id": 2, "name": "Встреча", "color": null, "icon_id": null, "code": "MEETING"},
            ]),
        );
    }
    if with.iter().any(|w| w == "users_groups") {
        embedded.insert(
            "users_groups".into(),
            json!([{"id": 0, "name": "Отдел продаж", "uuid": null}]),
        );
    }
    if !embedded.is_empty() {
        body["_embedded"] = Value::Object(embedded);
    }
    Ok(ok(&body))
}

pub async fn users(AxState(shared): AxState<Arc<Shared>>, RawQuery(raw): RawQuery) -> ApiResult {
    let query = Query::parse(raw.as_deref());
    let at = Listing::new(&shared.base_url, "/api/v4/users", &query)?;
    let st = shared.state();
    let v = view(&shared, &st);
    let total = st.users.len() as u64;
    let mut extra = Map::new();
    extra.insert("_total_items".into(), json!(total));
    extra.insert("_page_count".into(), json!(total.div_ceil(at.paging.limit)));
    let all = st.users.iter().collect();
    Ok(at.page_with("users", all, |u| v.user(u), Some(extra)))
}

pub async fn user(AxState(shared): AxState<Arc<Shared>>, Path(id): Path<String>) -> ApiResult {
    let id = path_id(&id, "User")?;
    let st = shared.state();
    match st.user(id) {
        Some(u) => Ok(ok(&view(&shared, &st).user(u))),
        None => Ok(no_content()),
    }
}

pub async fn pipelines(AxState(shared): AxState<Arc<Shared>>) -> ApiResult {
    let st = shared.state();
    let v = view(&shared, &st);
    let statuses: Vec<Value> = STATUSES
        .iter()
        .enumerate()
        .map(|(i, (id, name, kind, color))| {
            json!({
                "id": id,
                "name": name,
                "sort": (i as u64 + 1) * 10,
                "is_editable": *kind == 0 && *id != STATUS_WON && *id != STATUS_LOST,
                "pipeline_id": PIPELINE_ID,
                "color": color,
                "type": kind,
                "account_id": st.account.id,
                "_links": v.link(&format!("/api/v4/leads/pipelines/{PIPELINE_ID}/statuses/{id}")),
            })
        })
        .collect();
    Ok(ok(&json!({
        "_total_items": 1,
        "_links": v.link("/api/v4/leads/pipelines"),
        "_embedded": {"pipelines": [{
            "id": PIPELINE_ID,
            "name": "Воронка",
            "sort": 1,
            "is_main": true,
            "is_unsorted_on": true,
            "is_archive": false,
            "account_id": st.account.id,
            "_links": v.link(&format!("/api/v4/leads/pipelines/{PIPELINE_ID}")),
            "_embedded": {"statuses": statuses},
        }]},
    })))
}

/// Whether a contact matches a search query (see the crate docs for the rule).
fn contact_matches(c: &Contact, query: &str) -> bool {
    let digits = last10(query);
    let all_digits = query.chars().filter(char::is_ascii_digit).count();
    if all_digits >= 7 && c.phones().iter().any(|p| last10(p).ends_with(&digits)) {
        return true;
    }
    let q = query.trim().to_lowercase();
    !q.is_empty() && c.name.to_lowercase().contains(&q)
}

pub async fn list_contacts(
    AxState(shared): AxState<Arc<Shared>>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let query = Query::parse(raw.as_deref());
    let at = Listing::new(&shared.base_url, "/api/v4/contacts", &query)?;
    let ids = query.ids("filter[id]")?;
    let with_leads = query.with().iter().any(|w| w == "leads");
    let search = query.get("query").map(str::to_owned);
    let st = shared.state();
    let v = view(&shared, &st);
    let found: Vec<&Contact> = st
        .contacts
        .values()
        .filter(|c| c.listed())
        .filter(|c| ids.is_empty() || ids.contains(&c.id))
        .filter(|c| search.as_deref().is_none_or(|q| contact_matches(c, q)))
        .collect();
    Ok(at.page("contacts", found, |c| {
        let leads = with_leads.then(|| st.leads_of(c.id).iter().map(|l| l.id).collect());
        v.contact(c, leads)
    }))
}

pub async fn get_contact(
    AxState(shared): AxState<Arc<Shared>>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let id = path_id(&id, "Contact")?;
    let query = Query::parse(raw.as_deref());
    let with_leads = query.with().iter().any(|w| w == "leads");
    let st = shared.state();
    match st.contacts.get(&id).filter(|c| c.listed()) {
        Some(c) => {
            let leads = with_leads.then(|| st.leads_of(c.id).iter().map(|l| l.id).collect());
            Ok(ok(&view(&shared, &st).contact(c, leads)))
        }
        None => Ok(no_content()),
    }
}

/// Reads `custom_fields_values` of a contact: the system PHONE and EMAIL fields only.
fn read_contact_fields(r: &mut Reader<'_>) -> Vec<Value> {
    let Some(items) = r.array("custom_fields_values") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let prefix = r.path(&format!("custom_fields_values.{i}."));
        let mut f = Reader::new(item, &prefix);
        let code = f.string("field_code");
        let id = f.id("field_id");
        let field = match (code.as_deref(), id) {
            (Some("PHONE"), _) | (None, Some(PHONE_FIELD_ID)) => {
                Some(("PHONE", PHONE_FIELD_ID, "Телефон"))
            }
            (Some("EMAIL"), _) | (None, Some(EMAIL_FIELD_ID)) => {
                Some(("EMAIL", EMAIL_FIELD_ID, "Email"))
            }
            (None, None) if f.ok() => {
                f.fail(
                    "FieldMissing",
                    "field_id",
                    "Either field_id or field_code is required.",
                );
                None
            }
            (Some(other), _) => {
                f.fail(
                    "NotSupportedChoice",
                    "field_code",
                    format!("Field code {other:?} does not exist in this account (the sandbox has PHONE and EMAIL)."),
                );
                None
            }
            (None, Some(other)) => {
                f.fail(
                    "NotSupportedChoice",
                    "field_id",
                    format!("Field {other} does not exist in this account (PHONE is {PHONE_FIELD_ID}, EMAIL is {EMAIL_FIELD_ID})."),
                );
                None
            }
            (None, None) => None,
        };
        let mut values = Vec::new();
        match f.array("values") {
            Some(vals) if !vals.is_empty() => {
                for (j, val) in vals.iter().enumerate() {
                    let vprefix = f.path(&format!("values.{j}."));
                    let mut vr = Reader::new(val, &vprefix);
                    let value = match vr.raw("value") {
                        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
                        Some(Value::Number(n)) => Some(n.to_string()),
                        Some(_) => {
                            vr.fail(
                                "InvalidType",
                                "value",
                                "This value should be a non-empty string.",
                            );
                            None
                        }
                        None => {
                            vr.fail("FieldMissing", "value", "This field is missing.");
                            None
                        }
                    };
                    let enum_code = vr.string("enum_code").unwrap_or_else(|| "WORK".to_owned());
                    if let Some(value) = value {
                        values.push(json!({"value": value, "enum_code": enum_code}));
                    }
                    f.errors.append(&mut vr.errors);
                }
            }
            Some(_) => f.fail("NotBlank", "values", "This collection should not be empty."),
            None if !f.has("values") => f.fail("FieldMissing", "values", "This field is missing."),
            None => {}
        }
        if let (Some((code, id, name)), true) = (field, f.ok()) {
            out.push(json!({
                "field_id": id,
                "field_name": name,
                "field_code": code,
                "field_type": "multitext",
                "values": values,
            }));
        }
        r.errors.append(&mut f.errors);
    }
    // One entry per field, values merged, as amoCRM shows them.
    let mut merged: Vec<Value> = Vec::new();
    for field in out {
        let code = field["field_code"].clone();
        if let Some(existing) = merged.iter_mut().find(|f| f["field_code"] == code) {
            if let (Some(dst), Some(src)) = (
                existing.get_mut("values").and_then(Value::as_array_mut),
                field.get("values").and_then(Value::as_array),
            ) {
                dst.extend(src.iter().cloned());
            }
        } else {
            merged.push(field);
        }
    }
    merged
}

/// Reads a new contact; `None` when the reader collected errors.
pub fn read_contact(r: &mut Reader<'_>, st: &State, caller: Caller) -> Option<Contact> {
    let now = now_secs();
    let first_name = r.string("first_name").unwrap_or_default();
    let last_name = r.string("last_name").unwrap_or_default();
    let name = r
        .string("name")
        .unwrap_or_else(|| format!("{first_name} {last_name}").trim().to_owned());
    let responsible = r
        .user("responsible_user_id", |id| st.is_user(id), false)
        .unwrap_or(caller.user_id);
    let created_by = r
        .user("created_by", |id| st.is_user(id), true)
        .unwrap_or(caller.user_id);
    let created_at = r.int("created_at").unwrap_or(now);
    let fields = read_contact_fields(r);
    if !r.ok() {
        return None;
    }
    Some(Contact {
        id: 0,
        name,
        first_name,
        last_name,
        responsible_user_id: responsible,
        created_by,
        updated_by: created_by,
        created_at,
        updated_at: created_at,
        custom_fields_values: fields,
        visible: true,
        deleted: false,
    })
}

/// Builds a contact carrying just a phone number, e.g. from unsorted metadata.
pub fn contact_with_phone(phone: &str, responsible: u64, now: i64) -> Contact {
    Contact {
        id: 0,
        name: phone.to_owned(),
        first_name: String::new(),
        last_name: String::new(),
        responsible_user_id: responsible,
        created_by: responsible,
        updated_by: responsible,
        created_at: now,
        updated_at: now,
        custom_fields_values: vec![phone_field(&[phone.to_owned()])],
        visible: true,
        deleted: false,
    }
}

pub async fn add_contacts(
    AxState(shared): AxState<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult {
    let items = json_array(&body, MAX_BATCH)?;
    let response = {
        let mut st = shared.state();
        let drafts = read_batch(&items, |r| read_contact(r, &st, caller))?;
        let answer = added_batch(&shared.base_url, "contacts", drafts, |contact| {
            st.insert_contact(contact)
        });
        st.touch();
        answer
    };
    shared.save().await;
    Ok(ok(&response))
}

fn lead_matches(st: &State, l: &Lead, query: &str) -> bool {
    let q = query.trim().to_lowercase();
    if !q.is_empty() && (l.name.to_lowercase().contains(&q) || l.id.to_string() == q) {
        return true;
    }
    l.contact_ids.iter().any(|cid| {
        st.contacts
            .get(cid)
            .is_some_and(|c| c.listed() && contact_matches(c, query))
    })
}

pub async fn list_leads(
    AxState(shared): AxState<Arc<Shared>>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let query = Query::parse(raw.as_deref());
    let at = Listing::new(&shared.base_url, "/api/v4/leads", &query)?;
    let ids = query.ids("filter[id]")?;
    let statuses = query.ids("filter[status_id]")?;
    let with_contacts = query.with().iter().any(|w| w == "contacts");
    let search = query.get("query").map(str::to_owned);
    let st = shared.state();
    let v = view(&shared, &st);
    let found: Vec<&Lead> = st
        .leads
        .values()
        .filter(|l| l.listed())
        .filter(|l| ids.is_empty() || ids.contains(&l.id))
        .filter(|l| statuses.is_empty() || statuses.contains(&l.status_id))
        .filter(|l| search.as_deref().is_none_or(|q| lead_matches(&st, l, q)))
        .collect();
    Ok(at.page("leads", found, |l| v.lead(l, with_contacts)))
}

pub async fn get_lead(
    AxState(shared): AxState<Arc<Shared>>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let id = path_id(&id, "Lead")?;
    let query = Query::parse(raw.as_deref());
    let with_contacts = query.with().iter().any(|w| w == "contacts");
    let st = shared.state();
    match st.leads.get(&id).filter(|l| l.listed()) {
        Some(l) => Ok(ok(&view(&shared, &st).lead(l, with_contacts))),
        None => Ok(no_content()),
    }
}

/// Reads a lead's own fields (not its `_embedded`); `None` when the reader collected errors.
pub fn read_lead(r: &mut Reader<'_>, st: &State, caller: Caller) -> Option<Lead> {
    let now = now_secs();
    let name = r.string("name");
    let price = r.int("price").unwrap_or(0);
    let pipeline_id = r.id("pipeline_id").unwrap_or(PIPELINE_ID);
    if pipeline_id != PIPELINE_ID {
        r.fail(
            "NotSupportedChoice",
            "pipeline_id",
            format!("Pipeline {pipeline_id} does not exist (the account has {PIPELINE_ID})."),
        );
    }
    let status_id = r.id("status_id").unwrap_or(STATUSES[1].0);
    if !STATUSES.iter().any(|s| s.0 == status_id) || status_id == STATUS_UNSORTED {
        r.fail(
            "NotSupportedChoice",
            "status_id",
            format!("Status {status_id} is not a status a lead can be created in."),
        );
    }
    let responsible = r
        .user("responsible_user_id", |id| st.is_user(id), false)
        .unwrap_or(caller.user_id);
    let created_by = r
        .user("created_by", |id| st.is_user(id), true)
        .unwrap_or(caller.user_id);
    let created_at = r.int("created_at").unwrap_or(now);
    if let Some(fields) = r.array("custom_fields_values") {
        if !fields.is_empty() {
            r.fail(
                "NotSupportedChoice",
                "custom_fields_values",
                "The sandbox account has no lead custom fields.",
            );
        }
    }
    if !r.ok() {
        return None;
    }
    let closed = status_id == STATUS_WON || status_id == STATUS_LOST;
    Some(Lead {
        id: 0,
        name: name.unwrap_or_default(),
        price,
        responsible_user_id: responsible,
        status_id,
        pipeline_id,
        created_by,
        updated_by: created_by,
        created_at,
        updated_at: created_at,
        closed_at: closed.then_some(created_at),
        custom_fields_values: Vec::new(),
        contact_ids: Vec::new(),
        visible: true,
        deleted: false,
    })
}

/// amoCRM names an unnamed lead after its id.
/// Embedded companies are refused: the sandbox does not model them.
pub fn refuse_companies(embedded: &mut Reader<'_>) {
    if embedded.array("companies").is_some_and(|c| !c.is_empty()) {
        embedded.fail(
            "NotSupportedChoice",
            "companies",
            "The sandbox does not model companies.",
        );
    }
}

fn name_lead(lead: &mut Lead) {
    if lead.name.trim().is_empty() {
        lead.name = format!("Сделка #{}", lead.id);
    }
}

pub async fn add_leads(
    AxState(shared): AxState<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult {
    let items = json_array(&body, MAX_BATCH)?;
    let response = {
        let mut st = shared.state();
        let drafts = read_batch(&items, |r| {
            let lead = read_lead(r, &st, caller);
            let mut contact_ids = Vec::new();
            if let Some(emb) = r.object("_embedded") {
                let mut e = Reader::new(emb, "_embedded.");
                if let Some(contacts) = e.array("contacts") {
                    for (j, c) in contacts.iter().enumerate() {
                        let mut cr = Reader::new(c, &format!("_embedded.contacts.{j}."));
                        if let Some(id) = cr.req_id("id") {
                            if st.contacts.get(&id).is_some_and(Contact::listed) {
                                contact_ids.push(id);
                            } else {
                                cr.fail("NotFound", "id", format!("Contact {id} does not exist."));
                            }
                        }
                        e.errors.append(&mut cr.errors);
                    }
                }
                refuse_companies(&mut e);
                r.errors.append(&mut e.errors);
            }
            let mut lead = lead?;
            lead.contact_ids = contact_ids;
            Some(lead)
        })?;
        let answer = added_batch(&shared.base_url, "leads", drafts, |lead| {
            let id = st.insert_lead(lead);
            if let Some(l) = st.leads.get_mut(&id) {
                name_lead(l);
            }
            id
        });
        st.touch();
        answer
    };
    shared.save().await;
    Ok(ok(&response))
}

/// `POST /api/v4/leads/complex`: each lead with at most one new (or existing, by `id`) contact.
pub async fn add_complex(
    AxState(shared): AxState<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult {
    let items = json_array(&body, MAX_COMPLEX)?;
    enum ContactPlan {
        None,
        Existing(u64),
        New(Contact),
    }
    let response = {
        let mut st = shared.state();
        let drafts = read_batch(&items, |r| {
            let lead = read_lead(r, &st, caller);
            let mut plan = ContactPlan::None;
            if let Some(emb) = r.object("_embedded") {
                let mut e = Reader::new(emb, "_embedded.");
                if let Some(contacts) = e.array("contacts") {
                    if contacts.len() > 1 {
                        e.fail(
                            "NotSupportedChoice",
                            "contacts",
                            "A complex lead takes at most 1 contact.",
                        );
                    } else if let Some(c) = contacts.first() {
                        let mut cr = Reader::new(c, "_embedded.contacts.0.");
                        if cr.has("id") {
                            if let Some(id) = cr.req_id("id") {
                                if st.contacts.get(&id).is_some_and(Contact::listed) {
                                    plan = ContactPlan::Existing(id);
                                } else {
                                    cr.fail(
                                        "NotFound",
                                        "id",
                                        format!("Contact {id} does not exist."),
                                    );
                                }
                            }
                        } else if let Some(contact) = read_contact(&mut cr, &st, caller) {
                            plan = ContactPlan::New(contact);
                        }
                        e.errors.append(&mut cr.errors);
                    }
                }
                refuse_companies(&mut e);
                if e.has("metadata") {
                    e.fail(
                        "NotSupportedChoice",
                        "metadata",
                        "Unsorted leads through /leads/complex are not supported by the sandbox; use /api/v4/leads/unsorted/sip.",
                    );
                }
                r.errors.append(&mut e.errors);
            }
            Some((lead?, plan))
        })?;
        let mut out = Vec::new();
        for (rid, (mut lead, plan)) in drafts {
            let contact_id = match plan {
                ContactPlan::None => None,
                ContactPlan::Existing(id) => Some(id),
                ContactPlan::New(c) => Some(st.insert_contact(c)),
            };
            lead.contact_ids = contact_id.into_iter().collect();
            let id = st.insert_lead(lead);
            if let Some(l) = st.leads.get_mut(&id) {
                name_lead(l);
            }
            out.push(json!({
                "id": id,
                "contact_id": contact_id,
                "company_id": null,
                "request_id": [rid],
                "merged": false,
            }));
        }
        st.touch();
        Value::Array(out)
    };
    shared.save().await;
    Ok(ok(&response))
}

/// `GET /api/v4/companies`: `filter[id]`, and `query` matched as for contacts (phone digits or
/// name).
pub async fn list_companies(
    AxState(shared): AxState<Arc<Shared>>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let query = Query::parse(raw.as_deref());
    let at = Listing::new(&shared.base_url, "/api/v4/companies", &query)?;
    let ids = query.ids("filter[id]")?;
    let search = query.get("query").map(str::to_owned);
    let st = shared.state();
    let v = view(&shared, &st);
    let found: Vec<&Contact> = st
        .companies
        .values()
        .filter(|c| c.listed())
        .filter(|c| ids.is_empty() || ids.contains(&c.id))
        .filter(|c| search.as_deref().is_none_or(|q| contact_matches(c, q)))
        .collect();
    Ok(at.page("companies", found, |c| v.company(c)))
}

/// `POST /api/v4/companies`: name, responsible user, PHONE and EMAIL fields (as contacts).
pub async fn add_companies(
    AxState(shared): AxState<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult {
    let items = json_array(&body, MAX_BATCH)?;
    let response = {
        let mut st = shared.state();
        let drafts = read_batch(&items, |r| {
            if r.has("first_name") || r.has("last_name") {
                r.fail(
                    "NotSupportedChoice",
                    "name",
                    "A company has a name, not a first and last name.",
                );
            }
            let company = read_contact(r, &st, caller)?;
            if company.name.trim().is_empty() {
                r.fail("NotBlank", "name", "This value should not be blank.");
                return None;
            }
            Some(company)
        })?;
        let answer = added_batch(&shared.base_url, "companies", drafts, |company| {
            st.insert_company(company)
        });
        st.touch();
        answer
    };
    shared.save().await;
    Ok(ok(&response))
}

/// `GET /api/v4/customers`: `filter[id]`.
pub async fn list_customers(
    AxState(shared): AxState<Arc<Shared>>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let query = Query::parse(raw.as_deref());
    let at = Listing::new(&shared.base_url, "/api/v4/customers", &query)?;
    let ids = query.ids("filter[id]")?;
    let st = shared.state();
    let v = view(&shared, &st);
    let found: Vec<&Customer> = st
        .customers
        .values()
        .filter(|c| !c.deleted)
        .filter(|c| ids.is_empty() || ids.contains(&c.id))
        .collect();
    Ok(at.page("customers", found, |c| v.customer(c)))
}

/// `POST /api/v4/customers`: name, responsible user, and the contacts it belongs to as
/// `_embedded.contacts[{id}]` (amoCRM links them with a separate request; the sandbox takes
/// them here so a test needs one).
pub async fn add_customers(
    AxState(shared): AxState<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult {
    let items = json_array(&body, MAX_BATCH)?;
    let response = {
        let mut st = shared.state();
        let now = now_secs();
        let drafts = read_batch(&items, |r| {
            let name = r.req_string("name");
            if name.as_deref().is_some_and(|n| n.trim().is_empty()) {
                r.fail("NotBlank", "name", "This value should not be blank.");
            }
            let responsible = r
                .user("responsible_user_id", |id| st.is_user(id), false)
                .unwrap_or(caller.user_id);
            let mut contact_ids = Vec::new();
            if let Some(emb) = r.object("_embedded") {
                let mut e = Reader::new(emb, "_embedded.");
                for (i, c) in e.array("contacts").into_iter().flatten().enumerate() {
                    let mut cr = Reader::new(c, &format!("_embedded.contacts.{i}."));
                    if let Some(id) = cr.req_id("id") {
                        if st.entity_listed(EntityKind::Contacts, id) {
                            contact_ids.push(id);
                        } else {
                            cr.fail(
                                "NotFound",
                                "id",
                                format!("The contact {id} does not exist."),
                            );
                        }
                    }
                    e.errors.append(&mut cr.errors);
                }
                r.errors.append(&mut e.errors);
            }
            Some(Customer {
                id: 0,
                name: name?,
                responsible_user_id: responsible,
                created_by: caller.user_id,
                created_at: now,
                updated_at: now,
                contact_ids,
                deleted: false,
            })
        })?;
        let answer = added_batch(&shared.base_url, "customers", drafts, |customer| {
            st.insert_customer(customer)
        });
        st.touch();
        answer
    };
    shared.save().await;
    Ok(ok(&response))
}
