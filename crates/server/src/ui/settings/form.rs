//! What the tabs' forms share: errors by field, the markup of an error next to its control,
//! reading posted values, the CRM-user choices, and the words for what a save changed.

use super::super::i18n::Catalogue;
use super::crm_users::CrmUsers;
use callbridge_core::settings::{CrmUserId, Settings};
use std::collections::{BTreeMap, BTreeSet};

/// Errors of one form, by the field's id.
#[derive(Debug, Default, Clone)]
pub struct FieldErrors(BTreeMap<String, String>);

impl FieldErrors {
    pub fn add(&mut self, field: &str, reason: String) {
        // The first reason of a field is the one shown (it is the one to fix first).
        self.0.entry(field.to_string()).or_insert(reason);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, field: &str) -> Option<&str> {
        self.0.get(field).map(String::as_str)
    }

    /// `aria-invalid` and `aria-describedby` for a control: its error, and the reason it is
    /// locked when `locked_by` names the hint that says so.
    pub fn aria(&self, field: &str, locked_by: Option<&str>) -> String {
        let mut described = Vec::new();
        if let Some(lock) = locked_by {
            described.push(lock.to_string());
        }
        let mut out = String::new();
        if self.0.contains_key(field) {
            out.push_str(" aria-invalid=\"true\"");
            described.push(format!("{field}-error"));
        }
        if !described.is_empty() {
            out.push_str(&format!(" aria-describedby=\"{}\"", described.join(" ")));
        }
        out
    }

    /// The error paragraph of a field (empty when it has none).
    pub fn html(&self, field: &str) -> String {
        match self.0.get(field) {
            Some(reason) => format!(
                "<p class=\"field-error\" id=\"{field}-error\">{}</p>",
                escape(reason)
            ),
            None => String::new(),
        }
    }
}

pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The posted form as name -> last value (checkboxes: present means on).
pub struct Posted<'a>(pub &'a [(String, String)]);

impl Posted<'_> {
    pub fn text(&self, name: &str) -> String {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default()
    }

    pub fn checked(&self, name: &str) -> bool {
        self.0.iter().any(|(k, v)| k == name && v != "off")
    }
}

/// The name a choice of the settings has in their TOML schema (the core's serde name, such as
/// `contact_and_lead`): the value its option posts, so the form and a settings file agree.
pub fn choice_name<T: serde::Serialize>(choice: T) -> String {
    match serde_json::to_value(choice) {
        Ok(serde_json::Value::String(name)) => name,
        // The settings' choices are unit variants, which always serialize as their name; were
        // one not to, no option would show as selected.
        _ => String::new(),
    }
}

/// Reads a posted choice by its TOML name into `target`; an unknown name is named in `errors`
/// and the target keeps its value.
pub fn read_choice<T: serde::de::DeserializeOwned>(
    t: &Catalogue,
    errors: &mut FieldErrors,
    field: &str,
    name: &str,
    target: &mut T,
) {
    match serde_json::from_value(serde_json::Value::String(name.to_string())) {
        Ok(choice) => *target = choice,
        Err(_) => errors.add(
            field,
            t.fmt("settings.error.unknown-choice", &[("value", name)]),
        ),
    }
}

/// A CRM user id as a select posts it: empty means none; otherwise a positive integer (S5).
pub fn user_id(t: &Catalogue, value: &str) -> Result<Option<CrmUserId>, String> {
    if value.is_empty() {
        return Ok(None);
    }
    match value.parse::<u64>().map(CrmUserId::new) {
        Ok(Ok(id)) => Ok(Some(id)),
        _ => Err(t.fmt("settings.error.user-id", &[("value", value)])),
    }
}

/// A whole number within `range`, or the reason it is not.
pub fn number_in(
    t: &Catalogue,
    value: &str,
    range: std::ops::RangeInclusive<i64>,
) -> Result<i64, String> {
    let reason = || {
        t.fmt(
            "settings.error.number",
            &[
                ("min", &range.start().to_string()),
                ("max", &range.end().to_string()),
            ],
        )
    };
    let n = value.parse::<i64>().map_err(|_| reason())?;
    if range.contains(&n) {
        Ok(n)
    } else {
        Err(reason())
    }
}

/// One `<option>` of a select.
#[derive(Debug, Clone)]
pub struct Choice {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

/// The CRM users as choices, `selected` chosen; ids the settings name that the CRM's list lacks
/// (or every id, when the list could not be read) are kept as "CRM user #id", so what is stored
/// is always shown and kept on save.
pub fn user_choices(
    t: &Catalogue,
    users: &CrmUsers,
    known_ids: &BTreeSet<u64>,
    none_label: &str,
    selected: &str,
) -> Vec<Choice> {
    let mut choices = vec![Choice {
        value: String::new(),
        label: none_label.to_string(),
        selected: selected.is_empty(),
    }];
    let listed: BTreeSet<u64> = users.list().iter().map(|u| u.id).collect();
    for u in users.list() {
        let value = u.id.to_string();
        choices.push(Choice {
            selected: value == selected,
            label: user_label(u),
            value,
        });
    }
    let mut extra: BTreeSet<String> = known_ids
        .iter()
        .filter(|id| !listed.contains(id))
        .map(u64::to_string)
        .collect();
    // What was typed stays what is shown, even a value no list has (it is refused next to it).
    if !selected.is_empty() && !choices.iter().any(|c| c.value == selected) {
        extra.insert(selected.to_string());
    }
    for value in extra {
        choices.push(Choice {
            selected: value == selected,
            label: t.fmt("settings.user-by-id", &[("id", &value)]),
            value,
        });
    }
    choices
}

pub fn user_label(u: &callbridge_amocrm::User) -> String {
    match &u.email {
        Some(email) if !email.is_empty() => format!("{} ({email})", u.name),
        _ => u.name.clone(),
    }
}

/// Every CRM user id the settings name (mapping, fallback, responsible users).
pub fn ids_in(settings: &Settings) -> BTreeSet<u64> {
    let c = &settings.calls;
    settings
        .employees
        .iter()
        .filter_map(|e| e.crm_user_id)
        .chain(c.save_all_calls.crm_user_id)
        .chain(c.missed_group.responsible_crm_user_id)
        .chain(c.missed_ivr.responsible_crm_user_id)
        .map(CrmUserId::get)
        .collect()
}

/// What changed from `old` to `new`, one line per key (`key: old → new`); the mapping table one
/// line per employee. This is the version's summary, kept in the settings' own key names.
pub fn changes(old: &Settings, new: &Settings) -> Vec<String> {
    let mut lines = Vec::new();
    let mut old_flat = BTreeMap::new();
    let mut new_flat = BTreeMap::new();
    let strip = |s: &Settings| {
        let mut v = serde_json::to_value(s).unwrap_or_default();
        if let Some(map) = v.as_object_mut() {
            map.remove("employees");
        }
        v
    };
    flatten("", &strip(old), &mut old_flat);
    flatten("", &strip(new), &mut new_flat);
    let keys: BTreeSet<&String> = old_flat.keys().chain(new_flat.keys()).collect();
    for key in keys {
        let (a, b) = (old_flat.get(key), new_flat.get(key));
        if a != b {
            lines.push(format!(
                "{key}: {} → {}",
                a.map(String::as_str).unwrap_or("—"),
                b.map(String::as_str).unwrap_or("—")
            ));
        }
    }
    let by_ext = |s: &Settings| {
        s.employees
            .iter()
            .map(|e| (e.extension.trim().to_string(), e.clone()))
            .collect::<BTreeMap<_, _>>()
    };
    let (old_emp, new_emp) = (by_ext(old), by_ext(new));
    let exts: BTreeSet<&String> = old_emp.keys().chain(new_emp.keys()).collect();
    let user = |id: Option<CrmUserId>| id.map(|i| i.to_string()).unwrap_or_else(|| "—".into());
    for ext in exts {
        match (old_emp.get(ext), new_emp.get(ext)) {
            (Some(a), Some(b)) if a.crm_user_id != b.crm_user_id => lines.push(format!(
                "employees.{ext}.crm_user_id: {} → {}",
                user(a.crm_user_id),
                user(b.crm_user_id)
            )),
            (Some(a), Some(b)) if a.name != b.name => {
                lines.push(format!("employees.{ext}.name: {:?} → {:?}", a.name, b.name))
            }
            (None, Some(b)) => lines.push(format!(
                "employees.{ext}: added ({:?}, crm_user_id {})",
                b.name,
                user(b.crm_user_id)
            )),
            (Some(_), None) => lines.push(format!("employees.{ext}: removed")),
            _ => {}
        }
    }
    lines
}

fn flatten(prefix: &str, value: &serde_json::Value, out: &mut BTreeMap<String, String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        serde_json::Value::Null => {}
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use callbridge_core::settings::Employee;

    #[test]
    fn changes_name_each_key_and_employee() {
        let old = Settings::default();
        let mut new = old.clone();
        new.calls.save_all_calls.enabled = true;
        new.calls.save_all_calls.crm_user_id = CrmUserId::new(7).ok();
        new.employees.push(Employee {
            extension: "101".into(),
            name: "Anna".into(),
            crm_user_id: CrmUserId::new(3).ok(),
        });
        assert_eq!(
            changes(&old, &new),
            vec![
                "calls.save_all_calls.crm_user_id: — → 7",
                "calls.save_all_calls.enabled: false → true",
                "employees.101: added (\"Anna\", crm_user_id 3)",
            ]
        );
        assert!(changes(&new, &new).is_empty());
    }

    #[test]
    fn errors_mark_their_control() {
        let mut e = FieldErrors::default();
        e.add("plan", "bad <value>".into());
        assert_eq!(
            e.aria("plan", Some("plan-lock")),
            " aria-invalid=\"true\" aria-describedby=\"plan-lock plan-error\""
        );
        assert_eq!(e.aria("other", None), "");
        assert_eq!(
            e.html("plan"),
            "<p class=\"field-error\" id=\"plan-error\">bad &lt;value&gt;</p>"
        );
    }
}
