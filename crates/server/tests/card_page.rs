//! The live call card page and its personal links over real HTTP: links made in the settings
//! window's "Call card" tab (the full address shown once), the page without any admin
//! credential, the same 404 for a revoked and an unknown link, the page's short-lived stream
//! tokens, a stream that shows only its own CRM user's cards with the client's CRM contact,
//! and a revocation that ends an open stream at once.

mod support;

use callbridge_amocrm_sandbox::{Sandbox, SandboxConfig, Seed};
use callbridge_core::cards::{CardAction, CardChange};
use callbridge_core::settings::CrmUserId;
use callbridge_server::config::Config;
use callbridge_server::state::TenantCard;
use reqwest::header::{ACCEPT_LANGUAGE, COOKIE, LOCATION};
use reqwest::StatusCode;
use std::time::Duration;
use support::hidden;

const SETTINGS: &str = "[[employees]]\nextension = \"101\"\nname = \"Anna\"\ncrm_user_id = 1001\n\
[[employees]]\nextension = \"102\"\nname = \"Ivan\"\ncrm_user_id = 1002\n\
[[employees]]\nextension = \"105\"\nname = \"Courier\"\n";

struct Ui {
    running: callbridge_server::Running,
    _sandbox: Sandbox,
    base: String,
    http: reqwest::Client,
    session: String,
    _dir: tempfile::TempDir,
}

async fn start() -> Ui {
    let seed = serde_json::json!({
        "long_lived_token": "sandbox-token",
        "users": [
            {"id": 1001, "name": "Anna Petrova"},
            {"id": 1002, "name": "Ivan Sidorov"},
        ],
        "contacts": [{
            "name": "Olga Smirnova",
            "phone": "+7 916 123-45-67",
            "leads": [
                {"name": "Kitchen order"},
                {"name": "Old order", "status": "won"},
            ],
        }],
    });
    let config = SandboxConfig {
        seed: Seed::from_json_str(&seed.to_string()).unwrap(),
        ..SandboxConfig::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sandbox = callbridge_amocrm_sandbox::start(listener, config)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let settings = dir.path().join("acme.toml");
    std::fs::write(&settings, SETTINGS).unwrap();
    let file = dir.path().join("callbridge.toml");
    // Tenant `down` has a CRM that refuses connections (port 9 on this host).
    std::fs::write(
        &file,
        format!(
            "admin_token = \"card-admin-token\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n\
             directory_refresh_seconds = 0\nallow_insecure_crm_hosts = true\n\
             [[tenants]]\nid = \"acme\"\nmango_api_key = \"card-key\"\nmango_api_salt = \"card-salt-000000000000000000000000\"\n\
             settings = \"{settings}\"\n\
             [tenants.amocrm]\nbase_url = \"{}\"\nlong_lived_token = \"sandbox-token\"\n\
             [[tenants]]\nid = \"down\"\nmango_api_key = \"down-key\"\nmango_api_salt = \"down-salt-000000000000000000000000\"\n\
             settings = \"{settings}\"\n\
             [tenants.amocrm]\nbase_url = \"http://127.0.0.1:9\"\nlong_lived_token = \"t\"\n",
            dir.path().join("data").display(),
            sandbox.base_url(),
            settings = settings.display(),
        ),
    )
    .unwrap();
    let (config, tenants) = Config::load(Some(&file)).unwrap();
    let running = callbridge_server::start(config, tenants).await.unwrap();
    let http = support::client();
    let base = format!("http://{}", running.addr);
    let password = support::first_password(&running);
    let session = support::sign_in(&http, &base, &password).await;
    Ui {
        running,
        _sandbox: sandbox,
        base,
        http,
        session,
        _dir: dir,
    }
}

impl Ui {
    async fn tab(&self, tenant: &str) -> String {
        let r = self
            .http
            .get(format!("{}/t/{tenant}/settings/card", self.base))
            .header(COOKIE, &self.session)
            .header(ACCEPT_LANGUAGE, "en")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.text().await.unwrap()
    }

    async fn post(&self, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        let csrf = hidden(&self.tab("acme").await, "csrf");
        let mut form = vec![("csrf", csrf.as_str())];
        form.extend_from_slice(fields);
        self.http
            .post(format!("{}{path}", self.base))
            .header(COOKIE, &self.session)
            .header(ACCEPT_LANGUAGE, "en")
            .form(&form)
            .send()
            .await
            .unwrap()
    }

    /// Makes a link for `user` of `tenant` in the tab; the token of its address.
    async fn create_link(&self, tenant: &str, user: &str) -> String {
        let r = self
            .post(
                &format!("/t/{tenant}/settings/card/links"),
                &[("crm_user_id", user)],
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        let html = r.text().await.unwrap();
        let marker = format!("{}/card/", self.base);
        let at = html.find(&marker).expect("the new link is shown") + marker.len();
        let token: String = html[at..]
            .chars()
            .take_while(char::is_ascii_hexdigit)
            .collect();
        assert_eq!(token.len(), 64, "{html}");
        token
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        // No cookie: the page needs no session.
        reqwest::Client::new()
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
    }

    async fn stream_token(&self, token: &str) -> reqwest::Response {
        self.get(&format!("/card/{token}/stream-token")).await
    }

    async fn open_stream(&self, token: &str) -> reqwest::Response {
        let answer: serde_json::Value = self.stream_token(token).await.json().await.unwrap();
        let r = self.get(answer["stream_url"].as_str().unwrap()).await;
        assert_eq!(r.status(), StatusCode::OK);
        r
    }

    fn ring(&self, tenant: &str, user: u64, action: CardAction, call: &str) {
        self.running
            .state
            .cards
            .send(TenantCard {
                tenant_id: tenant.into(),
                change: CardChange {
                    action,
                    crm_user_id: CrmUserId::new(user).unwrap(),
                    entry_id: "entry-1".into(),
                    call_id: call.into(),
                    employee_extension: "101".into(),
                    client_phone: Some("79161234567".into()),
                    at: 1,
                },
            })
            .unwrap();
    }
}

/// The next SSE event of a stream (`event` name, parsed data), waiting at most `wait`; `None`
/// when nothing came, `Some(None)` when the stream ended.
async fn next_event(
    stream: &mut reqwest::Response,
    buffer: &mut String,
    wait: Duration,
) -> Option<Option<(String, serde_json::Value)>> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let name = block
                .lines()
                .find_map(|l| l.strip_prefix("event:"))
                .map(|n| n.trim().to_string());
            let data = block
                .lines()
                .find_map(|l| l.strip_prefix("data:"))
                .map(|d| serde_json::from_str(d.trim()).unwrap());
            if let (Some(name), Some(data)) = (name, data) {
                return Some(Some((name, data)));
            }
        }
        match tokio::time::timeout_at(deadline, stream.chunk()).await {
            Err(_) => return None,
            Ok(Ok(Some(bytes))) => buffer.push_str(&String::from_utf8_lossy(&bytes)),
            Ok(_) => return Some(None),
        }
    }
}

#[tokio::test]
async fn a_link_is_shown_once_works_without_credentials_and_dies_when_revoked() {
    let ui = start().await;
    let before = ui.tab("acme").await;
    assert!(before.contains("Create personal link"), "{before}");
    assert!(before.contains("Anna Petrova") && before.contains("Ivan Sidorov"));

    let token = ui.create_link("acme", "1001").await;
    // Afterwards only its first characters.
    let after = ui.tab("acme").await;
    assert!(!after.contains(&token), "the full link is shown only once");
    assert!(after.contains(&format!("{}…", &token[..8])), "{after}");
    assert!(after.contains("never used"));

    let page = ui.get(&format!("/card/{token}")).await;
    assert_eq!(page.status(), StatusCode::OK);
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    let html = page.text().await.unwrap();
    // The tenant's language (Russian unless set otherwise), whatever the browser asks.
    assert!(html.contains("Сейчас звонка нет"), "{html}");
    assert!(html.contains("/static/card.js"));
    assert!(ui.tab("acme").await.contains("last used"));

    let minted = ui.stream_token(&token).await;
    assert_eq!(minted.status(), StatusCode::OK);
    let minted: serde_json::Value = minted.json().await.unwrap();
    let stream_token = minted["token"].as_str().unwrap().to_string();
    assert!(stream_token.starts_with("v2.acme.1001."), "{stream_token}");
    let lasts = minted["expires_at"].as_i64().unwrap() - callbridge_server::state::now_ms() / 1000;
    assert!((3500..=3600).contains(&lasts), "an hour, not {lasts} s");

    // A link for someone no employee is mapped to is refused; a form without its CSRF token too.
    let refused = ui
        .post("/t/acme/settings/card/links", &[("crm_user_id", "1003")])
        .await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let no_csrf = ui
        .http
        .post(format!("{}/t/acme/settings/card/links", ui.base))
        .header(COOKIE, &ui.session)
        .form(&[("crm_user_id", "1001")])
        .send()
        .await
        .unwrap();
    assert_eq!(no_csrf.status(), StatusCode::FORBIDDEN);

    // Revoked and unknown links get the same page.
    let link_id = {
        let html = ui.tab("acme").await;
        let at = html.find("/settings/card/links/").unwrap() + "/settings/card/links/".len();
        html[at..].split('/').next().unwrap().to_string()
    };
    let revoked = ui
        .post(
            &format!("/t/acme/settings/card/links/{link_id}/revoke"),
            &[],
        )
        .await;
    assert_eq!(revoked.status(), StatusCode::SEE_OTHER);
    assert_eq!(revoked.headers()[LOCATION], "/t/acme/settings/card");
    let gone = ui.get(&format!("/card/{token}")).await;
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    let gone = gone.text().await.unwrap();
    assert!(gone.contains("недействительна"), "{gone}");
    let unknown = ui.get(&format!("/card/{}", "ab".repeat(32))).await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        unknown.text().await.unwrap(),
        gone,
        "no hint a link existed"
    );
    assert_eq!(
        ui.get("/card/not-a-token").await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        ui.stream_token(&token).await.status(),
        StatusCode::NOT_FOUND
    );
    // The stream token minted before still has most of its hour: refused all the same.
    let stream = ui
        .get(&format!("/api/v1/cards/stream?token={stream_token}"))
        .await;
    assert_eq!(stream.status(), StatusCode::UNAUTHORIZED);
    // Revoking again: no such link.
    let again = ui
        .post(
            &format!("/t/acme/settings/card/links/{link_id}/revoke"),
            &[],
        )
        .await;
    assert_eq!(again.status(), StatusCode::NOT_FOUND);
    ui.running.shutdown().await;
}

#[tokio::test]
async fn a_links_stream_shows_its_users_cards_with_the_crm_contact_and_ends_when_revoked() {
    let ui = start().await;
    let anna = ui.create_link("acme", "1001").await;
    let ivan = ui.create_link("acme", "1002").await;
    let mut anna_stream = ui.open_stream(&anna).await;
    let mut ivan_stream = ui.open_stream(&ivan).await;
    let (mut anna_buf, mut ivan_buf) = (String::new(), String::new());
    // Let both subscriptions start before the card goes out.
    tokio::time::sleep(Duration::from_millis(300)).await;

    ui.ring("acme", 1001, CardAction::Show, "leg-1");
    let wait = Duration::from_secs(10);
    let (name, card) = next_event(&mut anna_stream, &mut anna_buf, wait)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (name.as_str(), card["action"].as_str()),
        ("card", Some("show"))
    );
    assert_eq!(card["client_phone"], "79161234567");
    let (name, contact) = next_event(&mut anna_stream, &mut anna_buf, wait)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(name, "contact", "{contact}");
    assert_eq!(contact["crm"], "found", "{contact}");
    assert_eq!(contact["contacts"][0]["name"], "Olga Smirnova");
    let leads = contact["contacts"][0]["leads"].as_array().unwrap();
    assert_eq!(leads.len(), 1, "only the open lead: {contact}");
    assert_eq!(leads[0]["name"], "Kitchen order");
    // Another user's page sees nothing of it: the first thing Ivan's stream gets is his own card.
    ui.ring("acme", 1002, CardAction::Show, "leg-2");
    let (_, first) = next_event(&mut ivan_stream, &mut ivan_buf, wait)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first["call_id"], "leg-2", "{first}");
    assert_eq!(first["crm_user_id"], 1002);
    // The same user of another tenant is not Anna.
    ui.ring("down", 1001, CardAction::Show, "leg-3");
    ui.ring("acme", 1001, CardAction::Hide, "leg-1");
    let (name, hidden_card) = next_event(&mut anna_stream, &mut anna_buf, wait)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(name, "card");
    assert_eq!(
        (
            hidden_card["action"].as_str(),
            hidden_card["call_id"].as_str()
        ),
        (Some("hide"), Some("leg-1"))
    );

    // Revoking Anna's link ends her open stream at once, and not Ivan's.
    let html = ui.tab("acme").await;
    let at = html.find("/settings/card/links/").unwrap() + "/settings/card/links/".len();
    let anna_link = html[at..].split('/').next().unwrap().to_string();
    let revoked = ui
        .post(
            &format!("/t/acme/settings/card/links/{anna_link}/revoke"),
            &[],
        )
        .await;
    assert_eq!(revoked.status(), StatusCode::SEE_OTHER);
    let ended = next_event(&mut anna_stream, &mut anna_buf, Duration::from_secs(2)).await;
    assert_eq!(ended, Some(None), "the revoked link's stream ended");
    ui.ring("acme", 1002, CardAction::Hide, "leg-2");
    // Ivan's stream goes on: past the contact of his card, the hide of it.
    let still = loop {
        let (name, data) = next_event(&mut ivan_stream, &mut ivan_buf, wait)
            .await
            .unwrap()
            .unwrap();
        if name == "card" {
            break data;
        }
    };
    assert_eq!(
        (still["action"].as_str(), still["call_id"].as_str()),
        (Some("hide"), Some("leg-2"))
    );
    // An open stream is a response in flight: shutting down waits for it.
    drop((anna_stream, ivan_stream));
    ui.running.shutdown().await;
}

#[tokio::test]
async fn a_card_whose_crm_cannot_be_asked_still_shows_its_number() {
    let ui = start().await;
    let token = ui.create_link("down", "1001").await;
    let mut stream = ui.open_stream(&token).await;
    let mut buf = String::new();
    tokio::time::sleep(Duration::from_millis(300)).await;
    ui.ring("down", 1001, CardAction::Show, "leg-1");
    let wait = Duration::from_secs(15);
    let (_, card) = next_event(&mut stream, &mut buf, wait)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(card["client_phone"], "79161234567");
    let (name, contact) = next_event(&mut stream, &mut buf, wait)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (name.as_str(), contact["crm"].as_str()),
        ("contact", Some("unavailable"))
    );
    drop(stream);
    ui.running.shutdown().await;
}

/// The admin token opens the stream only from the `Authorization` header, and the admin routes
/// refuse it in the URL.
#[tokio::test]
async fn the_admin_token_is_refused_in_urls() {
    let ui = start().await;
    let in_url = ui.get("/api/v1/tenants?token=card-admin-token").await;
    assert_eq!(in_url.status(), StatusCode::UNAUTHORIZED);
    let problem: serde_json::Value = in_url.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("Authorization header only"),
        "{problem}"
    );
    let stream = ui
        .get("/api/v1/cards/stream?token=card-admin-token&crm_user_id=1001")
        .await;
    assert_eq!(stream.status(), StatusCode::UNAUTHORIZED);
    let header = reqwest::Client::new()
        .get(format!("{}/api/v1/cards/stream?crm_user_id=1001", ui.base))
        .bearer_auth("card-admin-token")
        .send()
        .await
        .unwrap();
    assert_eq!(header.status(), StatusCode::OK);
    drop(header);
    ui.running.shutdown().await;
}
