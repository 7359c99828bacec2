//! Start-up configuration: defaults, then the TOML file, then `CALLBRIDGE_*` environment
//! variables (`CALLBRIDGE_ADMIN_TOKEN`, `CALLBRIDGE_DATABASE_URL`, `CALLBRIDGE_LISTEN`, ...).
//! Relative paths in the file are relative to the file.

use callbridge_core::ValidSettings;
use figment::providers::{Env, Format, Toml};
use figment::Figment;
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_listen")]
    pub listen: String,
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// `postgres://...` to use PostgreSQL; unset: SQLite in `data_dir`.
    #[serde(default)]
    pub database_url: Option<String>,
    /// `Authorization: Bearer <admin_token>` on `/api/v1/...`.
    pub admin_token: String,
    /// The address Mango reaches this service at, to show the webhook URLs.
    #[serde(default)]
    pub public_url: Option<String>,
    /// Largest webhook body accepted, in bytes.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// How long a webhook's body may take to arrive, in milliseconds; a slower one gets 408.
    #[serde(default = "default_body_timeout")]
    pub body_timeout_ms: u64,
    #[serde(default)]
    pub processing: Processing,
    /// The Mango VPBX API the employee directory is loaded from.
    #[serde(default = "default_mango_api_url")]
    pub mango_api_url: String,
    /// How often each tenant's employee directory is reloaded; 0 turns loading off.
    #[serde(default = "default_directory_refresh")]
    pub directory_refresh_seconds: u64,
    #[serde(default)]
    pub tenants: Vec<TenantConfig>,
    /// Lets `amocrm.base_url` name any http(s) host, not only the https origin of an amoCRM or
    /// Kommo account: for sandboxes and tests only (the account's tokens go to that host).
    #[serde(default)]
    pub allow_insecure_crm_hosts: bool,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Processing {
    /// A4: an entry whose legs are all down completes after this much silence.
    pub grace_seconds: i64,
    /// A completed entry waits this long for out-of-order stragglers before it is planned.
    pub settle_seconds: i64,
    /// How often the processor looks for new events when not woken by a webhook.
    pub tick_ms: u64,
}

impl Default for Processing {
    fn default() -> Self {
        Processing {
            grace_seconds: 120,
            settle_seconds: 5,
            tick_ms: 250,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    pub id: String,
    pub mango_api_key: String,
    pub mango_api_salt: String,
    /// A settings file in the `simulate` schema.
    #[serde(default)]
    pub settings: Option<PathBuf>,
    /// The CRM connection, as the CRM adapter reads it.
    #[serde(default)]
    pub amocrm: Option<serde_json::Value>,
}

/// A tenant from the file, with its settings read and validated.
#[derive(Debug, Clone)]
pub struct LoadedTenant {
    pub id: String,
    pub mango_api_key: String,
    pub mango_api_salt: String,
    pub settings_toml: String,
    pub amocrm: serde_json::Value,
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
fn default_max_body() -> usize {
    64 * 1024
}
fn default_body_timeout() -> u64 {
    30_000
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
        figment = figment.merge(Env::prefixed("CALLBRIDGE_").ignore(&["TEST_POSTGRES_URL", "LOG"]));
        let mut config: Config = figment
            .extract()
            .map_err(|e| invalid(&shown, one_line(&e.to_string())))?;
        let base = file
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_default();
        if config.data_dir.is_relative() {
            config.data_dir = base.join(&config.data_dir);
        }
        if config.admin_token.trim().len() < 8 {
            return Err(invalid(
                &shown,
                "admin_token: must be at least 8 characters",
            ));
        }
        if config.max_body_bytes < 1024 {
            return Err(invalid(&shown, "max_body_bytes: must be at least 1024"));
        }
        if !(100..=600_000).contains(&config.body_timeout_ms) {
            return Err(invalid(
                &shown,
                "body_timeout_ms: must be between 100 and 600000",
            ));
        }
        let mut tenants = Vec::new();
        for (i, t) in config.tenants.iter().enumerate() {
            let key = format!("tenants[{i}]");
            validate_tenant_id(&t.id).map_err(|m| invalid(&shown, format!("{key}.id: {m}")))?;
            if t.mango_api_key.trim().is_empty() || t.mango_api_salt.trim().is_empty() {
                return Err(invalid(
                    &shown,
                    format!("{key}: mango_api_key and mango_api_salt must be set"),
                ));
            }
            if tenants
                .iter()
                .any(|o: &LoadedTenant| o.id == t.id || o.mango_api_key == t.mango_api_key)
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
                    std::fs::read_to_string(&path)
                        .map_err(|e| invalid(&path, format!("cannot read settings: {e}")))?
                }
                None => String::new(),
            };
            ValidSettings::parse_toml(&settings_toml)
                .map_err(|e| invalid(&shown, format!("{key}.settings: {e}")))?;
            if let Some(amocrm) = &t.amocrm {
                crate::crm::check_base_url(amocrm, config.allow_insecure_crm_hosts)
                    .map_err(|e| invalid(&shown, format!("{key}.{e}")))?;
            }
            tenants.push(LoadedTenant {
                id: t.id.clone(),
                mango_api_key: t.mango_api_key.clone(),
                mango_api_salt: t.mango_api_salt.clone(),
                settings_toml,
                amocrm: t.amocrm.clone().unwrap_or(serde_json::Value::Null),
            });
        }
        Ok((config, tenants))
    }
}

/// Tenant ids appear in URLs: lower-case letters, digits, `-` and `_`, 1 to 64 characters.
pub fn validate_tenant_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{id:?} must be 1-64 characters of a-z, 0-9, '-' and '_'"
        ))
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
