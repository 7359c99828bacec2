//! Third-party proof: an existing amoCRM client library (PyPI `amocrm-api` 2.6.1,
//! Krukov/amocrm_api) drives the sandbox through OAuth (code exchange and refresh), a contact
//! search, calls and a note, and the outcome is checked through the sandbox.
//!
//! The test installs the library itself, pinned (`tests/third_party/requirements.txt`), into a
//! virtual environment under the cargo target directory, once. Without a reachable registry it
//! fails and says so; it never passes silently. `CALLBRIDGE_PYTHON` overrides the interpreter
//! (default `python3`).

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::*;

const REQUIREMENTS: &str = include_str!("third_party/requirements.txt");

fn python() -> String {
    std::env::var("CALLBRIDGE_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

fn venv_python(venv: &Path) -> PathBuf {
    if cfg!(windows) {
        venv.join("Scripts").join("python.exe")
    } else {
        venv.join("bin").join("python")
    }
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: String = stderr
            .lines()
            .rev()
            .take(15)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n");
        panic!(
            "{what} failed ({}). The third-party client is installed from PyPI; is the registry reachable?\n{tail}",
            out.status
        );
    }
}

/// The virtual environment with the pinned client, created on first use. It is built beside its
/// final place and renamed into it, so a half-finished install is never mistaken for a good one.
fn client_venv() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("third-party-amocrm-api");
    let venv = root.join("venv-amocrm-api-2.6.1");
    let marker = venv.join("requirements.installed");
    if std::fs::read_to_string(&marker).ok().as_deref() == Some(REQUIREMENTS) {
        return venv;
    }
    std::fs::create_dir_all(&root).expect("venv root");
    // Leftovers of installs that failed part-way.
    for entry in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with("building-") {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    let building = root.join(format!("building-{}", std::process::id()));
    run(
        Command::new(python()).args(["-m", "venv"]).arg(&building),
        "creating a Python virtual environment",
    );
    let requirements = building.join("requirements.txt");
    std::fs::write(&requirements, REQUIREMENTS).expect("write requirements");
    run(
        Command::new(venv_python(&building))
            .args([
                "-m",
                "pip",
                "install",
                "--no-input",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(&requirements),
        "pip install -r tests/third_party/requirements.txt (amocrm-api==2.6.1)",
    );
    std::fs::write(building.join("requirements.installed"), REQUIREMENTS).expect("marker");
    let _ = std::fs::remove_dir_all(&venv);
    if std::fs::rename(&building, &venv).is_err() {
        // Another run finished first; use whichever is in place if it is complete.
        let _ = std::fs::remove_dir_all(&building);
    }
    assert_eq!(
        std::fs::read_to_string(&marker).ok().as_deref(),
        Some(REQUIREMENTS),
        "the virtual environment at {} is incomplete",
        venv.display()
    );
    venv
}

#[tokio::test]
async fn amocrm_api_python_client_drives_the_sandbox() {
    let venv = tokio::task::spawn_blocking(client_venv)
        .await
        .expect("venv task");
    let sandbox = start_with(config()).await;
    let base = sandbox.base_url();

    // The consent screen is the browser's part, not the library's: follow it here.
    let consent = send(
        &client(),
        reqwest::Method::GET,
        &format!("{base}/oauth?client_id=cid-1&state=tp"),
        None,
        None,
    )
    .await;
    let location = consent.location.expect("consent redirects");
    let code = query_pairs(location.split_once('?').map(|x| x.1).unwrap_or(""))
        .into_iter()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v)
        .expect("code in the redirect");

    let driver = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/third_party/drive.py");
    let python = venv_python(&venv);
    let args = [
        base.clone(),
        "cid-1".to_owned(),
        "secret-1".to_owned(),
        "https://integration.example.com/oauth".to_owned(),
        code,
    ];
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(driver)
            .args(args)
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("no_proxy", "127.0.0.1,localhost")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .output()
    })
    .await
    .expect("driver task")
    .expect("run the driver");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "driver failed ({}):\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    let report: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("driver output {stdout:?}: {e}"));

    let api = Api::new(&sandbox);
    let contact = api.contact_id("Known client").await;
    assert_eq!(report["contact_id"], contact);
    assert_eq!(report["contact_name"], "Known client");
    assert_eq!(report["refetched_id"], contact);
    assert!(
        report["revoked_message"]
            .as_str()
            .unwrap_or("")
            .contains("Token has been revoked"),
        "{report}"
    );
    assert_eq!(report["call"]["entity_type"], "contact");
    assert_eq!(report["call"]["entity_id"], contact);
    assert_eq!(
        report["unknown_error"]["errors"][0]["title"],
        "Entity not found"
    );

    // The outcome, read back through the sandbox with its own token.
    let notes = api.get(&format!("/api/v4/contacts/{contact}/notes")).await;
    assert_eq!(notes.status, 200, "{}", notes.text);
    let notes = notes.json["_embedded"]["notes"]
        .as_array()
        .expect("notes")
        .clone();
    assert_eq!(notes.len(), 2, "{notes:?}");
    let call_note = notes
        .iter()
        .find(|n| n["note_type"] == "call_in")
        .expect("the call's note");
    assert_eq!(call_note["id"], report["call"]["id"]);
    assert_eq!(call_note["params"]["uniq"], "tp-call-1");
    assert_eq!(call_note["params"]["duration"], 42);
    assert_eq!(call_note["params"]["source"], "amocrm-api-tp");
    assert_eq!(call_note["params"]["phone"], "8 (916) 123-45-67");
    assert_eq!(
        call_note["params"]["link"],
        "https://pbx.example.com/tp-call-1.mp3"
    );
    assert_eq!(call_note["params"]["call_status"], 4);
    assert_eq!(call_note["params"]["call_result"], "Talked");
    assert_eq!(call_note["created_by"], 1001);
    assert_eq!(call_note["responsible_user_id"], 1001);
    let library_note = notes
        .iter()
        .find(|n| n["note_type"] == "call_out")
        .expect("the library's note");
    assert_eq!(library_note["id"], report["note_id"]);
    assert_eq!(library_note["params"]["uniq"], "tp-note-1");
    assert_eq!(library_note["params"]["duration"], 17);
    let mut seen: Vec<u64> = report["notes_seen"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    seen.sort_unstable();
    let mut stored: Vec<u64> = notes.iter().filter_map(|n| n["id"].as_u64()).collect();
    stored.sort_unstable();
    assert_eq!(seen, stored);

    // The library's own requests reached the routes: code, refresh, and the refused reuse.
    let stats = sandbox.stats();
    assert_eq!(
        stats.by_route.get("POST /oauth2/access_token"),
        Some(&3),
        "{stats:?}"
    );
    assert_eq!(
        stats.by_route.get("POST /api/v4/calls"),
        Some(&2),
        "{stats:?}"
    );
    assert_eq!(
        stats.by_route.get("POST /api/v4/contacts/{id}/notes"),
        Some(&1),
        "{stats:?}"
    );
    sandbox.shutdown().await;
}
