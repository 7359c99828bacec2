//! The policy: settings + an assembled entry -> the plan (rules P1-P7, M1-M5, C1-C5).

use crate::assembler::{Assembly, Conversation, Direction, Missed, MissedKind};
use crate::plan::*;
use crate::settings::{CrmUserId, MissedGroupOwner, ValidSettings};
use std::collections::BTreeSet;

/// Decides what the CRM gets for one assembled entry. Pure and total: every entry gets a plan.
pub fn plan(settings: &ValidSettings, a: &Assembly) -> EntryPlan {
    let mut plan = plan_entry(settings, a);
    if a.recovered {
        // A4b: the entry (or its end) is known only from the PBX's statistics; every record
        // says so, since what statistics cannot tell (offers, transfers) may be missing from it.
        plan.reasons.push(Rule::A4b);
        for record in &mut plan.records {
            record.reasons.push(Rule::A4b);
        }
        for ignored in &mut plan.ignored {
            ignored.reasons.push(Rule::A4b);
        }
    }
    plan
}

fn plan_entry(settings: &ValidSettings, a: &Assembly) -> EntryPlan {
    let mut plan = EntryPlan {
        entry_id: a.entry_id.clone(),
        direction: a.direction,
        outcome: if a.conversations.is_empty() {
            Outcome::Missed
        } else {
            Outcome::Answered
        },
        missed_kind: a.missed.as_ref().map(|m| m.kind),
        client_phone: a.client_phone.clone(),
        line_number: a.line_number.clone(),
        started_at: a.started_at,
        ended_at: a.ended_at,
        reasons: Vec::new(),
        records: Vec::new(),
        ignored: Vec::new(),
        cards: Vec::new(),
        tracking: a.tracking.clone(),
        keypresses: a.keypresses.clone(),
        entry_result: a.entry_result,
        disconnect_reason: a.disconnect_reason,
    };
    if a.direction == Direction::Internal {
        // A5: internal calls are never written, and show no card (C1). A7: answered only when
        // some leg connected.
        plan.outcome = if a.talked {
            Outcome::Answered
        } else {
            Outcome::Missed
        };
        plan.reasons.push(Rule::A5);
        return plan;
    }
    plan.cards = cards(settings, a);
    match &a.missed {
        None => plan_conversations(settings, a, &mut plan),
        Some(missed) => {
            plan.reasons.push(Rule::A6);
            plan_missed(settings, a, missed, &mut plan);
        }
    }
    for record in &mut plan.records {
        record.line_number = a.line_number.clone();
        record.tracking = a.tracking.clone();
    }
    plan
}

/// C1 = R6: the card goes to the CRM users of mapped employees who rang, talked or were
/// consulted while a client took part; never to unmapped ones, whatever "Save all calls" says.
fn cards(settings: &ValidSettings, a: &Assembly) -> Vec<CrmUserId> {
    let users: BTreeSet<CrmUserId> = a
        .participants
        .iter()
        .filter_map(|ext| settings.crm_user_of(ext))
        .collect();
    users.into_iter().collect()
}

/// Who a conversation's record belongs to: P1 (mapped), P2 (fallback), or none (P3).
fn attribute(settings: &ValidSettings, extension: &str) -> Result<(CrmUserId, Rule), Rule> {
    match settings.crm_user_of(extension) {
        Some(user) => Ok((user, Rule::P1)),
        None => match settings.fallback_user() {
            Some(user) => Ok((user, Rule::P2)),
            None => Err(Rule::P3),
        },
    }
}

fn plan_conversations(settings: &ValidSettings, a: &Assembly, plan: &mut EntryPlan) {
    let mapped: Vec<bool> = a
        .conversations
        .iter()
        .map(|c| settings.crm_user_of(&c.employee_extension).is_some())
        .collect();
    let save_all = settings.fallback_user().is_some();
    // P5/P6 (R3/R4): a transfer across the mapping table's edge, named on both sides of it. Only
    // a conversation received by transfer has a giver (A2c): the client's previous conversation.
    let mut transfer: Vec<Vec<Rule>> = vec![Vec::new(); a.conversations.len()];
    for (i, conv) in a.conversations.iter().enumerate() {
        if !conv.received_by_transfer {
            continue;
        }
        transfer[i].push(Rule::P7);
        let giver = a.conversations[..i]
            .iter()
            .rposition(|c| c.client_phone == conv.client_phone);
        if let (true, Some(giver)) = (save_all, giver) {
            if mapped[giver] != mapped[i] {
                let rule = if mapped[i] { Rule::P5 } else { Rule::P6 };
                transfer[giver].push(rule);
                transfer[i].push(rule);
            }
        }
    }
    for (conv, transfer) in a.conversations.iter().zip(transfer) {
        match attribute(settings, &conv.employee_extension) {
            Ok((user, rule)) => {
                let mut reasons = vec![rule];
                reasons.extend(transfer);
                plan.records
                    .push(conversation_record(settings, conv, user, reasons));
            }
            Err(rule) => plan.ignored.push(Ignored {
                conversation: Some(conv.index),
                employee_extension: Some(conv.employee_extension.clone()),
                reasons: sorted(vec![rule]),
            }),
        }
    }
    // P4: entities once per entry and client, by the client's first normally processed
    // conversation, else by its first fallback one (an unknown client must land somewhere).
    let records = &plan.records;
    let creators: Vec<usize> = (0..records.len())
        .filter(|&i| {
            // The client's first record stands for the client.
            !records[..i]
                .iter()
                .any(|r| r.client_phone == records[i].client_phone)
        })
        .map(|i| {
            records
                .iter()
                .position(|r| {
                    r.client_phone == records[i].client_phone && r.reasons.contains(&Rule::P1)
                })
                .unwrap_or(i)
        })
        .collect();
    for i in creators {
        make_creator(settings, &mut plan.records[i]);
    }
    for r in &mut plan.records {
        r.reasons = sorted(std::mem::take(&mut r.reasons));
    }
}

fn conversation_record(
    settings: &ValidSettings,
    conv: &Conversation,
    user: CrmUserId,
    mut reasons: Vec<Rule>,
) -> CallRecord {
    let transcript = conv.recording_id.is_some() && settings.settings().speech_analytics.save;
    if conv.recording_id.is_some() {
        reasons.push(Rule::C3);
    }
    if transcript {
        reasons.push(Rule::C2);
    }
    CallRecord {
        conversation: Some(conv.index),
        employee_extension: Some(conv.employee_extension.clone()),
        client_phone: Some(conv.client_phone.clone()),
        direction: conv.direction,
        status: Outcome::Answered,
        call_status: 4,
        duration_s: conv.duration_s,
        started_at: conv.started_at,
        crm_user_id: user,
        reasons,
        creates_entities: false,
        entities: None,
        recording_id: conv.recording_id.clone(),
        transcript,
        task: None,
        line_number: None,
        tracking: None,
    }
}

fn make_creator(settings: &ValidSettings, record: &mut CallRecord) {
    let calls = &settings.settings().calls;
    // P7: a conversation received by transfer is inbound and follows the incoming settings.
    let (kind, rules) = match record.direction {
        Direction::Outbound => (EntitySettings::Outgoing, calls.outgoing),
        _ => (EntitySettings::Incoming, calls.incoming),
    };
    record.creates_entities = true;
    record.entities = Some(Entities {
        settings: kind,
        rules,
        responsible_crm_user_id: record.crm_user_id,
    });
    record.reasons.push(Rule::P4);
}

fn plan_missed(settings: &ValidSettings, a: &Assembly, missed: &Missed, plan: &mut EntryPlan) {
    let calls = &settings.settings().calls;
    let first = missed.first_offered().map(str::to_string);
    let decision: Result<(CrmUserId, Vec<Rule>), Vec<Rule>>;
    let employee: Option<String>;
    match missed.kind {
        MissedKind::Group => {
            let owner = match calls.missed_group.owner_when_unset {
                MissedGroupOwner::First => first,
                MissedGroupOwner::Last => missed.last_offered().map(str::to_string),
            };
            employee = owner.clone();
            let group = &calls.missed_group;
            decision = match (
                group
                    .responsible_enabled
                    .then_some(group.responsible_crm_user_id)
                    .flatten(),
                owner,
            ) {
                (Some(user), _) => Ok((user, vec![Rule::M1])),
                // No employee was offered the call (all busy or away): nobody it "ended on", so
                // the fallback user keeps the client's missed call when Save all calls is on.
                (None, None) => match settings.fallback_user() {
                    Some(user) => Ok((user, vec![Rule::M2, Rule::P2])),
                    None => Err(vec![Rule::M2, Rule::P3]),
                },
                (None, Some(ext)) => match attribute(settings, &ext) {
                    Ok((user, rule)) => Ok((user, vec![Rule::M2, rule])),
                    Err(rule) => Err(vec![Rule::M2, rule]),
                },
            };
        }
        MissedKind::Ivr => {
            employee = None;
            let ivr = &calls.missed_ivr;
            decision = match ivr.record.then_some(ivr.responsible_crm_user_id).flatten() {
                Some(user) => Ok((user, vec![Rule::M3])),
                None => Err(vec![Rule::M3]),
            };
        }
        MissedKind::Personal => {
            employee = first.clone();
            decision = match first {
                Some(ext) => match attribute(settings, &ext) {
                    Ok((user, rule)) => Ok((user, vec![Rule::M4, rule])),
                    Err(rule) => Err(vec![Rule::M4, rule]),
                },
                None => Err(vec![Rule::M4]),
            };
        }
    }
    match decision {
        Err(reasons) => plan.ignored.push(Ignored {
            conversation: None,
            employee_extension: employee,
            reasons: sorted(reasons),
        }),
        Ok((user, reasons)) => {
            let mut record = CallRecord {
                conversation: None,
                employee_extension: employee,
                client_phone: a.client_phone.clone(),
                direction: a.direction,
                status: Outcome::Missed,
                call_status: missed_call_status(a.disconnect_reason),
                duration_s: 0,
                started_at: a.started_at,
                crm_user_id: user,
                reasons,
                creates_entities: false,
                entities: None,
                recording_id: None,
                transcript: false,
                task: None,
                line_number: None,
                tracking: None,
            };
            make_creator(settings, &mut record);
            if calls.missed_tasks.enabled {
                record.task = Some(missed_task(settings, a, user));
                record.reasons.push(Rule::M5);
            }
            record.reasons = sorted(record.reasons);
            plan.records.push(record);
        }
    }
}

/// amoCRM `call_status` of a missed call from the PBX's disconnect reason.
pub fn missed_call_status(reason: Option<u32>) -> u8 {
    match reason {
        Some(1121) => 7,
        Some(3200) | Some(1133) => 5,
        _ => 6,
    }
}

const DAY: i64 = 86_400;

/// M5: due `due_minutes` after the call, or 09:00 local the next working day for a call that
/// ended in the evening.
fn missed_task(settings: &ValidSettings, a: &Assembly, user: CrmUserId) -> Task {
    let s = settings.settings();
    let t = &s.calls.missed_tasks;
    let offset = i64::from(s.utc_offset_minutes) * 60;
    let local = a.ended_at + offset;
    let local_day = local.div_euclid(DAY);
    let hour = local.rem_euclid(DAY) / 3600;
    let due_at = if hour >= i64::from(t.evening_from_hour) {
        let mut day = local_day + 1;
        // 1970-01-01 was a Thursday: (day + 3) % 7 is 0 on Monday ... 5 Saturday, 6 Sunday.
        while (day + 3).rem_euclid(7) >= 5 {
            day += 1;
        }
        day * DAY + 9 * 3600 - offset
    } else {
        a.ended_at + i64::from(t.due_minutes) * 60
    };
    Task {
        responsible_crm_user_id: user,
        prefer_contact_owner: t.assign_to_contact_owner,
        due_at,
        dedupe_key: format!(
            "{}:{}",
            a.client_phone.as_deref().unwrap_or(""),
            civil_date(local_day)
        ),
    }
}

/// `YYYY-MM-DD` of a day number since 1970-01-01 (Howard Hinnant's civil-from-days). Also the
/// web UI's dates, so that one calendar serves both.
pub fn civil_date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The day number since 1970-01-01 of a `YYYY-MM-DD` date (an RFC 3339 full-date); `None` for
/// anything else, such as `2025-02-30`. The inverse of [`civil_date`] (Hinnant's
/// days-from-civil), checked by going back through it.
pub fn parse_civil_date(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    let well_formed = bytes.len() == 10
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && bytes
            .iter()
            .enumerate()
            .all(|(i, b)| i == 4 || i == 7 || b.is_ascii_digit());
    if !well_formed {
        return None;
    }
    let (y, m, d): (i64, i64, i64) = (
        text[..4].parse().ok()?,
        text[5..7].parse().ok()?,
        text[8..].parse().ok()?,
    );
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    (civil_date(days) == text).then_some(days)
}

fn sorted(mut reasons: Vec<Rule>) -> Vec<Rule> {
    reasons.sort();
    reasons.dedup();
    reasons
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_date(0), "1970-01-01");
        assert_eq!(civil_date(20_416), "2025-11-24");
        assert_eq!(civil_date(-1), "1969-12-31");
        for days in [-1, 0, 59, 20_416, 20_513, 30_000] {
            assert_eq!(parse_civil_date(&civil_date(days)), Some(days));
        }
        for bad in [
            "2025-02-30",
            "2025-13-01",
            "2025-1-01",
            "20251124",
            "2025-11-24T00:00",
            "",
        ] {
            assert_eq!(parse_civil_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn busy_and_invalid_numbers_map_to_their_statuses() {
        assert_eq!(missed_call_status(Some(1121)), 7);
        assert_eq!(missed_call_status(Some(3200)), 5);
        assert_eq!(missed_call_status(Some(1111)), 6);
        assert_eq!(missed_call_status(None), 6);
    }
}
