//! End-to-end tests of `callbridge serve` against a hostile client: tenant-id probing on the
//! webhook routes, implausible payloads, and slow (slowloris) connections under a low
//! descriptor limit. The real binary on a loopback port, every loop bounded.

mod support;

use serde_json::Value;
use std::time::Duration;
use support::*;

const FORM: &str = "application/x-www-form-urlencoded";

fn acme(dir: &std::path::Path) -> Tenant {
    let settings = dir.join("settings.toml");
    std::fs::write(&settings, "").unwrap();
    Tenant {
        id: "acme".into(),
        key: "acme-key".into(),
        salt: "acme-salt-0000000000000000000000".into(),
        settings,
        amocrm: None,
    }
}

/// Everything a caller sees of an answer, but the `date` header.
fn seen(response: reqwest::blocking::Response) -> (u16, Vec<(String, String)>, String) {
    let status = response.status().as_u16();
    let mut headers: Vec<(String, String)> = response
        .headers()
        .iter()
        .filter(|(name, _)| name.as_str() != "date")
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("?").to_string()))
        .collect();
    headers.sort();
    (status, headers, response.text().unwrap())
}

const CALL: &str = r#"{"entry_id":"E1","call_id":"c1","timestamp":1733000000,"seq":1,"call_state":"Appeared","location":"ivr","from":{"number":"74950000000"},"to":{"extension":"101"}}"#;

#[test]
fn webhook_answers_do_not_tell_whether_a_tenant_exists() {
    let dir = temp_dir("hostile-probe");
    let tenant = acme(&dir);
    let server = Server::start(&dir, std::slice::from_ref(&tenant), None);
    let http = client();
    let wrong_sign = form(&[
        ("vpbx_api_key", "acme-key-guess"),
        ("sign", "00"),
        ("json", CALL),
    ]);
    // (what, body, content type) as an attacker without the key would send them.
    let requests: Vec<(&str, String, &str)> = vec![
        ("empty body", String::new(), FORM),
        ("empty body, no content type", String::new(), ""),
        (
            "wrong content type",
            format!("{{\"json\": {CALL}}}"),
            "application/json",
        ),
        ("no key", form(&[("sign", "00"), ("json", CALL)]), FORM),
        ("no json", form(&[("vpbx_api_key", "acme-key-guess")]), FORM),
        ("wrong key", wrong_sign.clone(), FORM),
        (
            "a key of another tenant, signed",
            signed_form("other-key", "other-salt", CALL),
            FORM,
        ),
        ("garbage form", "%%%&&&===".into(), FORM),
    ];
    let paths = ["", "/", "/events/call", "/ping", "/events/summary/"];
    let mut compared = 0;
    for path in paths {
        for (what, body, content_type) in &requests {
            let answer = |id: &str| {
                let mut request = http
                    .post(format!("{}/mango/{id}{path}", server.base))
                    .body(body.clone());
                if !content_type.is_empty() {
                    request = request.header("content-type", *content_type);
                }
                seen(request.send().unwrap())
            };
            let known = answer("acme");
            for unknown in ["acme2", "no-such-tenant", "Not_A_Valid_Id"] {
                assert_eq!(
                    known,
                    answer(unknown),
                    "{what} to /mango/{{id}}{path}: acme vs {unknown}"
                );
                compared += 1;
            }
        }
    }
    assert_eq!(compared, paths.len() * requests.len() * 3);
    // Mango's connection check is acknowledged for any id (Mango needs the 200 for a real one).
    let ping = http
        .post(format!("{}/mango/anything-at-all/", server.base))
        .header("content-type", FORM)
        .send()
        .unwrap();
    assert_eq!(ping.status().as_u16(), 200);
    // The key still opens the door: a signed event of the real tenant is stored.
    let stored = http
        .post(format!("{}/mango/acme/events/call", server.base))
        .header("content-type", FORM)
        .body(signed_form(&tenant.key, &tenant.salt, CALL))
        .send()
        .unwrap();
    assert_eq!(stored.status().as_u16(), 200);
    let tenant_view = get(&http, &format!("{}/api/v1/tenants/acme", server.base));
    assert_eq!(tenant_view["events"], 1, "{tenant_view}");
}

#[test]
fn implausible_events_get_a_400_naming_field_and_bound_and_are_not_stored() {
    let dir = temp_dir("hostile-implausible");
    let tenant = acme(&dir);
    let server = Server::start(&dir, std::slice::from_ref(&tenant), None);
    let http = client();
    let post = |json: &str| {
        let r = http
            .post(format!("{}/mango/acme/events/call", server.base))
            .header("content-type", FORM)
            .body(signed_form(&tenant.key, &tenant.salt, json))
            .send()
            .unwrap();
        let status = r.status().as_u16();
        (status, r.text().unwrap())
    };
    let with = |field: &str, value: Value| {
        let mut v: Value = serde_json::from_str(CALL).unwrap();
        v[field] = value;
        v.to_string()
    };
    let cases: Vec<(String, &str, &str)> = vec![
        (
            with("timestamp", (-1).into()),
            "\"timestamp\"",
            "2000-01-01",
        ),
        (with("timestamp", 0.into()), "\"timestamp\"", "2000-01-01"),
        (
            with("timestamp", (1i64 << 62).into()),
            "\"timestamp\"",
            "more than a day",
        ),
        (
            with("entry_id", "e".repeat(60_000).into()),
            "\"entry_id\"",
            "longer than 128 characters",
        ),
        (with("call_id", "c\u{0}1".into()), "\"call_id\"", "U+0000"),
        (
            with("to", serde_json::json!({"extension": "10\u{1b}1"})),
            "\"to.extension\"",
            "U+001B",
        ),
    ];
    for (json, field, bound) in &cases {
        let (status, body) = post(json);
        assert_eq!(status, 400, "{field}: {body}");
        let problem: Value = serde_json::from_str(&body).unwrap();
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains(field) && detail.contains(bound), "{detail}");
        assert!(body.len() < 400, "the value is not echoed: {body}");
    }
    let view = get(&http, &format!("{}/api/v1/tenants/acme", server.base));
    assert_eq!(view["events"], 0, "nothing implausible was stored: {view}");
    // An old but plausible recorded call still goes in.
    assert_eq!(post(CALL).0, 200);
    let view = get(&http, &format!("{}/api/v1/tenants/acme", server.base));
    assert_eq!(view["events"], 1, "{view}");
}

#[test]
fn simulate_refuses_the_same_implausible_input_but_has_no_clock_bound() {
    let dir = temp_dir("hostile-simulate");
    let settings = dir.join("settings.toml");
    std::fs::write(&settings, "").unwrap();
    let run = |json: &str| {
        let events = dir.join("events.jsonl");
        std::fs::write(
            &events,
            format!("{{\"path\":\"events/call\",\"json\":{json}}}\n"),
        )
        .unwrap();
        std::process::Command::new(bin())
            .args(["simulate", "--settings"])
            .arg(&settings)
            .arg("--events")
            .arg(&events)
            .output()
            .unwrap()
    };
    let out = run(&CALL.replace("1733000000", "-1"));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("events.jsonl:1")
            && stderr.contains("\"timestamp\"")
            && stderr.contains("2000-01-01"),
        "{stderr}"
    );
    let out = run(&CALL.replace("\"E1\"", "\"E\\u00001\""));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("U+0000"));
    // A replay has no "now": a far-future time is the file's business.
    let out = run(&CALL.replace("1733000000", "4102444800"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts `callbridge serve` under `prlimit --nofile=N:N`, with `extra` top-level config lines.
fn start_with_descriptor_limit(
    dir: &std::path::Path,
    tenant: &Tenant,
    nofile: u32,
    extra: &str,
) -> Server {
    use std::io::{BufRead, BufReader};
    let config = format!(
        "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nadmin_token = \"{TOKEN}\"\ndirectory_refresh_seconds = 0\n{extra}\n\
         [[tenants]]\nid = \"{}\"\nmango_api_key = \"{}\"\nmango_api_salt = \"{}\"\nsettings = \"{}\"\n",
        dir.join("data").display(),
        tenant.id,
        tenant.key,
        tenant.salt,
        tenant.settings.display(),
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = std::process::Command::new("prlimit")
        .arg(format!("--nofile={nofile}:{nofile}"))
        .arg("--")
        .arg(bin())
        .args(["serve", "--config"])
        .arg(&path)
        .env("CALLBRIDGE_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("start callbridge serve under prlimit");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let base = loop {
        let line = lines.next().expect("serve printed its address").unwrap();
        if let Some(addr) = line.strip_prefix("callbridge: listening on ") {
            break addr.to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Server { child, base }
}

#[test]
fn slow_half_sent_connections_do_not_starve_health_checks_or_webhooks() {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Instant;
    const SLOW: usize = 300;
    const HEADER_TIMEOUT: Duration = Duration::from_millis(1000);
    let dir = temp_dir("hostile-slowloris");
    let tenant = acme(&dir);
    // 256 descriptors: fewer than the slow connections, as in the attack that was filed.
    let server = start_with_descriptor_limit(
        &dir,
        &tenant,
        256,
        &format!("header_timeout_ms = {}", HEADER_TIMEOUT.as_millis()),
    );
    let addr = server.base.trim_start_matches("http://").to_string();
    let mut slow = Vec::with_capacity(SLOW);
    for _ in 0..SLOW {
        let mut stream = TcpStream::connect(&addr).unwrap();
        // Half a request head, and then nothing.
        stream
            .write_all(b"POST /mango/acme/events/call HTTP/1.1\r\nHost: x\r\nContent-Type: applic")
            .unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        slow.push(stream);
    }
    let opened = Instant::now();
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let health = http.get(format!("{}/healthz", server.base)).send().unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let webhook = http
        .post(format!("{}/mango/acme/events/call", server.base))
        .header("content-type", FORM)
        .body(signed_form(&tenant.key, &tenant.salt, CALL))
        .send()
        .unwrap();
    assert_eq!(webhook.status().as_u16(), 200);
    // The slow connections hold every slot for at most one header timeout each round: two
    // rounds at 256 descriptors (a cap of 192), then the health check and webhook get theirs.
    let answered = opened.elapsed();
    assert!(
        answered < HEADER_TIMEOUT * 2 + Duration::from_secs(2),
        "answered only after {answered:?}"
    );
    // And every slow connection was closed by the server (EOF or reset), none left hanging.
    let mut byte = [0u8; 1];
    for (i, stream) in slow.iter_mut().enumerate() {
        match stream.read(&mut byte) {
            Ok(0) | Err(_) if opened.elapsed() < Duration::from_secs(15) => {}
            Ok(0) | Err(_) => panic!(
                "slow connection {i} closed only after {:?}",
                opened.elapsed()
            ),
            Ok(_) => {
                // hyper may answer a timed-out head with a 408 before closing: read to the end.
                let mut rest = Vec::new();
                let _ = stream.read_to_end(&mut rest);
            }
        }
    }
    assert!(
        opened.elapsed() < Duration::from_secs(15),
        "{:?}",
        opened.elapsed()
    );
    let view = get(&http, &format!("{}/api/v1/tenants/acme", server.base));
    assert_eq!(view["events"], 1, "{view}");
}

/// Issue 14, item 15: a salt shorter than Mango's 32 characters (a 1-character one was accepted)
/// or with a stray space or newline is refused on the admin API, naming the field and never the
/// value; the tenant is not created.
#[test]
fn a_short_or_spaced_salt_is_refused_by_the_admin_api_without_echoing_it() {
    let dir = temp_dir("hostile-salt");
    let server = Server::start(&dir, &[], None);
    let http = client();
    let put = |salt: &str| {
        http.put(format!("{}/api/v1/tenants/beta", server.base))
            .bearer_auth(TOKEN)
            .json(&serde_json::json!({"mango_api_key": "beta-key", "mango_api_salt": salt}))
            .send()
            .unwrap()
    };
    for (salt, expected) in [
        ("q", "must be at least 32 characters"),
        ("0123456789abcdef", "must be at least 32 characters"),
        (
            "0123456789abcdef 0123456789abcdef",
            "must not contain spaces or control characters",
        ),
        (
            "0123456789abcdef0123456789abcdef\n",
            "must not contain spaces or control characters",
        ),
    ] {
        let (status, _, body) = seen(put(salt));
        assert_eq!(status, 400, "{salt:?}: {body}");
        assert!(body.contains("mango_api_salt"), "{body}");
        assert!(body.contains(expected), "{salt:?}: {body}");
        if salt.len() >= 8 {
            assert!(!body.contains(salt.trim()), "the value is echoed: {body}");
        }
    }
    let missing = http
        .get(format!("{}/api/v1/tenants/beta", server.base))
        .bearer_auth(TOKEN)
        .send()
        .unwrap();
    assert_eq!(missing.status().as_u16(), 404, "nothing was created");
    let (status, _, body) = seen(put("0123456789abcdef0123456789abcdef"));
    assert_eq!(status, 201, "Mango's length is accepted: {body}");
}
