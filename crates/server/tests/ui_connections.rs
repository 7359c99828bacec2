//! The Connections page over real HTTP: both blocks with the webhook URL, the Mango key and salt
//! (validated, the salt never shown back), the connection test against a VPBX API stand-in,
//! refused and accepted webhooks as the page reports them, and amoCRM's OAuth consent started
//! from the page against the amoCRM sandbox, back on the page with the account's name.

mod support;

use axum::body::Bytes;
use axum::routing::post;
use axum::Router;
use callbridge_server::config::Config;
use reqwest::header::{ACCEPT_LANGUAGE, COOKIE, LOCATION};
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use std::time::Duration;
use support::{hidden, set_cookie};

const KEY: &str = "conn-key-acme";
const SALT: &str = "conn-salt-acme-7Q2w9E4r6T8y0U1i3O";
const OTHER_KEY: &str = "conn-key-other";
const OTHER_SALT: &str = "conn-salt-other-000000000000000000";

/// A VPBX API stand-in: lists two employees when the request is signed with acme's key and salt,
/// and refuses any other signature with Mango's code 3102.
async fn fake_vpbx() -> String {
    let app = Router::new().route(
        "/vpbx/config/users/request",
        post(|body: Bytes| async move {
            let fields: std::collections::HashMap<String, String> =
                form_urlencoded::parse(&body).into_owned().collect();
            let signed = match (
                fields.get("vpbx_api_key"),
                fields.get("sign"),
                fields.get("json"),
            ) {
                (Some(key), Some(sign), Some(json)) => {
                    key == KEY && callbridge_mango::verify(key, json, SALT, sign)
                }
                _ => false,
            };
            if !signed {
                return (
                    axum::http::StatusCode::UNAUTHORIZED,
                    "{\"code\":3102}".to_string(),
                );
            }
            (
                axum::http::StatusCode::OK,
                serde_json::json!({"users": [
                    {"general": {"name": "Olga Petrova", "user_id": 300001}, "telephony": {"extension": "101"}},
                    {"general": {"name": "Anna Smirnova", "user_id": 300005}, "telephony": {"extension": "105"}},
                ]})
                .to_string(),
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/vpbx/")
}

struct Ui {
    running: callbridge_server::Running,
    base: String,
    http: reqwest::Client,
    session: String,
    _dir: tempfile::TempDir,
}

async fn start() -> Ui {
    let vpbx = fake_vpbx().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("callbridge.toml");
    std::fs::write(
        &file,
        format!(
            "admin_token = \"conn-admin-token\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n\
             directory_refresh_seconds = 0\nallow_insecure_crm_hosts = true\nmango_api_url = \"{vpbx}\"\n\
             [[tenants]]\nid = \"acme\"\nmango_api_key = \"{KEY}\"\nmango_api_salt = \"{SALT}\"\n\
             [[tenants]]\nid = \"other\"\nmango_api_key = \"{OTHER_KEY}\"\nmango_api_salt = \"{OTHER_SALT}\"\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let (config, tenants) = Config::load(Some(&file)).unwrap();
    let running = callbridge_server::start(config, tenants).await.unwrap();
    let password = running
        .first_admin_password
        .as_ref()
        .expect("a first start sets a password")
        .expose_secret()
        .to_string();
    let mut ui = Ui {
        base: format!("http://{}", running.addr),
        running,
        http: support::client(),
        session: String::new(),
        _dir: dir,
    };
    ui.session = support::sign_in(&ui.http, &ui.base, &password).await;
    ui
}

/// A signed Mango webhook body.
fn signed(key: &str, salt: &str, json: &str) -> String {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("vpbx_api_key", key)
        .append_pair("sign", &callbridge_mango::sign(key, json, salt))
        .append_pair("json", json)
        .finish()
}

fn call_event(entry: &str) -> String {
    format!(
        r#"{{"entry_id":"{entry}","call_id":"c-{entry}","timestamp":1764900000,"seq":1,"call_state":"Appeared"}}"#
    )
}

impl Ui {
    /// The page in English: its status and HTML.
    async fn page(&self, path: &str) -> (StatusCode, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header(COOKIE, &self.session)
            .header(ACCEPT_LANGUAGE, "en")
            .send()
            .await
            .unwrap();
        (r.status(), r.text().await.unwrap())
    }

    /// Posts a form of the page with the session's CSRF token.
    async fn post(&self, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        let (_, html) = self.page("/t/acme/connections").await;
        let csrf = hidden(&html, "csrf");
        let mut form: Vec<(&str, &str)> = vec![("csrf", &csrf)];
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

    async fn webhook(&self, tenant: &str, body: String) -> StatusCode {
        self.http
            .post(format!("{}/mango/{tenant}/events/call", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap()
            .status()
    }

    /// Waits until the page shows `text` (refusals are written in the background).
    async fn page_showing(&self, text: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let (status, html) = self.page("/t/acme/connections").await;
            assert_eq!(status, StatusCode::OK);
            if html.contains(text) {
                return html;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the page never showed {text:?}: {html}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_both_blocks_with_the_webhook_url_and_never_the_salt() {
    let ui = start().await;
    let (status, html) = ui.page("/t/acme/connections").await;
    assert_eq!(status, StatusCode::OK);
    for shown in [
        "<h2 id=\"mango-title\">Mango Office</h2>",
        "<h2 id=\"crm-title\">amoCRM</h2>",
        &format!(
            "<code id=\"webhook-url\" class=\"copy-value\">{}/mango/acme/</code>",
            ui.base
        ),
        ">Copy</button>",
        ">Test connection</button>",
        KEY,
        // The salt: its last two characters at most.
        "***3O",
        // The redirect URI to paste into amoCRM's integration.
        &format!("{}/amocrm/oauth/callback", ui.base),
        "not set up",
        "Nothing yet.",
    ] {
        assert!(html.contains(shown), "{shown:?} missing from {html}");
    }
    assert!(!html.contains(SALT), "the salt is shown");
    assert!(!html.contains(&SALT[..20]), "a part of the salt is shown");
    // Russian labels, as the browser tests find them.
    let r = ui
        .http
        .get(format!("{}/t/acme/connections", ui.base))
        .header(COOKIE, &ui.session)
        .header(ACCEPT_LANGUAGE, "ru")
        .send()
        .await
        .unwrap();
    let html = r.text().await.unwrap();
    for shown in [">Копировать</button>", ">Проверить подключение</button>"]
    {
        assert!(html.contains(shown), "{shown:?} missing from {html}");
    }
    // An unknown tenant's page says so.
    let (status, html) = ui.page("/t/nobody/connections").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(html.contains("nobody"), "{html}");
    // Without a session: the sign-in page.
    let r = ui
        .http
        .get(format!("{}/t/acme/connections", ui.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    ui.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_and_salt_change_is_validated_saved_whole_and_the_salt_never_echoed() {
    let ui = start().await;
    let new_salt = "brand-new-salt-Zx81Kq55Lm09Pw27Rt";
    // Too short: refused next to the field, nothing stored, the given salt not echoed.
    let r = ui
        .post(
            "/t/acme/connections/mango",
            &[
                ("mango_api_key", "conn-key-acme-2"),
                ("mango_api_salt", "short-salt-9QwErTy"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = r.text().await.unwrap();
    assert!(html.contains("id=\"mango-api-salt-error\""), "{html}");
    assert!(
        html.contains("The salt is too short: 18 characters"),
        "{html}"
    );
    assert!(html.contains("aria-invalid=\"true\""), "{html}");
    assert!(
        !html.contains("short-salt-9QwErTy"),
        "the refused salt is echoed"
    );
    assert!(html.contains("Nothing was saved"), "{html}");
    let stored = ui.running.state.tenant("acme").await.unwrap();
    assert_eq!(stored.row.mango_api_key, KEY, "nothing half-saved");
    assert_eq!(stored.row.mango_api_salt, SALT);
    // A salt with a line break (a paste gone wrong).
    let r = ui
        .post(
            "/t/acme/connections/mango",
            &[
                ("mango_api_key", KEY),
                ("mango_api_salt", "salt-with-a-newline-000000000000\n"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains("must not contain spaces"));
    // Another tenant's key, and no key at all.
    let r = ui
        .post(
            "/t/acme/connections/mango",
            &[("mango_api_key", OTHER_KEY), ("mango_api_salt", "")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("Another tenant already uses this API key."));
    let r = ui
        .post(
            "/t/acme/connections/mango",
            &[("mango_api_key", "  "), ("mango_api_salt", "")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("id=\"mango-api-key-error\""));

    // A good change: saved, the page says so, and the salt appears nowhere.
    let r = ui
        .post(
            "/t/acme/connections/mango",
            &[
                ("mango_api_key", "conn-key-acme-2"),
                ("mango_api_salt", new_salt),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/t/acme/connections?saved=mango");
    let (_, html) = ui.page("/t/acme/connections?saved=mango").await;
    assert!(
        html.contains("The Mango API key and salt are saved."),
        "{html}"
    );
    assert!(html.contains("conn-key-acme-2"), "{html}");
    assert!(html.contains("***Rt"), "{html}");
    assert!(
        !html.contains(new_salt) && !html.contains(&new_salt[..12]),
        "{html}"
    );
    let stored = ui.running.state.tenant("acme").await.unwrap();
    assert_eq!(stored.row.mango_api_salt, new_salt);
    // Webhooks are checked against the new pair at once.
    assert_eq!(
        ui.webhook(
            "acme",
            signed("conn-key-acme-2", new_salt, &call_event("N1"))
        )
        .await,
        StatusCode::OK
    );
    assert_eq!(
        ui.webhook("acme", signed(KEY, SALT, &call_event("N2")))
            .await,
        StatusCode::FORBIDDEN
    );
    // An empty salt keeps the stored one.
    let r = ui
        .post(
            "/t/acme/connections/mango",
            &[("mango_api_key", "conn-key-acme-3"), ("mango_api_salt", "")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let stored = ui.running.state.tenant("acme").await.unwrap();
    assert_eq!(stored.row.mango_api_key, "conn-key-acme-3");
    assert_eq!(stored.row.mango_api_salt, new_salt);
    // A form without the session's CSRF token is refused before the handler.
    let r = ui
        .http
        .post(format!("{}/t/acme/connections/mango", ui.base))
        .header(COOKIE, &ui.session)
        .form(&[
            ("csrf", "forged"),
            ("mango_api_key", "evil"),
            ("mango_api_salt", ""),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        ui.running
            .state
            .tenant("acme")
            .await
            .unwrap()
            .row
            .mango_api_key,
        "conn-key-acme-3"
    );
    ui.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_webhooks_show_with_their_reason_until_one_is_accepted() {
    let ui = start().await;
    // A wrong signature: the tenant's key, another salt.
    let forged = signed(KEY, "not-the-salt-000000000000000000000", &call_event("R1"));
    assert_eq!(
        ui.webhook("acme", forged.clone()).await,
        StatusCode::FORBIDDEN
    );
    let html = ui.page_showing("Reason: a wrong signature.").await;
    assert!(
        html.contains("1 webhook(s) refused since the last accepted one"),
        "{html}"
    );
    assert!(html.contains("webhooks refused"), "{html}");
    // A burst: written at most once a second, all counted, the last reason kept.
    for _ in 0..5 {
        assert_eq!(
            ui.webhook("acme", forged.clone()).await,
            StatusCode::FORBIDDEN
        );
    }
    assert_eq!(
        ui.webhook("acme", signed("someone-elses-key", SALT, &call_event("R2")))
            .await,
        StatusCode::FORBIDDEN
    );
    let html = ui
        .page_showing("7 webhook(s) refused since the last accepted one")
        .await;
    assert!(html.contains("Reason: an unknown API key."), "{html}");
    // A body that is not an event, with what was wrong.
    let broken = signed(KEY, SALT, "{\"call_id\":\"x\"}");
    assert_eq!(ui.webhook("acme", broken).await, StatusCode::BAD_REQUEST);
    let html = ui
        .page_showing("Reason: the body was not a Mango event.")
        .await;
    assert!(html.contains("8 webhook(s) refused"), "{html}");
    // Made-up tenants leave nothing behind.
    assert_eq!(
        ui.webhook("ghost", signed(KEY, SALT, &call_event("G1")))
            .await,
        StatusCode::FORBIDDEN
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(ui
        .running
        .state
        .store
        .webhook_refusal("ghost")
        .await
        .unwrap()
        .is_none());

    // An accepted event: shown as the last received, and the refusals are history.
    assert_eq!(
        ui.webhook("acme", signed(KEY, SALT, &call_event("A1")))
            .await,
        StatusCode::OK
    );
    let html = ui.page_showing("call event").await;
    assert!(html.contains(" UTC · call event"), "{html}");
    assert!(!html.contains("refused since"), "{html}");
    assert!(html.contains("receiving"), "{html}");
    // A refusal after it counts from one again.
    assert_eq!(ui.webhook("acme", forged).await, StatusCode::FORBIDDEN);
    let html = ui
        .page_showing("1 webhook(s) refused since the last accepted one")
        .await;
    assert!(html.contains("Reason: a wrong signature."), "{html}");
    ui.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_test_lists_employees_or_says_why_not() {
    let ui = start().await;
    let r = ui.post("/t/acme/connections/mango/test", &[]).await;
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.unwrap();
    assert!(html.contains("Connected. Employees in Mango: 2."), "{html}");
    assert!(
        html.contains("<li>Olga Petrova</li>") && html.contains("<li>Anna Smirnova</li>"),
        "{html}"
    );
    // Again at once: refused with the wait, no request to Mango.
    let html = ui
        .post("/t/acme/connections/mango/test", &[])
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("before testing again"), "{html}");
    // A tenant whose salt Mango does not accept: the reason in words.
    let (_, page) = ui.page("/t/other/connections").await;
    let csrf = hidden(&page, "csrf");
    let html = ui
        .http
        .post(format!("{}/t/other/connections/mango/test", ui.base))
        .header(COOKIE, &ui.session)
        .header(ACCEPT_LANGUAGE, "en")
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("Mango refused the API key or the salt"),
        "{html}"
    );
    assert!(!html.contains(OTHER_SALT), "{html}");
    ui.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amocrm_connects_through_the_page_and_comes_back_to_it_with_the_account_name() {
    let ui = start().await;
    let callback = format!("{}/amocrm/oauth/callback", ui.base);
    let seed: callbridge_amocrm_sandbox::Seed = serde_json::from_value(serde_json::json!({
        "account": {"id": 31000001, "name": "Acme Trading", "subdomain": "acme"},
        "oauth_clients": [{"client_id": "conn-client", "client_secret": "conn-client-secret-4Fh8", "redirect_uri": callback}],
    }))
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sandbox = callbridge_amocrm_sandbox::start(
        listener,
        callbridge_amocrm_sandbox::SandboxConfig {
            seed,
            ..Default::default()
        },
    )
    .await
    .unwrap();

    // The settings: a bad address is refused next to its field; nothing stored.
    let r = ui
        .post(
            "/t/acme/connections/amocrm",
            &[
                ("base_url", "ftp://acme.example"),
                ("client_id", "conn-client"),
                ("client_secret", "conn-client-secret-4Fh8"),
                ("redirect_uri", &callback),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = r.text().await.unwrap();
    assert!(html.contains("id=\"crm-base-url-error\""), "{html}");
    assert!(
        !html.contains("conn-client-secret-4Fh8"),
        "the secret is echoed"
    );
    assert!(ui
        .running
        .state
        .tenant("acme")
        .await
        .unwrap()
        .row
        .crm
        .is_null());
    // A missing secret with none stored.
    let r = ui
        .post(
            "/t/acme/connections/amocrm",
            &[
                ("base_url", &sandbox.base_url()),
                ("client_id", "conn-client"),
                ("client_secret", ""),
                ("redirect_uri", &callback),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("id=\"crm-client-secret-error\""));
    // Saved.
    let r = ui
        .post(
            "/t/acme/connections/amocrm",
            &[
                ("base_url", &sandbox.base_url()),
                ("client_id", "conn-client"),
                ("client_secret", "conn-client-secret-4Fh8"),
                ("redirect_uri", &callback),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (_, html) = ui.page("/t/acme/connections").await;
    assert!(html.contains("not connected"), "{html}");
    assert!(html.contains(">Connect amoCRM</button>"), "{html}");
    assert!(!html.contains("conn-client-secret-4Fh8"), "{html}");

    // "Connect amoCRM": to the consent page, which (the sandbox approves at once) sends the
    // browser back to the callback, which brings it to the page.
    let r = ui.post("/t/acme/connections/amocrm/connect", &[]).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    let consent = r.headers()[LOCATION].to_str().unwrap().to_string();
    assert!(
        consent.starts_with(&format!("{}/oauth?", sandbox.base_url())),
        "{consent}"
    );
    let nonce = set_cookie(&r, "callbridge_oauth_nonce").expect("the nonce cookie");
    let r = ui.http.get(&consent).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let back = r.headers()[LOCATION].to_str().unwrap().to_string();
    assert!(back.starts_with(&callback), "{back}");
    let r = ui
        .http
        .get(&back)
        .header(COOKIE, format!("callbridge_oauth_nonce={nonce}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/t/acme/connections?oauth=connected");
    let (_, html) = ui.page("/t/acme/connections?oauth=connected").await;
    assert!(html.contains("Connected to Acme Trading."), "{html}");
    assert!(
        html.contains("<strong class=\"account-name\">Acme Trading</strong>"),
        "{html}"
    );
    assert!(html.contains(">Reconnect</button>"), "{html}");
    assert!(html.contains("badge badge-ok\">connected"), "{html}");

    // The admin API's authorize still starts a consent whose callback answers JSON.
    let r = ui
        .http
        .get(format!("{}/api/v1/tenants/acme/amocrm/authorize", ui.base))
        .bearer_auth("conn-admin-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let nonce = set_cookie(&r, "callbridge_oauth_nonce").unwrap();
    assert!(!nonce.starts_with("ui-"), "{nonce}");
    let consent = r.headers()[LOCATION].to_str().unwrap().to_string();
    let r = ui.http.get(&consent).send().await.unwrap();
    let back = r.headers()[LOCATION].to_str().unwrap().to_string();
    let r = ui
        .http
        .get(&back)
        .header(COOKIE, format!("callbridge_oauth_nonce={nonce}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["amocrm"], "connected", "{v}");

    // A connection the CRM stopped accepting: broken, with the reason and "Reconnect".
    // The callback above restarted the tenant's delivery, which marks the connection ok (with
    // no detail) when it starts: wait for that, so that the state written here is the last.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let status = ui.running.state.store.crm_status("acme").await.unwrap();
        if status.is_some_and(|s| s.state == "ok" && s.detail.is_empty()) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the restarted delivery never marked the connection"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ui.running
        .state
        .store
        .set_crm_status(
            "acme",
            "broken",
            "amoCRM refused the credentials: 401 after a refresh",
            1,
        )
        .await
        .unwrap();
    let (_, html) = ui.page("/t/acme/connections").await;
    assert!(html.contains("connection broken"), "{html}");
    assert!(html.contains("amoCRM refused the stored tokens"), "{html}");
    assert!(html.contains(">Reconnect</button>"), "{html}");
    // Russian: «Переподключить».
    let html = ui
        .http
        .get(format!("{}/t/acme/connections", ui.base))
        .header(COOKIE, &ui.session)
        .header(ACCEPT_LANGUAGE, "ru")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains(">Переподключить</button>"), "{html}");

    // A tenant connected with the account's long-lived token: connected at once, the account's
    // name read by the page itself, and no consent to start.
    let r = ui
        .http
        .put(format!("{}/api/v1/tenants/other", ui.base))
        .bearer_auth("conn-admin-token")
        .json(&serde_json::json!({"amocrm": {"base_url": sandbox.base_url(), "long_lived_token": "sandbox-token"}}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let (_, html) = ui.page("/t/other/connections").await;
    assert!(
        html.contains("<strong class=\"account-name\">Acme Trading</strong>"),
        "{html}"
    );
    assert!(html.contains("Connected with a long-lived token"), "{html}");
    assert!(!html.contains("/connections/amocrm/connect"), "{html}");
    assert!(!html.contains("sandbox-token"), "{html}");
    ui.running.shutdown().await;
    sandbox.shutdown().await;
}

#[tokio::test]
async fn tenants_on_one_amocrm_account_are_told_they_share_its_limit() {
    let ui = start().await;
    let callback = format!("{}/amocrm/oauth/callback", ui.base);
    // Saves a tenant's amoCRM settings with the account at `base`.
    let save = |tenant: &'static str, base: &'static str| {
        let (ui, callback) = (&ui, &callback);
        async move {
            let fields = [
                ("base_url", base),
                ("client_id", "conn-client"),
                ("client_secret", "conn-client-secret-4Fh8"),
                ("redirect_uri", callback.as_str()),
            ];
            let r = ui
                .post(&format!("/t/{tenant}/connections/amocrm"), &fields)
                .await;
            assert_eq!(
                r.status(),
                StatusCode::SEE_OTHER,
                "{}",
                r.text().await.unwrap()
            );
        }
    };
    // One tenant on an account: nothing to say.
    save("acme", "http://127.0.0.1:9/").await;
    let (_, html) = ui.page("/t/acme/connections").await;
    assert!(!html.contains("crm-shared"), "{html}");
    // The other tenant on the same account (its address written differently): both are told,
    // each naming the other.
    save("other", "http://127.0.0.1:9").await;
    let (_, html) = ui.page("/t/acme/connections").await;
    assert!(
        html.contains(
            "<p class=\"hint crm-shared\">This amoCRM account is also connected to the tenants other:"
        ),
        "{html}"
    );
    let (_, html) = ui.page("/t/other/connections").await;
    assert!(
        html.contains("also connected to the tenants acme:"),
        "{html}"
    );
    // Moved to an account of its own: no longer shared.
    save("other", "http://127.0.0.1:10/").await;
    let (_, html) = ui.page("/t/acme/connections").await;
    assert!(!html.contains("crm-shared"), "{html}");
}
