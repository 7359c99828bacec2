//! `callbridge bench-ingest`: a load benchmark of the webhook ingest path. Starts the service
//! in-process on loopback (SQLite in a temporary folder, or the PostgreSQL given), posts correctly
//! signed Mango webhooks from generated traffic over HTTP with a number of concurrent
//! connections, optionally paced at a fixed rate, and reports accepted events per second and the
//! acknowledgement latency percentiles. Every acknowledged event is durably in the event log.

use anyhow::{anyhow, ensure, Context, Result};
use callbridge_mango::wire::to_json;
use callbridge_traffic::{Config as TrafficConfig, Generator};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Args {
    /// Events to post.
    #[arg(long, default_value_t = 50_000)]
    events: usize,
    /// Concurrent HTTP connections.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Target rate in events per second; 0 posts as fast as the service acknowledges.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// `postgres://...` to measure PostgreSQL; otherwise SQLite in a temporary folder.
    #[arg(long)]
    database_url: Option<String>,
}

const SALT: &str = "bench-salt";

pub fn run(args: &Args) -> Result<()> {
    ensure!(
        args.events > 0 && args.concurrency > 0,
        "--events and --concurrency must be positive"
    );
    ensure!(
        args.rate >= 0.0 && args.rate.is_finite(),
        "--rate must be 0 or a positive number"
    );
    let dir = std::env::temp_dir().join(format!("callbridge-bench-ingest-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    // A tenant of its own per run: on a shared PostgreSQL, an earlier run's events would
    // otherwise be recognised as duplicates and not written again.
    let tenant = format!(
        "bench-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis()
    );
    let key = format!("key-{tenant}");
    let bodies = signed_bodies(args.events, &dir, &key)?;
    let mut config = format!(
        "listen = \"127.0.0.1:0\"\ndata_dir = \"data\"\nadmin_token = \"bench-admin-token\"\ndirectory_refresh_seconds = 0\n\
         [[tenants]]\nid = \"{tenant}\"\nmango_api_key = \"{key}\"\nmango_api_salt = \"{SALT}\"\nsettings = \"settings.toml\"\n"
    );
    if let Some(url) = &args.database_url {
        config = format!("database_url = \"{url}\"\n{config}");
    }
    let config_path = dir.join("callbridge.toml");
    std::fs::write(&config_path, config)?;
    let (config, tenants) =
        callbridge_server::config::Config::load(Some(&config_path)).map_err(|e| anyhow!("{e}"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(async move {
        let running = callbridge_server::start(config, tenants)
            .await
            .map_err(|e| anyhow!("{e}"))?;
        let backend = running.state.store.backend();
        let url = format!("http://{}/mango/{tenant}/", running.addr);
        let report = post_all(&url, bodies, args).await?;
        let stored = running.state.store.count_events(&tenant).await?;
        running.shutdown().await;
        Ok::<_, anyhow::Error>((backend, report, stored))
    })?;
    let (backend, r, stored) = report;
    let _ = std::fs::remove_dir_all(&dir);
    let line = serde_json::json!({
        "backend": backend,
        "events": r.latencies_us.len(),
        "stored": stored,
        "concurrency": args.concurrency,
        "target_rate": args.rate,
        "seconds": r.elapsed.as_secs_f64(),
        "events_per_second": r.latencies_us.len() as f64 / r.elapsed.as_secs_f64(),
        "p50_ms": r.percentile(0.50),
        "p99_ms": r.percentile(0.99),
        "max_ms": r.percentile(1.0),
        "non_200": r.failures,
    });
    println!("{line}");
    ensure!(
        r.failures == 0,
        "{} requests were not acknowledged with 200",
        r.failures
    );
    Ok(())
}

/// Generated traffic as ready-to-post form bodies: (path, body).
fn signed_bodies(n: usize, dir: &std::path::Path, key: &str) -> Result<Vec<(String, String)>> {
    let mut generator = Generator::new(TrafficConfig {
        calls: n / 6 + 10,
        seed: 11,
        rate: 5.0,
        ..TrafficConfig::default()
    });
    std::fs::write(dir.join("settings.toml"), generator.staff().settings_toml())
        .context("settings")?;
    let mut out = Vec::with_capacity(n);
    for event in generator.by_ref() {
        if out.len() == n {
            break;
        }
        let (path, json) = to_json(&event);
        let json = json.to_string();
        let sign = callbridge_mango::sign(key, &json, SALT);
        let body: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("vpbx_api_key", key)
            .append_pair("sign", &sign)
            .append_pair("json", &json)
            .finish();
        out.push((path.to_string(), body));
    }
    ensure!(
        out.len() == n,
        "the generator gave only {} events",
        out.len()
    );
    Ok(out)
}

struct Report {
    latencies_us: Vec<u64>,
    elapsed: Duration,
    failures: usize,
}

impl Report {
    fn percentile(&self, p: f64) -> f64 {
        let mut v = self.latencies_us.clone();
        v.sort_unstable();
        let i = ((v.len() as f64 - 1.0) * p).round() as usize;
        v.get(i).copied().unwrap_or(0) as f64 / 1000.0
    }
}

async fn post_all(url: &str, bodies: Vec<(String, String)>, args: &Args) -> Result<Report> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let (client, bodies, next, url, rate) = (
            client.clone(),
            bodies.clone(),
            next.clone(),
            url.to_string(),
            args.rate,
        );
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut failures = 0usize;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((path, body)) = bodies.get(i) else {
                    break;
                };
                if rate > 0.0 {
                    // Open loop: event i is due at i / rate; latency counts from when it was due,
                    // so a slow acknowledgement delays nothing it should not hide.
                    let due = start + Duration::from_secs_f64(i as f64 / rate);
                    tokio::time::sleep_until(due.into()).await;
                }
                let sent = if rate > 0.0 {
                    start + Duration::from_secs_f64(i as f64 / rate)
                } else {
                    Instant::now()
                };
                let result = client
                    .post(format!("{url}{path}"))
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body.clone())
                    .send()
                    .await;
                match result {
                    Ok(r) if r.status().as_u16() == 200 => {
                        let _ = r.bytes().await;
                    }
                    _ => failures += 1,
                }
                latencies.push(sent.elapsed().as_micros() as u64);
            }
            (latencies, failures)
        }));
    }
    let mut report = Report {
        latencies_us: Vec::new(),
        elapsed: Duration::ZERO,
        failures: 0,
    };
    for w in workers {
        let (l, f) = w.await?;
        report.latencies_us.extend(l);
        report.failures += f;
    }
    report.elapsed = start.elapsed();
    Ok(report)
}
