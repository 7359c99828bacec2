//! Everything the demo prepares before the first call: the data folder, throwaway secrets, the
//! tenant's settings, the CRM sandbox's seed (users, known clients), the service's config, and
//! the "where to look" block.

use super::say;
use super::{Args, Options, GRACE_SECONDS, TENANT};
use crate::pipeline::plan_all;
use anyhow::{anyhow, ensure, Context, Result};
use callbridge_amocrm_sandbox::Sandbox;
use callbridge_core::settings::CrmUserId;
use callbridge_core::ValidSettings;
use callbridge_mango_sandbox::PlayConfig;
use callbridge_traffic::{Generator, Staff};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The data folder: the one given, or a temporary one removed at the end unless kept.
pub(super) struct DataDir {
    pub(super) path: PathBuf,
    remove: bool,
}

impl DataDir {
    pub(super) fn prepare(given: Option<&Path>, keep: bool) -> Result<DataDir> {
        match given {
            Some(path) => {
                if path.exists() {
                    let mut entries = std::fs::read_dir(path)
                        .with_context(|| format!("--data-dir {}", path.display()))?;
                    // A folder with an earlier run's database would mix its calls into the report.
                    ensure!(
                        entries.next().is_none(),
                        "--data-dir {}: not empty; give a new or empty folder",
                        path.display()
                    );
                } else {
                    std::fs::create_dir_all(path)
                        .with_context(|| format!("--data-dir {}: cannot create", path.display()))?;
                }
                Ok(DataDir {
                    path: path.to_path_buf(),
                    remove: false,
                })
            }
            None => {
                let path = std::env::temp_dir().join(format!(
                    "callbridge-demo-{}-{}",
                    std::process::id(),
                    callbridge_server::state::now_ms()
                ));
                std::fs::create_dir_all(&path)
                    .with_context(|| format!("{}: cannot create", path.display()))?;
                Ok(DataDir {
                    path,
                    remove: !keep,
                })
            }
        }
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        if self.remove {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// A random hex string for a local secret. `RandomState` is seeded from the system's random
/// source, so no extra crate is needed for a demo's throwaway tokens.
fn random_hex(words: usize) -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut out = String::new();
    for i in 0..words {
        let mut h = RandomState::new().build_hasher();
        h.write_usize(i);
        h.write_i64(callbridge_server::state::now_ms());
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out
}

pub(super) struct Secrets {
    pub(super) admin_token: String,
    pub(super) mango_key: String,
    pub(super) mango_salt: String,
    pub(super) crm_token: String,
}

impl Secrets {
    pub(super) fn new() -> Secrets {
        Secrets {
            admin_token: format!("demo-admin-{}", random_hex(2)),
            mango_key: format!("demo-vpbx-key-{}", random_hex(1)),
            mango_salt: random_hex(2) + &random_hex(2),
            crm_token: format!("demo-amocrm-{}", random_hex(2)),
        }
    }
}

/// The tenant's settings: the generated office's mapping table (about a third of the employees
/// unmapped) with "Save all calls" on and its fallback user, plus the outgoing-call actions and
/// missed-call tasks, so that most rules get a chance to show. Transcripts only when asked for:
/// fetched one per second, they hold the CRM work up (see `--speech-analytics`).
pub(super) fn demo_settings(staff: &Staff, speech_analytics: bool) -> String {
    let mut s = staff.settings_toml().replace(
        "[speech_analytics]\nsave = true",
        &format!("[speech_analytics]\nsave = {speech_analytics}"),
    );
    s.push_str(
        "\n[calls.outgoing]\nnew_client = \"contact\"\nrepeat_client = \"manual\"\n\
         \n[calls.missed_tasks]\nenabled = true\n",
    );
    s
}

/// The CRM users of the mapping table and the fallback user, as the sandbox seed lists them.
pub(super) fn crm_users(staff: &Staff) -> Vec<(u64, String)> {
    let mut users: Vec<(u64, String)> = staff
        .employees
        .iter()
        .filter_map(|e| e.crm_user_id.map(|id| (id, e.name.clone())))
        .collect();
    users.push((
        staff.fallback_crm_user_id,
        "Reception (Save all calls)".to_string(),
    ));
    users
}

/// Contacts the CRM knows before the first call: `share` of the clients who will call (a
/// quarter by default, so that repeat-client paths show next to new ones), spread evenly over
/// them in the order they first call. Found by planning the same traffic with the core; a
/// third of them have an open deal, a third a won one.
pub(super) fn known_clients(
    play: &PlayConfig,
    settings: &ValidSettings,
    users: &[(u64, String)],
    share: f64,
) -> Vec<Value> {
    let start = play.start_unix.unwrap_or(0);
    let mut seen = HashSet::new();
    let phones: Vec<String> = plan_all(settings, Generator::new(play.traffic_config(start)))
        .into_iter()
        .filter_map(|plan| plan.client_phone)
        .filter(|p| seen.insert(p.clone()))
        .collect();
    // The i-th client is known when (i + 3) x share crosses a whole number: every client at
    // 1, half of them at 0.5, the 2nd, 6th, 10th, ... at a quarter.
    let crosses = |i: usize| ((i + 3) as f64 * share).floor() != ((i + 2) as f64 * share).floor();
    phones
        .iter()
        .enumerate()
        .filter(|(i, _)| crosses(*i))
        .map(|(_, phone)| phone)
        .enumerate()
        .map(|(i, phone)| {
            let owner = users.get(i % users.len().max(1)).map_or(0, |u| u.0);
            let leads = match i % 3 {
                0 => json!([]),
                1 => json!([{"name": format!("Deal with {phone}"), "status": "open"}]),
                _ => json!([{"name": format!("Last year's deal with {phone}"), "status": "won"}]),
            };
            json!({"name": format!("Known client {phone}"), "phone": phone,
                   "responsible_user_id": owner, "leads": leads})
        })
        .collect()
}

/// What is running, for the "where to look" block and the report.
pub(super) struct Endpoints {
    pub(super) service: String,
    pub(super) sandbox: String,
    pub(super) vpbx: String,
    /// The key the service signs card-stream tokens with, to print a ready stream URL.
    pub(super) card_token_key: [u8; 32],
}

pub(super) fn contacts_len(seed: &Value) -> usize {
    seed["contacts"].as_array().map_or(0, Vec::len)
}

/// Writes the service's configuration into the data folder (so `callbridge serve --config` can
/// run it again) and starts the service from it. The file holds the demo's secrets: throwaway
/// tokens of local stand-ins, made up for this run.
pub(super) async fn start_service(
    dir: &Path,
    secrets: &Secrets,
    settings_toml: &str,
    sandbox: &Sandbox,
    vpbx_url: &str,
) -> Result<callbridge_server::Running> {
    std::fs::write(dir.join("settings.toml"), settings_toml)
        .with_context(|| format!("{}: cannot write the settings", dir.display()))?;
    let text = format!(
        "# Written by `callbridge demo`.\nlisten = \"127.0.0.1:0\"\ndata_dir = \".\"\n\
         admin_token = {admin}\nmango_api_url = {vpbx}\ndirectory_refresh_seconds = 3600\n\
         # The demo's CRM is the sandbox on loopback, not an amoCRM account host.\n\
         allow_insecure_crm_hosts = true\n\
         \n[processing]\ngrace_seconds = {GRACE_SECONDS}\nsettle_seconds = 1\ntick_ms = 50\n\
         \n[[tenants]]\nid = \"{TENANT}\"\nmango_api_key = {key}\nmango_api_salt = {salt}\n\
         settings = \"settings.toml\"\n\n[tenants.amocrm]\nbase_url = {base}\nlong_lived_token = {token}\n",
        admin = toml_string(&secrets.admin_token),
        vpbx = toml_string(vpbx_url),
        key = toml_string(&secrets.mango_key),
        salt = toml_string(&secrets.mango_salt),
        base = toml_string(&sandbox.base_url()),
        token = toml_string(&secrets.crm_token),
    );
    let path = dir.join("callbridge.toml");
    std::fs::write(&path, text).with_context(|| format!("{}: cannot write", path.display()))?;
    let (mut config, tenants) =
        callbridge_server::config::Config::load(Some(&path)).map_err(|e| anyhow!("{e}"))?;
    // CALLBRIDGE_* variables of the user's shell must not send the demo to a real database or
    // port: these stay the demo's own.
    config.listen = "127.0.0.1:0".into();
    config.database_url = None;
    config.public_url = None;
    config.data_dir = dir.to_path_buf();
    config.admin_token = secrets.admin_token.clone().into();
    config.mango_api_url = vpbx_url.to_string();
    callbridge_server::start(config, tenants)
        .await
        .map_err(|e| anyhow!("starting the service: {e}"))
}

/// A TOML basic string (our values are plain ASCII, but quotes and backslashes are escaped).
fn toml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

pub(super) fn print_where(
    args: &Args,
    options: &Options,
    staff: &Staff,
    secrets: &Secrets,
    e: &Endpoints,
    dir: &Path,
    ui_password: &str,
) {
    let unmapped = staff
        .employees
        .iter()
        .filter(|e| e.crm_user_id.is_none())
        .count();
    let first_user = staff
        .employees
        .iter()
        .find_map(|e| e.crm_user_id)
        .unwrap_or(staff.fallback_crm_user_id);
    let admin = &secrets.admin_token;
    let crm = &secrets.crm_token;
    say!(
        "callbridge demo: {} calls at {}/s from a generated office of {} employees ({} unmapped, \
         \"Save all calls\" on to user {}), seed {}.",
        options.calls,
        options.rate,
        staff.employees.len(),
        unmapped,
        staff.fallback_crm_user_id,
        args.seed
    );
    say!();
    say!("  web UI                {}/", e.service);
    say!("    sign in with the password {ui_password}  (tenant \"{TENANT}\": its settings, connections, employees)");
    say!(
        "  callbridge admin API  {}/api/v1/tenants/{TENANT}",
        e.service
    );
    say!(
        "    curl -H 'Authorization: Bearer {admin}' '{}/api/v1/entries?tenant={TENANT}&limit=5'",
        e.service
    );
    // The generated office numbers its CRM users from 1001, which the settings parse already
    // accepted; a zero would only leave the card line out.
    if let Ok(first_user) = CrmUserId::new(first_user) {
        // A scoped token (this user's cards of this tenant, for 12 hours) goes in the URL, which is
        // all a browser's EventSource can send; the admin token never does.
        let card_token = callbridge_server::card_tokens::mint(
            &e.card_token_key,
            &callbridge_server::card_tokens::Scope {
                tenant_id: TENANT.into(),
                crm_user_id: first_user,
                link_id: None,
                expires_at: callbridge_server::state::now_ms() / 1000
                    + callbridge_server::card_tokens::DEFAULT_TTL_SECONDS as i64,
            },
        );
        say!(
            "  call card stream      {}/api/v1/cards/stream?token={card_token}",
            e.service
        );
        say!(
            "    (user {first_user}'s cards; another user's: curl -X POST -H 'Authorization: Bearer {admin}' -d '{{\"crm_user_id\": N}}' -H 'Content-Type: application/json' '{}/api/v1/tenants/{TENANT}/cards/tokens')",
            e.service
        );
    }
    say!("  Mango webhook URL     {}/mango/{TENANT}/", e.service);
    say!("  amoCRM sandbox        {}  (token {crm})", e.sandbox);
    // Calls land as notes on contacts and on leads, and unknown numbers as unsorted requests.
    for entity in ["contacts", "leads"] {
        say!("    curl -g -H 'Authorization: Bearer {crm}' '{}/api/v4/{entity}/notes?filter[note_type][]=call_in&filter[note_type][]=call_out'", e.sandbox);
    }
    say!(
        "    curl -H 'Authorization: Bearer {crm}' '{}/api/v4/leads/unsorted'",
        e.sandbox
    );
    say!("  Mango VPBX API        {}", e.vpbx);
    let fate = if dir_is_temporary(args) && !args.keep_running {
        " (removed at exit)"
    } else {
        ""
    };
    say!("  data                  {}{fate}", dir.display());
    say!();
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
}

fn dir_is_temporary(args: &Args) -> bool {
    args.data_dir.is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use callbridge_traffic::StaffConfig;

    #[test]
    fn demo_settings_keep_save_all_calls_on_with_a_realistic_mapping() {
        let staff = callbridge_mango_sandbox::office_staff(7, &StaffConfig::default());
        let text = demo_settings(&staff, false);
        let settings = ValidSettings::parse_toml(&text).expect("valid settings");
        assert!(text.contains("[speech_analytics]\nsave = false"));
        assert!(demo_settings(&staff, true).contains("[speech_analytics]\nsave = true"));
        let mapped = staff
            .employees
            .iter()
            .filter(|e| e.crm_user_id.is_some())
            .count();
        assert!(
            mapped >= 2 && mapped < staff.employees.len(),
            "some mapped, some not"
        );
        assert!(text.contains("[calls.save_all_calls]\nenabled = true"));
        assert_eq!(
            settings
                .crm_user_of(&staff.employees[0].extension)
                .map(CrmUserId::get),
            staff.employees[0].crm_user_id
        );
        let users = crm_users(&staff);
        assert_eq!(users.len(), mapped + 1);
        assert!(users.iter().any(|u| u.0 == staff.fallback_crm_user_id));
    }

    #[test]
    fn toml_strings_are_escaped() {
        assert_eq!(toml_string(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}
