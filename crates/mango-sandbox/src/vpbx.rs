//! The emulated VPBX itself: the office's staff and what the PBX knows about the calls played so
//! far (recordings, transcripts, the rows of basic statistics). The API server reads it, the
//! traffic player writes it; clones share one state.
//!
//! The PBX knows a call whether or not its webhooks reached anyone, so the player reports every
//! event at the moment it happens, including the summaries it then "loses" on the way.

use callbridge_core::{CallState, Location, Party, PbxEvent, RecordingState, SummaryEvent};
use callbridge_traffic::{Config, Generator, GroupStrategy, Rng, Staff, StaffConfig};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Group ids are not part of the generated office; Mango's look like this.
const GROUP_ID_BASE: i64 = 10_050_000;
/// Names given to the generated groups, in order.
const GROUP_NAMES: [&str; 6] = [
    "Sales",
    "Support",
    "Reception",
    "Billing",
    "Delivery",
    "Partners",
];

/// The staff the traffic generator makes for `seed` and `staff`: the office whose calls
/// [`crate::play`] plays with the same seed.
pub fn office_staff(seed: u64, staff: &StaffConfig) -> Staff {
    Generator::new(Config {
        calls: 0,
        seed,
        staff: staff.clone(),
        ..Config::default()
    })
    .staff()
    .clone()
}

/// A call group as the VPBX API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    pub id: i64,
    pub name: String,
    pub extension: String,
    /// Mango's `dial_alg_group`: 2 (all free at once) for ring-all, 0 (in turn) for one-by-one.
    pub dial_alg_group: i64,
    /// Indices into the staff's employees, in ringing order.
    pub members: Vec<usize>,
}

/// A recording the PBX made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingInfo {
    pub recording_id: String,
    pub entry_id: String,
    /// The recorded employee.
    pub extension: Option<String>,
    pub started: i64,
    pub completed: Option<i64>,
    /// Completed with code 1000 (shorter recordings are not kept).
    pub saved: bool,
    /// `record/added` happened: the file can be downloaded.
    pub added: bool,
    /// `record/tagged` happened: speech analytics (the transcript) is ready.
    pub tagged: bool,
}

impl RecordingInfo {
    /// Seconds of audio, when known.
    pub fn duration(&self) -> Option<i64> {
        self.completed.map(|c| (c - self.started).max(0))
    }
}

/// One row of basic statistics, as the PBX sees a call.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CallRow {
    pub entry_id: String,
    pub records: Vec<String>,
    pub start: i64,
    pub finish: i64,
    /// When the call was answered (Unix seconds), 0 when it was not.
    pub answer: i64,
    pub from_extension: Option<String>,
    pub from_number: Option<String>,
    pub to_extension: Option<String>,
    pub to_number: Option<String>,
    pub disconnect_reason: Option<u32>,
    pub line_number: Option<String>,
    pub location: Option<String>,
}

#[derive(Default)]
struct CallRecord {
    order: usize,
    first_ts: Option<i64>,
    last_ts: i64,
    answered_at: Option<i64>,
    first_from: Option<Party>,
    first_to: Option<Party>,
    answered_to: Option<Party>,
    line: Option<String>,
    last_reason: Option<u32>,
    last_location: Option<String>,
    /// Leg id -> hung up.
    legs: HashMap<String, bool>,
    summary: Option<SummaryEvent>,
    recordings: Vec<String>,
}

impl CallRecord {
    fn ended(&self) -> bool {
        self.summary.is_some() || (!self.legs.is_empty() && self.legs.values().all(|down| *down))
    }

    fn row(&self, entry_id: &str) -> CallRow {
        let nonempty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
        let mut row = CallRow {
            entry_id: entry_id.to_owned(),
            records: self.recordings.clone(),
            location: self.last_location.clone(),
            ..CallRow::default()
        };
        if let Some(s) = &self.summary {
            row.start = s.create_time;
            row.finish = s.end_time;
            row.answer = s.talk_time;
            row.from_extension = nonempty(&s.from.extension);
            row.from_number = nonempty(&s.from.number);
            row.to_extension = nonempty(&s.to.extension);
            row.to_number = nonempty(&s.to.number);
            row.disconnect_reason = s.disconnect_reason;
            row.line_number = nonempty(&s.line_number).or_else(|| self.line.clone());
        } else {
            // The summary was lost on the way; the PBX still knows the call from its legs.
            let to = self.answered_to.as_ref().or(self.first_to.as_ref());
            row.start = self.first_ts.unwrap_or(self.last_ts);
            row.finish = self.last_ts;
            row.answer = self.answered_at.unwrap_or(0);
            row.from_extension = self
                .first_from
                .as_ref()
                .and_then(|p| nonempty(&p.extension));
            row.from_number = self.first_from.as_ref().and_then(|p| nonempty(&p.number));
            row.to_extension = to.and_then(|p| nonempty(&p.extension));
            row.to_number = to.and_then(|p| nonempty(&p.number));
            row.disconnect_reason = self.last_reason;
            row.line_number = self.line.clone();
        }
        row
    }
}

#[derive(Default)]
struct Ledger {
    calls: HashMap<String, CallRecord>,
    recordings: HashMap<String, RecordingInfo>,
    events: u64,
}

impl Ledger {
    /// The call of `entry_id`, begun (numbered in arrival order) by its first event.
    fn call(&mut self, entry_id: &str) -> &mut CallRecord {
        let order = self.calls.len();
        self.calls
            .entry(entry_id.to_owned())
            .or_insert_with(|| CallRecord {
                order,
                ..CallRecord::default()
            })
    }

    /// The recording `recording_id`, begun by its first event: at `started`, of `extension`
    /// when the event names it, kept (`saved`) when the event says so.
    fn recording(
        &mut self,
        recording_id: &str,
        entry_id: &str,
        extension: Option<String>,
        started: i64,
        saved: bool,
    ) -> &mut RecordingInfo {
        self.recordings
            .entry(recording_id.to_owned())
            .or_insert_with(|| RecordingInfo {
                recording_id: recording_id.to_owned(),
                entry_id: entry_id.to_owned(),
                extension,
                started,
                completed: None,
                saved,
                added: false,
                tagged: false,
            })
    }
}

struct Shared {
    staff: Staff,
    groups: Vec<GroupInfo>,
    ledger: Mutex<Ledger>,
}

/// The emulated VPBX. Cheap to clone; clones share the state.
#[derive(Clone)]
pub struct Vpbx {
    inner: Arc<Shared>,
}

impl std::fmt::Debug for Vpbx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vpbx")
            .field("employees", &self.inner.staff.employees.len())
            .field("groups", &self.inner.groups.len())
            .finish_non_exhaustive()
    }
}

impl Vpbx {
    /// A VPBX for this office, with no calls yet.
    pub fn new(staff: Staff) -> Vpbx {
        let groups = staff
            .groups
            .iter()
            .enumerate()
            .map(|(i, g)| GroupInfo {
                id: GROUP_ID_BASE + i as i64,
                name: format!("{} ({})", GROUP_NAMES[i % GROUP_NAMES.len()], g.extension),
                extension: g.extension.clone(),
                dial_alg_group: match g.strategy {
                    GroupStrategy::RingAll => 2,
                    GroupStrategy::OneByOne => 0,
                },
                members: g.members.clone(),
            })
            .collect();
        Vpbx {
            inner: Arc::new(Shared {
                staff,
                groups,
                ledger: Mutex::new(Ledger::default()),
            }),
        }
    }

    /// The VPBX of the office the traffic generator makes for `seed` and `staff`.
    pub fn for_office(seed: u64, staff: &StaffConfig) -> Vpbx {
        Vpbx::new(office_staff(seed, staff))
    }

    pub fn staff(&self) -> &Staff {
        &self.inner.staff
    }

    pub fn groups(&self) -> &[GroupInfo] {
        &self.inner.groups
    }

    /// The `general.user_id`s of the groups an employee (by index) is in.
    pub fn groups_of(&self, employee: usize) -> Vec<i64> {
        self.inner
            .groups
            .iter()
            .filter(|g| g.members.contains(&employee))
            .map(|g| g.id)
            .collect()
    }

    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        // A panic while holding the lock cannot leave the ledger half-updated in a way that
        // matters to a test stand-in; keep serving rather than poisoning every later request.
        self.inner
            .ledger
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Tells the PBX that `event` happened. Repeated events (re-deliveries) change nothing.
    pub fn observe(&self, event: &PbxEvent) {
        let mut ledger = self.ledger();
        ledger.events += 1;
        let entry_id = event.entry_id().to_owned();
        match event {
            PbxEvent::Call(e) => {
                let call = ledger.call(&entry_id);
                call.first_ts = Some(call.first_ts.map_or(e.timestamp, |t| t.min(e.timestamp)));
                call.last_ts = call.last_ts.max(e.timestamp);
                if call.first_from.is_none() {
                    call.first_from = Some(e.from.clone());
                    call.first_to = Some(e.to.clone());
                }
                if call.line.is_none() {
                    // The line called, or the line an employee called out from.
                    call.line = [&e.to, &e.from]
                        .into_iter()
                        .find_map(|p| p.line_number.clone().filter(|l| !l.is_empty()));
                }
                let down = call.legs.entry(e.call_id.clone()).or_insert(false);
                match e.call_state {
                    CallState::Connected if call.answered_at.is_none() => {
                        call.answered_at = Some(e.timestamp);
                        call.answered_to = Some(e.to.clone());
                    }
                    CallState::Disconnected => {
                        *down = true;
                        if e.disconnect_reason.is_some() {
                            call.last_reason = e.disconnect_reason;
                        }
                    }
                    _ => {}
                }
                call.last_location = match &e.location {
                    Location::Ivr => Some("ivr".into()),
                    Location::Queue => Some("queue".into()),
                    Location::Abonent => Some("abonent".into()),
                    Location::Other(s) if s.is_empty() => call.last_location.take(),
                    Location::Other(s) => Some(s.clone()),
                };
            }
            PbxEvent::Summary(s) => {
                let call = ledger.call(&entry_id);
                call.last_ts = call.last_ts.max(s.end_time);
                call.summary = Some(s.clone());
            }
            PbxEvent::Recording(r) => {
                let info = ledger.recording(
                    &r.recording_id,
                    &entry_id,
                    r.extension.clone(),
                    r.timestamp,
                    false,
                );
                if r.recording_state == RecordingState::Started {
                    info.started = info.started.min(r.timestamp);
                }
                if r.recording_state == RecordingState::Completed {
                    info.completed = Some(r.timestamp);
                    info.saved = r.completion_code == Some(1000);
                    if info.saved {
                        let call = ledger.call(&entry_id);
                        if !call.recordings.contains(&r.recording_id) {
                            call.recordings.push(r.recording_id.clone());
                        }
                    }
                }
            }
            PbxEvent::RecordAdded(r) | PbxEvent::RecordTagged(r) => {
                let tagged = matches!(event, PbxEvent::RecordTagged(_));
                // The PBX only announces recordings it kept.
                let info = ledger.recording(&r.recording_id, &entry_id, None, r.timestamp, true);
                info.added = true;
                info.tagged |= tagged;
            }
            // Keypresses are not in the statistics the stand-in serves.
            PbxEvent::Dtmf(_) => {}
        }
    }

    /// A recording by id.
    pub fn recording(&self, recording_id: &str) -> Option<RecordingInfo> {
        self.ledger().recordings.get(recording_id).cloned()
    }

    /// Ids of the recordings that can be downloaded now (`record/added` happened), sorted.
    pub fn downloadable_recordings(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .ledger()
            .recordings
            .values()
            .filter(|r| r.saved && r.added)
            .map(|r| r.recording_id.clone())
            .collect();
        ids.sort();
        ids
    }

    /// Calls the PBX has seen (started), ended or not.
    pub fn calls_seen(&self) -> usize {
        self.ledger().calls.len()
    }

    /// Events observed so far (re-deliveries included).
    pub fn events_observed(&self) -> u64 {
        self.ledger().events
    }

    /// Statistics rows of the calls that have ended and started within `from..=to` (Unix
    /// seconds), in the order the calls started.
    pub fn call_rows(&self, from: i64, to: i64) -> Vec<CallRow> {
        let ledger = self.ledger();
        let mut rows: Vec<(usize, CallRow)> = ledger
            .calls
            .iter()
            .filter(|(_, c)| c.ended())
            .map(|(id, c)| (c.order, c.row(id)))
            .filter(|(_, r)| r.start >= from && r.start <= to)
            .collect();
        rows.sort_by_key(|(order, _)| *order);
        rows.into_iter().map(|(_, r)| r).collect()
    }

    /// The name the transcript gives the operator of a recording.
    fn operator_name(&self, extension: Option<&str>) -> String {
        extension
            .and_then(|ext| self.inner.staff.employee(ext))
            .map(|e| {
                e.name
                    .split(',')
                    .next()
                    .unwrap_or(&e.name)
                    .trim()
                    .to_owned()
            })
            .unwrap_or_else(|| "Оператор".to_owned())
    }

    /// The speech-analytics transcript of a recording: available once the PBX has tagged it.
    /// Phrases are `(speaker, text)` with speaker `operator` or `client`, made up
    /// deterministically from the recording id.
    pub fn transcript(&self, recording_id: &str) -> Option<Transcript> {
        let info = self.recording(recording_id)?;
        if !(info.saved && info.tagged) {
            return None;
        }
        let operator = self.operator_name(info.extension.as_deref());
        Some(Transcript {
            recording_id: info.recording_id.clone(),
            operator_name: operator.clone(),
            phrases: phrases(&info.recording_id, &operator),
        })
    }
}

/// A transcript as the VPBX API returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transcript {
    pub recording_id: String,
    pub operator_name: String,
    pub phrases: Vec<(String, String)>,
}

const GREETINGS: [&str; 3] = [
    "Здравствуйте, компания «Ромашка», {name}, слушаю вас.",
    "Добрый день, «Ромашка», меня зовут {name}, чем могу помочь?",
    "Алло, {name}, здравствуйте.",
];
const CLIENT_ASKS: [&str; 5] = [
    "Добрый день, я по поводу заказа, хотел уточнить сроки доставки.",
    "Здравствуйте, у меня вопрос по счёту за прошлый месяц.",
    "Хочу узнать, есть ли у вас в наличии модель побольше.",
    "Мне вчера звонили с вашего номера, по какому вопросу?",
    "Подскажите, пожалуйста, как продлить договор.",
];
const OPERATOR_ANSWERS: [&str; 5] = [
    "Сейчас посмотрю, назовите, пожалуйста, номер заказа.",
    "Да, конечно, одну минуту, проверяю.",
    "Могу предложить вариант с доставкой завтра до обеда.",
    "Я отправлю вам подробности на почту сегодня.",
    "Давайте я соединю вас с коллегой, он подскажет точнее.",
];
const CLIENT_REPLIES: [&str; 4] = [
    "Хорошо, спасибо.",
    "Да, так будет удобно.",
    "Понятно, тогда жду письма.",
    "Отлично, договорились.",
];
const GOODBYES: [&str; 3] = [
    "Спасибо за звонок, всего доброго!",
    "Хорошего дня, до свидания.",
    "Если будут вопросы, звоните, до свидания.",
];

/// A few seconds of plausible conversation, the same for the same recording id.
fn phrases(recording_id: &str, operator: &str) -> Vec<(String, String)> {
    let seed = recording_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3)
    });
    let mut rng = Rng::new(seed);
    let op = |s: &&str| ("operator".to_owned(), s.replace("{name}", operator));
    let client = |s: &&str| ("client".to_owned(), (*s).to_owned());
    let mut out = vec![
        op(rng.pick(&GREETINGS[..])),
        client(rng.pick(&CLIENT_ASKS[..])),
    ];
    for _ in 0..rng.range(1, 3) {
        out.push(op(rng.pick(&OPERATOR_ANSWERS[..])));
        out.push(client(rng.pick(&CLIENT_REPLIES[..])));
    }
    out.push(op(rng.pick(&GOODBYES[..])));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use callbridge_traffic::{generate, Config};

    #[test]
    fn the_office_staff_is_the_generators() {
        let config = Config {
            calls: 5,
            seed: 9,
            ..Config::default()
        };
        let traffic = generate(&config);
        assert_eq!(office_staff(9, &config.staff), traffic.staff);
        assert_ne!(office_staff(10, &config.staff), traffic.staff);
    }

    #[test]
    fn observing_traffic_learns_recordings_and_rows() {
        let config = Config {
            calls: 80,
            seed: 4,
            recorded: 1.0,
            lost_summaries: 0.2,
            duplicates: 0.1,
            ..Config::default()
        };
        let traffic = generate(&config);
        let vpbx = Vpbx::new(traffic.staff.clone());
        for e in &traffic.events {
            vpbx.observe(e);
        }
        assert_eq!(vpbx.calls_seen(), 80);
        let rows = vpbx.call_rows(i64::MIN, i64::MAX);
        assert_eq!(rows.len(), 80, "every generated call ends");
        // Rows come in start order and carry the calls' saved recordings.
        for (row, truth) in rows.iter().zip(&traffic.calls) {
            assert_eq!(row.entry_id, truth.entry_id);
            let saved: Vec<String> = truth.recordings.iter().flatten().cloned().collect();
            assert_eq!(row.records, saved, "{truth:?}");
            assert_eq!(row.answer > 0, truth.answered, "{truth:?}");
        }
        let downloadable = vpbx.downloadable_recordings();
        let expected: usize = traffic
            .calls
            .iter()
            .map(|c| c.recordings.iter().flatten().count())
            .sum();
        assert!(expected > 10);
        assert_eq!(downloadable.len(), expected);
        // Transcripts only for tagged recordings, stable, alternating speakers.
        let with_transcript: Vec<&String> = downloadable
            .iter()
            .filter(|id| vpbx.transcript(id).is_some())
            .collect();
        assert!(!with_transcript.is_empty() && with_transcript.len() < downloadable.len());
        let t = vpbx.transcript(with_transcript[0]).unwrap();
        assert_eq!(t, vpbx.transcript(with_transcript[0]).unwrap());
        assert_eq!(t.phrases[0].0, "operator");
        assert_eq!(t.phrases[1].0, "client");
        assert!(t.phrases[0].1.contains(&t.operator_name));
        assert!(vpbx.transcript("no-such-recording").is_none());
    }

    #[test]
    fn a_window_selects_rows_by_start() {
        let traffic = generate(&Config {
            calls: 30,
            seed: 2,
            ..Config::default()
        });
        let vpbx = Vpbx::new(traffic.staff.clone());
        for e in &traffic.events {
            vpbx.observe(e);
        }
        let first = traffic.calls[0].started_at;
        let rows = vpbx.call_rows(first, first);
        assert!(rows.iter().all(|r| r.start == first));
        assert!(!rows.is_empty());
        assert!(vpbx.call_rows(0, 10).is_empty());
    }
}
