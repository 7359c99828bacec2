//! The harness tested on pages this test binary serves itself: a console error and an unlabelled
//! field must fail a screen, a labelled form must pass and be driven by its labels and the keyboard,
//! and the phone window must really be 375 px wide.

use super::harness::{Browser, Viewport};
use axum::extract::State;
use axum::response::{Html, Redirect};
use axum::routing::get;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};

/// A page with what every page of the product has: a language, a title, a viewport for phones, an
/// icon (so the browser does not ask for /favicon.ico) and a main landmark.
fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <link rel=\"icon\" href=\"data:,\"><title>{title}</title>\
         <style>.visually-hidden {{ position: absolute; width: 1px; height: 1px; overflow: hidden; \
         clip: rect(0 0 0 0); white-space: nowrap; }} .switch-text {{ display: flex; flex-direction: column; }} body {{ margin: 0; font: 16px sans-serif; }}</style>\
         </head><body>{body}</body></html>"
    ))
}

const FORM: &str = r#"<header><nav aria-label="Language"><a href="/form?lang=en">English</a>
  <a href="/form?lang=ru" lang="ru">Русский</a></nav></header>
<main><h1>Harness form</h1>
<div role="tablist" aria-label="Settings">
  <a role="tab" aria-selected="true" href="/form">Employees</a>
  <a role="tab" aria-selected="false" href="/form?tab=calls">Call processing</a>
</div>
<form method="post" action="/form">
  <p><label for="password">Password</label> <input id="password" name="password" type="password"></p>
  <p><label class="switch"><input type="checkbox" role="switch" name="save_all">
    <span class="switch-text">Save all calls<span class="state">Off</span></span></label></p>
  <p><label for="user">CRM user *</label>
    <select id="user" name="user"><option value="">Nobody</option><option value="7">Anna Petrova</option></select></p>
  <p><label for="pair-ivan" class="visually-hidden">CRM user for Ivan</label>
    <select id="pair-ivan" name="ivan"><option value="">Not mapped</option><option value="7">Anna Petrova</option></select></p>
  <button type="button" style="display: none">Hidden</button>
  <button type="submit">Sign in</button>
</form></main>"#;

struct Pages {
    base: String,
    posted: Arc<Mutex<Vec<String>>>,
    _rt: tokio::runtime::Runtime,
}

fn serve_pages() -> Pages {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let posted = Arc::new(Mutex::new(Vec::new()));
    let app = axum::Router::new()
        .route(
            "/form",
            get(|| async { page("Harness form", FORM) }).post(
                |State(posted): State<Arc<Mutex<Vec<String>>>>, body: String| async move {
                    posted.lock().unwrap().push(body);
                    Redirect::to("/received")
                },
            ),
        )
        .route(
            "/received",
            get(|| async { page("Received", "<main><h1>Received</h1></main>") }),
        )
        .route(
            "/refused",
            get(|| async {
                (
                    axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                    page("Refused", "<main><h1>Refused on purpose</h1></main>"),
                )
            }),
        )
        .route(
            "/refused-image",
            get(|| async {
                page(
                    "Refused image",
                    "<main><h1>An image refused</h1><img src=\"/refused\" alt=\"refused\"></main>",
                )
            }),
        )
        .route(
            "/console-error",
            get(|| async {
                page(
                    "Console error",
                    "<main><h1>Logs an error</h1></main>\
                     <script>console.error('harness self-test: a deliberate error')</script>",
                )
            }),
        )
        .route(
            "/throws",
            get(|| async {
                page(
                    "Throws",
                    "<main><h1>Throws and misses an image</h1><img src=\"/missing.png\" alt=\"missing\"></main>\
                     <script>throw new Error('harness self-test: uncaught')</script>",
                )
            }),
        )
        .route(
            "/unlabelled",
            get(|| async {
                page(
                    "Unlabelled",
                    "<main><h1>A field without a label</h1><form><input type=\"text\" name=\"q\"></form></main>",
                )
            }),
        )
        .route(
            "/narrow",
            get(|| async {
                page(
                    "Narrow",
                    "<main><h1>Fits a phone</h1><p style=\"max-width: 100%\">Short text.</p></main>",
                )
            }),
        )
        .route(
            "/wide",
            get(|| async {
                page(
                    "Wide",
                    "<main><h1>Too wide</h1><div style=\"width: 600px\">A fixed 600 px block.</div></main>",
                )
            }),
        )
        .with_state(posted.clone());
    let base = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    });
    Pages {
        base,
        posted,
        _rt: rt,
    }
}

/// Runs `f`, which must panic; answers its message.
fn panic_message(f: impl FnOnce()) -> String {
    let payload = std::panic::catch_unwind(AssertUnwindSafe(f)).expect_err("the check must fail");
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

#[test]
fn a_labelled_form_passes_and_is_driven_by_labels_and_keyboard() {
    let pages = serve_pages();
    let browser = Browser::start("selftest-form");
    browser.goto(&format!("{}/form", pages.base));
    browser.screen("form");
    // The window is 1280 x 900; the page gets its whole width.
    assert_eq!(
        browser.eval("return window.innerWidth", vec![]),
        serde_json::json!(1280)
    );

    // Every finder, by visible text only.
    browser.field("Password").fill("correct horse");
    let switch = browser.switch("Save all calls");
    assert!(!switch.is_checked());
    switch.click();
    assert!(switch.is_checked());
    // A required marker after the words does not change what the label says.
    browser.field("CRM user").choose("Anna Petrova");
    assert_eq!(browser.field("CRM user").chosen(), "Anna Petrova");
    // A visually hidden label still names its control.
    assert_eq!(
        browser.field("CRM user for Ivan").options(),
        ["Not mapped", "Anna Petrova"]
    );
    assert_eq!(
        browser.tab("Call processing").attr("href").as_deref(),
        Some("/form?tab=calls")
    );
    assert!(browser.link("Русский").is_displayed());
    assert!(browser.text("Harness form").is_displayed());

    // What is not visible, or not a label, is not found; the miss says what the page offers.
    let hidden = browser.try_find("button", "Hidden").err().unwrap();
    assert!(hidden.contains("\"Sign in\""), "{hidden}");
    let missing = browser.try_find("field", "Login").err().unwrap();
    assert!(
        missing.contains("no visible label \"Login\"") && missing.contains("\"Password\""),
        "{missing}"
    );
    assert!(browser.try_find("switch", "Password").is_err());
    assert!(browser.try_find("field", "Employees").is_err());

    // Keyboard only: from the top of the page, Tab walks the controls by their accessible names.
    browser.goto(&format!("{}/form", pages.base));
    assert_eq!(browser.tab_to("Password", 10), 5);
    browser.press_tab(1);
    // The switch's visible state is part of its label, on a line of its own.
    assert_eq!(browser.focused().accessible_name(), "Save all calls Off");
    browser.press_space();
    assert!(browser.switch("Save all calls").is_checked());
    assert_eq!(browser.tab_to("Sign in", 5), 3);
    // Enter in a field submits its form.
    browser.field("Password").type_keys("s3cret");
    browser.press_enter();
    browser.wait_for_path("/received");
    browser.screen("received");
    let posted = pages.posted.lock().unwrap().clone();
    assert_eq!(posted, ["password=s3cret&save_all=on&user=&ivan="]);

    let screens: Vec<String> =
        std::fs::read_dir(super::harness::screens_root().join("selftest-form"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
    assert!(screens.contains(&"01-form.png".to_string()), "{screens:?}");
    assert!(
        screens.contains(&"02-received.png".to_string()),
        "{screens:?}"
    );
    browser.finish();
}

#[test]
fn a_console_error_fails_the_screen() {
    let pages = serve_pages();
    let browser = Browser::start("selftest-console");
    browser.goto(&format!("{}/console-error", pages.base));
    let message = panic_message(|| browser.screen("console-error"));
    assert!(
        message.contains("browser console errors on screen \"console-error\"")
            && message.contains("harness self-test: a deliberate error"),
        "{message}"
    );

    browser.goto(&format!("{}/throws", pages.base));
    browser.wait_until(
        "the image failing",
        std::time::Duration::from_secs(5),
        |b| {
            b.eval(
                "return document.images[0].complete && document.images[0].naturalWidth === 0",
                vec![],
            ) == serde_json::json!(true)
        },
    );
    let errors: Vec<String> = browser
        .console_errors()
        .into_iter()
        .map(|e| e.message)
        .collect();
    assert!(
        errors
            .iter()
            .any(|m| m.contains("Uncaught Error: harness self-test: uncaught")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|m| m.contains("/missing.png") && m.contains("404")),
        "{errors:?}"
    );

    // A page refused on purpose passes only when the test said it expects that status.
    browser.goto(&format!("{}/refused", pages.base));
    let message = panic_message(|| browser.screen("refused-unexpected"));
    assert!(
        message.contains("status of 422 (Unprocessable Entity)"),
        "{message}"
    );
    browser.expect_page_status(422);
    browser.goto(&format!("{}/refused", pages.base));
    browser.screen("refused-expected");
    // The expectation is for the page itself, once: the same status of an image still fails.
    browser.expect_page_status(422);
    browser.goto(&format!("{}/refused-image", pages.base));
    browser.wait_until(
        "the image failing",
        std::time::Duration::from_secs(5),
        |b| b.eval("return document.images[0].complete", vec![]) == serde_json::json!(true),
    );
    let message = panic_message(|| browser.screen("refused-image"));
    assert!(
        message.contains("/refused - Failed to load resource"),
        "{message}"
    );

    // Each entry is reported once: a clean page after them passes.
    browser.goto(&format!("{}/received", pages.base));
    browser.screen("clean-after");
    browser.finish();
}

#[test]
fn an_unlabelled_field_fails_the_accessibility_check() {
    let pages = serve_pages();
    let browser = Browser::start("selftest-axe");
    browser.goto(&format!("{}/unlabelled", pages.base));
    let violations = browser
        .axe_check()
        .expect_err("axe must refuse an unlabelled field");
    let label = violations
        .iter()
        .find(|v| v.rule == "label")
        .unwrap_or_else(|| panic!("no `label` violation among {violations:?}"));
    assert_eq!(label.impact, "critical");
    assert_eq!(label.targets, ["input"]);
    let message = panic_message(|| browser.screen("unlabelled"));
    assert!(
        message.contains("accessibility violations") && message.contains("label"),
        "{message}"
    );
    drop(browser);
}

#[test]
fn the_phone_window_is_375_pixels_wide() {
    let pages = serve_pages();
    let browser = Browser::start_with("selftest-phone", Viewport::Phone);
    let widths = |b: &Browser| {
        let v = b.eval(
            "return [window.innerWidth, document.documentElement.scrollWidth]",
            vec![],
        );
        (v[0].as_u64().unwrap(), v[1].as_u64().unwrap())
    };
    browser.goto(&format!("{}/narrow", pages.base));
    browser.screen("narrow");
    assert_eq!(widths(&browser), (375, 375));
    browser.goto(&format!("{}/wide", pages.base));
    browser.screen("wide");
    // A phone widens its layout to what overflows; the page scrolls sideways.
    let (_, scroll) = widths(&browser);
    assert!(scroll > 375, "a 600 px block scrolls sideways: {scroll}");
    browser.finish();
}
