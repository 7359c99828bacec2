//! Random event streams for the assembler and the policy.
//!
//! Bytes are read as a small program: each instruction adds one webhook (a leg's state, a
//! summary, a recording, a keypress) of one of two entries, between a few clients and
//! employees, so that nearly every input is a plausible but unusual call rather than a payload
//! the parser refuses. The webhooks go through the Mango parser as JSON values, exactly as in
//! `callbridge simulate`, then through the assembler and the policy.
//!
//! Invariants checked for every stream and for several settings:
//! - no panic, whatever the stream;
//! - the plan does not depend on the order the events arrived in (reversed, rotated, sorted by
//!   time) nor on duplicates;
//! - every conversation the assembler found is recorded or ignored, with a reason;
//! - an internal entry (no client) gets no record;
//! - every record carries the rule ids that decided it.

use callbridge_core::plan::EntryPlan;
use callbridge_core::{policy, Direction, EntryEvents, PbxEvent, ValidSettings};
use callbridge_mango::webhook::{self, Webhook};
use serde_json::{json, Value};

const T0: i64 = 1_764_100_000;
const CLIENTS: [&str; 3] = ["79161234567", "89031112233", "+7 (495) 123-45-67"];
const EMPLOYEES: [&str; 4] = ["101", "102", "105", "107"];
const ENTRIES: [&str; 2] = ["ZW50cnk6MQ==", "ZW50cnk6Mg=="];
const LINE: &str = "74951234567";
const DISCONNECT_CODES: [u32; 6] = [1100, 1110, 1111, 1120, 1121, 1190];

/// Programs planned under every settings file the `settings` target accepts.
pub const SAMPLE_PROGRAMS: [&[u8]; 3] = [
    // An inbound call answered by 101, a consultation with 102, the client handed to 102.
    &[
        0, 0x00, 0, 0x06, 1, 0, 0x00, 1, 0x06, 5, 0, 0x00, 2, 0x06, 30, 0, 0x91, 0, 0x10, 44, 0,
        0x91, 1, 0x10, 44, 0, 0x00, 3, 0x06, 2, 0, 0xA1, 1, 0x16, 40, 0, 0xA1, 3, 0x16, 60,
    ],
    // An outbound call from 105, not answered, with its summary.
    &[0, 0, 0, 0x72, 1, 0, 0, 3, 0x72, 30, 3, 2, 0x72, 0, 1],
    // An internal call from 101 to 107; a keypress and a recording of another entry.
    &[
        0, 0, 0, 0x30, 1, 0, 0, 1, 0x30, 3, 0, 0, 3, 0x30, 20, 15, 0, 1, 6, 1, 12, 0, 0, 0, 1,
    ],
];

/// Settings variants the stream is planned under: the mapping and the switches that most
/// change who gets a call.
fn settings_variants() -> Vec<ValidSettings> {
    let texts = [
        // Everyone mapped.
        "[[employees]]\nextension = \"101\"\ncrm_user_id = 1001\n\
         [[employees]]\nextension = \"102\"\ncrm_user_id = 1002\n\
         [[employees]]\nextension = \"105\"\ncrm_user_id = 1005\n\
         [[employees]]\nextension = \"107\"\ncrm_user_id = 1007\n\
         [calls.missed_tasks]\nenabled = true\n",
        // Half mapped, Save all calls on, missed group calls to a responsible user.
        "[[employees]]\nextension = \"101\"\ncrm_user_id = 1001\n\
         [[employees]]\nextension = \"105\"\ncrm_user_id = 1005\n\
         [calls.save_all_calls]\nenabled = true\ncrm_user_id = 9000\n\
         [calls.missed_group]\nowner_when_unset = \"last\"\nresponsible_enabled = true\n\
         responsible_crm_user_id = 2001\n\
         [calls.missed_ivr]\nrecord = true\nresponsible_crm_user_id = 2002\n",
        // Nobody mapped, Save all calls off.
        "",
    ];
    texts
        .iter()
        .map(|t| ValidSettings::parse_toml(t).expect("the fuzz settings are valid"))
        .collect()
}

/// The fuzz target: a stream from `data`, checked under each settings variant.
pub fn event_stream(data: &[u8]) {
    for settings in settings_variants() {
        check_stream(data, &settings);
    }
}

/// Builds the stream `program` describes and checks the invariants under `settings`.
pub fn check_stream(program: &[u8], settings: &ValidSettings) {
    let events = generate(program);
    for entry_id in ENTRIES {
        let events: Vec<&PbxEvent> = events.iter().filter(|e| e.entry_id() == entry_id).collect();
        if events.is_empty() {
            continue;
        }
        let (expected, assembly) = plan(entry_id, events.iter().copied(), settings);
        check_plan(&expected, &assembly);

        let reversed = plan(entry_id, events.iter().rev().copied(), settings).0;
        assert_eq!(reversed, expected, "reversed arrival changed the plan");

        let rotation = usize::from(program.first().copied().unwrap_or(0)) % events.len();
        let rotated = events[rotation..]
            .iter()
            .chain(&events[..rotation])
            .copied();
        let with_duplicates = rotated.chain(events.iter().step_by(3).copied());
        let shuffled = plan(entry_id, with_duplicates, settings).0;
        assert_eq!(
            shuffled, expected,
            "rotated arrival with duplicates changed the plan"
        );

        let mut by_time = events.clone();
        by_time.sort_by_key(|e| e.timestamp());
        let sorted = plan(entry_id, by_time.into_iter(), settings).0;
        assert_eq!(sorted, expected, "arrival in time order changed the plan");
    }
}

fn plan<'a>(
    entry_id: &str,
    events: impl Iterator<Item = &'a PbxEvent>,
    settings: &ValidSettings,
) -> (EntryPlan, callbridge_core::Assembly) {
    let mut entry = EntryEvents::new(entry_id);
    for event in events {
        entry.push(event.clone());
    }
    let assembly = entry.assemble();
    (policy::plan(settings, &assembly), assembly)
}

fn check_plan(plan: &EntryPlan, assembly: &callbridge_core::Assembly) {
    for conversation in &assembly.conversations {
        let index = Some(conversation.index);
        let recorded = plan.records.iter().any(|r| r.conversation == index);
        let ignored = plan
            .ignored
            .iter()
            .any(|i| i.conversation == index && !i.reasons.is_empty());
        assert!(
            recorded || ignored,
            "conversation {} is neither recorded nor ignored with a reason: {plan:?}",
            conversation.index
        );
    }
    if assembly.direction == Direction::Internal {
        assert!(
            plan.records.is_empty(),
            "an internal entry got records: {plan:?}"
        );
    }
    for record in &plan.records {
        assert!(
            !record.reasons.is_empty(),
            "a record without reasons: {record:?}"
        );
    }
}

/// Reads the program: instructions of five bytes (a missing tail reads as zeros).
///
/// Byte 0: what (low 3 bits) and which entry (bit 3). Then, by kind:
/// - leg: leg number, state, from and to (a nibble each: client or employee), transfer kind
///   and the leg it was taken from, seconds since the previous event;
/// - summary (once an entry): direction, from/to, result and disconnect code;
/// - recording (started or completed), stored record, tagged record, keypress.
pub fn generate(program: &[u8]) -> Vec<PbxEvent> {
    let mut stream = Stream::default();
    for instruction in program.chunks(5) {
        let mut b = [0u8; 5];
        b[..instruction.len()].copy_from_slice(instruction);
        stream.step(b);
    }
    stream.events
}

#[derive(Default)]
struct Stream {
    events: Vec<PbxEvent>,
    clock: i64,
    seq: u64,
    summarised: [bool; 2],
    stored: Vec<(usize, u8, bool)>,
}

impl Stream {
    fn step(&mut self, b: [u8; 5]) {
        let entry = usize::from(b[0] >> 3) & 1;
        let entry_id = ENTRIES[entry];
        self.clock += i64::from(b[4] % 40);
        self.seq += 1;
        let at = T0 + self.clock;
        let (path, payload) = match b[0] & 7 {
            0..=2 => (webhook::PATH_CALL, self.leg(entry_id, b, at)),
            3 => {
                if std::mem::replace(&mut self.summarised[entry], true) {
                    return;
                }
                (webhook::PATH_SUMMARY, summary(entry_id, b, at))
            }
            4 => (webhook::PATH_RECORDING, self.recording(entry_id, b, at)),
            5 | 6 => {
                let tagged = b[0] & 7 == 6;
                let key = (entry, b[1] % 3, tagged);
                if self.stored.contains(&key) {
                    return;
                }
                self.stored.push(key);
                let path = if tagged {
                    webhook::PATH_RECORD_TAGGED
                } else {
                    webhook::PATH_RECORD_ADDED
                };
                let payload = json!({
                    "entry_id": entry_id, "product_id": 300022532, "user_id": 300049012,
                    "timestamp": at, "recording_id": recording_id(b[1]),
                });
                (path, payload)
            }
            _ => {
                let digits = ["1", "2", "0", "*", "#"][usize::from(b[2] % 5)];
                (
                    webhook::PATH_DTMF,
                    json!({
                        "entry_id": entry_id, "call_id": leg_id(entry_id, b[1]), "seq": self.seq,
                        "timestamp": at, "dtmf": digits,
                        "location": "ivr", "initiator": CLIENTS[usize::from(b[3] % 3)],
                    }),
                )
            }
        };
        match webhook::parse_value(path, &payload) {
            Ok(Webhook::Event(event)) => self.events.push(event),
            // The generator writes only valid shapes: a refusal is the parser's fault.
            other => panic!("generated {path} refused: {other:?}: {payload}"),
        }
    }

    fn leg(&mut self, entry_id: &str, b: [u8; 5], at: i64) -> Value {
        let state = ["Appeared", "Connected", "OnHold", "Disconnected"][usize::from(b[2] % 4)];
        let location = ["abonent", "ivr", "queue", "abonent"][usize::from(b[2] / 4 % 4)];
        let mut from = party(b[3] & 0x0f);
        let mut to = party(b[3] >> 4);
        to["line_number"] = json!(LINE);
        if b[1] & 0x40 != 0 {
            to["acd_group"] = json!("300");
        }
        let mut event = json!({
            "entry_id": entry_id, "call_id": leg_id(entry_id, b[1]), "seq": self.seq,
            "timestamp": at, "call_state": state, "location": location,
        });
        match b[1] >> 4 & 3 {
            1 => event["transfer"] = json!("consultative"),
            2 => event["transfer"] = json!("blind"),
            3 => event["transfer"] = json!("return_blind"),
            _ => {}
        }
        if b[1] & 0x80 != 0 {
            from["taken_from_call_id"] = json!(leg_id(entry_id, b[4]));
        }
        if state == "Disconnected" {
            event["disconnect_reason"] = json!(DISCONNECT_CODES[usize::from(b[4] % 6)]);
        }
        event["from"] = from;
        event["to"] = to;
        event
    }

    fn recording(&mut self, entry_id: &str, b: [u8; 5], at: i64) -> Value {
        json!({
            "entry_id": entry_id, "call_id": leg_id(entry_id, b[2]), "seq": self.seq,
            "timestamp": at, "recording_id": recording_id(b[1]),
            "recording_state": if b[3].is_multiple_of(2) { "Started" } else { "Completed" },
            "extension": EMPLOYEES[usize::from(b[3] / 2 % 4)],
        })
    }
}

fn summary(entry_id: &str, b: [u8; 5], at: i64) -> Value {
    json!({
        "entry_id": entry_id, "call_direction": b[1] % 3,
        "from": party(b[2] & 0x0f), "to": party(b[2] >> 4),
        "line_number": LINE,
        "create_time": at - 60, "forward_time": at - 55, "talk_time": at - 50, "end_time": at,
        "entry_result": b[3] % 2,
        "disconnect_reason": DISCONNECT_CODES[usize::from(b[3] / 2 % 6)],
    })
}

/// One side of a leg: nibbles 0-5 an employee (as Mango writes them, with a SIP number),
/// 6-11 a client, 12-15 a client with no number shown.
fn party(nibble: u8) -> Value {
    match nibble {
        0..=5 => {
            let ext = EMPLOYEES[usize::from(nibble % 4)];
            json!({"extension": ext, "number": format!("sip:user{ext}@vpbx400000001.mangosip.ru")})
        }
        6..=11 => json!({"number": CLIENTS[usize::from(nibble % 3)]}),
        _ => json!({}),
    }
}

fn leg_id(entry_id: &str, b: u8) -> String {
    format!("{entry_id}:leg:{}", b % 4)
}

fn recording_id(b: u8) -> String {
    format!("rec-{}", b % 3)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The invariants are only worth checking if the streams make calls: the sample programs
    /// give an answered transfer with records, a missed outbound call and an internal call.
    #[test]
    fn the_sample_programs_make_real_calls() {
        let everyone_mapped = &settings_variants()[0];
        let plans: Vec<(EntryPlan, callbridge_core::Assembly)> = SAMPLE_PROGRAMS
            .iter()
            .map(|p| {
                let events = generate(p);
                plan(events[0].entry_id(), events.iter(), everyone_mapped)
            })
            .collect();
        let (transfer, assembly) = &plans[0];
        assert_eq!(assembly.direction, Direction::Inbound);
        assert!(assembly.conversations.len() >= 2, "{assembly:?}");
        assert!(transfer.records.len() >= 2, "{transfer:?}");
        assert_eq!(plans[1].1.direction, Direction::Outbound);
        assert!(plans[1].1.conversations.is_empty());
        assert_eq!(plans[2].1.direction, Direction::Internal);
        assert!(plans[2].0.records.is_empty());
    }
}
