//! End-to-end tests of `callbridge serve`: the real binary on a random port, correctly signed
//! webhooks over HTTP, plans read back through the admin API and compared with `simulate` on
//! the same input.

use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "test-admin-token";

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_callbridge")
}

fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("callbridge-serve-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

struct Tenant {
    id: String,
    key: String,
    salt: String,
    settings: PathBuf,
}

/// A `callbridge serve` process, killed when dropped.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(dir: &Path, tenants: &[Tenant], database_url: Option<&str>) -> Server {
        Server::start_with_grace(dir, tenants, database_url, 3)
    }

    /// `grace` is A4's grace period: an entry whose legs are all down and that hears nothing
    /// for that long is complete even without its summary.
    fn start_with_grace(
        dir: &Path,
        tenants: &[Tenant],
        database_url: Option<&str>,
        grace: u32,
    ) -> Server {
        let mut config = format!(
            // No directory loading: tests talk to nothing but loopback.
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nadmin_token = \"{TOKEN}\"\ndirectory_refresh_seconds = 0\n",
            dir.join("data").display()
        );
        if let Some(url) = database_url {
            config += &format!("database_url = \"{url}\"\n");
        }
        config +=
            &format!("[processing]\ngrace_seconds = {grace}\nsettle_seconds = 2\ntick_ms = 50\n");
        for t in tenants {
            config += &format!(
                "[[tenants]]\nid = \"{}\"\nmango_api_key = \"{}\"\nmango_api_salt = \"{}\"\nsettings = \"{}\"\n",
                t.id,
                t.key,
                t.salt,
                t.settings.display()
            );
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

    fn kill(mut self) {
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

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Posts one webhook line (`{"path":..., "json":...}`) signed for the tenant; returns the status.
fn post_line(http: &reqwest::blocking::Client, base: &str, t: &Tenant, line: &str) -> u16 {
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
fn signed_form(key: &str, salt: &str, json: &str) -> String {
    let sign = callbridge_mango::sign(key, json, salt);
    form(&[("vpbx_api_key", key), ("sign", &sign), ("json", json)])
}

fn form(fields: &[(&str, &str)]) -> String {
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

fn get(http: &reqwest::blocking::Client, url: &str) -> Value {
    let r = http.get(url).bearer_auth(TOKEN).send().unwrap();
    assert!(r.status().is_success(), "{url}: {}", r.status());
    r.json().unwrap()
}

fn simulate(settings: &Path, events: &Path) -> Value {
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
fn plans_by_entry(entries: &[Value]) -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = entries
        .iter()
        .map(|e| {
            let mut e = e.clone();
            for k in ["completed_by", "planned_at_ms", "delivery"] {
                e.as_object_mut().unwrap().remove(k);
            }
            (e["entry_id"].as_str().unwrap().to_string(), e)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Polls the admin API until the tenant has `n` planned entries (or times out); returns them all.
fn wait_for_entries(
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

struct Lcg(u64);
impl Lcg {
    fn next(&mut self, bound: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % bound.max(1)
    }
}

/// Duplicates some lines and shuffles neighbours, as the PBX's parallel deliveries do.
fn jumble(lines: &[String], seed: u64) -> Vec<String> {
    let mut rng = Lcg(seed);
    let mut v = lines.to_vec();
    for _ in 0..(lines.len() / 3).max(1) {
        let i = rng.next(lines.len());
        v.push(lines[i].clone());
    }
    for i in (1..v.len()).rev() {
        let j = rng.next(i + 1);
        v.swap(i, j);
    }
    v
}

fn lines_of(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

fn scenario_tenants() -> Vec<(Tenant, PathBuf)> {
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
                salt: format!("salt-{i}"),
                settings: dir.join("settings.toml"),
            };
            (t, dir)
        })
        .collect()
}

#[test]
fn every_scenario_over_http_matches_simulate_even_shuffled_and_duplicated() {
    let dir = temp_dir("scenarios");
    let cases = scenario_tenants();
    let tenants: Vec<Tenant> = cases
        .iter()
        .map(|(t, _)| Tenant {
            id: t.id.clone(),
            key: t.key.clone(),
            salt: t.salt.clone(),
            settings: t.settings.clone(),
        })
        .collect();
    let server = Server::start(&dir, &tenants, None);
    let http = client();
    for (i, (t, case)) in cases.iter().enumerate() {
        for line in jumble(&lines_of(&case.join("events.jsonl")), i as u64 + 1) {
            assert_eq!(
                post_line(&http, &server.base, t, &line),
                200,
                "{}: {line}",
                case.display()
            );
        }
    }
    let mut failures = Vec::new();
    for (t, case) in &cases {
        let expected = simulate(&case.join("settings.toml"), &case.join("events.jsonl"));
        let want = plans_by_entry(expected["entries"].as_array().unwrap());
        let got = plans_by_entry(&wait_for_entries(
            &http,
            &server.base,
            &t.id,
            want.len(),
            Duration::from_secs(20),
        ));
        if got != want {
            failures.push(format!(
                "{}:\n  service:  {:?}\n  simulate: {:?}",
                case.display(),
                got,
                want
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn bad_requests_get_their_status_and_store_nothing() {
    let dir = temp_dir("bad");
    let case = scenarios_dir().join("r6-card-only-for-mapped");
    let t = Tenant {
        id: "acme".into(),
        key: "acme-key".into(),
        salt: "acme-salt".into(),
        settings: case.join("settings.toml"),
    };
    let server = Server::start(&dir, std::slice::from_ref(&t), None);
    let http = client();
    let line = lines_of(&case.join("events.jsonl")).remove(0);
    let json = serde_json::from_str::<Value>(&line).unwrap()["json"].to_string();
    let url = format!("{}/mango/acme/events/call", server.base);
    let post = |body: String, content_type: &str| {
        let r = http
            .post(&url)
            .header("content-type", content_type)
            .body(body)
            .send()
            .unwrap();
        let status = r.status().as_u16();
        let ct = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        (status, ct, r.text().unwrap())
    };
    let form_ct = "application/x-www-form-urlencoded";
    let good_sign = callbridge_mango::sign("acme-key", &json, "acme-salt");
    // Wrong signature, unknown key, unknown tenant: 403.
    let (s, _, _) = post(
        form(&[
            ("vpbx_api_key", "acme-key"),
            ("sign", &"0".repeat(64)),
            ("json", &json),
        ]),
        form_ct,
    );
    assert_eq!(s, 403);
    let (s, _, _) = post(
        form(&[
            ("vpbx_api_key", "other"),
            ("sign", &good_sign),
            ("json", &json),
        ]),
        form_ct,
    );
    assert_eq!(s, 403);
    let r = http
        .post(format!("{}/mango/nobody/events/call", server.base))
        .header("content-type", form_ct)
        .body(signed_form("acme-key", "acme-salt", &json))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    // Malformed form: no key field.
    let (s, ct, body) = post(form(&[("sign", &good_sign), ("json", &json)]), form_ct);
    assert_eq!((s, ct.as_str()), (400, "application/problem+json"));
    assert!(body.contains("vpbx_api_key"), "{body}");
    // Malformed JSON, correctly signed: 400 naming the problem.
    let broken = "{\"entry_id\":";
    let (s, ct, body) = post(signed_form("acme-key", "acme-salt", broken), form_ct);
    assert_eq!(
        (s, ct.as_str()),
        (400, "application/problem+json"),
        "{body}"
    );
    assert!(body.contains("json"), "{body}");
    // A valid signature over an event without entry_id: 400 naming the field.
    let no_entry = "{\"call_id\":\"x\",\"call_state\":\"Appeared\",\"timestamp\":1,\"seq\":1}";
    let (s, _, body) = post(signed_form("acme-key", "acme-salt", no_entry), form_ct);
    assert_eq!(s, 400);
    assert!(body.contains("entry_id"), "{body}");
    // Huge body: 413.
    let (s, _, _) = post(
        format!("vpbx_api_key=acme-key&json={}", "x".repeat(200_000)),
        form_ct,
    );
    assert_eq!(s, 413);
    // Wrong content type: 415.
    let (s, ct, _) = post(format!("{{\"json\": {json}}}"), "application/json");
    assert_eq!((s, ct.as_str()), (415, "application/problem+json"));
    // Mango's empty connection check: 200.
    let (s, _, _) = post(String::new(), form_ct);
    assert_eq!(s, 200);
    let tenant = get(&http, &format!("{}/api/v1/tenants/acme", server.base));
    assert_eq!(tenant["events"], 0, "nothing was stored: {tenant}");
    // The salt is never shown back.
    assert!(!tenant.to_string().contains("acme-salt"));
    // And a good one is stored, once.
    assert_eq!(
        post(signed_form("acme-key", "acme-salt", &json), form_ct).0,
        200
    );
    assert_eq!(
        post(signed_form("acme-key", "acme-salt", &json), form_ct).0,
        200
    );
    assert_eq!(
        get(&http, &format!("{}/api/v1/tenants/acme", server.base))["events"],
        1
    );
    // The admin API wants the token.
    assert_eq!(
        http.get(format!("{}/api/v1/entries", server.base))
            .send()
            .unwrap()
            .status()
            .as_u16(),
        401
    );
    let metrics = http
        .get(format!("{}/metrics", server.base))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(metrics.contains("callbridge_webhooks_total"), "{metrics}");
}

/// Generated traffic for the crash and scale-out tests: (events file, settings file).
fn generated(dir: &Path, calls: usize) -> (PathBuf, PathBuf) {
    let events = dir.join("events.jsonl");
    let settings = dir.join("settings.toml");
    let out = Command::new(bin())
        .args([
            "generate",
            "--calls",
            &calls.to_string(),
            "--seed",
            "7",
            "--out",
        ])
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

#[test]
fn kill_9_mid_stream_then_restart_plans_every_entry_exactly_once() {
    let dir = temp_dir("crash");
    let (events, settings) = generated(&dir, 150);
    let t = Tenant {
        id: "acme".into(),
        key: "k-acme".into(),
        salt: "s-acme".into(),
        settings: settings.clone(),
    };
    let lines = lines_of(&events);
    let half = lines.len() / 2;
    let http = client();
    let server = Server::start_with_grace(&dir, std::slice::from_ref(&t), None, 60);
    for line in &lines[..half] {
        assert_eq!(post_line(&http, &server.base, &t, line), 200);
    }
    server.kill();
    let server = Server::start_with_grace(&dir, std::slice::from_ref(&t), None, 60);
    // The PBX re-sends what it is unsure of: replay a stretch before the crash point too.
    for line in &lines[half.saturating_sub(40)..] {
        assert_eq!(post_line(&http, &server.base, &t, line), 200);
    }
    let expected = simulate(&settings, &events);
    let want = plans_by_entry(expected["entries"].as_array().unwrap());
    let got_entries = wait_for_entries(
        &http,
        &server.base,
        &t.id,
        want.len(),
        Duration::from_secs(30),
    );
    let got = plans_by_entry(&got_entries);
    let mut ids: Vec<&String> = got.iter().map(|(id, _)| id).collect();
    ids.dedup();
    assert_eq!(ids.len(), got.len(), "an entry was planned twice");
    assert_eq!(got.len(), want.len());
    assert_eq!(got, want);
}

#[test]
fn two_instances_on_one_postgres_never_plan_an_entry_twice() {
    let Ok(admin_url) = std::env::var("CALLBRIDGE_TEST_POSTGRES_URL") else {
        eprintln!("SKIPPED: CALLBRIDGE_TEST_POSTGRES_URL is not set");
        return;
    };
    let db = format!("cb_scaleout_{}", std::process::id());
    let psql = |sql: &str| {
        Command::new("psql")
            .arg(&admin_url)
            .args(["-Atc", sql])
            .output()
            .expect("psql")
    };
    psql(&format!("DROP DATABASE IF EXISTS {db}"));
    assert!(psql(&format!("CREATE DATABASE {db}")).status.success());
    let url = format!("{}/{db}", &admin_url[..admin_url.rfind('/').unwrap()]);
    let dir = temp_dir("scaleout");
    let (events, settings) = generated(&dir, 120);
    let t = Tenant {
        id: "acme".into(),
        key: "k-acme".into(),
        salt: "s-acme".into(),
        settings: settings.clone(),
    };
    let a = Server::start_with_grace(&dir, std::slice::from_ref(&t), Some(&url), 60);
    let b = Server::start_with_grace(&dir, std::slice::from_ref(&t), Some(&url), 60);
    let http = client();
    // Any instance accepts webhooks: alternate, and deliver some twice, once to each.
    for (i, line) in lines_of(&events).iter().enumerate() {
        let base = if i % 2 == 0 { &a.base } else { &b.base };
        assert_eq!(post_line(&http, base, &t, line), 200);
        if i % 7 == 0 {
            let other = if i % 2 == 0 { &b.base } else { &a.base };
            assert_eq!(post_line(&http, other, &t, line), 200);
        }
    }
    let expected = simulate(&settings, &events);
    let want = plans_by_entry(expected["entries"].as_array().unwrap());
    let got = plans_by_entry(&wait_for_entries(
        &http,
        &a.base,
        &t.id,
        want.len(),
        Duration::from_secs(40),
    ));
    assert_eq!(got.len(), want.len());
    assert_eq!(got, want);
    let through_b = plans_by_entry(&wait_for_entries(
        &http,
        &b.base,
        &t.id,
        want.len(),
        Duration::from_secs(5),
    ));
    assert_eq!(through_b, want);
    drop((a, b));
    psql(&format!("DROP DATABASE IF EXISTS {db}"));
}

#[test]
fn the_card_stream_shows_and_hides_a_mapped_users_card() {
    let dir = temp_dir("cards");
    let case = scenarios_dir().join("r6-card-only-for-mapped");
    let t = Tenant {
        id: "acme".into(),
        key: "acme-key".into(),
        salt: "acme-salt".into(),
        settings: case.join("settings.toml"),
    };
    let server = Server::start(&dir, std::slice::from_ref(&t), None);
    let base = server.base.clone();
    let reader = std::thread::spawn(move || {
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .unwrap();
        let mut r = http
            .get(format!(
                "{base}/api/v1/cards/stream?crm_user_id=1001&token={TOKEN}"
            ))
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let mut seen = String::new();
        let mut buf = [0u8; 4096];
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(15) && seen.matches("event: card").count() < 2 {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
        seen
    });
    std::thread::sleep(Duration::from_millis(500));
    let http = client();
    for line in lines_of(&case.join("events.jsonl")) {
        assert_eq!(post_line(&http, &server.base, &t, &line), 200);
    }
    let seen = reader.join().unwrap();
    assert!(seen.contains("\"action\":\"show\""), "{seen}");
    assert!(seen.contains("\"action\":\"hide\""), "{seen}");
    assert!(seen.contains("\"crm_user_id\":1001"));
}
