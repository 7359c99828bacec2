//! The operator's commands run as the real binary: `check-config` (the effective configuration
//! with secrets hidden, and a bad file refused naming the key as written), the weak admin token
//! refused at start-up, and logs without colour codes when not on a terminal.

mod support;

use std::path::Path;
use std::process::{Command, Output};
use support::{bin, temp_dir};

const STRONG_TOKEN: &str = "9f2c47e1b8a05d3e6f71c2a94b8d0e53";
const DB_PASSWORD: &str = "pg-Pw-51c9e2aa";
const MANGO_KEY: &str = "mango-key-7e3d1f09";
const MANGO_SALT: &str = "0123456789abcdef0123456789abcdef-q5z7";
const CRM_TOKEN: &str = "crm-long-lived-77aa19c3";

fn run(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .env_remove("CALLBRIDGE_ADMIN_TOKEN")
        .env_remove("CALLBRIDGE_DATABASE_URL")
        .env_remove("CALLBRIDGE_LOG")
        .output()
        .expect("callbridge runs")
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn write_config(dir: &Path, body: &str) -> String {
    let path = dir.join("callbridge.toml");
    std::fs::write(&path, body).unwrap();
    path.display().to_string()
}

#[test]
fn check_config_prints_the_effective_configuration_without_secrets() {
    let dir = temp_dir("check-config-good");
    let file = write_config(
        &dir,
        &format!(
            "admin_token = \"{STRONG_TOKEN}\"\n\
             database_url = \"postgres://callbridge:{DB_PASSWORD}@db.internal:5432/callbridge\"\n\
             listen = \"0.0.0.0:8080\"\n\
             [[tenants]]\nid = \"acme\"\nmango_api_key = \"{MANGO_KEY}\"\n\
             mango_api_salt = \"{MANGO_SALT}\"\n\
             [tenants.amocrm]\nbase_url = \"https://acme.amocrm.ru\"\n\
             long_lived_token = \"{CRM_TOKEN}\"\n"
        ),
    );
    let output = run(&["check-config", "--config", &file]);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("configuration OK"), "{stdout}");
    assert!(stdout.contains("listen = 0.0.0.0:8080"), "{stdout}");
    assert!(
        stdout.contains("store = PostgreSQL postgres://callbridge:***@db.internal:5432/callbridge"),
        "{stdout}"
    );
    assert!(stdout.contains("tenants[0].id = acme"), "{stdout}");
    assert!(stdout.contains("acme.amocrm.ru"), "{stdout}");
    assert!(
        stdout.contains("processing.grace_seconds = 120"),
        "{stdout}"
    );
    let all = format!("{stdout}{stderr}");
    for secret in [STRONG_TOKEN, DB_PASSWORD, MANGO_KEY, MANGO_SALT, CRM_TOKEN] {
        assert!(!all.contains(secret), "{secret} shown:\n{all}");
        // Not even a tail of it.
        assert!(
            !all.contains(&secret[secret.len() - 4..]),
            "{secret}'s tail shown:\n{all}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn check_config_refuses_a_bad_file_naming_the_key_as_written_and_no_secret() {
    let dir = temp_dir("check-config-bad");
    let cases: &[(&str, String, &str)] = &[
        (
            "missing token",
            "listen = \"127.0.0.1:0\"\n".into(),
            "admin_token: missing",
        ),
        (
            "wrong type",
            format!("admin_token = \"{STRONG_TOKEN}\"\nmax_body_bytes = \"{DB_PASSWORD}\"\n"),
            "max_body_bytes: expected",
        ),
        (
            "unknown key",
            format!("admin_token = \"{STRONG_TOKEN}\"\nlisten_on = \"{DB_PASSWORD}\"\n"),
            "listen_on: unknown key",
        ),
        (
            "tenant key",
            format!(
                "admin_token = \"{STRONG_TOKEN}\"\n[[tenants]]\nid = \"acme\"\n\
                 mango_api_key = {{ k = \"{MANGO_KEY}\" }}\nmango_api_salt = \"{MANGO_SALT}\"\n"
            ),
            "tenants[0].mango_api_key",
        ),
        (
            "a float for an integer",
            format!("admin_token = \"{STRONG_TOKEN}\"\n[processing]\ngrace_seconds = 1.5\n"),
            "processing.grace_seconds: expected an integer, found a float",
        ),
        (
            "secret of a wrong type",
            format!("admin_token = [\"{STRONG_TOKEN}\"]\n"),
            "admin_token: expected",
        ),
    ];
    for (name, body, expected) in cases {
        let file = write_config(&dir, body);
        let output = run(&["check-config", "--config", &file]);
        let (stdout, stderr) = text(&output);
        assert!(!output.status.success(), "{name}: accepted\n{stdout}");
        assert!(stderr.contains(expected), "{name}: {stderr}");
        assert!(stderr.contains(&file), "{name} names the file: {stderr}");
        assert!(
            !stderr.contains("default."),
            "{name}: internal prefix: {stderr}"
        );
        for secret in [STRONG_TOKEN, DB_PASSWORD, MANGO_KEY, MANGO_SALT] {
            assert!(
                !stdout.contains(secret) && !stderr.contains(secret),
                "{name}: {secret} shown: {stdout}{stderr}"
            );
        }
    }
    // Keys from the environment are named as the variable.
    let output = Command::new(bin())
        .arg("check-config")
        .env("CALLBRIDGE_ADMIN_TOKEN", STRONG_TOKEN)
        .env("CALLBRIDGE_LISTEN_ON", "x")
        .env("CALLBRIDGE_PROCESSING", "5")
        .output()
        .unwrap();
    let (_, stderr) = text(&output);
    assert!(!output.status.success());
    assert!(
        stderr.contains("CALLBRIDGE_LISTEN_ON: unknown key"),
        "{stderr}"
    );
    assert!(!stderr.contains("CALLBRIDGE_LISTEN_ON."), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_weak_admin_token_is_refused_at_start_up_with_the_reason() {
    let dir = temp_dir("weak-token");
    for (token, reason) in [
        ("change-me-please", "well-known"),
        ("Admin", "too short"),
        ("password-password-1", "well-known"),
        ("aaaaaaaaaaaaaaaaaaaaaaaa", "too few different characters"),
        ("short-token-1", "too short"),
    ] {
        let file = write_config(
            &dir,
            &format!("admin_token = \"{token}\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"data\"\n"),
        );
        for command in ["serve", "check-config"] {
            let output = run(&[command, "--config", &file]);
            let (stdout, stderr) = text(&output);
            assert!(
                !output.status.success(),
                "{command} {token}: started\n{stdout}"
            );
            assert!(
                stderr.contains("admin_token"),
                "{command} {token}: {stderr}"
            );
            assert!(stderr.contains(reason), "{command} {token}: {stderr}");
            assert!(stderr.contains("openssl rand -hex 32"), "{stderr}");
            assert!(
                !stderr.contains(token),
                "{command}: the token shown: {stderr}"
            );
        }
    }
    // The example's placeholder is refused too, and a strong token given in the environment
    // (as the README says) overrides it.
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/callbridge.toml");
    let output = run(&["check-config", "--config", &example.display().to_string()]);
    assert!(!output.status.success());
    assert!(text(&output).1.contains("admin_token: a well-known value"));
    let output = Command::new(bin())
        .args(["check-config", "--config", &example.display().to_string()])
        .env("CALLBRIDGE_ADMIN_TOKEN", STRONG_TOKEN)
        .output()
        .unwrap();
    assert!(output.status.success(), "{:?}", text(&output));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `serve` on a fresh data folder with one tenant, its stdout and stderr pipes (not terminals);
/// returns once it listens, with its base URL.
fn start_serve(dir: &Path, extra_args: &[&str]) -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader};
    let file = write_config(
        dir,
        &format!(
            "admin_token = \"{STRONG_TOKEN}\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"data\"\n\
             directory_refresh_seconds = 0\n\
             [[tenants]]\nid = \"acme\"\nmango_api_key = \"{MANGO_KEY}\"\n\
             mango_api_salt = \"{MANGO_SALT}\"\n"
        ),
    );
    let mut child = Command::new(bin())
        .args(["serve", "--config", &file])
        .args(extra_args)
        .env_remove("CALLBRIDGE_LOG")
        .env_remove("CALLBRIDGE_LOG_FORMAT")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let base = line
        .trim()
        .strip_prefix("callbridge: listening on ")
        .unwrap_or_else(|| panic!("not started: {line}"))
        .to_string();
    // The rest of stdout is drained so the service never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    (child, base)
}

/// Stops the service (SIGTERM, so it logs its shutdown) and returns what it logged.
fn stop_serve(mut child: std::process::Child) -> String {
    use std::io::Read;
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let mut logged = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logged)
        .unwrap();
    logged
}

#[test]
fn logs_on_a_pipe_have_no_colour_codes_and_json_lines_parse() {
    let dir = temp_dir("logs-text");
    let (child, _) = start_serve(&dir, &[]);
    let logged = stop_serve(child);
    assert!(logged.contains("INFO"), "something was logged: {logged}");
    assert!(
        !logged.contains('\u{1b}'),
        "escape codes on a pipe: {logged:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();

    let dir = temp_dir("logs-json");
    let (child, _) = start_serve(&dir, &["--log-format", "json"]);
    let logged = stop_serve(child);
    let lines: Vec<&str> = logged.lines().collect();
    assert!(lines.len() >= 2, "{logged}");
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not one JSON object a line ({e}): {line}"));
        assert!(
            v["timestamp"].is_string() && v["level"].is_string(),
            "{line}"
        );
    }
    assert!(
        lines.iter().any(|l| l.contains("shutting down")),
        "the shutdown is logged: {logged}"
    );
    assert!(!logged.contains(STRONG_TOKEN) && !logged.contains(MANGO_SALT));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn backup_copies_a_live_store_and_refuses_postgres() {
    let dir = temp_dir("backup");
    let (child, base) = start_serve(&dir, &[]);
    let ready = reqwest::blocking::get(format!("{base}/readyz")).unwrap();
    assert!(ready.status().is_success());
    let copy_dir = dir.join("restore");
    std::fs::create_dir_all(&copy_dir).unwrap();
    let to = copy_dir.join("callbridge.db");
    // While the service runs and holds the data folder's lock.
    let output = run(&[
        "backup",
        "--data-dir",
        &dir.join("data").display().to_string(),
        "--to",
        &to.display().to_string(),
    ]);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("backed up"), "{stdout}");
    assert!(
        stdout.contains("secret.key"),
        "reminds of the key: {stdout}"
    );
    let _ = stop_serve(child);
    // The copy is a store: the tenant the service created is in it.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let tenants = runtime.block_on(async {
        let store = callbridge_store::Store::open_sqlite(&copy_dir)
            .await
            .expect("the backup opens as a store");
        store.config_tenant_ids().await.unwrap()
    });
    assert_eq!(tenants, ["acme"]);

    let output = run(&[
        "backup",
        "--database-url",
        "postgres://callbridge:pw@127.0.0.1/callbridge",
        "--to",
        &dir.join("pg.db").display().to_string(),
    ]);
    let (_, stderr) = text(&output);
    assert!(!output.status.success());
    assert!(stderr.contains("pg_dump"), "{stderr}");
    assert!(!dir.join("pg.db").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_tenant_without_crm_or_with_refused_webhooks_is_warned_about_at_start_and_in_readyz() {
    let dir = temp_dir("tenant-warnings");
    let (child, base) = start_serve(&dir, &[]);
    let readyz = || {
        let r = reqwest::blocking::get(format!("{base}/readyz")).unwrap();
        assert_eq!(r.status(), 200, "warnings do not make the service unready");
        r.text().unwrap()
    };
    let body = readyz();
    assert!(body.starts_with("ready"), "{body}");
    assert!(
        body.contains("warning: tenant acme: no CRM connection"),
        "{body}"
    );
    // A webhook signed with the wrong salt: refused, and then named in /readyz.
    let json = r#"{"entry_id":"x","call_id":"y","timestamp":1700000000,"seq":1,"call_state":"Appeared","location":"ivr","from":{"number":"79161234567"},"to":{"number":"74950000000"}}"#;
    let refused = reqwest::blocking::Client::new()
        .post(format!("{base}/mango/acme/events/call"))
        .form(&[
            ("vpbx_api_key", MANGO_KEY),
            (
                "sign",
                "0000000000000000000000000000000000000000000000000000000000000000",
            ),
            ("json", json),
        ])
        .send()
        .unwrap();
    assert_eq!(refused.status(), 403);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let body = readyz();
        if body.contains("webhooks refused") {
            assert!(body.contains("tenant acme: 1 webhooks refused"), "{body}");
            assert!(body.contains("Mango API key and salt"), "{body}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no refusal warning: {body}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // The container's health check.
    let probe = run(&["probe", "--url", &format!("{base}/readyz")]);
    assert!(probe.status.success(), "{:?}", text(&probe));
    assert!(
        text(&probe).0.starts_with("200 ready"),
        "{:?}",
        text(&probe)
    );
    let logged = stop_serve(child);
    let probe = run(&[
        "probe",
        "--url",
        &format!("{base}/readyz"),
        "--timeout-seconds",
        "2",
    ]);
    assert!(!probe.status.success(), "a stopped service is not ready");
    assert!(
        logged
            .lines()
            .any(|l| l.contains("WARN") && l.contains("tenant acme: no CRM connection")),
        "a warning at start-up: {logged}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Every file under `dir` ending in `.rs`.
fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn the_configuration_reference_names_every_metric_key_and_variable() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let reference = std::fs::read_to_string(root.join("docs/configuration.md")).unwrap();
    // Metrics: every name the service records.
    let mut files = Vec::new();
    rust_files(&root.join("crates/server/src"), &mut files);
    rust_files(&root.join("crates/store/src"), &mut files);
    let mut metrics = std::collections::BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for macro_name in ["counter!(", "gauge!(", "histogram!("] {
            for part in text.split(macro_name).skip(1) {
                let part = part.trim_start();
                if let Some(name) = part.strip_prefix('"').and_then(|p| p.split('"').next()) {
                    metrics.insert(name.to_string());
                }
            }
        }
    }
    assert!(metrics.len() >= 10, "metrics found: {metrics:?}");
    for metric in &metrics {
        assert!(
            reference.contains(metric.as_str()),
            "docs/configuration.md lacks {metric}"
        );
    }
    // Keys: every key of the annotated example, set or commented out.
    let example = std::fs::read_to_string(root.join("examples/callbridge.toml")).unwrap();
    for line in example.lines() {
        let line = line.trim_start_matches(['#', ' ']);
        let Some((key, _)) = line.split_once(" = ") else {
            continue;
        };
        let key = key.trim();
        if key.chars().all(|c| c.is_ascii_lowercase() || c == '_') && !key.is_empty() {
            assert!(
                reference.contains(&format!("`{key}`"))
                    || reference.contains(&format!("`processing.{key}`"))
                    || reference.contains(&format!("`reconcile.{key}`")),
                "docs/configuration.md lacks the key {key}"
            );
        }
    }
    // Variables: named in the reference and in --help.
    let help = Command::new(bin()).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for variable in [
        "CALLBRIDGE_LOG",
        "CALLBRIDGE_LOG_FORMAT",
        "CALLBRIDGE_ADMIN_TOKEN",
        "CALLBRIDGE_DATABASE_URL",
    ] {
        assert!(
            reference.contains(variable),
            "docs/configuration.md lacks {variable}"
        );
        assert!(help.contains(variable), "--help lacks {variable}");
    }
    assert!(help.contains("docs/configuration.md"), "{help}");
}
