//! Issue 19, part 4: the live call card page in a real browser. The owner makes a personal link
//! for a CRM user in the Call card tab; the link opens in a fresh browser (no admin cookie); a
//! call rings that user's phone through signed Mango webhooks and the card appears with the
//! number and the CRM contact's name, and goes when the leg ends; another user's page shows
//! nothing of it; revoking the link makes the open page say so. Phone width, keyboard, axe.

use super::harness::{Browser, Viewport};
use super::product::{Crm, Plan, Product, MANGO_KEY, MANGO_SALT};
use super::support::signed_form;
use super::ui::*;
use serde_json::json;
use std::time::Duration;

const CLIENT: &str = "79161234567";

/// A contact with the client's number in the CRM sandbox, as an amoCRM admin would add it.
fn add_contact(product: &Product, name: &str) {
    let status = reqwest::blocking::Client::new()
        .post(format!("{}/api/v4/contacts", product.crm.base_url()))
        .bearer_auth("sandbox-token")
        .json(&json!([{"name": name, "custom_fields_values": [
            {"field_code": "PHONE", "values": [{"value": "+7 916 123-45-67"}]}
        ]}]))
        .send()
        .expect("create a contact in the sandbox")
        .status();
    assert!(
        status.is_success(),
        "the sandbox refused the contact: {status}"
    );
}

/// One signed call event of the client ringing extension `ext` on leg `leg`.
fn post_leg(product: &Product, entry: &str, ext: &str, state: &str, seq: u64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut body = json!({
        "entry_id": entry, "call_id": format!("{entry}:{ext}"), "timestamp": now, "seq": seq,
        "call_state": state, "location": "abonent",
        "from": {"number": CLIENT},
        "to": {"extension": ext, "number": format!("sip:user{ext}@vpbx.mangosip.ru"), "line_number": "74951234567"},
    });
    if state == "Disconnected" {
        body["disconnect_reason"] = json!(1110);
    }
    let status = reqwest::blocking::Client::new()
        .post(format!("{}/events/call", product.webhook_base()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(signed_form(MANGO_KEY, MANGO_SALT, &body.to_string()))
        .send()
        .expect("post a webhook")
        .status();
    assert_eq!(status.as_u16(), 200, "webhook refused");
}

/// Clicks the button whose accessible name is `label` (the tab's buttons read "Create personal
/// link" / "Revoke" and name their user in `aria-label`) and waits for the form's answer.
fn submit_labelled(admin: &Browser, label: &str) {
    let clicked = admin.eval(
        "const b = [...document.querySelectorAll('button')].find(b => b.getAttribute('aria-label') === arguments[0]);
         if (!b) return false;
         window.__callbridgeBeforeSubmit = true;
         setTimeout(() => b.click(), 0);
         return true",
        vec![json!(label)],
    );
    assert_eq!(
        clicked,
        json!(true),
        "no button {label:?}: {}",
        admin.page_text()
    );
    admin.wait_until("the form's answer", Duration::from_secs(10), |b| {
        b.eval("return window.__callbridgeBeforeSubmit === true", vec![]) != json!(true)
            && b.eval("return document.readyState", vec![]) == json!("complete")
    });
}

/// The address the Call card tab shows once, after "Create personal link" for `user`.
fn create_link(admin: &Browser, user: &str) -> String {
    submit_labelled(admin, &format!("Create personal link for {user}"));
    let link = admin.eval(
        "const e = document.getElementById('new-card-link'); return e ? e.textContent : ''",
        vec![],
    );
    let link = link.as_str().unwrap_or_default().trim().to_string();
    assert!(
        link.contains("/card/"),
        "the new link is shown: {}",
        admin.page_text()
    );
    link
}

fn card_count(page: &Browser) -> u64 {
    page.eval(
        "return document.querySelectorAll('.call-card').length",
        vec![],
    )
    .as_u64()
    .unwrap_or(0)
}

#[test]
fn a_users_card_page_shows_their_call_and_stops_when_revoked() {
    let product = Product::start("card-page", Plan::Extended, Crm::Connected);
    add_contact(&product, "Pavel Klientov");
    let admin = Browser::start("card-page-admin");
    sign_in(&admin, &product);
    // Map the PBX's employees to the CRM's users: auto-match pairs 102 with Ivan Petrov and 103
    // with Maria Ivanova.
    admin.goto(&format!("{}{}", product.base, settings_path("employees")));
    admin.wait_until("the PBX's employees", Duration::from_secs(15), |b| {
        b.goto(&b.url());
        b.shows("field", &format!("{} Olga Smirnova", EN.crm_user_for))
    });
    // While the PBX's directory loads the tab answers 503 (a plain page, so the browser also
    // asks for /favicon.ico): those loads, and nothing else, are in the console.
    for entry in admin.console_errors() {
        assert!(
            entry.message.contains("503") || entry.message.contains("favicon.ico"),
            "{entry:?}"
        );
    }
    admin.button(EN.auto_match).click();
    submit(&admin, &admin.button(EN.apply));

    admin.goto(&format!("{}{}", product.base, settings_path("card")));
    admin.screen("card-tab");
    let ivan_link = create_link(&admin, "Ivan Petrov");
    admin.screen("card-link-created");
    let maria_link = create_link(&admin, "Maria Ivanova");
    // Shown once: the tab opened again shows only the links' first characters.
    admin.goto(&format!("{}{}", product.base, settings_path("card")));
    let tab = admin.page_text();
    assert!(
        !tab.contains(&ivan_link) && !tab.contains(&maria_link),
        "{tab}"
    );
    assert!(tab.contains('…'), "{tab}");

    // Fresh browsers, no admin cookie: Ivan's page at a phone's width, Maria's on a desktop.
    let page = Browser::start_with("card-page-ivan", Viewport::Phone);
    page.goto(&ivan_link);
    page.wait_until("the stream", Duration::from_secs(10), |b| {
        b.page_text().contains("Подключено")
    });
    assert!(page.page_text().contains("Сейчас звонка нет"));
    page.screen("waiting");
    let other = Browser::start("card-page-maria");
    other.goto(&maria_link);
    other.wait_until("the stream", Duration::from_secs(10), |b| {
        b.page_text().contains("Подключено")
    });

    post_leg(&product, "card-call-1", "102", "Appeared", 1);
    page.wait_until("the card", Duration::from_secs(10), |b| {
        b.page_text().contains("+7 916 123-45-67")
    });
    page.wait_until("the CRM contact", Duration::from_secs(15), |b| {
        b.page_text().contains("Pavel Klientov")
    });
    assert!(page.page_text().contains("102"), "the extension is shown");
    page.screen("ringing");
    post_leg(&product, "card-call-1", "102", "Connected", 2);
    // Maria's page shows nothing of Ivan's call.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(card_count(&other), 0, "{}", other.page_text());
    other.screen("other-user-nothing");
    post_leg(&product, "card-call-1", "102", "Disconnected", 3);
    page.wait_until("the card to go", Duration::from_secs(10), |b| {
        card_count(b) == 0
    });
    assert!(page.page_text().contains("Сейчас звонка нет"));
    page.screen("call-ended");

    // Keyboard: the contact's link is reachable while a card shows; here the page has none,
    // so the check is that the page itself is reachable with Tab (no trap).
    page.press_tab(1);

    admin.goto(&format!("{}{}", product.base, settings_path("card")));
    let revoke = admin
        .eval(
            "return [...document.querySelectorAll('button')].map(b => b.getAttribute('aria-label') || '').find(l => l.includes('Ivan Petrov') && l.startsWith('Revoke')) || ''",
            vec![],
        )
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(!revoke.is_empty(), "a Revoke button for Ivan's link");
    submit_labelled(&admin, &revoke);
    admin.screen("card-link-revoked");
    page.wait_until(
        "the page to say the link was revoked",
        Duration::from_secs(15),
        |b| b.page_text().contains("Ссылка отозвана"),
    );
    // The page learnt it from the refusals of its stream and its token request: those, and
    // nothing else, are in the console.
    for entry in page.console_errors() {
        assert!(
            entry.message.contains("stream-token") || entry.message.contains("cards/stream"),
            "{entry:?}"
        );
    }
    page.screen("revoked");
    page.goto(&ivan_link);
    page.expect_page_status(404);
    page.screen("revoked-reload");
    other.finish();
    page.finish();
    admin.finish();
}
