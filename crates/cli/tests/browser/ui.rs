//! The UI's words in each language (the product's contract: what a person reads on the screen)
//! and the steps several tests share.

use super::harness::{names, Browser, Control};
use super::product::{Product, TENANT};
use std::time::Duration;

/// The visible labels the tests find controls by, in one language.
pub struct Words {
    pub password: &'static str,
    pub sign_in: &'static str,
    pub sign_out: &'static str,
    pub settings_heading: &'static str,
    pub employees: &'static str,
    pub call_processing: &'static str,
    pub other: &'static str,
    pub save_all_calls: &'static str,
    pub crm_user: &'static str,
    pub save: &'static str,
    pub auto_match: &'static str,
    pub apply: &'static str,
    pub connect_amocrm: &'static str,
    pub reconnect: &'static str,
    /// The label of an employee's CRM-user select, before the employee's name.
    pub crm_user_for: &'static str,
}

pub const EN: Words = Words {
    password: "Password",
    sign_in: "Sign in",
    sign_out: "Sign out",
    settings_heading: "Basic integration settings",
    employees: "Employees",
    call_processing: "Call processing",
    other: "Other",
    save_all_calls: "Save all calls",
    crm_user: "CRM user",
    save: "Save",
    auto_match: "Auto-match",
    apply: "Apply",
    connect_amocrm: "Connect amoCRM",
    reconnect: "Reconnect",
    crm_user_for: "CRM user for",
};

/// The vendor's own words (the seed's Russian help page) where it has them.
pub const RU: Words = Words {
    password: "Пароль",
    sign_in: "Войти",
    sign_out: "Выйти",
    settings_heading: "Основные настройки интеграции",
    employees: "Сотрудники",
    call_processing: "Обработка звонков",
    other: "Прочее",
    save_all_calls: "Сохранять все звонки",
    crm_user: "Пользователь CRM",
    save: "Сохранить",
    auto_match: "Сопоставить автоматически",
    apply: "Применить",
    connect_amocrm: "Подключить amoCRM",
    reconnect: "Переподключить",
    crm_user_for: "Пользователь CRM для",
};

pub fn settings_path(tab: &str) -> String {
    format!("/t/{TENANT}/settings/{tab}")
}

pub fn connections_path() -> String {
    format!("/t/{TENANT}/connections")
}

/// Opens the sign-in page, signs in with the admin password, and waits to be let in.
pub fn sign_in(browser: &Browser, product: &Product) {
    browser.goto(&format!("{}/login", product.base));
    browser.screen("sign-in");
    browser.field(EN.password).fill(&product.password);
    browser.button(EN.sign_in).click();
    browser.wait_until("being let in", Duration::from_secs(10), |b| {
        !b.path().starts_with("/login")
    });
}

/// A person's "click the thing that says X": a button, or a link dressed as one.
pub fn action<'b>(browser: &'b Browser, text: &str) -> Control<'b> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(c) = browser.try_find("button", text) {
            return c;
        }
        if let Ok(c) = browser.try_find("link", text) {
            return c;
        }
        if std::time::Instant::now() >= deadline {
            return browser.button(text); // fails, saying what the page has
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Clicks a control that submits (Save, Apply, Sign in) and waits for the answer: a new page, or
/// a message shown in this one (a form answered in place).
pub fn submit(browser: &Browser, control: &Control<'_>) {
    browser.eval("window.__callbridgeBeforeSubmit = true", vec![]);
    control.click();
    browser.wait_until("the form's answer", Duration::from_secs(10), |b| {
        let same_page = b.eval("return window.__callbridgeBeforeSubmit === true", vec![]);
        (same_page != serde_json::json!(true)
            && b.eval("return document.readyState", vec![]) == serde_json::json!("complete"))
            || !messages(b).is_empty()
    });
}

/// The messages the page shows for the person to read: alerts, status lines, inline errors. The
/// banners every page of a tenant carries (the config file, warnings) are not an answer to a
/// form and are left out.
pub fn messages(browser: &Browser) -> Vec<String> {
    let answer = browser.eval(
        "return [...document.querySelectorAll('[role=alert], [role=status], [aria-live], .field-error, .notice, .flash')]
           .filter((e) => e.checkVisibility() && !e.closest('.file-banner, .banner'))
           .map((e) => e.innerText.replace(/\\s+/g, ' ').trim())
           .filter((t) => t)",
        vec![],
    );
    serde_json::from_value(answer).unwrap_or_default()
}

/// The heading of the block (fieldset or section) a control is in.
pub fn block_heading(browser: &Browser, control: &Control<'_>) -> String {
    browser
        .eval(
            "const block = arguments[0].closest('fieldset, section');
             if (!block) return '';
             const h = block.querySelector('legend, h1, h2, h3, h4');
             return h ? h.innerText.replace(/\\s+/g, ' ').trim() : ''",
            vec![control.json()],
        )
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The words shown next to a control to explain it (a reason it is unavailable, an error): what
/// its `aria-describedby` names, else the text of the field it sits in besides its label.
pub fn reason_next_to(browser: &Browser, control: &Control<'_>) -> String {
    let described = control.description_text();
    if !described.is_empty() {
        return described;
    }
    browser
        .eval(
            "const c = arguments[0];
             const field = c.closest('.field, .switch-row, fieldset > div, li') || c.parentElement;
             const copy = field.cloneNode(true);
             copy.querySelectorAll('label, input, select, textarea').forEach((e) => e.remove());
             return copy.innerText.replace(/\\s+/g, ' ').trim()",
            vec![control.json()],
        )
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Whether the page scrolls sideways (wider than the window).
pub fn scroll_width(browser: &Browser) -> u64 {
    browser
        .eval("return document.documentElement.scrollWidth", vec![])
        .as_u64()
        .unwrap_or(u64::MAX)
}

/// The seed's steps, on the settings window already open: tab "Call processing", block
/// "Other", switch "Save all calls" (the CRM-user field appears only then), the user, "Save".
pub fn turn_on_save_all_calls(browser: &Browser, words: &Words, user: &str) {
    browser.text(words.settings_heading);
    browser.tab(words.call_processing).click();
    browser.wait_for_path(&settings_path("calls"));
    browser.screen("call-processing");
    let switch = browser.switch(words.save_all_calls);
    assert_eq!(
        block_heading(browser, &switch),
        words.other,
        "the switch {:?} is in the block {:?}",
        words.save_all_calls,
        words.other
    );
    assert!(!switch.is_checked(), "{} starts off", words.save_all_calls);
    assert!(
        browser.try_find("field", words.crm_user).is_err(),
        "the {:?} field appears only once the switch is on",
        words.crm_user
    );
    switch.click();
    assert!(switch.is_checked());
    let field = browser.field(words.crm_user);
    field.choose(user);
    browser.screen("save-all-calls-on");
    submit(browser, &browser.button(words.save));
    browser.screen("saved");
}

/// Reads the "Other" block back from a fresh load of the page: whether the switch is on, and
/// whether `user` is the chosen CRM user.
pub fn save_all_calls_state(browser: &Browser, words: &Words, user: &str) -> (bool, bool) {
    browser.goto(&browser.url());
    let on = browser.switch(words.save_all_calls).is_checked();
    let chosen = browser
        .try_find("field", words.crm_user)
        .ok()
        .map(|f| f.chosen())
        .unwrap_or_default();
    (on, names(&chosen, user))
}
