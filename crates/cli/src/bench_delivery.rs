//! `callbridge bench-delivery`: how fast completed calls reach amoCRM under its rate limit.
//!
//! Generates answered calls of clients the CRM already knows, plans them with the core, stores
//! the plans and their outbox items (as the processor would), seeds an amoCRM sandbox with the
//! clients as contacts, then starts the service and times the outbox worker until every call is
//! written. Reports calls logged per second, CRM requests per logged call, and the sandbox's
//! view of the rate limit (429s, most requests in any second).
//!
//! With `--outage-seconds N` the sandbox fails every request (503) for the first N seconds, while
//! the worker tries the backlog; then it answers again, and what is timed is the drain from that
//! moment: the report adds the recovery time, the requests (and note look-ups) per call after
//! the outage, and checks that each call's note exists exactly once.

use crate::crm_reader::CrmReader;
use anyhow::{anyhow, ensure, Result};
use callbridge_amocrm::EntityType;
use callbridge_amocrm_sandbox::{SandboxConfig, Seed};
use callbridge_core::ValidSettings;
use callbridge_traffic::{CallKind, Config as TrafficConfig, Generator, Mix};
use serde_json::json;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Args {
    /// Completed calls to deliver.
    #[arg(long, default_value_t = 5_000)]
    calls: usize,
    /// The sandbox's requests per second (amoCRM: 7).
    #[arg(long, default_value_t = 7)]
    rps: u32,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout_seconds: u64,
    /// The CRM fails every request (503) for this long after the service starts, then recovers.
    #[arg(long, default_value_t = 0)]
    outage_seconds: u64,
}

const TENANT: &str = "bench";

/// Completed calls to deliver, as the delivery benchmarks use them: answered calls only, each
/// one call record of a client the CRM knows, under the generated office's settings with the
/// repeat-client action "manual" (a call is then one item of a batched `/api/v4/calls`
/// request; "lead if none open" would add, per 50 calls that land on a contact, a read of
/// their leads and a lead creation, as follow-ups), and no "save all calls" user.
pub(crate) struct KnownClientCalls {
    pub(crate) settings_toml: String,
    pub(crate) plans: Vec<callbridge_core::plan::EntryPlan>,
    /// The CRM users the settings name, and 9000.
    pub(crate) users: BTreeSet<u64>,
}

/// Stores the plans with their outbox items, as the processor would have (in batches, by the
/// store's `save_plans`), the `n`th for the tenant `tenant_of(n)`.
pub(crate) async fn store_plans(
    store: &callbridge_store::Store,
    plans: &[callbridge_core::plan::EntryPlan],
    tenant_of: impl Fn(usize) -> String,
) -> Result<()> {
    let now = callbridge_server::state::now_ms();
    let mut batch = Vec::with_capacity(500);
    for (n, plan) in plans.iter().enumerate() {
        let tenant_id = tenant_of(n);
        batch.push(callbridge_store::NewPlan {
            outbox: callbridge_server::processor::outbox_items(&tenant_id, plan),
            tenant_id,
            entry_id: plan.entry_id.clone(),
            completed_by: "summary".into(),
            plan: serde_json::to_value(plan)?,
            first_event_id: None,
            last_event_id: None,
        });
        if batch.len() == 500 || n + 1 == plans.len() {
            store.save_plans(&batch, now).await?;
            batch.clear();
        }
    }
    Ok(())
}

pub(crate) fn known_client_calls(calls: usize, seed: u64) -> Result<KnownClientCalls> {
    let generator = Generator::new(TrafficConfig {
        calls,
        seed,
        recorded: 0.0,
        mix: Mix(vec![
            (CallKind::DirectAnswered, 3.0),
            (CallKind::OutboundAnswered, 1.0),
        ]),
        ..TrafficConfig::default()
    });
    let settings_toml = generator
        .staff()
        .settings_toml()
        .replace("\"lead_if_no_open\"", "\"manual\"")
        .replace("\"always_lead\"", "\"manual\"")
        .replace("save = true", "save = false");
    let settings = ValidSettings::parse_toml(&settings_toml).map_err(|e| anyhow!("{e}"))?;
    let mut users: BTreeSet<u64> = settings_toml
        .lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| k.trim().ends_with("crm_user_id"))
        .filter_map(|(_, v)| v.trim().parse().ok())
        .collect();
    users.insert(9000);
    let plans = crate::pipeline::plan_all(&settings, generator);
    Ok(KnownClientCalls {
        settings_toml,
        plans,
        users,
    })
}

pub fn run(args: &Args) -> Result<()> {
    ensure!(args.calls > 0, "--calls must be positive");
    ensure!((1..=50).contains(&args.rps), "--rps must be within 1..=50");
    let dir =
        std::env::temp_dir().join(format!("callbridge-bench-delivery-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;

    let KnownClientCalls {
        settings_toml,
        plans,
        users,
    } = known_client_calls(args.calls, 42)?;
    std::fs::write(dir.join("settings.toml"), &settings_toml)?;
    let records: usize = plans.iter().map(|p| p.records.len()).sum();
    let phones: BTreeSet<String> = plans
        .iter()
        .flat_map(|p| p.records.iter().filter_map(|r| r.client_phone.clone()))
        .collect();

    let seed = json!({
        "long_lived_token": "bench-token",
        "users": users.iter().map(|id| json!({"id": id, "name": format!("User {id}")})).collect::<Vec<_>>(),
        "contacts": phones.iter().map(|p| json!({"name": format!("Client {p}"), "phone": p, "responsible_user_id": users.iter().next()})).collect::<Vec<_>>(),
    });
    let runtime = crate::runtime()?;
    let report = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let sandbox = callbridge_amocrm_sandbox::start(
            listener,
            SandboxConfig {
                rps: args.rps,
                seed: Seed::from_json_str(&seed.to_string()).map_err(|e| anyhow!("{e}"))?,
                ..SandboxConfig::default()
            },
        )
        .await?;
        if args.outage_seconds > 0 {
            sandbox.set_faults(callbridge_amocrm_sandbox::Faults {
                error_rate: 1.0,
                ..Default::default()
            });
        }
        // The plans are stored first, as the processor would have, so only delivery is timed.
        let store = callbridge_store::Store::open(None, &dir.join("data")).await?;
        store_plans(&store, &plans, |_| TENANT.to_string()).await?;
        drop(store);
        let config_text = format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"data\"\nadmin_token = \"bench-admin-token\"\ndirectory_refresh_seconds = 0\nallow_insecure_crm_hosts = true\n\
             [[tenants]]\nid = \"{TENANT}\"\nmango_api_key = \"bench-key\"\nmango_api_salt = \"bench-salt-000000000000000000000\"\nsettings = \"settings.toml\"\n\
             [tenants.amocrm]\nbase_url = \"{}\"\nlong_lived_token = \"bench-token\"\nrequests_per_second = {}\n",
            sandbox.base_url(),
            args.rps.min(7)
        );
        let config_path = dir.join("callbridge.toml");
        std::fs::write(&config_path, config_text)?;
        let (config, tenants) = callbridge_server::config::Config::load(Some(&config_path))
            .map_err(|e| anyhow!("{e}"))?;
        let started = Instant::now();
        let running = callbridge_server::start(config, tenants)
            .await
            .map_err(|e| anyhow!("{e}"))?;
        let mut outage = None;
        if args.outage_seconds > 0 {
            tokio::time::sleep(Duration::from_secs(args.outage_seconds)).await;
            let during = sandbox.stats();
            sandbox.set_faults(callbridge_amocrm_sandbox::Faults::default());
            outage = Some((Instant::now(), during));
        }
        let deadline = started + Duration::from_secs(args.timeout_seconds);
        let counts = loop {
            let counts = running.state.store.outbox_counts(TENANT).await?;
            if counts.pending == 0 || Instant::now() > deadline {
                break counts;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let elapsed = started.elapsed();
        let drained_at = Instant::now();
        let stats = sandbox.stats();
        running.shutdown().await;
        let recovery = match outage {
            Some((back_at, during)) => {
                let recovery_s = drained_at.duration_since(back_at).as_secs_f64();
                let (notes, twice) = call_note_uniqs(&sandbox.base_url()).await?;
                let after = stats.requests - during.requests;
                let note_reads = |s: &callbridge_amocrm_sandbox::Stats| -> u64 {
                    ["GET /api/v4/contacts/notes", "GET /api/v4/leads/notes"]
                        .iter()
                        .map(|r| s.by_route.get(*r).copied().unwrap_or(0))
                        .sum()
                };
                Some(json!({
                    "outage_seconds": args.outage_seconds,
                    "requests_during_outage": during.requests,
                    "recovery_seconds": (recovery_s * 1000.0).round() / 1000.0,
                    "requests_after_recovery": after,
                    "requests_per_call_after_recovery": (after as f64 / counts.done.max(1) as f64 * 1000.0).round() / 1000.0,
                    "note_reads_after_recovery": note_reads(&stats) - note_reads(&during),
                    "call_notes": notes,
                    "call_notes_written_twice": twice,
                }))
            }
            None => None,
        };
        sandbox.shutdown().await;
        Ok::<_, anyhow::Error>((counts, elapsed, stats, recovery))
    })?;
    let (counts, elapsed, stats, recovery) = report;
    let _ = std::fs::remove_dir_all(&dir);
    ensure!(
        counts.pending == 0,
        "not delivered within {} s: {counts:?}",
        args.timeout_seconds
    );
    let secs = elapsed.as_secs_f64();
    let out = json!({
        "calls": records,
        "delivered": counts.done,
        "parked": counts.parked,
        "seconds": (secs * 1000.0).round() / 1000.0,
        "calls_per_second": (counts.done as f64 / secs * 10.0).round() / 10.0,
        "crm_requests": stats.requests,
        "crm_requests_per_call": (stats.requests as f64 / counts.done.max(1) as f64 * 1000.0).round() / 1000.0,
        "rate_limited_429": stats.rate_limited,
        "max_requests_in_any_second": stats.max_requests_in_any_second,
        "sandbox_rps": args.rps,
        "by_route": stats.by_route,
    });
    let mut out = out;
    if let Some(recovery) = &recovery {
        out["recovery"] = recovery.clone();
    }
    println!("{out}");
    if let Some(recovery) = &recovery {
        ensure!(
            recovery["call_notes_written_twice"] == 0 && recovery["call_notes"] == counts.done,
            "not exactly once: {recovery}"
        );
    }
    ensure!(
        counts.parked == 0,
        "{} calls were parked; see the admin API",
        counts.parked
    );
    ensure!(stats.rate_limited == 0, "the CRM answered 429: {stats:?}");
    Ok(())
}

/// Every call note's `uniq` in the sandbox, read through its API after the run: how many notes
/// there are, and how many `uniq`s appear more than once.
async fn call_note_uniqs(base: &str) -> Result<(usize, usize)> {
    // Inside the account's 7 requests a second; the delivery's last requests may still fill
    // its window, which the reader waits out.
    let reader = CrmReader::new(base, "bench-token", 5)?;
    let mut seen = std::collections::HashMap::<String, usize>::new();
    let mut notes = 0;
    for entity in [EntityType::Contacts, EntityType::Leads] {
        let found = reader.call_notes(entity).await?;
        for n in &found {
            let uniq = n.params["uniq"].as_str().unwrap_or_default().to_string();
            *seen.entry(uniq).or_default() += 1;
        }
        notes += found.len();
    }
    Ok((notes, seen.values().filter(|n| **n > 1).count()))
}
