//! The issue's browser tests: an owner signs in, connects amoCRM, maps employees, turns on "Save
//! all calls" by the seed's steps (in English and in Russian) and sees a call land on the chosen
//! user; the basic plan refuses the switch; settings survive a restart; the settings window works
//! at a phone's width and with the keyboard alone. Every screen: screenshot, console, axe.

use super::harness::{names, Browser, Viewport};
use super::product::{crm_user_name, Crm, Plan, Product, CRM_ACCOUNT, MANGO_KEY, TENANT};
use super::ui::*;
use std::time::Duration;

#[test]
fn sign_in_refuses_a_wrong_password_and_signs_out() {
    let product = Product::start("sign-in", Plan::Extended, Crm::Connected);
    // Without a session a protected page sends the browser to the sign-in page.
    for path in ["/tenants".to_string(), settings_path("calls")] {
        let (status, location) = product.get_without_session(&path);
        assert!(
            matches!(status, 302 | 303 | 307),
            "{path} without a session: {status}"
        );
        assert!(
            location.as_deref().is_some_and(|l| l.starts_with("/login")),
            "{path} without a session redirected to {location:?}"
        );
    }

    let browser = Browser::start("sign-in");
    browser.goto(&format!("{}/tenants", product.base));
    browser.wait_until("the sign-in page", Duration::from_secs(10), |b| {
        b.path().starts_with("/login")
    });
    browser.screen("sign-in");
    browser.field(EN.password).fill("not-the-password-at-all");
    browser.expect_page_status(401);
    submit(&browser, &browser.button(EN.sign_in));
    assert!(browser.path().starts_with("/login"), "{}", browser.path());
    let refusal = browser.field(EN.password).description_text();
    assert!(
        refusal.contains("Wrong password"),
        "a wrong password is refused with a message next to the field: {refusal:?}"
    );
    browser.screen("wrong-password");

    // The right one: back to the page asked for, then the product's start is the settings window.
    browser.field(EN.password).fill(&product.password);
    submit(&browser, &browser.button(EN.sign_in));
    browser.wait_for_path("/tenants");
    browser.screen("signed-in");
    browser.goto(&format!("{}/", product.base));
    browser.wait_for_path(&settings_path("employees"));
    browser.text(EN.settings_heading);
    browser.screen("settings");

    browser.button(EN.sign_out).click();
    browser.wait_until("the sign-in page", Duration::from_secs(10), |b| {
        b.path().starts_with("/login")
    });
    browser.screen("signed-out");
    // The session is over: the product is closed again.
    browser.goto(&format!("{}{}", product.base, settings_path("employees")));
    browser.wait_until("the sign-in page", Duration::from_secs(10), |b| {
        b.path().starts_with("/login")
    });
    browser.finish();
}

#[test]
fn connections_test_mango_and_connect_amocrm_through_oauth() {
    let product = Product::start("oauth", Plan::Extended, Crm::OAuth);
    let browser = Browser::start("connections");
    sign_in(&browser, &product);
    browser.goto(&format!("{}{}", product.base, connections_path()));
    browser.text("Mango Office");
    browser.screen("connections");
    assert!(
        browser
            .page_text()
            .contains(&format!("{}/", product.webhook_base())),
        "the webhook URL to paste into Mango is shown"
    );
    assert!(browser.button("Copy").is_displayed());

    // "Test connection" loads the employees through the VPBX API (the emulator allows one such
    // request per 2 s, and the server loaded its directory at start: it may ask to wait).
    let mut tested = String::new();
    for _ in 0..5 {
        submit(&browser, &action(&browser, "Test connection"));
        tested = messages(&browser).join(" | ");
        if tested.contains("Employees in Mango: 4") {
            break;
        }
        std::thread::sleep(Duration::from_millis(2500));
    }
    assert!(
        tested.contains("Employees in Mango: 4"),
        "the test loads the office's 4 employees: {tested}"
    );
    browser.screen("mango-tested");

    action(&browser, EN.connect_amocrm).click();
    // amoCRM's consent (the sandbox approves at once), then back to the product.
    browser.wait_until("coming back from amoCRM", Duration::from_secs(15), |b| {
        b.path().starts_with(&connections_path())
    });
    browser.wait_until("the account's name", Duration::from_secs(10), |b| {
        b.page_text().contains(CRM_ACCOUNT)
    });
    browser.screen("connected");
    // Connected: the action now reconnects.
    action(&browser, EN.reconnect);
    browser.finish();
}

#[test]
fn add_a_tenant_and_see_its_webhook_url_at_once() {
    let product = Product::start("tenants", Plan::Extended, Crm::Connected);
    let browser = Browser::start("add-tenant");
    sign_in(&browser, &product);
    browser.goto(&format!("{}/tenants", product.base));
    browser.screen("tenants");
    let salt = "globex-salt-0123456789abcdef0123456789";
    // A Mango key another tenant uses is refused next to its field; nothing is created.
    browser.field("Tenant id").fill("globex");
    browser.field("Mango API key").fill(MANGO_KEY);
    browser.field("Mango API salt").fill(salt);
    browser.expect_page_status(422);
    submit(&browser, &browser.button("Add tenant"));
    let refusal = browser.field("Mango API key").description_text();
    assert!(
        refusal.contains("already used") && refusal.contains(TENANT),
        "the refusal next to the key names the tenant using it: {refusal:?}"
    );
    browser.field("Mango API key").scroll_into_view();
    browser.screen("tenant-refused");
    assert!(
        !browser.page_text().contains("/mango/globex/"),
        "nothing half-created"
    );

    browser.field("Mango API key").fill("globex-vpbx-key");
    browser.field("Mango API salt").fill(salt);
    submit(&browser, &browser.button("Add tenant"));
    browser.wait_for_path("/t/globex/connections");
    let webhook = format!("{}/mango/globex/", product.base);
    assert!(
        browser.page_text().contains(&webhook),
        "the new tenant's webhook URL is shown at once"
    );
    browser.screen("tenant-added");
    browser.goto(&format!("{}/tenants", product.base));
    assert!(browser.page_text().contains(&webhook));
    // The header's switcher knows it.
    assert!(browser
        .field("Tenant")
        .options()
        .contains(&"globex".to_string()));
    browser.screen("tenants-after");
    browser.finish();
}

#[test]
fn employees_mapped_by_hand_and_by_auto_match() {
    let product = Product::start("employees", Plan::Extended, Crm::Connected);
    let browser = Browser::start("employees");
    sign_in(&browser, &product);
    browser.goto(&format!("{}{}", product.base, settings_path("calls")));
    browser.tab(EN.employees).click();
    browser.wait_for_path(&settings_path("employees"));
    let olga = format!("{} Olga Smirnova", EN.crm_user_for);
    // The directory is loaded from the PBX in the background: wait for its rows.
    browser.wait_until("the PBX's employees", Duration::from_secs(15), |b| {
        b.goto(&b.url());
        b.shows("field", &olga)
    });
    browser.screen("employees");

    browser.field(&olga).choose("Olga Smirnova");
    submit(&browser, &browser.button(EN.save));
    browser.screen("mapped-by-hand");
    browser.goto(&browser.url());
    assert!(names(&browser.field(&olga).chosen(), "Olga Smirnova"));

    browser.button(EN.auto_match).click();
    browser.button(EN.apply);
    browser.screen("auto-match-review");
    let review = browser.page_text();
    for name in ["Ivan Petrov", "Maria Ivanova"] {
        assert!(
            review.contains(name),
            "the review proposes {name}: {review}"
        );
    }
    submit(&browser, &browser.button(EN.apply));
    browser.screen("auto-matched");
    browser.goto(&browser.url());
    for name in ["Olga Smirnova", "Ivan Petrov", "Maria Ivanova"] {
        let chosen = browser
            .field(&format!("{} {name}", EN.crm_user_for))
            .chosen();
        assert!(names(&chosen, name), "{name} is mapped to {chosen:?}");
    }
    // Anna has no CRM user of her name: she stays unmapped, and her row says so.
    let anna = browser.field(&format!("{} Anna Sokolova", EN.crm_user_for));
    let chosen = anna.chosen();
    assert!(
        !super::product::CRM_USERS
            .iter()
            .any(|u| names(&chosen, u.1)),
        "Anna Sokolova stays unmapped, not {chosen:?}"
    );
    let row = browser
        .eval(
            "return arguments[0].closest('tr').innerText",
            vec![anna.json()],
        )
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        row.contains("not mapped"),
        "Anna's row is marked unmapped: {row:?}"
    );
    browser.finish();
}

/// The seed's steps in one language, then a call of the unmapped employee lands on the user.
fn save_all_calls_by_the_seed(test: &str, words: &Words, switch_to_russian: bool, user: u64) {
    let product = Product::start(test, Plan::Extended, Crm::Connected);
    let browser = Browser::start(test);
    sign_in(&browser, &product);
    browser.goto(&format!("{}/", product.base));
    browser.wait_for_path(&settings_path("employees"));
    if switch_to_russian {
        browser.link("Русский").click();
        browser.text(RU.settings_heading);
        browser.screen("russian");
    }
    turn_on_save_all_calls(&browser, words, crm_user_name(user));
    assert_eq!(
        save_all_calls_state(&browser, words, crm_user_name(user)),
        (true, true),
        "after Save the switch is on with the chosen user"
    );
    product.post_call_of_unmapped_employee(&format!("{test}-1"), "79161234567");
    let note = product.wait_for_call_note(user, Duration::from_secs(30));
    assert_eq!(note["note_type"], "call_in", "{note}");
    // The Connections page says what arrived last.
    browser.goto(&format!("{}{}", product.base, connections_path()));
    browser.screen("connections-after-call");
    assert!(
        !browser.page_text().contains(if switch_to_russian {
            "Пока ничего"
        } else {
            "Nothing yet"
        }),
        "the call's webhooks show as received"
    );
    browser.finish();
}

#[test]
fn save_all_calls_by_the_seeds_steps_in_english() {
    save_all_calls_by_the_seed("save-all-calls-en", &EN, false, 9000);
}

#[test]
fn save_all_calls_by_the_seeds_steps_in_russian() {
    save_all_calls_by_the_seed("save-all-calls-ru", &RU, true, 1003);
}

#[test]
fn the_basic_plan_refuses_save_all_calls_with_the_reason() {
    let product = Product::start("basic-plan", Plan::Basic, Crm::Connected);
    let browser = Browser::start("basic-plan");
    sign_in(&browser, &product);
    browser.goto(&format!("{}{}", product.base, settings_path("calls")));
    let switch = browser.switch(EN.save_all_calls);
    switch.scroll_into_view();
    browser.screen("basic-plan");
    if switch.is_enabled() {
        // Offered, then refused on Save, next to the switch.
        switch.click();
        if let Ok(user) = browser.try_find("field", EN.crm_user) {
            user.choose(crm_user_name(9000));
        }
        submit(&browser, &browser.button(EN.save));
        browser.screen("refused");
    }
    let reason = reason_next_to(&browser, &browser.switch(EN.save_all_calls));
    assert!(
        reason.to_lowercase().contains("extended"),
        "the reason next to the switch names the extended package: {reason:?}"
    );
    // Nothing was stored.
    assert!(
        !save_all_calls_state(&browser, &EN, crm_user_name(9000)).0,
        "a refused switch is not stored"
    );
    browser.finish();
}

#[test]
fn settings_survive_a_restart() {
    let mut product = Product::start("restart", Plan::Extended, Crm::Connected);
    let browser = Browser::start("restart");
    sign_in(&browser, &product);
    browser.goto(&format!("{}{}", product.base, settings_path("employees")));
    turn_on_save_all_calls(&browser, &EN, crm_user_name(1002));
    product.restart();
    browser.goto(&format!("{}{}", product.base, settings_path("calls")));
    browser.wait_until("a page after the restart", Duration::from_secs(10), |b| {
        b.eval("return document.readyState", vec![]) == serde_json::json!("complete")
    });
    if browser.path().starts_with("/login") {
        sign_in(&browser, &product);
        browser.goto(&format!("{}{}", product.base, settings_path("calls")));
    }
    browser.screen("after-restart");
    assert_eq!(
        save_all_calls_state(&browser, &EN, crm_user_name(1002)),
        (true, true),
        "after the restart the switch is on with the chosen user"
    );
    browser.finish();
}

#[test]
fn settings_at_a_phones_width_and_by_keyboard_alone() {
    let product = Product::start("phone", Plan::Extended, Crm::Connected);
    let browser = Browser::start_with("phone-keyboard", Viewport::Phone);
    sign_in(&browser, &product);
    assert!(
        scroll_width(&browser) <= 375,
        "the page after sign-in scrolls sideways"
    );
    for tab in ["employees", "calls", "speech", "card"] {
        browser.goto(&format!("{}{}", product.base, settings_path(tab)));
        browser.screen(&format!("phone-{tab}"));
        let width = scroll_width(&browser);
        assert!(
            width <= 375,
            "{tab}: the page is {width} px wide on a 375 px phone"
        );
    }
    browser.goto(&format!("{}{}", product.base, connections_path()));
    browser.screen("phone-connections");
    assert!(scroll_width(&browser) <= 375, "connections scroll sideways");

    // Keyboard only, on the Call processing tab: the switch, the user, Save with Enter.
    browser.goto(&format!("{}{}", product.base, settings_path("calls")));
    browser.tab_to(EN.save_all_calls, 80);
    browser.press_space();
    assert!(browser.switch(EN.save_all_calls).is_checked());
    browser.tab_to(EN.crm_user, 5);
    // A focused select takes typed letters as a person types them.
    browser.focused().type_keys("Reception");
    assert!(names(
        &browser.field(EN.crm_user).chosen(),
        crm_user_name(9000)
    ));
    browser.tab_to(EN.save, 80);
    browser.eval("window.__callbridgeBeforeSubmit = true", vec![]);
    browser.press_enter();
    browser.wait_until("the form's answer", Duration::from_secs(10), |b| {
        b.eval("return window.__callbridgeBeforeSubmit === true", vec![]) != serde_json::json!(true)
            || !messages(b).is_empty()
    });
    browser.screen("phone-saved-by-keyboard");
    assert_eq!(
        save_all_calls_state(&browser, &EN, crm_user_name(9000)),
        (true, true),
        "saved by keyboard: the switch is on with the chosen user"
    );
    browser.finish();
}
