//! `callbridge backup --to FILE`: an online backup of the SQLite store, safe while `serve` runs
//! (SQLite's `VACUUM INTO`, never a file copy of a live WAL database). PostgreSQL is refused:
//! pg_dump is its backup tool.

use crate::admin::{store_place, StoreArgs};
use anyhow::{anyhow, Result};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// The backup file to write; it must not exist yet.
    #[arg(long, value_name = "FILE")]
    to: PathBuf,
    #[command(flatten)]
    store: StoreArgs,
}

pub fn run(args: &Args) -> Result<()> {
    let place = store_place(&args.store)?;
    if place.database_url.is_some() {
        return Err(anyhow!(
            "the store is PostgreSQL: back it up with pg_dump (pg_dump --format=custom \
             --file=callbridge.dump \"$DATABASE_URL\"; restore with pg_restore), see docs/deploy.md"
        ));
    }
    let runtime = crate::runtime()?;
    let report = runtime
        .block_on(callbridge_store::backup_sqlite(&place.data_dir, &args.to))
        .map_err(|e| anyhow!("{e}"))?;
    println!(
        "callbridge: backed up {} to {} ({} bytes, schema version {})",
        place.data_dir.join("callbridge.db").display(),
        report.path.display(),
        report.bytes,
        report.schema_version
    );
    let key = place.data_dir.join("secret.key");
    if key.exists() {
        println!(
            "callbridge: the secrets in it are sealed with {}: keep a copy of that key too (not \
             beside the backup), or they cannot be read after a restore",
            key.display()
        );
    }
    Ok(())
}
