//! `callbridge bench-journal`: how fast the call journal answers with many stored entries.
//!
//! Generates calls (the traffic generator's office and mix), plans them with the core as the
//! service would, and stores the plans with their outbox items through `save_plans`, a batch a
//! transaction, into SQLite in a temporary folder or the PostgreSQL given (under a tenant of
//! its own, removed at the end). Most items are then marked delivered, some left pending and
//! some parked, as a day of delivery leaves them. Then it times the journal's reads, each run
//! `--runs` times after one warm-up: the first page, a search by a whole number and by a piece
//! of one, a combination of filters, and the delivery filters. Prints one JSON line.

use crate::pipeline::Planned;
use anyhow::{anyhow, ensure, Result};
use callbridge_core::tracker::TrackerConfig;
use callbridge_core::ValidSettings;
use callbridge_store::{DeliveryFilter, JournalFilter, NewPlan, Store};
use callbridge_traffic::{Config as TrafficConfig, Generator};
use std::collections::HashMap;
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    /// Entries to store (generated calls; internal calls included).
    #[arg(long, default_value_t = 100_000)]
    entries: usize,
    /// Timed runs of each query (after one warm-up run).
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// `postgres://...` to measure PostgreSQL; otherwise SQLite in a temporary folder.
    #[arg(long)]
    database_url: Option<String>,
    /// Leave the stored entries (PostgreSQL: the tenant's rows, named in the report) to look
    /// at the queries' plans by hand.
    #[arg(long)]
    keep: bool,
}

/// Plans stored per transaction.
const BATCH: usize = 1000;
/// The page size the journal shows.
const PAGE: i64 = 50;

pub fn run(args: &Args) -> Result<()> {
    ensure!(
        args.entries > 0 && args.runs > 0,
        "--entries and --runs must be positive"
    );
    let dir = std::env::temp_dir().join(format!("callbridge-bench-journal-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // A tenant of its own per run, so a shared PostgreSQL's earlier runs do not count.
    let tenant = format!(
        "bench-journal-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis()
    );
    let runtime = crate::runtime()?;
    let report = runtime.block_on(async {
        let store = Store::open(args.database_url.as_deref(), &dir).await?;
        let result = fill_and_measure(&store, &tenant, args).await;
        if !args.keep {
            store.purge_tenant(&tenant).await?;
        }
        result
    });
    if !args.keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    println!("{}", report?);
    Ok(())
}

/// What the queries search for, taken from the stored plans.
#[derive(Default)]
struct Probe {
    /// A client's whole number (a client with several calls).
    phone: String,
    /// The commonest extension.
    extension: String,
    /// The newest planned time.
    newest_ms: i64,
}

async fn fill_and_measure(store: &Store, tenant: &str, args: &Args) -> Result<serde_json::Value> {
    let started = Instant::now();
    let (probe, items, entries) = fill(store, tenant, args.entries).await?;
    let fill_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let (delivered, parked) = deliver_most(store, &items).await?;
    let deliver_seconds = started.elapsed().as_secs_f64();
    // PostgreSQL's autovacuum would do this within a minute or so of the load.
    store.vacuum_analyze_journal().await?;

    let last_ten = probe.phone[probe.phone.len().saturating_sub(10)..].to_string();
    let queries: Vec<(&str, JournalFilter, i64)> = vec![
        ("first_page", JournalFilter::default(), 0),
        (
            "phone_whole",
            JournalFilter {
                phone_digits: Some(last_ten.clone()),
                ..JournalFilter::default()
            },
            0,
        ),
        (
            "phone_piece",
            JournalFilter {
                phone_digits: Some(last_ten[6..].to_string()),
                ..JournalFilter::default()
            },
            0,
        ),
        (
            "combination",
            JournalFilter {
                from_ms: Some(probe.newest_ms - 24 * 3_600_000),
                extension: Some(probe.extension.clone()),
                direction: Some("inbound".into()),
                outcome: Some("missed".into()),
                ..JournalFilter::default()
            },
            0,
        ),
        (
            "delivery_parked",
            JournalFilter {
                delivery: Some(DeliveryFilter::Parked),
                ..JournalFilter::default()
            },
            0,
        ),
        (
            "delivery_delivered",
            JournalFilter {
                delivery: Some(DeliveryFilter::Delivered),
                ..JournalFilter::default()
            },
            0,
        ),
        ("page_100", JournalFilter::default(), 99 * PAGE),
    ];
    let mut measured = serde_json::Map::new();
    for (name, filter, offset) in queries {
        let first = store.journal(tenant, &filter, PAGE, offset).await?;
        let mut ms = Vec::with_capacity(args.runs);
        for _ in 0..args.runs {
            let t = Instant::now();
            let page = store.journal(tenant, &filter, PAGE, offset).await?;
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
            ensure!(page == first, "{name}: the answer changed between runs");
        }
        ms.sort_by(f64::total_cmp);
        let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
        measured.insert(
            name.to_string(),
            serde_json::json!({
                "total": first.total,
                "total_capped": first.total_capped,
                "listed": first.entries.len(),
                "p50_ms": round(at(0.5)),
                "p95_ms": round(at(0.95)),
                "max_ms": round(at(1.0)),
            }),
        );
    }
    Ok(serde_json::json!({
        "backend": store.backend(),
        "tenant": tenant,
        "entries": entries,
        "outbox_items": items.len(),
        "delivered": delivered,
        "parked": parked,
        "fill_seconds": round(fill_seconds),
        "deliver_seconds": round(deliver_seconds),
        "runs": args.runs,
        "phone": probe.phone,
        "queries": measured,
    }))
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Plans on their way into the store, and what the benchmark learns from them.
#[derive(Default)]
struct Filled {
    /// Every outbox item's key.
    items: Vec<String>,
    phones: HashMap<String, usize>,
    extensions: HashMap<String, usize>,
    stored: usize,
    newest_ms: i64,
}

impl Filled {
    /// Stores `planned` (emptied) in one transaction, planned when the last of them ended.
    async fn save(
        &mut self,
        store: &Store,
        tenant: &str,
        planned: &mut Vec<Planned>,
    ) -> Result<()> {
        let ended = planned.iter().map(|p| p.plan.ended_at).max().unwrap_or(0);
        self.newest_ms = self.newest_ms.max(ended * 1000);
        let mut batch = Vec::with_capacity(planned.len());
        for p in planned.drain(..) {
            batch.push(self.new_plan(tenant, p)?);
        }
        let saved = store.save_plans(&batch, self.newest_ms).await?;
        self.stored += saved.into_iter().filter(|s| *s).count();
        Ok(())
    }

    fn new_plan(&mut self, tenant: &str, planned: Planned) -> Result<NewPlan> {
        let plan = planned.plan;
        let outbox = callbridge_server::processor::outbox_items(tenant, &plan);
        self.items.extend(outbox.iter().map(|i| i.item_key.clone()));
        if let Some(phone) = &plan.client_phone {
            *self.phones.entry(phone.clone()).or_default() += 1;
        }
        for ext in plan
            .records
            .iter()
            .filter_map(|r| r.employee_extension.as_ref())
        {
            *self.extensions.entry(ext.clone()).or_default() += 1;
        }
        let mut value = serde_json::to_value(&plan)?;
        value["completed_by"] = serde_json::to_value(planned.completed_by)?;
        Ok(NewPlan {
            tenant_id: tenant.to_string(),
            entry_id: plan.entry_id.clone(),
            completed_by: "summary".into(),
            plan: value,
            outbox,
            first_event_id: None,
            last_event_id: None,
        })
    }
}

/// The most frequent key (the smallest of equals).
fn commonest(counts: HashMap<String, usize>) -> String {
    counts
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
        .map(|(k, _)| k)
        .unwrap_or_default()
}

/// Stores `n` planned entries of generated calls, `BATCH` a transaction; returns what to
/// search for, every outbox item's key, and how many entries were stored.
async fn fill(store: &Store, tenant: &str, n: usize) -> Result<(Probe, Vec<String>, usize)> {
    let generator = Generator::new(TrafficConfig {
        calls: n,
        seed: 19,
        ..TrafficConfig::default()
    });
    let settings = ValidSettings::parse_toml(&generator.staff().settings_toml())
        .map_err(|e| anyhow!("{e}"))?;
    let mut pipeline = crate::pipeline::Pipeline::new(&settings, TrackerConfig::default());
    let mut filled = Filled::default();
    let mut planned = Vec::new();
    for event in generator {
        planned.extend(pipeline.push(event));
        if planned.len() >= BATCH {
            filled.save(store, tenant, &mut planned).await?;
        }
    }
    planned.extend(pipeline.finish().0);
    if !planned.is_empty() {
        filled.save(store, tenant, &mut planned).await?;
    }
    let probe = Probe {
        phone: commonest(filled.phones),
        extension: commonest(filled.extensions),
        newest_ms: filled.newest_ms,
    };
    ensure!(!probe.phone.is_empty(), "the generated calls had no client");
    Ok((probe, filled.items, filled.stored))
}

/// Marks the items delivered but for the newest 1% (left pending) and one in 200 (parked).
async fn deliver_most(store: &Store, items: &[String]) -> Result<(usize, usize)> {
    let pending_from = items.len() - items.len() / 100;
    let (mut delivered, mut parked) = (0, 0);
    for chunk in items[..pending_from].chunks(5000) {
        let mut done = Vec::with_capacity(chunk.len());
        for (i, key) in chunk.iter().enumerate() {
            if i % 200 == 7 {
                store
                    .park_item(key, "amoCRM: 400 Bad Request (bench)")
                    .await?;
                parked += 1;
            } else {
                done.push((key.clone(), serde_json::json!({"id": i})));
            }
        }
        delivered += done.len();
        store.complete_items(&done, 0).await?;
    }
    Ok((delivered, parked))
}
