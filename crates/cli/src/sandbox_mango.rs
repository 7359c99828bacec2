//! `callbridge sandbox mango`: the Mango Office emulator. Serves the VPBX API of a generated office
//! and, with `--webhook-url`, plays that office's calls to it as signed webhooks. Wiring only;
//! the emulator lives in `callbridge-mango-sandbox`.

use crate::shutdown_signal;
use anyhow::{anyhow, bail, ensure, Context, Result};
use callbridge_mango_sandbox::{
    play, start_vpbx_api, PlayConfig, PlayProgress, RateLimits, Vpbx, VpbxConfig,
};
use callbridge_traffic::StaffConfig;
use std::io::Write;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Port of the VPBX API on 127.0.0.1 (0: any free port; the line printed at start names it).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// The VPBX's `vpbx_api_key`: requests to the API and the webhooks carry it.
    #[arg(long)]
    api_key: String,
    /// The VPBX's `vpbx_api_salt`: signs and checks every request. Never printed.
    #[arg(long)]
    api_salt: String,
    /// Seed of the generated office (employees, groups); the traffic uses the same seed.
    #[arg(long, default_value_t = 1)]
    staff_seed: u64,
    /// Number of employees in the office (about 30% of them unmapped in the settings).
    #[arg(long, default_value_t = 12, allow_negative_numbers = true)]
    employees: i64,
    /// Write the settings TOML of the generated office (its mapping table) to this file.
    #[arg(long)]
    settings_out: Option<PathBuf>,
    /// Do not enforce Mango's per-endpoint rate limits.
    #[arg(long)]
    no_rate_limits: bool,

    /// Play calls to this webhook base URL (the tenant's, e.g. http://127.0.0.1:8080/mango/acme/).
    #[arg(long)]
    webhook_url: Option<String>,
    /// Number of calls to play.
    #[arg(long, requires = "webhook_url", allow_negative_numbers = true)]
    calls: Option<i64>,
    /// Calls started per second (wall clock).
    #[arg(long, requires = "webhook_url", allow_negative_numbers = true)]
    rate: Option<f64>,
    /// Seed of the traffic; the office comes from it too, so it must equal --staff-seed.
    #[arg(long, requires = "webhook_url")]
    seed: Option<u64>,
    /// Share of events delivered twice (default 0.02).
    #[arg(long, requires = "webhook_url", allow_negative_numbers = true)]
    duplicates: Option<f64>,
    /// Share of events delivered after a close neighbour (default 0.02).
    #[arg(long, requires = "webhook_url", allow_negative_numbers = true)]
    reorder: Option<f64>,
    /// Share of calls whose summary is never delivered (default 0.01).
    #[arg(long, requires = "webhook_url", allow_negative_numbers = true)]
    lost_summaries: Option<f64>,
    /// Share of calls whose webhooks stop part-way, as in an outage (default 0): the emulated
    /// PBX still has them in its statistics, for `callbridge reconcile` to recover.
    #[arg(long, requires = "webhook_url", allow_negative_numbers = true)]
    dropped_calls: Option<f64>,
    /// Share of answered calls that are recorded (default 0.5).
    #[arg(long, requires = "webhook_url", allow_negative_numbers = true)]
    recorded: Option<f64>,
    /// Office seconds played per second within calls (1: real time; 60: a minute per second).
    #[arg(long, requires = "webhook_url", allow_negative_numbers = true)]
    time_compression: Option<f64>,
    /// Webhook requests in flight at most (default 16).
    #[arg(long, requires = "webhook_url", allow_negative_numbers = true)]
    concurrency: Option<i64>,
    /// Also write the full report, with every entry's send times, to this JSON file.
    #[arg(long, requires = "webhook_url")]
    report_out: Option<PathBuf>,
    /// After playing, keep serving the API until Ctrl-C or SIGTERM (callbridge may still fetch
    /// recordings and transcripts).
    #[arg(long, requires = "webhook_url")]
    keep_serving: bool,
}

fn share(flag: &str, value: Option<f64>, default: f64) -> Result<f64> {
    let value = value.unwrap_or(default);
    ensure!(
        (0.0..=1.0).contains(&value),
        "{flag}: must be a share between 0 and 1, got {value}"
    );
    Ok(value)
}

fn positive(flag: &str, value: Option<f64>, default: f64) -> Result<f64> {
    let value = value.unwrap_or(default);
    ensure!(
        value.is_finite() && value > 0.0,
        "{flag}: must be a positive number, got {value}"
    );
    Ok(value)
}

fn staff_config(args: &Args) -> Result<StaffConfig> {
    ensure!(
        (2..=1000).contains(&args.employees),
        "--employees: must be between 2 and 1000, got {}",
        args.employees
    );
    Ok(StaffConfig {
        employees: args.employees as usize,
        ..StaffConfig::default()
    })
}

/// The play configuration, with every flag checked; `None` without `--webhook-url`.
fn play_config(args: &Args, staff: &StaffConfig) -> Result<Option<PlayConfig>> {
    let Some(url) = &args.webhook_url else {
        return Ok(None);
    };
    let defaults = PlayConfig::default();
    if let Some(seed) = args.seed {
        ensure!(
            seed == args.staff_seed,
            "--seed {seed} differs from --staff-seed {}: the traffic generator derives the office \
             from the traffic seed, so they must be equal (omit --seed to use --staff-seed)",
            args.staff_seed
        );
    }
    let calls = args.calls.unwrap_or(defaults.calls as i64);
    ensure!(calls >= 1, "--calls: must be at least 1, got {calls}");
    let concurrency = args.concurrency.unwrap_or(defaults.concurrency as i64);
    ensure!(
        (1..=10_000).contains(&concurrency),
        "--concurrency: must be between 1 and 10000, got {concurrency}"
    );
    let config = PlayConfig {
        webhook_base: url.clone(),
        api_key: args.api_key.clone(),
        api_salt: args.api_salt.clone(),
        calls: calls as u64,
        calls_per_second: positive("--rate", args.rate, defaults.calls_per_second)?,
        seed: args.staff_seed,
        duplicate_rate: share("--duplicates", args.duplicates, defaults.duplicate_rate)?,
        reorder_rate: share("--reorder", args.reorder, defaults.reorder_rate)?,
        lost_summary_rate: share(
            "--lost-summaries",
            args.lost_summaries,
            defaults.lost_summary_rate,
        )?,
        dropped_call_rate: share(
            "--dropped-calls",
            args.dropped_calls,
            defaults.dropped_call_rate,
        )?,
        recorded_rate: share("--recorded", args.recorded, defaults.recorded_rate)?,
        time_compression: positive(
            "--time-compression",
            args.time_compression,
            defaults.time_compression,
        )?,
        concurrency: concurrency as usize,
        staff: staff.clone(),
        ..defaults
    };
    // The remaining checks (the URL above all) name the field; say which flag that is.
    config.validate().map_err(|e| {
        let text = e
            .to_string()
            .replace("invalid webhook_base", "--webhook-url")
            .replace("invalid api_key", "--api-key")
            .replace("invalid api_salt", "--api-salt");
        anyhow!(text)
    })?;
    Ok(Some(config))
}

fn print_progress(p: &PlayProgress) {
    eprintln!(
        "mango: {}/{} calls started, {} webhooks sent, {} acknowledged, {} failed, {} in flight ({:.1} s)",
        p.calls_started,
        p.calls,
        p.events_sent,
        p.delivered,
        p.failed,
        p.in_flight,
        p.elapsed_ms as f64 / 1000.0
    );
}

pub fn run(args: &Args) -> Result<()> {
    crate::init_logging("warn");
    ensure!(!args.api_key.is_empty(), "--api-key: must not be empty");
    ensure!(!args.api_salt.is_empty(), "--api-salt: must not be empty");
    let staff = staff_config(args)?;
    let to_play = play_config(args, &staff)?;
    let vpbx = Vpbx::for_office(args.staff_seed, &staff);
    if let Some(path) = &args.settings_out {
        std::fs::write(path, vpbx.staff().settings_toml())
            .with_context(|| format!("{}: cannot write", path.display()))?;
    }
    let runtime = crate::runtime()?;
    runtime.block_on(async move {
        let listener = crate::listen_on_loopback(args.port).await?;
        let mut config = VpbxConfig::new(&args.api_key, &args.api_salt, vpbx.clone());
        if args.no_rate_limits {
            config.limits = RateLimits::none();
        }
        let api = start_vpbx_api(listener, config)
            .await
            .map_err(|e| anyhow!("{e}"))?;
        // Scripts and tests read this line to find the port.
        println!("Mango VPBX API emulator listening on {}", api.base_url());
        std::io::stdout().flush()?;

        let Some(play_config) = to_play else {
            shutdown_signal().await;
            api.shutdown().await.map_err(|e| anyhow!("{e}"))?;
            return Ok(());
        };
        let report = tokio::select! {
            report = play(&play_config, &vpbx, |p| print_progress(&p)) => report,
            _ = shutdown_signal() => {
                api.shutdown().await.map_err(|e| anyhow!("{e}"))?;
                bail!("interrupted before all calls were played");
            }
        };
        let report = match report {
            Ok(report) => report,
            Err(e) => {
                api.shutdown().await.map_err(|e| anyhow!("{e}"))?;
                bail!("{e}");
            }
        };
        println!("{}", serde_json::to_string_pretty(&report.summary_json())?);
        std::io::stdout().flush()?;
        if let Some(path) = &args.report_out {
            std::fs::write(path, serde_json::to_vec_pretty(&report)?)
                .with_context(|| format!("{}: cannot write", path.display()))?;
        }
        if args.keep_serving {
            eprintln!("mango: played; still serving the VPBX API until Ctrl-C");
            shutdown_signal().await;
        }
        api.shutdown().await.map_err(|e| anyhow!("{e}"))?;
        ensure!(
            report.all_delivered(),
            "{} of {} webhook deliveries never got a 2xx (HTTP errors {:?}, {} without an answer); first: {}",
            report.failed,
            report.events_sent,
            report.http_errors,
            report.transport_errors,
            report.failures.first().map(String::as_str).unwrap_or("-")
        );
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn parse(extra: &[&str]) -> Result<Args, clap::Error> {
        let mut argv = vec!["mango", "--api-key", "k", "--api-salt", "s"];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).map(|c| c.args)
    }

    fn play_error(extra: &[&str]) -> String {
        let args = parse(extra).unwrap();
        let staff = staff_config(&args).unwrap();
        format!("{:#}", play_config(&args, &staff).unwrap_err())
    }

    #[test]
    fn bad_play_flags_are_named() {
        let url = ["--webhook-url", "http://127.0.0.1:1/mango/acme/"];
        let with = |more: &[&'static str]| {
            let mut v = url.to_vec();
            v.extend_from_slice(more);
            v
        };
        assert!(play_error(&with(&["--rate", "-2"])).starts_with("--rate: must be a positive"));
        assert!(play_error(&with(&["--rate", "0"])).starts_with("--rate"));
        assert!(play_error(&with(&["--duplicates", "1.5"])).starts_with("--duplicates"));
        assert!(play_error(&with(&["--calls", "0"])).starts_with("--calls"));
        assert!(play_error(&with(&["--concurrency", "-1"])).starts_with("--concurrency"));
        assert!(play_error(&with(&["--time-compression", "0"])).starts_with("--time-compression"));
        assert!(play_error(&with(&["--seed", "5"])).contains("--staff-seed 1"));
        assert!(play_error(&["--webhook-url", "ftp://x/"]).starts_with("--webhook-url"));
    }

    #[test]
    fn play_flags_need_a_webhook_url() {
        let err = parse(&["--calls", "5"]).err().unwrap();
        assert!(err.to_string().contains("--webhook-url"), "{err}");
    }

    #[test]
    fn good_flags_give_the_play() {
        let args = parse(&[
            "--webhook-url",
            "http://127.0.0.1:1/mango/acme",
            "--calls",
            "7",
            "--rate",
            "3.5",
            "--staff-seed",
            "4",
            "--employees",
            "20",
        ])
        .unwrap();
        let staff = staff_config(&args).unwrap();
        let play = play_config(&args, &staff).unwrap().unwrap();
        assert_eq!((play.calls, play.seed), (7, 4));
        assert_eq!(play.calls_per_second, 3.5);
        assert_eq!(play.staff.employees, 20);
        assert!(parse(&[]).map(|a| staff_config(&a).is_ok()).unwrap());
        let few = parse(&["--employees", "1"]).unwrap();
        assert!(format!("{:#}", staff_config(&few).unwrap_err()).starts_with("--employees"));
    }
}
