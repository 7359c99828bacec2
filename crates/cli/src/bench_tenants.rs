//! `callbridge bench-tenants`: what thousands of tenants on one instance cost (issue 21).
//!
//! Starts `--crm-accounts` amoCRM sandboxes in this process (each its own account, at amoCRM's
//! 7 requests a second) and the service as a child process (`callbridge serve`, SQLite in a
//! temporary folder or the PostgreSQL given), so that the CPU time and RSS read from
//! `/proc/<pid>/stat` and `/proc/<pid>/status` are the service's alone, not the load
//! generator's or the sandboxes'. Then, each figure measured in this run:
//!
//! 1. `--tenants` tenants created through the admin API, one `PUT /api/v1/tenants/{id}` after
//!    the other, each with its Mango keys, the generated office's settings and a connection to
//!    one of the sandboxes (several tenants share an account, round robin): the time and the PUT
//!    latency percentiles;
//! 2. the service's RSS right after;
//! 3. its CPU over `--idle-seconds` with every tenant CRM-connected and nothing to send (after
//!    the CRM requests the connections made settle), and the CRM requests made meanwhile;
//! 4. in `--rounds` rounds of fresh calls, `--events` signed webhooks of generated traffic
//!    posted to ONE extra tenant (the baseline), then the same round's events spread over all
//!    the tenants (whole calls, round robin): events a second and the service's CPU time per
//!    event over each posting (from the first request to the last answer: ingest, the
//!    processor's folding and the call cards; planning follows each summary by the settle time,
//!    longer than all the rounds, and the entries planned within the windows are reported),
//!    each round's ratio, and the medians over the rounds;
//! 5. the time from SIGTERM to the service's exit, and from starting it again to `/readyz` 200,
//!    with every tenant, and the RSS then: once after the idle measurement (no event yet), once
//!    after the traffic (its calls in flight, to recover at the start).
//!
//! Every webhook must be acknowledged with 200 and the baseline tenant must hold every event it
//! was sent; otherwise the command fails naming what was missing. A last line sums up what the
//! sandboxes saw (requests, 429s, blocked accounts, the busiest second); 429s are warned of on
//! stderr, not failed on, since the sandboxes stamp arrivals on the cores the posting loads.

use crate::bench_ingest::{post_all, Report};
use anyhow::{anyhow, bail, ensure, Context, Result};
use callbridge_amocrm_sandbox::{Sandbox, SandboxConfig, Seed};
use callbridge_mango::wire::to_json;
use callbridge_traffic::{Config as TrafficConfig, Generator};
use serde_json::json;
use std::collections::{BTreeSet, HashMap};
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Args {
    /// Tenants to create through the admin API.
    #[arg(long, default_value_t = 1_000)]
    tenants: usize,
    /// Webhook events to post in each window, to one tenant or spread over all of them.
    #[arg(long, default_value_t = 20_000)]
    events: usize,
    /// Rounds of the comparison, each a window of fresh calls to the baseline tenant then one
    /// spread over all the tenants: the figures are the rounds' medians, since one pair of
    /// windows on two shared cores can be off by a third either way.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// amoCRM sandbox accounts the tenants are connected to (round robin).
    #[arg(long, default_value_t = 10)]
    crm_accounts: usize,
    /// How long to measure the service's CPU with every tenant connected and nothing to send.
    #[arg(long, default_value_t = 10.0)]
    idle_seconds: f64,
    /// Concurrent HTTP connections posting webhooks.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// The service's `processing.settle_seconds` (5 by default): planning waits this long after
    /// a call's summary, longer than all the rounds, so that no window holds any planning, nor
    /// the CRM delivery that follows it (a window that does is warned of).
    #[arg(long, default_value_t = 120)]
    settle_seconds: u64,
    /// `postgres://...` to measure PostgreSQL; otherwise SQLite in a temporary folder. The
    /// tenants stay in that database after the run (their ids name the run).
    #[arg(long)]
    database_url: Option<String>,
}

const SALT: &str = "bench-salt-000000000000000000000";
const ADMIN_TOKEN: &str = "bench-admin-token";

pub fn run(args: &Args) -> Result<()> {
    ensure!(args.tenants > 0, "--tenants must be positive");
    ensure!(args.events > 0, "--events must be positive");
    ensure!(args.rounds > 0, "--rounds must be positive");
    ensure!(args.concurrency > 0, "--concurrency must be positive");
    ensure!(args.crm_accounts > 0, "--crm-accounts must be positive");
    ensure!(
        args.settle_seconds <= 3_600,
        "--settle-seconds must be at most 3600"
    );
    ensure!(
        args.idle_seconds > 0.0 && args.idle_seconds.is_finite(),
        "--idle-seconds must be a positive number"
    );
    ensure!(
        Path::new("/proc/self/stat").exists(),
        "bench-tenants reads the service's CPU and memory from /proc (Linux only)"
    );
    let dir = std::env::temp_dir().join(format!("callbridge-bench-tenants-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let result = crate::runtime()?.block_on(measure(args, &dir));
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// One webhook to post: its path and its signed form body.
type Posting = (String, String);

/// The run's traffic, signed before any clock starts.
struct Traffic {
    settings_toml: String,
    /// CRM user ids the settings name (the sandboxes know them).
    users: BTreeSet<u64>,
    /// Per event: its path (`events/call`, ...), its JSON, and the call it belongs to (an index
    /// in order of first appearance).
    events: Vec<(&'static str, String, usize)>,
    calls: usize,
}

fn traffic(n: usize) -> Result<Traffic> {
    let mut generator = Generator::new(TrafficConfig {
        calls: n / 6 + 10,
        seed: 11,
        rate: 5.0,
        ..TrafficConfig::default()
    });
    let settings_toml = generator.staff().settings_toml();
    let users = settings_toml
        .lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| k.trim().ends_with("crm_user_id"))
        .filter_map(|(_, v)| v.trim().parse().ok())
        .collect();
    let mut calls = HashMap::<String, usize>::new();
    let mut events = Vec::with_capacity(n);
    for event in generator.by_ref().take(n) {
        let next = calls.len();
        let call = *calls.entry(event.entry_id().to_string()).or_insert(next);
        let (path, json) = to_json(&event);
        events.push((path, json.to_string(), call));
    }
    ensure!(
        events.len() == n,
        "the generator gave only {} events",
        events.len()
    );
    Ok(Traffic {
        settings_toml,
        users,
        events,
        calls: calls.len(),
    })
}

/// A Mango webhook's form body, signed with the tenant's key.
fn signed(key: &str, json: &str) -> String {
    let sign = callbridge_mango::sign(key, json, SALT);
    form_urlencoded::Serializer::new(String::new())
        .append_pair("vpbx_api_key", key)
        .append_pair("sign", &sign)
        .append_pair("json", json)
        .finish()
}

async fn measure(args: &Args, dir: &Path) -> Result<()> {
    // Ids and keys of their own per run: on a shared PostgreSQL an earlier run's tenants stay.
    let run = format!(
        "{}{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis()
            % 100_000_000
    );
    let tenant_id = |i: usize| format!("bt{run}-{i:05}");
    let tenant_key = |i: usize| format!("bench-key-{run}-{i:05}");
    let one_id = format!("bt{run}-one");
    let one_key = format!("bench-key-{run}-one");

    // Fresh calls for every window: the same call twice would be a duplicate, which costs less.
    let traffic = traffic(args.events * args.rounds)?;
    // The traffic cut into rounds of --events events; in the spread windows call c goes to
    // tenant c % tenants, whole (but for the few calls a cut falls in the middle of).
    let rounds: Vec<(Vec<Posting>, Vec<Posting>)> = traffic
        .events
        .chunks(args.events)
        .map(|slice| {
            slice
                .iter()
                .map(|(path, json, call)| {
                    let i = call % args.tenants;
                    (
                        (format!("/mango/{one_id}/{path}"), signed(&one_key, json)),
                        (
                            format!("/mango/{}/{path}", tenant_id(i)),
                            signed(&tenant_key(i), json),
                        ),
                    )
                })
                .unzip()
        })
        .collect();
    let calls_per_round = traffic.calls / args.rounds;
    let tenants_with_traffic = calls_per_round.min(args.tenants);

    // The CRM accounts: each sandbox its own account (its own origin and id), at 7 requests/s.
    let mut sandboxes = Vec::with_capacity(args.crm_accounts);
    for a in 0..args.crm_accounts {
        let seed = json!({
            "long_lived_token": format!("bench-token-{a}"),
            "account": {"id": 31_000_000 + a as u64, "name": format!("Bench account {a}"), "subdomain": format!("bench{a}")},
            "users": traffic.users.iter().map(|id| json!({"id": id, "name": format!("User {id}")})).collect::<Vec<_>>(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let sandbox = callbridge_amocrm_sandbox::start(
            listener,
            SandboxConfig {
                seed: Seed::from_json_str(&seed.to_string()).map_err(|e| anyhow!("{e}"))?,
                ..SandboxConfig::default()
            },
        )
        .await?;
        sandboxes.push(sandbox);
    }
    let crm_of = |i: usize| {
        let a = i % args.crm_accounts;
        json!({"base_url": sandboxes[a].base_url(), "long_lived_token": format!("bench-token-{a}")})
    };

    let mut config = format!(
        "listen = \"127.0.0.1:0\"\ndata_dir = \"data\"\nadmin_token = \"{ADMIN_TOKEN}\"\n\
         directory_refresh_seconds = 0\nallow_insecure_crm_hosts = true\n\
         # Nothing leaves this machine: the Mango API is a closed loopback port.\n\
         mango_api_url = \"http://127.0.0.1:9\"\n\
         # Planning waits --settle-seconds after a call's summary, longer than all the\n\
         # rounds' windows, so that none holds planning or the CRM delivery after it,\n\
         # even for calls that wait for nothing (settle_complete_ms as long).\n\
         [processing]\nsettle_seconds = {}\nsettle_complete_ms = {}\n",
        args.settle_seconds,
        args.settle_seconds * 1000
    );
    if let Some(url) = &args.database_url {
        config = format!("database_url = \"{url}\"\n{config}");
    }
    let config_path = dir.join("callbridge.toml");
    std::fs::write(&config_path, config)?;

    let mut service = Service::start(&config_path, dir)?;
    let result = async {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?;
        let mut base = format!("http://{}", service.addr);

        // 1. Creation, one PUT after the other.
        let mut put_ms = Vec::with_capacity(args.tenants);
        let started = Instant::now();
        for i in 0..args.tenants {
            let t = Instant::now();
            put_tenant(&http, &base, &tenant_id(i), &tenant_key(i), &traffic.settings_toml, crm_of(i)).await?;
            put_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        let create_s = started.elapsed().as_secs_f64();
        // 2.
        let rss_created = service.rss_kb()?;
        println!(
            "create: {} tenants in {create_s:.3} s ({:.1} a second), PUT p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            args.tenants,
            args.tenants as f64 / create_s,
            percentile(&put_ms, 0.50),
            percentile(&put_ms, 0.99),
            percentile(&put_ms, 1.0),
        );
        println!(
            "rss: {:.1} MB after creating {} tenants",
            rss_created as f64 / 1024.0,
            args.tenants
        );

        // 3. Idle, once the connections' own requests are over.
        let (settled_after, settle_requests) = crm_settle(&sandboxes).await;
        let before = crm_requests(&sandboxes);
        let cpu = service.cpu_seconds()?;
        let t = Instant::now();
        tokio::time::sleep(Duration::from_secs_f64(args.idle_seconds)).await;
        let idle_cpu = (service.cpu_seconds()? - cpu) / t.elapsed().as_secs_f64();
        let idle_requests = crm_requests(&sandboxes) - before;
        println!(
            "idle_cpu: {:.2} % of one core over {:.1} s, {} tenants CRM-connected to {} accounts, {idle_requests} CRM requests meanwhile (the connections made {settle_requests} requests, settled {:.1} s after the last PUT)",
            idle_cpu * 100.0,
            t.elapsed().as_secs_f64(),
            args.tenants,
            args.crm_accounts,
            settled_after.as_secs_f64(),
        );

        // 5a. Shutdown and restart with every tenant and no event yet: what the tenants cost
        // alone (5b below restarts with the traffic's calls in flight).
        let shutdown = service.stop()?;
        let started = Instant::now();
        service = Service::start(&config_path, dir)?;
        service.wait_ready(&http).await?;
        let restart = started.elapsed();
        base = format!("http://{}", service.addr);
        println!(
            "restart_idle: {:.3} s from process start to /readyz 200 with {} tenants and no event, RSS then {:.1} MB; shutdown before it {:.3} s from SIGTERM to exit",
            restart.as_secs_f64(),
            args.tenants,
            service.rss_kb()? as f64 / 1024.0,
            shutdown.as_secs_f64(),
        );

        // 4. The baseline tenant, then the same traffic over all of them, round after round:
        // the two kinds of window alternate, so the machine's noise falls on both alike.
        put_tenant(&http, &base, &one_id, &one_key, &traffic.settings_toml, crm_of(0)).await?;
        crm_settle(&sandboxes).await;
        let mut ones = Vec::with_capacity(args.rounds);
        let mut spreads = Vec::with_capacity(args.rounds);
        for (round, (one_bodies, spread_bodies)) in rounds.into_iter().enumerate() {
            let one = service.post(one_bodies, args.concurrency, &sandboxes, &http).await?;
            // A pause, so that what one window left to do (the processor's tail, the cards'
            // one-second gathering) is not counted in the next.
            tokio::time::sleep(Duration::from_secs(1)).await;
            let spread = service.post(spread_bodies, args.concurrency, &sandboxes, &http).await?;
            tokio::time::sleep(Duration::from_secs(1)).await;
            println!(
                "round {}: one_tenant {:.1} us CPU per event at {:.0} events/s, spread {:.1} us at {:.0} events/s, ratio {:.3}",
                round + 1,
                one.cpu_us_per_event(),
                one.events_per_second(),
                spread.cpu_us_per_event(),
                spread.events_per_second(),
                spread.cpu_us_per_event() / one.cpu_us_per_event(),
            );
            ones.push(one);
            spreads.push(spread);
        }
        let stored = stored_events(&http, &base, &one_id).await?;
        let posted: usize = ones.iter().map(|p| p.events).sum();
        ensure!(
            stored == posted as u64,
            "the baseline tenant holds {stored} events of the {posted} it acknowledged"
        );
        let one = Medians::of(&ones);
        let spread = Medians::of(&spreads);
        println!(
            "one_tenant: {:.0} events/s, {:.1} us CPU per event ({} events to 1 tenant in each of {} rounds, medians; p50 {:.2} ms, p99 {:.2} ms, all 200, {stored} stored, {} CRM requests and {} entries planned meanwhile in all)",
            one.events_per_second,
            one.cpu_us_per_event,
            ones[0].events,
            args.rounds,
            one.p50_ms,
            one.p99_ms,
            one.crm_requests,
            one.planned,
        );
        println!(
            "spread: {:.0} events/s, {:.1} us CPU per event ({} events, {} calls over {tenants_with_traffic} of {} tenants in each of {} rounds, medians; p50 {:.2} ms, p99 {:.2} ms, all 200, {} CRM requests and {} entries planned meanwhile in all)",
            spread.events_per_second,
            spread.cpu_us_per_event,
            spreads[0].events,
            calls_per_round,
            args.tenants,
            args.rounds,
            spread.p50_ms,
            spread.p99_ms,
            spread.crm_requests,
            spread.planned,
        );
        let ratios: Vec<f64> = ones
            .iter()
            .zip(&spreads)
            .map(|(o, s)| s.cpu_us_per_event() / o.cpu_us_per_event())
            .collect();
        let speed: Vec<f64> = ones
            .iter()
            .zip(&spreads)
            .map(|(o, s)| s.events_per_second() / o.events_per_second())
            .collect();
        println!(
            "spread_vs_one: {:.3} CPU per event, {:.3} events/s (medians of the rounds' ratios; CPU per event from {:.3} to {:.3})",
            percentile(&ratios, 0.5),
            percentile(&speed, 0.5),
            percentile(&ratios, 0.0),
            percentile(&ratios, 1.0),
        );
        if one.planned + spread.planned > 0 {
            eprintln!(
                "callbridge: warning: entries were planned during the windows (raise --settle-seconds): the CRM work that follows weighs on them"
            );
        }

        // 5b. Shutdown and restart with every tenant, the spread calls in flight.
        let shutdown = service.stop()?;
        println!(
            "shutdown: {:.3} s from SIGTERM to exit, after the traffic",
            shutdown.as_secs_f64()
        );
        let started = Instant::now();
        service = Service::start(&config_path, dir)?;
        service.wait_ready(&http).await?;
        let restart = started.elapsed();
        let rss_restarted = service.rss_kb()?;
        println!(
            "restart: {:.3} s from process start to /readyz 200 with {} tenants, after the traffic, RSS then {:.1} MB",
            restart.as_secs_f64(),
            args.tenants + 1,
            rss_restarted as f64 / 1024.0
        );
        Ok::<_, anyhow::Error>(())
    }
    .await;
    let stopped = service.stop();
    let stats: Vec<_> = sandboxes.iter().map(Sandbox::stats).collect();
    for sandbox in sandboxes {
        sandbox.shutdown().await;
    }
    if let Err(e) = result {
        return Err(e.context(format!("service log: {}", service.log.display())));
    }
    stopped?;
    let requests: u64 = stats.iter().map(|s| s.requests).sum();
    let rate_limited: u64 = stats.iter().map(|s| s.rate_limited).sum();
    let blocked = stats.iter().filter(|s| s.blocked).count();
    let busiest = stats
        .iter()
        .map(|s| s.max_requests_in_any_second)
        .max()
        .unwrap_or(0);
    println!(
        "crm: {requests} requests to {} accounts, {rate_limited} answered 429, {blocked} accounts blocked, at most {busiest} requests in any second to one account",
        stats.len()
    );
    let mut by_route = std::collections::BTreeMap::<&str, u64>::new();
    for s in &stats {
        for (route, n) in &s.by_route {
            *by_route.entry(route).or_default() += n;
        }
    }
    println!("crm_routes: {}", json!(by_route));
    if rate_limited > 0 || blocked > 0 {
        // Reported, not failed: the sandboxes share this process's two cores with the posting,
        // so an arrival they stamp late can crowd a window the service kept.
        eprintln!(
            "callbridge: warning: an account's rate limit was exceeded as the sandboxes saw it: {rate_limited} 429s, {blocked} accounts blocked"
        );
    }
    Ok(())
}

async fn put_tenant(
    http: &reqwest::Client,
    base: &str,
    id: &str,
    key: &str,
    settings_toml: &str,
    amocrm: serde_json::Value,
) -> Result<()> {
    let response = http
        .put(format!("{base}/api/v1/tenants/{id}"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({
            "mango_api_key": key,
            "mango_api_salt": SALT,
            "settings_toml": settings_toml,
            "amocrm": amocrm,
        }))
        .send()
        .await
        .with_context(|| format!("PUT tenant {id}"))?;
    let status = response.status();
    if !status.is_success() {
        bail!(
            "PUT tenant {id}: {status}: {}",
            response.text().await.unwrap_or_default()
        );
    }
    Ok(())
}

async fn stored_events(http: &reqwest::Client, base: &str, id: &str) -> Result<u64> {
    let v = tenant_json(http, base, id).await?;
    v["events"]
        .as_u64()
        .ok_or_else(|| anyhow!("GET tenant {id}: no event count in {v}"))
}

/// `GET /api/v1/tenants/{id}`: the tenant with its counts.
async fn tenant_json(http: &reqwest::Client, base: &str, id: &str) -> Result<serde_json::Value> {
    Ok(http
        .get(format!("{base}/api/v1/tenants/{id}"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}

fn crm_requests(sandboxes: &[Sandbox]) -> u64 {
    sandboxes.iter().map(|s| s.stats().requests).sum()
}

/// Waits until the sandboxes have seen no request for 2 s (at most 120 s); returns how long that
/// took after the call, less the quiet 2 s, and the requests meanwhile.
async fn crm_settle(sandboxes: &[Sandbox]) -> (Duration, u64) {
    let quiet = Duration::from_secs(2);
    let start = Instant::now();
    let first = crm_requests(sandboxes);
    let (mut last, mut since) = (first, Instant::now());
    while since.elapsed() < quiet && start.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = crm_requests(sandboxes);
        if now != last {
            (last, since) = (now, Instant::now());
        }
    }
    (since.duration_since(start), last - first)
}

fn percentile(values: &[f64], p: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v.get(i).copied().unwrap_or(0.0)
}

/// One posting of the traffic, with the service's CPU time over it.
struct Posted {
    events: usize,
    report: Report,
    /// Over the posting, from the first request to the last answer.
    cpu_seconds: f64,
    crm_requests: u64,
    /// Entries the processor planned meanwhile (of any tenant): planning follows a call's
    /// summary by the settle time, so the window holds planning only if it is that long.
    planned: u64,
}

impl Posted {
    fn events_per_second(&self) -> f64 {
        self.events as f64 / self.report.elapsed.as_secs_f64()
    }

    fn cpu_us_per_event(&self) -> f64 {
        self.cpu_seconds * 1e6 / self.events as f64
    }
}

/// The medians of the rounds' windows, and what they did in all.
struct Medians {
    events_per_second: f64,
    cpu_us_per_event: f64,
    p50_ms: f64,
    p99_ms: f64,
    crm_requests: u64,
    planned: u64,
}

impl Medians {
    fn of(windows: &[Posted]) -> Medians {
        let median =
            |f: fn(&Posted) -> f64| percentile(&windows.iter().map(f).collect::<Vec<_>>(), 0.5);
        Medians {
            events_per_second: median(Posted::events_per_second),
            cpu_us_per_event: median(Posted::cpu_us_per_event),
            p50_ms: median(|p| p.report.percentile(0.50)),
            p99_ms: median(|p| p.report.percentile(0.99)),
            crm_requests: windows.iter().map(|p| p.crm_requests).sum(),
            planned: windows.iter().map(|p| p.planned).sum(),
        }
    }
}

/// `callbridge serve` as a child process (also `bench-scale-out`'s instances), so what `/proc`
/// says of it is the service's alone.
pub(crate) struct Service {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Service {
    /// Starts the service and returns once it printed its address.
    pub(crate) fn start(config: &Path, dir: &Path) -> Result<Service> {
        let log = dir.join("service.log");
        let mut child = Command::new(std::env::current_exe()?)
            .args(["serve", "--config"])
            .arg(config)
            .current_dir(dir)
            .env("CALLBRIDGE_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)?,
            )
            .spawn()
            .context("start callbridge serve")?;
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        // Reads the address, then keeps the pipe drained until the service exits.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix("callbridge: listening on http://") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr.trim().to_string());
                    }
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(addr) => addr.parse()?,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "callbridge serve did not start; its log: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        };
        Ok(Service { child, addr, log })
    }

    /// The processor's count of planned entries (`callbridge_entries_completed_total`, every
    /// `completed_by` summed).
    async fn entries_planned(&self, http: &reqwest::Client) -> Result<u64> {
        let text = http
            .get(format!("http://{}/metrics", self.addr))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        Ok(text
            .lines()
            .filter(|l| l.starts_with("callbridge_entries_completed_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64)
    }

    async fn wait_ready(&self, http: &reqwest::Client) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(r) = http
                .get(format!("http://{}/readyz", self.addr))
                .send()
                .await
            {
                if r.status() == reqwest::StatusCode::OK {
                    return Ok(());
                }
            }
            ensure!(Instant::now() < deadline, "/readyz not 200 within 120 s");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// An error when the process has exited.
    pub(crate) fn check_running(&mut self) -> Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => bail!("callbridge serve exited during the run ({status})"),
        }
    }

    /// User and system CPU time of the whole process (every thread, live or ended).
    pub(crate) fn cpu_seconds(&self) -> Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))?;
        // After the command name in parentheses: state is field 3, utime 14 and stime 15.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .ok_or_else(|| anyhow!("unreadable /proc stat"))?
            .1
            .split_whitespace()
            .collect();
        let ticks = |i: usize| -> Result<u64> {
            fields
                .get(i)
                .and_then(|f| f.parse().ok())
                .ok_or_else(|| anyhow!("unreadable /proc stat field {i}"))
        };
        Ok((ticks(11)? + ticks(12)?) as f64 / clock_ticks_per_second())
    }

    fn rss_kb(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| anyhow!("no VmRSS in /proc/{}/status", self.pid()))
    }

    async fn post(
        &self,
        bodies: Vec<Posting>,
        concurrency: usize,
        sandboxes: &[Sandbox],
        http: &reqwest::Client,
    ) -> Result<Posted> {
        let events = bodies.len();
        let planned = self.entries_planned(http).await?;
        let (cpu, requests) = (self.cpu_seconds()?, crm_requests(sandboxes));
        // On a thread and a single-threaded runtime of its own, as `bench-ingest` posts: the
        // sandboxes keep this runtime's workers, and their clock of arrivals stays true.
        let addr = self.addr;
        let poster = std::thread::spawn(move || -> Result<Report> {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(post_all(addr, String::new(), bodies, concurrency, 0.0))
        });
        let report = tokio::task::spawn_blocking(move || poster.join())
            .await?
            .map_err(|_| anyhow!("the posting thread panicked"))??;
        let cpu_seconds = self.cpu_seconds()? - cpu;
        let crm_requests = crm_requests(sandboxes) - requests;
        let planned = self.entries_planned(http).await? - planned;
        ensure!(
            report.failures == 0,
            "{} of {events} webhooks were not acknowledged with 200 (service log: {})",
            report.failures,
            self.log.display()
        );
        Ok(Posted {
            events,
            report,
            cpu_seconds,
            crm_requests,
            planned,
        })
    }

    /// SIGTERM, then waits for the exit; returns how long it took.
    fn stop(&mut self) -> Result<Duration> {
        if self.child.try_wait()?.is_some() {
            return Ok(Duration::ZERO);
        }
        let pid = libc::pid_t::try_from(self.pid())?;
        let started = Instant::now();
        // SAFETY: kill(2) with the pid of our own child, not yet reaped (try_wait above), so
        // the pid cannot have been reused by another process.
        let sent = unsafe { libc::kill(pid, libc::SIGTERM) };
        ensure!(sent == 0, "SIGTERM: {}", std::io::Error::last_os_error());
        // On the runtime's worker: the sandboxes keep answering on the others meanwhile.
        let status = tokio::task::block_in_place(|| self.child.wait())?;
        let took = started.elapsed();
        ensure!(status.success(), "callbridge serve exited with {status}");
        Ok(took)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf reads a constant of the system; no memory is passed.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}
