//! The bodies of callbridge's fuzz targets, shared by two runners:
//!
//! - `fuzz/` (cargo-fuzz and libFuzzer, coverage-guided, run for minutes or hours by hand:
//!   `docs/reliability.md` gives the commands), and
//! - this crate's `tests/short_run.rs` (part of the README's test command): every file of the
//!   corpus in `corpus/`, then a bounded number of inputs mutated from it with a fixed seed.
//!
//! Each target takes raw bytes and panics only when an invariant is broken; any input that is
//! merely bad must come back as an error value, never as a panic or a hang.

pub mod events;

use callbridge_core::ValidSettings;
use callbridge_mango::webhook::{self, Webhook, WebhookForm};
use callbridge_mango::{check_plausible, sign, verify};

/// The paths a webhook can arrive on, picked by the input's first byte (an unknown one too).
const PATHS: [&str; 9] = [
    webhook::PATH_CALL,
    webhook::PATH_SUMMARY,
    webhook::PATH_RECORDING,
    webhook::PATH_RECORD_ADDED,
    webhook::PATH_RECORD_TAGGED,
    webhook::PATH_DTMF,
    "/events/call/",
    "ping",
    "events/unheard-of",
];

const API_KEY: &str = "fuzz-api-key";
const SALT: &str = "fuzz-salt-0123456789";

/// A webhook as the service reads it. The first byte picks the path; the second says whether
/// the rest is the form body as posted (`vpbx_api_key`, `sign`, `json`) or only its `json`
/// field, which is then signed correctly so the parser behind the signature check is reached.
pub fn webhook(data: &[u8]) {
    let [path, mode, rest @ ..] = data else {
        return;
    };
    let path = PATHS[usize::from(*path) % PATHS.len()];
    let json = if mode.is_multiple_of(2) {
        let form = WebhookForm::read(rest);
        let (Some(key), Some(json)) = (form.vpbx_api_key, form.json) else {
            return;
        };
        // A signature the fuzzer cannot forge; only well-signed text goes on, as in the service.
        if !verify(&key, &json, SALT, form.sign.as_deref().unwrap_or("")) {
            return;
        }
        json
    } else {
        let json = String::from_utf8_lossy(rest).into_owned();
        let signature = sign(API_KEY, &json, SALT);
        assert!(
            verify(API_KEY, &json, SALT, &signature),
            "own signature refused"
        );
        json
    };
    let parsed = webhook::parse_event(path, &json);
    // The same text parsed as a JSON value (simulate's way) must be judged the same.
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(&json) {
        // (Only when both are read: a key given twice is refused in text, where serde sees
        // it, and taken last-wins in a value, where it is gone before the parser looks.)
        if let (Ok(text), Ok(value)) = (&parsed, webhook::parse_value(path, &value)) {
            assert_eq!(text, &value, "the text and its value are read differently");
        }
    }
    if let Ok(Webhook::Event(event)) = parsed {
        let _ = check_plausible(&event, Some(1_764_000_000));
        let key = event.dedupe_key();
        assert!(
            key.contains(event.entry_id()),
            "dedupe key without its entry"
        );
    }
}

/// A settings file. When it is accepted, the policy must plan a set of entries under it
/// without panicking, and everything it writes must carry its reasons.
pub fn settings(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(settings) = ValidSettings::parse_toml(text) else {
        return;
    };
    for program in events::SAMPLE_PROGRAMS {
        events::check_stream(program, &settings);
    }
}

/// The service's configuration file, read as `callbridge serve --config` would (with the
/// environment of the process, which the runners leave without `CALLBRIDGE_` keys).
pub fn config(data: &[u8]) {
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let file = dir.path().join("callbridge.toml");
    if std::fs::write(&file, data).is_err() {
        return;
    }
    let _ = callbridge_server::config::Config::load(Some(&file));
}
