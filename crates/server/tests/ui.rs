//! The web UI over real HTTP: signing in and out, the guard in front of every page, CSRF on
//! every form, the growing wait after wrong passwords, the language switch, the assets.

mod support;

use callbridge_server::config::Config;
use reqwest::header::{ACCEPT_LANGUAGE, COOKIE, LOCATION};
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use support::{hidden, set_cookie_with_attributes};

struct Ui {
    running: callbridge_server::Running,
    base: String,
    http: reqwest::Client,
    password: String,
    _dir: tempfile::TempDir,
}

async fn start() -> Ui {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("callbridge.toml");
    std::fs::write(
        &file,
        format!(
            "admin_token = \"ui-admin-token-5b1e\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n\
             directory_refresh_seconds = 0\n\
             [[tenants]]\nid = \"acme\"\nmango_api_key = \"ui-key\"\nmango_api_salt = \"ui-salt-0000000000000000000000000\"\n",
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
    Ui {
        base: format!("http://{}", running.addr),
        running,
        http: support::client(),
        password,
        _dir: dir,
    }
}

impl Ui {
    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .get(format!("{}{path}", self.base))
            .header(ACCEPT_LANGUAGE, "en-US,en;q=0.9")
    }

    /// Posts the sign-in form as a browser would: the form's token and its cookie.
    async fn sign_in(&self, password: &str) -> reqwest::Response {
        support::post_sign_in(&self.http, &self.base, password, "en").await
    }

    async fn session(&self) -> String {
        let r = self.sign_in(&self.password.clone()).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{:?}", r.text().await);
        let (token, attributes) = set_cookie_with_attributes(&r, "callbridge_session").unwrap();
        assert!(attributes.contains("HttpOnly"), "{attributes}");
        assert!(attributes.contains("SameSite=Lax"), "{attributes}");
        assert!(!attributes.contains("Secure"), "plain http: {attributes}");
        format!("callbridge_session={token}")
    }
}

#[tokio::test]
async fn pages_need_a_session_and_the_right_password_opens_one() {
    let ui = start().await;
    let r = ui.get("/tenants?sort=id").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/login?next=%2Ftenants%3Fsort%3Did");
    let r = ui.get("/login").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    let html = r.text().await.unwrap();
    assert!(
        html.contains("<label for=\"password\">Password</label>"),
        "{html}"
    );

    let session = ui.session().await;
    let r = ui.get("/").header(COOKIE, &session).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/t/acme/settings/employees");
    // Signed in, the sign-in page sends you on.
    let r = ui
        .get("/login")
        .header(COOKIE, &session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    // A made-up session is no session.
    let r = ui
        .get("/")
        .header(COOKIE, "callbridge_session=00ff")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()[LOCATION], "/login?next=%2F");
    ui.running.shutdown().await;
}

#[tokio::test]
async fn a_form_without_its_csrf_token_is_refused_and_sign_out_ends_the_session() {
    let ui = start().await;
    let session = ui.session().await;
    let logout = |csrf: &str| {
        ui.http
            .post(format!("{}/logout", ui.base))
            .header(COOKIE, &session)
            .header(ACCEPT_LANGUAGE, "en")
            .form(&[("csrf", csrf.to_string())])
            .send()
    };
    let r = logout("not-the-token").await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.text().await.unwrap().contains("This form has expired"));
    // Still signed in.
    let r = ui.get("/").header(COOKIE, &session).send().await.unwrap();
    assert_eq!(r.headers()[LOCATION], "/t/acme/settings/employees");

    let page = ui
        .get("/login?next=/")
        .header(COOKIE, &session)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::SEE_OTHER);
    let csrf = session_csrf(&ui, &session).await;
    let r = logout(&csrf).await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/login");
    let r = ui.get("/").header(COOKIE, &session).send().await.unwrap();
    assert_eq!(r.headers()[LOCATION], "/login?next=%2F");
    ui.running.shutdown().await;
}

/// The session's CSRF token, read off a page it renders (the header's sign-out form).
async fn session_csrf(ui: &Ui, session: &str) -> String {
    let html = ui
        .get("/tenants")
        .header(COOKIE, session)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    hidden(&html, "csrf")
}

#[tokio::test]
async fn wrong_passwords_make_the_next_attempt_wait() {
    let ui = start().await;
    for attempt in 1..=3 {
        let r = ui.sign_in("not the password").await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "attempt {attempt}");
        let html = r.text().await.unwrap();
        assert!(html.contains("Wrong password."), "{html}");
        assert!(!html.contains("try again in"), "no wait yet: {html}");
    }
    let r = ui.sign_in("not the password").await;
    let html = r.text().await.unwrap();
    assert!(
        html.contains("Too many wrong passwords: try again in 2 s."),
        "{html}"
    );
    // Even the right password waits its turn.
    let r = ui.sign_in(&ui.password.clone()).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(set_cookie_with_attributes(&r, "callbridge_session").is_none());
    ui.running.shutdown().await;
}

#[tokio::test]
async fn a_sign_in_without_the_forms_token_is_refused() {
    let ui = start().await;
    let r = ui
        .http
        .post(format!("{}/login", ui.base))
        .header(ACCEPT_LANGUAGE, "en")
        .form(&[("password", ui.password.as_str()), ("csrf", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(set_cookie_with_attributes(&r, "callbridge_session").is_none());
    assert!(r.text().await.unwrap().contains("The sign-in form expired"));
    ui.running.shutdown().await;
}

#[tokio::test]
async fn the_language_follows_the_browser_then_the_switch() {
    let ui = start().await;
    let html = ui
        .http
        .get(format!("{}/login", ui.base))
        .header(ACCEPT_LANGUAGE, "ru-RU,ru;q=0.9,en;q=0.8")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("<html lang=\"ru\">"));
    assert!(html.contains(">Войти</button>"), "{html}");
    let r = ui.get("/login?lang=ru&next=%2Ft").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/login?next=%2Ft");
    let (lang, _) = set_cookie_with_attributes(&r, "callbridge_lang").unwrap();
    assert_eq!(lang, "ru");
    let html = ui
        .get("/login")
        .header(COOKIE, "callbridge_lang=ru")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains(">Пароль</label>"),
        "the cookie beats the browser's English"
    );
    // An unknown language is ignored, not an error.
    let r = ui.get("/login?lang=xx").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    ui.running.shutdown().await;
}

#[tokio::test]
async fn assets_are_served_with_their_types() {
    let ui = start().await;
    let r = ui.get("/static/app.css").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "text/css; charset=utf-8");
    let r = ui.get("/static/app.js").send().await.unwrap();
    assert_eq!(
        r.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    let r = ui.get("/static/../Cargo.toml").send().await.unwrap();
    assert_ne!(r.status(), StatusCode::OK);
    ui.running.shutdown().await;
}

#[tokio::test]
async fn a_restart_keeps_the_password_and_prints_none() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("callbridge.toml");
    std::fs::write(
        &file,
        format!(
            "admin_token = \"ui-admin-token-5b1e\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{}\"\ndirectory_refresh_seconds = 0\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let (config, tenants) = Config::load(Some(&file)).unwrap();
    let first = callbridge_server::start(config.clone(), tenants.clone())
        .await
        .unwrap();
    assert!(first.first_admin_password.is_some());
    first.shutdown().await;
    let again = callbridge_server::start(config, tenants).await.unwrap();
    assert!(again.first_admin_password.is_none());
    again.shutdown().await;
}
