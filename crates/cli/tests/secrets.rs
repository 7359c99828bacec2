//! Issue 14, items 6, 7, 8, 14 (recordings) and 15 end to end: the real `callbridge serve`
//! binary. Deleting a tenant, scoped card-stream tokens, admin tokens in headers only, secrets
//! encrypted at rest with start-up key checks, expiring recording links.

mod sandboxes;
mod support;

use callbridge_test_support::{drop_postgres_database, fresh_postgres_database};
use sandboxes::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

fn case(name: &str) -> std::path::PathBuf {
    scenarios_dir().join(name)
}

fn tenant(id: &str, case_dir: &Path) -> Tenant {
    Tenant {
        id: id.into(),
        key: format!("{id}-key"),
        salt: format!("{id}-salt-0123456789abcdef-0000000"),
        settings: case_dir.join("settings.toml"),
        amocrm: None,
    }
}

fn admin_json(
    http: &reqwest::blocking::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http.request(method, url).bearer_auth(TOKEN);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().unwrap();
    let status = r.status().as_u16();
    let text = r.text().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

// ---------------------------------------------------------------- item 6: deleting a tenant

fn call_notes(http: &reqwest::blocking::Client, base: &str) -> usize {
    ["contacts", "leads"]
        .iter()
        .map(|entity| {
            let url = format!(
                "{base}/api/v4/{entity}/notes?filter[note_type][]=call_in&filter[note_type][]=call_out&limit=250"
            );
            let r = http.get(&url).bearer_auth("sandbox-token").send().unwrap();
            if r.status().as_u16() == 204 {
                return 0;
            }
            assert!(r.status().is_success(), "{url}: {}", r.status());
            let v: Value = r.json().unwrap();
            v["_embedded"]["notes"].as_array().map_or(0, Vec::len)
        })
        .sum()
}

#[test]
fn a_deleted_tenant_created_again_starts_empty_and_nothing_old_is_delivered() {
    let rt = runtime();
    let dir = temp_dir("secrets-delete");
    let first = case("p1-inbound-direct-mapped");
    let second = case("p1-outbound-mapped-answered");
    let mut t = tenant("acme", &first);
    // The old CRM does not answer: the old tenant's calls stay in its outbox, with their token.
    t.amocrm = Some(
        "base_url = \"http://127.0.0.1:1\"\nlong_lived_token = \"old-crm-token\"\ntimeout_seconds = 1\n"
            .into(),
    );
    let server = Server::start_with(
        &dir,
        std::slice::from_ref(&t),
        &Options {
            settle: Some(1),
            ..Options::default()
        },
    );
    let http = client();
    let lines = lines_of(&first.join("events.jsonl"));
    for line in &lines {
        assert_eq!(post_line(&http, &server.base, &t, line), 200);
    }
    let planned = wait_for_entries(&http, &server.base, "acme", 1, Duration::from_secs(20));
    assert!(!planned.is_empty(), "the old tenant's calls were planned");
    let tenant_url = format!("{}/api/v1/tenants/acme", server.base);
    let old = get(&http, &tenant_url);
    assert!(old["events"].as_i64().unwrap() > 0, "{old}");
    assert!(old["outbox"]["pending"].as_i64().unwrap() > 0, "{old}");
    // More calls, deleted while the processor still holds them open (settle: 1 s).
    for line in lines_of(&second.join("events.jsonl")) {
        assert_eq!(post_line(&http, &server.base, &t, &line), 200);
    }

    let (status, _) = admin_json(&http, reqwest::Method::DELETE, &tenant_url, None);
    assert_eq!(status, 204);
    let (status, _) = admin_json(&http, reqwest::Method::GET, &tenant_url, None);
    assert_eq!(status, 404);

    // Created again with the same id, now with a CRM that answers.
    let sandbox = start_sandbox(
        &rt,
        &BTreeSet::from([1001, 1002, 1003, 2001, 2002]),
        json!({}),
    );
    let (status, created) = admin_json(
        &http,
        reqwest::Method::PUT,
        &tenant_url,
        Some(json!({
            "mango_api_key": t.key,
            "mango_api_salt": t.salt,
            "settings_toml": std::fs::read_to_string(&t.settings).unwrap(),
            "amocrm": {"base_url": sandbox.base_url(), "long_lived_token": "sandbox-token", "timeout_seconds": 5},
        })),
    );
    assert_eq!(status, 201, "created, not changed: {created}");
    let new = get(&http, &tenant_url);
    assert_eq!(new["events"], 0, "{new}");
    assert_eq!(new["entries"], 0, "{new}");
    assert_eq!(new["outbox"]["pending"], 0, "{new}");
    assert_eq!(new["outbox"]["parked"], 0, "{new}");
    // Longer than grace (3 s) and settle (1 s): nothing old is planned or delivered.
    std::thread::sleep(Duration::from_secs(5));
    let entries = get(
        &http,
        &format!("{}/api/v1/entries?tenant=acme", server.base),
    );
    assert_eq!(entries["total"], 0, "{entries}");
    assert_eq!(
        call_notes(&http, &sandbox.base_url()),
        0,
        "an old call reached the new CRM"
    );

    // The new tenant works: the same calls, posted again, are new events for it.
    for line in &lines {
        assert_eq!(post_line(&http, &server.base, &t, line), 200);
    }
    let again = wait_for_entries(
        &http,
        &server.base,
        "acme",
        planned.len(),
        Duration::from_secs(20),
    );
    assert_eq!(again.len(), planned.len());
    drop(server);
}

// ---------------------------------------------------------------- item 7: card-stream tokens

/// Reads a card stream for up to `wait`, or until `cards` card events arrived.
fn read_stream(url: String, cards: usize, wait: Duration) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let http = reqwest::blocking::Client::builder()
            .timeout(wait)
            .build()
            .unwrap();
        let mut r = http.get(url).send().unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let mut seen = String::new();
        let mut buf = [0u8; 4096];
        let start = Instant::now();
        while start.elapsed() < wait && seen.matches("event: card").count() < cards {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
        seen
    })
}

fn mint(http: &reqwest::blocking::Client, base: &str, tenant: &str, body: Value) -> String {
    let (status, v) = admin_json(
        http,
        reqwest::Method::POST,
        &format!("{base}/api/v1/tenants/{tenant}/cards/tokens"),
        Some(body),
    );
    assert_eq!(status, 201, "{v}");
    v["token"].as_str().unwrap().to_string()
}

fn refusal(http: &reqwest::blocking::Client, url: &str) -> (u16, String) {
    let r = http.get(url).send().unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

#[test]
fn a_card_token_streams_its_users_cards_of_its_tenant_only() {
    let dir = temp_dir("secrets-cards");
    let cards = case("r6-card-only-for-mapped");
    let acme = tenant("acme", &cards);
    let beta = tenant("beta", &cards);
    let server = Server::start(&dir, &[acme.clone_for_test(), beta.clone_for_test()], None);
    let http = client();
    let base = &server.base;
    let mine = mint(&http, base, "acme", json!({"crm_user_id": 1001}));
    let other_user = mint(&http, base, "acme", json!({"crm_user_id": 1002}));
    let seen_mine = read_stream(
        format!("{base}/api/v1/cards/stream?token={mine}"),
        2,
        Duration::from_secs(12),
    );
    let seen_other = read_stream(
        format!("{base}/api/v1/cards/stream?token={other_user}"),
        1,
        Duration::from_secs(8),
    );
    std::thread::sleep(Duration::from_millis(500));
    // The same calls in both tenants: beta's user 1001 gets cards too, which acme's token must
    // not show.
    let lines = lines_of(&cards.join("events.jsonl"));
    for line in &lines {
        assert_eq!(post_line(&http, base, &beta, line), 200);
    }
    for line in &lines {
        assert_eq!(post_line(&http, base, &acme, line), 200);
    }
    let mine = seen_mine.join().unwrap();
    assert!(mine.contains("\"action\":\"show\""), "{mine}");
    assert!(mine.contains("\"action\":\"hide\""), "{mine}");
    assert!(mine.contains("\"tenant\":\"acme\""), "{mine}");
    assert!(!mine.contains("\"tenant\":\"beta\""), "{mine}");
    assert!(!mine.contains("\"crm_user_id\":1002"), "{mine}");
    let other = seen_other.join().unwrap();
    assert!(!other.contains("event: card"), "user 1002 saw: {other}");
}

#[test]
fn card_tokens_are_refused_when_expired_changed_or_for_someone_else() {
    let dir = temp_dir("secrets-card-refusals");
    let cards = case("r6-card-only-for-mapped");
    let server = Server::start(
        &dir,
        &[tenant("acme", &cards), tenant("beta", &cards)],
        None,
    );
    let http = client();
    let base = &server.base;
    let stream = format!("{base}/api/v1/cards/stream");

    let short = mint(
        &http,
        base,
        "acme",
        json!({"crm_user_id": 1001, "ttl_seconds": 1}),
    );
    std::thread::sleep(Duration::from_millis(2100));
    let (status, body) = refusal(&http, &format!("{stream}?token={short}"));
    assert_eq!(status, 401);
    assert!(body.contains("expired"), "{body}");

    let good = mint(&http, base, "acme", json!({"crm_user_id": 1001}));
    let forged = good.replacen(".1001.", ".1002.", 1);
    let (status, body) = refusal(&http, &format!("{stream}?token={forged}"));
    assert_eq!(status, 401);
    assert!(body.contains("invalid"), "{body}");
    let (status, body) = refusal(&http, &format!("{stream}?token={good}&crm_user_id=1002"));
    assert_eq!(status, 401);
    assert!(body.contains("another user"), "{body}");
    let (status, body) = refusal(&http, &format!("{stream}?token={good}&tenant=beta"));
    assert_eq!(status, 401);
    assert!(body.contains("another user or tenant"), "{body}");
    let (status, _) = refusal(&http, &stream);
    assert_eq!(status, 401);

    // The admin token: in the header it opens the stream (and the API), in the URL nothing.
    let (status, body) = refusal(&http, &format!("{stream}?crm_user_id=1001&token={TOKEN}"));
    assert_eq!(status, 401);
    assert!(body.contains("header only"), "{body}");
    let (status, body) = refusal(&http, &format!("{base}/api/v1/tenants?token={TOKEN}"));
    assert_eq!(status, 401, "?token= on an admin route: {body}");
    assert!(body.contains("header only"), "{body}");
    let (status, _) = refusal(
        &http,
        &format!("{base}/api/v1/entries?tenant=acme&token={TOKEN}"),
    );
    assert_eq!(status, 401);
    assert_eq!(
        http.get(format!("{base}/api/v1/tenants"))
            .bearer_auth(TOKEN)
            .send()
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    let mut admin_stream = http
        .get(format!("{stream}?crm_user_id=1001"))
        .bearer_auth(TOKEN)
        .timeout(Duration::from_secs(2))
        .send()
        .unwrap();
    assert_eq!(admin_stream.status().as_u16(), 200);
    let _ = admin_stream.read(&mut [0u8; 16]);

    // Minting: a tenant that exists, a lifetime within bounds, the admin token required.
    let url = format!("{base}/api/v1/tenants/acme/cards/tokens");
    let (status, body) = admin_json(
        &http,
        reqwest::Method::POST,
        &url,
        Some(json!({"crm_user_id": 1001, "ttl_seconds": 8 * 24 * 3600})),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("ttl_seconds"),
        "{body}"
    );
    let (status, _) = admin_json(
        &http,
        reqwest::Method::POST,
        &format!("{base}/api/v1/tenants/nobody/cards/tokens"),
        Some(json!({"crm_user_id": 1001})),
    );
    assert_eq!(status, 404);
    let status = http
        .post(&url)
        .json(&json!({"crm_user_id": 1001}))
        .send()
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(status, 401);
}

#[test]
fn instances_on_one_postgres_accept_each_others_card_tokens() {
    let url = fresh_postgres_database("cardtok");
    // One secret key for both, as scale-out is configured (CALLBRIDGE_SECRET_KEY).
    let options = Options {
        database_url: Some(url.clone()),
        extra: format!("secret_key = \"{}\"", "5a".repeat(32)),
        ..Options::default()
    };
    let cards = case("r6-card-only-for-mapped");
    let t = tenant("acme", &cards);
    let a = Server::start_with(
        &temp_dir("secrets-pg-a"),
        std::slice::from_ref(&t),
        &options,
    );
    let b = Server::start_with(
        &temp_dir("secrets-pg-b"),
        std::slice::from_ref(&t),
        &options,
    );
    let http = client();
    let token = mint(&http, &a.base, "acme", json!({"crm_user_id": 1001}));
    let mut r = http
        .get(format!("{}/api/v1/cards/stream?token={token}", b.base))
        .timeout(Duration::from_secs(2))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "instance b refused a's token");
    let _ = r.read(&mut [0u8; 16]);
    drop((a, b));
    drop_postgres_database(&url);
}

// ---------------------------------------------------------------- item 8: secrets at rest

const SALT: &str = "acme-salt-0123456789abcdef-00000";
const CRM_TOKEN: &str = "crm-long-lived-Vq81Hz";

fn config_text(dir: &Path, extra: &str) -> std::path::PathBuf {
    let settings = case("p1-inbound-direct-mapped").join("settings.toml");
    let text = format!(
        "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nadmin_token = \"{TOKEN}\"\ndirectory_refresh_seconds = 0\nallow_insecure_crm_hosts = true\n{extra}\n\
         [[tenants]]\nid = \"acme\"\nmango_api_key = \"acme-key\"\nmango_api_salt = \"{SALT}\"\nsettings = \"{}\"\n\
         [tenants.amocrm]\nbase_url = \"http://127.0.0.1:1\"\nlong_lived_token = \"{CRM_TOKEN}\"\n",
        dir.join("data").display(),
        settings.display()
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs `serve`: Ok(server output until it listened, then stopped) or Err(its stderr) when it
/// refused to start.
fn serve(dir: &Path, extra: &str, env: &[(&str, &str)]) -> Result<(), String> {
    let config = config_text(dir, extra);
    let mut child = Command::new(bin())
        .args(["serve", "--config"])
        .arg(&config)
        .env("CALLBRIDGE_LOG", "warn")
        .env_remove("CALLBRIDGE_SECRET_KEY")
        .env_remove("CALLBRIDGE_PREVIOUS_SECRET_KEYS")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let start = Instant::now();
    let mut out = String::new();
    let mut buf = [0u8; 1024];
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            assert!(!status.success(), "serve exited 0: {err}");
            return Err(err);
        }
        // Non-blocking enough: serve prints its address at once when it starts.
        if out.contains("listening on") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "serve neither started nor failed"
        );
        match stdout.read(&mut buf) {
            Ok(0) => std::thread::sleep(Duration::from_millis(50)),
            Ok(n) => out.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    let base = out
        .lines()
        .find_map(|l| l.strip_prefix("callbridge: listening on "))
        .unwrap()
        .to_string();
    // The tenant reads back with its secrets (masked): the key opened them.
    let r = client()
        .get(format!("{base}/api/v1/tenants/acme"))
        .bearer_auth(TOKEN)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = r.json().unwrap();
    assert_eq!(v["amocrm"]["long_lived_token"], "***Hz", "{v}");
    child.kill().unwrap();
    child.wait().unwrap();
    Ok(())
}

fn database_bytes(dir: &Path) -> String {
    ["callbridge.db", "callbridge.db-wal"]
        .iter()
        .map(|f| {
            String::from_utf8_lossy(&std::fs::read(dir.join("data").join(f)).unwrap_or_default())
                .into_owned()
        })
        .collect()
}

#[test]
fn secrets_are_encrypted_at_rest_under_a_generated_key_file() {
    let dir = temp_dir("secrets-at-rest");
    serve(&dir, "", &[]).unwrap();
    let bytes = database_bytes(&dir);
    assert!(bytes.contains("acme-key"), "the database was read");
    assert!(!bytes.contains(SALT), "the salt is in clear");
    assert!(!bytes.contains(CRM_TOKEN), "the CRM token is in clear");
    let key_file = dir.join("data").join("secret.key");
    let text = std::fs::read_to_string(&key_file).unwrap();
    assert_eq!(text.trim().len(), 64, "a generated key of 32 bytes in hex");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
    // The same key file opens them again.
    serve(&dir, "", &[]).unwrap();
}

#[test]
fn a_missing_or_wrong_key_refuses_to_start_naming_the_setting() {
    let dir = temp_dir("secrets-missing");
    serve(&dir, "", &[]).unwrap();
    let key_file = dir.join("data").join("secret.key");
    let key = std::fs::read_to_string(&key_file).unwrap();
    std::fs::remove_file(&key_file).unwrap();
    let err = serve(&dir, "", &[]).unwrap_err();
    assert!(err.contains("no secret key is configured"), "{err}");
    assert!(err.contains("CALLBRIDGE_SECRET_KEY"), "{err}");
    assert!(
        !key_file.exists(),
        "no new key may be made over encrypted secrets"
    );

    let wrong = "ab".repeat(32);
    let err = serve(&dir, "", &[("CALLBRIDGE_SECRET_KEY", &wrong)]).unwrap_err();
    assert!(err.contains("is not the one"), "{err}");
    assert!(err.contains("CALLBRIDGE_SECRET_KEY"), "{err}");
    assert!(!err.contains(&wrong), "the key is shown: {err}");

    let err = serve(&dir, "", &[("CALLBRIDGE_SECRET_KEY", "too-short")]).unwrap_err();
    assert!(err.contains("32 bytes"), "{err}");
    assert!(!err.contains("too-short"), "{err}");

    // The right key, from the environment, starts it.
    serve(&dir, "", &[("CALLBRIDGE_SECRET_KEY", key.trim())]).unwrap();
}

#[test]
fn rotation_re_encrypts_under_the_new_key() {
    let dir = temp_dir("secrets-rotate");
    let old = "11".repeat(32);
    let new = "22".repeat(32);
    serve(&dir, &format!("secret_key = \"{old}\""), &[]).unwrap();
    serve(
        &dir,
        "",
        &[
            ("CALLBRIDGE_SECRET_KEY", &new),
            ("CALLBRIDGE_PREVIOUS_SECRET_KEYS", &old),
        ],
    )
    .unwrap();
    // The new key alone opens everything; the old one is refused.
    serve(&dir, "", &[("CALLBRIDGE_SECRET_KEY", &new)]).unwrap();
    let err = serve(&dir, "", &[("CALLBRIDGE_SECRET_KEY", &old)]).unwrap_err();
    assert!(err.contains("is not the one"), "{err}");
    let bytes = database_bytes(&dir);
    assert!(!bytes.contains(SALT) && !bytes.contains(CRM_TOKEN));
}

// ------------------------------------------------- items 14 and 15: recording links

#[test]
fn recording_links_expire_and_do_not_tell_which_tenants_exist() {
    let dir = temp_dir("secrets-recordings");
    let t = tenant("acme", &case("p1-inbound-direct-mapped"));
    let server = Server::start(&dir, std::slice::from_ref(&t), None);
    let http = client();
    let base = &server.base;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let answer = |url: &str| {
        let r = http.get(url).send().unwrap();
        (r.status().as_u16(), r.text().unwrap())
    };
    // An unproven caller: the same answer for a tenant that exists and one that does not.
    let sig = "0".repeat(64);
    let known = answer(&format!(
        "{base}/recordings/acme/rec-1?e={}&s={sig}",
        now + 60
    ));
    let unknown = answer(&format!(
        "{base}/recordings/made-up/rec-1?e={}&s={sig}",
        now + 60
    ));
    assert_eq!(known.0, 403);
    assert_eq!(known, unknown);
    let bare_known = answer(&format!("{base}/recordings/acme/rec-1"));
    let bare_unknown = answer(&format!("{base}/recordings/made-up/rec-1"));
    assert_eq!(bare_known, bare_unknown);

    // A genuine link whose time is up: 410 Gone, saying so.
    let expired = callbridge_server::recordings::link(base, "acme", "rec-1", &t.salt, now - 1);
    let (status, body) = answer(&expired);
    assert_eq!(status, 410, "{body}");
    assert!(body.contains("expired"), "{body}");
    // Moving its expiry on breaks the signature.
    let prolonged = expired.replace(&format!("/{}/", now - 1), &format!("/{}/", now + 3600));
    assert_ne!(prolonged, expired);
    assert_eq!(answer(&prolonged).0, 403);
}

trait CloneForTest {
    fn clone_for_test(&self) -> Tenant;
}

impl CloneForTest for Tenant {
    fn clone_for_test(&self) -> Tenant {
        Tenant {
            id: self.id.clone(),
            key: self.key.clone(),
            salt: self.salt.clone(),
            settings: self.settings.clone(),
            amocrm: self.amocrm.clone(),
        }
    }
}
