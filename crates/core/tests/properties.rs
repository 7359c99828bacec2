//! Property tests over generated call shapes: arrival order and duplicates never change a plan;
//! no record is attributed to the wrong person; internal calls are never written.

mod support;

use callbridge_core::event::TransferKind;
use callbridge_core::plan::{EntryPlan, Rule};
use callbridge_core::{policy, Direction, EntryEvents, PbxEvent, ValidSettings};
use proptest::prelude::*;
use std::collections::BTreeMap;
use support::Entry;

const T: i64 = 1_764_100_000;
const POOL: [&str; 6] = ["101", "102", "103", "105", "107", "108"];
const FALLBACK: u64 = 9000;

#[derive(Debug, Clone)]
enum Shape {
    Inbound {
        ext: usize,
        answered: bool,
    },
    Outbound {
        ext: usize,
        answered: bool,
        busy: bool,
    },
    Internal {
        a: usize,
        b: usize,
    },
    Group {
        members: Vec<usize>,
        ring_all: bool,
        answered_by: Option<usize>,
    },
    Chain {
        chain: Vec<(usize, bool)>,
    },
}

fn shape() -> impl Strategy<Value = Shape> {
    let ext = 0..POOL.len();
    prop_oneof![
        (ext.clone(), any::<bool>()).prop_map(|(ext, answered)| Shape::Inbound { ext, answered }),
        (ext.clone(), any::<bool>(), any::<bool>()).prop_map(|(ext, answered, busy)| {
            Shape::Outbound {
                ext,
                answered,
                busy,
            }
        }),
        (ext.clone(), ext.clone())
            .prop_filter("two people", |(a, b)| a != b)
            .prop_map(|(a, b)| Shape::Internal { a, b }),
        (
            Just((0..POOL.len()).collect::<Vec<_>>()).prop_shuffle(),
            1..=4usize,
            any::<bool>(),
            any::<Option<prop::sample::Index>>()
        )
            .prop_map(|(all, n, ring_all, answered)| {
                let members: Vec<usize> = all.into_iter().take(n).collect();
                let answered_by = answered.map(|i| i.index(members.len()));
                Shape::Group {
                    members,
                    ring_all,
                    answered_by,
                }
            }),
        (
            Just((0..POOL.len()).collect::<Vec<_>>()).prop_shuffle(),
            2..=4usize,
            prop::collection::vec(any::<bool>(), 4)
        )
            .prop_map(|(all, n, kinds)| Shape::Chain {
                chain: all.into_iter().take(n).zip(kinds).collect()
            }),
    ]
}

fn build(shape: &Shape) -> Entry {
    let client = "79161234567";
    match shape {
        Shape::Inbound { ext, answered } => {
            Entry::inbound("e", client, POOL[*ext], T, answered.then_some(42))
        }
        Shape::Outbound {
            ext,
            answered,
            busy,
        } => Entry::outbound(
            "e",
            POOL[*ext],
            client,
            T,
            answered.then_some(42),
            if *busy { 1121 } else { 1111 },
        ),
        Shape::Internal { a, b } => Entry::internal("e", POOL[*a], POOL[*b], T),
        Shape::Group {
            members,
            ring_all,
            answered_by,
        } => {
            let names: Vec<&str> = members.iter().map(|m| POOL[*m]).collect();
            Entry::group("e", client, "300", &names, *ring_all, *answered_by, T)
        }
        Shape::Chain { chain } => {
            let links: Vec<(&str, TransferKind)> = chain
                .iter()
                .map(|(m, consult)| {
                    (
                        POOL[*m],
                        if *consult {
                            TransferKind::Consultative
                        } else {
                            TransferKind::Blind
                        },
                    )
                })
                .collect();
            Entry::transfer_chain("e", client, &links, T)
        }
    }
}

/// Settings with a random mapping of the pool (CRM user 1000 + index) and random switches.
fn settings() -> impl Strategy<Value = (ValidSettings, BTreeMap<String, u64>)> {
    (prop::collection::vec(any::<bool>(), POOL.len()), any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
        |(mapped, save_all, last, responsible, ivr)| {
            let mut text = String::new();
            let mut map = BTreeMap::new();
            for (i, ext) in POOL.iter().enumerate() {
                text += &format!("[[employees]]\nextension = \"{ext}\"\n");
                if mapped[i] {
                    let user = 1000 + i as u64;
                    text += &format!("crm_user_id = {user}\n");
                    map.insert(ext.to_string(), user);
                }
            }
            text += &format!("[calls.save_all_calls]\nenabled = {save_all}\ncrm_user_id = {FALLBACK}\n");
            text += &format!(
                "[calls.missed_group]\nowner_when_unset = \"{}\"\nresponsible_enabled = {responsible}\nresponsible_crm_user_id = 2001\n",
                if last { "last" } else { "first" }
            );
            text += &format!("[calls.missed_ivr]\nrecord = {ivr}\nresponsible_crm_user_id = 2002\n");
            text += "[calls.missed_tasks]\nenabled = true\n[speech_analytics]\nsave = true\n";
            (ValidSettings::parse_toml(&text).expect("generated settings are valid"), map)
        },
    )
}

fn plan(events: &[PbxEvent], s: &ValidSettings) -> EntryPlan {
    let mut entry = EntryEvents::new("e");
    for e in events {
        entry.push(e.clone());
    }
    policy::plan(s, &entry.assemble())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arrival_order_and_duplicates_never_change_the_plan(
        shape in shape(),
        (s, _) in settings(),
        order in Just(()).prop_flat_map(|_| prop::collection::vec(any::<prop::sample::Index>(), 0..40)),
        dups in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let events = build(&shape).events;
        let expected = plan(&events, &s);
        let mut delivered = events.clone();
        for d in &dups {
            delivered.push(events[d.index(events.len())].clone());
        }
        // Fisher-Yates driven by the generated indices.
        for (k, idx) in order.iter().enumerate() {
            let i = delivered.len() - 1 - (k % delivered.len());
            let j = idx.index(i + 1);
            delivered.swap(i, j);
        }
        prop_assert_eq!(plan(&delivered, &s), expected);
    }

    #[test]
    fn nobody_is_attributed_a_call_that_is_not_theirs((shape, (s, map)) in (shape(), settings())) {
        let p = plan(&build(&shape).events, &s);
        for r in &p.records {
            let allowed: Vec<u64> = match r.employee_extension.as_deref().and_then(|e| map.get(e)) {
                Some(user) => vec![*user, 2001, 2002],
                None => vec![FALLBACK, 2001, 2002],
            };
            prop_assert!(allowed.contains(&r.crm_user_id.get()), "{:?} given to {}", r.employee_extension, r.crm_user_id);
            if r.reasons.contains(&Rule::P2) {
                prop_assert_eq!(r.crm_user_id.get(), FALLBACK);
                prop_assert!(r.employee_extension.as_deref().is_none_or(|e| !map.contains_key(e)));
            }
            if r.reasons.contains(&Rule::P1) {
                prop_assert_eq!(Some(&r.crm_user_id.get()), r.employee_extension.as_deref().and_then(|e| map.get(e)));
            }
        }
        // Cards only ever go to mapped users (C1 = R6).
        for user in &p.cards {
            prop_assert!(map.values().any(|u| *u == user.get()), "card for {user}");
        }
        // P4: at most one record creates entities.
        prop_assert!(p.records.iter().filter(|r| r.creates_entities).count() <= 1);
    }

    #[test]
    fn internal_calls_never_produce_a_record(a in 0..POOL.len(), b in 0..POOL.len(), (s, _) in settings()) {
        prop_assume!(a != b);
        let p = plan(&build(&Shape::Internal { a, b }).events, &s);
        prop_assert_eq!(p.direction, Direction::Internal);
        prop_assert!(p.records.is_empty() && p.ignored.is_empty() && p.cards.is_empty());
    }

    #[test]
    fn every_conversation_is_written_or_ignored_with_a_reason((shape, (s, _)) in (shape(), settings())) {
        let entry = build(&shape);
        let mut events = EntryEvents::new("e");
        for e in entry.events {
            events.push(e);
        }
        let assembly = events.assemble();
        let p = policy::plan(&s, &assembly);
        if assembly.direction != Direction::Internal {
            let accounted = p.records.len() + p.ignored.len();
            let expected = assembly.conversations.len().max(1);
            prop_assert_eq!(accounted, expected, "{:?}", p);
            for r in &p.records {
                prop_assert!(!r.reasons.is_empty());
            }
            for i in &p.ignored {
                prop_assert!(!i.reasons.is_empty());
            }
        }
    }
}

#[test]
fn chain_shapes_have_one_conversation_per_link() {
    // A sanity check of the builder itself, so the properties above are about real transfers.
    for n in 2..=4 {
        let chain: Vec<(usize, bool)> = (0..n).map(|i| (i, i % 2 == 0)).collect();
        let entry = build(&Shape::Chain { chain });
        let mut events = EntryEvents::new("e");
        for e in entry.events {
            events.push(e);
        }
        let a = events.assemble();
        assert_eq!(a.conversations.len(), n, "{a:?}");
        assert!(a.conversations.iter().all(|c| c.duration_s == 30), "{a:?}");
    }
}
