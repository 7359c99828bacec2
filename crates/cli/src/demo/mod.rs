//! `callbridge demo`: the whole product working on this machine, with no account anywhere.
//!
//! Starts, in this process and on 127.0.0.1 ports chosen by the system: an amoCRM sandbox
//! seeded with the office's CRM users and some known clients, the Mango emulator's VPBX API, and
//! the service itself (SQLite in the data folder) with one tenant wired to both. Then the
//! emulator plays a generated office's calls as signed webhooks, with the PBX's habits
//! (duplicates, reordering, lost summaries), and once the CRM work is done the demo reads the
//! sandbox back through its amoCRM API and reports what landed, on whom, and why.
//!
//! Wiring only: every rule lives in the core, the service, and the sandboxes. The rooms:
//! `setup` (data folder, secrets, settings, seed, service config), `progress` (the live display
//! and the wait for delivery), `observation` (what the store and the CRM show afterwards) and
//! `report` (the verdict, printed and as JSON).

mod observation;
mod progress;
mod report;
mod setup;

use crate::crm_reader::CrmReader;
use crate::shutdown_signal;
use anyhow::{anyhow, bail, ensure, Result};
use callbridge_amocrm_sandbox::{Sandbox, SandboxConfig, Seed};
use callbridge_core::ValidSettings;
use callbridge_mango_sandbox::{play, start_vpbx_api, PlayConfig, Vpbx, VpbxConfig};
use callbridge_traffic::StaffConfig;
use observation::{read_entries, read_outbox, CrmView};
use progress::{wait_for_delivery, Display};
use report::{print_report, Report};
use serde_json::json;
use setup::{
    contacts_len, crm_users, demo_settings, known_clients, print_where, start_service, DataDir,
    Endpoints, Secrets,
};
use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Args {
    /// Calls to play.
    #[arg(long, default_value_t = 100, allow_negative_numbers = true)]
    calls: i64,
    /// Calls started per second.
    #[arg(long, default_value_t = 5.0, allow_negative_numbers = true)]
    rate: f64,
    /// Where the service keeps its SQLite database (an empty or new folder). Default: a
    /// temporary folder, removed at the end unless --keep-running.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Keep everything running after the report, until Ctrl-C, to explore the admin API and
    /// the CRM sandbox.
    #[arg(long)]
    keep_running: bool,
    /// Seed of the generated office and its calls (same seed, same calls).
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Office seconds played per second within a call, so that a day's calls of several
    /// minutes each play in seconds (1: real time).
    #[arg(long, default_value_t = 60.0, allow_negative_numbers = true)]
    time_compression: f64,
    /// Also print the report as one JSON object (one line) on stdout.
    #[arg(long)]
    json: bool,
    /// Share of the clients the CRM knows before the first call (0 to 1): their calls go
    /// straight to their contact or open deal, the others' create contacts or requests first.
    /// The report gives the latency of both kinds apart.
    #[arg(long, default_value_t = 0.25, allow_negative_numbers = true)]
    known_share: f64,
    /// Save speech-analytics transcripts on the call records (C2). Slower: Mango's transcript
    /// API allows one request per second, and the service fetches one recording at a time.
    #[arg(long)]
    speech_analytics: bool,
}

const TENANT: &str = "demo";
/// amoCRM's limit, which the sandbox enforces and the service paces itself to.
const CRM_RPS: u32 = 7;
/// Give up waiting when nothing moved (entries planned, CRM items) for this long after the
/// play: something is stuck, and waiting longer shows nothing new.
const STALL: Duration = Duration::from_secs(60);
/// An entry whose summary never came completes this long after its last event (A4). Short,
/// because office time runs compressed here.
const GRACE_SECONDS: i64 = 5;
/// The demo's own reads of the CRM sandbox once delivery is over, per second: under 3, so that
/// with whoever reads next (a person, a test) amoCRM's 7 are never reached.
const READ_RPS: u32 = 2;
/// The same while the service may still be delivering (a timeout): the service's limiter uses
/// most of the budget then.
const READ_RPS_BUSY: u32 = 1;

/// The checked command line.
struct Options {
    calls: u64,
    rate: f64,
    compression: f64,
    known_share: f64,
}

fn check(args: &Args) -> Result<Options> {
    ensure!(
        (1..=100_000).contains(&args.calls),
        "--calls: must be between 1 and 100000, got {}",
        args.calls
    );
    ensure!(
        args.rate.is_finite() && args.rate > 0.0 && args.rate <= 1000.0,
        "--rate: must be a number of calls per second above 0 and at most 1000, got {}",
        args.rate
    );
    ensure!(
        args.time_compression.is_finite()
            && args.time_compression >= 1.0
            && args.time_compression <= 3600.0,
        "--time-compression: must be between 1 and 3600, got {}",
        args.time_compression
    );
    ensure!(
        (0.0..=1.0).contains(&args.known_share),
        "--known-share: must be a fraction between 0 and 1, got {}",
        args.known_share
    );
    Ok(Options {
        calls: args.calls as u64,
        rate: args.rate,
        compression: args.time_compression,
        known_share: args.known_share,
    })
}

/// With `--json`, stdout carries the one JSON line and nothing else: every line for a person
/// (the addresses, progress, the report) goes to stderr instead.
static HUMAN_ON_STDERR: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub(super) fn human_on_stderr() -> bool {
    HUMAN_ON_STDERR.load(std::sync::atomic::Ordering::Relaxed)
}

/// `println!` for the demo's lines for a person: stdout, or stderr under `--json`.
macro_rules! say {
    ($($arg:tt)*) => {
        if $crate::demo::human_on_stderr() {
            eprintln!($($arg)*)
        } else {
            println!($($arg)*)
        }
    };
}
pub(crate) use say;

pub fn run(args: &Args) -> Result<()> {
    HUMAN_ON_STDERR.store(args.json, std::sync::atomic::Ordering::Relaxed);
    let options = check(args)?;
    // Quiet by default: the console is for the demo's own lines. CALLBRIDGE_LOG=info shows all.
    crate::init_logging("error");
    let dir = DataDir::prepare(args.data_dir.as_deref(), args.keep_running)?;
    let runtime = crate::runtime()?;
    let result = runtime.block_on(async {
        let (up, problems) = tokio::select! {
            result = demo(args, &options, &dir.path) => result?,
            _ = shutdown_signal() => bail!("interrupted before the report"),
        };
        if args.keep_running {
            say!(
                "Still running (data in {}): explore it in the web UI at {}/ (the password is \
                 printed above). Press Ctrl-C to stop.",
                dir.path.display(),
                up.running.state.public_url.trim_end_matches('/')
            );
            std::io::stdout().flush()?;
            shutdown_signal().await;
        }
        up.shutdown().await;
        if !problems.is_empty() {
            bail!("not every call landed: {}", problems.join("; "));
        }
        Ok(())
    });
    // Stop every server task before the folder (and its database) goes away.
    drop(runtime);
    drop(dir);
    result
}

async fn demo(args: &Args, options: &Options, dir: &Path) -> Result<(Up, Vec<String>)> {
    let started = Instant::now();
    let secrets = Secrets::new();
    let staff_config = StaffConfig::default();
    let vpbx = Vpbx::for_office(args.seed, &staff_config);
    let staff = vpbx.staff().clone();
    let settings_toml = demo_settings(&staff, args.speech_analytics);
    let settings =
        ValidSettings::parse_toml(&settings_toml).map_err(|e| anyhow!("demo settings: {e}"))?;
    let mut play_config = PlayConfig {
        api_key: secrets.mango_key.clone(),
        api_salt: secrets.mango_salt.clone(),
        calls: options.calls,
        calls_per_second: options.rate,
        seed: args.seed,
        time_compression: options.compression,
        staff: staff_config,
        ..PlayConfig::default()
    };
    // Office time starts early enough that, compressed, it never runs ahead of the wall clock.
    let now_s = callbridge_server::state::now_ms() / 1000;
    play_config.start_unix = Some(play_config.default_start(now_s));

    let users = crm_users(&staff);
    let contacts = known_clients(&play_config, &settings, &users, options.known_share);
    let known_phones: HashSet<String> = contacts
        .iter()
        .filter_map(|c| c["phone"].as_str().map(str::to_string))
        .collect();
    let seeded_leads: usize = contacts
        .iter()
        .map(|c| c["leads"].as_array().map_or(0, Vec::len))
        .sum();
    let seed = json!({
        "long_lived_token": secrets.crm_token,
        "account": {"id": 31000777, "name": "Demo office", "subdomain": "demo"},
        "users": users.iter().map(|(id, name)| json!({"id": id, "name": name})).collect::<Vec<_>>(),
        "contacts": contacts,
    });
    let sandbox = callbridge_amocrm_sandbox::start(
        tokio::net::TcpListener::bind("127.0.0.1:0").await?,
        SandboxConfig {
            rps: CRM_RPS,
            seed: Seed::from_json_str(&seed.to_string()).map_err(|e| anyhow!("{e}"))?,
            ..SandboxConfig::default()
        },
    )
    .await
    .map_err(|e| anyhow!("amoCRM sandbox: {e}"))?;
    let api = start_vpbx_api(
        tokio::net::TcpListener::bind("127.0.0.1:0").await?,
        VpbxConfig::new(&secrets.mango_key, &secrets.mango_salt, vpbx.clone()),
    )
    .await
    .map_err(|e| anyhow!("Mango emulator: {e}"))?;

    let running = start_service(dir, &secrets, &settings_toml, &sandbox, api.base_url()).await?;
    let store = running.state.store.clone();
    let endpoints = Endpoints {
        service: format!("http://{}", running.addr),
        sandbox: sandbox.base_url(),
        vpbx: api.base_url().to_string(),
        card_token_key: running.state.card_token_key,
    };
    play_config.webhook_base = format!("{}/mango/{TENANT}/", endpoints.service);
    let ui_password = ui_password(&running).await?;
    print_where(
        args,
        options,
        &staff,
        &secrets,
        &endpoints,
        dir,
        &ui_password,
    );

    let display = Display::new(options.calls);
    let work = async {
        let played = play(&play_config, &vpbx, |p| display.played(&p))
            .await
            .map_err(|e| anyhow!("playing the calls: {e}"))?;
        let waited = wait_for_delivery(&store, &vpbx, options.calls).await?;
        Ok::<_, anyhow::Error>((played, waited))
    };
    // The display ticks beside the work and never ends by itself.
    let outcome = tokio::select! {
        outcome = work => outcome,
        never = display.tick(&store, &sandbox) => match never {},
    };
    display.finish();
    let (played, waited) = outcome?;

    // The limiter's record before the demo's own reads, which are not the service's doing.
    let crm_stats = sandbox.stats();
    let read_rps = if waited.delivered {
        READ_RPS
    } else {
        READ_RPS_BUSY
    };
    // The service's side first: were the CRM still being written (a timeout), a note written
    // meanwhile shows up as extra in the CRM, never as a record missing from it.
    let outbox = read_outbox(&store, &vpbx).await?;
    let entries = read_entries(&store).await?;
    // The service's last requests still count in amoCRM's sliding second: let it pass first.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let reader = CrmReader::new(&endpoints.sandbox, &secrets.crm_token, read_rps)?;
    let before_reads = sandbox.stats().requests;
    let mut crm = CrmView::read(&reader).await?;
    crm.requests = sandbox.stats().requests.saturating_sub(before_reads);
    let report = Report {
        played: &played,
        waited: &waited,
        outbox: &outbox,
        entries: &entries,
        crm: &crm,
        stats: &crm_stats,
        cards: sandbox.call_events().len(),
        seeded_contacts: contacts_len(&seed),
        seeded_leads,
        known_phones: &known_phones,
        calls: options.calls,
        rate: options.rate,
        speech_analytics: args.speech_analytics,
        seconds: started.elapsed().as_secs_f64(),
    };
    let problems = report.problems();
    print_report(&report, &problems);
    if args.json {
        let mut out = report.json(&problems);
        out["admin"] = json!({"url": format!("{}/api/v1", endpoints.service), "token": secrets.admin_token, "tenant": TENANT});
        out["sandbox"] = json!({"base_url": endpoints.sandbox, "token": secrets.crm_token});
        out["mango_api_url"] = json!(endpoints.vpbx);
        out["data_dir"] = json!(dir.display().to_string());
        println!("{out}");
    }
    std::io::stdout().flush()?;

    Ok((
        Up {
            running,
            api,
            sandbox,
        },
        problems,
    ))
}

/// The web UI's password for this demo: the one the service made on its first start in the
/// folder, or, in a folder used before (whose password nobody may remember), a new one set
/// now. Printed once, with the UI's address.
async fn ui_password(running: &callbridge_server::Running) -> Result<String> {
    use secrecy::ExposeSecret;
    if let Some(first) = &running.first_admin_password {
        return Ok(first.expose_secret().to_string());
    }
    let password = callbridge_server::ui::password::generate().map_err(|e| anyhow!("{e}"))?;
    let hash = callbridge_server::ui::password::hash(&password).map_err(|e| anyhow!("{e}"))?;
    running
        .state
        .store
        .set_admin_password_hash(&hash, callbridge_server::state::now_ms())
        .await
        .map_err(|e| anyhow!("setting the web UI's password: {e}"))?;
    Ok(password)
}

/// Everything the demo started, to stop in order.
struct Up {
    running: callbridge_server::Running,
    api: callbridge_mango_sandbox::VpbxApi,
    sandbox: Sandbox,
}

impl Up {
    async fn shutdown(self) {
        self.running.shutdown().await;
        let _ = self.api.shutdown().await;
        self.sandbox.shutdown().await;
    }
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

    fn error(argv: &[&str]) -> String {
        let mut all = vec!["demo"];
        all.extend_from_slice(argv);
        let cli = Cli::try_parse_from(all).expect("parses");
        format!("{:#}", check(&cli.args).err().expect("refused"))
    }

    #[test]
    fn bad_flags_are_named() {
        assert!(error(&["--calls", "0"]).starts_with("--calls"));
        assert!(error(&["--rate", "-1"]).starts_with("--rate"));
        assert!(error(&["--rate", "NaN"]).starts_with("--rate"));
        assert!(error(&["--time-compression", "0.5"]).starts_with("--time-compression"));
    }
}
