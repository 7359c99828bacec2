//! `callbridge serve --config FILE`: the service. Wiring only: configuration, logging, signals.

use crate::shutdown_signal;
use anyhow::{anyhow, Result};
use callbridge_server::config::Config;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// The configuration file (TOML); `CALLBRIDGE_*` environment variables override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

pub fn run(args: &Args) -> Result<()> {
    let (config, tenants) = Config::load(args.config.as_deref()).map_err(|e| anyhow!("{e}"))?;
    crate::logging::init("info", crate::logging::chosen_format(config.log_format));
    let runtime = crate::runtime()?;
    let served = runtime.block_on(async move {
        let running = callbridge_server::start(config, tenants)
            .await
            .map_err(|e| anyhow!("{e}"))?;
        // SIGTERM is caught from here on, before the line below tells anyone the service is up
        // (a supervisor stopping it at once still gets a clean shutdown).
        #[cfg(unix)]
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let stop = running.shutdown_handle();
        tokio::spawn(async move {
            #[cfg(unix)]
            if let Some(term) = term.as_mut() {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            } else {
                shutdown_signal().await;
            }
            #[cfg(not(unix))]
            shutdown_signal().await;
            tracing::info!("shutting down: finishing requests in flight");
            let _ = stop.send(true);
        });
        // Scripts and tests read this line to find the port.
        println!("callbridge: listening on http://{}", running.addr);
        // One summary line, however many tenants: an integrator's thousands of tenants would
        // otherwise bury the start in lines. Each tenant's webhook URL is in the web UI, and
        // in the log at debug level.
        let tenants = running.state.tenants.read().await;
        let summary = callbridge_server::crm_clients::tenant_summary(tenants.values());
        println!("callbridge: {summary}");
        tracing::info!("{summary}");
        for tenant in tenants.values() {
            tracing::debug!(
                tenant = %tenant.row.id,
                "webhook URL {}/mango/{}/",
                running.state.public_url.trim_end_matches('/'),
                tenant.row.id
            );
        }
        drop(tenants);
        println!(
            "callbridge: web UI at {}/",
            running.state.public_url.trim_end_matches('/')
        );
        if let Some(password) = &running.first_admin_password {
            // Printed here once, never logged: the database keeps only its hash.
            println!(
                "callbridge: no admin password was set; this one was made for you: {}",
                secrecy::ExposeSecret::expose_secret(password)
            );
            println!("callbridge: sign in with it, or set your own: callbridge admin set-password");
        }
        // Loud at start: a tenant whose calls cannot reach the CRM, or whose webhooks are refused.
        for warning in callbridge_server::warnings::tenant_warnings(&running.state).await {
            tracing::warn!("{warning}");
        }
        running.wait().await;
        Ok(())
    });
    // What `wait` abandoned at the shutdown bound may still hold a blocking thread (a store
    // call); the process does not wait for it, the store's transactions keep it consistent.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    served
}
