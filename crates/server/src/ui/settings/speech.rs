//! The tab "Speech analytics": "Save speech analytics data" (C2 = R5), an extended-package
//! setting (S2).

use super::form::{FieldErrors, Posted};
use super::{after_save, refusal_reason, save, store_failed, Head, Notice, SaveError};
use crate::state::{AppState, Tenant};
use crate::ui::page::{render, Ctx};
use askama::Template;
use axum::http::StatusCode;
use axum::response::Response;

#[derive(Template)]
#[template(path = "settings/speech.html")]
pub struct SpeechPage {
    pub ctx: Ctx,
    pub head: Head,
    pub save_on: bool,
    pub errors: FieldErrors,
}

impl SpeechPage {
    pub fn attrs(&self) -> String {
        let locked = !self.head.extended;
        let mut out = self
            .errors
            .aria("speech_save", locked.then_some("speech_save-lock"));
        if locked {
            out.push_str(" disabled");
        }
        out
    }

    pub fn state(&self) -> &str {
        if self.save_on {
            self.ctx.t.get("settings.on")
        } else {
            self.ctx.t.get("settings.off")
        }
    }
}

pub fn show(ctx: Ctx, tenant: &Tenant, notice: Option<Notice>) -> Response {
    render(SpeechPage {
        head: Head::new(tenant, "speech", notice),
        save_on: tenant.settings.settings().speech_analytics.save,
        errors: FieldErrors::default(),
        ctx,
    })
}

pub async fn save_form(
    state: &AppState,
    ctx: Ctx,
    tenant: &Tenant,
    fields: &[(String, String)],
) -> Response {
    let save_on = Posted(fields).checked("speech_save");
    let stored = tenant.settings.settings();
    let mut settings = stored.clone();
    settings.speech_analytics.save = save_on;
    let (errors, notice) = match save(state, &tenant.row.id, stored, settings, None).await {
        Ok(version) => return after_save(&tenant.row.id, "speech", version),
        Err(SaveError::Refused(e)) => {
            let mut errors = FieldErrors::default();
            errors.add("speech_save", refusal_reason(ctx.t, &e));
            (
                errors,
                Notice::error(ctx.t.get("settings.not-saved").to_string()),
            )
        }
        Err(SaveError::Store(reason)) => (FieldErrors::default(), store_failed(ctx.t, &reason)),
    };
    let mut response = render(SpeechPage {
        head: Head::new(tenant, "speech", Some(notice)),
        save_on,
        errors,
        ctx,
    });
    *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    response
}
