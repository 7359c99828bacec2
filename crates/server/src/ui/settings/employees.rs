//! The tab "Employees": the mapping table, PBX employees (the tenant's directory, plus those the
//! settings list that the directory does not) against the CRM's users. Paired by hand, or by
//! "Auto-match" (name or e-mail), which proposes pairs for review and stores only the ones the
//! owner keeps ticked. One CRM user per employee and one employee per CRM user (S4).

use super::calls::crm_notice;
use super::crm_users::{crm_users, CrmUsers};
use super::form::{self, Choice, FieldErrors, Posted};
use super::preview::{self, PreviewView};
use super::{after_save, refusal_reason, save, store_failed, Head, Notice, SaveError};
use crate::state::{AppState, Tenant};
use crate::ui::i18n::Catalogue;
use crate::ui::page::{self, render, Ctx};
use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Form;
use callbridge_core::settings::{CrmUserId, Employee, Settings};
use callbridge_core::{SettingsError, ValidSettings};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The prefix of a row's select: `map.<extension>`.
const MAP_PREFIX: &str = "map.";

/// One PBX employee of the table.
#[derive(Debug, Clone)]
pub struct Row {
    pub index: usize,
    pub extension: String,
    pub name: String,
    pub email: String,
    pub in_directory: bool,
    /// The CRM user chosen, as text ("" = not mapped).
    pub selected: String,
}

impl Row {
    /// How the employee is named in labels and messages.
    pub fn label(&self) -> String {
        if self.name.is_empty() {
            self.extension.clone()
        } else {
            format!("{} ({})", self.name, self.extension)
        }
    }

    pub fn field(&self) -> String {
        format!("user-{}", self.index)
    }

    pub fn input_name(&self) -> String {
        format!("{MAP_PREFIX}{}", self.extension)
    }

    pub fn mapped(&self) -> bool {
        !self.selected.is_empty()
    }
}

/// Orders extensions as people read them: 99 before 101.
fn extension_order(a: &str, b: &str) -> std::cmp::Ordering {
    (a.len(), a).cmp(&(b.len(), b))
}

/// The table's rows: the directory's employees that have an extension, and the settings'
/// employees the directory lacks; each with its stored CRM user.
pub(super) async fn rows(state: &AppState, tenant: &Tenant) -> (Vec<Row>, Option<String>) {
    let settings = tenant.settings.settings();
    let stored: BTreeMap<String, &Employee> = settings
        .employees
        .iter()
        .map(|e| (e.extension.trim().to_string(), e))
        .collect();
    let directories = state.directories.read().await;
    let directory = directories.get(&tenant.row.id);
    let mut by_ext: BTreeMap<String, Row> = BTreeMap::new();
    if let Some(d) = directory {
        for u in &d.users {
            let Some(ext) = u
                .extension
                .as_deref()
                .map(str::trim)
                .filter(|e| !e.is_empty())
            else {
                continue;
            };
            by_ext.insert(
                ext.to_string(),
                Row {
                    index: 0,
                    extension: ext.to_string(),
                    name: u.name.trim().to_string(),
                    email: u.email.clone().unwrap_or_default(),
                    in_directory: true,
                    selected: String::new(),
                },
            );
        }
    }
    for (ext, e) in &stored {
        let row = by_ext.entry(ext.clone()).or_insert_with(|| Row {
            index: 0,
            extension: ext.clone(),
            name: e.name.trim().to_string(),
            email: String::new(),
            in_directory: false,
            selected: String::new(),
        });
        if row.name.is_empty() {
            row.name = e.name.trim().to_string();
        }
        row.selected = e.crm_user_id.map(|id| id.to_string()).unwrap_or_default();
    }
    let mut rows: Vec<Row> = by_ext.into_values().collect();
    rows.sort_by(|a, b| extension_order(&a.extension, &b.extension));
    for (i, r) in rows.iter_mut().enumerate() {
        r.index = i;
    }
    let directory_state = match directory {
        Some(d) => d.error.clone(),
        None => Some(String::new()),
    };
    (rows, directory_state)
}

#[derive(Template)]
#[template(path = "settings/employees.html")]
pub struct EmployeesPage {
    pub ctx: Ctx,
    pub head: Head,
    pub rows: Vec<Row>,
    pub errors: FieldErrors,
    pub crm_notice: Option<Notice>,
    pub directory_notice: Option<Notice>,
    pub can_auto_match: bool,
    /// What the table's mapping would have done to the last calls, after "Preview".
    pub preview: Option<PreviewView>,
    users: CrmUsers,
    known_ids: BTreeSet<u64>,
}

impl EmployeesPage {
    pub fn users(&self, selected: &str) -> Vec<Choice> {
        form::user_choices(
            self.ctx.t,
            &self.users,
            &self.known_ids,
            self.ctx.t.get("settings.employees.not-mapped-option"),
            selected,
        )
    }

    pub fn select_label(&self, row: &Row) -> String {
        let name = if row.name.is_empty() {
            row.extension.as_str()
        } else {
            row.name.as_str()
        };
        self.ctx
            .t
            .fmt("settings.employees.user-for", &[("name", name)])
    }

    pub fn mapped_count(&self) -> String {
        let mapped = self.rows.iter().filter(|r| r.mapped()).count();
        self.ctx.t.fmt(
            "settings.employees.count",
            &[
                ("mapped", &mapped.to_string()),
                ("all", &self.rows.len().to_string()),
            ],
        )
    }
}

fn directory_notice(t: &Catalogue, state: Option<String>, tenant: &str) -> Option<Notice> {
    match state {
        None => None,
        Some(reason) if reason.is_empty() => Some(Notice {
            kind: "info",
            text: t.fmt(
                "settings.employees.directory-not-loaded",
                &[("tenant", tenant)],
            ),
        }),
        Some(reason) => Some(Notice {
            kind: "warn",
            text: t.fmt(
                "settings.employees.directory-failed",
                &[("reason", &reason)],
            ),
        }),
    }
}

#[allow(clippy::too_many_arguments)]
async fn page(
    state: &AppState,
    ctx: Ctx,
    tenant: &Tenant,
    rows: Vec<Row>,
    directory: Option<String>,
    errors: FieldErrors,
    notice: Option<Notice>,
) -> EmployeesPage {
    let users = crm_users(state, tenant).await;
    let mut known_ids = form::ids_in(tenant.settings.settings());
    known_ids.extend(rows.iter().filter_map(|r| r.selected.parse::<u64>().ok()));
    EmployeesPage {
        crm_notice: crm_notice(ctx.t, &users, &tenant.row.id),
        directory_notice: directory_notice(ctx.t, directory, &tenant.row.id),
        can_auto_match: !rows.is_empty()
            && matches!(users, CrmUsers::Loaded(ref u) if !u.is_empty()),
        head: Head::new(tenant, "employees", notice),
        ctx,
        rows,
        errors,
        preview: None,
        users,
        known_ids,
    }
}

pub async fn show(state: &AppState, ctx: Ctx, tenant: &Tenant, notice: Option<Notice>) -> Response {
    let (rows, directory) = rows(state, tenant).await;
    render(
        page(
            state,
            ctx,
            tenant,
            rows,
            directory,
            FieldErrors::default(),
            notice,
        )
        .await,
    )
}

/// Each row's posted CRM user read and checked: a non-number, and a CRM user already chosen on
/// an earlier row (S4: named on the second row, with the other employee).
fn check_rows(t: &Catalogue, rows: &[Row]) -> (FieldErrors, Vec<Option<CrmUserId>>) {
    let mut errors = FieldErrors::default();
    let mut ids = Vec::with_capacity(rows.len());
    let mut taken: BTreeMap<CrmUserId, String> = BTreeMap::new();
    for row in rows {
        match form::user_id(t, &row.selected) {
            Ok(Some(id)) => {
                if let Some(other) = taken.get(&id) {
                    errors.add(
                        &row.field(),
                        t.fmt("settings.error.user-taken", &[("employee", other)]),
                    );
                } else {
                    taken.insert(id, row.label());
                }
                ids.push(Some(id));
            }
            Ok(None) => ids.push(None),
            Err(reason) => {
                errors.add(&row.field(), reason);
                ids.push(None);
            }
        }
    }
    (errors, ids)
}

/// The stored settings with the given rows' CRM users (rows the settings lack are added when
/// mapped; a name missing from the settings is taken from the directory).
fn with_mapping(stored: &Settings, rows: &[Row], ids: &[Option<CrmUserId>]) -> Settings {
    let mut s = stored.clone();
    for (row, id) in rows.iter().zip(ids) {
        match s
            .employees
            .iter_mut()
            .find(|e| e.extension.trim() == row.extension)
        {
            Some(e) => {
                e.crm_user_id = *id;
                if e.name.trim().is_empty() && !row.name.is_empty() {
                    e.name = row.name.clone();
                }
            }
            None if id.is_some() => s.employees.push(Employee {
                extension: row.extension.clone(),
                name: row.name.clone(),
                crm_user_id: *id,
            }),
            None => {}
        }
    }
    s
}

/// The row a core refusal names (`employees[i]…` is the settings' i-th employee).
fn field_of(e: &SettingsError, settings: &Settings, rows: &[Row]) -> Option<String> {
    let SettingsError::Rule { key, .. } = e else {
        return None;
    };
    let index: usize = key
        .strip_prefix("employees[")?
        .split(']')
        .next()?
        .parse()
        .ok()?;
    let ext = settings.employees.get(index)?.extension.trim().to_string();
    rows.iter().find(|r| r.extension == ext).map(Row::field)
}

pub async fn save_form(
    state: &AppState,
    ctx: Ctx,
    tenant: &Tenant,
    fields: &[(String, String)],
) -> Response {
    let (mut rows, directory) = rows(state, tenant).await;
    for (name, value) in fields {
        let Some(ext) = name.strip_prefix(MAP_PREFIX).map(str::trim) else {
            continue;
        };
        if ext.is_empty() {
            continue;
        }
        let value = value.trim().to_string();
        match rows.iter_mut().find(|r| r.extension == ext) {
            Some(row) => row.selected = value,
            // Posted from a table that listed an employee since gone from the directory.
            None => rows.push(Row {
                index: rows.len(),
                extension: ext.to_string(),
                name: String::new(),
                email: String::new(),
                in_directory: false,
                selected: value,
            }),
        }
    }
    let (errors, ids) = check_rows(ctx.t, &rows);
    if !errors.is_empty() {
        return refused(state, ctx, tenant, rows, directory, errors, None).await;
    }
    let stored = tenant.settings.settings();
    let settings = with_mapping(stored, &rows, &ids);
    if Posted(fields).text("action") == "preview" {
        if let Ok(proposed) = ValidSettings::new(settings.clone()) {
            let lang = callbridge_core::explain::Lang::from_code(ctx.lang.code());
            let shown = preview::view(state, ctx.t, lang, tenant, &proposed).await;
            let mut page = page(state, ctx, tenant, rows, directory, errors, None).await;
            page.preview = Some(shown);
            return render(page);
        }
        // Refused by a rule: the save below says which, next to its field.
    }
    match save(state, &tenant.row.id, stored, settings.clone(), None).await {
        Ok(version) => after_save(&tenant.row.id, "employees", version),
        Err(SaveError::Refused(e)) => {
            let reason = refusal_reason(ctx.t, &e);
            let mut errors = FieldErrors::default();
            match field_of(&e, &settings, &rows) {
                Some(field) => {
                    errors.add(&field, reason);
                    refused(state, ctx, tenant, rows, directory, errors, None).await
                }
                None => {
                    let notice = Some(Notice::error(reason));
                    refused(state, ctx, tenant, rows, directory, errors, notice).await
                }
            }
        }
        Err(SaveError::Store(reason)) => {
            let notice = Some(store_failed(ctx.t, &reason));
            refused(
                state,
                ctx,
                tenant,
                rows,
                directory,
                FieldErrors::default(),
                notice,
            )
            .await
        }
    }
}

async fn refused(
    state: &AppState,
    ctx: Ctx,
    tenant: &Tenant,
    rows: Vec<Row>,
    directory: Option<String>,
    errors: FieldErrors,
    notice: Option<Notice>,
) -> Response {
    let notice =
        notice.or_else(|| Some(Notice::error(ctx.t.get("settings.not-saved").to_string())));
    let mut response = render(page(state, ctx, tenant, rows, directory, errors, notice).await);
    *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    response
}

/// A pair auto-match proposes.
#[derive(Debug, Clone)]
pub struct Proposal {
    pub index: usize,
    pub extension: String,
    pub employee: String,
    pub user_id: u64,
    pub user: String,
    /// "email" or "name".
    pub by_email: bool,
    /// The CRM user the employee is mapped to now, when the pair would replace it.
    pub replaces: Option<String>,
}

impl Proposal {
    pub fn value(&self) -> String {
        format!("{}={}", self.extension, self.user_id)
    }
}

/// A name compared without case, extra spaces, word order ("First Last" = "Last First") or the
/// difference of ё and е.
fn name_key(name: &str) -> String {
    let lower = name.to_lowercase().replace('ё', "е");
    let mut words: Vec<&str> = lower.split_whitespace().collect();
    words.sort_unstable();
    words.join(" ")
}

/// Proposes one CRM user per employee whose e-mail (when both have one) or else name matches
/// exactly one CRM user. Pairs already in place, CRM users mapped to another employee (S4), and
/// CRM users two employees would get are left out; a pair that would replace an existing mapping
/// is marked so the review shows it.
pub fn propose(rows: &[Row], users: &[callbridge_amocrm::User]) -> Vec<Proposal> {
    let mapped_to: BTreeMap<u64, &str> = rows
        .iter()
        .filter_map(|r| {
            r.selected
                .parse::<u64>()
                .ok()
                .map(|id| (id, r.extension.as_str()))
        })
        .collect();
    let mut proposals = Vec::new();
    for row in rows {
        let email = row.email.trim().to_lowercase();
        let by_email: Vec<&callbridge_amocrm::User> = if email.is_empty() {
            Vec::new()
        } else {
            users
                .iter()
                .filter(|u| {
                    u.email
                        .as_deref()
                        .is_some_and(|e| e.trim().to_lowercase() == email)
                })
                .collect()
        };
        let key = name_key(&row.name);
        let by_name: Vec<&callbridge_amocrm::User> = if key.is_empty() {
            Vec::new()
        } else {
            users.iter().filter(|u| name_key(&u.name) == key).collect()
        };
        let (user, is_email) = match (by_email.as_slice(), by_name.as_slice()) {
            ([u], _) => (*u, true),
            ([], [u]) => (*u, false),
            _ => continue,
        };
        if row.selected == user.id.to_string() {
            continue;
        }
        if mapped_to
            .get(&user.id)
            .is_some_and(|ext| *ext != row.extension)
        {
            continue;
        }
        let replaces = (!row.selected.is_empty()).then(|| {
            users
                .iter()
                .find(|u| u.id.to_string() == row.selected)
                .map(form::user_label)
                .unwrap_or_else(|| format!("#{}", row.selected))
        });
        proposals.push(Proposal {
            index: 0,
            extension: row.extension.clone(),
            employee: row.label(),
            user_id: user.id,
            user: form::user_label(user),
            by_email: is_email,
            replaces,
        });
    }
    let mut count: BTreeMap<u64, usize> = BTreeMap::new();
    for p in &proposals {
        *count.entry(p.user_id).or_default() += 1;
    }
    proposals.retain(|p| count[&p.user_id] == 1);
    for (i, p) in proposals.iter_mut().enumerate() {
        p.index = i;
    }
    proposals
}

#[derive(Template)]
#[template(path = "settings/review.html")]
pub struct ReviewPage {
    pub ctx: Ctx,
    pub head: Head,
    pub proposals: Vec<Proposal>,
}

impl ReviewPage {
    pub fn pair_label(&self, p: &Proposal) -> String {
        self.ctx.t.fmt(
            "settings.review.pair",
            &[("employee", &p.employee), ("user", &p.user)],
        )
    }
}

/// `POST …/settings/employees/auto-match`: the review of the proposed pairs (nothing stored).
pub async fn auto_match(
    State(state): State<Arc<AppState>>,
    Path(tenant_id): Path<String>,
    ctx: Ctx,
) -> Response {
    let Some(tenant) = state.tenant(&tenant_id).await else {
        return page::no_tenant(ctx, &tenant_id);
    };
    let users = crm_users(&state, &tenant).await;
    if users.list().is_empty() {
        let notice = Some(Notice {
            kind: "warn",
            text: ctx.t.get("settings.review.no-users").to_string(),
        });
        return show(&state, ctx, &tenant, notice).await;
    }
    let (rows, _) = rows(&state, &tenant).await;
    let proposals = propose(&rows, users.list());
    render(ReviewPage {
        head: Head::new(&tenant, "employees", None),
        proposals,
        ctx,
    })
}

/// `POST …/settings/employees/apply`: stores the ticked pairs of the review, as one save.
pub async fn apply(
    State(state): State<Arc<AppState>>,
    Path(tenant_id): Path<String>,
    ctx: Ctx,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let Some(tenant) = state.tenant(&tenant_id).await else {
        return page::no_tenant(ctx, &tenant_id);
    };
    let (mut rows, directory) = rows(&state, &tenant).await;
    let mut errors = FieldErrors::default();
    for (name, value) in &fields {
        if name != "pair" {
            continue;
        }
        let parsed = value
            .rsplit_once('=')
            .and_then(|(ext, id)| Some((ext.trim(), form::user_id(ctx.t, id.trim()).ok()??)));
        let Some((ext, id)) = parsed else {
            errors.add(
                "pairs",
                ctx.t.fmt("settings.review.bad-pair", &[("value", value)]),
            );
            continue;
        };
        match rows.iter_mut().find(|r| r.extension == ext) {
            Some(row) => row.selected = id.to_string(),
            None => errors.add(
                "pairs",
                ctx.t.fmt("settings.review.bad-pair", &[("value", value)]),
            ),
        }
    }
    if let Some(reason) = errors.get("pairs") {
        let notice = Some(Notice::error(reason.to_string()));
        return refused(
            state.as_ref(),
            ctx,
            &tenant,
            rows,
            directory,
            FieldErrors::default(),
            notice,
        )
        .await;
    }
    let (errors, ids) = check_rows(ctx.t, &rows);
    if !errors.is_empty() {
        return refused(&state, ctx, &tenant, rows, directory, errors, None).await;
    }
    let stored = tenant.settings.settings();
    let settings = with_mapping(stored, &rows, &ids);
    match save(&state, &tenant.row.id, stored, settings, None).await {
        Ok(version) => after_save(&tenant.row.id, "employees", version),
        Err(SaveError::Refused(e)) => {
            let notice = Some(Notice::error(refusal_reason(ctx.t, &e)));
            refused(
                &state,
                ctx,
                &tenant,
                rows,
                directory,
                FieldErrors::default(),
                notice,
            )
            .await
        }
        Err(SaveError::Store(reason)) => {
            let notice = Some(store_failed(ctx.t, &reason));
            refused(
                &state,
                ctx,
                &tenant,
                rows,
                directory,
                FieldErrors::default(),
                notice,
            )
            .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(ext: &str, name: &str, email: &str, selected: &str) -> Row {
        Row {
            index: 0,
            extension: ext.into(),
            name: name.into(),
            email: email.into(),
            in_directory: true,
            selected: selected.into(),
        }
    }

    fn user(id: u64, name: &str, email: Option<&str>) -> callbridge_amocrm::User {
        callbridge_amocrm::User {
            id,
            name: name.into(),
            email: email.map(str::to_string),
        }
    }

    #[test]
    fn names_match_in_any_order_and_case_emails_first() {
        let rows = [
            row("101", "Anna  Petrova", "", ""),
            row("102", "Ivanov Ivan", "", ""),
            row("103", "Someone", "olga@x.ru", ""),
            row("104", "Pyotr", "", "1005"),
        ];
        let users = [
            user(1001, "petrova anna", None),
            user(1002, "Ivan Ivanov", Some("ivan@x.ru")),
            user(1003, "Olga", Some("OLGA@x.ru")),
            user(1005, "Pyotr", None),
        ];
        let p = propose(&rows, &users);
        let pairs: Vec<(String, u64, bool)> = p
            .iter()
            .map(|p| (p.extension.clone(), p.user_id, p.by_email))
            .collect();
        assert_eq!(
            pairs,
            vec![
                ("101".into(), 1001, false),
                ("102".into(), 1002, false),
                ("103".into(), 1003, true),
            ]
        );
    }

    #[test]
    fn a_taken_or_contested_user_is_not_proposed_and_a_replacement_is_marked() {
        let rows = [
            row("101", "Anna", "", "1009"),
            row("102", "Anna", "", ""),
            row("103", "Boris", "", "1002"),
            row("104", "Boris", "", ""),
            row("105", "Vera", "", "1007"),
        ];
        let users = [
            user(1001, "Anna", None),
            user(1002, "Boris", None),
            user(1003, "Vera", None),
        ];
        let p = propose(&rows, &users);
        // Anna: two employees want 1001, so neither gets it; Boris 104: 1002 is 103's.
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].extension, "105");
        assert_eq!(p[0].replaces.as_deref(), Some("#1007"));
    }
}
