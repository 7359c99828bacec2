//! `callbridge bench-scale-out`: CRM delivery throughput with 1, 2, 3... instances sharing one
//! PostgreSQL (issue 21).
//!
//! For each instance count asked for, on a fresh database of its own: completed calls of known
//! clients are planned with the core and stored with their outbox items (as the processor would),
//! spread over `--tenants` tenants connected to `--accounts` amoCRM sandbox accounts (several
//! tenants per account) and held back (due tomorrow); then that many `callbridge serve`
//! processes are started on the database, and once they have spread the accounts' leases among
//! them the work is made due and timed until every outbox item is done. Reported per count:
//! calls delivered per second, the instances' CPU time per call (read from `/proc`, so the
//! figure is theirs alone), how long the spread took from the start and how the accounts'
//! leases were spread over the instances, and each sandbox's view of the rate
//! limit (429s, most requests in any second). The run fails when a sandbox answered 429 or saw
//! more than its limit in a second, or when a call was not delivered.
//!
//! The instances run on this machine's cores, as the load generator and the sandboxes do: on a
//! machine of 2 cores more instances cannot add CPU, so the figure shows what spreading costs or
//! saves, not what more machines would add.

use crate::bench_tenants::Service;
use anyhow::{anyhow, ensure, Context, Result};
use callbridge_amocrm_sandbox::{Sandbox, SandboxConfig, Seed};
use serde_json::json;
use sqlx::{Connection, Row};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Args {
    /// The PostgreSQL server to use: `postgres://user@host:port/db`. A database of its own is
    /// created on it for each run (and dropped afterwards), so the user must be allowed to.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    database_url: String,
    /// Instance counts to measure, in order.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    instances: Vec<usize>,
    /// Completed calls to deliver in each run, spread over the tenants.
    #[arg(long, default_value_t = 18_000)]
    calls: usize,
    /// amoCRM sandbox accounts (each takes about 300 calls a second at its 7 requests).
    #[arg(long, default_value_t = 6)]
    accounts: usize,
    /// Tenants, spread over the accounts (several share one account).
    #[arg(long, default_value_t = 18)]
    tenants: usize,
    /// Give up a run after this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout_seconds: u64,
}

const SALT: &str = "bench-salt-000000000000000000000";
const TOKEN: &str = "bench-token";
/// 32 bytes in hex: the instances' shared key for secrets at rest.
const SECRET_KEY: &str = "5ca1e0075ca1e0075ca1e0075ca1e0075ca1e0075ca1e0075ca1e0075ca1e007";

pub fn run(args: &Args) -> Result<()> {
    ensure!(args.calls > 0, "--calls must be positive");
    ensure!(
        args.accounts > 0 && args.tenants >= args.accounts,
        "--accounts must be positive and --tenants at least --accounts"
    );
    ensure!(
        !args.instances.is_empty() && args.instances.iter().all(|n| (1..=16).contains(n)),
        "--instances takes counts within 1..=16, e.g. 1,2,3"
    );
    ensure!(
        args.database_url.starts_with("postgres://")
            || args.database_url.starts_with("postgresql://"),
        "--database-url must be a postgres:// URL (scale-out needs PostgreSQL)"
    );
    let runtime = crate::runtime()?;
    let mut rows = Vec::new();
    for &instances in &args.instances {
        let row = runtime.block_on(one_run(args, instances))?;
        println!("{row}");
        rows.push(row);
    }
    let first = rows[0]["calls_per_second"].as_f64().unwrap_or(0.0);
    println!(
        "{}",
        json!({
            "summary": rows.iter().map(|r| json!({
                "instances": r["instances"],
                "calls_per_second": r["calls_per_second"],
                "ratio_to_first": if first > 0.0 { (r["calls_per_second"].as_f64().unwrap_or(0.0) / first * 100.0).round() / 100.0 } else { 0.0 },
                "spread_after_seconds": r["spread_after_seconds"],
                "cpu_ms_per_call": r["cpu_ms_per_call"],
            })).collect::<Vec<_>>()
        })
    );
    Ok(())
}

async fn one_run(args: &Args, instances: usize) -> Result<serde_json::Value> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis();
    let name = format!("callbridge_bench_scale_{}_{stamp}", std::process::id());
    let dir = std::env::temp_dir().join(&name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("data"))?;
    let url = create_database(&args.database_url, &name).await?;
    let result = measure(args, instances, &dir, &url).await;
    let dropped = drop_database(&args.database_url, &name).await;
    let _ = std::fs::remove_dir_all(&dir);
    let row = result?;
    dropped?;
    Ok(row)
}

async fn measure(
    args: &Args,
    instances: usize,
    dir: &Path,
    url: &str,
) -> Result<serde_json::Value> {
    let work = crate::bench_delivery::known_client_calls(args.calls, 21)?;
    std::fs::write(dir.join("settings.toml"), &work.settings_toml)?;
    let tenant = |i: usize| format!("t{i:04}");
    // Each account knows the clients of its own tenants' calls only: the sandbox looks a number
    // up among all its contacts, and every client in every account would make the sandbox,
    // not callbridge, the slow part.
    let mut phones_of_account = vec![BTreeSet::new(); args.accounts];
    for (n, plan) in work.plans.iter().enumerate() {
        let account = (n % args.tenants) % args.accounts;
        phones_of_account[account]
            .extend(plan.records.iter().filter_map(|r| r.client_phone.clone()));
    }
    let users: Vec<_> = work
        .users
        .iter()
        .map(|id| json!({"id": id, "name": format!("User {id}")}))
        .collect();
    let mut sandboxes: Vec<Sandbox> = Vec::with_capacity(args.accounts);
    for phones in &phones_of_account {
        let seed = json!({
            "long_lived_token": TOKEN,
            "users": users,
            "contacts": phones.iter().map(|p| json!({"name": format!("Client {p}"), "phone": p, "responsible_user_id": work.users.iter().next()})).collect::<Vec<_>>(),
        })
        .to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        sandboxes.push(
            callbridge_amocrm_sandbox::start(
                listener,
                SandboxConfig {
                    rps: 7,
                    seed: Seed::from_json_str(&seed).map_err(|e| anyhow!("{e}"))?,
                    ..SandboxConfig::default()
                },
            )
            .await?,
        );
    }

    // The plans are stored first, as the processor would have, so only delivery is timed.
    let store = callbridge_store::Store::open(Some(url), &dir.join("data")).await?;
    crate::bench_delivery::store_plans(&store, &work.plans, |n| tenant(n % args.tenants)).await?;
    drop(store);
    let records: usize = work.plans.iter().map(|p| p.records.len()).sum();
    eprintln!(
        "bench-scale-out: {records} calls of {} tenants stored; starting {instances} instance(s)",
        args.tenants
    );

    // One secret key for every instance, as a deployment has (a throwaway one: the run's
    // database is dropped after it).
    let mut config = format!(
        "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\ndatabase_url = \"{url}\"\nadmin_token = \"bench-admin-token\"\n\
         directory_refresh_seconds = 0\nallow_insecure_crm_hosts = true\nsecret_key = \"{SECRET_KEY}\"\n",
        dir.join("data").display()
    );
    for i in 0..args.tenants {
        config += &format!(
            "[[tenants]]\nid = \"{}\"\nmango_api_key = \"key-{i}\"\nmango_api_salt = \"{SALT}\"\nsettings = \"{}\"\n\
             [tenants.amocrm]\nbase_url = \"{}\"\nlong_lived_token = \"{TOKEN}\"\n",
            tenant(i),
            dir.join("settings.toml").display(),
            sandboxes[i % args.accounts].base_url()
        );
    }
    let config_path = dir.join("callbridge.toml");
    std::fs::write(&config_path, config)?;

    // The work is held back (due tomorrow) until the instances have spread the accounts among
    // them, so the timed part is delivery alone, not the hand-overs of a fleet starting up.
    let mut conn = sqlx::PgConnection::connect(url).await?;
    sqlx::query("UPDATE outbox SET next_attempt_at_ms = next_attempt_at_ms + 86400000")
        .execute(&mut conn)
        .await?;
    let launched = Instant::now();
    let mut children = Vec::with_capacity(instances);
    for _ in 0..instances {
        children.push(Service::start(&config_path, dir)?);
    }
    let spread = loop {
        let spread = lease_spread(&mut conn, &children).await?;
        if spread.len() == instances && spread.values().sum::<usize>() == args.accounts {
            break spread;
        }
        ensure!(
            launched.elapsed() < Duration::from_secs(60),
            "{instances} instance(s): the accounts were not spread over them within 60 s: {spread:?}"
        );
        for child in &mut children {
            child.check_running()?;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let spread_seconds = launched.elapsed().as_secs_f64();
    // The CPU the instances spent before the work was released is not the work's.
    let cpu_before: f64 = children
        .iter()
        .map(Service::cpu_seconds)
        .sum::<Result<f64>>()?;
    sqlx::query("UPDATE outbox SET next_attempt_at_ms = $1")
        .bind(callbridge_server::state::now_ms())
        .execute(&mut conn)
        .await?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.timeout_seconds);
    let (done, pending, parked) = loop {
        let counts = outbox_states(&mut conn).await?;
        let pending = counts.get("pending").copied().unwrap_or(0);
        let done = counts.get("done").copied().unwrap_or(0);
        let parked = counts.get("parked").copied().unwrap_or(0);
        if pending == 0 || Instant::now() > deadline {
            break (done, pending, parked);
        }
        for child in &mut children {
            child.check_running()?;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let finished = Instant::now();
    let cpu_ms = (children
        .iter()
        .map(Service::cpu_seconds)
        .sum::<Result<f64>>()?
        - cpu_before)
        * 1000.0;
    drop(children);
    conn.close().await?;
    let elapsed = finished.duration_since(started).as_secs_f64();

    let stats: Vec<_> = sandboxes.iter().map(Sandbox::stats).collect();
    for sandbox in sandboxes {
        sandbox.shutdown().await;
    }
    ensure!(
        pending == 0,
        "{instances} instance(s): {pending} outbox items still pending after {} s",
        args.timeout_seconds
    );
    ensure!(
        parked == 0,
        "{instances} instance(s): {parked} items parked"
    );
    let rate_limited: u64 = stats.iter().map(|s| s.rate_limited).sum();
    let max_in_a_second = stats
        .iter()
        .map(|s| s.max_requests_in_any_second)
        .max()
        .unwrap_or(0);
    let blocked = stats.iter().filter(|s| s.blocked).count();
    ensure!(
        rate_limited == 0 && max_in_a_second <= 7 && blocked == 0,
        "{instances} instance(s): the limit was broken: {rate_limited} 429s, {max_in_a_second} requests in one second, {blocked} accounts blocked"
    );
    let requests: u64 = stats.iter().map(|s| s.requests).sum();
    Ok(json!({
        "instances": instances,
        "tenants": args.tenants,
        "accounts": args.accounts,
        "calls": records,
        "outbox_items_done": done,
        "seconds": (elapsed * 1000.0).round() / 1000.0,
        "calls_per_second": (records as f64 / elapsed * 10.0).round() / 10.0,
        "cpu_ms_per_call": (cpu_ms / records.max(1) as f64 * 1000.0).round() / 1000.0,
        "spread_after_seconds": (spread_seconds * 100.0).round() / 100.0,
        "accounts_held_per_instance": spread.values().collect::<Vec<_>>(),
        "crm_requests": requests,
        "rate_limited_429": rate_limited,
        "max_requests_in_any_second": max_in_a_second,
    }))
}

async fn outbox_states(conn: &mut sqlx::PgConnection) -> Result<BTreeMap<String, i64>> {
    let rows = sqlx::query("SELECT state, COUNT(*) FROM outbox GROUP BY state")
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get::<String, _>(0)?, r.try_get::<i64, _>(1)?)))
        .collect()
}

/// Accounts whose lease each instance holds now, by process id (a holder is named
/// `<host>-<pid>-<ms>/<n>`).
async fn lease_spread(
    conn: &mut sqlx::PgConnection,
    children: &[Service],
) -> Result<BTreeMap<u32, usize>> {
    let now = callbridge_server::state::now_ms();
    let rows = sqlx::query("SELECT holder FROM delivery_leases WHERE expires_at_ms > $1")
        .bind(now)
        .fetch_all(conn)
        .await?;
    let mut spread: BTreeMap<u32, usize> = children.iter().map(|c| (c.pid(), 0)).collect();
    for row in rows {
        let holder: String = row.try_get(0)?;
        let pid = holder
            .split('/')
            .next()
            .and_then(|name| name.rsplit('-').nth(1))
            .and_then(|pid| pid.parse::<u32>().ok());
        if let Some(n) = pid.and_then(|pid| spread.get_mut(&pid)) {
            *n += 1;
        }
    }
    spread.retain(|_, n| *n > 0);
    Ok(spread)
}

/// `base` with its database replaced by `name`.
fn database_url(base: &str, name: &str) -> Result<String> {
    let (server, _) = base
        .rsplit_once('/')
        .filter(|(server, _)| server.contains("://") && !server.ends_with('/'))
        .context("--database-url must name a database: postgres://user@host:port/db")?;
    Ok(format!("{server}/{name}"))
}

async fn create_database(base: &str, name: &str) -> Result<String> {
    let mut admin = sqlx::PgConnection::connect(base)
        .await
        .with_context(|| format!("connecting to {}", callbridge_store::redact(base)))?;
    sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .with_context(|| format!("creating the run's database {name}"))?;
    admin.close().await?;
    database_url(base, name)
}

async fn drop_database(base: &str, name: &str) -> Result<()> {
    let mut admin = sqlx::PgConnection::connect(base).await?;
    sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await?;
    admin.close().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_run_database_replaces_the_given_one_and_messages_hide_the_password() {
        assert_eq!(
            database_url("postgres://u:pw@h:5432/postgres", "x").unwrap(),
            "postgres://u:pw@h:5432/x"
        );
        assert!(database_url("postgres://h:5432", "x").is_err());
        // Messages name the server through the store's redaction.
        assert!(!callbridge_store::redact("postgres://u:pw@h:5432/db").contains("pw"));
    }
}
