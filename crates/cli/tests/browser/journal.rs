//! Issue 19's journal, warnings and preview in a real browser: a transferred call of an unmapped
//! employee is found by the client's number as a person types it, its reasons read in words, its
//! recording plays, its events download and replay through `callbridge simulate` to the same
//! plan; a parked delivery raises the banner, is retried from the entry and lands; a settings
//! change is previewed on the stored calls before it is saved.

use super::harness::{Browser, Viewport};
use super::product::{Crm, Plan, Product, TENANT};
use super::support::bin;
use super::ui::*;
use callbridge_amocrm_sandbox::Faults;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// 101 is mapped, 105 is not; "Save all calls" keeps 105's calls on Reception Desk (9000).
const SETTINGS: &str = r#"
[[employees]]
extension = "101"
name = "Olga Smirnova"
crm_user_id = 1001

[[employees]]
extension = "105"
name = "Anna Sokolova"

[calls.incoming]
new_client = "contact"

[calls.save_all_calls]
enabled = true
crm_user_id = 9000
"#;

const LINE: &str = "74951234567";
const CLIENT: &str = "79161234567";

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// An incoming call through the voice menu to Anna (105, unmapped), who transfers the client
/// to Olga (101, mapped); both conversations recorded. The webhooks Mango sends, in order.
fn transferred_call(entry: &str, t0: i64) -> Vec<(&'static str, Value)> {
    let ivr = format!("{entry}:ivr");
    let a = format!("{entry}:105");
    let b = format!("{entry}:101");
    let client = json!({"number": CLIENT});
    let to_line = json!({"number": LINE, "line_number": LINE});
    let from_ivr = json!({"number": CLIENT, "taken_from_call_id": ivr});
    let to_105 = json!({"extension": "105", "number": "sip:user105@vpbx400000001.mangosip.ru", "line_number": LINE});
    let to_101 = json!({"extension": "101", "number": "sip:user101@vpbx400000001.mangosip.ru"});
    let from_105 = json!({"extension": "105", "number": "sip:user105@vpbx400000001.mangosip.ru", "taken_from_call_id": a});
    let from_client_via_a = json!({"number": CLIENT, "taken_from_call_id": a});
    let call = |call_id: &str, ts: i64, seq: u64, state: &str, from: &Value, to: &Value| {
        json!({"entry_id": entry, "call_id": call_id, "timestamp": ts, "seq": seq,
               "call_state": state, "location": "abonent", "from": from, "to": to})
    };
    let mut ivr_in = call(&ivr, t0, 1, "Appeared", &client, &to_line);
    ivr_in["location"] = json!("ivr");
    let mut ivr_out = call(&ivr, t0 + 3, 2, "Disconnected", &client, &to_line);
    ivr_out["location"] = json!("ivr");
    ivr_out["disconnect_reason"] = json!(1100);
    let mut consult = call(&b, t0 + 30, 1, "Appeared", &from_105, &to_101);
    consult["transfer"] = json!("consultative");
    let mut consult_up = call(&b, t0 + 33, 2, "Connected", &from_105, &to_101);
    consult_up["transfer"] = json!("consultative");
    let mut a_down = call(&a, t0 + 40, 3, "Disconnected", &from_ivr, &to_105);
    a_down["disconnect_reason"] = json!(1120);
    let mut handed = call(&b, t0 + 40, 3, "Connected", &from_client_via_a, &to_101);
    handed["transfer"] = json!("blind");
    let mut b_down = call(&b, t0 + 80, 4, "Disconnected", &from_client_via_a, &to_101);
    b_down["disconnect_reason"] = json!(1110);
    let recording = |id: &str, call_id: &str, ext: &str, seq: u64, ts: i64, state: &str| {
        let mut r = json!({"recording_id": id, "recording_state": state, "seq": seq, "entry_id": entry,
                           "call_id": call_id, "extension": ext, "timestamp": ts});
        if state == "Completed" {
            r["completion_code"] = json!(1000);
            r["recipient"] = json!("Cloud");
        }
        r
    };
    let rec_a = format!("{entry}-rec-105");
    let rec_b = format!("{entry}-rec-101");
    vec![
        ("events/call", ivr_in),
        ("events/call", ivr_out),
        (
            "events/call",
            call(&a, t0 + 3, 1, "Appeared", &from_ivr, &to_105),
        ),
        (
            "events/call",
            call(&a, t0 + 6, 2, "Connected", &from_ivr, &to_105),
        ),
        (
            "events/recording",
            recording(&rec_a, &a, "105", 1, t0 + 6, "Started"),
        ),
        ("events/call", consult),
        ("events/call", consult_up),
        ("events/call", a_down),
        (
            "events/recording",
            recording(&rec_a, &a, "105", 2, t0 + 40, "Completed"),
        ),
        ("events/call", handed),
        (
            "events/recording",
            recording(&rec_b, &b, "101", 1, t0 + 40, "Started"),
        ),
        ("events/call", b_down),
        (
            "events/recording",
            recording(&rec_b, &b, "101", 2, t0 + 80, "Completed"),
        ),
        (
            "events/summary",
            json!({"entry_id": entry, "call_direction": 1, "from": client, "to": {"extension": "101"},
                   "create_time": t0, "forward_time": t0 + 3, "talk_time": t0 + 6, "end_time": t0 + 80,
                   "entry_result": 1, "disconnect_reason": 1110, "line_number": LINE}),
        ),
        (
            "events/record/added",
            json!({"entry_id": entry, "product_id": 300022532, "user_id": 300049003, "timestamp": t0 + 81, "recording_id": rec_a}),
        ),
        (
            "events/record/added",
            json!({"entry_id": entry, "product_id": 300022532, "user_id": 300049000, "timestamp": t0 + 82, "recording_id": rec_b}),
        ),
    ]
}

/// The admin API's view of an entry (the plan as stored, with its delivery).
fn api_entry(product: &Product, entry: &str) -> Option<Value> {
    let r = reqwest::blocking::Client::new()
        .get(format!(
            "{}/api/v1/entries/{entry}?tenant={TENANT}",
            product.base
        ))
        .bearer_auth("browser-test-admin-token")
        .send()
        .expect("the entries API answers");
    (r.status().as_u16() == 200).then(|| r.json().expect("an entry as JSON"))
}

fn wait_for_entry(product: &Product, entry: &str, state: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let found = api_entry(product, entry);
        if let Some(e) = &found {
            if e["delivery"]["state"] == state {
                return e.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "entry {entry} not {state} within a minute: {found:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// What decides where a call landed, per record: employee, user, rule ids.
fn landing(records: &Value) -> Vec<(Value, Value, Value)> {
    records
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|r| {
            (
                r["employee_extension"].clone(),
                r["crm_user_id"].clone(),
                r["reasons"].clone(),
            )
        })
        .collect()
}

fn journal_path() -> String {
    format!("/t/{TENANT}/journal")
}

/// Reloads the page until `text` shows (the worker delivers in the background).
fn reload_until(browser: &Browser, what: &str, text: &str) {
    browser.wait_until(what, Duration::from_secs(45), |b| {
        if b.page_text().contains(text) {
            return true;
        }
        b.eval("location.reload()", vec![]);
        std::thread::sleep(Duration::from_millis(700));
        false
    });
}

#[test]
fn a_transferred_call_is_found_explained_played_replayed_retried_and_previewed() {
    let product = Product::start_with_settings("journal", Plan::Extended, Crm::Connected, SETTINGS);
    let t0 = now_s() - 120;
    let entry = "journal-transfer-1";
    product.post_events(&transferred_call(entry, t0));
    // Another client's call, which the search by number must leave out.
    product.post_call_of_unmapped_employee("journal-other-1", "79035550123");
    let stored = wait_for_entry(&product, entry, "delivered");
    wait_for_entry(&product, "journal-other-1", "delivered");

    let browser = Browser::start("journal");
    sign_in(&browser, &product);
    browser.goto(&format!("{}{}", product.base, journal_path()));
    browser.screen("journal-list");
    assert!(
        browser.page_text().contains("2 call(s)"),
        "{}",
        browser.page_text()
    );

    // The number as a person types it.
    browser.field("Client's number").fill("8 (916) 123-45-67");
    submit(&browser, &browser.button("Search"));
    browser.screen("journal-search");
    let text = browser.page_text();
    assert!(
        text.contains("1 call(s)"),
        "one call of +7 916 123-45-67: {text}"
    );
    assert!(text.contains("+7 916 123-45-67"), "{text}");
    assert!(
        !text.contains("+7 903 555-01-23"),
        "the other client's call is left out: {text}"
    );
    assert!(
        text.contains("Anna Sokolova (105) → Reception Desk")
            && text.contains("Olga Smirnova (101) → Olga Smirnova"),
        "the list says who each conversation landed on: {text}"
    );

    // The entry: reasons in words, the same the API gives.
    browser.eval(
        "document.querySelector('table.journal td.when a').click()",
        vec![],
    );
    browser.wait_until("the entry page", Duration::from_secs(10), |b| {
        b.path().starts_with(&format!("{}/", journal_path()))
    });
    browser.screen("journal-entry");
    let text = browser.page_text();
    assert!(
        text.contains("Anna Sokolova (105) is not in the mapping table; Save all calls attaches such calls to Reception Desk."),
        "why conversation 1 landed on Reception Desk, in words: {text}"
    );
    assert!(
        text.contains(
            "Olga Smirnova (101) is in the mapping table: the call is written on Olga Smirnova."
        ),
        "{text}"
    );
    assert!(
        text.contains("transferred from an unmapped employee"),
        "{text}"
    );
    for record in stored["records"].as_array().cloned().unwrap_or_default() {
        let api_why = record["why"].as_str().unwrap_or_default();
        assert!(
            !api_why.is_empty() && text.contains(api_why),
            "the entries API says it in the same words: {api_why:?}"
        );
    }
    assert!(
        text.contains("Delivered") && browser.try_find("link", "contacts #").is_ok(),
        "delivered, with a link to the CRM record: {text}"
    );

    // The recording plays in the page, from this service's own origin.
    let audio_count = browser.eval("return document.querySelectorAll('audio').length", vec![]);
    assert_eq!(
        audio_count,
        json!(2),
        "one player per recorded conversation"
    );
    browser.eval(
        "const a = document.querySelector('audio'); a.muted = true; a.preload = 'auto'; a.load(); a.play().catch(() => {});",
        vec![],
    );
    browser.wait_until("the recording to play", Duration::from_secs(15), |b| {
        b.eval(
            "const a = document.querySelector('audio'); return !a.error && a.duration > 0 && a.currentTime > 0",
            vec![],
        ) == json!(true)
    });
    browser.eval("document.querySelector('audio').pause()", vec![]);

    // The events, downloaded as a person would, replay through `callbridge simulate` to the
    // stored plan.
    let href = browser
        .link("Download events")
        .attr("href")
        .expect("the download link");
    // Fetched by the page itself, with its session, as the link's download would be.
    let events = browser.eval(
        "const x = new XMLHttpRequest(); x.open('GET', arguments[0], false); x.send(); return x.status + '\\n' + x.responseText;",
        vec![json!(href)],
    );
    let events = events.as_str().unwrap_or_default();
    let (status, events) = events.split_once('\n').unwrap_or(("", ""));
    assert_eq!(status, "200", "the events download: {events}");
    assert!(
        events.lines().count() >= 10,
        "the entry's webhooks: {events}"
    );
    let events_file = product.dir.join("downloaded-events.jsonl");
    std::fs::write(&events_file, events).unwrap();
    let out = std::process::Command::new(bin())
        .args(["simulate", "--settings"])
        .arg(product.dir.join("settings.toml"))
        .arg("--events")
        .arg(&events_file)
        .output()
        .expect("run callbridge simulate");
    assert!(
        out.status.success(),
        "simulate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let simulated: Value = serde_json::from_slice(&out.stdout).expect("simulate's JSON");
    assert_eq!(
        landing(&simulated["entries"][0]["records"]),
        landing(&stored["records"]),
        "simulate on the downloaded events gives the stored plan"
    );

    // A delivery the CRM refuses is parked: the banner says so on every page of the tenant.
    product.crm.set_faults(Faults {
        fail_next: vec![400],
        ..Faults::default()
    });
    product.post_call_of_unmapped_employee("journal-parked-1", "79035550177");
    wait_for_entry(&product, "journal-parked-1", "parked");
    product.crm.set_faults(Faults::default());
    browser.goto(&format!("{}{}", product.base, settings_path("employees")));
    browser.screen("banner-parked");
    assert!(
        browser.page_text().contains("1 CRM write(s) are parked"),
        "{}",
        browser.page_text()
    );
    browser.link("See them in the journal").click();
    browser.wait_until("the parked calls", Duration::from_secs(10), |b| {
        b.url().contains("delivery=parked")
    });
    assert!(
        browser.page_text().contains("1 call(s)"),
        "{}",
        browser.page_text()
    );
    browser.eval(
        "document.querySelector('table.journal td.when a').click()",
        vec![],
    );
    browser.wait_until("the parked entry", Duration::from_secs(10), |b| {
        b.page_text().contains("Retry parked items")
    });
    browser.screen("journal-parked-entry");
    submit(&browser, &browser.button("Retry parked items"));
    assert!(
        browser.page_text().contains("1 parked item(s) sent again."),
        "{}",
        browser.page_text()
    );
    reload_until(&browser, "the retried call to land", "Delivered");
    wait_for_entry(&product, "journal-parked-1", "delivered");
    browser.screen("journal-retried");
    assert!(
        !browser.page_text().contains("are parked"),
        "the banner is gone once nothing is parked"
    );

    // Preview before saving: Save all calls off would leave Anna's conversations unwritten.
    browser.goto(&format!("{}{}", product.base, settings_path("calls")));
    browser.switch(EN.save_all_calls).click();
    submit(&browser, &browser.button("Preview on recent calls"));
    browser.screen("settings-preview");
    let text = browser.page_text();
    assert!(text.contains("would land differently"), "{text}");
    assert!(
        text.contains("Anna Sokolova (105) ✕") && text.contains("Save all calls is off"),
        "the preview says what would change and why: {text}"
    );
    assert!(
        text.contains("+7 916 123-45-67") && text.contains("+7 903 555-01-23"),
        "both calls of Anna's are listed: {text}"
    );
    assert!(
        !browser.switch(EN.save_all_calls).is_checked(),
        "the form keeps what was typed"
    );
    submit(&browser, &browser.button("Save these settings"));
    browser.screen("settings-saved-after-preview");
    assert!(
        browser.page_text().contains("Saved as version"),
        "{}",
        browser.page_text()
    );
    browser.finish();
}

#[test]
fn the_journal_at_a_phones_width_and_by_keyboard_alone() {
    let product =
        Product::start_with_settings("journal-phone", Plan::Extended, Crm::Connected, SETTINGS);
    product.post_events(&transferred_call("journal-phone-1", now_s() - 120));
    wait_for_entry(&product, "journal-phone-1", "delivered");
    let browser = Browser::start_with("journal-phone", Viewport::Phone);
    sign_in(&browser, &product);
    browser.goto(&format!("{}{}", product.base, journal_path()));
    browser.screen("phone-journal");
    assert!(
        scroll_width(&browser) <= 375,
        "the journal scrolls sideways"
    );
    // Keyboard alone: to the search box, type, Enter.
    browser.tab_to("Client's number", 40);
    browser.focused().type_keys("+7 916 123 45 67");
    browser.eval("window.__callbridgeBeforeSubmit = true", vec![]);
    browser.press_enter();
    browser.wait_until("the search's answer", Duration::from_secs(10), |b| {
        b.url().contains("q=")
    });
    assert!(
        browser.page_text().contains("1 call(s)"),
        "{}",
        browser.page_text()
    );
    browser.goto(&format!(
        "{}{}/journal-phone-1",
        product.base,
        journal_path()
    ));
    browser.screen("phone-journal-entry");
    assert!(
        scroll_width(&browser) <= 375,
        "the entry page scrolls sideways"
    );
    browser.finish();
}
