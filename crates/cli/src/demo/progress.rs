//! While the calls play: the live display (bars on a terminal, a line every 2 s otherwise) and
//! the wait until every call is planned and its CRM work done.

use super::observation::awaiting_mango;
use super::say;
use super::{STALL, TENANT};
use anyhow::Result;
use callbridge_amocrm_sandbox::Sandbox;
use callbridge_mango_sandbox::{PlayProgress, Vpbx};
use callbridge_store::{OutboxCounts, Store};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Progress: bars when stdout is a terminal, a plain line every 2 s otherwise.
pub(super) struct Display {
    calls: u64,
    shared: Mutex<Snapshot>,
    bars: Option<(MultiProgress, ProgressBar, ProgressBar)>,
}

#[derive(Default, Clone)]
struct Snapshot {
    play: Option<PlayProgress>,
    entries: i64,
    counts: OutboxCounts,
    crm_requests: u64,
}

impl Display {
    pub(super) fn new(calls: u64) -> Display {
        // Bars where the lines for a person go (stderr under --json), when that is a terminal.
        let (terminal, target) = if super::human_on_stderr() {
            (
                std::io::stderr().is_terminal(),
                ProgressDrawTarget::stderr(),
            )
        } else {
            (
                std::io::stdout().is_terminal(),
                ProgressDrawTarget::stdout(),
            )
        };
        let bars = terminal.then(|| {
            let multi = MultiProgress::with_draw_target(target);
            let style = ProgressStyle::with_template(
                "  {prefix:<8} [{bar:30}] {pos:>6}/{len} {elapsed:>4} (ETA {eta:>3}) {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            let played = multi.add(ProgressBar::new(calls));
            played.set_style(style.clone());
            played.set_prefix("played");
            let planned = multi.add(ProgressBar::new(calls));
            planned.set_style(style);
            planned.set_prefix("planned");
            (multi, played, planned)
        });
        Display {
            calls,
            shared: Mutex::new(Snapshot::default()),
            bars,
        }
    }

    fn snapshot(&self) -> Snapshot {
        self.shared.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub(super) fn played(&self, p: &PlayProgress) {
        if let Ok(mut s) = self.shared.lock() {
            s.play = Some(p.clone());
        }
    }

    /// Refreshes the planned/delivered counts from the store and draws; runs until dropped.
    pub(super) async fn tick(&self, store: &Store, sandbox: &Sandbox) -> std::convert::Infallible {
        let bars = self.bars.as_ref().map(|(_, a, b)| (a, b));
        let every = if bars.is_some() {
            Duration::from_millis(250)
        } else {
            Duration::from_secs(2)
        };
        let started = Instant::now();
        loop {
            tokio::time::sleep(every).await;
            let (Ok(entries), Ok(counts)) = (
                store.count_entries(TENANT).await,
                store.outbox_counts(TENANT).await,
            ) else {
                continue;
            };
            let snap = match self.shared.lock() {
                Ok(mut s) => {
                    s.entries = entries;
                    s.counts = counts;
                    s.crm_requests = sandbox.stats().requests;
                    s.clone()
                }
                Err(_) => continue,
            };
            draw(&snap, bars, self.calls, started.elapsed());
        }
    }

    pub(super) fn finish(&self) {
        if let Some((multi, played, planned)) = &self.bars {
            if let Some(p) = &self.snapshot().play {
                played.set_position(p.calls_started);
            }
            played.finish();
            planned.finish();
            let _ = multi.clear();
        }
    }
}

fn draw(
    snap: &Snapshot,
    bars: Option<(&ProgressBar, &ProgressBar)>,
    calls: u64,
    elapsed: Duration,
) {
    let started = snap.play.as_ref().map_or(0, |p| p.calls_started);
    let webhooks = snap.play.as_ref().map_or(0, |p| p.delivered);
    let c = snap.counts;
    match bars {
        Some((played, planned)) => {
            played.set_position(started);
            played.set_message(format!("calls, {webhooks} webhooks acknowledged"));
            planned.set_position(snap.entries.max(0) as u64);
            planned.set_message(format!(
                "entries; CRM work {} done, {} pending, {} parked; {} CRM requests",
                c.done, c.pending, c.parked, snap.crm_requests
            ));
        }
        None => {
            // The playing's remaining time at its pace so far; delivery follows it.
            let eta = if started > 0 && started < calls {
                let left = elapsed.as_secs_f64() * (calls - started) as f64 / started as f64;
                format!(" (ETA {left:.0} s)")
            } else {
                String::new()
            };
            say!(
                "  {:>5.1} s  played {started}/{calls} calls{eta} · planned {} entries · CRM work {} done, {} pending, {} parked · {} CRM requests",
                elapsed.as_secs_f64(),
                snap.entries,
                c.done,
                c.pending,
                c.parked,
                snap.crm_requests
            );
            let _ = std::io::stdout().flush();
            let _ = std::io::stderr().flush();
        }
    }
}

/// How the wait for delivery ended.
pub(super) struct Waited {
    /// Every entry planned and no CRM work pending (transcripts Mango never made aside).
    pub(super) delivered: bool,
    /// Seconds from the end of the play to the end of the wait.
    pub(super) seconds: f64,
}

/// Waits until every played call is planned and its CRM work done, or nothing moves for
/// [`STALL`].
pub(super) async fn wait_for_delivery(store: &Store, vpbx: &Vpbx, calls: u64) -> Result<Waited> {
    let started = Instant::now();
    let mut last: Option<(i64, OutboxCounts)> = None;
    let mut last_change = Instant::now();
    loop {
        let entries = store.count_entries(TENANT).await?;
        let counts = store.outbox_counts(TENANT).await?;
        if entries >= calls as i64 {
            let mango = if counts.pending > 0 {
                awaiting_mango(store, vpbx).await?.len() as i64
            } else {
                0
            };
            if counts.pending - mango == 0 {
                return Ok(Waited {
                    delivered: true,
                    seconds: started.elapsed().as_secs_f64(),
                });
            }
        }
        if last != Some((entries, counts)) {
            last = Some((entries, counts));
            last_change = Instant::now();
        } else if last_change.elapsed() > STALL {
            return Ok(Waited {
                delivered: false,
                seconds: started.elapsed().as_secs_f64(),
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
