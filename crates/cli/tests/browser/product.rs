//! The product under test: a real `callbridge serve` on a port of its own with a fresh SQLite data
//! folder, the amoCRM sandbox (OAuth client, CRM users) and the Mango VPBX API emulator (the
//! office's employees), all on loopback. Restartable on the same data folder and port.

use super::support::{bin, signed_form};
use callbridge_amocrm_sandbox::{Sandbox, SandboxConfig, Seed};
use callbridge_mango_sandbox::{start_vpbx_api, Vpbx, VpbxApi, VpbxConfig};
use callbridge_traffic::{Employee, Staff};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The admin's password: long and not a common one, so the weak-password rule lets it through.
pub const PASSWORD: &str = "harbour-violet-lantern-4817";
pub const TENANT: &str = "acme";
pub const MANGO_KEY: &str = "acme-vpbx-key";
pub const MANGO_SALT: &str = "acme-vpbx-salt-7f3a9c1e5b2d4f6a8c0e";
pub const OAUTH_CLIENT_ID: &str = "callbridge-browser-test";
pub const OAUTH_CLIENT_SECRET: &str = "browser-test-client-secret";
/// The amoCRM account's name, shown once connected.
pub const CRM_ACCOUNT: &str = "Acme Trading";

/// The CRM's users (amoCRM `/api/v4/users`): id, name, e-mail.
pub const CRM_USERS: [(u64, &str, &str); 4] = [
    (1001, "Olga Smirnova", "olga@acme.example"),
    (1002, "Ivan Petrov", "ivan@acme.example"),
    (1003, "Maria Ivanova", "maria@acme.example"),
    (9000, "Reception Desk", "reception@acme.example"),
];

/// The PBX's employees (Mango `config/users/request`): extension, name. 105 has no CRM user of
/// the same name: after an auto-match it is the unmapped one, whose calls "Save all calls" keeps.
pub const EMPLOYEES: [(&str, &str); 4] = [
    ("101", "Olga Smirnova"),
    ("102", "Ivan Petrov"),
    ("103", "Maria Ivanova"),
    ("105", "Anna Sokolova"),
];

pub fn crm_user_name(id: u64) -> &'static str {
    CRM_USERS
        .iter()
        .find(|u| u.0 == id)
        .map(|u| u.1)
        .expect("a CRM user of the test")
}

/// The tenant's plan: "Save all calls" is an extended-package setting (S2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    Basic,
    Extended,
}

/// How the tenant reaches amoCRM: through the UI's OAuth "Connect", or already connected with
/// the account's long-lived token (the tests not about connecting).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Crm {
    OAuth,
    Connected,
}

pub struct Product {
    pub dir: PathBuf,
    pub port: u16,
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub base: String,
    pub crm: Sandbox,
    pub mango: VpbxApi,
    plan: Plan,
    crm_auth: Crm,
    /// Settings after the `plan` line of the tenant's settings file (mapping, switches).
    settings: String,
    /// The admin's password: [`PASSWORD`], or the one the server made on its first start.
    pub password: String,
    server: Option<Child>,
    /// What the last start printed as the first-start password, if it did.
    printed_password: Option<String>,
    // The sandboxes run on this runtime; dropped last.
    _rt: tokio::runtime::Runtime,
}

impl Product {
    /// Everything fresh: sandboxes, a data folder, the admin password set, the server started.
    pub fn start(name: &str, plan: Plan, crm_auth: Crm) -> Product {
        Product::start_with_settings(name, plan, crm_auth, "")
    }

    /// [`Product::start`] with the tenant's settings file holding `settings` after its `plan`.
    pub fn start_with_settings(name: &str, plan: Plan, crm_auth: Crm, settings: &str) -> Product {
        let dir =
            std::env::temp_dir().join(format!("callbridge-browser-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the test's folder");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime for the sandboxes");
        // The OAuth callback's address must be known to the CRM's integration before the server
        // starts: the server gets a port chosen now.
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let crm = start_crm(&rt, &format!("{base}/amocrm/oauth/callback"));
        let mango = rt
            .block_on(async {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                start_vpbx_api(
                    listener,
                    VpbxConfig::new(MANGO_KEY, MANGO_SALT, Vpbx::new(office())),
                )
                .await
                .map_err(std::io::Error::other)
            })
            .expect("start the Mango VPBX API emulator");
        let mut product = Product {
            dir,
            port,
            base,
            crm,
            mango,
            plan,
            crm_auth,
            settings: settings.to_string(),
            password: String::new(),
            server: None,
            printed_password: None,
            _rt: rt,
        };
        product.write_config();
        // The first start makes the database (and prints a password); then the admin sets
        // their own with the command, as the sign-in page tells them to.
        product.start_server(true);
        let set = product.set_password(PASSWORD);
        product.password = if set {
            PASSWORD.to_string()
        } else {
            product
                .printed_password
                .clone()
                .expect("`callbridge admin set-password` is missing and serve printed no first-start password")
        };
        product
    }

    fn config_path(&self) -> PathBuf {
        self.dir.join("callbridge.toml")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn write_config(&self) {
        let plan = match self.plan {
            Plan::Basic => "basic",
            Plan::Extended => "extended",
        };
        let settings = self.dir.join("settings.toml");
        std::fs::write(&settings, format!("plan = \"{plan}\"\n{}", self.settings))
            .expect("write settings");
        let config = format!(
            "listen = \"127.0.0.1:{port}\"\n\
             public_url = \"{base}\"\n\
             data_dir = \"{data}\"\n\
             admin_token = \"browser-test-admin-token\"\n\
             secret_key = \"{secret_key}\"\n\
             mango_api_url = \"{mango}\"\n\
             directory_refresh_seconds = 60\n\
             allow_insecure_crm_hosts = true\n\
             [processing]\ngrace_seconds = 3\nsettle_seconds = 1\ntick_ms = 50\n\
             [[tenants]]\nid = \"{TENANT}\"\nmango_api_key = \"{MANGO_KEY}\"\n\
             mango_api_salt = \"{MANGO_SALT}\"\nsettings = \"{settings}\"\n\
             [tenants.amocrm]\nbase_url = \"{crm}\"\ntimeout_seconds = 5\n{auth}",
            port = self.port,
            base = self.base,
            // A test's own key for the secrets at rest (the server would make one and warn).
            secret_key = "5eed".repeat(16),
            data = self.data_dir().display(),
            mango = self.mango.base_url(),
            settings = settings.display(),
            crm = self.crm.base_url(),
            auth = match self.crm_auth {
                Crm::OAuth => format!(
                    "client_id = \"{OAUTH_CLIENT_ID}\"\nclient_secret = \"{OAUTH_CLIENT_SECRET}\"\n\
                     redirect_uri = \"{}/amocrm/oauth/callback\"\n",
                    self.base
                ),
                Crm::Connected => "long_lived_token = \"sandbox-token\"\n".to_string(),
            },
        );
        std::fs::write(self.config_path(), config).expect("write the config");
    }

    /// `callbridge admin set-password --data-dir DIR`, the password on standard input. False
    /// when the binary has no such command yet (the first-start password is used instead).
    pub fn set_password(&self, password: &str) -> bool {
        let mut child = Command::new(bin())
            .args(["admin", "set-password", "--data-dir"])
            .arg(self.data_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run callbridge admin set-password");
        // A binary without the command exits before reading: the pipe may be closed then, and
        // its answer below says what happened.
        let _ = child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(format!("{password}\n").as_bytes());
        let out = child.wait_with_output().expect("set-password finished");
        if String::from_utf8_lossy(&out.stderr).contains("unrecognized subcommand") {
            return false;
        }
        assert!(
            out.status.success(),
            "callbridge admin set-password failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        true
    }

    /// Starts `callbridge serve`; `expect_printed_password`: the first start when no password
    /// could be set, which prints the one it makes.
    pub fn start_server(&mut self, expect_printed_password: bool) {
        assert!(self.server.is_none(), "the server is already running");
        let mut child = Command::new(bin())
            .args(["serve", "--config"])
            .arg(self.config_path())
            .env("CALLBRIDGE_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start callbridge serve");
        let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        // The address, the tenants' webhook URLs, the UI's address, then (on a first start
        // without a password) the password made for the admin.
        loop {
            let line = lines
                .next()
                .expect("serve printed its address before exiting")
                .expect("serve's output");
            if let Some((_, password)) = line.split_once("this one was made for you: ") {
                self.printed_password = Some(password.trim().to_string());
                break;
            }
            if line.starts_with("callbridge: listening on ") && !expect_printed_password {
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        self.server = Some(child);
    }

    /// Stops the server (SIGKILL: nothing is saved on the way out) and starts it again on the
    /// same data folder and port.
    pub fn restart(&mut self) {
        if let Some(mut child) = self.server.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.start_server(false);
    }

    /// The webhook base a Mango account posts to for the tenant.
    pub fn webhook_base(&self) -> String {
        format!("{}/mango/{TENANT}", self.base)
    }

    /// Posts a whole signed inbound call answered by the unmapped employee 105 (the events and
    /// summary Mango sends), from `client_phone`; every webhook must be accepted.
    pub fn post_call_of_unmapped_employee(&self, entry: &str, client_phone: &str) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
            - 60;
        let line = "74951234567";
        let ivr = format!("{entry}:ivr");
        let leg = format!("{entry}:105");
        let to_105 = json!({"extension": "105", "number": "sip:user105@vpbx400000001.mangosip.ru", "line_number": line});
        let from = json!({"number": client_phone});
        let from_ivr = json!({"number": client_phone, "taken_from_call_id": ivr});
        let to_line = json!({"number": line, "line_number": line});
        let events = [
            (
                "events/call",
                json!({"entry_id": entry, "call_id": ivr, "timestamp": now, "seq": 1, "call_state": "Appeared", "location": "ivr", "from": from, "to": to_line}),
            ),
            (
                "events/call",
                json!({"entry_id": entry, "call_id": ivr, "timestamp": now + 3, "seq": 2, "call_state": "Disconnected", "location": "ivr", "from": from, "to": to_line, "disconnect_reason": 1100}),
            ),
            (
                "events/call",
                json!({"entry_id": entry, "call_id": leg, "timestamp": now + 3, "seq": 1, "call_state": "Appeared", "location": "abonent", "from": from_ivr, "to": to_105}),
            ),
            (
                "events/call",
                json!({"entry_id": entry, "call_id": leg, "timestamp": now + 7, "seq": 2, "call_state": "Connected", "location": "abonent", "from": from_ivr, "to": to_105}),
            ),
            (
                "events/call",
                json!({"entry_id": entry, "call_id": leg, "timestamp": now + 37, "seq": 3, "call_state": "Disconnected", "location": "abonent", "from": from_ivr, "to": to_105, "disconnect_reason": 1110}),
            ),
            (
                "events/summary",
                json!({"entry_id": entry, "call_direction": 1, "from": from, "to": to_105, "create_time": now, "forward_time": now + 3, "talk_time": now + 7, "end_time": now + 37, "entry_result": 1, "disconnect_reason": 1110, "line_number": line}),
            ),
        ];
        self.post_events(&events);
    }

    /// Posts signed webhooks as Mango does, each of which must be accepted, and tells the Mango
    /// emulator they happened (so its API knows the calls' recordings, as the real PBX would).
    pub fn post_events(&self, events: &[(&str, Value)]) {
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        for (path, body) in events {
            let text = body.to_string();
            if let Ok(callbridge_mango::webhook::Webhook::Event(event)) =
                callbridge_mango::webhook::parse_event(path, &text)
            {
                self.mango.vpbx().observe(&event);
            }
            let status = http
                .post(format!("{}/{path}", self.webhook_base()))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(signed_form(MANGO_KEY, MANGO_SALT, &text))
                .send()
                .expect("post a webhook")
                .status();
            assert_eq!(status.as_u16(), 200, "webhook {path} refused");
        }
    }

    /// Waits until the CRM has a call note for `client_phone`'s call whose responsible user is
    /// `user`, read through the sandbox's amoCRM API as the account's admin would.
    pub fn wait_for_call_note(&self, user: u64, timeout: Duration) -> Value {
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            seen.clear();
            for entity in ["contacts", "leads"] {
                let url = format!(
                    "{}/api/v4/{entity}/notes?filter[note_type][]=call_in&limit=250",
                    self.crm.base_url().trim_end_matches('/')
                );
                let r = http
                    .get(&url)
                    .bearer_auth("sandbox-token")
                    .send()
                    .expect("read the CRM's notes");
                if r.status().as_u16() == 200 {
                    let v: Value = r.json().expect("notes as JSON");
                    seen.extend(
                        v["_embedded"]["notes"]
                            .as_array()
                            .cloned()
                            .unwrap_or_default(),
                    );
                }
                // Leave the account's requests per second to the delivery worker.
                std::thread::sleep(Duration::from_millis(300));
            }
            if let Some(note) = seen
                .iter()
                .find(|n| n["responsible_user_id"].as_u64() == Some(user))
            {
                return note.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no call note on CRM user {user} within {timeout:?}; the CRM has {seen:?}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Sends the browser's cookie-less request, as a script would: the status and `Location`.
    pub fn get_without_session(&self, path: &str) -> (u16, Option<String>) {
        let http = reqwest::blocking::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let r = http
            .get(format!("{}{path}", self.base))
            .send()
            .expect("a request to the server");
        let location = r
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        (r.status().as_u16(), location)
    }
}

impl Drop for Product {
    fn drop(&mut self) {
        if let Some(mut child) = self.server.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn office() -> Staff {
    Staff {
        employees: EMPLOYEES
            .iter()
            .enumerate()
            .map(|(i, (extension, name))| Employee {
                extension: extension.to_string(),
                name: name.to_string(),
                crm_user_id: None,
                mango_user_id: 300_049_000 + i as i64,
                sip: format!("sip:user{extension}@vpbx400000001.mangosip.ru"),
            })
            .collect(),
        groups: Vec::new(),
        lines: vec!["74951234567".into()],
        fallback_crm_user_id: 9000,
    }
}

fn start_crm(rt: &tokio::runtime::Runtime, redirect_uri: &str) -> Sandbox {
    let seed = json!({
        "long_lived_token": "sandbox-token",
        "account": {"id": 31000001, "name": CRM_ACCOUNT, "subdomain": "acme"},
        "users": CRM_USERS.iter().map(|(id, name, email)| json!({"id": id, "name": name, "email": email})).collect::<Vec<_>>(),
        "oauth_clients": [{"client_id": OAUTH_CLIENT_ID, "client_secret": OAUTH_CLIENT_SECRET, "redirect_uri": redirect_uri}],
    });
    let config = SandboxConfig {
        seed: Seed::from_json_str(&seed.to_string()).expect("the CRM sandbox's seed"),
        ..SandboxConfig::default()
    };
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        callbridge_amocrm_sandbox::start(listener, config)
            .await
            .map_err(std::io::Error::other)
    })
    .expect("start the amoCRM sandbox")
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("local address").port()
}
