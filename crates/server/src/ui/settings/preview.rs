//! Preview before saving (rule S3): what the settings in the form would have done to the last
//! stored calls. The stored webhooks of the newest entries are played through the core again,
//! the way `callbridge simulate` plays a file (tracker, assembler, policy), once under the saved
//! settings and once under the form's; the entries whose attribution differs are listed, before
//! and after, with the reasons in words.

use crate::state::AppState;
use callbridge_core::assembler::Direction;
use callbridge_core::explain::{self, Names};
use callbridge_core::plan::EntryPlan;
use callbridge_core::tracker::{Tracker, TrackerConfig};
use callbridge_core::ValidSettings;
use callbridge_mango::webhook::{parse_stored, Webhook};
use callbridge_store::{EntryWithEvents, StoredEvent};

/// How many of the newest entries a preview replays when the configuration names no number.
pub const DEFAULT_ENTRIES: i64 = 200;

/// Where one call landed under one set of settings: a line per record and per item not
/// written, in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Landing {
    /// What decides the comparison: (employee extension, CRM user or none, rule ids) per line.
    key: Vec<(Option<String>, Option<u64>, String)>,
    pub lines: Vec<String>,
}

/// An entry the new settings would write differently.
#[derive(Debug, Clone)]
pub struct Changed {
    pub entry_id: String,
    pub started_at: i64,
    pub client_phone: Option<String>,
    pub before: Landing,
    pub after: Landing,
}

/// What a preview found.
#[derive(Debug, Clone, Default)]
pub struct Preview {
    /// Entries replayed.
    pub checked: usize,
    /// Entries whose stored events did not make a complete call again (a leg still up, events
    /// missing): left out of the comparison.
    pub skipped: usize,
    pub changed: Vec<Changed>,
}

fn landing(plan: &EntryPlan, names: &Names<'_>) -> Landing {
    let mut key = Vec::new();
    let mut lines = Vec::new();
    for r in &plan.records {
        let rules: Vec<String> = r.reasons.iter().map(|x| x.to_string()).collect();
        key.push((
            r.employee_extension.clone(),
            Some(r.crm_user_id.get()),
            rules.join(","),
        ));
        lines.push(format!(
            "{} → {}: {}",
            names.employee(r.employee_extension.as_deref()),
            names.crm_user(r.crm_user_id),
            explain::record_why(r, names)
        ));
    }
    for i in &plan.ignored {
        let rules: Vec<String> = i.reasons.iter().map(|x| x.to_string()).collect();
        key.push((i.employee_extension.clone(), None, rules.join(",")));
        lines.push(format!(
            "{} ✕ {}",
            names.employee(i.employee_extension.as_deref()),
            explain::ignored_why(i, plan.direction, names)
        ));
    }
    if plan.direction == Direction::Internal && lines.is_empty() {
        lines.push(explain::entry_why(plan, names));
    }
    Landing { key, lines }
}

/// The entry's plan from its stored webhooks under `settings`; `None` when they no longer make
/// a complete call.
fn replay(events: &[StoredEvent], settings: &ValidSettings) -> Option<EntryPlan> {
    let mut tracker = Tracker::new(TrackerConfig::default());
    for stored in events {
        if let Ok(Webhook::Event(event)) = parse_stored(&stored.path, &stored.json) {
            tracker.push(event);
        }
    }
    let (done, _) = tracker.finish();
    done.into_iter().next().map(|c| c.plan(settings))
}

/// Compares the saved settings with the form's on the given entries (pure: the store read is
/// the caller's). `names` names people in the new settings' words.
pub fn compare(
    entries: &[EntryWithEvents],
    saved: &ValidSettings,
    proposed: &ValidSettings,
    names_before: &Names<'_>,
    names_after: &Names<'_>,
) -> Preview {
    let mut preview = Preview::default();
    for entry in entries {
        let (Some(before), Some(after)) = (
            replay(&entry.events, saved),
            replay(&entry.events, proposed),
        ) else {
            preview.skipped += 1;
            continue;
        };
        preview.checked += 1;
        let (before_l, after_l) = (landing(&before, names_before), landing(&after, names_after));
        if before_l.key != after_l.key {
            preview.changed.push(Changed {
                entry_id: entry.entry.entry_id.clone(),
                started_at: after.started_at,
                client_phone: after.client_phone.clone(),
                before: before_l,
                after: after_l,
            });
        }
    }
    preview
}

/// Reads the newest entries with their webhooks and compares. `Err` carries the store's words.
pub async fn run(
    state: &AppState,
    tenant_id: &str,
    saved: &ValidSettings,
    proposed: &ValidSettings,
    names_before: &Names<'_>,
    names_after: &Names<'_>,
) -> Result<Preview, String> {
    let entries = state
        .store
        .recent_entries_with_events(tenant_id, state.preview_entries)
        .await
        .map_err(|e| e.to_string())?;
    Ok(compare(
        &entries,
        saved,
        proposed,
        names_before,
        names_after,
    ))
}

/// The preview as a tab shows it, above its form.
pub struct PreviewView {
    /// "3 of the last 200 calls would land differently" (or that none would).
    pub summary: String,
    pub changed: Vec<ChangedView>,
    /// The store could not be read: the preview is missing, saving still works.
    pub failed: Option<String>,
}

pub struct ChangedView {
    pub link: String,
    pub when: String,
    pub client: String,
    pub before: Vec<String>,
    pub after: Vec<String>,
}

/// Runs the preview of `proposed` for a tab, in the page's words.
pub async fn view(
    state: &AppState,
    t: &crate::ui::i18n::Catalogue,
    lang: explain::Lang,
    tenant: &crate::state::Tenant,
    proposed: &ValidSettings,
) -> PreviewView {
    let users = super::crm_users::crm_user_names(state, tenant, true).await;
    let saved = &tenant.settings;
    let before = Names::new(saved.settings(), lang).with_crm_users(&users);
    let after = Names::new(proposed.settings(), lang).with_crm_users(&users);
    let id = &tenant.row.id;
    match run(state, id, saved, proposed, &before, &after).await {
        Err(reason) => {
            tracing::error!(tenant = %id, error = %reason, "settings preview: the store could not be read");
            PreviewView {
                summary: String::new(),
                changed: Vec::new(),
                failed: Some(t.get("error.store").to_string()),
            }
        }
        Ok(found) => {
            let offset = proposed.settings().utc_offset_minutes;
            let summary = if found.changed.is_empty() {
                t.fmt(
                    "settings.preview.none",
                    &[("checked", &found.checked.to_string())],
                )
            } else {
                t.fmt(
                    "settings.preview.some",
                    &[
                        ("changed", &found.changed.len().to_string()),
                        ("checked", &found.checked.to_string()),
                    ],
                )
            };
            let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            PreviewView {
                summary,
                changed: found
                    .changed
                    .into_iter()
                    .map(|c| ChangedView {
                        link: format!("/t/{id}/journal/{}", enc(&c.entry_id)),
                        when: crate::ui::journal::local_time(c.started_at, offset),
                        client: c
                            .client_phone
                            .as_deref()
                            .map(crate::ui::journal::format_phone)
                            .unwrap_or_else(|| "—".into()),
                        before: c.before.lines,
                        after: c.after.lines,
                    })
                    .collect(),
                failed: None,
            }
        }
    }
}
