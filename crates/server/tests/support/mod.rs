//! What the web UI's HTTP tests share: a client that shows redirects instead of following them,
//! cookies read off responses, hidden form fields read off pages, and signing in as a browser
//! does (the sign-in form's token and its cookie); a service with one tenant.

// Each test binary that includes this module uses only some of it.
#![allow(dead_code)]

use reqwest::header::{COOKIE, SET_COOKIE};
use reqwest::redirect::Policy;
use reqwest::StatusCode;
use secrecy::ExposeSecret;

/// An HTTP client that answers redirects to the test (which checks where they point).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

/// The password a first start made (empty when the store already had one).
pub fn first_password(running: &callbridge_server::Running) -> String {
    running
        .first_admin_password
        .as_ref()
        .map(|p| p.expose_secret().to_string())
        .unwrap_or_default()
}

/// The value a response sets for cookie `name`, with the cookie's attributes.
pub fn set_cookie_with_attributes(
    response: &reqwest::Response,
    name: &str,
) -> Option<(String, String)> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            let (pair, attributes) = v.split_once(';').unwrap_or((v, ""));
            let (k, value) = pair.split_once('=')?;
            (k == name).then(|| (value.to_string(), attributes.to_string()))
        })
}

/// The value a response sets for cookie `name`.
pub fn set_cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    set_cookie_with_attributes(response, name).map(|(value, _)| value)
}

/// The value of the page's hidden field `name` (the first one).
pub fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let at = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} field in {html}"))
        + marker.len();
    html[at..at + html[at..].find('"').unwrap()].to_string()
}

/// Posts the sign-in form as a browser would: loads it, then sends its token with its cookie.
/// The answer is the test's to judge.
pub async fn post_sign_in(
    http: &reqwest::Client,
    base: &str,
    password: &str,
    accept_language: &str,
) -> reqwest::Response {
    let form = http
        .get(format!("{base}/login"))
        .header(reqwest::header::ACCEPT_LANGUAGE, accept_language)
        .send()
        .await
        .unwrap();
    let cookie = set_cookie(&form, "callbridge_sign_in").expect("sign-in cookie");
    let html = form.text().await.unwrap();
    http.post(format!("{base}/login"))
        .header(COOKIE, format!("callbridge_sign_in={cookie}"))
        .header(reqwest::header::ACCEPT_LANGUAGE, accept_language)
        .form(&[
            ("password", password),
            ("csrf", &hidden(&html, "csrf")),
            ("next", "/"),
        ])
        .send()
        .await
        .unwrap()
}

/// Signs in and returns the session's `Cookie` header value.
pub async fn sign_in(http: &reqwest::Client, base: &str, password: &str) -> String {
    let r = post_sign_in(http, base, password, "en").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    format!(
        "callbridge_session={}",
        set_cookie(&r, "callbridge_session").unwrap()
    )
}

/// A service started in a fresh folder `callbridge-<name>-<pid>` (returned) with one tenant
/// `acme` holding this Mango key and salt.
pub async fn start_acme(
    name: &str,
    admin_token: &str,
    key: &str,
    salt: &str,
) -> (callbridge_server::Running, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("callbridge-{name}-{}", std::process::id()));
    let file = callbridge_test_support::one_tenant_config(
        &dir,
        admin_token,
        &callbridge_test_support::TestTenant {
            id: "acme",
            mango_api_key: key,
            mango_api_salt: salt,
        },
    );
    let (config, tenants) = callbridge_server::config::Config::load(Some(&file)).unwrap();
    let running = callbridge_server::start(config, tenants).await.unwrap();
    (running, dir)
}
