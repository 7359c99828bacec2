//! The web UI in a real browser: Debian's Chromium driven through chromedriver (WebDriver) against
//! a real `callbridge serve` and the amoCRM and Mango sandboxes. Controls are found by their
//! visible labels; every screen is saved as a PNG under `target/browser-screens/<test>/`, and a
//! screen fails on any browser console error and on any serious or critical axe-core violation.
//!
//! `harness` is the browser side (tested by `selftest` against pages this binary serves itself).

#[path = "browser/card_page.rs"]
mod card_page;
#[path = "browser/chromedriver.rs"]
mod chromedriver;
#[path = "browser/flows.rs"]
mod flows;
#[path = "browser/harness.rs"]
mod harness;
#[path = "browser/journal.rs"]
mod journal;
#[path = "browser/product.rs"]
mod product;
#[path = "browser/selftest.rs"]
mod selftest;
#[path = "support/mod.rs"]
mod support;
#[path = "browser/ui.rs"]
mod ui;
