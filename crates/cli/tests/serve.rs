//! End-to-end tests of `callbridge serve`: the real binary on a random port, correctly signed
//! webhooks over HTTP, plans read back through the admin API and compared with `simulate` on
//! the same input.

mod support;

use callbridge_test_support::{drop_postgres_database, fresh_postgres_database};
use serde_json::Value;
use std::io::Read;
use std::time::{Duration, Instant};
use support::*;

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
            amocrm: None,
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

/// Tenant `acme` (key `acme-key`, salt `acme-salt`) with a scenario's settings.
fn acme(case: &std::path::Path) -> Tenant {
    Tenant {
        id: "acme".into(),
        key: "acme-key".into(),
        salt: "acme-salt-0000000000000000000000".into(),
        settings: case.join("settings.toml"),
        amocrm: None,
    }
}

#[test]
fn bad_requests_get_their_status_and_store_nothing() {
    let dir = temp_dir("bad");
    let case = scenarios_dir().join("r6-card-only-for-mapped");
    let t = acme(&case);
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
    let good_sign = callbridge_mango::sign("acme-key", &json, "acme-salt-0000000000000000000000");
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
        .body(signed_form(
            "acme-key",
            "acme-salt-0000000000000000000000",
            &json,
        ))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    // Malformed form: no key field.
    let (s, ct, body) = post(form(&[("sign", &good_sign), ("json", &json)]), form_ct);
    assert_eq!((s, ct.as_str()), (400, "application/problem+json"));
    assert!(body.contains("vpbx_api_key"), "{body}");
    // Malformed JSON, correctly signed: 400 naming the problem.
    let broken = "{\"entry_id\":";
    let (s, ct, body) = post(
        signed_form("acme-key", "acme-salt-0000000000000000000000", broken),
        form_ct,
    );
    assert_eq!(
        (s, ct.as_str()),
        (400, "application/problem+json"),
        "{body}"
    );
    assert!(body.contains("json"), "{body}");
    // A valid signature over an event without entry_id: 400 naming the field.
    let no_entry = "{\"call_id\":\"x\",\"call_state\":\"Appeared\",\"timestamp\":1,\"seq\":1}";
    let (s, _, body) = post(
        signed_form("acme-key", "acme-salt-0000000000000000000000", no_entry),
        form_ct,
    );
    assert_eq!(s, 400);
    assert!(body.contains("entry_id"), "{body}");
    // Huge body: 413 with a problem naming the limit, every time. The body is read to its end
    // before the answer, so the client sees the 413, not a connection closed under its writes.
    for size in [64 * 1024, 200_000, 900_000] {
        let (s, ct, body) = post(
            format!("vpbx_api_key=acme-key&json={}", "x".repeat(size)),
            form_ct,
        );
        assert_eq!(
            (s, ct.as_str()),
            (413, "application/problem+json"),
            "{size} bytes: {body}"
        );
        assert!(body.contains("65536 bytes"), "{body}");
    }
    // Wrong content type: 415.
    let (s, ct, _) = post(format!("{{\"json\": {json}}}"), "application/json");
    assert_eq!((s, ct.as_str()), (415, "application/problem+json"));
    // Mango's empty connection check: 200.
    let (s, _, _) = post(String::new(), form_ct);
    assert_eq!(s, 200);
    let tenant = get(&http, &format!("{}/api/v1/tenants/acme", server.base));
    assert_eq!(tenant["events"], 0, "nothing was stored: {tenant}");
    // The salt is never shown back.
    assert!(!tenant
        .to_string()
        .contains("acme-salt-0000000000000000000000"));
    // And a good one is stored, once.
    assert_eq!(
        post(
            signed_form("acme-key", "acme-salt-0000000000000000000000", &json),
            form_ct
        )
        .0,
        200
    );
    assert_eq!(
        post(
            signed_form("acme-key", "acme-salt-0000000000000000000000", &json),
            form_ct
        )
        .0,
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

#[test]
fn kill_9_mid_stream_then_restart_plans_every_entry_exactly_once() {
    let dir = temp_dir("crash");
    let (events, settings) = generated(&dir, 150);
    let t = Tenant {
        id: "acme".into(),
        key: "k-acme".into(),
        salt: "s-acme-0000000000000000000000000".into(),
        settings: settings.clone(),
        amocrm: None,
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
    let url = fresh_postgres_database("scaleout");
    let dir = temp_dir("scaleout");
    let (events, settings) = generated(&dir, 120);
    let t = Tenant {
        id: "acme".into(),
        key: "k-acme".into(),
        salt: "s-acme-0000000000000000000000000".into(),
        settings: settings.clone(),
        amocrm: None,
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
    drop_postgres_database(&url);
}

#[test]
fn the_card_stream_shows_and_hides_a_mapped_users_card() {
    let dir = temp_dir("cards");
    let case = scenarios_dir().join("r6-card-only-for-mapped");
    let t = acme(&case);
    let server = Server::start(&dir, std::slice::from_ref(&t), None);
    let base = server.base.clone();
    // A card token scoped to user 1001 goes in the URL, as a browser's EventSource sends it.
    let minted: serde_json::Value = client()
        .post(format!("{base}/api/v1/tenants/{}/cards/tokens", t.id))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"crm_user_id": 1001}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let card_token = minted["token"].as_str().unwrap().to_string();
    let (connected_tx, connected) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .unwrap();
        let mut r = http
            .get(format!("{base}/api/v1/cards/stream?token={card_token}"))
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        // The server subscribes the stream before it answers: from here on no card is missed.
        connected_tx.send(()).unwrap();
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
    connected
        .recv_timeout(Duration::from_secs(15))
        .expect("the card stream to answer 200");
    let http = client();
    for line in lines_of(&case.join("events.jsonl")) {
        assert_eq!(post_line(&http, &server.base, &t, &line), 200);
    }
    let seen = reader.join().unwrap();
    assert!(seen.contains("\"action\":\"show\""), "{seen}");
    assert!(seen.contains("\"action\":\"hide\""), "{seen}");
    assert!(seen.contains("\"crm_user_id\":1001"));
}

/// A client that stops sending its body gets 408 once the configured time has passed, instead
/// of holding its connection for ever, and nothing is stored.
#[test]
fn a_body_that_stops_arriving_gets_408_and_stores_nothing() {
    use std::io::Write;
    let dir = temp_dir("slow-body");
    let case = scenarios_dir().join("r6-card-only-for-mapped");
    let t = acme(&case);
    let server = Server::start_with(
        &dir,
        std::slice::from_ref(&t),
        &Options {
            extra: "body_timeout_ms = 300".into(),
            ..Options::default()
        },
    );
    let addr = server.base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let started = Instant::now();
    // 500 bytes announced, 30 sent, then nothing.
    write!(
        stream,
        "POST /mango/acme/events/call HTTP/1.1\r\nHost: {addr}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 500\r\n\r\n\
         vpbx_api_key=acme-key&json=%7B"
    )
    .unwrap();
    stream.flush().unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    // Read until the body of the answer is in (the server may keep or close the connection).
    while !String::from_utf8_lossy(&answer).contains("did not arrive") {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) => panic!("no answer: {e}; got {:?}", String::from_utf8_lossy(&answer)),
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    assert!(answer.contains("within 300 ms"), "{answer}");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "answered before the deadline: {answer}"
    );
    let tenant = get(&client(), &format!("{}/api/v1/tenants/acme", server.base));
    assert_eq!(tenant["events"], 0, "{tenant}");
}

/// The value of one series in `/metrics`.
fn metric(base: &str, name: &str) -> Option<f64> {
    let text = client()
        .get(format!("{base}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Once every entry is planned, the stored recovery mark passes every event, and a restart
/// starts reading the log from it (reading nothing again) with every entry still planned.
#[test]
fn the_recovery_mark_passes_every_planned_event_and_a_restart_reads_from_it() {
    let dir = temp_dir("mark");
    let case = scenarios_dir().join("r6-card-only-for-mapped");
    let t = acme(&case);
    let http = client();
    let lines = lines_of(&case.join("events.jsonl"));
    let server = Server::start(&dir, std::slice::from_ref(&t), None);
    for line in &lines {
        assert_eq!(post_line(&http, &server.base, &t, line), 200);
    }
    let expected = simulate(&t.settings, &case.join("events.jsonl"));
    let want = expected["entries"].as_array().unwrap().len();
    assert_eq!(
        wait_for_entries(&http, &server.base, &t.id, want, Duration::from_secs(30)).len(),
        want
    );
    let stored = get(&http, &format!("{}/api/v1/tenants/acme", server.base))["events"]
        .as_f64()
        .unwrap();
    // Ids start at 1: past every event means above the count of them.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mark = loop {
        let mark = metric(&server.base, "callbridge_recovery_mark_event_id").unwrap_or(0.0);
        if mark > stored || Instant::now() > deadline {
            break mark;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(mark > stored, "mark {mark}, {stored} events");
    server.kill();
    let server = Server::start(&dir, std::slice::from_ref(&t), None);
    // Recovery runs beside the listener: wait for its figures.
    let deadline = Instant::now() + Duration::from_secs(10);
    let read = loop {
        let read = metric(&server.base, "callbridge_recovery_events_read");
        if read.is_some() || Instant::now() > deadline {
            break read;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(read, Some(0.0));
    assert_eq!(
        metric(&server.base, "callbridge_recovery_mark_event_id"),
        Some(mark)
    );
    assert_eq!(
        wait_for_entries(&http, &server.base, &t.id, want, Duration::from_secs(5)).len(),
        want
    );
}

/// One Mango `events/call` line of entry `entry`'s leg `leg`.
fn call_line(entry: &str, leg: &str, seq: u64, state: &str) -> String {
    serde_json::json!({"path": "events/call", "json": {
        "entry_id": entry, "call_id": leg, "timestamp": 1764103800 + seq, "seq": seq,
        "call_state": state, "location": "abonent",
        "from": {"number": "79161230016"}, "to": {"extension": "101"},
    }})
    .to_string()
}

fn summary_line(entry: &str) -> String {
    serde_json::json!({"path": "events/summary", "json": {
        "entry_id": entry, "call_direction": 1, "from": {"number": "79161230016"},
        "to": {"extension": "101"}, "create_time": 1764103800, "forward_time": 1764103801,
        "talk_time": 1764103802, "end_time": 1764103810, "entry_result": 1,
        "disconnect_reason": 1110,
    }})
    .to_string()
}

#[test]
fn a_call_that_waits_for_nothing_is_planned_without_waiting_out_the_settle_window() {
    let dir = temp_dir("settle-complete");
    let case = scenarios_dir().join("a1-two-interleaved-entries");
    let tenant = acme(&case);
    // A settle window far longer than the test: only the quiet time can plan within it.
    let server = Server::start_with(
        &dir,
        std::slice::from_ref(&tenant),
        &Options {
            settle: Some(120),
            settle_complete_ms: Some(300),
            ..Options::default()
        },
    );
    let http = client();
    let post = |line: String| assert_eq!(post_line(&http, &server.base, &tenant, &line), 200);
    // "done": every leg hung up, then the summary. "ringing": the summary came while a leg is
    // still up (its Disconnected reordered after it).
    for (seq, state) in [(1, "Appeared"), (2, "Connected"), (3, "Disconnected")] {
        post(call_line("done", "done-leg", seq, state));
    }
    post(summary_line("done"));
    post(call_line("ringing", "ringing-leg", 1, "Appeared"));
    post(summary_line("ringing"));
    let started = Instant::now();
    let entries = wait_for_entries(&http, &server.base, "acme", 1, Duration::from_secs(20));
    let ids: Vec<&str> = entries
        .iter()
        .filter_map(|e| e["entry_id"].as_str())
        .collect();
    assert_eq!(ids, ["done"], "planned after the quiet time");
    assert_eq!(entries[0]["completed_by"], "summary");
    // The entry with a leg up waits: still unplanned a while after the first.
    std::thread::sleep(Duration::from_millis(1500));
    let entries = wait_for_entries(&http, &server.base, "acme", 2, Duration::ZERO);
    assert_eq!(entries.len(), 1, "the ringing entry waits for its leg");
    // Its leg hangs up: it waits for nothing now and follows within the quiet time.
    post(call_line("ringing", "ringing-leg", 2, "Disconnected"));
    let entries = wait_for_entries(&http, &server.base, "acme", 2, Duration::from_secs(20));
    assert_eq!(entries.len(), 2);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "both planned well inside the 120 s window"
    );
}
