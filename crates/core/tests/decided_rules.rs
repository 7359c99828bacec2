//! The rules decided after differential testing (marked D in docs/rules.md): one or more named
//! tests each. Staff: 101 and 102 mapped (CRM users 1001, 1002); 105 listed without a CRM user.

mod support;

use callbridge_core::event::*;
use callbridge_core::plan::{EntitySettings, EntryPlan, Outcome, Rule};
use callbridge_core::{policy, Assembly, Direction, EntryEvents, ValidSettings};
use support::{client, employee, in_group, taken_from, Entry};

const T: i64 = 1_764_100_000;
const C1: &str = "79161234567";
const C2: &str = "79035550101";

fn settings(extra: &str) -> ValidSettings {
    let text = format!(
        "plan = \"extended\"\n\
         [[employees]]\nextension = \"101\"\ncrm_user_id = 1001\n\
         [[employees]]\nextension = \"102\"\ncrm_user_id = 1002\n\
         [[employees]]\nextension = \"105\"\nname = \"Anna, accountant\"\n{extra}"
    );
    ValidSettings::parse_toml(&text).expect("valid test settings")
}

const SAVE_ALL: &str = "[calls.save_all_calls]\nenabled = true\ncrm_user_id = 9000\n";

fn assemble(entry: &Entry) -> Assembly {
    let mut events = EntryEvents::new(entry.id.clone());
    for e in &entry.events {
        events.push(e.clone());
    }
    events.assemble()
}

fn plan_of(entry: &Entry, s: &ValidSettings) -> EntryPlan {
    policy::plan(s, &assemble(entry))
}

fn users(plan: &EntryPlan) -> Vec<u64> {
    plan.records.iter().map(|r| r.crm_user_id.get()).collect()
}

/// The inbound start every story below shares: IVR, then `ext` answers the client `number`.
/// Returns the entry and the employee's leg, connected at T+6.
fn answered_by(id: &str, number: &str, ext: &str) -> (Entry, support::Leg) {
    let mut e = Entry::new(id);
    let ivr = e.ivr(number, T, T + 3);
    let mut leg = e.leg(
        Location::Abonent,
        taken_from(client(number), &ivr),
        employee(ext),
    );
    e.emit(&mut leg, T + 3, CallState::Appeared, None);
    e.emit(&mut leg, T + 6, CallState::Connected, None);
    (e, leg)
}

/// `ext` dials `number` on a new leg of the entry at `t` and they talk until `t + talk`.
fn dial(e: &mut Entry, ext: &str, number: &str, t: i64, talk: i64) -> support::Leg {
    let mut leg = e.leg(Location::Abonent, employee(ext), client(number));
    e.emit(&mut leg, t, CallState::Appeared, None);
    e.emit(&mut leg, t + 2, CallState::Connected, None);
    e.emit(&mut leg, t + 2 + talk, CallState::Disconnected, Some(1110));
    leg
}

#[test]
fn a2a_a_callback_after_the_client_hung_up_is_a_new_conversation() {
    let (mut e, mut leg) = answered_by("a2a-callback", C1, "101");
    e.emit(&mut leg, T + 36, CallState::Disconnected, Some(1110));
    // The line dropped; the operator calls the client back inside the same entry.
    dial(&mut e, "101", C1, T + 40, 50);
    let a = assemble(&e);
    assert_eq!(a.conversations.len(), 2, "{:#?}", a.conversations);
    assert_eq!(a.conversations[0].duration_s, 30);
    let back = &a.conversations[1];
    assert_eq!((back.index, back.duration_s), (1, 50));
    assert!(back.dialled && !back.received_by_transfer);
    assert_eq!(back.direction, Direction::Outbound);
    let plan = plan_of(&e, &settings(""));
    assert_eq!(users(&plan), [1001, 1001]);
    // P4: one client, one set of entities, created by the first conversation.
    let creators: Vec<bool> = plan.records.iter().map(|r| r.creates_entities).collect();
    assert_eq!(creators, [true, false]);
    assert!(!plan.records[1].reasons.contains(&Rule::P7));
}

#[test]
fn a2a_a_transfer_that_came_back_to_the_same_employee_continues_the_conversation() {
    let (mut e, mut first) = answered_by("a2a-back", C1, "101");
    e.emit(&mut first, T + 36, CallState::OnHold, None);
    // Blind transfer to a group; nobody there answers and the group sends the client back to 101.
    let mut via = e.leg(
        Location::Abonent,
        taken_from(employee("101"), &first.call_id),
        in_group(employee("102"), "300"),
    );
    e.emit(&mut via, T + 36, CallState::Appeared, None);
    e.emit(&mut first, T + 37, CallState::Disconnected, Some(1120));
    e.emit(&mut via, T + 50, CallState::Disconnected, Some(1111));
    let mut back = e.leg(
        Location::Abonent,
        taken_from(client(C1), &via.call_id),
        employee("101"),
    );
    e.emit(&mut back, T + 50, CallState::Appeared, None);
    e.emit(&mut back, T + 52, CallState::Connected, None);
    e.emit(&mut back, T + 82, CallState::Disconnected, Some(1110));
    let a = assemble(&e);
    assert_eq!(a.conversations.len(), 1, "{:#?}", a.conversations);
    assert_eq!(a.conversations[0].duration_s, 30 + 30);
}

/// 101 talks to C1, holds, dials C2 (a consult with an external number), then joins C1 and C2
/// and drops out: C1 and C2 talk on.
fn consult_external(id: &str, consulting: &str) -> Entry {
    let (mut e, mut first) = answered_by(id, C1, consulting);
    e.emit(&mut first, T + 36, CallState::OnHold, None);
    let mut consult = e.leg(
        Location::Abonent,
        taken_from(employee(consulting), &first.call_id),
        client(C2),
    );
    consult.transfer_kind(TransferKind::Consultative);
    e.emit(&mut consult, T + 36, CallState::Appeared, None);
    e.emit(&mut consult, T + 40, CallState::Connected, None);
    e.emit(&mut first, T + 70, CallState::Disconnected, Some(1120));
    Entry::swap(
        &mut consult,
        taken_from(client(C1), &first.call_id),
        client(C2),
        TransferKind::Consultative,
    );
    e.emit(&mut consult, T + 70, CallState::Connected, None);
    e.emit(&mut consult, T + 130, CallState::Disconnected, Some(1110));
    e
}

#[test]
fn a2b_a_consult_with_an_external_number_is_a_conversation_with_that_number() {
    let e = consult_external("a2b", "101");
    let a = assemble(&e);
    assert_eq!(a.client_phone.as_deref(), Some(C1));
    let convs: Vec<(&str, &str, bool, Direction)> = a
        .conversations
        .iter()
        .map(|c| {
            (
                c.employee_extension.as_str(),
                c.client_phone.as_str(),
                c.dialled,
                c.direction,
            )
        })
        .collect();
    // The two clients talking after 101 dropped out is no conversation.
    assert_eq!(
        convs,
        [
            ("101", C1, false, Direction::Inbound),
            ("101", C2, true, Direction::Outbound)
        ]
    );
    assert_eq!(a.conversations[1].duration_s, 30);
}

#[test]
fn each_record_carries_its_own_client_and_entities_are_made_once_per_client_p4() {
    let plan = plan_of(&consult_external("p4-two-clients", "101"), &settings(""));
    let phones: Vec<&str> = plan
        .records
        .iter()
        .map(|r| r.client_phone.as_deref().unwrap_or(""))
        .collect();
    assert_eq!(phones, [C1, C2]);
    let entities: Vec<Option<EntitySettings>> = plan
        .records
        .iter()
        .map(|r| r.entities.map(|e| e.settings))
        .collect();
    // Each client gets its own entities; the dialled one by the outgoing settings (A2c, P7).
    assert_eq!(
        entities,
        [
            Some(EntitySettings::Incoming),
            Some(EntitySettings::Outgoing)
        ]
    );
    for r in &plan.records {
        assert!(r.reasons.contains(&Rule::P4), "{:?}", r.reasons);
        assert!(!r.reasons.contains(&Rule::P7), "{:?}", r.reasons);
    }
}

#[test]
fn a2c_a_conversation_another_employee_dialled_is_not_received_by_transfer() {
    // 101 talks to the client, who hangs up; the unmapped accountant calls the client back.
    let (mut e, mut leg) = answered_by("a2c-dialled", C1, "101");
    e.emit(&mut leg, T + 36, CallState::Disconnected, Some(1110));
    dial(&mut e, "105", C1, T + 60, 40);
    let a = assemble(&e);
    let second = &a.conversations[1];
    assert!(second.dialled && !second.received_by_transfer);
    assert_eq!(second.direction, Direction::Outbound);
    let plan = plan_of(&e, &settings(SAVE_ALL));
    assert_eq!(users(&plan), [1001, 9000]);
    // Being second is not being handed over: no P5/P6/P7 on either side.
    for r in &plan.records {
        for rule in [Rule::P5, Rule::P6, Rule::P7] {
            assert!(!r.reasons.contains(&rule), "{rule} in {:?}", r.reasons);
        }
    }
    assert_eq!(plan.records[1].direction, Direction::Outbound);
}

#[test]
fn a2c_p6_p5_name_the_giver_and_the_receiver_of_a_transfer() {
    let e = Entry::transfer_chain(
        "a2c-chain",
        C1,
        &[("101", TransferKind::Blind), ("105", TransferKind::Blind)],
        T,
    );
    let plan = plan_of(&e, &settings(SAVE_ALL));
    assert_eq!(users(&plan), [1001, 9000]);
    assert_eq!(plan.records[0].reasons, [Rule::P1, Rule::P4, Rule::P6]);
    assert_eq!(plan.records[1].reasons, [Rule::P2, Rule::P6, Rule::P7]);
    assert_eq!(plan.records[1].direction, Direction::Inbound);
}

/// A one-by-one group that cycles: 105, then 101, then 105 again; nobody answers.
fn cycling_group(id: &str) -> Entry {
    let mut e = Entry::new(id);
    let ivr = e.ivr(C1, T, T + 3);
    let mut queue = e.leg(
        Location::Queue,
        taken_from(client(C1), &ivr),
        in_group(support::line(), "300"),
    );
    e.emit(&mut queue, T + 3, CallState::Appeared, None);
    for (i, ext) in ["105", "101", "105"].iter().enumerate() {
        let start = T + 3 + 10 * i as i64;
        let mut leg = e.leg(
            Location::Abonent,
            taken_from(client(C1), &queue.call_id),
            in_group(employee(ext), "300"),
        );
        e.emit(&mut leg, start, CallState::Appeared, None);
        e.emit(&mut leg, start + 10, CallState::Disconnected, Some(1111));
    }
    e.emit(&mut queue, T + 33, CallState::Disconnected, Some(1163));
    e
}

#[test]
fn a6_every_offer_counts_in_a_cycling_group() {
    let e = cycling_group("a6-cycle");
    let a = assemble(&e);
    let missed = a.missed.as_ref().expect("a missed entry");
    assert_eq!(missed.offered, ["105", "101", "105"]);
    assert_eq!(
        (missed.first_offered(), missed.last_offered()),
        (Some("105"), Some("105"))
    );
    // The call ended on the unmapped 105 (its last offer), not on 101.
    let last = settings("[calls.missed_group]\nowner_when_unset = \"last\"\n");
    let plan = plan_of(&e, &last);
    assert!(plan.records.is_empty(), "{:?}", plan.records);
    assert_eq!(plan.ignored[0].reasons, [Rule::P3, Rule::M2]);
    assert_eq!(plan.ignored[0].employee_extension.as_deref(), Some("105"));
}

/// A ring-all group rings 102 and 101 in the same second (102's leg first by id); nobody
/// answers. The summary's `to` is `summary_to`.
fn ring_all_tie(id: &str, summary_to: &str) -> Entry {
    let mut e = Entry::group(id, C1, "300", &["102", "101"], true, None, T);
    if let Some(PbxEvent::Summary(s)) = e.events.last_mut() {
        s.to = Party {
            extension: Some(summary_to.to_string()),
            ..Default::default()
        };
    }
    e
}

#[test]
fn a6_a_same_second_tie_goes_to_the_summary_to_else_the_lowest_extension() {
    let plan = plan_of(&ring_all_tie("a6-tie-lowest", "300"), &settings(""));
    assert_eq!(
        users(&plan),
        [1001],
        "lowest extension 101, not the first leg's id"
    );
    let plan = plan_of(&ring_all_tie("a6-tie-summary", "102"), &settings(""));
    assert_eq!(users(&plan), [1002], "the summary names 102");
    // "last offered" with the same tie: the same winner.
    let last = settings("[calls.missed_group]\nowner_when_unset = \"last\"\n");
    assert_eq!(
        users(&plan_of(&ring_all_tie("a6-tie-last", "300"), &last)),
        [1001]
    );
}

#[test]
fn a6_numeric_extensions_tie_by_value_not_by_text() {
    let mut e = Entry::group("a6-tie-value", C1, "300", &["1001", "999"], true, None, T);
    if let Some(PbxEvent::Summary(s)) = e.events.last_mut() {
        s.to = Party::default();
    }
    let a = assemble(&e);
    assert_eq!(a.missed.unwrap().first_offered(), Some("999"));
}

#[test]
fn a7_an_internal_call_nobody_answered_is_missed() {
    let s = settings("");
    let answered = Entry::internal("a7-talked", "101", "102", T);
    assert_eq!(plan_of(&answered, &s).outcome, Outcome::Answered);

    let mut e = Entry::new("a7-unanswered");
    let mut leg = e.leg(Location::Abonent, employee("101"), employee("102"));
    e.emit(&mut leg, T, CallState::Appeared, None);
    e.emit(&mut leg, T + 20, CallState::Disconnected, Some(1111));
    e.summary(
        SummaryDirection::Internal,
        employee("101"),
        employee("102"),
        (T, 0, T + 20),
        false,
        1111,
    );
    let plan = plan_of(&e, &s);
    assert_eq!(plan.outcome, Outcome::Missed);
    assert_eq!(plan.reasons, [Rule::A5]);
    assert!(plan.records.is_empty() && plan.cards.is_empty());
}

/// A queue timeout: the group had nobody to offer the call to.
fn nobody_offered(id: &str) -> Entry {
    let mut e = Entry::new(id);
    let ivr = e.ivr(C1, T, T + 3);
    let mut queue = e.leg(
        Location::Queue,
        taken_from(client(C1), &ivr),
        in_group(support::line(), "302"),
    );
    e.emit(&mut queue, T + 3, CallState::Appeared, None);
    e.emit(&mut queue, T + 63, CallState::Disconnected, Some(1163));
    e.summary(
        SummaryDirection::Inbound,
        client(C1),
        Party {
            extension: Some("302".into()),
            ..Default::default()
        },
        (T, 0, T + 63),
        false,
        1163,
    );
    e
}

#[test]
fn m2_a_group_call_offered_to_nobody_goes_to_the_fallback_user_with_save_all_calls() {
    let e = nobody_offered("m2-nobody");
    let plan = plan_of(&e, &settings(SAVE_ALL));
    assert_eq!(users(&plan), [9000]);
    assert_eq!(plan.records[0].reasons, [Rule::P2, Rule::P4, Rule::M2]);
    assert!(plan.records[0].employee_extension.is_none());

    let plan = plan_of(&e, &settings(""));
    assert!(plan.records.is_empty());
    assert_eq!(plan.ignored[0].reasons, [Rule::P3, Rule::M2]);
}

#[test]
fn c1_no_card_for_an_employee_who_only_took_part_in_the_internal_part() {
    // 101 calls 102; while they talk, 102 dials the client and talks to them.
    let mut e = Entry::new("c1-internal-first");
    let mut inside = e.leg(Location::Abonent, employee("101"), employee("102"));
    e.emit(&mut inside, T, CallState::Appeared, None);
    e.emit(&mut inside, T + 2, CallState::Connected, None);
    e.emit(&mut inside, T + 20, CallState::OnHold, None);
    dial(&mut e, "102", C1, T + 20, 40);
    e.emit(&mut inside, T + 70, CallState::Disconnected, Some(1110));
    let plan = plan_of(&e, &settings(""));
    assert_eq!(plan.direction, Direction::Outbound);
    assert_eq!(users(&plan), [1002]);
    assert_eq!(
        plan.cards.iter().map(|u| u.get()).collect::<Vec<_>>(),
        [1002],
        "101 only talked to a colleague"
    );
}

#[test]
fn c1_a_consult_after_the_client_took_part_rings_its_target_with_the_card() {
    let e = Entry::transfer_chain(
        "c1-consult",
        C1,
        &[
            ("101", TransferKind::Blind),
            ("102", TransferKind::Consultative),
        ],
        T,
    );
    let plan = plan_of(&e, &settings(""));
    assert_eq!(
        plan.cards.iter().map(|u| u.get()).collect::<Vec<_>>(),
        [1001, 1002]
    );
}

#[test]
fn s5_crm_user_ids_must_be_positive_integers_everywhere() {
    let keys = [
        (
            "[[employees]]\nextension = \"110\"\ncrm_user_id = ",
            "",
            "employees[0].crm_user_id",
        ),
        (
            "[calls.save_all_calls]\nenabled = true\ncrm_user_id = ",
            "",
            "calls.save_all_calls.crm_user_id",
        ),
        (
            "[calls.missed_group]\nresponsible_enabled = true\nresponsible_crm_user_id = ",
            "",
            "calls.missed_group.responsible_crm_user_id",
        ),
        (
            "[calls.missed_ivr]\nrecord = true\nresponsible_crm_user_id = ",
            "",
            "calls.missed_ivr.responsible_crm_user_id",
        ),
    ];
    for (before, after, key) in keys {
        for bad in ["0", "-5", "\"12\"", "1.5", "\"abc\""] {
            let text = format!("plan = \"extended\"\n{before}{bad}{after}\n");
            let err = ValidSettings::parse_toml(&text)
                .expect_err(&format!("{key} = {bad} must be refused"))
                .to_string();
            assert!(
                err.contains(key),
                "{key} = {bad}: the error names the key: {err}"
            );
        }
        let good = format!("plan = \"extended\"\n{before}1{after}\n");
        ValidSettings::parse_toml(&good).expect("1 is a CRM user id");
    }
}
