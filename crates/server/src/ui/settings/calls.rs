//! The tab "Call processing": the package, incoming and outgoing calls, missed calls to a group
//! and in the IVR, missed-call tasks, and last the block "Other" with "Save all calls" (the
//! seed's steps: tab, block Other, switch, choose the user, Save).

use super::crm_users::{crm_users, CrmUsers};
use super::form::{self, Choice, FieldErrors, Posted};
use super::preview::{self, PreviewView};
use super::{after_save, refusal_reason, save, store_failed, Head, Notice, SaveError};
use crate::state::{AppState, Tenant};
use crate::ui::i18n::Catalogue;
use crate::ui::page::{render, Ctx};
use askama::Template;
use axum::http::StatusCode;
use axum::response::Response;
use callbridge_core::settings::Settings;
use callbridge_core::{SettingsError, ValidSettings};
use std::collections::BTreeSet;

/// The form as typed (or as stored, before any typing): values kept as text so a refused form
/// shows exactly what was sent.
#[derive(Debug, Clone)]
pub struct CallsForm {
    pub plan: String,
    pub incoming_new: String,
    pub incoming_repeat: String,
    pub outgoing_new: String,
    pub outgoing_repeat: String,
    pub group_responsible: bool,
    pub group_user: String,
    pub group_owner: String,
    pub ivr_record: bool,
    pub ivr_user: String,
    pub tasks_enabled: bool,
    pub tasks_owner: bool,
    pub tasks_due: String,
    pub tasks_evening: String,
    pub utc_offset: String,
    pub save_all: bool,
    pub save_all_user: String,
}

fn id_text(id: Option<callbridge_core::settings::CrmUserId>) -> String {
    id.map(|i| i.to_string()).unwrap_or_default()
}

impl CallsForm {
    pub fn from_settings(s: &Settings) -> CallsForm {
        let c = &s.calls;
        CallsForm {
            plan: form::choice_name(s.plan),
            incoming_new: form::choice_name(c.incoming.new_client),
            incoming_repeat: form::choice_name(c.incoming.repeat_client),
            outgoing_new: form::choice_name(c.outgoing.new_client),
            outgoing_repeat: form::choice_name(c.outgoing.repeat_client),
            group_responsible: c.missed_group.responsible_enabled,
            group_user: id_text(c.missed_group.responsible_crm_user_id),
            group_owner: form::choice_name(c.missed_group.owner_when_unset),
            ivr_record: c.missed_ivr.record,
            ivr_user: id_text(c.missed_ivr.responsible_crm_user_id),
            tasks_enabled: c.missed_tasks.enabled,
            tasks_owner: c.missed_tasks.assign_to_contact_owner,
            tasks_due: c.missed_tasks.due_minutes.to_string(),
            tasks_evening: c.missed_tasks.evening_from_hour.to_string(),
            utc_offset: s.utc_offset_minutes.to_string(),
            save_all: c.save_all_calls.enabled,
            save_all_user: id_text(c.save_all_calls.crm_user_id),
        }
    }

    pub fn from_posted(p: &Posted<'_>) -> CallsForm {
        CallsForm {
            plan: p.text("plan"),
            incoming_new: p.text("incoming_new"),
            incoming_repeat: p.text("incoming_repeat"),
            outgoing_new: p.text("outgoing_new"),
            outgoing_repeat: p.text("outgoing_repeat"),
            group_responsible: p.checked("group_responsible"),
            group_user: p.text("group_user"),
            group_owner: p.text("group_owner"),
            ivr_record: p.checked("ivr_record"),
            ivr_user: p.text("ivr_user"),
            tasks_enabled: p.checked("tasks_enabled"),
            tasks_owner: p.checked("tasks_owner"),
            tasks_due: p.text("tasks_due"),
            tasks_evening: p.text("tasks_evening"),
            utc_offset: p.text("utc_offset"),
            save_all: p.checked("save_all_calls"),
            save_all_user: p.text("save_all_calls_user"),
        }
    }

    /// The stored settings with this form's values; every value that cannot be read is named.
    /// Values that cannot be read keep their stored value in the settings returned, so the
    /// core's rules can still be checked on the rest.
    pub fn apply(&self, t: &Catalogue, base: &Settings) -> (Settings, FieldErrors) {
        let mut s = base.clone();
        let mut errors = FieldErrors::default();
        form::read_choice(t, &mut errors, "plan", &self.plan, &mut s.plan);
        let c = &mut s.calls;
        for (field, value, target) in [
            (
                "incoming_new",
                &self.incoming_new,
                &mut c.incoming.new_client,
            ),
            (
                "outgoing_new",
                &self.outgoing_new,
                &mut c.outgoing.new_client,
            ),
        ] {
            form::read_choice(t, &mut errors, field, value, target);
        }
        for (field, value, target) in [
            (
                "incoming_repeat",
                &self.incoming_repeat,
                &mut c.incoming.repeat_client,
            ),
            (
                "outgoing_repeat",
                &self.outgoing_repeat,
                &mut c.outgoing.repeat_client,
            ),
        ] {
            form::read_choice(t, &mut errors, field, value, target);
        }
        c.missed_group.responsible_enabled = self.group_responsible;
        form::read_choice(
            t,
            &mut errors,
            "group_owner",
            &self.group_owner,
            &mut c.missed_group.owner_when_unset,
        );
        c.missed_ivr.record = self.ivr_record;
        c.missed_tasks.enabled = self.tasks_enabled;
        c.missed_tasks.assign_to_contact_owner = self.tasks_owner;
        c.save_all_calls.enabled = self.save_all;
        for (field, value, target) in [
            (
                "group_user",
                &self.group_user,
                &mut c.missed_group.responsible_crm_user_id,
            ),
            (
                "ivr_user",
                &self.ivr_user,
                &mut c.missed_ivr.responsible_crm_user_id,
            ),
            (
                "save_all_calls_user",
                &self.save_all_user,
                &mut c.save_all_calls.crm_user_id,
            ),
        ] {
            match form::user_id(t, value) {
                Ok(id) => *target = id,
                Err(reason) => errors.add(field, reason),
            }
        }
        match form::number_in(t, &self.tasks_due, 1..=1500) {
            Ok(n) => c.missed_tasks.due_minutes = n as u32,
            Err(reason) => errors.add("tasks_due", reason),
        }
        match form::number_in(t, &self.tasks_evening, 0..=24) {
            Ok(n) => c.missed_tasks.evening_from_hour = n as u8,
            Err(reason) => errors.add("tasks_evening", reason),
        }
        match form::number_in(t, &self.utc_offset, -840..=840) {
            Ok(n) => s.utc_offset_minutes = n as i32,
            Err(reason) => errors.add("utc_offset", reason),
        }
        (s, errors)
    }
}

/// The field of this tab a settings key belongs to.
fn field_of(key: &str) -> Option<&'static str> {
    Some(match key {
        "plan" => "plan",
        "calls.save_all_calls.enabled" => "save_all_calls",
        "calls.save_all_calls.crm_user_id" => "save_all_calls_user",
        "calls.missed_group.responsible_enabled" => "group_responsible",
        "calls.missed_group.responsible_crm_user_id" => "group_user",
        "calls.missed_ivr.record" => "ivr_record",
        "calls.missed_ivr.responsible_crm_user_id" => "ivr_user",
        "calls.missed_tasks.enabled" => "tasks_enabled",
        "calls.missed_tasks.due_minutes" => "tasks_due",
        "calls.missed_tasks.evening_from_hour" => "tasks_evening",
        "utc_offset_minutes" => "utc_offset",
        _ => return None,
    })
}

fn rule_field(e: &SettingsError) -> Option<&'static str> {
    match e {
        SettingsError::Rule { key, .. } => field_of(key),
        SettingsError::Syntax { .. } => None,
    }
}

#[derive(Template)]
#[template(path = "settings/calls.html")]
pub struct CallsPage {
    pub ctx: Ctx,
    pub head: Head,
    pub form: CallsForm,
    pub errors: FieldErrors,
    pub crm_notice: Option<Notice>,
    /// What the form's settings would have done to the last calls, after "Preview".
    pub preview: Option<PreviewView>,
    users: CrmUsers,
    known_ids: BTreeSet<u64>,
}

impl CallsPage {
    pub fn users(&self, selected: &str) -> Vec<Choice> {
        form::user_choices(
            self.ctx.t,
            &self.users,
            &self.known_ids,
            self.ctx.t.get("settings.choose-user"),
            selected,
        )
    }

    fn choices(&self, options: &[(&str, &str)], selected: &str) -> Vec<Choice> {
        let mut out: Vec<Choice> = options
            .iter()
            .map(|(value, label)| Choice {
                value: value.to_string(),
                label: label.to_string(),
                selected: *value == selected,
            })
            .collect();
        if !out.iter().any(|c| c.selected) {
            // A refused value stays visible, next to its reason.
            out.push(Choice {
                value: selected.to_string(),
                label: selected.to_string(),
                selected: true,
            });
        }
        out
    }

    pub fn plans(&self) -> Vec<Choice> {
        let t = self.ctx.t;
        self.choices(
            &[
                ("basic", t.get("settings.plan.basic")),
                ("extended", t.get("settings.plan.extended")),
            ],
            &self.form.plan,
        )
    }

    pub fn new_client(&self, selected: &str) -> Vec<Choice> {
        let t = self.ctx.t;
        self.choices(
            &[
                ("contact", t.get("settings.calls.new.contact")),
                (
                    "contact_and_lead",
                    t.get("settings.calls.new.contact-and-lead"),
                ),
                ("unsorted", t.get("settings.calls.new.unsorted")),
                ("manual", t.get("settings.calls.new.manual")),
            ],
            selected,
        )
    }

    pub fn repeat_client(&self, selected: &str) -> Vec<Choice> {
        let t = self.ctx.t;
        self.choices(
            &[
                ("manual", t.get("settings.calls.repeat.manual")),
                ("always_lead", t.get("settings.calls.repeat.always-lead")),
                (
                    "lead_if_no_open",
                    t.get("settings.calls.repeat.lead-if-no-open"),
                ),
            ],
            selected,
        )
    }

    pub fn owners(&self) -> Vec<Choice> {
        let t = self.ctx.t;
        self.choices(
            &[
                ("first", t.get("settings.calls.group.owner-first")),
                ("last", t.get("settings.calls.group.owner-last")),
            ],
            &self.form.group_owner,
        )
    }

    /// The attributes of a control: `disabled` with the reason when the package locks it, and
    /// its error.
    pub fn attrs(&self, field: &str, extended_only: bool) -> String {
        let locked = extended_only && !self.head.extended;
        let lock_id = format!("{field}-lock");
        let mut out = self.errors.aria(field, locked.then_some(lock_id.as_str()));
        if locked {
            out.push_str(" disabled");
        }
        out
    }

    /// The reason an extended-only control is locked, when it is.
    pub fn lock(&self, field: &str) -> String {
        if self.head.extended {
            return String::new();
        }
        format!(
            "<p class=\"hint plan-lock\" id=\"{field}-lock\">{}</p>",
            form::escape(self.ctx.t.get("settings.extended-only"))
        )
    }

    pub fn error(&self, field: &str) -> String {
        self.errors.html(field)
    }

    pub fn state(&self, on: &bool) -> &str {
        if *on {
            self.ctx.t.get("settings.on")
        } else {
            self.ctx.t.get("settings.off")
        }
    }
}

pub fn crm_notice(t: &Catalogue, users: &CrmUsers, tenant: &str) -> Option<Notice> {
    match users {
        CrmUsers::Loaded(_) => None,
        CrmUsers::NotConnected => Some(Notice {
            kind: "warn",
            text: t.fmt("settings.crm.not-connected", &[("tenant", tenant)]),
        }),
        CrmUsers::Failed(reason) => Some(Notice {
            kind: "warn",
            text: t.fmt("settings.crm.failed", &[("reason", reason)]),
        }),
    }
}

async fn page(
    state: &AppState,
    ctx: Ctx,
    tenant: &Tenant,
    form: CallsForm,
    errors: FieldErrors,
    notice: Option<Notice>,
) -> CallsPage {
    let users = crm_users(state, tenant).await;
    let mut known_ids = form::ids_in(tenant.settings.settings());
    for typed in [&form.group_user, &form.ivr_user, &form.save_all_user] {
        if let Ok(id) = typed.parse::<u64>() {
            known_ids.insert(id);
        }
    }
    CallsPage {
        crm_notice: crm_notice(ctx.t, &users, &tenant.row.id),
        head: Head::new(tenant, "calls", notice),
        ctx,
        form,
        errors,
        preview: None,
        users,
        known_ids,
    }
}

pub async fn show(state: &AppState, ctx: Ctx, tenant: &Tenant, notice: Option<Notice>) -> Response {
    let form = CallsForm::from_settings(tenant.settings.settings());
    render(page(state, ctx, tenant, form, FieldErrors::default(), notice).await)
}

pub async fn save_form(
    state: &AppState,
    ctx: Ctx,
    tenant: &Tenant,
    fields: &[(String, String)],
) -> Response {
    let form = CallsForm::from_posted(&Posted(fields));
    let stored = tenant.settings.settings();
    let (settings, mut errors) = form.apply(ctx.t, stored);
    if !errors.is_empty() {
        // The core's rules on what could be read, so every fault shows at once.
        if let Err(e) = ValidSettings::new(settings) {
            if let Some(field) = rule_field(&e) {
                errors.add(field, refusal_reason(ctx.t, &e));
            }
        }
        return refused(state, ctx, tenant, form, errors, None).await;
    }
    if Posted(fields).text("action") == "preview" {
        return match ValidSettings::new(settings) {
            Ok(proposed) => {
                let lang = callbridge_core::explain::Lang::from_code(ctx.lang.code());
                let shown = preview::view(state, ctx.t, lang, tenant, &proposed).await;
                let mut page = page(state, ctx, tenant, form, FieldErrors::default(), None).await;
                page.preview = Some(shown);
                render(page)
            }
            Err(e) => refused_by_rule(state, ctx, tenant, form, &e).await,
        };
    }
    match save(state, &tenant.row.id, stored, settings, None).await {
        Ok(version) => after_save(&tenant.row.id, "calls", version),
        Err(SaveError::Refused(e)) => refused_by_rule(state, ctx, tenant, form, &e).await,
        Err(SaveError::Store(reason)) => {
            let notice = store_failed(ctx.t, &reason);
            refused(
                state,
                ctx,
                tenant,
                form,
                FieldErrors::default(),
                Some(notice),
            )
            .await
        }
    }
}

/// The form refused by one of the core's rules: next to its field, or above the form.
async fn refused_by_rule(
    state: &AppState,
    ctx: Ctx,
    tenant: &Tenant,
    form: CallsForm,
    e: &SettingsError,
) -> Response {
    let mut errors = FieldErrors::default();
    let reason = refusal_reason(ctx.t, e);
    match rule_field(e) {
        Some(field) => {
            errors.add(field, reason);
            refused(state, ctx, tenant, form, errors, None).await
        }
        None => {
            let notice = Notice::error(reason);
            refused(state, ctx, tenant, form, errors, Some(notice)).await
        }
    }
}

async fn refused(
    state: &AppState,
    ctx: Ctx,
    tenant: &Tenant,
    form: CallsForm,
    errors: FieldErrors,
    notice: Option<Notice>,
) -> Response {
    let notice =
        notice.or_else(|| Some(Notice::error(ctx.t.get("settings.not-saved").to_string())));
    let mut response = render(page(state, ctx, tenant, form, errors, notice).await);
    *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    response
}
