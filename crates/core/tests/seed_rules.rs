//! The seed page's rules R0-R6, one named test each, plus the rules.md cases around them.
//! Staff of every test: 101 Olga and 102 Ivan are mapped (CRM users 1001, 1002); 105 Anna
//! (accountant) is listed without a CRM user; 107 Pavel (courier) is not listed at all.

mod support;

use callbridge_core::event::TransferKind::{Blind, Consultative};
use callbridge_core::plan::{EntryPlan, Outcome, Rule};
use callbridge_core::settings::CrmUserId;
use callbridge_core::{policy, Direction, EntryEvents, MissedKind, ValidSettings};
use support::Entry;

const T: i64 = 1_764_100_000;

fn user(id: u64) -> CrmUserId {
    CrmUserId::new(id).expect("a positive test user id")
}
const CLIENT: &str = "79161234567";

fn settings(extra: &str) -> ValidSettings {
    let text = format!(
        "[[employees]]\nextension = \"101\"\ncrm_user_id = 1001\n\
         [[employees]]\nextension = \"102\"\ncrm_user_id = 1002\n\
         [[employees]]\nextension = \"105\"\nname = \"Anna, accountant\"\n{extra}"
    );
    ValidSettings::parse_toml(&text).expect("valid test settings")
}

const SAVE_ALL: &str = "[calls.save_all_calls]\nenabled = true\ncrm_user_id = 9000\n";

fn plan_of(entry: Entry, s: &ValidSettings) -> EntryPlan {
    let mut events = EntryEvents::new(entry.id.clone());
    for e in entry.events {
        events.push(e);
    }
    policy::plan(s, &events.assemble())
}

#[test]
fn r0_unmapped_calls_are_ignored_while_save_all_calls_is_off() {
    for ext in ["105", "107"] {
        let plan = plan_of(
            Entry::inbound("r0", CLIENT, ext, T, Some(30)),
            &settings(""),
        );
        assert!(plan.records.is_empty(), "{ext}: {plan:?}");
        assert_eq!(plan.ignored.len(), 1);
        assert_eq!(plan.ignored[0].reasons, vec![Rule::P3]);
        assert_eq!(plan.ignored[0].employee_extension.as_deref(), Some(ext));
    }
}

#[test]
fn r1_inbound_and_outbound_calls_of_unmapped_go_to_the_fallback_user() {
    let s = settings(SAVE_ALL);
    for (entry, direction) in [
        (
            Entry::inbound("in", CLIENT, "107", T, Some(30)),
            Direction::Inbound,
        ),
        (
            Entry::outbound("out", "105", CLIENT, T, Some(30), 1111),
            Direction::Outbound,
        ),
    ] {
        let plan = plan_of(entry, &s);
        assert_eq!(plan.records.len(), 1, "{plan:?}");
        let r = &plan.records[0];
        assert_eq!(
            (r.crm_user_id, r.direction, r.duration_s),
            (user(9000), direction, 30)
        );
        assert!(r.reasons.contains(&Rule::P2));
        // P4: no mapped conversation, so the fallback record creates the entities, as responsible.
        assert!(r.creates_entities);
        assert_eq!(r.entities.unwrap().responsible_crm_user_id, user(9000));
    }
}

#[test]
fn r2_missed_group_call_ending_on_unmapped_goes_to_the_fallback_user() {
    let group = || Entry::group("r2", CLIENT, "300", &["105", "101"], false, None, T);
    let plan = plan_of(group(), &settings(SAVE_ALL));
    assert_eq!(
        (plan.outcome, plan.missed_kind),
        (Outcome::Missed, Some(MissedKind::Group))
    );
    assert_eq!(plan.records.len(), 1);
    let r = &plan.records[0];
    assert_eq!(
        (
            r.crm_user_id,
            r.employee_extension.as_deref(),
            r.conversation
        ),
        (user(9000), Some("105"), None)
    );
    assert!(r.reasons.contains(&Rule::M2) && r.reasons.contains(&Rule::P2));
    assert_eq!(
        plan.cards,
        vec![user(1001)],
        "the mapped member saw the card while it rang"
    );

    // With "Responsible for missed calls to a group" on, that setting decides (M1).
    let m1 = settings(&format!("{SAVE_ALL}[calls.missed_group]\nresponsible_enabled = true\nresponsible_crm_user_id = 2001\n"));
    let plan = plan_of(group(), &m1);
    assert_eq!(plan.records[0].crm_user_id, user(2001));
    assert_eq!(plan.records[0].reasons, vec![Rule::P4, Rule::M1]);

    // Save all calls off: the call ended on an unmapped employee and is ignored.
    let plan = plan_of(group(), &settings(""));
    assert!(plan.records.is_empty());
    assert_eq!(plan.ignored[0].reasons, vec![Rule::P3, Rule::M2]);

    // owner_when_unset = "last": the mapped operator rung last owns it.
    let last = settings(&format!(
        "{SAVE_ALL}[calls.missed_group]\nowner_when_unset = \"last\"\n"
    ));
    let plan = plan_of(group(), &last);
    assert_eq!(
        (
            plan.records[0].crm_user_id,
            plan.records[0].employee_extension.as_deref()
        ),
        (user(1001), Some("101"))
    );
}

#[test]
fn r3_transfer_from_unmapped_to_mapped_splits_into_two_records() {
    let s = settings(SAVE_ALL);
    let plan = plan_of(
        Entry::transfer_chain("r3", CLIENT, &[("105", Blind), ("101", Consultative)], T),
        &s,
    );
    assert_eq!(plan.records.len(), 2, "{plan:?}");
    let (first, second) = (&plan.records[0], &plan.records[1]);
    assert_eq!(
        (first.conversation, first.crm_user_id),
        (Some(0), user(9000))
    );
    assert!(first.reasons.contains(&Rule::P2) && first.reasons.contains(&Rule::P5));
    assert!(!first.creates_entities);
    assert_eq!(
        (second.conversation, second.crm_user_id, second.direction),
        (Some(1), user(1001), Direction::Inbound)
    );
    assert!(
        second.reasons.contains(&Rule::P1)
            && second.reasons.contains(&Rule::P5)
            && second.reasons.contains(&Rule::P7)
    );
    assert!(
        second.creates_entities,
        "the operator's conversation creates the entities (incoming settings)"
    );
    // The client was held during the consultation; the accountant's conversation ends at the hold.
    assert_eq!(first.duration_s, 30);
}

#[test]
fn r4_transfer_from_mapped_to_unmapped_splits_into_two_records() {
    let s = settings(SAVE_ALL);
    let plan = plan_of(
        Entry::transfer_chain("r4", CLIENT, &[("101", Blind), ("107", Blind)], T),
        &s,
    );
    assert_eq!(plan.records.len(), 2, "{plan:?}");
    let (first, second) = (&plan.records[0], &plan.records[1]);
    assert_eq!(
        (first.crm_user_id, first.creates_entities),
        (user(1001), true)
    );
    assert!(first.reasons.contains(&Rule::P1) && first.reasons.contains(&Rule::P6));
    assert_eq!(
        (second.crm_user_id, second.creates_entities),
        (user(9000), false)
    );
    assert!(second.reasons.contains(&Rule::P2) && second.reasons.contains(&Rule::P6));
    assert_eq!(plan.cards, vec![user(1001)], "no card for the courier");
}

#[test]
fn r5_transcripts_of_unmapped_conversations_are_saved_when_speech_analytics_is_on() {
    // The employee's leg is the entry's second (after the IVR leg).
    let recorded = || Entry::inbound("r5", CLIENT, "107", T, Some(50));
    // Attach the recording to the employee's leg as the PBX names it.
    let mut e = recorded();
    let call_id = format!("{}:leg2", e.id);
    e.events.push(callbridge_core::PbxEvent::Recording(
        callbridge_core::RecordingEvent {
            entry_id: e.id.clone(),
            call_id: Some(call_id),
            recording_id: "rec-1".into(),
            recording_state: callbridge_core::RecordingState::Completed,
            seq: 2,
            extension: Some("107".into()),
            timestamp: T + 56,
            completion_code: Some(1000),
        },
    ));
    let on = settings(&format!("{SAVE_ALL}[speech_analytics]\nsave = true\n"));
    let plan = plan_of(e, &on);
    let r = &plan.records[0];
    assert_eq!(
        (r.recording_id.as_deref(), r.transcript, r.crm_user_id),
        (Some("rec-1"), true, user(9000))
    );
    assert!(r.reasons.contains(&Rule::C2));

    let mut e = recorded();
    e.events.push(callbridge_core::PbxEvent::RecordAdded(
        callbridge_core::RecordStoredEvent {
            entry_id: e.id.clone(),
            recording_id: "rec-1".into(),
            user_id: None,
            product_id: None,
            timestamp: T + 90,
        },
    ));
    let plan = plan_of(e, &settings(SAVE_ALL));
    assert_eq!(
        plan.records[0].recording_id.as_deref(),
        Some("rec-1"),
        "the recording is attached either way (C3)"
    );
    assert!(
        !plan.records[0].transcript,
        "speech analytics off: no transcript"
    );
}

#[test]
fn r6_no_call_card_for_unmapped_employees_even_with_save_all_calls() {
    let s = settings(SAVE_ALL);
    let plan = plan_of(Entry::inbound("r6a", CLIENT, "105", T, Some(30)), &s);
    assert!(plan.cards.is_empty());
    let plan = plan_of(Entry::inbound("r6b", CLIENT, "101", T, Some(30)), &s);
    assert_eq!(plan.cards, vec![user(1001)]);
    // A ring-all group: every mapped member that rang saw the card, the unmapped one did not.
    let plan = plan_of(
        Entry::group(
            "r6c",
            CLIENT,
            "300",
            &["105", "101", "102"],
            true,
            Some(2),
            T,
        ),
        &s,
    );
    assert_eq!(plan.cards, vec![user(1001), user(1002)]);
    assert_eq!(plan.records.len(), 1);
    assert_eq!(plan.records[0].crm_user_id, user(1002));
}

#[test]
fn a5_internal_calls_are_never_written() {
    let plan = plan_of(Entry::internal("a5", "101", "102", T), &settings(SAVE_ALL));
    assert_eq!(plan.direction, Direction::Internal);
    assert!(plan.records.is_empty() && plan.ignored.is_empty() && plan.cards.is_empty());
    assert_eq!(plan.reasons, vec![Rule::A5]);
}

#[test]
fn m3_missed_in_ivr_is_recorded_only_when_switched_on() {
    let ivr_only = || {
        let mut e = Entry::new("m3");
        e.ivr(CLIENT, T, T + 20);
        e.summary(
            callbridge_core::SummaryDirection::Inbound,
            support::client(CLIENT),
            Default::default(),
            (T, 0, T + 20),
            false,
            1110,
        );
        e
    };
    let plan = plan_of(ivr_only(), &settings(""));
    assert_eq!(plan.missed_kind, Some(MissedKind::Ivr));
    assert_eq!(plan.ignored[0].reasons, vec![Rule::M3]);
    let on = settings("[calls.missed_ivr]\nrecord = true\nresponsible_crm_user_id = 2002\n");
    let plan = plan_of(ivr_only(), &on);
    assert_eq!(plan.records[0].crm_user_id, user(2002));
}

#[test]
fn m4_missed_outbound_call_is_busy_on_the_dialling_employee() {
    let plan = plan_of(
        Entry::outbound("m4", "102", CLIENT, T, None, 1121),
        &settings(""),
    );
    assert_eq!(
        (plan.outcome, plan.missed_kind),
        (Outcome::Missed, Some(MissedKind::Personal))
    );
    let r = &plan.records[0];
    assert_eq!(
        (r.crm_user_id, r.call_status, r.direction),
        (user(1002), 7, Direction::Outbound)
    );
    assert!(r.reasons.contains(&Rule::M4) && r.reasons.contains(&Rule::P1));
}

#[test]
fn m5_missed_call_task_is_due_in_an_hour_or_next_working_morning() {
    let tasks = settings("[calls.missed_tasks]\nenabled = true\n");
    // 2025-11-24 (a Monday) 10:00 Moscow = 07:00 UTC.
    let monday_10 = 1_763_967_600;
    let plan = plan_of(
        Entry::inbound("m5a", CLIENT, "101", monday_10, None),
        &tasks,
    );
    let task = plan.records[0].task.clone().expect("a task");
    assert_eq!(task.due_at, plan.ended_at + 3600);
    assert_eq!(task.dedupe_key, format!("{CLIENT}:2025-11-24"));
    // Friday 2025-11-28 21:00 Moscow: due Monday 2025-12-01 09:00 Moscow = 06:00 UTC.
    let friday_21 = 1_764_352_800;
    let plan = plan_of(
        Entry::inbound("m5b", CLIENT, "101", friday_21, None),
        &tasks,
    );
    assert_eq!(plan.records[0].task.as_ref().unwrap().due_at, 1_764_568_800);
}

#[test]
fn transfer_chain_of_three_names_both_edges() {
    let s = settings(SAVE_ALL);
    let plan = plan_of(
        Entry::transfer_chain(
            "chain",
            CLIENT,
            &[("101", Blind), ("107", Consultative), ("102", Blind)],
            T,
        ),
        &s,
    );
    let users: Vec<CrmUserId> = plan.records.iter().map(|r| r.crm_user_id).collect();
    assert_eq!(users, vec![user(1001), user(9000), user(1002)]);
    let middle = &plan.records[1].reasons;
    assert!(
        middle.contains(&Rule::P5) && middle.contains(&Rule::P6) && middle.contains(&Rule::P7),
        "{middle:?}"
    );
    assert_eq!(
        plan.records.iter().filter(|r| r.creates_entities).count(),
        1
    );
    assert!(plan.records[0].creates_entities);
}
