//! `callbridge demo`: the whole product working on this machine, with no account anywhere.
//!
//! Starts, in this process and on 127.0.0.1 ports chosen by the system: an amoCRM sandbox
//! seeded with the office's CRM users and some known clients, the Mango emulator's VPBX API, and
//! the service itself (SQLite in the data folder) with one tenant wired to both. Then the
//! emulator plays a generated office's calls as signed webhooks, with the PBX's habits
//! (duplicates, reordering, lost summaries), and once the CRM work is done the demo reads the
//! sandbox back through its amoCRM API and reports what landed, on whom, and why.
//!
//! Wiring only: every rule lives in the core, the service, and the sandboxes.

use crate::pipeline::plan_all;
use crate::shutdown_signal;
use anyhow::{anyhow, bail, ensure, Context, Result};
use callbridge_amocrm_sandbox::{Sandbox, SandboxConfig, Seed};
use callbridge_core::ValidSettings;
use callbridge_mango_sandbox::{
    play, start_vpbx_api, PlayConfig, PlayProgress, PlayReport, Vpbx, VpbxConfig,
};
use callbridge_store::{OutboxCounts, Store};
use callbridge_traffic::{Generator, Staff, StaffConfig};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
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
/// Pause between the demo's own reads of the CRM sandbox once delivery is over: under 3 a
/// second, so that with whoever reads next (a person, a test) amoCRM's 7 are never reached.
const READ_GAP: Duration = Duration::from_millis(350);
/// The same while the service may still be delivering (a timeout): the service's limiter uses
/// most of the budget then.
const READ_GAP_BUSY: Duration = Duration::from_millis(1200);

/// The checked command line.
struct Options {
    calls: u64,
    rate: f64,
    compression: f64,
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
    Ok(Options {
        calls: args.calls as u64,
        rate: args.rate,
        compression: args.time_compression,
    })
}

pub fn run(args: &Args) -> Result<()> {
    let options = check(args)?;
    // Quiet by default: the console is for the demo's own lines. CALLBRIDGE_LOG=info shows all.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CALLBRIDGE_LOG")
                .unwrap_or_else(|_| "error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let dir = DataDir::prepare(args.data_dir.as_deref(), args.keep_running)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(async {
        let (up, problems) = tokio::select! {
            result = demo(args, &options, &dir.path) => result?,
            _ = shutdown_signal() => bail!("interrupted before the report"),
        };
        if args.keep_running {
            println!(
                "Still running (data in {}). Press Ctrl-C to stop.",
                dir.path.display()
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

/// The data folder: the one given, or a temporary one removed at the end unless kept.
struct DataDir {
    path: PathBuf,
    remove: bool,
}

impl DataDir {
    fn prepare(given: Option<&Path>, keep: bool) -> Result<DataDir> {
        match given {
            Some(path) => {
                if path.exists() {
                    let mut entries = std::fs::read_dir(path)
                        .with_context(|| format!("--data-dir {}", path.display()))?;
                    // A folder with an earlier run's database would mix its calls into the report.
                    ensure!(
                        entries.next().is_none(),
                        "--data-dir {}: not empty; give a new or empty folder",
                        path.display()
                    );
                } else {
                    std::fs::create_dir_all(path)
                        .with_context(|| format!("--data-dir {}: cannot create", path.display()))?;
                }
                Ok(DataDir {
                    path: path.to_path_buf(),
                    remove: false,
                })
            }
            None => {
                let path = std::env::temp_dir().join(format!(
                    "callbridge-demo-{}-{}",
                    std::process::id(),
                    callbridge_server::state::now_ms()
                ));
                std::fs::create_dir_all(&path)
                    .with_context(|| format!("{}: cannot create", path.display()))?;
                Ok(DataDir {
                    path,
                    remove: !keep,
                })
            }
        }
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        if self.remove {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// A random hex string for a local secret. `RandomState` is seeded from the system's random
/// source, so no extra crate is needed for a demo's throwaway tokens.
fn random_hex(words: usize) -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut out = String::new();
    for i in 0..words {
        let mut h = RandomState::new().build_hasher();
        h.write_usize(i);
        h.write_i64(callbridge_server::state::now_ms());
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out
}

struct Secrets {
    admin_token: String,
    mango_key: String,
    mango_salt: String,
    crm_token: String,
}

impl Secrets {
    fn new() -> Secrets {
        Secrets {
            admin_token: format!("demo-admin-{}", random_hex(2)),
            mango_key: format!("demo-vpbx-key-{}", random_hex(1)),
            mango_salt: random_hex(2) + &random_hex(2),
            crm_token: format!("demo-amocrm-{}", random_hex(2)),
        }
    }
}

/// The tenant's settings: the generated office's mapping table (about a third of the employees
/// unmapped) with "Save all calls" on and its fallback user, plus the outgoing-call actions and
/// missed-call tasks, so that most rules get a chance to show. Transcripts only when asked for:
/// fetched one per second, they hold the CRM work up (see `--speech-analytics`).
fn demo_settings(staff: &Staff, speech_analytics: bool) -> String {
    let mut s = staff.settings_toml().replace(
        "[speech_analytics]\nsave = true",
        &format!("[speech_analytics]\nsave = {speech_analytics}"),
    );
    s.push_str(
        "\n[calls.outgoing]\nnew_client = \"contact\"\nrepeat_client = \"manual\"\n\
         \n[calls.missed_tasks]\nenabled = true\n",
    );
    s
}

/// The CRM users of the mapping table and the fallback user, as the sandbox seed lists them.
fn crm_users(staff: &Staff) -> Vec<(u64, String)> {
    let mut users: Vec<(u64, String)> = staff
        .employees
        .iter()
        .filter_map(|e| e.crm_user_id.map(|id| (id, e.name.clone())))
        .collect();
    users.push((
        staff.fallback_crm_user_id,
        "Reception (Save all calls)".to_string(),
    ));
    users
}

/// Contacts the CRM knows before the first call: a quarter of the clients who will call, so
/// that repeat-client paths show next to new ones. Found by planning the same traffic with the
/// core; a third of them have an open deal, a third a won one.
fn known_clients(
    play: &PlayConfig,
    settings: &ValidSettings,
    users: &[(u64, String)],
) -> Vec<Value> {
    let start = play.start_unix.unwrap_or(0);
    let mut seen = HashSet::new();
    let phones: Vec<String> = plan_all(settings, Generator::new(play.traffic_config(start)))
        .into_iter()
        .filter_map(|plan| plan.client_phone)
        .filter(|p| seen.insert(p.clone()))
        .collect();
    phones
        .iter()
        .skip(1)
        .step_by(4)
        .enumerate()
        .map(|(i, phone)| {
            let owner = users.get(i % users.len().max(1)).map_or(0, |u| u.0);
            let leads = match i % 3 {
                0 => json!([]),
                1 => json!([{"name": format!("Deal with {phone}"), "status": "open"}]),
                _ => json!([{"name": format!("Last year's deal with {phone}"), "status": "won"}]),
            };
            json!({"name": format!("Known client {phone}"), "phone": phone,
                   "responsible_user_id": owner, "leads": leads})
        })
        .collect()
}

/// What is running, for the "where to look" block and the report.
struct Endpoints {
    service: String,
    sandbox: String,
    vpbx: String,
    /// The key the service signs card-stream tokens with, to print a ready stream URL.
    card_token_key: [u8; 32],
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
    let contacts = known_clients(&play_config, &settings, &users);
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
    print_where(args, options, &staff, &secrets, &endpoints, dir);

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
    let gap = if waited.delivered {
        READ_GAP
    } else {
        READ_GAP_BUSY
    };
    // The service's side first: were the CRM still being written (a timeout), a note written
    // meanwhile shows up as extra in the CRM, never as a record missing from it.
    let outbox = read_outbox(&store, &vpbx).await?;
    let entries = read_entries(&store).await?;
    // The service's last requests still count in amoCRM's sliding second: let it pass first.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut reader = CrmReader::new(&endpoints.sandbox, &secrets.crm_token, gap)?;
    let crm = reader.read_all().await?;
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

fn contacts_len(seed: &Value) -> usize {
    seed["contacts"].as_array().map_or(0, Vec::len)
}

/// Writes the service's configuration into the data folder (so `callbridge serve --config` can
/// run it again) and starts the service from it. The file holds the demo's secrets: throwaway
/// tokens of local stand-ins, made up for this run.
async fn start_service(
    dir: &Path,
    secrets: &Secrets,
    settings_toml: &str,
    sandbox: &Sandbox,
    vpbx_url: &str,
) -> Result<callbridge_server::Running> {
    std::fs::write(dir.join("settings.toml"), settings_toml)
        .with_context(|| format!("{}: cannot write the settings", dir.display()))?;
    let text = format!(
        "# Written by `callbridge demo`.\nlisten = \"127.0.0.1:0\"\ndata_dir = \".\"\n\
         admin_token = {admin}\nmango_api_url = {vpbx}\ndirectory_refresh_seconds = 3600\n\
         # The demo's CRM is the sandbox on loopback, not an amoCRM account host.\n\
         allow_insecure_crm_hosts = true\n\
         \n[processing]\ngrace_seconds = {GRACE_SECONDS}\nsettle_seconds = 1\ntick_ms = 50\n\
         \n[[tenants]]\nid = \"{TENANT}\"\nmango_api_key = {key}\nmango_api_salt = {salt}\n\
         settings = \"settings.toml\"\n\n[tenants.amocrm]\nbase_url = {base}\nlong_lived_token = {token}\n",
        admin = toml_string(&secrets.admin_token),
        vpbx = toml_string(vpbx_url),
        key = toml_string(&secrets.mango_key),
        salt = toml_string(&secrets.mango_salt),
        base = toml_string(&sandbox.base_url()),
        token = toml_string(&secrets.crm_token),
    );
    let path = dir.join("callbridge.toml");
    std::fs::write(&path, text).with_context(|| format!("{}: cannot write", path.display()))?;
    let (mut config, tenants) =
        callbridge_server::config::Config::load(Some(&path)).map_err(|e| anyhow!("{e}"))?;
    // CALLBRIDGE_* variables of the user's shell must not send the demo to a real database or
    // port: these stay the demo's own.
    config.listen = "127.0.0.1:0".into();
    config.database_url = None;
    config.public_url = None;
    config.data_dir = dir.to_path_buf();
    config.admin_token = secrets.admin_token.clone();
    config.mango_api_url = vpbx_url.to_string();
    callbridge_server::start(config, tenants)
        .await
        .map_err(|e| anyhow!("starting the service: {e}"))
}

/// A TOML basic string (our values are plain ASCII, but quotes and backslashes are escaped).
fn toml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn print_where(
    args: &Args,
    options: &Options,
    staff: &Staff,
    secrets: &Secrets,
    e: &Endpoints,
    dir: &Path,
) {
    let unmapped = staff
        .employees
        .iter()
        .filter(|e| e.crm_user_id.is_none())
        .count();
    let first_user = staff
        .employees
        .iter()
        .find_map(|e| e.crm_user_id)
        .unwrap_or(staff.fallback_crm_user_id);
    let admin = &secrets.admin_token;
    let crm = &secrets.crm_token;
    println!(
        "callbridge demo: {} calls at {}/s from a generated office of {} employees ({} unmapped, \
         \"Save all calls\" on to user {}), seed {}.",
        options.calls,
        options.rate,
        staff.employees.len(),
        unmapped,
        staff.fallback_crm_user_id,
        args.seed
    );
    println!();
    println!(
        "  callbridge admin API  {}/api/v1/tenants/{TENANT}",
        e.service
    );
    println!(
        "    curl -H 'Authorization: Bearer {admin}' '{}/api/v1/entries?tenant={TENANT}&limit=5'",
        e.service
    );
    // A scoped token (this user's cards of this tenant, for 12 hours) goes in the URL, which is
    // all a browser's EventSource can send; the admin token never does.
    let card_token = callbridge_server::card_tokens::mint(
        &e.card_token_key,
        &callbridge_server::card_tokens::Scope {
            tenant_id: TENANT.into(),
            crm_user_id: first_user,
            expires_at: callbridge_server::state::now_ms() / 1000
                + callbridge_server::card_tokens::DEFAULT_TTL_SECONDS as i64,
        },
    );
    println!(
        "  call card stream      {}/api/v1/cards/stream?token={card_token}",
        e.service
    );
    println!(
        "    (user {first_user}'s cards; another user's: curl -X POST -H 'Authorization: Bearer {admin}' -d '{{\"crm_user_id\": N}}' -H 'Content-Type: application/json' '{}/api/v1/tenants/{TENANT}/cards/tokens')",
        e.service
    );
    println!("  Mango webhook URL     {}/mango/{TENANT}/", e.service);
    println!("  amoCRM sandbox        {}  (token {crm})", e.sandbox);
    println!("    curl -g -H 'Authorization: Bearer {crm}' '{}/api/v4/contacts/notes?filter[note_type][]=call_in&filter[note_type][]=call_out'", e.sandbox);
    println!("  Mango VPBX API        {}", e.vpbx);
    let fate = if dir_is_temporary(args) && !args.keep_running {
        " (removed at exit)"
    } else {
        ""
    };
    println!("  data                  {}{fate}", dir.display());
    println!();
    let _ = std::io::stdout().flush();
}

fn dir_is_temporary(args: &Args) -> bool {
    args.data_dir.is_none()
}

/// Progress: bars when stdout is a terminal, a plain line every 2 s otherwise.
struct Display {
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
    fn new(calls: u64) -> Display {
        let bars = std::io::stdout().is_terminal().then(|| {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stdout());
            let style =
                ProgressStyle::with_template("  {prefix:<8} [{bar:30}] {pos:>6}/{len} {msg}")
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

    fn played(&self, p: &PlayProgress) {
        if let Ok(mut s) = self.shared.lock() {
            s.play = Some(p.clone());
        }
    }

    /// Refreshes the planned/delivered counts from the store and draws; runs until dropped.
    async fn tick(&self, store: &Store, sandbox: &Sandbox) -> std::convert::Infallible {
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

    fn finish(&self) {
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
            println!(
                "  {:>5.1} s  played {started}/{calls} calls · planned {} entries · CRM work {} done, {} pending, {} parked · {} CRM requests",
                elapsed.as_secs_f64(),
                snap.entries,
                c.done,
                c.pending,
                c.parked,
                snap.crm_requests
            );
            let _ = std::io::stdout().flush();
        }
    }
}

/// How the wait for delivery ended.
struct Waited {
    /// Every entry planned and no CRM work pending (transcripts Mango never made aside).
    delivered: bool,
    /// Seconds from the end of the play to the end of the wait.
    seconds: f64,
}

/// Waits until every played call is planned and its CRM work done, or nothing moves for
/// [`STALL`].
async fn wait_for_delivery(store: &Store, vpbx: &Vpbx, calls: u64) -> Result<Waited> {
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

/// Pending transcript items whose recording the PBX never transcribed (Mango's speech
/// analytics skips some recordings). The service keeps asking Mango for a while before it
/// parks them; that is Mango's side, not CRM work, so the demo does not wait for it.
async fn awaiting_mango(store: &Store, vpbx: &Vpbx) -> Result<Vec<String>> {
    let pending = store
        .outbox_items_in_state(TENANT, "pending", 1_000_000)
        .await?;
    Ok(pending
        .into_iter()
        .filter(|i| i.kind == "transcript")
        .filter(|i| {
            i.payload["recording_id"]
                .as_str()
                .is_some_and(|r| vpbx.transcript(r).is_none())
        })
        .map(|i| i.item_key)
        .collect())
}

/// What the service's outbox says was done.
#[derive(Default)]
struct Outbox {
    /// Call records written as call notes: note id and entity type (`contacts` / `leads`).
    notes: Vec<(u64, String)>,
    /// Done call items without a note (no client number, or sent to unsorted).
    calls_without_note: Vec<String>,
    records_by_rule: BTreeMap<String, u64>,
    transcripts_saved: u64,
    tasks_created: u64,
    tasks_skipped: u64,
    /// Leads created for known clients by the repeat-client action (C4).
    repeat_leads_created: u64,
    /// Per entry: when its last call record was written (Unix ms).
    written_at: HashMap<String, i64>,
    parked: Vec<Value>,
    pending: i64,
    awaiting_mango: usize,
}

async fn read_outbox(store: &Store, vpbx: &Vpbx) -> Result<Outbox> {
    let mut out = Outbox::default();
    for item in store
        .outbox_items_in_state(TENANT, "done", 1_000_000)
        .await?
    {
        let answer = item.crm_response.clone().unwrap_or(Value::Null);
        match item.kind.as_str() {
            "call" => {
                let note = answer["note_id"].as_u64();
                let entity = answer["entity_type"].as_str().map(str::to_string);
                match (note, entity) {
                    (Some(id), Some(entity)) => {
                        out.notes.push((id, entity));
                        for rule in answer["reasons"].as_array().into_iter().flatten() {
                            if let Some(rule) = rule.as_str() {
                                *out.records_by_rule.entry(rule.to_string()).or_default() += 1;
                            }
                        }
                        if let Some(done) = item.done_at_ms {
                            let at = out.written_at.entry(item.entry_id.clone()).or_insert(done);
                            *at = (*at).max(done);
                        }
                    }
                    _ => out.calls_without_note.push(item.item_key.clone()),
                }
            }
            "transcript" if answer["note_id"].is_u64() => out.transcripts_saved += 1,
            "task" if answer["task_id"].is_u64() => out.tasks_created += 1,
            "task" => out.tasks_skipped += 1,
            "lead" if answer["repeat_client"] == "lead created" => out.repeat_leads_created += 1,
            _ => {}
        }
    }
    for item in store
        .outbox_items_in_state(TENANT, "parked", 1_000_000)
        .await?
    {
        out.parked.push(json!({
            "item_key": item.item_key,
            "kind": item.kind,
            "reason": item.last_error,
        }));
    }
    out.pending = store.outbox_counts(TENANT).await?.pending;
    out.awaiting_mango = awaiting_mango(store, vpbx).await?.len();
    Ok(out)
}

/// What the planned entries say.
#[derive(Default)]
struct Entries {
    planned: u64,
    records: u64,
    ignored: u64,
    internal: u64,
    missed: u64,
    by_grace: u64,
}

async fn read_entries(store: &Store) -> Result<Entries> {
    let mut out = Entries::default();
    let mut offset = 0;
    loop {
        let page = store.entries(TENANT, 500, offset).await?;
        if page.is_empty() {
            return Ok(out);
        }
        offset += page.len() as i64;
        for e in page {
            out.planned += 1;
            out.records += e.plan["records"].as_array().map_or(0, Vec::len) as u64;
            out.ignored += e.plan["ignored"].as_array().map_or(0, Vec::len) as u64;
            out.internal += u64::from(e.plan["direction"] == "internal");
            out.missed += u64::from(e.plan["outcome"] == "missed");
            out.by_grace += u64::from(e.completed_by == "grace");
        }
    }
}

/// What the CRM sandbox shows through its amoCRM API.
#[derive(Default)]
struct CrmView {
    /// Call notes (`call_in` / `call_out`) by entity type, id -> responsible user.
    notes: BTreeMap<String, BTreeMap<u64, u64>>,
    call_in: u64,
    call_out: u64,
    contacts: usize,
    leads: usize,
    tasks: usize,
    unsorted: usize,
    requests: u64,
}

impl CrmView {
    fn note_count(&self) -> usize {
        self.notes.values().map(BTreeMap::len).sum()
    }

    fn notes_by_user(&self) -> BTreeMap<u64, u64> {
        let mut by = BTreeMap::new();
        for user in self.notes.values().flat_map(BTreeMap::values) {
            *by.entry(*user).or_default() += 1;
        }
        by
    }
}

/// Reads the sandbox as a CRM user's integration would: amoCRM API v4, paged, paced.
struct CrmReader {
    http: reqwest::Client,
    base: String,
    token: String,
    gap: Duration,
    next_at: Instant,
    requests: u64,
}

impl CrmReader {
    fn new(base: &str, token: &str, gap: Duration) -> Result<CrmReader> {
        Ok(CrmReader {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
            gap,
            next_at: Instant::now(),
            requests: 0,
        })
    }

    /// One GET; `None` for amoCRM's 204 (nothing found). A 429 waits and tries again.
    async fn get(&mut self, path: &str) -> Result<Option<Value>> {
        for _ in 0..5 {
            tokio::time::sleep_until(self.next_at.into()).await;
            self.next_at = Instant::now() + self.gap;
            self.requests += 1;
            let response = self
                .http
                .get(format!("{}{path}", self.base))
                .bearer_auth(&self.token)
                .send()
                .await
                .with_context(|| format!("amoCRM sandbox: GET {path}"))?;
            let status = response.status();
            if status.as_u16() == 429 {
                self.next_at = Instant::now() + Duration::from_millis(1100);
                continue;
            }
            if status.as_u16() == 204 {
                return Ok(None);
            }
            let body = response.bytes().await?;
            ensure!(
                status.is_success(),
                "amoCRM sandbox: GET {path}: HTTP {}: {}",
                status.as_u16(),
                String::from_utf8_lossy(&body[..body.len().min(300)])
            );
            let value: Value = serde_json::from_slice(&body)
                .with_context(|| format!("amoCRM sandbox: GET {path}: not JSON"))?;
            return Ok(Some(value));
        }
        bail!("amoCRM sandbox: GET {path}: still rate limited after 5 attempts")
    }

    /// Every item of a paged list (`_embedded.{key}`).
    async fn list(&mut self, path: &str, key: &str) -> Result<Vec<Value>> {
        let mut items = Vec::new();
        let sep = if path.contains('?') { '&' } else { '?' };
        for page in 1..=10_000 {
            let Some(body) = self
                .get(&format!("{path}{sep}limit=250&page={page}"))
                .await?
            else {
                break;
            };
            let found = body["_embedded"][key]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let more = body["_links"]["next"].is_object() && !found.is_empty();
            items.extend(found);
            if !more {
                break;
            }
        }
        Ok(items)
    }

    async fn read_all(&mut self) -> Result<CrmView> {
        let mut view = CrmView::default();
        for entity in ["contacts", "leads"] {
            let notes = self
                .list(
                    &format!("/api/v4/{entity}/notes?filter[note_type][]=call_in&filter[note_type][]=call_out"),
                    "notes",
                )
                .await?;
            let by_id = view.notes.entry(entity.to_string()).or_default();
            for n in notes {
                let (Some(id), Some(user)) = (n["id"].as_u64(), n["responsible_user_id"].as_u64())
                else {
                    bail!("amoCRM sandbox: a {entity} note without id or responsible_user_id: {n}");
                };
                by_id.insert(id, user);
                match n["note_type"].as_str() {
                    Some("call_in") => view.call_in += 1,
                    Some("call_out") => view.call_out += 1,
                    _ => {}
                }
            }
        }
        view.contacts = self.list("/api/v4/contacts", "contacts").await?.len();
        view.leads = self.list("/api/v4/leads", "leads").await?.len();
        view.tasks = self.list("/api/v4/tasks", "tasks").await?.len();
        view.unsorted = self.list("/api/v4/leads/unsorted", "unsorted").await?.len();
        view.requests = self.requests;
        Ok(view)
    }
}

struct Report<'a> {
    played: &'a PlayReport,
    waited: &'a Waited,
    outbox: &'a Outbox,
    entries: &'a Entries,
    crm: &'a CrmView,
    stats: &'a callbridge_amocrm_sandbox::Stats,
    cards: usize,
    seeded_contacts: usize,
    seeded_leads: usize,
    calls: u64,
    rate: f64,
    speech_analytics: bool,
    seconds: f64,
}

/// Latency percentiles in milliseconds, nearest rank.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Latency {
    count: usize,
    p50: i64,
    p95: i64,
    max: i64,
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

impl Report<'_> {
    /// Per entry: its last call record written in the CRM minus its summary's sending.
    fn latency(&self) -> Option<Latency> {
        let mut samples: Vec<i64> = self
            .outbox
            .written_at
            .iter()
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

    fn problems(&self) -> Vec<String> {
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

    fn json(&self, problems: &[String]) -> Value {
        let lat = self.latency();
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
            "latency_ms": lat.map(|l| json!({"count": l.count, "p50": l.p50, "p95": l.p95, "max": l.max})),
        })
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn print_report(r: &Report<'_>, problems: &[String]) {
    let p = r.played;
    let o = r.outbox;
    let c = r.crm;
    let s = r.stats;
    println!(
        "Played {} calls: {} webhooks ({} duplicates, {} lost summaries) in {:.1} s; delivery finished {:.1} s later.",
        p.calls,
        p.events_sent,
        p.duplicates_sent,
        p.lost_summaries,
        p.elapsed_ms as f64 / 1000.0,
        r.waited.seconds
    );
    println!(
        "Planned {} entries: {} call records ({} missed calls, {} internal calls and {} conversations write nothing).",
        r.entries.planned, r.entries.records, r.entries.missed, r.entries.internal, r.entries.ignored
    );
    println!("Records written, by rule:");
    for (rule, n) in &o.records_by_rule {
        let label = callbridge_core::Rule::from_id(rule).map_or("", |r| r.label());
        println!("  {rule:<3} {n:>5}  {label}");
    }
    let users = c
        .notes_by_user()
        .iter()
        .map(|(u, n)| format!("{u}: {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    println!(
        "In amoCRM (read through its API): {} call notes ({} in, {} out) of {} records written; by user {users}",
        c.note_count(),
        c.call_in,
        c.call_out,
        o.notes.len()
    );
    println!(
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
    println!(
        "  parked: {}; rate limit: {} x 429, at most {} requests in any second (limit {CRM_RPS})",
        o.parked.len(),
        s.rate_limited,
        s.max_requests_in_any_second
    );
    for item in o.parked.iter().take(5) {
        println!(
            "    {} ({}): {}",
            item["item_key"].as_str().unwrap_or("-"),
            item["kind"].as_str().unwrap_or("-"),
            item["reason"].as_str().unwrap_or("-")
        );
    }
    match r.latency() {
        Some(l) => println!(
            "Summary sent -> record in the CRM: p50 {:.2} s, p95 {:.2} s, max {:.2} s ({} entries).",
            l.p50 as f64 / 1000.0,
            l.p95 as f64 / 1000.0,
            l.max as f64 / 1000.0,
            l.count
        ),
        None => println!("No latency: no entry with a summary was written."),
    }
    // amoCRM's 7 requests per second is a hard ceiling: past it, records queue, and the latency
    // above measures the CRM's limit rather than callbridge. Say so, with a rate that fits.
    let per_call = s.requests as f64 / p.calls.max(1) as f64;
    let needed = per_call * r.rate;
    if needed > f64::from(CRM_RPS) * 0.9 {
        println!(
            "  At {} calls/s these calls need about {needed:.0} CRM requests per second ({per_call:.1} a call); \
             amoCRM allows {CRM_RPS}, so records queue. Try --rate {:.1} to see the latency without a queue.",
            r.rate,
            (f64::from(CRM_RPS) * 0.7 / per_call.max(0.1) * 10.0).floor() / 10.0
        );
    }
    if problems.is_empty() {
        println!("All calls landed.");
    } else {
        println!("NOT everything landed: {}.", problems.join("; "));
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

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let mut v: Vec<i64> = (1..=100).rev().collect();
        let l = latency(&mut v).expect("samples");
        assert_eq!((l.count, l.p50, l.p95, l.max), (100, 50, 95, 100));
        assert_eq!(latency(&mut []), None);
        let one = latency(&mut [7]).expect("one sample");
        assert_eq!((one.p50, one.p95, one.max), (7, 7, 7));
    }

    #[test]
    fn demo_settings_keep_save_all_calls_on_with_a_realistic_mapping() {
        let staff = callbridge_mango_sandbox::office_staff(7, &StaffConfig::default());
        let text = demo_settings(&staff, false);
        let settings = ValidSettings::parse_toml(&text).expect("valid settings");
        assert!(text.contains("[speech_analytics]\nsave = false"));
        assert!(demo_settings(&staff, true).contains("[speech_analytics]\nsave = true"));
        let mapped = staff
            .employees
            .iter()
            .filter(|e| e.crm_user_id.is_some())
            .count();
        assert!(
            mapped >= 2 && mapped < staff.employees.len(),
            "some mapped, some not"
        );
        assert!(text.contains("[calls.save_all_calls]\nenabled = true"));
        assert_eq!(
            settings.crm_user_of(&staff.employees[0].extension),
            staff.employees[0].crm_user_id
        );
        let users = crm_users(&staff);
        assert_eq!(users.len(), mapped + 1);
        assert!(users.iter().any(|u| u.0 == staff.fallback_crm_user_id));
    }

    #[test]
    fn toml_strings_are_escaped() {
        assert_eq!(toml_string(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}
