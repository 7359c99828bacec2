//! Request spans: every log line written while a request is served names the request, and for a
//! webhook its tenant and entry; no token or signature from a URL reaches the log.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

/// The log, kept in memory for the test to read.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

const KEY: &str = "spans-key";
const SALT: &str = "spans-salt-000000000000000000000";
const CARD_TOKEN: &str = "v1.acme.7.9999999999.0badc0ffee0badc0ffee";
const RECORDING_SIGNATURE: &str = "5ec2e75ec2e75ec2e7";

#[tokio::test]
async fn a_webhooks_log_lines_carry_its_tenant_and_entry_and_no_url_secret() {
    let log = Captured::default();
    let writer = log.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let (running, dir) = support::start_acme("spans", "spans-admin-token", KEY, SALT).await;
    let base = format!("http://{}", running.addr);
    let http = reqwest::Client::new();

    let json = r#"{"entry_id":"SPAN-ENTRY-1","call_id":"c1","timestamp":1733000000,"seq":1,"call_state":"Appeared"}"#;
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("vpbx_api_key", KEY)
        .append_pair("sign", &callbridge_mango::sign(KEY, json, SALT))
        .append_pair("json", json)
        .finish();
    let webhook = http
        .post(format!("{base}/mango/acme/events/call"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(webhook.status(), 200, "{}", webhook.text().await.unwrap());
    // Refused requests that carry secrets in their URLs.
    let card = http
        .get(format!("{base}/api/v1/cards/stream?token={CARD_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(card.status(), 401);
    let recording = http
        .get(format!(
            "{base}/recordings/acme/r1?e=9999999999&s={RECORDING_SIGNATURE}"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(recording.status(), 403);
    running.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);

    let text = log.text();
    let webhook_lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("path=/mango/acme/events/call"))
        .collect();
    assert!(
        webhook_lines
            .iter()
            .any(|l| l.contains("finished processing request")),
        "no response line for the webhook in:\n{text}"
    );
    for line in &webhook_lines {
        assert!(
            line.contains("method=POST") && line.contains("tenant=acme"),
            "{line}"
        );
    }
    assert!(
        webhook_lines
            .iter()
            .any(|l| l.contains("entry=SPAN-ENTRY-1")),
        "the entry is recorded once the body is parsed:\n{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("path=/recordings/acme/r1") && l.contains("tenant=acme")),
        "{text}"
    );
    for secret in [CARD_TOKEN, RECORDING_SIGNATURE, KEY, SALT] {
        assert!(!text.contains(secret), "{secret} logged:\n{text}");
    }
}
