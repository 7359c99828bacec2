//! The tenants page over real HTTP: adding a tenant (refusals named next to their field,
//! nothing half-created), its webhook URL at once and working, the tenant's language; and the
//! rule that the config file seeds a tenant while the database keeps later changes.

mod support;

use callbridge_server::config::Config;
use callbridge_server::ui::i18n::Lang;
use callbridge_server::ui::page::Ctx;
use reqwest::header::{ACCEPT_LANGUAGE, COOKIE, LOCATION};
use reqwest::StatusCode;
use std::path::{Path, PathBuf};
use support::hidden;

const SALT: &str = "ui-salt-0000000000000000000000000";
const NEW_SALT: &str = "new-salt-abcdefghijklmnopqrstuvwxyz0123";

struct Ui {
    running: callbridge_server::Running,
    base: String,
    http: reqwest::Client,
    password: String,
}

fn write_config(dir: &Path, settings: Option<&str>) -> PathBuf {
    let file = dir.join("callbridge.toml");
    let mut text = format!(
        "admin_token = \"ui-admin-token-5b1e\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n\
         directory_refresh_seconds = 0\n\
         [[tenants]]\nid = \"acme\"\nmango_api_key = \"acme-key\"\nmango_api_salt = \"{SALT}\"\n",
        dir.join("data").display()
    );
    if let Some(settings) = settings {
        std::fs::write(dir.join("acme.toml"), settings).unwrap();
        text += "settings = \"acme.toml\"\n";
    }
    std::fs::write(&file, text).unwrap();
    file
}

async fn start(file: &Path) -> Ui {
    let (config, tenants) = Config::load(Some(file)).unwrap();
    let running = callbridge_server::start(config, tenants).await.unwrap();
    let password = support::first_password(&running);
    Ui {
        base: format!("http://{}", running.addr),
        running,
        http: support::client(),
        password,
    }
}

impl Ui {
    fn get(&self, path: &str, lang: &str) -> reqwest::RequestBuilder {
        self.http
            .get(format!("{}{path}", self.base))
            .header(ACCEPT_LANGUAGE, lang)
    }

    /// Signs in and returns the session cookie and a CSRF token for its forms.
    async fn session(&self) -> (String, String) {
        let session = support::sign_in(&self.http, &self.base, &self.password).await;
        let page = self
            .get("/tenants", "en")
            .header(COOKIE, &session)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let csrf = hidden(&page, "csrf");
        (session, csrf)
    }

    async fn post(
        &self,
        path: &str,
        session: &(String, String),
        fields: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut form: Vec<(&str, &str)> = fields.to_vec();
        form.push(("csrf", &session.1));
        self.http
            .post(format!("{}{path}", self.base))
            .header(COOKIE, &session.0)
            .header(ACCEPT_LANGUAGE, "en")
            .form(&form)
            .send()
            .await
            .unwrap()
    }

    async fn webhook(&self, tenant: &str, key: &str, salt: &str) -> StatusCode {
        let json = r#"{"entry_id":"E1","call_id":"c1","timestamp":1733000000,"seq":1,"call_state":"Appeared"}"#;
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("vpbx_api_key", key)
            .append_pair("sign", &callbridge_mango::sign(key, json, salt))
            .append_pair("json", json)
            .finish();
        self.http
            .post(format!("{}/mango/{tenant}/events/call", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap()
            .status()
    }
}

/// The text of the `<p class="field-error" id="{field}-error">` on a page.
fn field_error(html: &str, field: &str) -> Option<String> {
    let marker = format!("id=\"{field}-error\">");
    let at = html.find(&marker)? + marker.len();
    Some(html[at..at + html[at..].find('<').unwrap()].to_string())
}

#[tokio::test]
async fn adding_a_tenant_refuses_bad_fields_by_name_and_creates_a_working_one() {
    let dir = tempfile::tempdir().unwrap();
    let ui = start(&write_config(dir.path(), None)).await;
    let session = ui.session().await;

    let page = ui
        .get("/tenants", "en")
        .header(COOKIE, &session.0)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for label in [
        "Add tenant",
        "<label for=\"tenant_id\">Tenant id</label>",
        "<label for=\"mango_api_key\">Mango API key</label>",
        "<label for=\"mango_api_salt\">Mango API salt</label>",
        "<label for=\"language\">Language</label>",
    ] {
        assert!(page.contains(label), "{label} missing from {page}");
    }
    let ru = ui
        .get("/tenants", "ru")
        .header(COOKIE, &session.0)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for label in [
        "Добавить компанию",
        "Идентификатор",
        "Ключ API Mango",
        "Подпись API Mango",
    ] {
        assert!(ru.contains(label), "{label} missing from {ru}");
    }

    // Every field wrong at once: each named next to itself, the salt never sent back.
    let r = ui
        .post(
            "/tenants",
            &session,
            &[
                ("tenant_id", "Bad Id!"),
                ("mango_api_key", "acme-key"),
                ("mango_api_salt", "short-salt-value"),
                ("language", "de"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = r.text().await.unwrap();
    assert!(field_error(&html, "tenant_id")
        .unwrap()
        .contains("lower-case Latin letters"));
    assert_eq!(
        field_error(&html, "mango_api_key").unwrap(),
        "This Mango API key is already used by the tenant “acme”."
    );
    let salt_error = field_error(&html, "mango_api_salt").unwrap();
    assert!(salt_error.contains("this one has 16"), "{salt_error}");
    assert!(field_error(&html, "language").is_some());
    assert!(html.contains("id=\"tenant_id\" name=\"tenant_id\" type=\"text\" value=\"Bad Id!\""));
    assert!(html.contains("aria-invalid=\"true\" aria-describedby=\"mango_api_salt-error"));
    assert!(
        !html.contains("short-salt-value"),
        "the salt is never shown back"
    );
    // An id taken, and empty fields.
    let r = ui
        .post(
            "/tenants",
            &session,
            &[
                ("tenant_id", "acme"),
                ("mango_api_key", ""),
                ("mango_api_salt", ""),
                ("language", "en"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = r.text().await.unwrap();
    assert_eq!(
        field_error(&html, "tenant_id").unwrap(),
        "There is already a tenant “acme”; choose another id."
    );
    assert_eq!(
        field_error(&html, "mango_api_key").unwrap(),
        "Fill in this field."
    );
    let ids: Vec<String> = ui
        .running
        .state
        .store
        .tenants()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(ids, ["acme"], "nothing was created by refused forms");

    // A good one: created, and the browser lands on its Connections page.
    let r = ui
        .post(
            "/tenants",
            &session,
            &[
                ("tenant_id", " shop-2 "),
                ("mango_api_key", "shop-key"),
                ("mango_api_salt", NEW_SALT),
                ("language", "en"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "{:?}", r.text().await);
    assert_eq!(r.headers()[LOCATION], "/t/shop-2/connections");
    let store = &ui.running.state.store;
    let row = store.tenant("shop-2").await.unwrap().unwrap();
    assert_eq!(row.mango_api_key, "shop-key");
    assert_eq!(row.mango_api_salt, NEW_SALT);
    assert_eq!(row.settings_toml, "");
    assert_eq!(
        store.tenant_language("shop-2").await.unwrap().as_deref(),
        Some("en")
    );
    let versions = store.settings_versions("shop-2", 10).await.unwrap();
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0].version, 1);
    assert_eq!(versions[0].author, "admin (web UI)");
    assert_eq!(versions[0].summary, "created in the web UI");
    // Its webhook URL is listed and accepts signed webhooks at once (no restart).
    let page = ui
        .get("/tenants", "en")
        .header(COOKIE, &session.0)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(&format!("{}/mango/shop-2/", ui.base)),
        "{page}"
    );
    assert_eq!(
        ui.webhook("shop-2", "shop-key", NEW_SALT).await,
        StatusCode::OK
    );
    assert_eq!(
        ui.webhook("shop-2", "shop-key", SALT).await,
        StatusCode::FORBIDDEN
    );
    // The same key again, for a third tenant: refused.
    let r = ui
        .post(
            "/tenants",
            &session,
            &[
                ("tenant_id", "shop-3"),
                ("mango_api_key", "shop-key"),
                ("mango_api_salt", NEW_SALT),
                ("language", "ru"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(field_error(&r.text().await.unwrap(), "mango_api_key")
        .unwrap()
        .contains("“shop-2”"));
    // Without the form's CSRF token nothing is created.
    let r = ui
        .http
        .post(format!("{}/tenants", ui.base))
        .header(COOKIE, &session.0)
        .form(&[
            ("tenant_id", "shop-4"),
            ("mango_api_key", "k4"),
            ("mango_api_salt", NEW_SALT),
            ("language", "ru"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(store.tenant("shop-4").await.unwrap().is_none());
    ui.running.shutdown().await;
}

#[tokio::test]
async fn a_tenants_language_is_changed_on_the_list() {
    let dir = tempfile::tempdir().unwrap();
    let ui = start(&write_config(dir.path(), None)).await;
    let session = ui.session().await;
    let store = &ui.running.state.store;
    assert_eq!(
        store.tenant_language("acme").await.unwrap().as_deref(),
        Some("ru"),
        "Russian unless chosen"
    );
    let r = ui
        .post("/tenants/acme/language", &session, &[("language", "en")])
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/tenants?saved=acme#tenant-acme");
    assert_eq!(
        store.tenant_language("acme").await.unwrap().as_deref(),
        Some("en")
    );
    let page = ui
        .get("/tenants?saved=acme", "en")
        .header(COOKIE, &session.0)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("The language of acme is saved."), "{page}");
    assert!(page.contains("<option value=\"en\" selected>English</option>"));
    assert!(page.contains(
        "<label class=\"visually-hidden\" for=\"language-acme\">Language of CRM texts for acme</label>"
    ));
    let r = ui
        .post("/tenants/acme/language", &session, &[("language", "fr")])
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("Choose Russian or English."));
    assert_eq!(
        store.tenant_language("acme").await.unwrap().as_deref(),
        Some("en")
    );
    let r = ui
        .post("/tenants/nobody/language", &session, &[("language", "en")])
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    ui.running.shutdown().await;
}

fn ctx_for(tenant: Option<&str>, lang: Lang) -> Ctx {
    Ctx {
        t: lang.catalogue(),
        lang,
        signed_in: true,
        csrf: String::new(),
        tenants: Vec::new(),
        tenant: tenant.map(str::to_string),
        path: "/".into(),
        section: "",
        file_banner: None,
        banners: Vec::new(),
    }
}

#[tokio::test]
async fn the_config_file_seeds_a_tenant_and_ui_changes_survive_restarts_until_its_entry_changes() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_config(
        dir.path(),
        Some("[calls.save_all_calls]\nenabled = false\n"),
    );
    let settings_of = |ui: &Ui| {
        let state = ui.running.state.clone();
        async move {
            state
                .store
                .tenant("acme")
                .await
                .unwrap()
                .unwrap()
                .settings_toml
        }
    };
    let ui = start(&file).await;
    let versions = ui
        .running
        .state
        .store
        .settings_versions("acme", 10)
        .await
        .unwrap();
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0].author, "config file");
    assert!(versions[0].summary.starts_with("created from "));
    // The banner on the file's tenant, naming the file; none on other tenants or pages.
    let banner = callbridge_server::ui::tenants::file_banner(
        &ui.running.state,
        &ctx_for(Some("acme"), Lang::En),
    )
    .unwrap();
    assert_eq!(
        banner,
        format!(
            "This tenant is defined in {}; changes made here are kept until its entry in that file changes.",
            file.display()
        )
    );
    assert!(callbridge_server::ui::tenants::file_banner(
        &ui.running.state,
        &ctx_for(Some("acme"), Lang::Ru)
    )
    .unwrap()
    .starts_with("Эта компания задана в файле"));
    assert!(callbridge_server::ui::tenants::file_banner(
        &ui.running.state,
        &ctx_for(None, Lang::En)
    )
    .is_none());
    // A change through the admin API (the settings pages save the same row).
    let edited = "[calls.save_all_calls]\nenabled = false\n# edited in the UI\n";
    let put = ui
        .http
        .put(format!("{}/api/v1/tenants/acme", ui.base))
        .bearer_auth("ui-admin-token-5b1e")
        .json(&serde_json::json!({ "settings_toml": edited }))
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success(), "{}", put.text().await.unwrap());
    ui.running
        .state
        .store
        .save_tenant_settings("acme", edited, "admin (web UI)", "edited", 1)
        .await
        .unwrap();
    ui.running
        .state
        .store
        .set_tenant_language("acme", "en")
        .await
        .unwrap();
    ui.running.shutdown().await;

    // Restart, same file: the change is kept, no version is added.
    let ui = start(&file).await;
    assert_eq!(settings_of(&ui).await, edited);
    let store = ui.running.state.store.clone();
    assert_eq!(
        store.settings_versions("acme", 10).await.unwrap().len(),
        3,
        "seed, admin API, UI"
    );
    assert_eq!(
        store.tenant_language("acme").await.unwrap().as_deref(),
        Some("en")
    );
    assert_eq!(
        ui.running
            .state
            .tenant("acme")
            .await
            .unwrap()
            .row
            .settings_toml,
        edited,
        "the service runs with the kept settings"
    );
    ui.running.shutdown().await;

    // A restart with the file's settings changed: the file wins, and a version says so.
    let from_file = "[calls.save_all_calls]\nenabled = false\n# the file changed\n";
    let file = write_config(dir.path(), Some(from_file));
    let ui = start(&file).await;
    assert_eq!(settings_of(&ui).await, from_file);
    let versions = ui
        .running
        .state
        .store
        .settings_versions("acme", 10)
        .await
        .unwrap();
    assert_eq!(versions.len(), 4);
    assert_eq!(versions[0].author, "config file");
    assert!(
        versions[0].summary.starts_with("its entry in ")
            && versions[0].summary.ends_with(" changed"),
        "{}",
        versions[0].summary
    );
    assert_eq!(versions[0].settings_toml, from_file);
    // The language is not part of the file's entry: it stays as set.
    assert_eq!(
        ui.running
            .state
            .store
            .tenant_language("acme")
            .await
            .unwrap()
            .as_deref(),
        Some("en")
    );
    ui.running.shutdown().await;
}
