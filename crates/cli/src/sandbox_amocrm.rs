//! `callbridge sandbox amocrm --port N`: the amoCRM stand-in as a process. Wiring only: flags,
//! logging, signals; the behaviour lives in `callbridge-amocrm-sandbox`.

use crate::shutdown_signal;
use anyhow::{anyhow, bail, Context, Result};
use callbridge_amocrm_sandbox::{Faults, SandboxConfig, Seed};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
    /// Port on 127.0.0.1 to listen on (0: pick a free one; the start line tells which).
    #[arg(long)]
    port: u16,
    /// Seed JSON: long_lived_token, users, contacts (with optional leads), oauth_clients.
    #[arg(long)]
    seed: Option<PathBuf>,
    /// Requests allowed in any sliding one-second window.
    #[arg(long, default_value_t = 7)]
    rps: u32,
    /// Keep the account's data in this JSON file (loaded at start, rewritten after changes).
    #[arg(long)]
    state: Option<PathBuf>,
    /// Lifetime of OAuth access tokens, in seconds.
    #[arg(long, default_value_t = 86_400)]
    access_token_ttl: u64,
    /// Rate-limit violations within 60 s that block the account (0: never).
    #[arg(long, default_value_t = 10)]
    block_after: u32,
    /// Delay added to every API response, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Fraction (0..1) of API requests answered 503.
    #[arg(long, default_value_t = 0.0)]
    error_rate: f64,
    /// Log warnings only (default: one line per notable event).
    #[arg(long)]
    quiet: bool,
}

pub fn run(args: &Args) -> Result<()> {
    let default_level = if args.quiet { "warn" } else { "info" };
    crate::init_logging(default_level);
    if !(0.0..=1.0).contains(&args.error_rate) {
        bail!("--error-rate: {} is not between 0 and 1", args.error_rate);
    }
    let seed = match &args.seed {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("--seed {}", path.display()))?;
            Seed::from_json_str(&text).map_err(|e| anyhow!("--seed {}: {e}", path.display()))?
        }
        None => Seed::default(),
    };
    let config = SandboxConfig {
        rps: args.rps,
        block_after: args.block_after,
        access_token_ttl: Duration::from_secs(args.access_token_ttl),
        seed,
        state_file: args.state.clone(),
        faults: Faults {
            latency_ms: args.latency_ms,
            error_rate: args.error_rate,
            ..Faults::default()
        },
    };
    let runtime = crate::runtime()?;
    runtime.block_on(async move {
        let listener = crate::listen_on_loopback(args.port).await?;
        let sandbox = callbridge_amocrm_sandbox::start(listener, config)
            .await
            .map_err(|e| anyhow!("{e}"))?;
        // Scripts wait for this line to know the sandbox is up and where.
        println!("amoCRM sandbox listening on {}", sandbox.base_url());
        std::io::stdout().flush()?;
        shutdown_signal().await;
        tracing::info!("amoCRM sandbox: stopping");
        sandbox.shutdown().await;
        Ok(())
    })
}
