//! `callbridge simulate`: the what-if contract of `docs/simulate.md`.

use crate::pipeline::{Pipeline, Planned};
use anyhow::{bail, Context, Result};
use callbridge_core::plan::{CompletedBy, EntryPlan};
use callbridge_core::tracker::TrackerConfig;
use callbridge_core::ValidSettings;
use callbridge_mango::check_plausible;
use callbridge_mango::webhook::{parse_event, Webhook};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    /// Settings file (TOML), in the product's settings schema.
    #[arg(long)]
    settings: PathBuf,
    /// PBX events, one webhook a line: {"path": "events/call", "json": {...}}.
    #[arg(long)]
    events: PathBuf,
    /// A4: seconds after the last leg disconnected before an entry with no summary is complete.
    #[arg(long, default_value_t = 120)]
    grace_seconds: i64,
    /// Seconds (of event time) a completed entry still takes late events before it is planned.
    #[arg(long, default_value_t = 120)]
    settle_seconds: i64,
    /// Print the JSON indented.
    #[arg(long)]
    pretty: bool,
}

/// One input line. `json` is the webhook's `json` form field: an object, or the raw string.
#[derive(Deserialize)]
struct Line<'a> {
    #[serde(borrow)]
    path: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    json: &'a RawValue,
}

#[derive(Serialize)]
struct OutputEntry<'a> {
    #[serde(flatten)]
    plan: &'a EntryPlan,
    completed_by: CompletedBy,
}

#[derive(Serialize, Default)]
struct Stats {
    lines: u64,
    events: u64,
    ignored_paths: u64,
    duplicates: u64,
    late_events: u64,
    entries: u64,
    /// Entries whose legs were still up when the input ended: not complete, not planned.
    unfinished: Vec<String>,
    /// Entries with recording or keypress events but no call leg and no summary: there is no
    /// call to plan (their call events are missing from the input).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    without_legs: Vec<String>,
}

pub fn run(args: &Args) -> Result<()> {
    let settings = load_settings(&args.settings)?;
    let file = File::open(&args.events)
        .with_context(|| format!("{}: cannot open", args.events.display()))?;
    let stdout = io::stdout();
    let mut out = Output {
        writer: BufWriter::with_capacity(1 << 16, stdout.lock()),
        first: true,
        pretty: args.pretty,
    };
    let config = TrackerConfig {
        grace_s: args.grace_seconds,
        settle_s: args.settle_seconds,
        ..TrackerConfig::default()
    };
    let stats = simulate(
        &settings,
        BufReader::with_capacity(1 << 20, file),
        &args.events,
        config,
        &mut out,
    )?;
    out.finish(&stats)?;
    for id in &stats.unfinished {
        eprintln!("callbridge: warning: entry {id} still had a leg up at the end of the input; not planned");
    }
    for id in &stats.without_legs {
        eprintln!("callbridge: warning: entry {id} has only recording or keypress events, no call legs and no summary; nothing to plan");
    }
    Ok(())
}

/// `simulate --settings SETTINGS --events EVENTS` with the default periods, its output as JSON
/// (for `check-scenarios`).
pub fn simulate_files(settings: &Path, events: &Path) -> Result<serde_json::Value> {
    let settings = load_settings(settings)?;
    let file = File::open(events).with_context(|| format!("{}: cannot open", events.display()))?;
    let mut buffer = Vec::new();
    let mut out = Output {
        writer: &mut buffer,
        first: true,
        pretty: false,
    };
    let config = TrackerConfig {
        grace_s: 120,
        settle_s: 120,
        ..TrackerConfig::default()
    };
    let stats = simulate(&settings, BufReader::new(file), events, config, &mut out)?;
    out.finish(&stats)?;
    Ok(serde_json::from_slice(&buffer)?)
}

pub fn load_settings(path: &Path) -> Result<ValidSettings> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    ValidSettings::parse_toml(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

fn simulate(
    settings: &ValidSettings,
    input: impl BufRead,
    name: &Path,
    config: TrackerConfig,
    out: &mut Output<impl Write>,
) -> Result<Stats> {
    let mut pipeline = Pipeline::new(settings, config);
    let mut stats = Stats::default();
    let emit = |planned: Planned, stats: &mut Stats, out: &mut Output<_>| -> Result<()> {
        stats.duplicates += planned.duplicates;
        stats.entries += 1;
        out.entry(&OutputEntry {
            plan: &planned.plan,
            completed_by: planned.completed_by,
        })
    };
    let mut input = input;
    // One buffer for every line: a million-line file makes no million allocations.
    let mut line = String::new();
    let mut number = 0usize;
    loop {
        line.clear();
        number += 1;
        let read = input
            .read_line(&mut line)
            .with_context(|| format!("{}:{number}: cannot read", name.display()))?;
        if read == 0 {
            break;
        }
        stats.lines += 1;
        if line.trim().is_empty() {
            continue;
        }
        let parsed: Line<'_> = serde_json::from_str(&line).map_err(|e| {
            anyhow::anyhow!(
                "{}:{number}: not a webhook line ({{\"path\": ..., \"json\": ...}}): {e}",
                name.display()
            )
        })?;
        // `json` may be the decoded object or, as posted, a string holding it.
        let raw = parsed.json.get();
        let text: std::borrow::Cow<'_, str> = if raw.starts_with('"') {
            serde_json::from_str::<String>(raw)
                .map_err(|e| anyhow::anyhow!("{}:{number}: {e}", name.display()))?
                .into()
        } else {
            raw.into()
        };
        match parse_event(&parsed.path, &text) {
            Ok(Webhook::Event(event)) => {
                // The server's bounds, but for the one that needs a clock (a day past "now"):
                // a replayed file has no "now" of its own.
                if let Err(e) = check_plausible(&event, None) {
                    bail!("{}:{number}: {e}", name.display());
                }
                stats.events += 1;
                for planned in pipeline.push(event) {
                    emit(planned, &mut stats, out)?;
                }
            }
            Ok(_) => stats.ignored_paths += 1,
            Err(e) => bail!("{}:{number}: {e}", name.display()),
        }
    }
    stats.late_events = pipeline.late_events();
    let (done, unfinished) = pipeline.finish();
    for planned in done {
        emit(planned, &mut stats, out)?;
    }
    for entry in unfinished {
        if entry.has_legs {
            stats.unfinished.push(entry.entry_id);
        } else {
            stats.without_legs.push(entry.entry_id);
        }
    }
    Ok(stats)
}

/// Streams `{"entries": [...], "stats": {...}}` so memory stays bounded by the open entries.
struct Output<W: Write> {
    writer: W,
    first: bool,
    pretty: bool,
}

impl<W: Write> Output<W> {
    fn entry(&mut self, entry: &OutputEntry<'_>) -> Result<()> {
        let w = &mut self.writer;
        if self.first {
            w.write_all(if self.pretty {
                b"{\n  \"entries\": [\n"
            } else {
                b"{\"entries\":["
            })?;
            self.first = false;
        } else {
            w.write_all(if self.pretty { b",\n" } else { b"," })?;
        }
        if self.pretty {
            let text = serde_json::to_string_pretty(entry)?;
            for (i, l) in text.lines().enumerate() {
                if i > 0 {
                    w.write_all(b"\n")?;
                }
                w.write_all(b"    ")?;
                w.write_all(l.as_bytes())?;
            }
        } else {
            serde_json::to_writer(&mut *w, entry)?;
        }
        Ok(())
    }

    fn finish(mut self, stats: &Stats) -> Result<()> {
        let w = &mut self.writer;
        if self.first {
            w.write_all(if self.pretty {
                b"{\n  \"entries\": ["
            } else {
                b"{\"entries\":["
            })?;
        }
        if self.pretty {
            write!(
                w,
                "\n  ],\n  \"stats\": {}\n}}\n",
                serde_json::to_string_pretty(stats)?.replace('\n', "\n  ")
            )?;
        } else {
            writeln!(w, "],\"stats\":{}}}", serde_json::to_string(stats)?)?;
        }
        w.flush()?;
        Ok(())
    }
}
