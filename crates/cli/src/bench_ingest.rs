//! `callbridge bench-ingest`: a load benchmark of the webhook ingest path. Starts the service
//! in-process on loopback (SQLite in a temporary folder, or the PostgreSQL given), posts correctly
//! signed Mango webhooks from generated traffic over HTTP with a number of concurrent
//! connections, optionally paced at a fixed rate, and reports accepted events per second and the
//! acknowledgement latency percentiles. Every acknowledged event is durably in the event log.
//!
//! The client is deliberately light, so that it takes as little of the shared cores from the
//! service as it can: a minimal HTTP/1.1 keep-alive client over plain tokio TCP connections (one
//! per concurrent sender), writing each signed form body with its request line and headers and
//! reading the status line, headers and `Content-Length` body of each answer. It runs on a
//! single-threaded runtime of its own thread; the service keeps its usual multi-threaded runtime.

use anyhow::{anyhow, ensure, Context, Result};
use callbridge_mango::wire::to_json;
use callbridge_traffic::{Config as TrafficConfig, Generator};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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

const SALT: &str = "bench-salt-000000000000000000000";

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
    let runtime = crate::runtime()?;
    let report = runtime.block_on(async move {
        let running = callbridge_server::start(config, tenants)
            .await
            .map_err(|e| anyhow!("{e}"))?;
        let backend = running.state.store.backend();
        let (addr, prefix) = (running.addr, format!("/mango/{tenant}/"));
        let (concurrency, rate) = (args.concurrency, args.rate);
        let client = std::thread::spawn(move || -> Result<Report> {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(post_all(addr, prefix, bodies, concurrency, rate))
        });
        let report = tokio::task::spawn_blocking(move || client.join())
            .await?
            .map_err(|_| anyhow!("the client thread panicked"))??;
        let stored = running.state.store.count_events(&tenant).await?;
        let metrics = running.state.metrics.render();
        running.shutdown().await;
        Ok::<_, anyhow::Error>((backend, report, stored, metrics))
    })?;
    let (backend, r, stored, metrics) = report;
    // The service's own count of its event-log writes: a run whose slow acknowledgements come
    // with slow appends lost its time in the database (on SQLite, in the disk's fsync).
    let appends = metric_value(&metrics, "callbridge_event_log_append_seconds_count");
    let appends_over = |seconds: &str| {
        let within = metric_value(
            &metrics,
            &format!("callbridge_event_log_append_seconds_bucket{{le=\"{seconds}\"}}"),
        );
        appends.zip(within).map(|(all, within)| all - within)
    };
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
        "appends": appends,
        "appends_over_10ms": appends_over("0.01"),
        "appends_over_50ms": appends_over("0.05"),
    });
    println!("{line}");
    ensure!(
        r.failures == 0,
        "{} requests were not acknowledged with 200",
        r.failures
    );
    Ok(())
}

/// The value of one series in Prometheus text (`name{labels} value`), given as it is printed.
fn metric_value(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .map(|value| value as u64)
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

/// What [`post_all`] measured: each request's latency, the wall time, and the requests not
/// acknowledged with 200 (an error status or a broken connection).
pub(crate) struct Report {
    pub(crate) latencies_us: Vec<u64>,
    pub(crate) elapsed: Duration,
    pub(crate) failures: usize,
}

impl Report {
    pub(crate) fn percentile(&self, p: f64) -> f64 {
        let mut v = self.latencies_us.clone();
        v.sort_unstable();
        let i = ((v.len() as f64 - 1.0) * p).round() as usize;
        v.get(i).copied().unwrap_or(0) as f64 / 1000.0
    }
}

/// Posts every body to `{prefix}{path}` over `concurrency` keep-alive connections (`bench-tenants`
/// gives each body its whole path and an empty prefix).
pub(crate) async fn post_all(
    addr: std::net::SocketAddr,
    prefix: String,
    bodies: Vec<(String, String)>,
    concurrency: usize,
    rate: f64,
) -> Result<Report> {
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (bodies, next, prefix) = (bodies.clone(), next.clone(), prefix.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut failures = 0usize;
            let mut conn: Option<Connection> = None;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((path, body)) = bodies.get(i) else {
                    break;
                };
                // Open loop when paced: event i is due at i / rate and its latency counts from
                // then, so a slow acknowledgement cannot hide the ones queued behind it.
                let sent = if rate > 0.0 {
                    let due = start + Duration::from_secs_f64(i as f64 / rate);
                    tokio::time::sleep_until(due.into()).await;
                    due
                } else {
                    Instant::now()
                };
                let status = match conn.as_mut() {
                    Some(c) => c.post(&prefix, path, body).await,
                    None => match Connection::open(addr).await {
                        Ok(c) => conn.insert(c).post(&prefix, path, body).await,
                        Err(e) => Err(e),
                    },
                };
                match status {
                    Ok(200) => {}
                    Ok(_) => failures += 1,
                    Err(_) => {
                        failures += 1;
                        conn = None;
                    }
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

/// One keep-alive HTTP/1.1 connection to the service.
struct Connection {
    stream: TcpStream,
    request: Vec<u8>,
    response: Vec<u8>,
}

impl Connection {
    async fn open(addr: std::net::SocketAddr) -> Result<Connection> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Connection {
            stream,
            request: Vec::with_capacity(2048),
            response: Vec::with_capacity(1024),
        })
    }

    /// Posts one form body and reads the whole answer; returns its status code.
    async fn post(&mut self, prefix: &str, path: &str, body: &str) -> Result<u16> {
        use std::io::Write;
        self.request.clear();
        write!(
            self.request,
            "POST {prefix}{path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )?;
        self.request.extend_from_slice(body.as_bytes());
        self.stream.write_all(&self.request).await?;
        // The head, then as much body as Content-Length says.
        self.response.clear();
        let head_end = loop {
            if let Some(at) = self.response.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            let mut chunk = [0u8; 1024];
            let n = self.stream.read(&mut chunk).await?;
            ensure!(n > 0, "the service closed the connection");
            self.response.extend_from_slice(&chunk[..n]);
        };
        let head = std::str::from_utf8(&self.response[..head_end])?;
        let status: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow!("bad status line"))?;
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .ok_or_else(|| anyhow!("no content-length"))?;
        let mut have = self.response.len() - head_end;
        while have < length {
            let mut chunk = [0u8; 1024];
            let n = self.stream.read(&mut chunk).await?;
            ensure!(n > 0, "the service closed the connection");
            have += n;
        }
        Ok(status)
    }
}
