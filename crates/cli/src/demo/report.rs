//! The demo's verdict: what was played, planned, written and seen in the CRM, the latency from
//! a call's summary to its record, and the problems that make the run fail.

use super::observation::{CrmView, Entries, Outbox};
use super::progress::Waited;
use super::say;
use super::CRM_RPS;
use callbridge_mango_sandbox::PlayReport;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashSet};

pub(super) struct Report<'a> {
    pub(super) played: &'a PlayReport,
    pub(super) waited: &'a Waited,
    pub(super) outbox: &'a Outbox,
    pub(super) entries: &'a Entries,
    pub(super) crm: &'a CrmView,
    pub(super) stats: &'a callbridge_amocrm_sandbox::Stats,
    pub(super) cards: usize,
    pub(super) seeded_contacts: usize,
    pub(super) seeded_leads: usize,
    /// The numbers of the contacts the CRM knew before the first call.
    pub(super) known_phones: &'a HashSet<String>,
    pub(super) calls: u64,
    pub(super) rate: f64,
    pub(super) speech_analytics: bool,
    pub(super) seconds: f64,
}

/// Latency percentiles in milliseconds, nearest rank.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Latency {
    count: usize,
    p50: i64,
    p95: i64,
    max: i64,
}

impl std::fmt::Display for Latency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "p50 {:.2} s, p95 {:.2} s, max {:.2} s ({} entries)",
            self.p50 as f64 / 1000.0,
            self.p95 as f64 / 1000.0,
            self.max as f64 / 1000.0,
            self.count
        )
    }
}

fn latency(samples: &mut [i64]) -> Option<Latency> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    let rank = |p: f64| {
        let i = ((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[i]
    };
    Some(Latency {
        count: samples.len(),
        p50: rank(0.50),
        p95: rank(0.95),
        max: rank(1.0),
    })
}

/// Whose entries a latency covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Clients {
    All,
    /// Clients the CRM knew before the first call.
    Known,
    /// Every other entry's: new clients, and entries without a client's number.
    New,
}

impl Report<'_> {
    /// Per entry: its last call record written in the CRM minus its summary's sending.
    fn latency(&self, clients: Clients) -> Option<Latency> {
        let mut samples: Vec<i64> = self
            .outbox
            .written_at
            .iter()
            .filter(|(entry, _)| {
                let known = self
                    .entries
                    .client_phone
                    .get(*entry)
                    .is_some_and(|phone| self.known_phones.contains(phone));
                match clients {
                    Clients::All => true,
                    Clients::Known => known,
                    Clients::New => !known,
                }
            })
            .filter_map(|(entry, done)| {
                let sent = self.played.entries.get(entry)?.summary_sent_unix_ms?;
                Some(done - sent as i64)
            })
            .collect();
        latency(&mut samples)
    }

    /// Written call records whose note the CRM does not show.
    fn notes_missing(&self) -> usize {
        self.outbox
            .notes
            .iter()
            .filter(|(id, entity)| {
                !self
                    .crm
                    .notes
                    .get(entity)
                    .is_some_and(|notes| notes.contains_key(id))
            })
            .count()
    }

    pub(super) fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.played.failed > 0 {
            p.push(format!(
                "{} webhooks were never acknowledged",
                self.played.failed
            ));
        }
        if self.entries.planned < self.calls {
            p.push(format!(
                "{} of {} calls were not planned",
                self.calls - self.entries.planned,
                self.calls
            ));
        }
        let crm_pending = self.outbox.pending - self.outbox.awaiting_mango as i64;
        if crm_pending > 0 {
            p.push(format!("{crm_pending} CRM items still pending"));
        }
        if !self.outbox.parked.is_empty() {
            p.push(format!(
                "{} CRM items parked (first: {})",
                self.outbox.parked.len(),
                self.outbox.parked[0]["reason"].as_str().unwrap_or("-")
            ));
        }
        if !self.outbox.calls_without_note.is_empty() {
            p.push(format!(
                "{} call records done without a call note",
                self.outbox.calls_without_note.len()
            ));
        }
        let missing = self.notes_missing();
        if missing > 0 {
            p.push(format!(
                "{missing} written call records not found as notes in the CRM"
            ));
        }
        if self.stats.rate_limited > 0 {
            p.push(format!(
                "the CRM answered 429 {} times",
                self.stats.rate_limited
            ));
        }
        p
    }

    pub(super) fn json(&self, problems: &[String]) -> Value {
        let lat = self.latency(Clients::All);
        let lat_json = |l: Option<Latency>| {
            l.map(|l| json!({"count": l.count, "p50": l.p50, "p95": l.p95, "max": l.max}))
        };
        let o = self.outbox;
        json!({
            "ok": problems.is_empty(),
            "problems": problems,
            "calls": self.calls,
            "seconds": round1(self.seconds),
            "play": {
                "calls": self.played.calls,
                "webhooks_sent": self.played.events_sent,
                "duplicates_sent": self.played.duplicates_sent,
                "lost_summaries": self.played.lost_summaries,
                "webhooks_failed": self.played.failed,
                "seconds": round1(self.played.elapsed_ms as f64 / 1000.0),
                "calls_by_kind": self.played.calls_by_kind,
            },
            "wait_seconds": round1(self.waited.seconds),
            "entries": {
                "planned": self.entries.planned,
                "records": self.entries.records,
                "ignored_conversations": self.entries.ignored,
                "internal": self.entries.internal,
                "missed": self.entries.missed,
                "completed_by_grace": self.entries.by_grace,
            },
            "records_written": o.notes.len(),
            "records_by_rule": o.records_by_rule,
            "transcripts_saved": o.transcripts_saved,
            "transcripts_awaiting_mango": o.awaiting_mango,
            "tasks_created": o.tasks_created,
            "tasks_skipped_existing": o.tasks_skipped,
            "repeat_client_leads_created": o.repeat_leads_created,
            "parked": o.parked,
            "pending": o.pending,
            "crm": {
                "call_notes": self.crm.note_count(),
                "call_notes_by_entity": self.crm.notes.iter().map(|(k, v)| (k.clone(), v.len())).collect::<BTreeMap<_, _>>(),
                "call_in": self.crm.call_in,
                "call_out": self.crm.call_out,
                "call_notes_by_user": self.crm.notes_by_user().iter().map(|(k, v)| (k.to_string(), *v)).collect::<BTreeMap<_, _>>(),
                "records_not_found": self.notes_missing(),
                "contacts_created": self.crm.contacts.saturating_sub(self.seeded_contacts),
                "leads_created": self.crm.leads.saturating_sub(self.seeded_leads),
                "tasks": self.crm.tasks,
                "unsorted": self.crm.unsorted,
                "cards_shown": self.cards,
                "rate_limited_429": self.stats.rate_limited,
                "max_requests_in_any_second": self.stats.max_requests_in_any_second,
                "requests_by_service": self.stats.requests,
                "requests_per_call": (self.stats.requests as f64 / self.calls.max(1) as f64 * 100.0).round() / 100.0,
                "requests_by_route": self.stats.by_route,
                "demo_read_requests": self.crm.requests,
            },
            "latency_ms": lat_json(lat),
            "latency_known_clients_ms": lat_json(self.latency(Clients::Known)),
            "latency_new_clients_ms": lat_json(self.latency(Clients::New)),
        })
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

pub(super) fn print_report(r: &Report<'_>, problems: &[String]) {
    let p = r.played;
    let o = r.outbox;
    let c = r.crm;
    let s = r.stats;
    say!(
        "Played {} calls: {} webhooks ({} duplicates, {} lost summaries) in {:.1} s; delivery finished {:.1} s later.",
        p.calls,
        p.events_sent,
        p.duplicates_sent,
        p.lost_summaries,
        p.elapsed_ms as f64 / 1000.0,
        r.waited.seconds
    );
    // A missed call is written too (a call note, and a task when set): it is counted among the
    // entries, not among what writes nothing.
    say!(
        "Planned {} entries ({} of them missed calls, {} internal): {} call records; {} conversations write nothing.",
        r.entries.planned, r.entries.missed, r.entries.internal, r.entries.records, r.entries.ignored
    );
    say!("Records written, by rule:");
    for (rule, n) in &o.records_by_rule {
        let label = callbridge_core::Rule::from_id(rule).map_or("", |r| r.label());
        say!("  {rule:<3} {n:>5}  {label}");
    }
    let users = c
        .notes_by_user()
        .iter()
        .map(|(u, n)| format!("{u}: {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    let on = |entity: &str| c.notes.get(entity).map_or(0, |n| n.len());
    say!(
        "In amoCRM (read through its API): {} call notes ({} on contacts, {} on leads; {} in, {} out) of {} records written; by user {users}",
        c.note_count(),
        on("contacts"),
        on("leads"),
        c.call_in,
        c.call_out,
        o.notes.len()
    );
    say!(
        "  {} contacts and {} leads created, {} tasks, {} unsorted, {} call cards shown{}",
        c.contacts.saturating_sub(r.seeded_contacts),
        c.leads.saturating_sub(r.seeded_leads),
        c.tasks,
        c.unsorted,
        r.cards,
        if r.speech_analytics {
            format!(
                ", {} transcripts saved ({} recordings Mango did not transcribe)",
                o.transcripts_saved, o.awaiting_mango
            )
        } else {
            String::new()
        }
    );
    say!(
        "  parked: {}; rate limit: {} x 429, at most {} requests in any second (limit {CRM_RPS})",
        o.parked.len(),
        s.rate_limited,
        s.max_requests_in_any_second
    );
    for item in o.parked.iter().take(5) {
        say!(
            "    {} ({}): {}",
            item["item_key"].as_str().unwrap_or("-"),
            item["kind"].as_str().unwrap_or("-"),
            item["reason"].as_str().unwrap_or("-")
        );
    }
    match r.latency(Clients::All) {
        Some(l) => {
            say!("Summary sent -> record in the CRM: {l}.");
            for (clients, name) in [(Clients::Known, "known"), (Clients::New, "new")] {
                if let Some(l) = r.latency(clients) {
                    say!("  {name} clients: {l}.");
                }
            }
        }
        None => say!("No latency: no entry with a summary was written."),
    }
    // amoCRM's 7 requests per second is a hard ceiling: past it, records queue, and the latency
    // above measures the CRM's limit rather than callbridge. Say so, with a rate that fits.
    let per_call = s.requests as f64 / p.calls.max(1) as f64;
    let needed = per_call * r.rate;
    if needed > f64::from(CRM_RPS) * 0.9 {
        say!(
            "  At {} calls/s these calls need about {needed:.0} CRM requests per second ({per_call:.1} a call); \
             amoCRM allows {CRM_RPS}, so records queue. Try --rate {:.1} to see the latency without a queue.",
            r.rate,
            (f64::from(CRM_RPS) * 0.7 / per_call.max(0.1) * 10.0).floor() / 10.0
        );
    }
    if problems.is_empty() {
        say!("All calls landed.");
    } else {
        say!("NOT everything landed: {}.", problems.join("; "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let mut v: Vec<i64> = (1..=100).rev().collect();
        let l = latency(&mut v).expect("samples");
        assert_eq!((l.count, l.p50, l.p95, l.max), (100, 50, 95, 100));
        assert_eq!(latency(&mut []), None);
        let one = latency(&mut [7]).expect("one sample");
        assert_eq!((one.p50, one.p95, one.max), (7, 7, 7));
    }
}
