//! Start-up configuration: defaults, then the TOML file, then `CALLBRIDGE_*` environment
//! variables (`CALLBRIDGE_ADMIN_TOKEN`, `CALLBRIDGE_DATABASE_URL`, `CALLBRIDGE_LISTEN`, ...).
//! Relative paths in the file are relative to the file.

use crate::state::redact_crm;
use crate::tenant_id::TenantId;
use callbridge_core::ValidSettings;
use figment::providers::{Env, Format, Toml};
use figment::Figment;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: {message}")]
    Invalid { file: String, message: String },
}

fn invalid(file: &Path, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        file: file.display().to_string(),
        message: message.into(),
    }
}

/// The service's settings. Every secret in it (the admin token, a database URL with its password,
/// the secret keys, the tenants' Mango keys and salts, their CRM secrets) is a [`SecretString`] or
/// redacted by hand, so `{:?}` of a configuration never shows one.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_listen")]
    pub listen: String,
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// `postgres://...` to use PostgreSQL; unset: SQLite in `data_dir`.
    #[serde(default)]
    pub database_url: Option<SecretString>,
    /// `Authorization: Bearer <admin_token>` on `/api/v1/...`.
    pub admin_token: SecretString,
    /// The address Mango reaches this service at, to show the webhook URLs.
    #[serde(default)]
    pub public_url: Option<String>,
    /// Largest webhook body accepted, in bytes.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// How long a webhook's body may take to arrive, in milliseconds; a slower one gets 408.
    #[serde(default = "default_body_timeout")]
    pub body_timeout_ms: u64,
    /// How long a request head may take to arrive, in milliseconds (also how long a kept-alive
    /// connection may wait for its next request); a slower connection is closed.
    #[serde(default = "default_header_timeout")]
    pub header_timeout_ms: u64,
    /// A connection on which no byte moves either way for this long is closed, in milliseconds.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_ms: u64,
    /// At most this many client connections at once; further ones wait in the listen backlog.
    /// Lowered at start-up to fit the process's descriptor limit.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    #[serde(default)]
    pub processing: Processing,
    /// Reconciliation from Mango's call statistics (`reconcile.rs`).
    #[serde(default)]
    pub reconcile: Reconcile,
    /// The Mango VPBX API the employee directory is loaded from.
    #[serde(default = "default_mango_api_url")]
    pub mango_api_url: String,
    /// How often each tenant's employee directory is reloaded; 0 turns loading off.
    #[serde(default = "default_directory_refresh")]
    pub directory_refresh_seconds: u64,
    /// After SIGTERM the process exits within this many seconds, whatever is still running
    /// (CRM work left is pending for the next start).
    #[serde(default = "default_shutdown_timeout")]
    pub shutdown_timeout_seconds: u64,
    /// The key secrets at rest are encrypted with (32 bytes, hex or base64); best given as
    /// `CALLBRIDGE_SECRET_KEY`. See `secret_key.rs` for the order and the first start.
    #[serde(default)]
    pub secret_key: Option<SecretString>,
    /// A file holding the secret key. Unset: `secret.key` in `data_dir`, made at first start.
    #[serde(default)]
    pub secret_key_file: Option<PathBuf>,
    /// Keys secrets may still be encrypted with, comma-separated, while rotating
    /// (`CALLBRIDGE_PREVIOUS_SECRET_KEYS`).
    #[serde(default)]
    pub previous_secret_keys: Option<SecretString>,
    /// How long a recording link in a CRM call note plays, in days (1 to 3650).
    #[serde(default = "default_recording_link_days")]
    pub recording_link_days: u64,
    /// How many of the newest calls the settings window's preview replays under the settings
    /// being edited (rule S3), 1 to 5000.
    #[serde(default = "default_preview_entries")]
    pub preview_entries: i64,
    #[serde(default)]
    pub tenants: Vec<TenantConfig>,
    /// Lets `amocrm.base_url` name any http(s) host, not only the https origin of an amoCRM or
    /// Kommo account: for sandboxes and tests only (the account's tokens go to that host).
    #[serde(default)]
    pub allow_insecure_crm_hosts: bool,
    /// How the service logs: `text` (the default; coloured only on a terminal) or `json` (one
    /// object a line, for log shippers). `--log-format` on the command line wins over it.
    #[serde(default)]
    pub log_format: Option<LogFormat>,
    /// The file this configuration was read from (not a key of it): named by the web UI on the
    /// pages of the tenants the file defines.
    #[serde(skip)]
    pub file: Option<PathBuf>,
}

/// The shape of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err("must be text or json".into()),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Processing {
    /// A4: an entry whose legs are all down completes after this much silence.
    pub grace_seconds: i64,
    /// A completed entry waits this long for out-of-order stragglers before it is planned.
    pub settle_seconds: i64,
    /// An entry whose summary arrived, every leg hung up and every recording finished waits
    /// for nothing: it is planned after this much quiet instead of the whole settle window.
    /// At `settle_seconds` or above, every entry waits the whole window.
    pub settle_complete_ms: u64,
    /// How often the processor looks for new events when not woken by a webhook.
    pub tick_ms: u64,
    /// A4a: an entry with no summary and a leg never hung up is given up after this many hours
    /// without an event, and planned with what is known. At least 1.
    pub abandon_after_hours: i64,
    /// Tests only: the abandonment horizon in milliseconds, instead of `abandon_after_hours`.
    #[doc(hidden)]
    pub abandon_after_ms: Option<u64>,
}

impl Default for Processing {
    fn default() -> Self {
        Processing {
            grace_seconds: 120,
            settle_seconds: 5,
            settle_complete_ms: 300,
            tick_ms: 250,
            abandon_after_hours: 24,
            abandon_after_ms: None,
        }
    }
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    pub id: String,
    pub mango_api_key: SecretString,
    pub mango_api_salt: SecretString,
    /// A settings file in the `simulate` schema.
    #[serde(default)]
    pub settings: Option<PathBuf>,
    /// The CRM connection, as the CRM adapter reads it.
    #[serde(default)]
    pub amocrm: Option<serde_json::Value>,
    /// This tenant's hour (UTC, 0-23) of the daily reconciliation, instead of
    /// `reconcile.daily_hour_utc`.
    #[serde(default)]
    pub reconcile_hour_utc: Option<u8>,
}

/// A tenant from the file, with its settings read and validated.
#[derive(Clone)]
pub struct LoadedTenant {
    pub id: TenantId,
    pub mango_api_key: SecretString,
    pub mango_api_salt: SecretString,
    pub settings_toml: String,
    pub amocrm: serde_json::Value,
}

// By hand: the CRM section holds tokens and client secrets in plain JSON.
impl std::fmt::Debug for TenantConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantConfig")
            .field("id", &self.id)
            .field("mango_api_key", &self.mango_api_key)
            .field("mango_api_salt", &self.mango_api_salt)
            .field("settings", &self.settings)
            .field("amocrm", &self.amocrm.as_ref().map(redact_crm))
            .finish()
    }
}

impl std::fmt::Debug for LoadedTenant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedTenant")
            .field("id", &self.id)
            .field("mango_api_key", &self.mango_api_key)
            .field("mango_api_salt", &self.mango_api_salt)
            .field("settings_toml", &self.settings_toml)
            .field("amocrm", &redact_crm(&self.amocrm))
            .finish()
    }
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("./data")
}
fn default_mango_api_url() -> String {
    "https://app.mango-office.ru/vpbx/".into()
}
fn default_directory_refresh() -> u64 {
    3600
}
fn default_shutdown_timeout() -> u64 {
    10
}
fn default_recording_link_days() -> u64 {
    crate::recordings::DEFAULT_LINK_DAYS
}
fn default_preview_entries() -> i64 {
    crate::ui::settings::PREVIEW_ENTRIES
}
fn default_max_body() -> usize {
    64 * 1024
}
fn default_body_timeout() -> u64 {
    30_000
}
fn default_header_timeout() -> u64 {
    10_000
}
fn default_idle_timeout() -> u64 {
    60_000
}
fn default_max_connections() -> usize {
    1024
}

impl Config {
    /// Reads the file (if any) and the environment, and checks the result.
    pub fn load(file: Option<&Path>) -> Result<(Config, Vec<LoadedTenant>), ConfigError> {
        let mut figment = Figment::new();
        let shown = file
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("(environment)"));
        if let Some(f) = file {
            if !f.exists() {
                return Err(invalid(f, "no such file"));
            }
            figment = figment.merge(Toml::file(f));
        }
        // Not config keys: the log filter, and the variables of the test suite and its tools
        // (every CALLBRIDGE_TEST_*, the browser and Python the tests use).
        figment = figment.merge(
            Env::prefixed("CALLBRIDGE_")
                .filter(|key| !key.as_str().to_ascii_lowercase().starts_with("test_"))
                .ignore(&["LOG", "CHROMIUM", "CHROMEDRIVER", "PYTHON"]),
        );
        let mut config: Config = figment
            .extract()
            .map_err(|e| invalid(&shown, describe_extract_error(e)))?;
        config.file = file.map(Path::to_path_buf);
        let base = file
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_default();
        if config.data_dir.is_relative() {
            config.data_dir = base.join(&config.data_dir);
        }
        if let Some(file) = config.secret_key_file.as_mut().filter(|f| f.is_relative()) {
            *file = base.join(&*file);
        }
        if let Err(why) = check_admin_token(config.admin_token.expose_secret()) {
            return Err(invalid(&shown, format!("admin_token: {why}")));
        }
        if config.max_body_bytes < 1024 {
            return Err(invalid(&shown, "max_body_bytes: must be at least 1024"));
        }
        within(
            &shown,
            "body_timeout_ms",
            config.body_timeout_ms,
            100..=600_000,
        )?;
        within(
            &shown,
            "recording_link_days",
            config.recording_link_days,
            1..=3650,
        )?;
        within(&shown, "preview_entries", config.preview_entries, 1..=5000)?;
        within(
            &shown,
            "shutdown_timeout_seconds",
            config.shutdown_timeout_seconds,
            1..=600,
        )?;
        if config.processing.abandon_after_hours < 1 {
            return Err(invalid(
                &shown,
                "processing.abandon_after_hours: must be at least 1 (hours)",
            ));
        }
        if config.processing.abandon_after_ms == Some(0) {
            return Err(invalid(
                &shown,
                "processing.abandon_after_ms: must be at least 1",
            ));
        }
        config.check_connection_limits(&shown)?;
        config.processing.check(&shown)?;
        config.reconcile.check(&shown)?;
        let mut tenants = Vec::new();
        for (i, t) in config.tenants.iter().enumerate() {
            let key = format!("tenants[{i}]");
            let id =
                TenantId::parse(&t.id).map_err(|m| invalid(&shown, format!("{key}.id: {m}")))?;
            if let Some(hour) = t.reconcile_hour_utc {
                within(&shown, &format!("{key}.reconcile_hour_utc"), hour, 0..=23)?;
            }
            let (api_key, salt) = (
                t.mango_api_key.expose_secret(),
                t.mango_api_salt.expose_secret(),
            );
            if api_key.trim().is_empty() || salt.trim().is_empty() {
                return Err(invalid(
                    &shown,
                    format!("{key}: mango_api_key and mango_api_salt must be set"),
                ));
            }
            validate_mango_salt(salt)
                .map_err(|m| invalid(&shown, format!("{key}.mango_api_salt: {m}")))?;
            if tenants
                .iter()
                .any(|o: &LoadedTenant| o.id == id || o.mango_api_key.expose_secret() == api_key)
            {
                return Err(invalid(
                    &shown,
                    format!("{key}: id or mango_api_key used twice"),
                ));
            }
            let settings_toml = match &t.settings {
                Some(p) => {
                    let path = if p.is_relative() {
                        base.join(p)
                    } else {
                        p.clone()
                    };
                    // Only a regular file: a device or a pipe named by mistake (/dev/zero)
                    // would be read without end.
                    if std::fs::metadata(&path).is_ok_and(|m| !m.is_file()) {
                        return Err(invalid(
                            &path,
                            format!("{key}.settings: not a regular file"),
                        ));
                    }
                    std::fs::read_to_string(&path)
                        .map_err(|e| invalid(&path, format!("cannot read settings: {e}")))?
                }
                None => String::new(),
            };
            ValidSettings::parse_toml(&settings_toml)
                .map_err(|e| invalid(&shown, format!("{key}.settings: {e}")))?;
            let amocrm = t.amocrm.clone().unwrap_or(serde_json::Value::Null);
            // Refused now rather than warned about at the first delivery. The text fields are
            // checked first so that a wrong type is named by its key (serde's message would
            // name neither the key nor hide the value).
            if let Some(section) = amocrm.as_object() {
                for field in [
                    "base_url",
                    "long_lived_token",
                    "client_id",
                    "client_secret",
                    "redirect_uri",
                ] {
                    if section.get(field).is_some_and(|v| !v.is_string()) {
                        return Err(invalid(
                            &shown,
                            format!("{key}.amocrm.{field}: expected a string"),
                        ));
                    }
                }
            }
            crate::crm::connection(&amocrm).map_err(|e| {
                invalid(&shown, format!("{key}.{}", without_values(&e.to_string())))
            })?;
            if let Some(amocrm) = &t.amocrm {
                crate::crm::check_base_url(amocrm, config.allow_insecure_crm_hosts)
                    .map_err(|e| invalid(&shown, format!("{key}.{e}")))?;
            }
            tenants.push(LoadedTenant {
                id,
                mango_api_key: t.mango_api_key.clone(),
                mango_api_salt: t.mango_api_salt.clone(),
                settings_toml,
                amocrm,
            });
        }
        Ok((config, tenants))
    }
}

/// Refuses a value outside `range`, naming the key and the bounds (never the value: some keys
/// hold secrets, and the bounds say what to write).
fn within<T: PartialOrd + std::fmt::Display>(
    shown: &Path,
    key: &str,
    value: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<(), ConfigError> {
    if range.contains(&value) {
        Ok(())
    } else {
        Err(invalid(
            shown,
            format!(
                "{key}: must be between {} and {}",
                range.start(),
                range.end()
            ),
        ))
    }
}

impl Config {
    /// The connection keys' bounds. The idle timeout starts at 20 s because the card stream's
    /// keep-alive comes every 15 s.
    fn check_connection_limits(&self, shown: &Path) -> Result<(), ConfigError> {
        within(
            shown,
            "header_timeout_ms",
            self.header_timeout_ms,
            100..=600_000,
        )?;
        within(
            shown,
            "idle_timeout_ms",
            self.idle_timeout_ms,
            20_000..=3_600_000,
        )?;
        within(shown, "max_connections", self.max_connections, 1..=65_536)?;
        Ok(())
    }
}

/// The shortest admin token accepted: `openssl rand -hex 32` makes 64 characters.
pub const ADMIN_TOKEN_MIN_CHARS: usize = 16;

/// Values that are in examples, tutorials and every guessing list: refused whatever their
/// length. Compared without case, spaces, dashes, dots or underscores, so `Change_Me-Please`
/// is `changemeplease`.
const WELL_KNOWN_TOKENS: &[&str] = &[
    "changemeplease",
    "changeme",
    "admin",
    "administrator",
    "adminadmin",
    "secret",
    "password",
    "passw0rd",
    "token",
    "admintoken",
    "secrettoken",
    "letmein",
    "qwerty",
    "default",
    "callbridge",
    "replacewithopensslrandhex32",
];

/// Why an admin token is weak; never with the token itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WeakAdminToken {
    #[error("too short ({0} characters; at least {ADMIN_TOKEN_MIN_CHARS}): make one with `openssl rand -hex 32`")]
    TooShort(usize),
    #[error("a well-known value (as in examples and guessing lists): make one with `openssl rand -hex 32`")]
    WellKnown,
    #[error("too few different characters ({0}): make one with `openssl rand -hex 32`")]
    Repetitive(usize),
}

/// The admin token opens the whole admin API, so a guessable one is refused at start-up: shorter
/// than [`ADMIN_TOKEN_MIN_CHARS`], a well-known value (also with a word such as `changeme` or
/// `password` in it), or made of fewer than 6 different characters (`aaaaaaaaaaaaaaaa`).
pub fn check_admin_token(token: &str) -> Result<(), WeakAdminToken> {
    let token = token.trim();
    let chars = token.chars().count();
    if chars < ADMIN_TOKEN_MIN_CHARS {
        return Err(WeakAdminToken::TooShort(chars));
    }
    let folded: String = token
        .chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect();
    let known_word = ["changeme", "password", "replacewith"]
        .iter()
        .any(|w| folded.contains(w));
    if known_word || WELL_KNOWN_TOKENS.contains(&folded.as_str()) {
        return Err(WeakAdminToken::WellKnown);
    }
    let distinct = token
        .chars()
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    if distinct < 6 {
        return Err(WeakAdminToken::Repetitive(distinct));
    }
    Ok(())
}

/// A tenant id that cannot appear in URLs.
/// Mango issues 32-character salts ("Ключ для создания подписи" on the API connection page).
pub const MANGO_SALT_MIN_CHARS: usize = 32;

/// Why a Mango API salt is refused; never with the salt itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSalt {
    #[error("must be at least {MANGO_SALT_MIN_CHARS} characters (Mango's salts are 32), got {0}")]
    TooShort(usize),
    #[error("must be at most {MANGO_SALT_MAX_CHARS} characters, got {0}")]
    TooLong(usize),
    #[error("must not contain spaces or control characters")]
    Whitespace,
}

/// The longest salt accepted.
pub const MANGO_SALT_MAX_CHARS: usize = 128;

/// A Mango API salt signs every webhook: a short one can be guessed, and with it webhooks forged.
/// At least Mango's own length, at most 128 characters, no spaces or control characters (a
/// pasted salt with a stray newline would fail every signature). The value is never echoed.
pub fn validate_mango_salt(salt: &str) -> Result<(), InvalidSalt> {
    let chars = salt.chars().count();
    if chars < MANGO_SALT_MIN_CHARS {
        return Err(InvalidSalt::TooShort(chars));
    }
    if chars > MANGO_SALT_MAX_CHARS {
        return Err(InvalidSalt::TooLong(chars));
    }
    if salt.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(InvalidSalt::Whitespace);
    }
    Ok(())
}

/// Reconciliation from Mango's call statistics: the daily run and how the statistics are read.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Reconcile {
    /// The hour (UTC, 0-23) at which each tenant's last `look_back_hours` are reconciled every
    /// day; unset: no daily run (on demand only). A tenant's `reconcile_hour_utc` wins.
    pub daily_hour_utc: Option<u8>,
    /// How far back the daily run looks, in hours (1 to 744, a month): a day plus an overlap,
    /// so a call that ended just after the previous run is not missed.
    pub look_back_hours: i64,
    /// How often `stats/result` is polled, in milliseconds. Mango allows once per 5 s; lower
    /// values are for tests against the emulator (100 to 60000).
    pub poll_ms: u64,
    /// How long to wait for the statistics to be ready before giving up, in seconds (1 to 3600).
    pub wait_seconds: u64,
}

impl Default for Reconcile {
    fn default() -> Self {
        Reconcile {
            daily_hour_utc: None,
            look_back_hours: 26,
            poll_ms: 5_000,
            wait_seconds: 600,
        }
    }
}

impl Reconcile {
    fn check(&self, shown: &Path) -> Result<(), ConfigError> {
        if let Some(hour) = self.daily_hour_utc {
            within(shown, "reconcile.daily_hour_utc", hour, 0..=23)?;
        }
        within(
            shown,
            "reconcile.look_back_hours",
            self.look_back_hours,
            1..=744,
        )?;
        within(shown, "reconcile.poll_ms", self.poll_ms, 100..=60_000)?;
        within(
            shown,
            "reconcile.wait_seconds",
            self.wait_seconds,
            1..=3_600,
        )?;
        Ok(())
    }
}

impl Processing {
    /// Negative or absurd periods are refused (a negative grace period completed every entry at
    /// once; a zero tick spun the processor).
    fn check(&self, shown: &Path) -> Result<(), ConfigError> {
        within(
            shown,
            "processing.grace_seconds",
            self.grace_seconds,
            0..=86_400,
        )?;
        within(
            shown,
            "processing.settle_seconds",
            self.settle_seconds,
            0..=3_600,
        )?;
        within(
            shown,
            "processing.settle_complete_ms",
            self.settle_complete_ms,
            0..=3_600_000,
        )?;
        within(shown, "processing.tick_ms", self.tick_ms, 10..=60_000)?;
        Ok(())
    }
}

/// A figment error as `key: problem`, one per fault, never with the value: the value may be a
/// secret (`admin_token`, `mango_api_salt`, a `database_url` with its password, ...), and
/// figment's own message quotes it. Keys are shown as written: `tenants[0].mango_api_key` in
/// the file, `CALLBRIDGE_ADMIN_TOKEN` in the environment.
fn describe_extract_error(error: figment::Error) -> String {
    use figment::error::Kind;
    let faults: Vec<String> = error
        .into_iter()
        .map(|e| {
            let from_env = e
                .metadata
                .as_ref()
                .is_some_and(|m| m.name.contains("environment"));
            let key = if from_env && !e.path.is_empty() {
                format!("CALLBRIDGE_{}", e.path.join("_").to_uppercase())
            } else {
                key_as_written(&e.path)
            };
            let problem = match &e.kind {
                Kind::InvalidType(actual, expected) | Kind::InvalidValue(actual, expected) => {
                    format!(
                        "expected {}, found {}",
                        plain_expected(expected),
                        kind_of(actual)
                    )
                }
                Kind::InvalidLength(n, expected) => format!("expected {expected}, found {n} items"),
                Kind::UnknownVariant(_, expected) => {
                    format!("unknown value (expected one of {})", expected.join(", "))
                }
                Kind::UnknownField(name, _) => {
                    // figment's path already ends with the unknown key.
                    // (An environment key is upper case: `CALLBRIDGE_FOO` for `foo`.)
                    let at = if key.is_empty()
                        || key.ends_with(name.as_str())
                        || (from_env && key.ends_with(&name.to_uppercase()))
                    {
                        key.clone()
                    } else {
                        format!("{key}.{name}")
                    };
                    return format!("{at}: unknown key");
                }
                Kind::MissingField(name) => {
                    let at = if key.is_empty() {
                        String::new()
                    } else {
                        format!("{key}.")
                    };
                    return format!("{at}{name}: missing");
                }
                Kind::DuplicateField(name) => return format!("{key}.{name}: given twice"),
                // Custom messages and the rest may quote the value: say only that it is wrong.
                _ => "invalid value".to_string(),
            };
            if key.is_empty() {
                problem
            } else {
                format!("{key}: {problem}")
            }
        })
        .collect();
    faults.join("; ")
}

/// `["tenants", "0", "id"]` as `tenants[0].id`.
fn key_as_written(path: &[String]) -> String {
    let mut key = String::new();
    for part in path {
        if !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) {
            key.push_str(&format!("[{part}]"));
        } else {
            if !key.is_empty() {
                key.push('.');
            }
            key.push_str(part);
        }
    }
    key
}

/// serde's name of the expected type in the words of a TOML file: `i64` is an integer,
/// `struct Processing` a table, `a sequence` an array.
fn plain_expected(expected: &str) -> String {
    let e = expected.trim();
    if e.starts_with("struct ") || e.starts_with("map") || e == "a map" {
        return "a table".into();
    }
    if e.contains("sequence") {
        return "an array".into();
    }
    let integer = [
        "i8", "i16", "i32", "i64", "i128", "isize", "u8", "u16", "u32", "u64", "u128", "usize",
    ];
    if integer.contains(&e) {
        return "an integer".into();
    }
    if e == "f32" || e == "f64" {
        return "a number".into();
    }
    e.to_string()
}

/// The kind of a value, without the value.
fn kind_of(actual: &figment::error::Actual) -> &'static str {
    use figment::error::Actual;
    match actual {
        Actual::Bool(_) => "a boolean",
        Actual::Unsigned(_) | Actual::Signed(_) => "an integer",
        Actual::Float(_) => "a float",
        Actual::Char(_) | Actual::Str(_) => "a string",
        Actual::Bytes(_) => "bytes",
        Actual::Unit | Actual::Option => "nothing",
        Actual::Seq => "an array",
        Actual::Map | Actual::NewtypeStruct => "a table",
        _ => "another kind of value",
    }
}

/// A CRM-section error with any value serde quoted in it (`invalid type: string "..."`) cut.
fn without_values(message: &str) -> String {
    match message
        .find("invalid type:")
        .or_else(|| message.find("invalid value:"))
    {
        Some(at) => {
            let expected = message[at..]
                .find("expected ")
                .map(|e| &message[at + e..])
                .unwrap_or("");
            format!("{}wrong type, {expected}", &message[..at])
        }
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every secret a configuration can hold, each unlike anything else in it, so a match in
    /// `{:?}` can only be that secret.
    const ADMIN_TOKEN: &str = "admin-4f8a1c93e07b";
    const DB_PASSWORD: &str = "pgpass-6d2b90e1";
    const SECRET_KEY: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
    const PREVIOUS_KEY: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";
    const MANGO_KEY: &str = "mangokey-8c41d7e2";
    const MANGO_SALT: &str = "mangosalt-3e9f5a17b2c8d6e04f1a7b3c";
    const CLIENT_SECRET: &str = "crmsecret-72d91b4e5a3f08c6";

    #[test]
    fn debug_of_a_config_shows_no_secret() {
        let dir =
            std::env::temp_dir().join(format!("callbridge-config-debug-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("callbridge.toml");
        std::fs::write(
            &file,
            format!(
                "admin_token = \"{ADMIN_TOKEN}\"\n\
                 database_url = \"postgres://callbridge:{DB_PASSWORD}@127.0.0.1/callbridge\"\n\
                 secret_key = \"{SECRET_KEY}\"\n\
                 previous_secret_keys = \"{PREVIOUS_KEY}\"\n\
                 [[tenants]]\nid = \"acme\"\nmango_api_key = \"{MANGO_KEY}\"\n\
                 mango_api_salt = \"{MANGO_SALT}\"\n\
                 [tenants.amocrm]\nbase_url = \"https://acme.amocrm.ru\"\nclient_id = \"id\"\n\
                 client_secret = \"{CLIENT_SECRET}\"\nredirect_uri = \"https://x/cb\"\n"
            ),
        )
        .unwrap();
        let loaded = Config::load(Some(&file));
        std::fs::remove_dir_all(&dir).unwrap();
        let (config, tenants) = loaded.unwrap();
        // The values are there to be used...
        assert_eq!(config.admin_token.expose_secret(), ADMIN_TOKEN);
        assert_eq!(tenants[0].mango_api_salt.expose_secret(), MANGO_SALT);
        // ...and never shown.
        let shown = format!("{config:?}\n{tenants:?}\n{config:#?}");
        for secret in [
            ADMIN_TOKEN,
            DB_PASSWORD,
            SECRET_KEY,
            PREVIOUS_KEY,
            MANGO_KEY,
            MANGO_SALT,
            CLIENT_SECRET,
        ] {
            assert!(!shown.contains(secret), "{secret} shown in {shown}");
        }
        // What is not secret still is.
        assert!(shown.contains("acme.amocrm.ru"), "{shown}");
    }
}
