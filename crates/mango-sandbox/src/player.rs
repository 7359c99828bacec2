//! The traffic player: realistic office calls from `callbridge-traffic`, posted as signed Mango
//! webhooks at the moment each event happens.
//!
//! Time: the generator scripts calls in seconds of office time; the player maps office time to
//! the wall clock divided by [`PlayConfig::time_compression`] (1 = real time, 60 = an office
//! minute per second). Calls start as a Poisson process at [`PlayConfig::calls_per_second`] of
//! *wall-clock* time whatever the compression, and the events of concurrent calls interleave as
//! they happen. Calls starting within the same office second are released together, so the
//! start times have a granularity of `1 / time_compression` seconds.
//!
//! Delivery: events go out in the generator's delivery order, which already carries Mango's
//! habits (duplicated deliveries, neighbours swapped, lost summaries, at the configured rates).
//! Up to [`PlayConfig::concurrency`] requests are in flight; a connection error, a timeout or a
//! 5xx is retried up to [`PlayConfig::max_attempts`] attempts with doubling back-off. A 4xx is
//! final. Before the first event the player sends Mango's connection check: an empty POST to
//! the base URL.

use crate::vpbx::{office_staff, Vpbx};
use crate::EmulatorError;
use callbridge_core::PbxEvent;
use callbridge_traffic::{CallTruth, Config, Generator, Mix, StaffConfig};
use reqwest::header::CONTENT_TYPE;
use reqwest::Url;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// How to play.
#[derive(Clone)]
pub struct PlayConfig {
    /// Where Mango posts, with the tenant, e.g. `http://127.0.0.1:8080/mango/acme/`; event
    /// paths (`events/call`, ...) are appended.
    pub webhook_base: String,
    pub api_key: String,
    /// Signs every webhook; never sent, never logged.
    pub api_salt: String,
    /// Number of calls (entries).
    pub calls: u64,
    /// Calls started per second of wall-clock time.
    pub calls_per_second: f64,
    /// Seed of the traffic, and of the office (see [`crate::office_staff`]).
    pub seed: u64,
    /// Share of events delivered twice.
    pub duplicate_rate: f64,
    /// Share of events delivered after a close neighbour.
    pub reorder_rate: f64,
    /// Share of calls whose summary is never delivered.
    pub lost_summary_rate: f64,
    /// Share of calls whose webhooks stop reaching the receiver part-way, as when it is down or
    /// the network is cut and Mango gives up its retries: half of them from their first event
    /// (the call never reaches it), the others from one of their first eight events on. The PBX
    /// still knows the whole call (its statistics); reconciliation recovers it.
    pub dropped_call_rate: f64,
    /// Requests in flight at most.
    pub concurrency: usize,
    /// Office seconds played per wall-clock second within calls (1 = real time).
    pub time_compression: f64,
    /// Share of answered calls that are recorded.
    pub recorded_rate: f64,
    /// The shape of the office (must give the served VPBX's staff).
    pub staff: StaffConfig,
    /// Office time of the first call (Unix seconds); `None`: early enough that office time,
    /// running `time_compression` times faster than the wall clock, does not get ahead of it
    /// (now, in real time). See [`PlayConfig::default_start`].
    pub start_unix: Option<i64>,
    /// Attempts per delivery, the first included.
    pub max_attempts: u32,
    /// Wait before the first retry; doubled for each further one.
    pub retry_backoff: Duration,
    /// Whole-request timeout of one attempt.
    pub request_timeout: Duration,
    /// Send the connection check (an empty POST) first.
    pub ping: bool,
}

impl Default for PlayConfig {
    /// A small, slightly imperfect office at 2 calls per second in real time.
    fn default() -> Self {
        PlayConfig {
            webhook_base: String::new(),
            api_key: String::new(),
            api_salt: String::new(),
            calls: 100,
            calls_per_second: 2.0,
            seed: 1,
            duplicate_rate: 0.02,
            reorder_rate: 0.02,
            lost_summary_rate: 0.01,
            dropped_call_rate: 0.0,
            concurrency: 16,
            time_compression: 1.0,
            recorded_rate: 0.5,
            staff: StaffConfig::default(),
            start_unix: None,
            max_attempts: 4,
            retry_backoff: Duration::from_millis(200),
            request_timeout: Duration::from_secs(10),
            ping: true,
        }
    }
}

impl fmt::Debug for PlayConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlayConfig")
            .field("webhook_base", &self.webhook_base)
            .field("api_key", &crate::api::mask(&self.api_key))
            .field("api_salt", &"***")
            .field("calls", &self.calls)
            .field("calls_per_second", &self.calls_per_second)
            .field("seed", &self.seed)
            .field("duplicate_rate", &self.duplicate_rate)
            .field("reorder_rate", &self.reorder_rate)
            .field("lost_summary_rate", &self.lost_summary_rate)
            .field("dropped_call_rate", &self.dropped_call_rate)
            .field("concurrency", &self.concurrency)
            .field("time_compression", &self.time_compression)
            .field("recorded_rate", &self.recorded_rate)
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

fn invalid(field: &'static str, problem: impl Into<String>) -> EmulatorError {
    EmulatorError::Config {
        field,
        problem: problem.into(),
    }
}

impl PlayConfig {
    /// Checks every field; the error names the one at fault.
    pub fn validate(&self) -> Result<(), EmulatorError> {
        self.base_url()?;
        if self.api_key.is_empty() {
            return Err(invalid("api_key", "must not be empty"));
        }
        if self.api_salt.is_empty() {
            return Err(invalid("api_salt", "must not be empty"));
        }
        if !(self.calls_per_second.is_finite() && self.calls_per_second > 0.0) {
            return Err(invalid(
                "calls_per_second",
                format!("must be a positive number, got {}", self.calls_per_second),
            ));
        }
        if !(self.time_compression.is_finite() && self.time_compression > 0.0) {
            return Err(invalid(
                "time_compression",
                format!("must be a positive number, got {}", self.time_compression),
            ));
        }
        for (field, share) in [
            ("duplicate_rate", self.duplicate_rate),
            ("reorder_rate", self.reorder_rate),
            ("lost_summary_rate", self.lost_summary_rate),
            ("dropped_call_rate", self.dropped_call_rate),
            ("recorded_rate", self.recorded_rate),
        ] {
            if !(0.0..=1.0).contains(&share) {
                return Err(invalid(
                    field,
                    format!("must be a share between 0 and 1, got {share}"),
                ));
            }
        }
        if self.concurrency == 0 {
            return Err(invalid("concurrency", "must be at least 1"));
        }
        if self.max_attempts == 0 {
            return Err(invalid("max_attempts", "must be at least 1"));
        }
        if self.request_timeout.is_zero() {
            return Err(invalid("request_timeout", "must be longer than zero"));
        }
        usize::try_from(self.calls)
            .map_err(|_| invalid("calls", format!("{} is too many", self.calls)))?;
        Ok(())
    }

    /// The webhook base as a URL with a trailing `/`.
    fn base_url(&self) -> Result<Url, EmulatorError> {
        let mut base = self.webhook_base.trim().to_owned();
        if !base.ends_with('/') {
            base.push('/');
        }
        let url = Url::parse(&base).map_err(|e| {
            invalid(
                "webhook_base",
                format!("{:?} is not a URL: {e}", self.webhook_base),
            )
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
            return Err(invalid(
                "webhook_base",
                format!("{:?} is not an http(s) URL", self.webhook_base),
            ));
        }
        Ok(url)
    }

    /// The office time to start at when it is `now`, so that events never carry a time in the
    /// future: with compression `c`, office time gains `c - 1` seconds per second, over the
    /// calls' start period plus the tail of the last calls (up to [`CALL_TAIL`] of office time).
    pub fn default_start(&self, now: i64) -> i64 {
        let c = self.time_compression.max(1.0);
        let starts = self.calls as f64 / self.calls_per_second.max(f64::MIN_POSITIVE);
        let ahead = (c - 1.0) * (starts + CALL_TAIL.as_secs_f64() / c);
        now - ahead.min(365.0 * 86_400.0).ceil() as i64
    }

    /// The traffic generator's configuration for this play.
    pub fn traffic_config(&self, start_unix: i64) -> Config {
        Config {
            calls: usize::try_from(self.calls).unwrap_or(usize::MAX),
            seed: self.seed,
            start: start_unix,
            // Calls per second of office time, so that they start at `calls_per_second` of
            // wall-clock time once office time is compressed.
            rate: self.calls_per_second / self.time_compression,
            duplicates: self.duplicate_rate,
            reorder: self.reorder_rate,
            lost_summaries: self.lost_summary_rate,
            recorded: self.recorded_rate,
            staff: self.staff.clone(),
            mix: Mix::default(),
        }
    }
}

/// Where a play stands, reported about once a second and at the end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlayProgress {
    pub calls_started: u64,
    pub calls: u64,
    /// Deliveries started (duplicates included).
    pub events_sent: u64,
    /// Deliveries acknowledged with a 2xx.
    pub delivered: u64,
    /// Deliveries given up.
    pub failed: u64,
    pub in_flight: u64,
    pub elapsed_ms: u64,
    pub finished: bool,
}

/// When an entry's webhooks went out. `*_unix_ms` are wall-clock milliseconds; the `*_at`
/// instants are for measuring latencies in the same process.
#[derive(Debug, Clone, Serialize)]
pub struct EntryTiming {
    /// The kind of call (`DirectAnswered`, `BlindTransfer`, ...).
    pub kind: String,
    /// Deliveries of the entry's events, duplicates included.
    pub deliveries: u64,
    pub first_sent_unix_ms: u64,
    pub last_sent_unix_ms: u64,
    /// When the summary was first sent; `None` when it was lost.
    pub summary_sent_unix_ms: Option<u64>,
    /// When a delivery of the summary was first acknowledged with a 2xx.
    pub summary_acked_unix_ms: Option<u64>,
    #[serde(skip)]
    pub first_sent_at: Instant,
    #[serde(skip)]
    pub last_sent_at: Instant,
    #[serde(skip)]
    pub summary_sent_at: Option<Instant>,
    #[serde(skip)]
    pub summary_acked_at: Option<Instant>,
}

/// What was played and how the receiver took it.
#[derive(Debug, Clone, Serialize)]
pub struct PlayReport {
    pub calls: u64,
    /// Distinct events sent.
    pub events: u64,
    /// Deliveries started (distinct events plus duplicates).
    pub events_sent: u64,
    pub duplicates_sent: u64,
    /// Calls whose summary was never sent.
    pub lost_summaries: u64,
    /// Webhooks never sent because their call was cut ([`PlayConfig::dropped_call_rate`]);
    /// not counted in `events_sent`.
    pub webhooks_dropped: u64,
    /// Calls with at least one webhook dropped that way.
    pub calls_cut: u64,
    /// Deliveries acknowledged with a 2xx (after retries).
    pub delivered: u64,
    /// Deliveries that never got a 2xx.
    pub failed: u64,
    /// Attempts beyond the first.
    pub retries: u64,
    /// Non-2xx answers by status, every attempt counted.
    pub http_errors: BTreeMap<u16, u64>,
    /// Attempts that got no answer (connection refused or reset, timeout).
    pub transport_errors: u64,
    /// The answer to the connection check, when it was sent.
    pub ping_status: Option<u16>,
    pub calls_by_kind: BTreeMap<String, u64>,
    pub first_event_unix_ms: Option<u64>,
    pub last_event_unix_ms: Option<u64>,
    pub elapsed_ms: u64,
    /// A few of the failures, described.
    pub failures: Vec<String>,
    /// Per entry id.
    pub entries: BTreeMap<String, EntryTiming>,
    /// What each call really was, in order of start.
    #[serde(skip)]
    pub truths: Vec<CallTruth>,
    #[serde(skip)]
    pub first_event_at: Option<Instant>,
    #[serde(skip)]
    pub last_event_at: Option<Instant>,
}

impl PlayReport {
    /// Every delivery got a 2xx in the end.
    pub fn all_delivered(&self) -> bool {
        self.failed == 0 && self.delivered == self.events_sent
    }

    /// The report without the per-entry timings (for printing).
    pub fn summary_json(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        if let Some(map) = value.as_object_mut() {
            map.remove("entries");
        }
        value
    }
}

/// How long in office time the last calls' events may go on after they start (long talks,
/// recordings stored and tagged afterwards).
pub const CALL_TAIL: Duration = Duration::from_secs(1200);

/// How many failures the report describes.
const MAX_FAILURES_LISTED: usize = 20;
/// Response bodies are read (so connections can be reused) up to this size.
const MAX_RESPONSE_BODY: usize = 64 * 1024;
/// Progress is reported this often.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Tally {
    delivered: u64,
    failed: u64,
    retries: u64,
    transport_errors: u64,
    http_errors: BTreeMap<u16, u64>,
    summary_acked: HashMap<String, Instant>,
    failures: Vec<String>,
}

fn lock(tally: &Mutex<Tally>) -> MutexGuard<'_, Tally> {
    tally.lock().unwrap_or_else(|p| p.into_inner())
}

/// Wall-clock milliseconds of an instant, from one reference pair taken at the start.
#[derive(Clone, Copy)]
struct Clock {
    at: Instant,
    unix_ms: u64,
}

impl Clock {
    fn now() -> Clock {
        Clock {
            at: Instant::now(),
            unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
        }
    }

    fn unix_ms(&self, at: Instant) -> u64 {
        self.unix_ms + at.saturating_duration_since(self.at).as_millis() as u64
    }
}

struct Delivery {
    url: Url,
    body: String,
    entry_id: String,
    summary: bool,
    what: String,
}

/// Posts one event until it is acknowledged, refused for good, or out of attempts.
async fn deliver(
    http: reqwest::Client,
    d: Delivery,
    max_attempts: u32,
    backoff: Duration,
    tally: Arc<Mutex<Tally>>,
) {
    let mut wait = backoff;
    for attempt in 1..=max_attempts {
        let outcome = http
            .post(d.url.clone())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(d.body.clone())
            .send()
            .await;
        let retry = match outcome {
            Ok(mut response) => {
                let status = response.status();
                // Read (a bounded part of) the body so the connection can be reused.
                let mut read = 0usize;
                while read < MAX_RESPONSE_BODY {
                    match response.chunk().await {
                        Ok(Some(chunk)) => read += chunk.len(),
                        _ => break,
                    }
                }
                if status.is_success() {
                    let mut t = lock(&tally);
                    t.delivered += 1;
                    if d.summary {
                        t.summary_acked
                            .entry(d.entry_id.clone())
                            .or_insert_with(Instant::now);
                    }
                    return;
                }
                let mut t = lock(&tally);
                *t.http_errors.entry(status.as_u16()).or_default() += 1;
                if status.is_server_error() && attempt < max_attempts {
                    true
                } else {
                    t.failed += 1;
                    if t.failures.len() < MAX_FAILURES_LISTED {
                        t.failures.push(format!(
                            "{}: HTTP {} after {attempt} attempt(s)",
                            d.what,
                            status.as_u16()
                        ));
                    }
                    tracing::warn!(event = %d.what, status = status.as_u16(), "webhook refused");
                    return;
                }
            }
            Err(e) => {
                let mut t = lock(&tally);
                t.transport_errors += 1;
                if attempt < max_attempts {
                    true
                } else {
                    t.failed += 1;
                    if t.failures.len() < MAX_FAILURES_LISTED {
                        t.failures.push(format!(
                            "{}: no answer after {attempt} attempt(s): {e}",
                            d.what
                        ));
                    }
                    tracing::warn!(event = %d.what, error = %e, "webhook undeliverable");
                    return;
                }
            }
        };
        if retry {
            lock(&tally).retries += 1;
            tokio::time::sleep(wait).await;
            wait = wait.saturating_mul(2);
        }
    }
}

/// Which calls lose their webhooks from some event on ([`PlayConfig::dropped_call_rate`]):
/// decided from the seed and the entry id, so the same play drops the same webhooks.
struct Cuts {
    seed: u64,
    rate: f64,
    /// Per entry: events seen so far, and the index from which they are dropped (if ever).
    calls: HashMap<String, (usize, Option<usize>)>,
}

impl Cuts {
    fn new(seed: u64, rate: f64) -> Cuts {
        Cuts {
            seed,
            rate,
            calls: HashMap::new(),
        }
    }

    /// Whether this event of `entry_id` (the next one in delivery order) is dropped.
    fn drops(&mut self, entry_id: &str) -> bool {
        if self.rate <= 0.0 {
            return false;
        }
        let (seed, rate) = (self.seed, self.rate);
        let (seen, cut_at) = self.calls.entry(entry_id.to_owned()).or_insert_with(|| {
            let mut h = DefaultHasher::new();
            (seed, entry_id).hash(&mut h);
            let draw = h.finish();
            // The top 32 bits decide whether the call is cut, the low bits where.
            let share = (draw >> 32) as f64 / (1u64 << 32) as f64;
            let cut_at = (share < rate).then(|| {
                if draw & 1 == 0 {
                    0
                } else {
                    1 + ((draw >> 1) % 8) as usize
                }
            });
            (0, cut_at)
        });
        let index = *seen;
        *seen += 1;
        cut_at.is_some_and(|at| index >= at)
    }

    /// Calls that lost at least one webhook.
    fn calls_cut(&self) -> u64 {
        self.calls
            .values()
            .filter(|(seen, cut_at)| cut_at.is_some_and(|at| at < *seen))
            .count() as u64
    }
}

fn event_hash(path: &str, json: &str) -> u64 {
    let mut h = DefaultHasher::new();
    path.hash(&mut h);
    json.hash(&mut h);
    h.finish()
}

/// Plays `config.calls` calls of the office of `vpbx` to `config.webhook_base`, telling `vpbx`
/// about every event as it happens, and calls `progress` about once a second and at the end.
///
/// The traffic's office comes from `config.seed` and `config.staff`; it must be the office
/// `vpbx` serves ([`Vpbx::for_office`] with the same seed and staff), or the API would describe
/// other employees than the calls use.
pub async fn play(
    config: &PlayConfig,
    vpbx: &Vpbx,
    progress: impl Fn(PlayProgress),
) -> Result<PlayReport, EmulatorError> {
    config.validate()?;
    let base = config.base_url()?;
    let expected_staff = office_staff(config.seed, &config.staff);
    if &expected_staff != vpbx.staff() {
        return Err(EmulatorError::StaffMismatch { seed: config.seed });
    }
    let http = reqwest::Client::builder()
        .timeout(config.request_timeout)
        .connect_timeout(config.request_timeout.min(Duration::from_secs(5)))
        .pool_max_idle_per_host(config.concurrency)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| EmulatorError::Client(e.to_string()))?;

    let mut report = PlayReport {
        calls: config.calls,
        events: 0,
        events_sent: 0,
        duplicates_sent: 0,
        lost_summaries: 0,
        webhooks_dropped: 0,
        calls_cut: 0,
        delivered: 0,
        failed: 0,
        retries: 0,
        http_errors: BTreeMap::new(),
        transport_errors: 0,
        ping_status: None,
        calls_by_kind: BTreeMap::new(),
        first_event_unix_ms: None,
        last_event_unix_ms: None,
        elapsed_ms: 0,
        failures: Vec::new(),
        entries: BTreeMap::new(),
        truths: Vec::new(),
        first_event_at: None,
        last_event_at: None,
    };

    if config.ping {
        // Mango's "check connection": an empty request to the registered URL.
        let answer =
            http.post(base.clone())
                .send()
                .await
                .map_err(|e| EmulatorError::Unreachable {
                    url: base.to_string(),
                    reason: e.to_string(),
                })?;
        let status = answer.status();
        report.ping_status = Some(status.as_u16());
        if !status.is_success() {
            return Err(EmulatorError::PingRefused {
                url: base.to_string(),
                status: status.as_u16(),
            });
        }
    }

    let clock = Clock::now();
    let start_unix = config.start_unix.unwrap_or((clock.unix_ms / 1000) as i64);
    let mut generator = Generator::new(config.traffic_config(start_unix));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let permits = Arc::new(Semaphore::new(config.concurrency));
    let mut tasks = JoinSet::new();
    let mut seen: HashSet<u64> = HashSet::new();
    let mut cuts = Cuts::new(config.seed, config.dropped_call_rate);
    let mut next_progress = clock.at + PROGRESS_EVERY;
    let mut release_at = clock.at;
    let compression = config.time_compression;
    tracing::info!(
        calls = config.calls,
        rate = config.calls_per_second,
        compression,
        url = %base,
        "playing Mango traffic"
    );

    let snapshot = |generator: &Generator, report: &PlayReport, in_flight: usize, finished| {
        let t = lock(&tally);
        PlayProgress {
            calls_started: generator.truths().len() as u64,
            calls: config.calls,
            events_sent: report.events_sent,
            delivered: t.delivered,
            failed: t.failed,
            in_flight: in_flight as u64,
            elapsed_ms: clock.at.elapsed().as_millis() as u64,
            finished,
        }
    };

    while let Some(event) = generator.next() {
        let offset = (event.timestamp() - start_unix).max(0) as f64 / compression;
        let due = clock.at + Duration::from_secs_f64(offset);
        // Delivery order is the generator's: a reordered event holds back the ones after it.
        release_at = release_at.max(due);
        loop {
            let now = Instant::now();
            if now >= next_progress {
                progress(snapshot(&generator, &report, tasks.len(), false));
                next_progress = now + PROGRESS_EVERY;
            }
            if now >= release_at {
                break;
            }
            let until = release_at.min(next_progress);
            tokio::time::sleep_until(tokio::time::Instant::from_std(until)).await;
        }
        while tasks.try_join_next().is_some() {}

        vpbx.observe(&event);
        if cuts.drops(event.entry_id()) {
            report.webhooks_dropped += 1;
            continue;
        }
        let (path, json) = callbridge_mango::wire::to_json(&event);
        let json = json.to_string();
        let sign = callbridge_mango::sign(&config.api_key, &json, &config.api_salt);
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("vpbx_api_key", &config.api_key)
            .append_pair("sign", &sign)
            .append_pair("json", &json)
            .finish();
        let url = base
            .join(path)
            .map_err(|e| EmulatorError::Client(format!("URL for {path}: {e}")))?;
        if seen.insert(event_hash(path, &json)) {
            report.events += 1;
        } else {
            report.duplicates_sent += 1;
        }
        report.events_sent += 1;
        let summary = matches!(event, PbxEvent::Summary(_));
        let entry_id = event.entry_id().to_owned();
        let sent_at = Instant::now();
        report.first_event_at.get_or_insert(sent_at);
        report.last_event_at = Some(sent_at);
        let timing = report
            .entries
            .entry(entry_id.clone())
            .or_insert_with(|| EntryTiming {
                kind: String::new(),
                deliveries: 0,
                first_sent_unix_ms: clock.unix_ms(sent_at),
                last_sent_unix_ms: 0,
                summary_sent_unix_ms: None,
                summary_acked_unix_ms: None,
                first_sent_at: sent_at,
                last_sent_at: sent_at,
                summary_sent_at: None,
                summary_acked_at: None,
            });
        timing.deliveries += 1;
        timing.last_sent_at = sent_at;
        timing.last_sent_unix_ms = clock.unix_ms(sent_at);
        if summary && timing.summary_sent_at.is_none() {
            timing.summary_sent_at = Some(sent_at);
            timing.summary_sent_unix_ms = Some(clock.unix_ms(sent_at));
        }

        // Back-pressure: wait for a free slot before taking the next event.
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let delivery = Delivery {
            url,
            body,
            what: format!("{path} of entry {entry_id}"),
            entry_id,
            summary,
        };
        let (http, tally) = (http.clone(), tally.clone());
        let (attempts, backoff) = (config.max_attempts, config.retry_backoff);
        tasks.spawn(async move {
            deliver(http, delivery, attempts, backoff, tally).await;
            drop(permit);
        });
    }

    // Wait for the deliveries in flight, still reporting progress.
    while !tasks.is_empty() {
        match tokio::time::timeout(PROGRESS_EVERY, tasks.join_next()).await {
            Ok(_) => {}
            Err(_) => progress(snapshot(&generator, &report, tasks.len(), false)),
        }
    }
    progress(snapshot(&generator, &report, 0, true));

    let (_, truths) = generator.into_parts();
    let tally = std::mem::take(&mut *lock(&tally));
    report.delivered = tally.delivered;
    report.failed = tally.failed;
    report.retries = tally.retries;
    report.transport_errors = tally.transport_errors;
    report.http_errors = tally.http_errors;
    report.failures = tally.failures;
    for (entry_id, at) in tally.summary_acked {
        if let Some(timing) = report.entries.get_mut(&entry_id) {
            timing.summary_acked_at = Some(at);
            timing.summary_acked_unix_ms = Some(clock.unix_ms(at));
        }
    }
    for truth in &truths {
        let kind = format!("{:?}", truth.kind);
        *report.calls_by_kind.entry(kind.clone()).or_default() += 1;
        if truth.summary_lost {
            report.lost_summaries += 1;
        }
        if let Some(timing) = report.entries.get_mut(&truth.entry_id) {
            timing.kind = kind;
        }
    }
    report.truths = truths;
    report.calls_cut = cuts.calls_cut();
    report.first_event_unix_ms = report.first_event_at.map(|at| clock.unix_ms(at));
    report.last_event_unix_ms = report.last_event_at.map(|at| clock.unix_ms(at));
    report.elapsed_ms = clock.at.elapsed().as_millis() as u64;
    tracing::info!(
        events = report.events_sent,
        delivered = report.delivered,
        failed = report.failed,
        "played Mango traffic"
    );
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> PlayConfig {
        PlayConfig {
            webhook_base: "http://127.0.0.1:9/mango/acme".into(),
            api_key: "k".into(),
            api_salt: "s".into(),
            ..PlayConfig::default()
        }
    }

    #[test]
    fn bad_fields_are_named() {
        assert!(valid().validate().is_ok());
        let cases: Vec<(PlayConfig, &str)> = vec![
            (
                PlayConfig {
                    calls_per_second: -1.0,
                    ..valid()
                },
                "calls_per_second",
            ),
            (
                PlayConfig {
                    calls_per_second: f64::NAN,
                    ..valid()
                },
                "calls_per_second",
            ),
            (
                PlayConfig {
                    duplicate_rate: 1.5,
                    ..valid()
                },
                "duplicate_rate",
            ),
            (
                PlayConfig {
                    time_compression: 0.0,
                    ..valid()
                },
                "time_compression",
            ),
            (
                PlayConfig {
                    concurrency: 0,
                    ..valid()
                },
                "concurrency",
            ),
            (
                PlayConfig {
                    webhook_base: "ftp://x/".into(),
                    ..valid()
                },
                "webhook_base",
            ),
            (
                PlayConfig {
                    webhook_base: "not a url".into(),
                    ..valid()
                },
                "webhook_base",
            ),
            (
                PlayConfig {
                    api_salt: String::new(),
                    ..valid()
                },
                "api_salt",
            ),
        ];
        for (config, field) in cases {
            match config.validate() {
                Err(EmulatorError::Config { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_base_gets_its_trailing_slash_and_paths_append() {
        let url = valid().base_url().unwrap();
        assert_eq!(
            url.join("events/call").unwrap().as_str(),
            "http://127.0.0.1:9/mango/acme/events/call"
        );
    }

    #[test]
    fn the_salt_is_not_in_debug_output() {
        let shown = format!(
            "{:?}",
            PlayConfig {
                api_salt: "very-secret-salt".into(),
                ..valid()
            }
        );
        assert!(!shown.contains("very-secret-salt"), "{shown}");
    }

    #[test]
    fn office_time_is_compressed_but_calls_start_at_the_wall_clock_rate() {
        let config = PlayConfig {
            calls_per_second: 5.0,
            time_compression: 50.0,
            ..valid()
        };
        assert!((config.traffic_config(0).rate - 0.1).abs() < 1e-12);
    }

    #[test]
    fn office_time_starts_early_enough_not_to_run_ahead() {
        let now = 1_800_000_000;
        let real_time = PlayConfig {
            time_compression: 1.0,
            ..valid()
        };
        assert_eq!(real_time.default_start(now), now);
        // 100 calls at 2 per second, 60 times faster: 50 s of starts gain 59 * 50 s, and the
        // last calls' 1200 office seconds take 20 s, gaining 59 * 20 s.
        let fast = PlayConfig {
            calls: 100,
            calls_per_second: 2.0,
            time_compression: 60.0,
            ..valid()
        };
        assert_eq!(fast.default_start(now), now - 59 * 70);
    }

    #[test]
    fn cut_calls_lose_their_webhooks_from_one_point_on_the_same_way_each_time() {
        let run = |rate: f64| {
            let mut cuts = Cuts::new(7, rate);
            let mut dropped = Vec::new();
            for call in 0..200 {
                let entry = format!("entry-{call}");
                let kept: Vec<bool> = (0..12).map(|_| !cuts.drops(&entry)).collect();
                // Once a call's webhooks stop, they stay stopped.
                let first_drop = kept.iter().position(|k| !k).unwrap_or(kept.len());
                assert!(kept[first_drop..].iter().all(|k| !k), "{entry}: {kept:?}");
                dropped.push(first_drop);
            }
            (dropped, cuts.calls_cut())
        };
        let (none, cut) = run(0.0);
        assert!(none.iter().all(|&d| d == 12) && cut == 0);
        let (all, cut) = run(1.0);
        assert_eq!(cut, 200);
        let whole = all.iter().filter(|&&d| d == 0).count();
        assert!(
            (60..=140).contains(&whole),
            "about half lose every webhook: {whole}"
        );
        assert!(all.iter().all(|&d| d <= 8));
        let (some, cut) = run(0.2);
        assert!((20..=60).contains(&cut), "{cut} of 200");
        assert_eq!(run(0.2).0, some, "the same seed drops the same webhooks");
    }
}
