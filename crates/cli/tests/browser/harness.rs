//! A real headless Chromium driven over WebDriver, as a blocking API for the tests: find controls
//! by their visible label, type, click, use the keyboard; save a screenshot of each screen; fail on
//! any browser console error and on any serious or critical accessibility violation (axe-core).
//!
//! Screenshots go to `target/browser-screens/<test>/<nn>-<screen>.png` (under `CARGO_TARGET_DIR`
//! when that is set), emptied when the test starts.
// Each test uses the part of the harness it needs.
#![allow(dead_code)]

use super::chromedriver::{chromium_path, Chromedriver};
use fantoccini::elements::{Element, ElementRef};
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder};
use serde_json::{json, Value};
use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const FINDERS: &str = include_str!("finders.js");
const AXE: &str = include_str!("vendor/axe.min.js");

/// How long a finder waits for its control to appear (a page still loading, a field revealed).
const FIND_TIMEOUT: Duration = Duration::from_secs(5);

/// The window a test's browser has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Viewport {
    /// A laptop's window: 1280 x 900.
    Desktop,
    /// A phone: 375 x 812 CSS pixels, touch, and the mobile layout rules (`<meta viewport>`).
    Phone,
}

impl Viewport {
    pub fn width(self) -> u32 {
        match self {
            Viewport::Desktop => 1280,
            Viewport::Phone => 375,
        }
    }
}

/// One browser session of one test, with its own chromedriver. Closed (and chromedriver
/// stopped) when dropped, also when the test panics.
pub struct Browser {
    client: Option<Client>,
    // The session's HTTP connection lives on this runtime; every call blocks on it.
    rt: tokio::runtime::Runtime,
    _driver: Chromedriver,
    screens: PathBuf,
    shots: Cell<u32>,
    /// Refusals a test provoked on purpose (a wrong password answered 401): the page's own
    /// status, which Chromium reports as a console error, is not one for these.
    expected_statuses: RefCell<Vec<u16>>,
    pub viewport: Viewport,
}

/// An element of the page found by the harness.
pub struct Control<'b> {
    browser: &'b Browser,
    element: Element,
    /// What it was found by, for messages.
    pub description: String,
}

/// One entry of the browser's console log.
#[derive(Clone, Debug)]
pub struct LogEntry {
    pub level: String,
    pub message: String,
}

/// One axe-core violation: the rule, its impact, what it asks for, and where.
#[derive(Clone, Debug)]
pub struct Violation {
    pub rule: String,
    pub impact: String,
    pub help: String,
    pub targets: Vec<String>,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "[{}] {}: {} at {}",
            self.impact,
            self.rule,
            self.help,
            self.targets.join(", ")
        )
    }
}

pub fn screens_root() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"),
        PathBuf::from,
    );
    target.join("browser-screens")
}

impl Browser {
    /// A desktop browser for the test `test` (its screenshots' folder name).
    pub fn start(test: &str) -> Browser {
        Browser::start_with(test, Viewport::Desktop)
    }

    pub fn start_with(test: &str, viewport: Viewport) -> Browser {
        let screens = screens_root().join(test);
        let _ = std::fs::remove_dir_all(&screens);
        std::fs::create_dir_all(&screens).expect("create the screenshots folder");
        let driver = Chromedriver::start();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime for the WebDriver session");
        let mut args = vec![
            "--headless=new",
            "--no-sandbox",
            "--disable-dev-shm-usage",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            // English unless a test switches the language in the UI.
            "--lang=en-US",
        ];
        let mut options = json!({
            "binary": chromium_path(),
            "prefs": {"intl.accept_languages": "en-US,en"},
        });
        match viewport {
            Viewport::Desktop => args.push("--window-size=1280,900"),
            Viewport::Phone => {
                options["mobileEmulation"] = json!({
                    "deviceMetrics": {"width": 375, "height": 812, "pixelRatio": 2.0, "mobile": true, "touch": true},
                });
            }
        }
        options["args"] = json!(args);
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": options,
            "goog:loggingPrefs": {"browser": "ALL"},
        });
        let serde_json::Value::Object(capabilities) = capabilities else {
            unreachable!("a JSON object literal")
        };
        let client = rt
            .block_on(
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                    .capabilities(capabilities)
                    .connect(&driver.url),
            )
            .unwrap_or_else(|e| panic!("open a Chromium session through chromedriver: {e}"));
        rt.block_on(
            client.update_timeouts(fantoccini::wd::TimeoutConfiguration::new(
                Some(Duration::from_secs(60)),
                Some(Duration::from_secs(30)),
                Some(Duration::ZERO),
            )),
        )
        .expect("set the session's timeouts");
        Browser {
            client: Some(client),
            rt,
            _driver: driver,
            screens,
            shots: Cell::new(0),
            expected_statuses: RefCell::new(Vec::new()),
            viewport,
        }
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("the session is open")
    }

    fn block<T>(
        &self,
        what: &str,
        f: impl std::future::Future<Output = Result<T, fantoccini::error::CmdError>>,
    ) -> T {
        self.rt
            .block_on(f)
            .unwrap_or_else(|e| panic!("browser: {what}: {e}"))
    }

    pub fn goto(&self, url: &str) {
        self.block(&format!("open {url}"), self.client().goto(url));
    }

    pub fn url(&self) -> String {
        self.block("read the URL", self.client().current_url())
            .to_string()
    }

    /// The path (and query) of the current page, as a person reads it in the address bar.
    pub fn path(&self) -> String {
        let url = self.block("read the URL", self.client().current_url());
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        }
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page and returns its answer.
    pub fn eval(&self, script: &str, args: Vec<Value>) -> Value {
        self.block("run a script", self.client().execute(script, args))
    }

    /// What the page shows as text.
    pub fn page_text(&self) -> String {
        self.eval(
            "return document.body ? document.body.innerText : ''",
            vec![],
        )
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    /// Waits until `ready` holds, polling; panics naming `what` after `timeout`.
    pub fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        mut ready: impl FnMut(&Browser) -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        while !ready(self) {
            assert!(
                Instant::now() < deadline,
                "browser: {what} did not happen within {timeout:?} (at {})",
                self.url()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the page's path is `path` (a redirect, a form's answer).
    pub fn wait_for_path(&self, path: &str) {
        self.wait_until(
            &format!("arriving at {path}"),
            Duration::from_secs(10),
            |b| b.path() == path,
        );
    }

    fn wait_loaded(&self) {
        self.wait_until("the page loading", Duration::from_secs(10), |b| {
            b.eval("return document.readyState", vec![]) == json!("complete")
        });
    }

    // ---- screens: screenshot, console, accessibility ----

    /// One screen of the test: waits for the page to load, saves its screenshot, and fails on
    /// any console error so far and on any serious or critical accessibility violation.
    pub fn screen(&self, name: &str) {
        self.wait_loaded();
        let path = self.screenshot(name);
        let errors = self.console_errors();
        assert!(
            errors.is_empty(),
            "browser console errors on screen {name:?} ({}; screenshot {}):\n{}",
            self.url(),
            path.display(),
            errors
                .iter()
                .map(|e| format!("  {}", e.message))
                .collect::<Vec<_>>()
                .join("\n")
        );
        if let Err(violations) = self.axe_check() {
            panic!(
                "accessibility violations (serious or critical) on screen {name:?} ({}; screenshot {}):\n{}",
                self.url(),
                path.display(),
                violations
                    .iter()
                    .map(|v| format!("  {v}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }

    /// Saves a PNG of the viewport as `<nn>-<name>.png` in the test's folder; returns its path.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        let n = self.shots.get() + 1;
        self.shots.set(n);
        let png = self.block("take a screenshot", self.client().screenshot());
        let file: String = name
            .chars()
            .map(|c| {
                if c.is_alphanumeric() || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        let path = self.screens.join(format!("{n:02}-{file}.png"));
        std::fs::write(&path, png).expect("write the screenshot");
        path
    }

    /// The browser's console entries since the last call (chromedriver hands each out once).
    pub fn console(&self) -> Vec<LogEntry> {
        let answer = self.block(
            "read the browser's console log",
            self.client().issue_cmd(BrowserLog),
        );
        answer
            .as_array()
            .map(|entries| {
                entries
                    .iter()
                    .map(|e| LogEntry {
                        level: e["level"].as_str().unwrap_or_default().to_string(),
                        message: e["message"].as_str().unwrap_or_default().to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Says that the next page answers with `status` on purpose (a refused form): its one
    /// console line about the page's own status is then not an error. Anything else still is,
    /// the same status of any other URL (a script, an image, a fetch) included.
    pub fn expect_page_status(&self, status: u16) {
        self.expected_statuses.borrow_mut().push(status);
    }

    /// The SEVERE console entries since the last look: `console.error`, uncaught exceptions,
    /// failed loads (a missing script, a 404 image, a refused request).
    pub fn console_errors(&self) -> Vec<LogEntry> {
        let entries = self.console();
        let page = self.url();
        let page = page.split('#').next().unwrap_or_default();
        let mut expected = self.expected_statuses.borrow_mut();
        entries
            .into_iter()
            .filter(|e| e.level == "SEVERE")
            .filter(|e| {
                let provoked = expected.iter().position(|status| {
                    e.message == format!(
                        "{page} - Failed to load resource: the server responded with a status of {status} ({})",
                        reason_phrase(*status)
                    )
                });
                match provoked {
                    Some(i) => {
                        expected.remove(i);
                        false
                    }
                    None => true,
                }
            })
            .collect()
    }

    /// Runs axe-core (vendored) on the page; the serious and critical violations, if any.
    pub fn axe_check(&self) -> Result<(), Vec<Violation>> {
        let loaded = self.eval("return typeof window.axe === 'object'", vec![]);
        if loaded != json!(true) {
            self.eval(AXE, vec![]);
        }
        let answer = self.block(
            "run axe-core",
            self.client().execute_async(
                r#"const done = arguments[arguments.length - 1];
                axe.run(document, { resultTypes: ["violations"] }).then(
                  (r) => done({ violations: r.violations.map((v) => ({
                    rule: v.id, impact: v.impact, help: v.help,
                    targets: v.nodes.map((n) => n.target.join(" ")),
                  })) }),
                  (e) => done({ error: String(e) }),
                );"#,
                vec![],
            ),
        );
        if let Some(error) = answer["error"].as_str() {
            panic!("axe-core failed to run: {error}");
        }
        let violations: Vec<Violation> = answer["violations"]
            .as_array()
            .expect("axe answers a list of violations")
            .iter()
            .map(|v| Violation {
                rule: v["rule"].as_str().unwrap_or_default().to_string(),
                impact: v["impact"].as_str().unwrap_or_default().to_string(),
                help: v["help"].as_str().unwrap_or_default().to_string(),
                targets: v["targets"]
                    .as_array()
                    .map(|t| {
                        t.iter()
                            .filter_map(|s| s.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default(),
            })
            .filter(|v| v.impact == "serious" || v.impact == "critical")
            .collect();
        if violations.is_empty() {
            Ok(())
        } else {
            Err(violations)
        }
    }

    // ---- finders, by visible text ----

    /// Looks once for a control of `kind` (field, switch, button, link, tab, text) showing `text`.
    pub fn try_find(&self, kind: &str, text: &str) -> Result<Control<'_>, String> {
        let answer = self.eval(FINDERS, vec![json!(kind), json!(text)]);
        if let Some(found) = answer.get("found") {
            let id = found
                .as_object()
                .and_then(|o| o.values().next())
                .and_then(Value::as_str)
                .ok_or_else(|| format!("the finder answered no element: {answer}"))?;
            return Ok(Control {
                browser: self,
                element: Element::from_element_id(
                    self.client().clone(),
                    ElementRef::from(id.to_string()),
                ),
                description: format!("{kind} {text:?}"),
            });
        }
        Err(answer["missing"]
            .as_str()
            .map_or_else(|| format!("the finder answered {answer}"), str::to_string))
    }

    /// Waits (up to 5 s) for a control of `kind` showing `text`; panics saying what the page has.
    pub fn find(&self, kind: &str, text: &str) -> Control<'_> {
        let deadline = Instant::now() + FIND_TIMEOUT;
        loop {
            match self.try_find(kind, text) {
                Ok(control) => return control,
                Err(missing) if Instant::now() >= deadline => {
                    let shot = self.screenshot(&format!("missing-{kind}"));
                    panic!(
                        "browser: {missing} (at {}; screenshot {})",
                        self.url(),
                        shot.display()
                    )
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// The form control whose `<label>` reads `label` (its `for` target or the control inside it).
    pub fn field(&self, label: &str) -> Control<'_> {
        self.find("field", label)
    }

    /// A checkbox or `role=switch` labelled `label`.
    pub fn switch(&self, label: &str) -> Control<'_> {
        self.find("switch", label)
    }

    pub fn button(&self, text: &str) -> Control<'_> {
        self.find("button", text)
    }

    pub fn link(&self, text: &str) -> Control<'_> {
        self.find("link", text)
    }

    /// A tab: `role=tab`, or a link inside the `role=tablist`.
    pub fn tab(&self, text: &str) -> Control<'_> {
        self.find("tab", text)
    }

    /// An element whose own visible text is exactly `text` (a heading, a message).
    pub fn text(&self, text: &str) -> Control<'_> {
        self.find("text", text)
    }

    /// True when a control of `kind` showing `text` is on the page now.
    pub fn shows(&self, kind: &str, text: &str) -> bool {
        self.try_find(kind, text).is_ok()
    }

    // ---- keyboard ----

    fn keys(&self, keys: &[char]) {
        use fantoccini::actions::{InputSource, KeyAction, KeyActions};
        let mut actions = KeyActions::new("keyboard".to_string());
        for &key in keys {
            actions = actions
                .then(KeyAction::Down { value: key })
                .then(KeyAction::Up { value: key });
        }
        self.block("press keys", self.client().perform_actions(actions));
    }

    /// Presses Tab `times` times, wherever the focus is.
    pub fn press_tab(&self, times: usize) {
        self.keys(&vec![char::from(fantoccini::key::Key::Tab); times]);
    }

    pub fn press_enter(&self) {
        self.keys(&[char::from(fantoccini::key::Key::Enter)]);
    }

    pub fn press_space(&self) {
        self.keys(&[' ']);
    }

    /// The focused element (`document.activeElement`).
    pub fn focused(&self) -> Control<'_> {
        let element = self.block("read the focused element", self.client().active_element());
        Control {
            browser: self,
            element,
            description: "the focused element".to_string(),
        }
    }

    /// Tabs forward (at most `limit` times) until the focused element's accessible name is
    /// `name` (or starts with it and a space: a switch's name may end with its state, "Off");
    /// answers how many presses it took.
    pub fn tab_to(&self, name: &str, limit: usize) -> usize {
        let mut seen = Vec::new();
        for presses in 1..=limit {
            self.press_tab(1);
            let focused = self.focused().accessible_name();
            if focused == name || focused.starts_with(&format!("{name} ")) {
                return presses;
            }
            seen.push(focused);
        }
        panic!(
            "browser: {limit} presses of Tab never reached {name:?}; focus went through {seen:?}"
        )
    }

    /// Closes the session after a last look at the console.
    pub fn finish(mut self) {
        let errors = self.console_errors();
        assert!(
            errors.is_empty(),
            "browser console errors at the end of the test ({}): {errors:?}",
            self.url()
        );
        if let Some(client) = self.client.take() {
            let _ = self.rt.block_on(client.close());
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ends the Chromium process; chromedriver is stopped after this, by its own Drop.
        if let Some(client) = self.client.take() {
            let _ = self.rt.block_on(client.close());
        }
    }
}

impl Control<'_> {
    fn block<T>(
        &self,
        what: &str,
        f: impl std::future::Future<Output = Result<T, fantoccini::error::CmdError>>,
    ) -> T {
        self.browser
            .rt
            .block_on(f)
            .unwrap_or_else(|e| panic!("browser: {what} {}: {e}", self.description))
    }

    /// Clicks it as a person does: scrolled to the middle of the window first, so a sticky bar
    /// (the settings' Save bar) does not lie over it.
    pub fn click(&self) {
        self.scroll_into_view();
        self.block("click", self.element.click());
    }

    pub fn scroll_into_view(&self) {
        self.browser.eval(
            "arguments[0].scrollIntoView({ block: 'center', inline: 'nearest' })",
            vec![self.json()],
        );
    }

    /// Replaces what the field holds with `text`, typed.
    pub fn fill(&self, text: &str) {
        self.block("clear", self.element.clear());
        self.block("type into", self.element.send_keys(text));
    }

    /// Types `text` (keys and all) into the element.
    pub fn type_keys(&self, text: &str) {
        self.block("type into", self.element.send_keys(text));
    }

    /// Chooses the option of a `<select>` whose visible text is `option`, or, when none is,
    /// the one option that is `option` followed by a detail in parentheses ("Olga (olga@…)").
    pub fn choose(&self, option: &str) {
        let options = self.options();
        let text = if options.iter().any(|o| o == option) {
            option.to_string()
        } else {
            let detailed: Vec<&String> = options.iter().filter(|o| names(o, option)).collect();
            match detailed.as_slice() {
                [one] => one.to_string(),
                _ => panic!(
                    "browser: {} has no option {option:?} (or one such with a detail); it offers {options:?}",
                    self.description
                ),
            }
        };
        self.block("choose in", self.element.select_by_label(&text));
    }

    /// The visible texts of a `<select>`'s options.
    pub fn options(&self) -> Vec<String> {
        let answer = self.browser.eval(
            "return [...arguments[0].options].map((o) => o.text.replace(/\\s+/g, ' ').trim())",
            vec![self.json()],
        );
        serde_json::from_value(answer).unwrap_or_default()
    }

    /// The text of the chosen option of a `<select>`.
    pub fn chosen(&self) -> String {
        self.browser
            .eval(
                "const s = arguments[0]; return s.selectedIndex < 0 ? '' : s.options[s.selectedIndex].text.trim()",
                vec![self.json()],
            )
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn value(&self) -> String {
        self.block("read the value of", self.element.prop("value"))
            .unwrap_or_default()
    }

    pub fn is_checked(&self) -> bool {
        let answer = self.browser.eval(
            "const e = arguments[0]; return e.getAttribute('role') === 'switch' && e.tagName !== 'INPUT' ? e.getAttribute('aria-checked') === 'true' : e.checked === true",
            vec![self.json()],
        );
        answer == json!(true)
    }

    pub fn is_enabled(&self) -> bool {
        self.block("read whether enabled", self.element.is_enabled())
    }

    pub fn is_displayed(&self) -> bool {
        self.block("read whether displayed", self.element.is_displayed())
    }

    pub fn text(&self) -> String {
        self.block("read the text of", self.element.text())
    }

    pub fn attr(&self, name: &str) -> Option<String> {
        self.block("read an attribute of", self.element.attr(name))
    }

    /// The accessible name the browser computes (what a screen reader says).
    pub fn accessible_name(&self) -> String {
        let answer = self.block(
            "read the accessible name of",
            self.browser
                .client()
                .issue_cmd(ComputedLabel(self.element.element_id())),
        );
        answer.as_str().unwrap_or_default().to_string()
    }

    /// The text of the elements this control's `aria-describedby` names (an inline error).
    pub fn description_text(&self) -> String {
        self.browser
            .eval(
                "return (arguments[0].getAttribute('aria-describedby') || '').split(/\\s+/).map((id) => document.getElementById(id)).filter((e) => e).map((e) => e.innerText.trim()).join(' ')",
                vec![self.json()],
            )
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The element as a script argument.
    pub fn json(&self) -> Value {
        serde_json::to_value(&self.element).expect("an element reference is JSON")
    }
}

/// Whether an option's text is `name`, alone or followed by a detail in parentheses.
pub fn names(text: &str, name: &str) -> bool {
    text == name
        || text
            .strip_prefix(name)
            .is_some_and(|rest| rest.starts_with(" ("))
}

/// How Chromium names a status in its console line.
fn reason_phrase(status: u16) -> &'static str {
    http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("")
}

/// chromedriver's browser log (`POST /session/{id}/se/log`, type `browser`): each entry once.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(r#"{"type":"browser"}"#.to_string()),
        )
    }
}

/// WebDriver's Get Computed Label: the element's accessible name from the accessibility tree.
#[derive(Debug)]
struct ComputedLabel(ElementRef);

impl WebDriverCompatibleCommand for ComputedLabel {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/element/{}/computedlabel",
            session_id.unwrap_or_default(),
            self.0
        ))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::GET, None)
    }
}
