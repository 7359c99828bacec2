//! Settings live in one place: the config file seeds a tenant, and a change made afterwards
//! (admin API, web UI) survives restarts of `callbridge serve` (the real binary, same data
//! folder, same file) until the file's entry for the tenant changes; then the file wins and a
//! settings version says so.

use reqwest::blocking::Client;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

const TOKEN: &str = "test-admin-token";

struct Serve {
    child: Child,
    base: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The config file with tenant `acme`, whose settings file holds `settings`; on PostgreSQL
/// when `database_url` is given.
fn write_config(dir: &Path, settings: &str, database_url: Option<&str>) -> PathBuf {
    std::fs::write(dir.join("acme-settings.toml"), settings).unwrap();
    let file = dir.join("callbridge.toml");
    // Top-level keys first: the tenant's table begins at `[[tenants]]`.
    let database = database_url
        .map(|url| format!("database_url = \"{url}\"\n"))
        .unwrap_or_default();
    std::fs::write(
        &file,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nadmin_token = \"{TOKEN}\"\n\
             directory_refresh_seconds = 0\n{database}\
             [[tenants]]\nid = \"acme\"\nmango_api_key = \"acme-key\"\n\
             mango_api_salt = \"acme-salt-0000000000000000000000\"\nsettings = \"acme-settings.toml\"\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    file
}

fn serve(config: &Path) -> Serve {
    let mut child = Command::new(env!("CARGO_BIN_EXE_callbridge"))
        .args(["serve", "--config"])
        .arg(config)
        .env("CALLBRIDGE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start callbridge serve");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let base = loop {
        let line = lines.next().expect("serve printed its address").unwrap();
        if let Some(addr) = line.strip_prefix("callbridge: listening on ") {
            break addr.to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Serve { child, base }
}

fn stored_settings(http: &Client, server: &Serve) -> String {
    let tenant: Value = http
        .get(format!("{}/api/v1/tenants/acme", server.base))
        .bearer_auth(TOKEN)
        .send()
        .unwrap()
        .json()
        .unwrap();
    tenant["settings_toml"].as_str().unwrap().to_string()
}

/// The tenant's settings versions, newest first, read from the data folder (no service
/// running): `(author, summary, settings)`.
fn versions(dir: &Path, database_url: Option<&str>) -> Vec<(String, String, String)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = callbridge_store::Store::open(database_url, &dir.join("data"))
            .await
            .unwrap();
        store
            .settings_versions("acme", 20)
            .await
            .unwrap()
            .into_iter()
            .map(|v| (v.author, v.summary, v.settings_toml))
            .collect()
    })
}

#[test]
fn on_sqlite_a_change_made_after_the_file_seeded_the_tenant_is_kept_until_the_file_changes() {
    kept_until_the_file_changes(None);
}

#[test]
fn on_postgresql_a_change_made_after_the_file_seeded_the_tenant_is_kept_until_the_file_changes() {
    let url = callbridge_test_support::fresh_postgres_database("settings_restart");
    kept_until_the_file_changes(Some(&url));
    callbridge_test_support::drop_postgres_database(&url);
}

fn kept_until_the_file_changes(database_url: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let seeded = "[calls.save_all_calls]\nenabled = false\n";
    let config = write_config(dir.path(), seeded, database_url);
    let http = Client::new();

    let server = serve(&config);
    assert_eq!(stored_settings(&http, &server), seeded);
    let edited = "[calls.missed_tasks]\nenabled = true\ndue_minutes = 30\n";
    let put = http
        .put(format!("{}/api/v1/tenants/acme", server.base))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({ "settings_toml": edited }))
        .send()
        .unwrap();
    assert!(put.status().is_success(), "{}", put.text().unwrap());
    drop(server);
    let seen = versions(dir.path(), database_url);
    // The file's seed, then the admin API's change (newest first).
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].0, "admin API");
    assert_eq!(seen[1].0, "config file");
    assert!(seen[1].1.starts_with("created from "), "{}", seen[1].1);

    // Restarted twice with the same file: the change is there each time.
    for _ in 0..2 {
        let server = serve(&config);
        assert_eq!(stored_settings(&http, &server), edited);
    }
    assert_eq!(
        versions(dir.path(), database_url).len(),
        2,
        "an unchanged file adds no version"
    );

    // The file's entry changes: it is applied, and a version says so.
    let from_file = "[calls.save_all_calls]\nenabled = false\n# reviewed by the operator\n";
    let config = write_config(dir.path(), from_file, database_url);
    let server = serve(&config);
    assert_eq!(stored_settings(&http, &server), from_file);
    drop(server);
    let seen = versions(dir.path(), database_url);
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(seen[0].0, "config file");
    assert_eq!(
        seen[0].1,
        format!("its entry in {} changed", config.display())
    );
    assert_eq!(seen[0].2, from_file);
    // And from then on the database keeps later changes again.
    let server = serve(&config);
    let put = http
        .put(format!("{}/api/v1/tenants/acme", server.base))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({ "settings_toml": edited }))
        .send()
        .unwrap();
    assert!(put.status().is_success());
    drop(server);
    let server = serve(&config);
    assert_eq!(stored_settings(&http, &server), edited);
}
