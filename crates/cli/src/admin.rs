//! `callbridge admin …`: the administrator's chores on a service's store.
//!
//! `admin set-password` sets the web UI's password: read from standard input (asked twice,
//! without echo, at a terminal), refused with the reason when weak, stored as an argon2 hash.
//! Every session ends with it. The store is found as `serve` finds it: `--config FILE` (and the
//! `CALLBRIDGE_*` environment), or `--data-dir DIR` / `--database-url URL`.
//!
//! On SQLite it works while `serve` runs: the data folder's lock keeps a second *service* out
//! (two processors would fold one event log), but this is one short transaction, which SQLite
//! serialises between processes by itself, and the running service reads the password and the
//! sessions from the database at every sign-in and request, so the change holds at once. When
//! no service runs, the lock is taken for the write, so none starts in the middle of it.

use anyhow::{anyhow, Context, Result};
use callbridge_server::config::Config;
use callbridge_store::{DataDirLock, Store, StoreError};
use secrecy::{ExposeSecret, SecretString};
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Set the web UI's admin password (read from standard input; asked twice at a terminal).
    /// Everyone signed in is signed out.
    SetPassword(StoreArgs),
}

/// Where the service's store is.
#[derive(clap::Args)]
pub struct StoreArgs {
    /// The service's configuration file (its data_dir or database_url); `CALLBRIDGE_*`
    /// environment variables override it, as for `serve`.
    #[arg(long, conflicts_with_all = ["data_dir", "database_url"])]
    config: Option<PathBuf>,
    /// The service's SQLite data folder (default: CALLBRIDGE_DATA_DIR, else ./data).
    #[arg(long, conflicts_with = "database_url")]
    data_dir: Option<PathBuf>,
    /// The service's PostgreSQL URL (default: CALLBRIDGE_DATABASE_URL).
    #[arg(long)]
    database_url: Option<String>,
}

/// Input refused (a weak password, two entries that differ, nothing given): exit code 2.
#[derive(Debug)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

pub fn run(command: &Command) -> Result<()> {
    match command {
        Command::SetPassword(args) => set_password(args),
    }
}

/// Where the store is: the database URL (PostgreSQL) or the SQLite folder.
pub(crate) struct StorePlace {
    pub database_url: Option<SecretString>,
    pub data_dir: PathBuf,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

pub(crate) fn store_place(args: &StoreArgs) -> Result<StorePlace> {
    if let Some(file) = &args.config {
        let (config, _) = Config::load(Some(file)).map_err(|e| anyhow!("{e}"))?;
        return Ok(StorePlace {
            database_url: config.database_url,
            data_dir: config.data_dir,
        });
    }
    if let Some(url) = &args.database_url {
        return Ok(StorePlace {
            database_url: Some(SecretString::from(url.clone())),
            data_dir: PathBuf::from("./data"),
        });
    }
    if let Some(dir) = &args.data_dir {
        return Ok(StorePlace {
            database_url: None,
            data_dir: dir.clone(),
        });
    }
    Ok(StorePlace {
        database_url: env("CALLBRIDGE_DATABASE_URL").map(SecretString::from),
        data_dir: env("CALLBRIDGE_DATA_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("./data")),
    })
}

/// The password from standard input: asked twice without echo at a terminal, else its first
/// line (a script pipes it in).
fn read_password() -> Result<SecretString> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("New admin password: ")
            .context("reading the password at the terminal")?;
        let again = rpassword::prompt_password("The same password again: ")
            .context("reading the password at the terminal")?;
        if first != again {
            return Err(Refused("the two passwords differ; nothing was changed".into()).into());
        }
        return Ok(SecretString::from(first));
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let password = line.trim_end_matches(['\n', '\r']).to_string();
    if password.is_empty() {
        return Err(Refused(
            "no password on standard input (give it as one line, or run at a terminal to be asked)"
                .into(),
        )
        .into());
    }
    Ok(SecretString::from(password))
}

fn set_password(args: &StoreArgs) -> Result<()> {
    let place = store_place(args)?;
    let password = read_password()?;
    callbridge_server::ui::password::check_strength(password.expose_secret())
        .map_err(|weak| Refused(format!("refused: {weak}; nothing was changed")))?;
    let hash = callbridge_server::ui::password::hash(password.expose_secret())
        .map_err(|e| anyhow!("hashing the password: {e}"))?;
    drop(password);
    // SQLite: only an existing database (a mistyped folder would get a new, unused one), and
    // the lock when no service holds it (see the module's note).
    let mut service_running = None;
    let _lock = match &place.database_url {
        Some(_) => None,
        None => {
            let db = place.data_dir.join("callbridge.db");
            if !db.exists() {
                return Err(anyhow!(
                    "{}: no callbridge database here; give the data folder of the service \
                     (--data-dir, or --config with its file), or start `callbridge serve` once first",
                    place.data_dir.display()
                ));
            }
            match DataDirLock::acquire(&place.data_dir) {
                Ok(lock) => Some(lock),
                Err(StoreError::Locked { holder, .. }) => {
                    service_running = Some(holder);
                    None
                }
                Err(e) => return Err(anyhow!("{e}")),
            }
        }
    };
    let runtime = crate::runtime()?;
    runtime.block_on(async {
        let url = place.database_url.as_ref().map(|u| u.expose_secret());
        let store = Store::open(url, &place.data_dir)
            .await
            .map_err(|e| anyhow!("opening the store: {e}"))?;
        store
            .set_admin_password_hash(&hash, callbridge_server::state::now_ms())
            .await
            .map_err(|e| anyhow!("storing the password: {e}"))?;
        anyhow::Ok(())
    })?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "callbridge: admin password set; everyone signed in was signed out"
    )?;
    if let Some(holder) = service_running {
        writeln!(
            out,
            "callbridge: the running service ({holder}) uses the new password from now on"
        )?;
    }
    Ok(())
}
