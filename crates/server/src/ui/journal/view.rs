//! What the journal shows of a stored entry: its plan read back into the core's types, the
//! reasons in words (`core::explain`, the same sentences as the entries API and the CRM note),
//! the conversations on a timeline, and the delivery state.

use super::super::i18n::Catalogue;
use callbridge_core::assembler::Direction;
use callbridge_core::explain::{self, Names};
use callbridge_core::plan::{CallRecord, EntryPlan, Outcome};
use callbridge_store::StoredEntry;

/// The badge class of a delivery state.
pub fn delivery_badge(state: &str) -> &'static str {
    match state {
        "delivered" => "badge-ok",
        "parked" => "badge-error",
        "pending" => "badge-warn",
        _ => "",
    }
}

/// A stored plan read back; `None` for a plan this version cannot read (shown as such, never a
/// failed page).
pub fn read_plan(entry: &StoredEntry) -> Option<EntryPlan> {
    serde_json::from_value(entry.plan.clone()).ok()
}

/// `+7 916 123-45-67` for a Russian number, `+<digits>` for another one.
pub fn format_phone(digits: &str) -> String {
    let d: Vec<char> = digits.chars().collect();
    if d.len() == 11 && d[0] == '7' {
        let s = |a: usize, b: usize| d[a..b].iter().collect::<String>();
        format!("+7 {} {}-{}-{}", s(1, 4), s(4, 7), s(7, 9), s(9, 11))
    } else if digits.chars().all(|c| c.is_ascii_digit()) && !digits.is_empty() {
        format!("+{digits}")
    } else {
        digits.to_string()
    }
}

/// A Unix time (seconds) in the tenant's local time, `YYYY-MM-DD HH:MM`.
pub fn local_time(unix_s: i64, utc_offset_minutes: i32) -> String {
    let secs = unix_s + i64::from(utc_offset_minutes) * 60;
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    format!(
        "{} {:02}:{:02}",
        callbridge_core::policy::civil_date(days),
        rest / 3600,
        rest % 3600 / 60
    )
}

/// `1:05` for 65 seconds, `1:01:05` past an hour.
pub fn duration(seconds: i64) -> String {
    let s = seconds.max(0);
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s % 3600 / 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

pub fn direction_key(direction: Direction) -> &'static str {
    match direction {
        Direction::Inbound => "journal.direction.inbound",
        Direction::Outbound => "journal.direction.outbound",
        Direction::Internal => "journal.direction.internal",
    }
}

pub fn outcome_key(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Answered => "journal.outcome.answered",
        Outcome::Missed => "journal.outcome.missed",
    }
}

/// One line of the journal's list.
pub struct Row {
    pub entry_id: String,
    pub time: String,
    pub client: String,
    pub direction: String,
    pub outcome: String,
    pub missed: bool,
    /// "105 → Ivan Petrov; 101 → Olga" (or what was not written).
    pub landed: String,
    pub delivery: &'static str,
}

impl Row {
    pub fn new(t: &Catalogue, entry: &StoredEntry, names: &Names<'_>, offset_min: i32) -> Row {
        let delivery = entry.delivery_state();
        let Some(plan) = read_plan(entry) else {
            return Row {
                entry_id: entry.entry_id.clone(),
                time: local_time(entry.planned_at_ms / 1000, offset_min),
                client: "—".into(),
                direction: "—".into(),
                outcome: "—".into(),
                missed: false,
                landed: t.get("journal.unreadable").to_string(),
                delivery,
            };
        };
        let mut landed: Vec<String> = plan
            .records
            .iter()
            .map(|r| {
                format!(
                    "{} → {}",
                    names.employee(r.employee_extension.as_deref()),
                    names.crm_user(r.crm_user_id)
                )
            })
            .collect();
        if landed.is_empty() {
            landed.push(t.get("journal.not-written").to_string());
        }
        Row {
            entry_id: entry.entry_id.clone(),
            time: local_time(plan.started_at, offset_min),
            client: plan
                .client_phone
                .as_deref()
                .map(format_phone)
                .unwrap_or_else(|| "—".into()),
            direction: t.get(direction_key(plan.direction)).to_string(),
            outcome: t.get(outcome_key(plan.outcome)).to_string(),
            missed: plan.outcome == Outcome::Missed,
            landed: landed.join("; "),
            delivery,
        }
    }
}

/// One conversation (or a missed entry's single record) on the entry page.
pub struct Conversation {
    pub title: String,
    pub who: String,
    /// The conversation's own client when it is not the entry's (a consult with another
    /// external number, A2b), formatted.
    pub other_client: Option<String>,
    pub user: String,
    pub when: String,
    pub length: String,
    pub why: String,
    pub rules: String,
    pub recording_id: Option<String>,
    pub transcript: bool,
    /// Its bar on the timeline, in thousandths of the entry's span.
    pub bar_x: i64,
    pub bar_width: i64,
    pub bar_y: i64,
}

/// A conversation (or missed entry) not written, and why.
pub struct NotWritten {
    pub who: String,
    pub why: String,
    pub rules: String,
}

/// One line of what the PBX said of the entry beyond its legs: the line, the call-tracking
/// number, the keys pressed, the PBX's own result and disconnect code.
pub struct Fact {
    pub label: String,
    pub value: String,
}

/// The PBX's facts of an entry, in words; empty when it said none of them.
pub fn pbx_facts(t: &Catalogue, plan: &EntryPlan, utc_offset_minutes: i32) -> Vec<Fact> {
    let mut facts = Vec::new();
    let mut fact = |label: &str, value: String| {
        facts.push(Fact {
            label: t.get(label).to_string(),
            value,
        })
    };
    if let Some(line) = &plan.line_number {
        fact("journal.line", format_phone(line));
    }
    if let Some(tracking) = &plan.tracking {
        let kind = match tracking.kind {
            callbridge_core::TrackingKind::Dynamic => "journal.tracking.dynamic",
            callbridge_core::TrackingKind::Static => "journal.tracking.static",
            callbridge_core::TrackingKind::Unknown => "journal.tracking.unknown",
        };
        let number = tracking.number.as_deref().map_or("—".into(), format_phone);
        fact("journal.tracking", t.fmt(kind, &[("number", &number)]));
    }
    if !plan.keypresses.is_empty() {
        let keys: Vec<String> = plan
            .keypresses
            .iter()
            .map(|k| {
                let time = local_time(k.at, utc_offset_minutes);
                let time = time.rsplit(' ').next().unwrap_or(&time);
                match &k.menu {
                    Some(menu) => t.fmt(
                        "journal.keypress",
                        &[("digits", &k.digits), ("menu", menu), ("time", time)],
                    ),
                    None => t.fmt(
                        "journal.keypress-no-menu",
                        &[("digits", &k.digits), ("time", time)],
                    ),
                }
            })
            .collect();
        fact("journal.keypresses", keys.join("; "));
    }
    if let Some(result) = plan.entry_result {
        let text = match result {
            1 => t.get("journal.pbx-result.success").to_string(),
            0 => t.get("journal.pbx-result.missed").to_string(),
            code => t.fmt("journal.pbx-result.other", &[("code", &code.to_string())]),
        };
        fact("journal.pbx-result", text);
    }
    if let Some(code) = plan.disconnect_reason {
        let class = explain::pbx_code_class(code);
        let words = t.get(&format!("journal.code.{class}")).to_string();
        fact("journal.disconnect", format!("{code}: {words}"));
    }
    facts
}

/// The height of one timeline row (SVG user units).
pub const BAR_ROW: i64 = 28;

fn rules(reasons: &[callbridge_core::Rule]) -> String {
    reasons
        .iter()
        .map(|r| r.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The conversations of a plan, placed on a timeline from the entry's start to its end.
pub fn conversations(
    t: &Catalogue,
    plan: &EntryPlan,
    names: &Names<'_>,
    offset_min: i32,
) -> Vec<Conversation> {
    let start = plan.started_at;
    let end = plan
        .records
        .iter()
        .map(|r| r.started_at + r.duration_s)
        .chain([plan.ended_at])
        .max()
        .unwrap_or(start);
    let span = (end - start).max(1);
    plan.records
        .iter()
        .enumerate()
        .map(|(row, r)| {
            let mut c = conversation(t, r, names, offset_min, start, span, row as i64);
            if r.client_phone != plan.client_phone {
                c.other_client = r.client_phone.as_deref().map(format_phone);
            }
            c
        })
        .collect()
}

fn conversation(
    t: &Catalogue,
    r: &CallRecord,
    names: &Names<'_>,
    offset_min: i32,
    start: i64,
    span: i64,
    row: i64,
) -> Conversation {
    let title = match r.conversation {
        Some(i) => t.fmt("journal.conversation", &[("n", &(i + 1).to_string())]),
        None => t.get("journal.missed-record").to_string(),
    };
    let x = ((r.started_at - start).clamp(0, span) * 1000) / span;
    // A missed call has no length: a thin mark where it rang.
    let width = ((r.duration_s.max(0) * 1000) / span).clamp(6, 1000 - x.min(994));
    Conversation {
        title,
        who: names.employee(r.employee_extension.as_deref()),
        other_client: None,
        user: names.crm_user(r.crm_user_id),
        when: local_time(r.started_at, offset_min),
        length: duration(r.duration_s),
        why: explain::record_why(r, names),
        rules: rules(&r.reasons),
        recording_id: r.recording_id.clone(),
        transcript: r.transcript,
        bar_x: x,
        bar_width: width,
        bar_y: row * BAR_ROW + 4,
    }
}

pub fn not_written(plan: &EntryPlan, names: &Names<'_>) -> Vec<NotWritten> {
    plan.ignored
        .iter()
        .map(|i| NotWritten {
            who: names.employee(i.employee_extension.as_deref()),
            why: explain::ignored_why(i, plan.direction, names),
            rules: rules(&i.reasons),
        })
        .collect()
}

/// Where a CRM answer points: the contact or lead the call was attached to, as a link into the
/// account (`None` when the answer names no record or the account's address is unknown).
pub fn crm_link(base_url: Option<&str>, answer: &serde_json::Value) -> Option<(String, String)> {
    let base = base_url?.trim_end_matches('/');
    let kind = answer.get("entity_type").and_then(|v| v.as_str())?;
    let id = answer.get("entity_id").and_then(|v| v.as_u64())?;
    let path = match kind {
        "contacts" => "contacts",
        "leads" => "leads",
        "companies" => "companies",
        _ => return None,
    };
    Some((
        format!("{base}/{path}/detail/{id}"),
        format!("{path} #{id}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_people_write_them() {
        assert_eq!(format_phone("79161234567"), "+7 916 123-45-67");
        assert_eq!(format_phone("4930123456"), "+4930123456");
        assert_eq!(format_phone("sip:x"), "sip:x");
    }

    #[test]
    fn times_and_lengths() {
        assert_eq!(local_time(1_764_000_000, 180), "2025-11-24 19:00");
        assert_eq!(local_time(1_764_000_000, 0), "2025-11-24 16:00");
        assert_eq!(duration(65), "1:05");
        assert_eq!(duration(3665), "1:01:05");
        assert_eq!(duration(-3), "0:00");
    }

    #[test]
    fn delivery_state_follows_the_worst_item() {
        let entry = |states: &[&str]| StoredEntry {
            tenant_id: "t".into(),
            entry_id: "e".into(),
            completed_by: "summary".into(),
            planned_at_ms: 0,
            first_event_id: None,
            last_event_id: None,
            plan: serde_json::Value::Null,
            outbox: states
                .iter()
                .map(|s| ("k".to_string(), s.to_string()))
                .collect(),
        };
        assert_eq!(entry(&[]).delivery_state(), "nothing_to_deliver");
        assert_eq!(entry(&["done", "parked"]).delivery_state(), "parked");
        assert_eq!(entry(&["done", "pending"]).delivery_state(), "pending");
        assert_eq!(entry(&["done", "sending"]).delivery_state(), "pending");
        assert_eq!(entry(&["done"]).delivery_state(), "delivered");
    }

    #[test]
    fn a_conversation_with_another_client_names_that_client() {
        let record = |conversation: usize, phone: &str| {
            serde_json::json!({
                "conversation": conversation, "employee_extension": "101",
                "client_phone": phone, "direction": "inbound", "status": "answered",
                "call_status": 4, "duration_s": 30, "started_at": 1_764_000_000,
                "crm_user_id": 1001, "reasons": ["P1"], "creates_entities": false,
                "entities": null, "recording_id": null, "transcript": false, "task": null
            })
        };
        let plan: EntryPlan = serde_json::from_value(serde_json::json!({
            "entry_id": "e", "direction": "inbound", "outcome": "answered",
            "missed_kind": null, "client_phone": "79161234567", "line_number": null,
            "started_at": 1_764_000_000, "ended_at": 1_764_000_100, "reasons": [],
            "records": [record(0, "79161234567"), record(1, "79035550101")],
            "ignored": [], "cards": []
        }))
        .expect("a plan");
        let settings = callbridge_core::settings::Settings::default();
        let names = Names::new(&settings, explain::Lang::En);
        let t = super::super::super::i18n::Lang::En.catalogue();
        let shown: Vec<Option<String>> = conversations(t, &plan, &names, 0)
            .into_iter()
            .map(|c| c.other_client)
            .collect();
        assert_eq!(shown, [None, Some("+7 903 555-01-01".to_string())]);
    }

    /// What the PBX said beyond the legs (line, tracking, keys, its own result codes) is shown
    /// in words; a plan stored before these fields existed still reads, with none of them.
    #[test]
    fn the_pbx_facts_are_put_in_words() {
        let base = serde_json::json!({
            "entry_id": "e", "direction": "inbound", "outcome": "answered",
            "missed_kind": null, "client_phone": "79161234567", "line_number": null,
            "started_at": 1_764_000_000, "ended_at": 1_764_000_100, "reasons": [],
            "records": [], "ignored": [], "cards": []
        });
        let t = super::super::super::i18n::Lang::En.catalogue();
        let old: EntryPlan = serde_json::from_value(base.clone()).expect("an older plan reads");
        assert!(pbx_facts(t, &old, 0).is_empty());
        let mut full = base;
        let extra = serde_json::json!({
            "line_number": "74951234567",
            "tracking": {"number": "74950001122", "kind": "dynamic"},
            "keypresses": [{"at": 1_764_000_008, "seq": 1, "digits": "2", "menu": "ivr.1"}],
            "entry_result": 1,
            "disconnect_reason": 1133
        });
        full.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let plan: EntryPlan = serde_json::from_value(full).expect("a plan");
        let shown: Vec<(String, String)> = pbx_facts(t, &plan, 180)
            .into_iter()
            .map(|f| (f.label, f.value))
            .collect();
        let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        assert_eq!(
            shown,
            pairs(&[
                ("Line", "+7 495 123-45-67"),
                (
                    "Call tracking",
                    "+7 495 000-11-22, dynamic number (one visitor)"
                ),
                ("Keys pressed", "2 in menu ivr.1 at 19:00"),
                ("PBX result", "a conversation took place (entry_result 1)"),
                (
                    "Ended",
                    "1133: the called side is unavailable or does not exist"
                ),
            ])
        );
    }

    #[test]
    fn crm_links_point_into_the_account() {
        let answer = serde_json::json!({"entity_type": "contacts", "entity_id": 42});
        assert_eq!(
            crm_link(Some("https://acme.amocrm.ru/"), &answer),
            Some((
                "https://acme.amocrm.ru/contacts/detail/42".into(),
                "contacts #42".into()
            ))
        );
        assert_eq!(crm_link(None, &answer), None);
        assert_eq!(
            crm_link(
                Some("https://a.amocrm.ru"),
                &serde_json::json!({"skipped": "x"})
            ),
            None
        );
    }
}
