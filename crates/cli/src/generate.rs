//! `callbridge generate`: realistic, deterministic PBX traffic as a `simulate` events file
//! (JSON Lines of `{"path": "events/...", "json": {...}}`), and the settings for its office.

use anyhow::{Context, Result};
use callbridge_mango::wire::to_json;
use callbridge_traffic::{Config, Generator};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Number of calls (entries) to generate.
    #[arg(long)]
    calls: usize,
    /// Seed: the same arguments always give the same file.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Calls started per second of event time (calls overlap like in a real office).
    #[arg(long, default_value_t = 0.5)]
    rate: f64,
    /// Event time of the first call (Unix seconds).
    #[arg(long, default_value_t = 1_764_000_000)]
    start: i64,
    /// Share of events delivered twice.
    #[arg(long, default_value_t = 0.0)]
    duplicates: f64,
    /// Share of events swapped with a close neighbour.
    #[arg(long, default_value_t = 0.0)]
    reorder: f64,
    /// Share of calls whose summary never arrives.
    #[arg(long, default_value_t = 0.0)]
    lost_summaries: f64,
    /// Share of answered calls that are recorded.
    #[arg(long, default_value_t = 0.5)]
    recorded: f64,
    /// Number of employees (about 30% of them unmapped).
    #[arg(long, default_value_t = 12)]
    employees: usize,
    /// Events file to write (JSON Lines, as `simulate --events` reads).
    #[arg(long)]
    out: PathBuf,
    /// Also write the matching settings file (TOML).
    #[arg(long)]
    settings_out: Option<PathBuf>,
}

pub fn run(args: &Args) -> Result<()> {
    for (name, share) in [
        ("--duplicates", args.duplicates),
        ("--reorder", args.reorder),
        ("--lost-summaries", args.lost_summaries),
        ("--recorded", args.recorded),
    ] {
        anyhow::ensure!(
            (0.0..=1.0).contains(&share),
            "{name}: must be a share between 0 and 1, got {share}"
        );
    }
    anyhow::ensure!(
        args.rate.is_finite() && args.rate > 0.0,
        "--rate: must be a positive number of calls per second, got {}",
        args.rate
    );
    let mut config = Config {
        calls: args.calls,
        seed: args.seed,
        start: args.start,
        rate: args.rate,
        duplicates: args.duplicates,
        reorder: args.reorder,
        lost_summaries: args.lost_summaries,
        recorded: args.recorded,
        ..Config::default()
    };
    config.staff.employees = args.employees.max(2);
    let mut generator = Generator::new(config);
    if let Some(path) = &args.settings_out {
        std::fs::write(path, generator.staff().settings_toml())
            .with_context(|| format!("{}: cannot write", path.display()))?;
    }
    let file = File::create(&args.out)
        .with_context(|| format!("{}: cannot create", args.out.display()))?;
    let mut w = BufWriter::with_capacity(1 << 16, file);
    let mut events = 0u64;
    let write_err =
        |e: std::io::Error| anyhow::anyhow!("{}: cannot write: {e}", args.out.display());
    for event in generator.by_ref() {
        let (path, json) = to_json(&event);
        // Paths are fixed ASCII words: no escaping needed.
        write!(w, "{{\"path\":\"{path}\",\"json\":").map_err(write_err)?;
        serde_json::to_writer(&mut w, &json)?;
        w.write_all(b"}\n").map_err(write_err)?;
        events += 1;
    }
    w.flush().map_err(write_err)?;
    let calls = generator.truths();
    let answered = calls.iter().filter(|c| c.answered).count();
    eprintln!(
        "callbridge: wrote {events} events of {} calls ({answered} answered) to {}",
        calls.len(),
        args.out.display()
    );
    Ok(())
}
