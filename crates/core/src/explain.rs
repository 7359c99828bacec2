//! Why a call landed where it did, in words: one sentence per rule id, filled in with the
//! employee, the CRM user and the setting that decided it.
//!
//! The one place these words live: the journal page, the entries API (`why` beside the rule
//! ids) and the note written to the CRM all call [`record_why`] / [`ignored_why`] /
//! [`entry_why`], so the three never say different things. `rule_labels.rs` keeps the short
//! labels for consoles; these are the sentences a person reads when asking "where is my call?".

use crate::assembler::Direction;
use crate::plan::{CallRecord, Entities, EntryPlan, Ignored, Rule};
use crate::settings::{CrmUserId, MissedGroupOwner, NewClientAction, Settings};
use std::collections::BTreeMap;

/// The language of the sentences (the UI's two languages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    En,
    Ru,
}

impl Lang {
    /// `"ru"` is Russian; anything else English.
    pub fn from_code(code: &str) -> Lang {
        if code.eq_ignore_ascii_case("ru") {
            Lang::Ru
        } else {
            Lang::En
        }
    }
}

/// What the sentences name people by: the tenant's settings (employees' names, the settings the
/// rules read) and, when known, the CRM users' names (the CRM's `/api/v4/users`; without them a
/// user is named by id).
#[derive(Debug, Clone, Copy)]
pub struct Names<'a> {
    pub settings: &'a Settings,
    pub crm_users: Option<&'a BTreeMap<CrmUserId, String>>,
    pub lang: Lang,
}

impl<'a> Names<'a> {
    pub fn new(settings: &'a Settings, lang: Lang) -> Names<'a> {
        Names {
            settings,
            crm_users: None,
            lang,
        }
    }

    pub fn with_crm_users(mut self, users: &'a BTreeMap<CrmUserId, String>) -> Names<'a> {
        self.crm_users = Some(users);
        self
    }

    /// "Anna (105)" when the mapping table names the employee, else "employee 105".
    pub fn employee(&self, extension: Option<&str>) -> String {
        let Some(ext) = extension else {
            return match self.lang {
                Lang::En => "no employee".into(),
                Lang::Ru => "ни один сотрудник".into(),
            };
        };
        let name = self
            .settings
            .employees
            .iter()
            .find(|e| e.extension == ext)
            .map(|e| e.name.trim())
            .filter(|n| !n.is_empty());
        match (name, self.lang) {
            (Some(name), _) => format!("{name} ({ext})"),
            (None, Lang::En) => format!("employee {ext}"),
            (None, Lang::Ru) => format!("сотрудник {ext}"),
        }
    }

    /// "Ivan Petrov" when the CRM's user list is known, else "CRM user 9000" (in Russian in the
    /// genitive, "пользователя CRM 9000", which is how the sentences use it: "на …").
    pub fn crm_user(&self, id: CrmUserId) -> String {
        match (
            self.crm_users
                .and_then(|users| users.get(&id))
                .map(|n| n.trim())
                .filter(|n| !n.is_empty()),
            self.lang,
        ) {
            (Some(name), _) => name.to_string(),
            (None, Lang::En) => format!("CRM user {id}"),
            (None, Lang::Ru) => format!("пользователя CRM {id}"),
        }
    }
}

/// What a sentence is about: the record or ignored item the rule was applied to.
struct Subject<'a> {
    extension: Option<&'a str>,
    /// The responsible user, for a written record; `None` for an ignored item.
    crm_user: Option<CrmUserId>,
    entities: Option<&'a Entities>,
    direction: Option<Direction>,
}

/// The sentence of one rule applied to one subject.
fn sentence(rule: Rule, s: &Subject<'_>, names: &Names<'_>) -> String {
    let ru = names.lang == Lang::Ru;
    let employee = names.employee(s.extension);
    let user = s.crm_user.map(|id| names.crm_user(id));
    let user = user.as_deref().unwrap_or(if ru {
        "ответственного"
    } else {
        "the responsible user"
    });
    let settings = names.settings;
    match rule {
        Rule::A4 => if ru {
            "Звонок завершён: пришла итоговая сводка АТС или все участники положили трубку."
        } else {
            "The call was complete: the PBX's summary came, or every leg hung up and nothing more arrived."
        }
        .into(),
        Rule::A4a => if ru {
            "По звонку долго ничего не приходило, хотя плечо ещё не было завершено: он записан с тем, что было известно."
        } else {
            "Nothing arrived for this call for a long time while a leg was still up: it was written with what was known."
        }
        .into(),
        Rule::A4b => if ru {
            "Восстановлен из статистики АТС: уведомления о звонке (или о его конце) не дошли. Статистика не говорит, кому группа предлагала звонок, о переводах и удержаниях между первым и последним участником, о нажатых клавишах и номере коллтрекинга."
        } else {
            "Recovered from the PBX's statistics: the call's webhooks (or those of its end) never arrived. Statistics do not say who a group offered the call to, nor the transfers and holds between the first and the last party, the keys pressed or the call-tracking number."
        }
        .into(),
        Rule::A5 => match (s.direction, ru) {
            (Some(Direction::Internal), false) => {
                "A call between employees, with no client: internal calls are not written to the CRM.".into()
            }
            (Some(Direction::Internal), true) => {
                "Звонок между сотрудниками, без клиента: внутренние звонки в CRM не записываются.".into()
            }
            (Some(Direction::Outbound), false) => "An outgoing call: an employee called the client.".into(),
            (Some(Direction::Outbound), true) => "Исходящий звонок: сотрудник позвонил клиенту.".into(),
            (_, false) => "An incoming call: the client called the business.".into(),
            (_, true) => "Входящий звонок: клиент позвонил в компанию.".into(),
        },
        Rule::A6 => if ru {
            "Никто не ответил: это пропущенный звонок."
        } else {
            "Nobody answered: it is a missed call."
        }
        .into(),
        Rule::P1 => if ru {
            format!("{employee} есть в таблице соответствия: звонок записан на {user}.")
        } else {
            format!("{employee} is in the mapping table: the call is written on {user}.")
        },
        Rule::P2 => match (s.extension, ru) {
            (Some(_), true) => format!("{employee} нет в таблице соответствия; «Сохранять все звонки» записывает такие звонки на {user}."),
            (Some(_), false) => format!("{employee} is not in the mapping table; Save all calls attaches such calls to {user}."),
            (None, true) => format!("Звонок не достался ни одному сотруднику; «Сохранять все звонки» записывает его на {user}."),
            (None, false) => format!("No employee had the call; Save all calls attaches it to {user}."),
        },
        Rule::P3 => match (s.extension, ru) {
            (Some(_), true) => format!("{employee} нет в таблице соответствия, а «Сохранять все звонки» выключено: этот разговор не записан."),
            (Some(_), false) => format!("{employee} is not in the mapping table and Save all calls is off: this conversation is not written."),
            (None, true) => "Звонок не достался ни одному сотруднику, а «Сохранять все звонки» выключено: он не записан.".into(),
            (None, false) => "No employee had the call and Save all calls is off: it is not written.".into(),
        },
        Rule::P4 => creates(s.entities, &user_or_self(s, names), ru),
        Rule::P5 => if ru {
            "Звонок переведён от сотрудника без соответствия сотруднику с соответствием: каждый разговор записан отдельно, на своего пользователя."
        } else {
            "The call was transferred from an unmapped employee to a mapped one: each conversation is written on its own, on its own user."
        }
        .into(),
        Rule::P6 => if ru {
            "Звонок переведён от сотрудника с соответствием сотруднику без соответствия: каждый разговор записан отдельно, на своего пользователя."
        } else {
            "The call was transferred from a mapped employee to an unmapped one: each conversation is written on its own, on its own user."
        }
        .into(),
        Rule::P7 => if ru {
            format!("{employee} получил(а) звонок переводом, поэтому для него(неё) это входящий звонок.")
        } else {
            format!("{employee} received the call by transfer, so for them it is an incoming call.")
        },
        Rule::M1 => if ru {
            format!("Пропущен в группе: он записан на ответственного за пропущенные в группу — {user}.")
        } else {
            format!("Missed in a group: the group's responsible user for missed calls, {user}, gets it.")
        },
        Rule::M2 => {
            let which = match (settings.calls.missed_group.owner_when_unset, ru) {
                (MissedGroupOwner::First, false) => "first",
                (MissedGroupOwner::Last, false) => "last",
                (MissedGroupOwner::First, true) => "первому",
                (MissedGroupOwner::Last, true) => "последнему",
            };
            match (s.extension, ru) {
                (Some(_), false) => format!("Missed in a group with no responsible user set: it goes to {employee}, the {which} employee it rang."),
                (Some(_), true) => format!("Пропущен в группе без ответственного: он достаётся {which} сотруднику, которому он звонил, {employee}."),
                (None, false) if s.crm_user.is_some() => "Missed in a group with no responsible user set, and no employee was rung (all busy or away).".into(),
                (None, true) if s.crm_user.is_some() => "Пропущен в группе без ответственного, и ни одному сотруднику он не звонил (все заняты или не на месте).".into(),
                (None, false) => "Missed in a group with no responsible user set, and no employee was rung: with Save all calls off, nobody to write it on.".into(),
                (None, true) => "Пропущен в группе без ответственного, и ни одному сотруднику он не звонил: «Сохранять все звонки» выключено, записать его не на кого.".into(),
            }
        }
        Rule::M3 => match (s.crm_user.is_some(), ru) {
            (true, false) => format!("Missed in the voice menu: the settings record such calls on {user}."),
            (true, true) => format!("Пропущен в голосовом меню: такие звонки по настройкам записываются на {user}."),
            (false, false) => "Missed in the voice menu, and recording such calls is off in the settings: not written.".into(),
            (false, true) => "Пропущен в голосовом меню, а запись таких звонков в настройках выключена: не записан.".into(),
        },
        Rule::M4 => match (s.extension, ru) {
            (Some(_), false) => format!("A personal missed call: it goes to {employee}, the employee it was offered to."),
            (Some(_), true) => format!("Личный пропущенный: он достаётся сотруднику, которому звонили, {employee}."),
            (None, false) => "A missed call offered to no employee: nobody to write it on.".into(),
            (None, true) => "Пропущенный, не предложенный ни одному сотруднику: записать его не на кого.".into(),
        },
        Rule::M5 => if ru {
            format!("Задача перезвонить поставлена на {user} (или на ответственного за контакт, если клиент известен).")
        } else {
            format!("A call-back task is set for {user} (or the contact's responsible user, when the client is known).")
        },
        Rule::C1 => if ru {
            format!("Карточка звонка показывалась, пока телефон звонил: {user}.")
        } else {
            format!("{user} was shown the call card while the phone rang.")
        },
        Rule::C2 => if ru {
            "Расшифровка речевой аналитики сохраняется со звонком."
        } else {
            "The speech analytics transcript is saved with the call."
        }
        .into(),
        Rule::C3 => if ru {
            "Запись разговора прикреплена к звонку."
        } else {
            "The conversation's recording is attached to the call."
        }
        .into(),
    }
}

fn user_or_self(s: &Subject<'_>, names: &Names<'_>) -> String {
    s.crm_user
        .map(|id| names.crm_user(id))
        .unwrap_or_else(|| names.employee(s.extension))
}

/// P4: what the record creates for a client the CRM does not know yet.
fn creates(entities: Option<&Entities>, user: &str, ru: bool) -> String {
    let Some(entities) = entities else {
        return if ru {
            "Эта запись создаёт клиента в CRM.".into()
        } else {
            "This record creates the client in the CRM.".into()
        };
    };
    let settings = match (entities.settings, ru) {
        (crate::plan::EntitySettings::Incoming, false) => "incoming",
        (crate::plan::EntitySettings::Outgoing, false) => "outgoing",
        (crate::plan::EntitySettings::Incoming, true) => "входящих",
        (crate::plan::EntitySettings::Outgoing, true) => "исходящих",
    };
    let what = match (entities.rules.new_client, ru) {
        (NewClientAction::Contact, false) => "a contact",
        (NewClientAction::ContactAndLead, false) => "a contact and a lead",
        (NewClientAction::Unsorted, false) => "an unsorted request",
        (NewClientAction::Manual, false) => {
            "nothing by itself (manual: an employee adds the client)"
        }
        (NewClientAction::Contact, true) => "контакт",
        (NewClientAction::ContactAndLead, true) => "контакт и сделку",
        (NewClientAction::Unsorted, true) => "заявку в «Неразобранном»",
        (NewClientAction::Manual, true) => "ничего сам (вручную: клиента добавляет сотрудник)",
    };
    if ru {
        format!("Если клиента ещё нет в CRM, эта запись создаёт {what} на {user}, как велят настройки {settings} звонков.")
    } else {
        format!("If the client is not in the CRM yet, this record creates {what} on {user}, as the {settings} call settings say.")
    }
}

fn join(sentences: impl IntoIterator<Item = String>) -> String {
    sentences.into_iter().collect::<Vec<_>>().join(" ")
}

/// Why a written record is on its user, one sentence per rule id, in the record's order.
pub fn record_why(record: &CallRecord, names: &Names<'_>) -> String {
    let subject = Subject {
        extension: record.employee_extension.as_deref(),
        crm_user: Some(record.crm_user_id),
        entities: record.entities.as_ref(),
        direction: Some(record.direction),
    };
    join(record.reasons.iter().map(|r| sentence(*r, &subject, names)))
}

/// What the PBX said of the call beyond who took it, for the CRM note: the line, and the
/// call-tracking number the client came through. Empty when it said neither.
pub fn record_pbx_context(record: &CallRecord, lang: Lang) -> String {
    let mut parts = Vec::new();
    if let Some(line) = &record.line_number {
        parts.push(match lang {
            Lang::En => format!("Line {line}."),
            Lang::Ru => format!("Линия {line}."),
        });
    }
    if let Some(t) = &record.tracking {
        let kind = match (t.kind, lang) {
            (crate::TrackingKind::Dynamic, Lang::En) => "dynamic",
            (crate::TrackingKind::Static, Lang::En) => "static",
            (crate::TrackingKind::Unknown, Lang::En) => "type unknown",
            (crate::TrackingKind::Dynamic, Lang::Ru) => "динамический",
            (crate::TrackingKind::Static, Lang::Ru) => "статический",
            (crate::TrackingKind::Unknown, Lang::Ru) => "тип неизвестен",
        };
        let number = t.number.as_deref().unwrap_or("—");
        parts.push(match lang {
            Lang::En => format!("Call tracking number {number} ({kind})."),
            Lang::Ru => format!("Номер коллтрекинга {number} ({kind})."),
        });
    }
    parts.join(" ")
}

/// Why a conversation (or a missed entry) was deliberately not written.
pub fn ignored_why(ignored: &Ignored, direction: Direction, names: &Names<'_>) -> String {
    let subject = Subject {
        extension: ignored.employee_extension.as_deref(),
        crm_user: None,
        entities: None,
        direction: Some(direction),
    };
    join(
        ignored
            .reasons
            .iter()
            .map(|r| sentence(*r, &subject, names)),
    )
}

/// The entry as a whole: its own rules (A5 for an internal call, A6 for a missed one) and who
/// was shown the card (C1).
pub fn entry_why(plan: &EntryPlan, names: &Names<'_>) -> String {
    let subject = Subject {
        extension: None,
        crm_user: None,
        entities: None,
        direction: Some(plan.direction),
    };
    let mut sentences: Vec<String> = plan
        .reasons
        .iter()
        .map(|r| sentence(*r, &subject, names))
        .collect();
    if !plan.cards.is_empty() {
        let users: Vec<String> = plan.cards.iter().map(|id| names.crm_user(*id)).collect();
        sentences.push(match names.lang {
            Lang::En => format!("Shown the call card: {}.", users.join(", ")),
            Lang::Ru => format!("Карточку звонка видели: {}.", users.join(", ")),
        });
    }
    join(sentences)
}

/// The documented class of a Mango result or disconnect code (`1110`, `113x`, `2xxx`...), for
/// the texts that put a code in words; `other` for a code the documentation does not list. A code
/// missing from the list is read by its class, as the documentation says (2219 is of 221x).
pub fn pbx_code_class(code: u32) -> &'static str {
    match code {
        1000 => "1000",
        1100 => "1100",
        1110 => "1110",
        1111 => "1111",
        1120 => "1120",
        1121 => "1121",
        1122 => "1122",
        1123 => "1123",
        1130..=1139 => "113x",
        1140..=1149 => "1140",
        1150..=1159 => "115x",
        1160..=1169 => "116x",
        1170..=1179 => "117x",
        1180..=1189 => "118x",
        1190..=1199 => "119x",
        2000..=2999 => "2xxx",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Outcome;
    use crate::settings::ValidSettings;

    fn settings() -> ValidSettings {
        ValidSettings::parse_toml(
            r#"
plan = "extended"
[[employees]]
extension = "101"
name = "Olga"
crm_user_id = 1001
[[employees]]
extension = "105"
name = "Anna"
[calls.save_all_calls]
enabled = true
crm_user_id = 9000
"#,
        )
        .unwrap()
    }

    fn record(ext: &str, user: u64, reasons: Vec<Rule>) -> CallRecord {
        CallRecord {
            conversation: Some(0),
            employee_extension: Some(ext.into()),
            client_phone: Some("79161234567".into()),
            direction: Direction::Inbound,
            status: Outcome::Answered,
            call_status: 4,
            duration_s: 30,
            started_at: 1_764_000_000,
            crm_user_id: CrmUserId::new(user).unwrap(),
            reasons,
            creates_entities: false,
            entities: None,
            recording_id: None,
            transcript: false,
            task: None,
            line_number: None,
            tracking: None,
        }
    }

    #[test]
    fn an_unmapped_employee_under_save_all_calls_is_explained_with_names() {
        let valid = settings();
        let users = BTreeMap::from([(CrmUserId::new(9000).unwrap(), "Ivan Petrov".to_string())]);
        let names = Names::new(valid.settings(), Lang::En).with_crm_users(&users);
        let why = record_why(&record("105", 9000, vec![Rule::P2, Rule::P5]), &names);
        assert!(
            why.starts_with("Anna (105) is not in the mapping table; Save all calls attaches such calls to Ivan Petrov."),
            "{why}"
        );
        assert!(
            why.contains("transferred from an unmapped employee"),
            "{why}"
        );
    }

    #[test]
    fn without_names_people_are_named_by_extension_and_id() {
        let valid = settings();
        let names = Names::new(valid.settings(), Lang::En);
        let why = record_why(&record("107", 1001, vec![Rule::P1]), &names);
        assert_eq!(
            why,
            "employee 107 is in the mapping table: the call is written on CRM user 1001."
        );
        let ru = Names::new(valid.settings(), Lang::Ru);
        let why = record_why(&record("101", 1001, vec![Rule::P1]), &ru);
        assert_eq!(
            why,
            "Olga (101) есть в таблице соответствия: звонок записан на пользователя CRM 1001."
        );
    }

    #[test]
    fn every_rule_has_a_sentence_in_both_languages_and_they_differ() {
        let valid = settings();
        for lang in [Lang::En, Lang::Ru] {
            let names = Names::new(valid.settings(), lang);
            let mut seen = std::collections::HashSet::new();
            for rule in Rule::ALL {
                let why = record_why(&record("101", 1001, vec![rule]), &names);
                assert!(why.ends_with('.'), "{rule}: {why}");
                assert!(
                    seen.insert(why.clone()),
                    "{rule} repeats another rule's words: {why}"
                );
            }
        }
    }

    #[test]
    fn an_ignored_conversation_says_it_was_not_written() {
        let valid = settings();
        let names = Names::new(valid.settings(), Lang::En);
        let ignored = Ignored {
            conversation: None,
            employee_extension: None,
            reasons: vec![Rule::A6, Rule::M3],
        };
        let why = ignored_why(&ignored, Direction::Inbound, &names);
        assert_eq!(
            why,
            "Nobody answered: it is a missed call. Missed in the voice menu, and recording such calls is off in the settings: not written."
        );
    }

    #[test]
    fn the_line_and_tracking_number_are_said_for_the_crm_note() {
        let mut r = record("101", 1001, vec![Rule::P1]);
        assert_eq!(record_pbx_context(&r, Lang::En), "");
        r.line_number = Some("74951234567".into());
        r.tracking = Some(crate::CallTracking {
            number: Some("74950001122".into()),
            kind: crate::TrackingKind::Dynamic,
        });
        assert_eq!(
            record_pbx_context(&r, Lang::En),
            "Line 74951234567. Call tracking number 74950001122 (dynamic)."
        );
        assert_eq!(
            record_pbx_context(&r, Lang::Ru),
            "Линия 74951234567. Номер коллтрекинга 74950001122 (динамический)."
        );
    }

    #[test]
    fn the_entry_names_who_saw_the_card() {
        let valid = settings();
        let names = Names::new(valid.settings(), Lang::En);
        let plan = EntryPlan {
            entry_id: "e1".into(),
            direction: Direction::Internal,
            outcome: Outcome::Answered,
            missed_kind: None,
            client_phone: None,
            line_number: None,
            started_at: 0,
            ended_at: 0,
            reasons: vec![Rule::A5],
            records: vec![],
            ignored: vec![],
            cards: vec![CrmUserId::new(1001).unwrap()],
            tracking: None,
            keypresses: vec![],
            entry_result: None,
            disconnect_reason: None,
        };
        assert_eq!(
            entry_why(&plan, &names),
            "A call between employees, with no client: internal calls are not written to the CRM. Shown the call card: CRM user 1001."
        );
    }
}
