//! The window "Basic integration settings" over real HTTP: a real server signed in to as a
//! browser would, the amoCRM sandbox serving the CRM's users. Each tab saves and the stored
//! settings change; refusals show next to their field and store nothing; S2 and S4 hold; the
//! versions list and a restore; auto-match's review, then apply.

mod support;

use callbridge_amocrm_sandbox::{Sandbox, SandboxConfig, Seed};
use callbridge_core::settings::{NewClientAction, Plan, Settings};
use callbridge_mango::api::VpbxUser;
use callbridge_server::config::Config;
use callbridge_server::directory::Directory;
use reqwest::header::{ACCEPT_LANGUAGE, COOKIE, LOCATION};
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use support::hidden;

const SETTINGS: &str = "plan = \"extended\"\n\
[[employees]]\nextension = \"101\"\nname = \"Petrova Anna\"\n\
[[employees]]\nextension = \"102\"\nname = \"Ivan Sidorov\"\ncrm_user_id = 1002\n";

struct Ui {
    running: callbridge_server::Running,
    sandbox: Sandbox,
    base: String,
    http: reqwest::Client,
    session: String,
    lang: &'static str,
    _dir: tempfile::TempDir,
}

async fn start_sandbox() -> Sandbox {
    let seed = serde_json::json!({
        "long_lived_token": "sandbox-token",
        "users": [
            {"id": 1001, "name": "Anna Petrova", "email": "anna@acme.test"},
            {"id": 1002, "name": "Ivan Sidorov", "email": "ivan@acme.test"},
            {"id": 1003, "name": "Maria Ivanova", "email": "maria@acme.test"},
        ],
    });
    let config = SandboxConfig {
        seed: Seed::from_json_str(&seed.to_string()).unwrap(),
        ..SandboxConfig::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    callbridge_amocrm_sandbox::start(listener, config)
        .await
        .unwrap()
}

/// A server with tenant `acme` (CRM: the sandbox; employees 101 unmapped and 102 mapped to
/// 1002; the directory adds 103 with an e-mail and 104) and tenant `bare` without a CRM.
async fn start() -> Ui {
    let sandbox = start_sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let settings = dir.path().join("acme.toml");
    std::fs::write(&settings, SETTINGS).unwrap();
    let file = dir.path().join("callbridge.toml");
    std::fs::write(
        &file,
        format!(
            "admin_token = \"ui-admin-token-5b1e\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n\
             directory_refresh_seconds = 0\nallow_insecure_crm_hosts = true\n\
             [[tenants]]\nid = \"acme\"\nmango_api_key = \"ui-key\"\nmango_api_salt = \"ui-salt-0000000000000000000000000\"\n\
             settings = \"{}\"\n\
             [tenants.amocrm]\nbase_url = \"{}\"\nlong_lived_token = \"sandbox-token\"\n\
             [[tenants]]\nid = \"bare\"\nmango_api_key = \"bare-key\"\nmango_api_salt = \"bare-salt-000000000000000000000000\"\n",
            dir.path().join("data").display(),
            settings.display(),
            sandbox.base_url(),
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
    let directory = Directory {
        users: vec![
            vbpx_user("101", "Petrova Anna", None),
            vbpx_user("103", "M. Ivanova", Some("Maria@acme.test")),
            vbpx_user("104", "Courier Pyotr", None),
        ],
        groups: Vec::new(),
        refreshed_at_ms: 1,
        error: None,
    };
    running
        .state
        .directories
        .write()
        .await
        .insert("acme".into(), directory);
    let http = support::client();
    let base = format!("http://{}", running.addr);
    let session = support::sign_in(&http, &base, &password).await;
    Ui {
        running,
        sandbox,
        base,
        http,
        session,
        lang: "en",
        _dir: dir,
    }
}

fn vbpx_user(extension: &str, name: &str, email: Option<&str>) -> VpbxUser {
    VpbxUser {
        user_id: Some(extension.parse().unwrap()),
        name: name.into(),
        email: email.map(str::to_string),
        extension: Some(extension.into()),
        groups: Vec::new(),
        numbers: Vec::new(),
    }
}

/// The default call-processing form, as the page shows it for the default settings.
fn calls_form() -> Vec<(&'static str, String)> {
    [
        ("plan", "extended"),
        ("incoming_new", "contact"),
        ("incoming_repeat", "manual"),
        ("outgoing_new", "contact"),
        ("outgoing_repeat", "manual"),
        ("group_user", ""),
        ("group_owner", "first"),
        ("ivr_user", ""),
        ("tasks_due", "60"),
        ("tasks_evening", "20"),
        ("utc_offset", "180"),
        ("save_all_calls_user", ""),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_string()))
    .collect()
}

fn with(
    mut form: Vec<(&'static str, String)>,
    changes: &[(&'static str, &str)],
) -> Vec<(&'static str, String)> {
    for (k, v) in changes {
        form.retain(|(name, _)| name != k);
        form.push((k, v.to_string()));
    }
    form
}

impl Ui {
    async fn get(&self, path: &str) -> (StatusCode, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header(COOKIE, &self.session)
            .header(ACCEPT_LANGUAGE, self.lang)
            .send()
            .await
            .unwrap();
        (r.status(), r.text().await.unwrap())
    }

    async fn csrf(&self) -> String {
        let (status, html) = self.get("/t/acme/settings/speech").await;
        assert_eq!(status, StatusCode::OK);
        hidden(&html, "csrf")
    }

    /// Posts a form with the session's CSRF token; the status, the redirect, the page.
    async fn post(&self, path: &str, form: &[(&str, String)]) -> (StatusCode, String, String) {
        let mut fields: Vec<(&str, String)> = form.to_vec();
        fields.push(("csrf", self.csrf().await));
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header(COOKIE, &self.session)
            .header(ACCEPT_LANGUAGE, self.lang)
            .form(&fields)
            .send()
            .await
            .unwrap();
        let location = r
            .headers()
            .get(LOCATION)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        (r.status(), location, r.text().await.unwrap())
    }

    async fn settings(&self, tenant: &str) -> Settings {
        self.running
            .state
            .tenant(tenant)
            .await
            .unwrap()
            .settings
            .settings()
            .clone()
    }

    async fn stored_toml(&self, tenant: &str) -> String {
        self.running
            .state
            .store
            .tenant(tenant)
            .await
            .unwrap()
            .unwrap()
            .settings_toml
    }

    async fn versions(&self, tenant: &str) -> Vec<callbridge_store::SettingsVersion> {
        self.running
            .state
            .store
            .settings_versions(tenant, 100)
            .await
            .unwrap()
            .into_iter()
            // Version 1 is the config file's seed of the tenant; the tests count the window's.
            .filter(|v| v.author != "config file")
            .collect()
    }

    async fn stop(self) {
        self.running.shutdown().await;
        self.sandbox.shutdown().await;
    }
}

/// The text of the error paragraph of `field`.
fn field_error(html: &str, field: &str) -> String {
    let marker = format!("<p class=\"field-error\" id=\"{field}-error\">");
    let at = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no error for {field} in {html}"))
        + marker.len();
    html[at..at + html[at..].find("</p>").unwrap()].to_string()
}

#[tokio::test]
async fn save_all_calls_by_the_seeds_steps() {
    let ui = start().await;
    // Tab "Call processing": the blocks, "Other" the last, its switch off and the user field.
    let (status, html) = ui.get("/t/acme/settings/calls").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("<h1>Basic integration settings</h1>"),
        "{html}"
    );
    assert!(
        html.contains("href=\"/t/acme/settings/calls\" aria-current=\"page\">Call processing</a>"),
        "{html}"
    );
    let legends: Vec<&str> = html
        .split("<legend>")
        .skip(1)
        .map(|s| s.split("</legend>").next().unwrap())
        .collect();
    assert_eq!(legends.last(), Some(&"Other"), "{legends:?}");
    assert!(
        html.contains("Save all calls<span class=\"state\""),
        "{html}"
    );
    assert!(html.contains("data-reveals=\"save-all-user-block\""));
    assert!(html.contains("<label for=\"save_all_calls_user\">CRM user</label>"));
    // The CRM's users, read from the sandbox, are the choices.
    assert!(
        html.contains("<option value=\"1003\">Maria Ivanova (maria@acme.test)</option>"),
        "{html}"
    );
    assert!(
        !html.contains("disabled"),
        "extended plan locks nothing: {html}"
    );

    // Switch on, choose the user, Save.
    let form = with(
        calls_form(),
        &[("save_all_calls", "on"), ("save_all_calls_user", "1003")],
    );
    let (status, location, _) = ui.post("/t/acme/settings/calls", &form).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location, "/t/acme/settings/calls?saved=2");
    let s = ui.settings("acme").await;
    assert!(s.calls.save_all_calls.enabled);
    assert_eq!(
        s.calls.save_all_calls.crm_user_id.map(|u| u.get()),
        Some(1003)
    );
    // Kept in the store (what a restart reads), with the rest unchanged.
    let stored = callbridge_core::ValidSettings::parse_toml(&ui.stored_toml("acme").await).unwrap();
    assert_eq!(stored.fallback_user().map(|u| u.get()), Some(1003));
    assert_eq!(stored.crm_user_of("102").map(|u| u.get()), Some(1002));
    let versions = ui.versions("acme").await;
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0].author, "admin (web UI)");
    assert!(
        versions[0]
            .summary
            .contains("calls.save_all_calls.enabled: false → true"),
        "{}",
        versions[0].summary
    );
    let (_, html) = ui.get(&location).await;
    assert!(html.contains("Saved as version 2."), "{html}");
    assert!(html.contains("id=\"save_all_calls\" name=\"save_all_calls\" data-reveals=\"save-all-user-block\" checked"), "{html}");
    assert!(html.contains("<option value=\"1003\" selected>"), "{html}");

    // The same save again changes nothing and makes no version.
    let (status, location, _) = ui.post("/t/acme/settings/calls", &form).await;
    assert_eq!(
        (status, location.as_str()),
        (StatusCode::SEE_OTHER, "/t/acme/settings/calls?unchanged=1")
    );
    assert_eq!(ui.versions("acme").await.len(), 1);

    // The other choices of the tab are stored too.
    let form = with(
        form,
        &[
            ("incoming_new", "contact_and_lead"),
            ("outgoing_repeat", "lead_if_no_open"),
            ("group_owner", "last"),
            ("ivr_record", "on"),
            ("ivr_user", "1001"),
            ("tasks_enabled", "on"),
            ("tasks_due", "90"),
        ],
    );
    let (status, _, body) = ui.post("/t/acme/settings/calls", &form).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    let s = ui.settings("acme").await;
    assert_eq!(s.calls.incoming.new_client, NewClientAction::ContactAndLead);
    assert_eq!(
        s.calls.missed_ivr.responsible_crm_user_id.map(|u| u.get()),
        Some(1001)
    );
    assert!(s.calls.missed_tasks.enabled);
    assert_eq!(s.calls.missed_tasks.due_minutes, 90);
    ui.stop().await;
}

#[tokio::test]
async fn the_seeds_steps_in_russian_use_the_vendors_words() {
    let mut ui = start().await;
    ui.lang = "ru";
    let (_, html) = ui.get("/t/acme/settings/calls").await;
    for words in [
        "<h1>Основные настройки интеграции</h1>",
        ">Обработка звонков</a>",
        "<legend>Прочее</legend>",
        "Сохранять все звонки<span",
        "<label for=\"save_all_calls_user\">Пользователь CRM</label>",
        "Сохранить</button>",
        "Указывать ответственного при пропущенных звонках в группу",
    ] {
        assert!(html.contains(words), "{words} missing: {html}");
    }
    let form = with(calls_form(), &[("save_all_calls", "on")]);
    let (status, _, html) = ui.post("/t/acme/settings/calls", &form).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        field_error(&html, "save_all_calls_user"),
        "Укажите пользователя CRM, к которому будут привязаны все звонки несопоставленных сотрудников."
    );
    ui.stop().await;
}

#[tokio::test]
async fn invalid_values_are_refused_next_to_their_field_and_nothing_is_saved() {
    let ui = start().await;
    let before = ui.stored_toml("acme").await;
    let form = with(
        calls_form(),
        &[
            ("incoming_new", "deal"),
            ("tasks_due", "soon"),
            ("save_all_calls", "on"),
            ("save_all_calls_user", "-4"),
            ("utc_offset", "9999"),
        ],
    );
    let (status, _, html) = ui.post("/t/acme/settings/calls", &form).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        field_error(&html, "incoming_new"),
        "“deal” is not one of the choices."
    );
    assert_eq!(
        field_error(&html, "tasks_due"),
        "Enter a whole number between 1 and 1500."
    );
    assert_eq!(
        field_error(&html, "save_all_calls_user"),
        "“-4” is not a CRM user: a CRM user id is a whole number from 1."
    );
    assert_eq!(
        field_error(&html, "utc_offset"),
        "Enter a whole number between -840 and 840."
    );
    assert!(html.contains("id=\"tasks_due\" name=\"tasks_due\" min=\"1\" max=\"1500\" value=\"soon\" aria-invalid=\"true\" aria-describedby=\"tasks_due-error\""), "{html}");
    // What was typed is shown again, the refused choice included.
    assert!(
        html.contains("<option value=\"deal\" selected>deal</option>"),
        "{html}"
    );
    assert!(html.contains("Nothing was saved"), "{html}");
    // S1 (a rule of the core) is named next to the user field.
    let (status, _, html) = ui
        .post(
            "/t/acme/settings/calls",
            &with(
                calls_form(),
                &[("save_all_calls", "on"), ("tasks_evening", "25")],
            ),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    // Both at once: the form's own fault and the core's rule on the rest.
    assert_eq!(
        field_error(&html, "tasks_evening"),
        "Enter a whole number between 0 and 24."
    );
    assert_eq!(
        field_error(&html, "save_all_calls_user"),
        "Choose the CRM user that calls of unmapped employees are attached to."
    );
    assert_eq!(ui.stored_toml("acme").await, before);
    assert!(ui.versions("acme").await.is_empty());
    ui.stop().await;
}

#[tokio::test]
async fn the_basic_plan_refuses_save_all_calls_with_the_reason() {
    let ui = start().await;
    // A forged form turning the switch on with the basic plan.
    let form = with(
        calls_form(),
        &[
            ("plan", "basic"),
            ("save_all_calls", "on"),
            ("save_all_calls_user", "1003"),
        ],
    );
    let (status, _, html) = ui.post("/t/acme/settings/calls", &form).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        field_error(&html, "save_all_calls"),
        "Available on the extended package only: it cannot be on with the basic package."
    );
    assert_eq!(ui.settings("acme").await.plan, Plan::Extended);
    assert!(ui.versions("acme").await.is_empty());
    // The basic plan saved, the extended-only controls are locked with the reason.
    let (status, _, _) = ui
        .post(
            "/t/acme/settings/calls",
            &with(calls_form(), &[("plan", "basic")]),
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(ui.settings("acme").await.plan, Plan::Basic);
    let (_, html) = ui.get("/t/acme/settings/calls").await;
    for field in ["save_all_calls", "group_responsible", "tasks_enabled"] {
        assert!(
            html.contains(&format!("id=\"{field}\" name=\"{field}\""))
                && html.contains(&format!("aria-describedby=\"{field}-lock\" disabled")),
            "{field} not locked: {html}"
        );
        assert!(html.contains(&format!("<p class=\"hint plan-lock\" id=\"{field}-lock\">Available on the extended package only</p>")));
    }
    let (_, html) = ui.get("/t/acme/settings/speech").await;
    assert!(
        html.contains("aria-describedby=\"speech_save-lock\" disabled"),
        "{html}"
    );
    // A forged speech-analytics save is refused too.
    let (status, _, html) = ui
        .post(
            "/t/acme/settings/speech",
            &[("speech_save", "on".to_string())],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(field_error(&html, "speech_save").starts_with("Available on the extended package only"));
    assert!(!ui.settings("acme").await.speech_analytics.save);
    // In Russian, the vendor's words.
    let mut ui = ui;
    ui.lang = "ru";
    let (_, html) = ui.get("/t/acme/settings/calls").await;
    assert!(
        html.contains("Данная настройка доступна только в расширенном пакете"),
        "{html}"
    );
    ui.stop().await;
}

#[tokio::test]
async fn employees_are_mapped_by_hand_one_to_one() {
    let ui = start().await;
    let (status, html) = ui.get("/t/acme/settings/employees").await;
    assert_eq!(status, StatusCode::OK);
    // Directory and settings together: 101 (both), 102 (settings only), 103, 104 (directory).
    for label in [
        "CRM user for Petrova Anna",
        "CRM user for Ivan Sidorov",
        "CRM user for M. Ivanova",
        "CRM user for Courier Pyotr",
    ] {
        assert!(
            html.contains(&format!("class=\"visually-hidden\">{label}</label>")),
            "{label}: {html}"
        );
    }
    assert_eq!(html.matches("<tr class=\"unmapped\">").count(), 3, "{html}");
    assert!(html.contains("<option value=\"\">— not mapped —</option>"));
    assert!(
        html.contains("<option value=\"1002\" selected>Ivan Sidorov (ivan@acme.test)</option>"),
        "{html}"
    );
    assert!(html.contains("not in the PBX directory"));

    // 1002 is Ivan's: giving it to 101 too is refused on that row, naming Ivan.
    let (status, _, html) = ui
        .post(
            "/t/acme/settings/employees",
            &[
                ("map.101", "1002".into()),
                ("map.102", "1002".into()),
                ("map.103", "".into()),
                ("map.104", "".into()),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    // Rows in extension order: 101 is row 0, but Ivan (102) keeps 1002 only if 101 is second;
    // the refusal lands on the later row in the table.
    let error = field_error(&html, "user-1");
    assert!(error.contains("Petrova Anna (101)"), "{error}");
    assert!(
        error.starts_with("This CRM user is already chosen for"),
        "{error}"
    );
    assert!(html.contains("id=\"user-1\" name=\"map.102\" aria-invalid=\"true\" aria-describedby=\"user-1-error\""), "{html}");
    // A forged non-number is named.
    let (status, _, html) = ui
        .post("/t/acme/settings/employees", &[("map.104", "abc".into())])
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        field_error(&html, "user-3"),
        "“abc” is not a CRM user: a CRM user id is a whole number from 1."
    );
    assert!(ui.versions("acme").await.is_empty());

    // A good mapping: 101 -> 1001, 104 (directory only) -> 1003; 102 unchanged.
    let (status, location, _) = ui
        .post(
            "/t/acme/settings/employees",
            &[
                ("map.101", "1001".into()),
                ("map.102", "1002".into()),
                ("map.103", "".into()),
                ("map.104", "1003".into()),
            ],
        )
        .await;
    assert_eq!(
        (status, location.as_str()),
        (StatusCode::SEE_OTHER, "/t/acme/settings/employees?saved=2")
    );
    let s = ui.settings("acme").await;
    let mapped: Vec<(String, String, Option<u64>)> = s
        .employees
        .iter()
        .map(|e| {
            (
                e.extension.clone(),
                e.name.clone(),
                e.crm_user_id.map(|u| u.get()),
            )
        })
        .collect();
    assert_eq!(
        mapped,
        vec![
            ("101".into(), "Petrova Anna".into(), Some(1001)),
            ("102".into(), "Ivan Sidorov".into(), Some(1002)),
            ("104".into(), "Courier Pyotr".into(), Some(1003)),
        ]
    );
    let (_, html) = ui.get(&location).await;
    assert_eq!(html.matches("<tr class=\"unmapped\">").count(), 1, "{html}");
    ui.stop().await;
}

#[tokio::test]
async fn auto_match_shows_a_review_and_applies_the_ticked_pairs() {
    let ui = start().await;
    let (status, _, html) = ui.post("/t/acme/settings/employees/auto-match", &[]).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    // 101 "Petrova Anna" = "Anna Petrova" by name; 103 by e-mail (case aside); 104 matches none.
    assert!(
        html.contains("name=\"pair\" value=\"101=1001\" checked"),
        "{html}"
    );
    assert!(
        html.contains("name=\"pair\" value=\"103=1003\" checked"),
        "{html}"
    );
    assert!(!html.contains("value=\"104="), "{html}");
    assert!(!html.contains("value=\"102="), "already mapped: {html}");
    assert!(html.contains("Apply</button>"));
    // Nothing is stored by the review.
    assert!(ui.versions("acme").await.is_empty());
    // Apply only the e-mail pair (the owner unticked the other).
    let (status, location, body) = ui
        .post(
            "/t/acme/settings/employees/apply",
            &[("pair", "103=1003".into())],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    assert_eq!(location, "/t/acme/settings/employees?saved=2");
    let s = ui.settings("acme").await;
    let of = |ext: &str| {
        s.employees
            .iter()
            .find(|e| e.extension == ext)
            .and_then(|e| e.crm_user_id)
            .map(|u| u.get())
    };
    assert_eq!(
        (of("101"), of("102"), of("103")),
        (None, Some(1002), Some(1003))
    );
    assert_eq!(
        s.employees
            .iter()
            .find(|e| e.extension == "103")
            .unwrap()
            .name,
        "M. Ivanova"
    );
    // A forged pair giving Ivan's user to another employee is refused, nothing stored.
    let (status, _, html) = ui
        .post(
            "/t/acme/settings/employees/apply",
            &[("pair", "101=1002".into())],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        html.contains("This CRM user is already chosen for"),
        "{html}"
    );
    assert_eq!(ui.versions("acme").await.len(), 1);
    ui.stop().await;
}

#[tokio::test]
async fn versions_are_listed_and_one_is_restored_as_a_new_version() {
    let ui = start().await;
    let (status, _, _) = ui
        .post("/t/acme/settings/speech", &[("speech_save", "on".into())])
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(ui.settings("acme").await.speech_analytics.save);
    let form = with(
        calls_form(),
        &[("save_all_calls", "on"), ("save_all_calls_user", "1001")],
    );
    assert_eq!(
        ui.post("/t/acme/settings/calls", &form).await.0,
        StatusCode::SEE_OTHER
    );
    let (status, html) = ui.get("/t/acme/settings/versions").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("href=\"/t/acme/settings/versions/3\">Version 3</a> <span class=\"badge badge-ok\">in use</span>"), "{html}");
    assert!(
        html.contains("<code>speech_analytics.save: false → true</code>"),
        "{html}"
    );
    assert!(html.contains("admin (web UI)"));
    let (status, html) = ui.get("/t/acme/settings/versions/2").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("[speech_analytics]\nsave = true"), "{html}");
    assert!(html.contains("Restore this version</button>"));
    // Restore version 2: saved as version 4, the fallback gone again.
    let (status, location, _) = ui.post("/t/acme/settings/versions/2/restore", &[]).await;
    assert_eq!(
        (status, location.as_str()),
        (
            StatusCode::SEE_OTHER,
            "/t/acme/settings/versions?restored=4"
        )
    );
    let s = ui.settings("acme").await;
    assert!(!s.calls.save_all_calls.enabled && s.speech_analytics.save);
    let versions = ui.versions("acme").await;
    assert_eq!(versions[0].version, 4);
    assert_eq!(versions[0].summary, "restored version 2");
    let (_, html) = ui.get(&location).await;
    assert!(html.contains("Restored, saved as version 4."), "{html}");
    // A change through the admin API is a version too, with its author.
    let r = ui
        .http
        .put(format!("{}/api/v1/tenants/acme", ui.base))
        .bearer_auth("ui-admin-token-5b1e")
        .json(&serde_json::json!({"settings_toml": "plan = \"basic\"\n"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{:?}", r.text().await);
    let versions = ui.versions("acme").await;
    assert_eq!(
        (versions[0].version, versions[0].author.as_str()),
        (5, "admin API")
    );
    assert!(
        versions[0]
            .summary
            .contains("plan: \"extended\" → \"basic\""),
        "{}",
        versions[0].summary
    );
    assert_eq!(ui.settings("acme").await.plan, Plan::Basic);
    // A version that does not exist.
    let (status, _) = ui.get("/t/acme/settings/versions/99").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = ui.post("/t/acme/settings/versions/x/restore", &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    ui.stop().await;
}

#[tokio::test]
async fn a_form_without_its_csrf_token_is_refused() {
    let ui = start().await;
    let form = with(
        calls_form(),
        &[("save_all_calls", "on"), ("save_all_calls_user", "1003")],
    );
    let r = ui
        .http
        .post(format!("{}/t/acme/settings/calls", ui.base))
        .header(COOKIE, &ui.session)
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(!ui.settings("acme").await.calls.save_all_calls.enabled);
    assert!(ui.versions("acme").await.is_empty());
    ui.stop().await;
}

#[tokio::test]
async fn tabs_routes_and_a_tenant_without_crm() {
    let ui = start().await;
    let r = ui
        .http
        .get(format!("{}/t/acme/settings", ui.base))
        .header(COOKIE, &ui.session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()[LOCATION], "/t/acme/settings/employees");
    assert_eq!(
        ui.get("/t/nobody/settings/calls").await.0,
        StatusCode::NOT_FOUND
    );
    let (status, html) = ui.get("/t/acme/settings/billing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        html.contains("The settings window has no tab “billing”."),
        "{html}"
    );
    let (status, html) = ui.get("/t/acme/settings/card").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("/api/v1/cards/stream?token="), "{html}");
    assert!(html.contains("no settings of its own"), "{html}");
    // Without a CRM: said so, and the window still works with the ids already chosen.
    let (status, html) = ui.get("/t/bare/settings/calls").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("amoCRM is not connected for “bare”"),
        "{html}"
    );
    let form = with(
        calls_form(),
        &[("save_all_calls", "on"), ("save_all_calls_user", "77")],
    );
    let (status, _, _) = ui.post("/t/bare/settings/calls", &form).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, html) = ui.get("/t/bare/settings/calls").await;
    assert!(
        html.contains("<option value=\"77\" selected>CRM user #77</option>"),
        "{html}"
    );
    let (_, html) = ui.get("/t/bare/settings/employees").await;
    assert!(html.contains("amoCRM is not connected"), "{html}");
    assert!(!html.contains("Auto-match</button>"), "{html}");
    ui.stop().await;
}
