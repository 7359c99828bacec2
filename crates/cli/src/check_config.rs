//! `callbridge check-config [--config FILE]`: loads the configuration exactly as `serve` would
//! (the file, then `CALLBRIDGE_*` variables), runs every start-up check that needs no database,
//! and prints what the service would run with. Secrets are shown only as "set": never a value,
//! not even a tail of one.

use anyhow::{anyhow, Result};
use callbridge_server::config::{Config, LoadedTenant};
use secrecy::ExposeSecret;
use std::fmt::Write as _;

/// Takes `serve`'s arguments: it checks what `serve` with them would run with.
pub fn run(args: &crate::serve::Args) -> Result<()> {
    let (config, tenants) = Config::load(args.config.as_deref()).map_err(|e| anyhow!("{e}"))?;
    print!("{}", describe(&config, &tenants));
    Ok(())
}

/// Shown in place of every secret.
const SET: &str = "(set, not shown)";

/// The effective configuration, one `key = value` a line, in the file's own key names.
pub fn describe(config: &Config, tenants: &[LoadedTenant]) -> String {
    let mut out = String::new();
    let source = config
        .file
        .as_ref()
        .map(|f| f.display().to_string())
        .unwrap_or_else(|| "the environment".into());
    let _ = writeln!(out, "callbridge: configuration OK ({source})");
    let mut line = |key: &str, value: String| {
        let _ = writeln!(out, "{key} = {value}");
    };
    line("listen", config.listen.clone());
    line(
        "public_url",
        config
            .public_url
            .clone()
            .unwrap_or_else(|| "(unset: http://<listen address>)".into()),
    );
    line(
        "store",
        match &config.database_url {
            Some(url) => format!("PostgreSQL {}", without_password(url.expose_secret())),
            None => format!("SQLite in {}", config.data_dir.display()),
        },
    );
    line("data_dir", config.data_dir.display().to_string());
    line("admin_token", SET.into());
    line(
        "secret_key",
        match (&config.secret_key, &config.secret_key_file) {
            (Some(_), _) => SET.into(),
            (None, Some(file)) => format!("from the file {}", file.display()),
            (None, None) => format!(
                "from {} (made at the first start)",
                config.data_dir.join("secret.key").display()
            ),
        },
    );
    if config.previous_secret_keys.is_some() {
        line("previous_secret_keys", SET.into());
    }
    line("max_body_bytes", config.max_body_bytes.to_string());
    line("body_timeout_ms", config.body_timeout_ms.to_string());
    line("header_timeout_ms", config.header_timeout_ms.to_string());
    line("idle_timeout_ms", config.idle_timeout_ms.to_string());
    line("max_connections", config.max_connections.to_string());
    line("mango_api_url", config.mango_api_url.clone());
    line(
        "directory_refresh_seconds",
        config.directory_refresh_seconds.to_string(),
    );
    line(
        "recording_link_days",
        config.recording_link_days.to_string(),
    );
    line("preview_entries", config.preview_entries.to_string());
    line(
        "shutdown_timeout_seconds",
        config.shutdown_timeout_seconds.to_string(),
    );
    line(
        "allow_insecure_crm_hosts",
        config.allow_insecure_crm_hosts.to_string(),
    );
    let p = &config.processing;
    line("processing.grace_seconds", p.grace_seconds.to_string());
    line("processing.settle_seconds", p.settle_seconds.to_string());
    line(
        "processing.settle_complete_ms",
        p.settle_complete_ms.to_string(),
    );
    line("processing.tick_ms", p.tick_ms.to_string());
    line(
        "processing.abandon_after_hours",
        p.abandon_after_hours.to_string(),
    );
    let r = &config.reconcile;
    line(
        "reconcile.daily_hour_utc",
        r.daily_hour_utc
            .map_or("(unset: on demand only)".into(), |h| h.to_string()),
    );
    line("reconcile.look_back_hours", r.look_back_hours.to_string());
    line("reconcile.poll_ms", r.poll_ms.to_string());
    line("reconcile.wait_seconds", r.wait_seconds.to_string());
    line("tenants", tenants.len().to_string());
    for (i, t) in tenants.iter().enumerate() {
        let key = format!("tenants[{i}]");
        line(&format!("{key}.id"), t.id.to_string());
        line(&format!("{key}.mango_api_key"), SET.into());
        line(&format!("{key}.mango_api_salt"), SET.into());
        let settings = config
            .tenants
            .get(i)
            .and_then(|c| c.settings.as_ref())
            .map(|s| s.display().to_string())
            .unwrap_or_else(|| "(defaults)".into());
        line(&format!("{key}.settings"), settings);
        line(&format!("{key}.amocrm"), describe_crm(&t.amocrm));
    }
    out
}

/// The CRM section with its secrets replaced, or why there is none.
fn describe_crm(crm: &serde_json::Value) -> String {
    if crm.is_null() || crm.as_object().is_some_and(|o| o.is_empty()) {
        return "(none: calls are planned but not delivered; connect a CRM in the web UI)".into();
    }
    let mut shown = crm.clone();
    if let Some(map) = shown.as_object_mut() {
        for (k, v) in map.iter_mut() {
            if ["token", "secret", "password"]
                .iter()
                .any(|s| k.contains(s))
            {
                *v = serde_json::Value::String(SET.into());
            }
        }
    }
    shown.to_string()
}

/// `postgres://user:password@host/db` as `postgres://user:***@host/db`.
fn without_password(url: &str) -> String {
    // Query parameters may carry a password too (`?password=...`): not shown.
    let (url, query) = match url.split_once('?') {
        Some((base, _)) => (base, "?(parameters not shown)"),
        None => (url, ""),
    };
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return "(set, not shown: not a URL)".into();
    };
    let rest = &url[scheme_end..];
    // The credentials end at the last '@' before the path.
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return format!("{url}{query}");
    };
    let user = rest[..at].split(':').next().unwrap_or("");
    let password_given = rest[..at].contains(':');
    format!(
        "{}{}{}{}{query}",
        &url[..scheme_end],
        user,
        if password_given { ":***" } else { "" },
        &rest[at..]
    )
}

#[cfg(test)]
mod tests {
    use super::without_password;

    #[test]
    fn a_database_password_is_masked() {
        assert_eq!(
            without_password("postgres://cb:pa:ss@db:5432/cb"),
            "postgres://cb:***@db:5432/cb"
        );
        assert_eq!(
            without_password("postgres://cb@db/cb"),
            "postgres://cb@db/cb"
        );
        assert_eq!(without_password("postgres://db/cb"), "postgres://db/cb");
        assert!(!without_password("nonsense-secret").contains("secret"));
        assert_eq!(
            without_password("postgres://db/cb?password=hunter2"),
            "postgres://db/cb?(parameters not shown)"
        );
    }
}
