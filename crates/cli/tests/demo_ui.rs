//! `callbridge demo --keep-running` (the real binary) prints the web UI's address and a
//! password that signs in, and the demo's tenant is there to explore.
#![cfg(feature = "sandboxes")]

use reqwest::blocking::Client;
use reqwest::header::{COOKIE, SET_COOKIE};
use reqwest::StatusCode;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn cookie(r: &reqwest::blocking::Response, name: &str) -> Option<String> {
    r.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            let (k, value) = v.split(';').next()?.split_once('=')?;
            (k == name).then(|| value.to_string())
        })
}

#[test]
fn keep_running_prints_the_ui_and_a_password_that_signs_in() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut child = Command::new(env!("CARGO_BIN_EXE_callbridge"))
        .args(["demo", "--calls", "4", "--rate", "10", "--keep-running"])
        .arg("--data-dir")
        .arg(&data)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start callbridge demo");
    let stdout = child.stdout.take().unwrap();
    let _demo = Demo(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let (mut ui, mut password, mut seen) = (None, None, Vec::new());
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|e| panic!("{e}; the demo printed:\n{}", seen.join("\n")));
        if let Some(address) = line.trim().strip_prefix("web UI") {
            ui = Some(address.trim().trim_end_matches('/').to_string());
        }
        if let Some(rest) = line.trim().strip_prefix("sign in with the password ") {
            password = rest.split_whitespace().next().map(str::to_string);
        }
        let done = line.starts_with("Still running");
        seen.push(line);
        if done {
            break;
        }
    }
    let (ui, password) = (ui.expect("the UI's address"), password.expect("a password"));
    let passwords = seen.iter().filter(|l| l.contains(&password)).count();
    assert_eq!(
        passwords,
        1,
        "the password is printed once:\n{}",
        seen.join("\n")
    );
    assert!(
        seen.last().unwrap().contains(&format!("web UI at {ui}/")),
        "{seen:?}"
    );

    let http = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let form = http.get(format!("{ui}/login")).send().unwrap();
    let sign_in = cookie(&form, "callbridge_sign_in").unwrap();
    let html = form.text().unwrap();
    let marker = "name=\"csrf\" value=\"";
    let at = html.find(marker).unwrap() + marker.len();
    let csrf = &html[at..at + html[at..].find('"').unwrap()];
    let r = http
        .post(format!("{ui}/login"))
        .header(COOKIE, format!("callbridge_sign_in={sign_in}"))
        .form(&[
            ("password", password.as_str()),
            ("csrf", csrf),
            ("next", "/"),
        ])
        .send()
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::SEE_OTHER,
        "the printed password signs in"
    );
    let session = cookie(&r, "callbridge_session").unwrap();
    let page = http
        .get(format!("{ui}/tenants"))
        .header(COOKIE, format!("callbridge_session={session}"))
        .header("accept-language", "en")
        .send()
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let page = page.text().unwrap();
    assert!(page.contains("/t/demo/settings/employees"), "{page}");
    assert!(page.contains(&format!("{ui}/mango/demo/")), "{page}");
}
