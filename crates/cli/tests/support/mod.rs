//! Shared helpers of the end-to-end tests: the real `callbridge` binary on a random port,
//! signed webhooks, the admin API.
#![allow(dead_code)]

use callbridge_test_support::SeededRng;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const TOKEN: &str = "test-admin-token";

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_callbridge")
}

pub fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios")
}

pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("callbridge-serve-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[derive(Clone)]
pub struct Tenant {
    pub id: String,
    pub key: String,
    pub salt: String,
    pub settings: PathBuf,
    /// The `[tenants.amocrm]` table's body (TOML lines), when the tenant delivers to a CRM.
    pub amocrm: Option<String>,
}

/// A `callbridge serve` process, killed when dropped.
pub struct Server {
    pub child: Child,
    pub base: String,
}

/// How a test server is configured beyond its tenants.
#[derive(Clone, Default)]
pub struct Options {
    pub database_url: Option<String>,
    /// A4's grace period, seconds (default 3).
    pub grace: Option<u32>,
    /// The settle window after a summary, seconds (default 2).
    pub settle: Option<u32>,
    /// `processing.settle_complete_ms`, the quiet time after which an entry that waits for
    /// nothing is planned. Default: as long as the settle window, so every entry waits the
    /// whole window, as in `simulate`, which the tests compare the service with on shuffled
    /// input.
    pub settle_complete_ms: Option<u64>,
    /// More top-level TOML lines.
    pub extra: String,
    /// More `[processing]` lines.
    pub processing: String,
    /// Leave `allow_insecure_crm_hosts` off: CRM base URLs must be amoCRM/Kommo account
    /// origins. Off by default, since the tests' CRM is the sandbox on loopback.
    pub strict_crm_hosts: bool,
}

impl Server {
    pub fn start(dir: &Path, tenants: &[Tenant], database_url: Option<&str>) -> Server {
        Server::start_with_grace(dir, tenants, database_url, 3)
    }

    /// `grace` is A4's grace period: an entry whose legs are all down and that hears nothing
    /// for that long is complete even without its summary.
    pub fn start_with_grace(
        dir: &Path,
        tenants: &[Tenant],
        database_url: Option<&str>,
        grace: u32,
    ) -> Server {
        Server::start_with(
            dir,
            tenants,
            &Options {
                database_url: database_url.map(str::to_string),
                grace: Some(grace),
                ..Options::default()
            },
        )
    }

    pub fn start_with(dir: &Path, tenants: &[Tenant], options: &Options) -> Server {
        let mut config = format!(
            // No directory loading: tests talk to nothing but loopback.
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nadmin_token = \"{TOKEN}\"\ndirectory_refresh_seconds = 0\n{}\n",
            dir.join("data").display(),
            options.extra,
        );
        if !options.strict_crm_hosts {
            config += "allow_insecure_crm_hosts = true\n";
        }
        if let Some(url) = &options.database_url {
            config += &format!("database_url = \"{url}\"\n");
        }
        let settle = options.settle.unwrap_or(2);
        let settle_complete_ms = options
            .settle_complete_ms
            .unwrap_or(u64::from(settle) * 1000);
        config += &format!(
            "[processing]\ngrace_seconds = {}\nsettle_seconds = {settle}\n\
             settle_complete_ms = {settle_complete_ms}\ntick_ms = 50\n{}\n",
            options.grace.unwrap_or(3),
            options.processing,
        );
        for t in tenants {
            config += &format!(
                "[[tenants]]\nid = \"{}\"\nmango_api_key = \"{}\"\nmango_api_salt = \"{}\"\nsettings = \"{}\"\n",
                t.id,
                t.key,
                t.salt,
                t.settings.display()
            );
            if let Some(amocrm) = &t.amocrm {
                config += &format!("[tenants.amocrm]\n{amocrm}\n");
            }
        }
        let path = dir.join(format!(
            "config-{}.toml",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::write(&path, config).unwrap();
        let mut child = Command::new(bin())
            .args(["serve", "--config"])
            .arg(&path)
            .env("CALLBRIDGE_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start callbridge serve");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let base = loop {
            let line = lines.next().expect("serve printed its address").unwrap();
            if let Some(addr) = line.strip_prefix("callbridge: listening on ") {
                break addr.to_string();
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server { child, base }
    }

    pub fn kill(mut self) {
        self.child.kill().unwrap(); // SIGKILL: no chance to clean up
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Posts one webhook line (`{"path":..., "json":...}`) signed for the tenant; returns the status.
pub fn post_line(http: &reqwest::blocking::Client, base: &str, t: &Tenant, line: &str) -> u16 {
    let v: Value = serde_json::from_str(line).unwrap();
    let path = v["path"].as_str().unwrap();
    let json = v["json"].to_string();
    let body = signed_form(&t.key, &t.salt, &json);
    http.post(format!("{base}/mango/{}/{path}", t.id))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .unwrap()
        .status()
        .as_u16()
}

/// A webhook body as Mango posts it: key, `sha256(key + json + salt)`, json.
pub fn signed_form(key: &str, salt: &str, json: &str) -> String {
    let sign = callbridge_mango::sign(key, json, salt);
    form(&[("vpbx_api_key", key), ("sign", &sign), ("json", json)])
}

pub fn form(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                v.bytes()
                    .map(|b| if b.is_ascii_alphanumeric() {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    })
                    .collect::<String>()
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

pub fn get(http: &reqwest::blocking::Client, url: &str) -> Value {
    let r = http.get(url).bearer_auth(TOKEN).send().unwrap();
    assert!(r.status().is_success(), "{url}: {}", r.status());
    r.json().unwrap()
}

pub fn simulate(settings: &Path, events: &Path) -> Value {
    let out = Command::new(bin())
        .args(["simulate", "--settings"])
        .arg(settings)
        .arg("--events")
        .arg(events)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The plan fields that must agree between `simulate` and the service, by entry id.
pub fn plans_by_entry(entries: &[Value]) -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = entries
        .iter()
        .map(|e| {
            let mut e = e.clone();
            // The API's additions: `why` (reasons in words, beside each rule id list) is not
            // part of `simulate`'s output.
            for k in ["completed_by", "planned_at_ms", "delivery", "why"] {
                e.as_object_mut().unwrap().remove(k);
            }
            for list in ["records", "ignored"] {
                for item in e[list].as_array_mut().into_iter().flatten() {
                    if let Some(item) = item.as_object_mut() {
                        item.remove("why");
                    }
                }
            }
            (e["entry_id"].as_str().unwrap().to_string(), e)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Polls the admin API until the tenant has `n` planned entries (or times out); returns them all.
pub fn wait_for_entries(
    http: &reqwest::blocking::Client,
    base: &str,
    tenant: &str,
    n: usize,
    timeout: Duration,
) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let mut all = Vec::new();
        let mut offset = 0;
        loop {
            let page = get(
                http,
                &format!("{base}/api/v1/entries?tenant={tenant}&limit=500&offset={offset}"),
            );
            let entries = page["entries"].as_array().unwrap().clone();
            offset += entries.len();
            let done = entries.len() < 500;
            all.extend(entries);
            if done {
                break;
            }
        }
        if all.len() >= n || start.elapsed() > timeout {
            return all;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Duplicates some lines and shuffles neighbours, as the PBX's parallel deliveries do.
pub fn jumble(lines: &[String], seed: u64) -> Vec<String> {
    let mut rng = SeededRng::new(seed);
    let mut v = lines.to_vec();
    for _ in 0..(lines.len() / 3).max(1) {
        let i = rng.below(lines.len());
        v.push(lines[i].clone());
    }
    rng.shuffle(&mut v);
    v
}

pub fn lines_of(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

pub fn scenario_tenants() -> Vec<(Tenant, PathBuf)> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(scenarios_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("events.jsonl").exists())
        .collect();
    dirs.sort();
    dirs.into_iter()
        .enumerate()
        .map(|(i, dir)| {
            let t = Tenant {
                id: format!("s{i}"),
                key: format!("key-{i}"),
                salt: format!("salt-{i}-0000000000000000000000000000"),
                settings: dir.join("settings.toml"),
                amocrm: None,
            };
            (t, dir)
        })
        .collect()
}

/// Generated traffic for the crash and scale-out tests: (events file, settings file).
pub fn generated(dir: &Path, calls: usize) -> (PathBuf, PathBuf) {
    generated_with_seed(dir, calls, 7)
}

/// [`generated`] with another seed of the generator.
pub fn generated_with_seed(dir: &Path, calls: usize, seed: u64) -> (PathBuf, PathBuf) {
    let events = dir.join("events.jsonl");
    let settings = dir.join("settings.toml");
    let out = Command::new(bin())
        .args(["generate", "--calls", &calls.to_string(), "--seed"])
        .arg(seed.to_string())
        .arg("--out")
        .arg(&events)
        .arg("--settings-out")
        .arg(&settings)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (events, settings)
}
