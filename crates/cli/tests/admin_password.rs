//! `callbridge admin set-password` against a running `callbridge serve` (the real binaries):
//! a weak password is refused with its reason and exit code 2; a good one signs everyone out,
//! opens the UI and shuts the old one out, on SQLite (while serve holds the data folder) and
//! on PostgreSQL.

use callbridge_test_support::{drop_postgres_database, fresh_postgres_database};
use reqwest::blocking::Client;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::StatusCode;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

const GOOD: &str = "violet-harbour-73-lantern";

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_callbridge")
}

/// `callbridge serve`, killed when dropped, with the password its first start printed.
struct Serve {
    child: Child,
    base: String,
    first_password: Option<String>,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_config(dir: &Path, database_url: Option<&str>) -> PathBuf {
    let mut text = format!(
        "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nadmin_token = \"test-admin-token\"\n\
         directory_refresh_seconds = 0\n",
        dir.join("data").display()
    );
    if let Some(url) = database_url {
        text += &format!("database_url = \"{url}\"\n");
    }
    let file = dir.join("callbridge.toml");
    std::fs::write(&file, text).unwrap();
    file
}

fn serve(config: &Path) -> Serve {
    let mut child = Command::new(bin())
        .args(["serve", "--config"])
        .arg(config)
        .env("CALLBRIDGE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start callbridge serve");
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // Read on a thread: a restart prints no password line, so the wait for one is bounded.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut base = None;
    loop {
        let line = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("serve printed its address");
        if let Some(addr) = line.strip_prefix("callbridge: listening on ") {
            base = Some(addr.to_string());
        }
        if line.contains("web UI at") {
            break;
        }
    }
    // On a first start the password line follows at once.
    let first_password = rx
        .recv_timeout(std::time::Duration::from_secs(2))
        .ok()
        .and_then(|line| {
            line.split_once("this one was made for you: ")
                .map(|p| p.1.to_string())
        });
    std::thread::spawn(move || for _ in rx {});
    Serve {
        child,
        base: base.expect("an address"),
        first_password,
    }
}

fn set_password(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(bin())
        .args(["admin", "set-password"])
        .args(args)
        .env("CALLBRIDGE_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn client() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
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

/// Signs in over HTTP as a browser does; the session cookie when the password was right.
fn sign_in(http: &Client, base: &str, password: &str) -> Option<String> {
    let form = http.get(format!("{base}/login")).send().unwrap();
    let sign_in_cookie = cookie(&form, "callbridge_sign_in").unwrap();
    let html = form.text().unwrap();
    let marker = "name=\"csrf\" value=\"";
    let at = html.find(marker).unwrap() + marker.len();
    let csrf = &html[at..at + html[at..].find('"').unwrap()];
    let r = http
        .post(format!("{base}/login"))
        .header(COOKIE, format!("callbridge_sign_in={sign_in_cookie}"))
        .form(&[("password", password), ("csrf", csrf), ("next", "/")])
        .send()
        .unwrap();
    if r.status() == StatusCode::SEE_OTHER {
        cookie(&r, "callbridge_session").map(|s| format!("callbridge_session={s}"))
    } else {
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        None
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The whole story against one running service; `store_args` tell `set-password` where it is.
fn weak_refused_good_one_replaces_the_old(server: &Serve, store_args: &[&str]) {
    let http = client();
    let old = server.first_password.clone().expect("first start password");
    let old_session = sign_in(&http, &server.base, &old).expect("the printed password works");

    for (weak, reason) in [
        ("short1", "too short"),
        ("password123", "most common passwords"),
        ("aaaaaaaaaaaaaaa", "repeats one character"),
    ] {
        let out = set_password(store_args, &format!("{weak}\n"));
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(stderr(&out).contains(reason), "{weak}: {}", stderr(&out));
        assert!(stderr(&out).contains("nothing was changed"));
        assert!(!stderr(&out).contains(weak), "the password is not echoed");
    }
    let out = set_password(store_args, "");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("no password on standard input"));
    // Refused ones changed nothing: the old password still signs in.
    assert!(sign_in(&http, &server.base, &old).is_some());

    let out = set_password(store_args, &format!("{GOOD}\n"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("admin password set; everyone signed in was signed out"),
        "{}",
        stdout(&out)
    );
    assert!(!stdout(&out).contains(GOOD) && !stderr(&out).contains(GOOD));
    // The session opened with the old password is over.
    let r = http
        .get(format!("{}/tenants", server.base))
        .header(COOKIE, &old_session)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(r.headers()[LOCATION]
        .to_str()
        .unwrap()
        .starts_with("/login"));
    let session = sign_in(&http, &server.base, GOOD).expect("the new password signs in");
    let r = http
        .get(format!("{}/tenants", server.base))
        .header(COOKIE, &session)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        sign_in(&http, &server.base, &old).is_none(),
        "the old one no longer does"
    );
}

#[test]
fn on_sqlite_while_serve_holds_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), None);
    let server = serve(&config);
    weak_refused_good_one_replaces_the_old(&server, &["--config", config.to_str().unwrap()]);
    // By the data folder too, telling that the running service takes it at once.
    let data = dir.path().join("data");
    let out = set_password(
        &["--data-dir", data.to_str().unwrap()],
        "another-long-passphrase-9\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("the running service (process "),
        "{}",
        stdout(&out)
    );
    assert!(sign_in(&client(), &server.base, "another-long-passphrase-9").is_some());
    drop(server);
    // No service: the folder's lock is free, and the password is kept for the next start.
    let out = set_password(
        &["--data-dir", data.to_str().unwrap()],
        &format!("{GOOD}\n"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stdout(&out).contains("running service"));
    let again = serve(&config);
    assert!(
        again.first_password.is_none(),
        "a set password is not replaced"
    );
    assert!(sign_in(&client(), &again.base, GOOD).is_some());
}

#[test]
fn a_folder_without_a_database_is_named_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-data");
    let out = set_password(
        &["--data-dir", missing.to_str().unwrap()],
        &format!("{GOOD}\n"),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no callbridge database here"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("no-such-data"));
    assert!(!missing.exists(), "nothing was created");
}

#[test]
fn on_postgresql_while_serve_runs() {
    let url = fresh_postgres_database("set_password");
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), Some(&url));
    let server = serve(&config);
    weak_refused_good_one_replaces_the_old(&server, &["--database-url", &url]);
    drop(server);
    drop_postgres_database(&url);
}
