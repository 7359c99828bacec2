//! `callbridge reconcile --tenant T --from WHEN --to WHEN`: asks a running service to reconcile a
//! tenant's period from Mango's statistics (`POST /api/v1/tenants/{id}/reconcile`) and prints
//! its report.
//!
//! It talks to the service rather than opening the store itself: the service holds the event
//! log's writer (SQLite allows one), its processor plans what is recovered, and one run per
//! tenant at a time is kept by the service. The admin token and the address come from the same
//! configuration `serve` reads (`--config FILE` and `CALLBRIDGE_*`); `--url` overrides the
//! address.

use anyhow::{anyhow, bail, Context, Result};
use callbridge_server::config::Config;
use secrecy::ExposeSecret;
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
    /// The tenant's id.
    #[arg(long)]
    tenant: String,
    /// Start of the period: Unix seconds, `YYYY-MM-DD` (midnight UTC) or `YYYY-MM-DDTHH:MM[:SS]Z`.
    #[arg(long, allow_negative_numbers = true)]
    from: String,
    /// End of the period, in the same forms; at most 31 days after --from, not in the future.
    #[arg(long, allow_negative_numbers = true)]
    to: String,
    /// The service's configuration (for the admin token and its address); `CALLBRIDGE_*`
    /// variables override it, as for `serve`.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The service's base URL; default: `http://` and the configuration's `listen` address.
    #[arg(long)]
    url: Option<String>,
    /// Give up waiting for the service's answer after this many seconds (the statistics take a
    /// while: Mango allows one poll per 5 s).
    #[arg(long, default_value_t = 900)]
    timeout_seconds: u64,
}

pub fn run(args: &Args) -> Result<()> {
    let from = parse_when(&args.from).map_err(|e| anyhow!("--from: {e}"))?;
    let to = parse_when(&args.to).map_err(|e| anyhow!("--to: {e}"))?;
    if to <= from {
        bail!("--to: must be after --from");
    }
    let (config, _) = Config::load(args.config.as_deref()).map_err(|e| anyhow!("{e}"))?;
    let base = match &args.url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => format!("http://{}", config.listen.replace("0.0.0.0", "127.0.0.1")),
    };
    let url = format!("{base}/api/v1/tenants/{}/reconcile", args.tenant);
    let runtime = crate::runtime()?;
    runtime.block_on(async {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(args.timeout_seconds.max(1)))
            .build()
            .context("HTTP client")?;
        let answer = http
            .post(&url)
            .bearer_auth(config.admin_token.expose_secret())
            .json(&serde_json::json!({"from": from, "to": to}))
            .send()
            .await
            .with_context(|| format!("{base}: no answer"))?;
        let status = answer.status();
        let body: serde_json::Value = answer
            .json()
            .await
            .with_context(|| format!("{url}: the answer is not JSON"))?;
        if !status.is_success() {
            let detail = body["detail"].as_str().unwrap_or("no detail");
            bail!("the service refused (HTTP {}): {detail}", status.as_u16());
        }
        println!("{}", serde_json::to_string_pretty(&body)?);
        eprintln!(
            "tenant {}: {} statistics rows, {} recovered, {} merged, {} already planned, {} in progress, {} events appended",
            args.tenant,
            body["rows"],
            body["recovered"],
            body["merged"],
            body["already_planned"],
            body["in_progress"],
            body["events_appended"]
        );
        Ok(())
    })
}

/// Unix seconds, `YYYY-MM-DD` (midnight UTC) or `YYYY-MM-DDTHH:MM[:SS]Z`.
fn parse_when(text: &str) -> Result<i64, String> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<i64>() {
        return Ok(seconds);
    }
    let bad = || format!("{text:?} is not Unix seconds, YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS]Z");
    let (date, time) = match text.split_once(['T', ' ']) {
        Some((d, t)) => (
            d,
            Some(
                t.strip_suffix('Z')
                    .ok_or_else(|| format!("{text:?}: a time must end with Z (UTC)"))?,
            ),
        ),
        None => (text, None),
    };
    let number = |s: &str, len: usize| -> Result<i64, String> {
        if s.len() != len || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        s.parse::<i64>().map_err(|_| bad())
    };
    let parts: Vec<&str> = date.split('-').collect();
    let [y, m, d] = parts[..] else {
        return Err(bad());
    };
    let (y, m, d) = (number(y, 4)?, number(m, 2)?, number(d, 2)?);
    if !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return Err(format!("{text:?}: no such date"));
    }
    let mut seconds = days_from_civil(y, m, d) * 86_400;
    if let Some(time) = time {
        let parts: Vec<&str> = time.split(':').collect();
        let (h, min, s) = match parts[..] {
            [h, min] => (number(h, 2)?, number(min, 2)?, 0),
            [h, min, s] => (number(h, 2)?, number(min, 2)?, number(s, 2)?),
            _ => return Err(bad()),
        };
        if h > 23 || min > 59 || s > 59 {
            return Err(format!("{text:?}: no such time"));
        }
        seconds += h * 3_600 + min * 60 + s;
    }
    Ok(seconds)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_read_in_each_form_and_bad_ones_named() {
        assert_eq!(parse_when("1764000000"), Ok(1_764_000_000));
        assert_eq!(parse_when("1970-01-01"), Ok(0));
        assert_eq!(parse_when("2026-12-05"), Ok(1_796_428_800));
        assert_eq!(parse_when("2026-12-05T10:30Z"), Ok(1_796_428_800 + 37_800));
        assert_eq!(parse_when("2024-02-29T23:59:59Z"), Ok(1_709_251_199));
        assert!(parse_when("2025-02-29")
            .unwrap_err()
            .contains("no such date"));
        assert!(parse_when("2026-12-05T25:00Z")
            .unwrap_err()
            .contains("no such time"));
        assert!(parse_when("2026-12-05T10:00")
            .unwrap_err()
            .contains("end with Z"));
        assert!(parse_when("yesterday")
            .unwrap_err()
            .contains("not Unix seconds"));
        assert!(parse_when("2026-1-5").is_err());
        assert!(parse_when("").is_err());
    }
}
