//! The `callbridge` binary: wires the crates together behind subcommands. No rules live here.

/// mimalloc instead of glibc's malloc: under sustained ingest with planning behind it, glibc's
/// allocator (its free-list consolidation above all) took about 17% of the process's samples;
/// with mimalloc a 60 s `bench-ingest` runs 15,400-16,900 events/s instead of 12,100-13,800, for
/// about a third more RSS (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod admin;
mod backup;
mod check_config;
mod check_scenarios;
mod generate;
mod logging;
mod pipeline;
mod probe;
mod reconcile;
mod serve;
mod simulate;

// The stand-ins and the tools built on them; left out of production builds
// (`--no-default-features`).
#[cfg(feature = "sandboxes")]
mod bench_delivery;
#[cfg(feature = "sandboxes")]
mod bench_ingest;
#[cfg(feature = "sandboxes")]
mod bench_journal;
#[cfg(feature = "sandboxes")]
mod bench_scale_out;
#[cfg(feature = "sandboxes")]
mod bench_tenants;
#[cfg(feature = "sandboxes")]
mod crm_reader;
#[cfg(feature = "sandboxes")]
mod demo;
#[cfg(feature = "sandboxes")]
mod sandbox_amocrm;
#[cfg(feature = "sandboxes")]
mod sandbox_mango;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "callbridge",
    version,
    about = "Mango Office VPBX to amoCRM call integration"
)]
#[command(after_help = "Environment:\n  \
    CALLBRIDGE_LOG         what to log, a tracing filter (info, warn, callbridge_server=debug,...)\n  \
    CALLBRIDGE_LOG_FORMAT  text (coloured only on a terminal) or json, one object a line\n  \
    CALLBRIDGE_<KEY>       any configuration key, over the file: CALLBRIDGE_ADMIN_TOKEN,\n                         \
CALLBRIDGE_DATABASE_URL, CALLBRIDGE_LISTEN, CALLBRIDGE_DATA_DIR, CALLBRIDGE_SECRET_KEY,\n                         \
CALLBRIDGE_PREVIOUS_SECRET_KEYS, CALLBRIDGE_PUBLIC_URL, ...\n\
Every key, variable, route and metric: docs/configuration.md")]
struct Cli {
    /// Log lines as `text` or `json` (one object a line, for log shippers); also
    /// CALLBRIDGE_LOG_FORMAT or `log_format` in the configuration file.
    #[arg(long, global = true, value_name = "FORMAT")]
    log_format: Option<callbridge_server::config::LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// What-if: run the core over recorded PBX events with the given settings and print, as JSON,
    /// what would be written to the CRM and why. Nothing is sent anywhere.
    Simulate(simulate::Args),
    /// Write realistic, deterministic PBX traffic (JSON Lines, as `simulate` reads) and, with
    /// --settings-out, the settings of the generated office.
    Generate(generate::Args),
    /// Run the service: Mango webhooks in, plans and their CRM work stored, admin API and card
    /// stream served.
    Serve(serve::Args),
    /// Run every scenario folder of DIR (events.jsonl, settings.toml, expected.json) through
    /// `simulate` and check the output against expected.json: PASS or FAIL a folder, exit 1 on
    /// any failure.
    CheckScenarios(check_scenarios::Args),
    /// Ask a running service's /readyz; exit 0 when it is ready (container health checks).
    Probe(probe::Args),
    /// Check a configuration file (and the CALLBRIDGE_* variables) as `serve` would, and print
    /// what the service would run with, secrets not shown. Exit 1 naming the key at fault.
    CheckConfig(serve::Args),
    /// Back the SQLite store up to a new file while the service runs (an online backup, never a
    /// file copy of the live database). PostgreSQL: use pg_dump.
    Backup(backup::Args),
    /// Ask a running service to reconcile a tenant's period from Mango's call statistics:
    /// calls whose webhooks never arrived are recovered and written to the CRM, once.
    Reconcile(reconcile::Args),
    /// The administrator's chores on a service's store: `admin set-password`.
    #[command(subcommand)]
    Admin(admin::Command),
    /// Load benchmark of the webhook ingest path: signed webhooks over loopback into the service,
    /// reporting accepted events per second and acknowledgement latency.
    #[cfg(feature = "sandboxes")]
    BenchIngest(bench_ingest::Args),
    /// Delivery benchmark: completed calls of known clients written to an amoCRM sandbox at its
    /// rate limit; reports calls logged per second and CRM requests per call.
    #[cfg(feature = "sandboxes")]
    BenchDelivery(bench_delivery::Args),
    /// Scale-out benchmark: CRM delivery throughput with 1, 2, 3... instances on one PostgreSQL,
    /// many tenants on several sandbox accounts; reports calls per second and CPU per call.
    #[cfg(feature = "sandboxes")]
    BenchScaleOut(bench_scale_out::Args),
    /// Call journal benchmark: many generated entries stored, then the journal's first page,
    /// number searches and filters timed.
    #[cfg(feature = "sandboxes")]
    BenchJournal(bench_journal::Args),
    /// Many tenants: N tenants created through the admin API, each connected to one of a few
    /// amoCRM sandbox accounts; reports creation time, RSS, idle CPU, CPU per event with the
    /// traffic spread over all of them against one tenant, shutdown and restart times.
    #[cfg(feature = "sandboxes")]
    BenchTenants(bench_tenants::Args),
    /// See the whole product work on this machine: the service, an amoCRM sandbox and a Mango
    /// emulator playing realistic calls, then a report of what landed in the CRM and why.
    #[cfg(feature = "sandboxes")]
    Demo(demo::Args),
    /// Stand-ins for the outside world, for tests, benchmarks and the demo.
    #[cfg(feature = "sandboxes")]
    #[command(subcommand)]
    Sandbox(Sandbox),
}

#[cfg(feature = "sandboxes")]
#[derive(Subcommand)]
enum Sandbox {
    /// A stand-in amoCRM API v4 server.
    Amocrm(sandbox_amocrm::Args),
    /// A Mango Office emulator: the VPBX API and signed webhook traffic.
    Mango(Box<sandbox_mango::Args>),
}

/// Logs to stderr at `default_level`, unless `CALLBRIDGE_LOG` (a tracing filter) says otherwise,
/// in the format `--log-format` or `CALLBRIDGE_LOG_FORMAT` chose. (The sandboxes' own logging.)
#[cfg(feature = "sandboxes")]
pub(crate) fn init_logging(default_level: &str) {
    logging::init(default_level, logging::chosen_format(None));
}

/// The multi-threaded runtime a subcommand's async work runs on.
pub(crate) fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

/// A listener on `127.0.0.1:port` (0: a port the system picks), for the stand-ins, which
/// never listen beyond this machine. The error names the `--port` flag.
#[cfg(feature = "sandboxes")]
pub(crate) async fn listen_on_loopback(port: u16) -> anyhow::Result<tokio::net::TcpListener> {
    use anyhow::Context;
    tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("--port {port}: cannot listen on 127.0.0.1"))
}

/// Ctrl-C, or SIGTERM on Unix: how every long-running subcommand is asked to stop.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "no SIGTERM handler; stopping on Ctrl-C only");
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::set_command_line_format(cli.log_format);
    let result = match cli.command {
        Command::Simulate(args) => simulate::run(&args),
        Command::Generate(args) => generate::run(&args),
        Command::Serve(args) => serve::run(&args),
        Command::CheckScenarios(args) => check_scenarios::run(&args),
        Command::Probe(args) => probe::run(&args),
        Command::CheckConfig(args) => check_config::run(&args),
        Command::Backup(args) => backup::run(&args),
        Command::Admin(command) => admin::run(&command),
        Command::Reconcile(args) => reconcile::run(&args),
        #[cfg(feature = "sandboxes")]
        Command::BenchIngest(args) => bench_ingest::run(&args),
        #[cfg(feature = "sandboxes")]
        Command::BenchDelivery(args) => bench_delivery::run(&args),
        #[cfg(feature = "sandboxes")]
        Command::BenchScaleOut(args) => bench_scale_out::run(&args),
        #[cfg(feature = "sandboxes")]
        Command::BenchJournal(args) => bench_journal::run(&args),
        #[cfg(feature = "sandboxes")]
        Command::BenchTenants(args) => bench_tenants::run(&args),
        #[cfg(feature = "sandboxes")]
        Command::Demo(args) => demo::run(&args),
        #[cfg(feature = "sandboxes")]
        Command::Sandbox(Sandbox::Amocrm(args)) => sandbox_amocrm::run(&args),
        #[cfg(feature = "sandboxes")]
        Command::Sandbox(Sandbox::Mango(args)) => sandbox_mango::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<admin::Refused>() => {
            // Input refused with its reason, as clap's usage errors: exit code 2.
            eprintln!("callbridge: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            // The contract: one line on stderr naming the file, line or key at fault.
            let line = format!("{e:#}").replace('\n', " ");
            eprintln!("callbridge: {line}");
            ExitCode::FAILURE
        }
    }
}
