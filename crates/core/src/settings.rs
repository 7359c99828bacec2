//! The business's integration settings, in the TOML schema shared by `simulate` and `serve`.
//!
//! Parsing is strict: an unknown key or value is an error naming it, and settings that break a
//! rule (S1, S2, S4 in `docs/rules.md`) are rejected with the rule id, never silently ignored.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::num::NonZeroU64;
use std::str::FromStr;

/// A CRM user id (amoCRM `users[].id`): a positive integer.
///
/// amoCRM numbers its users from 1; a 0 in the settings is a slip (an unfilled form field) that
/// would otherwise reach the CRM as "no responsible user", so it is refused where it is read.
/// Serialized as the bare number, so stored plans and settings files read as before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u64")]
pub struct CrmUserId(NonZeroU64);

/// Why a value is not a [`CrmUserId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CrmUserIdError {
    #[error("a CRM user id must be a positive integer, not 0")]
    Zero,
    #[error("a CRM user id must be a positive integer, not {0:?}")]
    NotANumber(String),
}

impl CrmUserId {
    /// Accepts any positive id.
    pub fn new(id: u64) -> Result<Self, CrmUserIdError> {
        NonZeroU64::new(id)
            .map(CrmUserId)
            .ok_or(CrmUserIdError::Zero)
    }

    pub fn get(self) -> u64 {
        self.0.get()
    }
}

impl TryFrom<u64> for CrmUserId {
    type Error = CrmUserIdError;

    fn try_from(id: u64) -> Result<Self, Self::Error> {
        CrmUserId::new(id)
    }
}

impl From<CrmUserId> for u64 {
    fn from(id: CrmUserId) -> u64 {
        id.get()
    }
}

impl fmt::Display for CrmUserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for CrmUserId {
    type Err = CrmUserIdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let id: u64 = text
            .trim()
            .parse()
            .map_err(|_| CrmUserIdError::NotANumber(text.to_string()))?;
        CrmUserId::new(id)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Plan {
    Basic,
    #[default]
    Extended,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Employee {
    pub extension: String,
    #[serde(default)]
    pub name: String,
    /// Absent: listed but unmapped.
    #[serde(default)]
    pub crm_user_id: Option<CrmUserId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NewClientAction {
    #[default]
    Contact,
    ContactAndLead,
    Unsorted,
    Manual,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RepeatClientAction {
    #[default]
    Manual,
    AlwaysLead,
    LeadIfNoOpen,
}

/// Processing of calls for one direction: what the CRM gets for a new and a repeat client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EntityRules {
    pub new_client: NewClientAction,
    pub repeat_client: RepeatClientAction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MissedGroupOwner {
    /// The first employee the call was offered to (Mango's amoCRM default).
    #[default]
    First,
    /// The last employee the call was offered to (Mango's Bitrix24 default).
    Last,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MissedGroup {
    /// "Responsible for missed calls to a group".
    pub responsible_enabled: bool,
    pub responsible_crm_user_id: Option<CrmUserId>,
    pub owner_when_unset: MissedGroupOwner,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MissedIvr {
    /// "Record calls missed in IVR".
    pub record: bool,
    pub responsible_crm_user_id: Option<CrmUserId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SaveAllCalls {
    pub enabled: bool,
    /// The fallback user all unmapped employees' calls are attached to.
    pub crm_user_id: Option<CrmUserId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MissedTasks {
    /// "Create tasks for missed calls" (M5).
    pub enabled: bool,
    /// For a known client, give the task to the contact's responsible user instead.
    pub assign_to_contact_owner: bool,
    /// Minutes from the end of the call to the task's deadline.
    pub due_minutes: u32,
    /// Calls ending at or after this local hour get a deadline of 09:00 the next working day.
    pub evening_from_hour: u8,
}

impl Default for MissedTasks {
    fn default() -> Self {
        MissedTasks {
            enabled: false,
            assign_to_contact_owner: false,
            due_minutes: 60,
            evening_from_hour: 20,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Calls {
    pub incoming: EntityRules,
    pub outgoing: EntityRules,
    pub missed_group: MissedGroup,
    pub missed_ivr: MissedIvr,
    pub save_all_calls: SaveAllCalls,
    pub missed_tasks: MissedTasks,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpeechAnalytics {
    /// "Save speech analytics data" (C2 = R5).
    pub save: bool,
}

/// The tenant's settings as written in the TOML file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub plan: Plan,
    /// Offset of the tenant's local time from UTC, in minutes (Europe/Moscow: +180, no DST).
    pub utc_offset_minutes: i32,
    pub employees: Vec<Employee>,
    pub calls: Calls,
    pub speech_analytics: SpeechAnalytics,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            plan: Plan::Extended,
            utc_offset_minutes: 180,
            employees: Vec::new(),
            calls: Calls::default(),
            speech_analytics: SpeechAnalytics::default(),
        }
    }
}

/// Why a settings file was refused. `Display` is one line naming the key (and line) at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error("line {line}, column {column}: {message}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{key}: {message} [{rule}]")]
    Rule {
        key: String,
        message: String,
        rule: &'static str,
    },
}

/// Settings that passed validation, with the mapping table indexed for the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidSettings {
    settings: Settings,
    mapping: BTreeMap<String, CrmUserId>,
}

impl ValidSettings {
    /// Parses a TOML settings document and validates it.
    pub fn parse_toml(text: &str) -> Result<Self, SettingsError> {
        // The path tracker names the key of a value refused by its type (a CRM user id of 0),
        // which toml's own message does not.
        let settings: Settings = serde_path_to_error::deserialize(toml::Deserializer::new(text))
            .map_err(|e| syntax_error(text, e.path(), e.inner()))?;
        Self::new(settings)
    }

    /// Validates settings built in code (or decoded from JSON by the admin API).
    pub fn new(settings: Settings) -> Result<Self, SettingsError> {
        validate(&settings)?;
        let mapping = settings
            .employees
            .iter()
            .filter_map(|e| e.crm_user_id.map(|id| (e.extension.trim().to_string(), id)))
            .collect();
        Ok(ValidSettings { settings, mapping })
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The CRM user an employee is mapped to; `None` means unmapped (absent, or listed without
    /// a CRM user).
    pub fn crm_user_of(&self, extension: &str) -> Option<CrmUserId> {
        self.mapping.get(extension).copied()
    }

    /// The fallback user when "Save all calls" is on.
    pub fn fallback_user(&self) -> Option<CrmUserId> {
        let s = &self.settings.calls.save_all_calls;
        if s.enabled {
            s.crm_user_id
        } else {
            None
        }
    }
}

impl Default for ValidSettings {
    fn default() -> Self {
        ValidSettings::new(Settings::default()).expect("default settings are valid")
    }
}

fn syntax_error(text: &str, key: &serde_path_to_error::Path, e: &toml::de::Error) -> SettingsError {
    let (line, column) = match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
            (line, column)
        }
        None => (0, 0),
    };
    // toml's message may span lines; the contract is one line.
    let mut message = e.message().split_whitespace().collect::<Vec<_>>().join(" ");
    if key.iter().next().is_some() {
        message = format!("{key}: {message}");
    }
    SettingsError::Syntax {
        line,
        column,
        message,
    }
}

fn rule(key: &str, rule: &'static str, message: impl Into<String>) -> SettingsError {
    SettingsError::Rule {
        key: key.to_string(),
        message: message.into(),
        rule,
    }
}

fn validate(s: &Settings) -> Result<(), SettingsError> {
    let c = &s.calls;
    // S2: extended-package settings cannot be switched on in the basic package.
    if s.plan == Plan::Basic {
        let extended_only: [(&str, &str, bool); 4] = [
            (
                "calls.save_all_calls.enabled",
                "\"Save all calls\"",
                c.save_all_calls.enabled,
            ),
            (
                "calls.missed_group.responsible_enabled",
                "\"Responsible for missed calls to a group\"",
                c.missed_group.responsible_enabled,
            ),
            (
                "calls.missed_tasks.enabled",
                "\"Create tasks for missed calls\"",
                c.missed_tasks.enabled,
            ),
            (
                "speech_analytics.save",
                "\"Save speech analytics data\"",
                s.speech_analytics.save,
            ),
        ];
        for (key, label, on) in extended_only {
            if on {
                return Err(rule(
                    key,
                    "S2",
                    format!("{label} belongs to the extended package and cannot be on with plan = \"basic\""),
                ));
            }
        }
    }
    // S1: "Save all calls" needs the CRM user it attaches calls to.
    if c.save_all_calls.enabled && c.save_all_calls.crm_user_id.is_none() {
        return Err(rule(
            "calls.save_all_calls.crm_user_id",
            "S1",
            "\"Save all calls\" is on but names no CRM user to attach unmapped employees' calls to",
        ));
    }
    if c.missed_group.responsible_enabled && c.missed_group.responsible_crm_user_id.is_none() {
        return Err(rule(
            "calls.missed_group.responsible_crm_user_id",
            "M1",
            "\"Responsible for missed calls to a group\" is on but names no CRM user",
        ));
    }
    if c.missed_ivr.record && c.missed_ivr.responsible_crm_user_id.is_none() {
        return Err(rule(
            "calls.missed_ivr.responsible_crm_user_id",
            "M3",
            "\"Record calls missed in IVR\" is on but names no responsible CRM user",
        ));
    }
    if c.missed_tasks.due_minutes == 0 || c.missed_tasks.due_minutes > 1500 {
        return Err(rule(
            "calls.missed_tasks.due_minutes",
            "M5",
            "must be between 1 and 1500 minutes",
        ));
    }
    if c.missed_tasks.evening_from_hour > 24 {
        return Err(rule(
            "calls.missed_tasks.evening_from_hour",
            "M5",
            "must be an hour between 0 and 24",
        ));
    }
    if s.utc_offset_minutes.abs() > 14 * 60 {
        return Err(rule(
            "utc_offset_minutes",
            "S0",
            "must be within -840..=840 minutes",
        ));
    }
    // S4: the mapping table is one-to-one.
    let mut extensions = BTreeSet::new();
    let mut users = BTreeMap::new();
    for (i, e) in s.employees.iter().enumerate() {
        let ext = e.extension.trim();
        if ext.is_empty() {
            return Err(rule(
                &format!("employees[{i}].extension"),
                "S4",
                "must not be empty",
            ));
        }
        if !extensions.insert(ext.to_string()) {
            return Err(rule(
                &format!("employees[{i}].extension"),
                "S4",
                format!("extension \"{ext}\" is listed twice; one employee maps to at most one CRM user"),
            ));
        }
        if let Some(user) = e.crm_user_id {
            if let Some(other) = users.insert(user, ext.to_string()) {
                return Err(rule(
                    &format!("employees[{i}].crm_user_id"),
                    "S4",
                    format!("CRM user {user} is already mapped from extension \"{other}\""),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_documented_defaults() {
        let v = ValidSettings::parse_toml("").unwrap();
        let s = v.settings();
        assert_eq!(s.plan, Plan::Extended);
        assert_eq!(s.calls.incoming.new_client, NewClientAction::Contact);
        assert_eq!(s.calls.incoming.repeat_client, RepeatClientAction::Manual);
        assert_eq!(
            s.calls.missed_group.owner_when_unset,
            MissedGroupOwner::First
        );
        assert!(!s.calls.save_all_calls.enabled);
        assert!(!s.speech_analytics.save);
        assert_eq!(v.fallback_user(), None);
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let err = ValidSettings::parse_toml(
            "plan = \"extended\"\n[calls.save_all_calls]\nenabeld = true\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("enabeld"), "{err}");
        assert!(err.starts_with("line 3"), "{err}");
        assert!(!err.contains('\n'));
    }

    #[test]
    fn unknown_value_is_named() {
        let err = ValidSettings::parse_toml("[calls.incoming]\nnew_client = \"deal\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("deal") && err.starts_with("line 2"), "{err}");
    }

    #[test]
    fn save_all_calls_on_basic_plan_is_refused_s2() {
        let err = ValidSettings::parse_toml(
            "plan = \"basic\"\n[calls.save_all_calls]\nenabled = true\ncrm_user_id = 9000\n",
        )
        .unwrap_err();
        assert!(matches!(err, SettingsError::Rule { rule: "S2", .. }));
        assert!(
            err.to_string().starts_with("calls.save_all_calls.enabled:"),
            "{err}"
        );
    }

    #[test]
    fn save_all_calls_without_user_is_refused_s1() {
        let err =
            ValidSettings::parse_toml("[calls.save_all_calls]\nenabled = true\n").unwrap_err();
        assert!(
            matches!(err, SettingsError::Rule { rule: "S1", .. }),
            "{err}"
        );
    }

    #[test]
    fn mapping_must_be_one_to_one_s4() {
        let two_users = "[[employees]]\nextension = \"101\"\ncrm_user_id = 1\n[[employees]]\nextension = \"101\"\ncrm_user_id = 2\n";
        assert!(ValidSettings::parse_toml(two_users)
            .unwrap_err()
            .to_string()
            .contains("listed twice"));
        let shared_user = "[[employees]]\nextension = \"101\"\ncrm_user_id = 1\n[[employees]]\nextension = \"102\"\ncrm_user_id = 1\n";
        let err = ValidSettings::parse_toml(shared_user)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("employees[1].crm_user_id") && err.contains("\"101\""),
            "{err}"
        );
    }

    #[test]
    fn crm_user_id_of_zero_is_refused_naming_its_key() {
        let err = ValidSettings::parse_toml(
            "[[employees]]\nextension = \"101\"\ncrm_user_id = 1\n[[employees]]\nextension = \"102\"\ncrm_user_id = 0\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("line 6, column 15: employees[1].crm_user_id: ")
                && err.ends_with("a CRM user id must be a positive integer, not 0"),
            "{err}"
        );
        let err =
            ValidSettings::parse_toml("[calls.save_all_calls]\nenabled = true\ncrm_user_id = 0\n")
                .unwrap_err()
                .to_string();
        assert!(
            err.contains("calls.save_all_calls.crm_user_id: a CRM user id must be a positive"),
            "{err}"
        );
    }

    #[test]
    fn crm_user_id_reads_and_writes_as_the_bare_number() {
        let id: CrmUserId = serde_json::from_str("1001").unwrap();
        assert_eq!(id.get(), 1001);
        assert_eq!(serde_json::to_string(&id).unwrap(), "1001");
        assert_eq!(id.to_string(), "1001");
        assert!(serde_json::from_str::<CrmUserId>("0")
            .unwrap_err()
            .to_string()
            .contains("positive integer"));
        assert!(serde_json::from_str::<CrmUserId>("-5").is_err());
    }

    #[test]
    fn crm_user_id_from_text() {
        assert_eq!(" 42 ".parse::<CrmUserId>().map(CrmUserId::get), Ok(42));
        assert_eq!("0".parse::<CrmUserId>(), Err(CrmUserIdError::Zero));
        assert_eq!(
            "x1".parse::<CrmUserId>(),
            Err(CrmUserIdError::NotANumber("x1".to_string()))
        );
        assert_eq!(
            "".parse::<CrmUserId>().unwrap_err().to_string(),
            "a CRM user id must be a positive integer, not \"\""
        );
        assert_eq!(CrmUserId::new(0), Err(CrmUserIdError::Zero));
    }

    #[test]
    fn listed_without_crm_user_is_unmapped() {
        let v = ValidSettings::parse_toml("[[employees]]\nextension = \"105\"\nname = \"Anna\"\n")
            .unwrap();
        assert_eq!(v.crm_user_of("105"), None);
    }
}
