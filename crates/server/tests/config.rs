//! The start-up configuration: every malformed value is refused with a message naming the key,
//! and nothing is started on a half-valid file.

use callbridge_server::config::Config;
use std::path::PathBuf;

fn write(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("callbridge-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

const GOOD: &str = "admin_token = \"long-enough-token\"\n";

#[test]
fn a_minimal_file_loads_with_the_documented_defaults() {
    let (config, tenants) = Config::load(Some(&write("good", GOOD))).expect("loads");
    assert_eq!(config.max_body_bytes, 64 * 1024);
    assert_eq!(config.body_timeout_ms, 30_000);
    assert_eq!(config.header_timeout_ms, 10_000);
    assert_eq!(config.idle_timeout_ms, 60_000);
    assert_eq!(config.max_connections, 1024);
    assert!(tenants.is_empty());
    // Relative data_dir is relative to the file.
    assert!(config.data_dir.is_absolute(), "{:?}", config.data_dir);
}

#[test]
fn each_bad_value_is_refused_naming_its_key() {
    let tenant = "[[tenants]]\nid = \"acme\"\nmango_api_key = \"k1\"\nmango_api_salt = \"s1-00000000000000000000000000000\"\n";
    let cases: &[(&str, String, &str)] = &[
        (
            "short-token",
            "admin_token = \"short\"\n".into(),
            "admin_token",
        ),
        (
            "no-token",
            "listen = \"127.0.0.1:0\"\n".into(),
            "admin_token",
        ),
        (
            "small-body",
            format!("{GOOD}max_body_bytes = 10\n"),
            "max_body_bytes: must be at least 1024",
        ),
        (
            "quick-timeout",
            format!("{GOOD}body_timeout_ms = 5\n"),
            "body_timeout_ms: must be between 100 and 600000",
        ),
        (
            "slow-timeout",
            format!("{GOOD}body_timeout_ms = 3600000\n"),
            "body_timeout_ms",
        ),
        (
            "negative-timeout",
            format!("{GOOD}body_timeout_ms = -1\n"),
            "body_timeout_ms",
        ),
        (
            "quick-header-timeout",
            format!("{GOOD}header_timeout_ms = 10\n"),
            "header_timeout_ms: must be between 100 and 600000",
        ),
        (
            "short-idle-timeout",
            format!("{GOOD}idle_timeout_ms = 5000\n"),
            "idle_timeout_ms: must be between 20000 and 3600000",
        ),
        (
            "no-connections",
            format!("{GOOD}max_connections = 0\n"),
            "max_connections: must be between 1 and 65536",
        ),
        (
            "too-many-connections",
            format!("{GOOD}max_connections = 1000000\n"),
            "max_connections",
        ),
        (
            "one-char-salt",
            format!("{GOOD}[[tenants]]\nid = \"acme\"\nmango_api_key = \"k1\"\nmango_api_salt = \"s\"\n"),
            "tenants[0].mango_api_salt: must be at least 32 characters",
        ),
        (
            "salt-with-newline",
            format!("{GOOD}[[tenants]]\nid = \"acme\"\nmango_api_key = \"k1\"\nmango_api_salt = \"0123456789abcdef0123456789abcdef\\n\"\n"),
            "tenants[0].mango_api_salt: must not contain spaces or control characters",
        ),
        (
            "negative-grace",
            format!("{GOOD}[processing]\ngrace_seconds = -5\n"),
            "processing.grace_seconds: must be between 0 and 86400",
        ),
        (
            "absurd-grace",
            format!("{GOOD}[processing]\ngrace_seconds = 10000000\n"),
            "processing.grace_seconds",
        ),
        (
            "negative-settle",
            format!("{GOOD}[processing]\nsettle_seconds = -1\n"),
            "processing.settle_seconds: must be between 0 and 3600",
        ),
        (
            "settle-complete-too-long",
            format!("{GOOD}[processing]\nsettle_complete_ms = 3600001\n"),
            "processing.settle_complete_ms: must be between 0 and 3600000",
        ),
        (
            "negative-settle-complete",
            format!("{GOOD}[processing]\nsettle_complete_ms = -5\n"),
            "processing.settle_complete_ms",
        ),
        (
            "zero-tick",
            format!("{GOOD}[processing]\ntick_ms = 0\n"),
            "processing.tick_ms: must be between 10 and 60000",
        ),
        (
            "negative-tick",
            format!("{GOOD}[processing]\ntick_ms = -1\n"),
            "processing.tick_ms",
        ),
        (
            "amocrm-without-auth",
            format!("{GOOD}{tenant}[tenants.amocrm]\nbase_url = \"https://acme.amocrm.ru\"\n"),
            "tenants[0].amocrm: give either long_lived_token",
        ),
        (
            "amocrm-bad-url",
            format!("{GOOD}{tenant}[tenants.amocrm]\nbase_url = \"ftp://acme\"\nlong_lived_token = \"t\"\n"),
            "tenants[0].amocrm.base_url",
        ),
        (
            "amocrm-unknown-key",
            format!("{GOOD}{tenant}[tenants.amocrm]\nbase_url = \"https://acme.amocrm.ru\"\ntoken = \"t\"\n"),
            "tenants[0].amocrm: unknown field `token`",
        ),
        (
            "amocrm-rate",
            format!("{GOOD}{tenant}[tenants.amocrm]\nbase_url = \"https://acme.amocrm.ru\"\nlong_lived_token = \"t\"\nrequests_per_second = 50\n"),
            "tenants[0].amocrm.requests_per_second",
        ),
        ("unknown-key", format!("{GOOD}max_body = 1\n"), "max_body"),
        (
            "bad-tenant-id",
            format!("{GOOD}{}", tenant.replace("acme", "Acme Corp")),
            "tenants[0].id",
        ),
        (
            "twice",
            format!("{GOOD}{tenant}{}", tenant.replace("k1", "k2")),
            "tenants[1]: id or mango_api_key used twice",
        ),
        (
            "no-salt",
            format!("{GOOD}{}", tenant.replace("\"s1-00000000000000000000000000000\"", "\"\"")),
            "tenants[0]: mango_api_key and mango_api_salt must be set",
        ),
        (
            "missing-settings",
            format!("{GOOD}{tenant}settings = \"nowhere.toml\"\n"),
            "cannot read settings",
        ),
        (
            // A device would be read without end (seen while writing the loader's fuzz target).
            "settings-device",
            format!("{GOOD}{tenant}settings = \"/dev/zero\"\n"),
            "tenants[0].settings: not a regular file",
        ),
    ];
    for (name, text, expected) in cases {
        let path = write(name, text);
        let error = Config::load(Some(&path))
            .err()
            .unwrap_or_else(|| panic!("{name}: loaded, expected an error with {expected:?}"))
            .to_string();
        assert!(error.contains(expected), "{name}: {error}");
        assert!(
            error.contains(&*path.to_string_lossy())
                || error.contains("nowhere.toml")
                || error.contains("/dev/zero"),
            "{name} names the file: {error}"
        );
    }
}

#[test]
fn a_missing_file_is_named() {
    let path = std::env::temp_dir().join("callbridge-config-does-not-exist.toml");
    let error = Config::load(Some(&path)).unwrap_err().to_string();
    assert!(error.contains("no such file"), "{error}");
    assert!(
        error.contains("callbridge-config-does-not-exist.toml"),
        "{error}"
    );
}

#[test]
fn the_example_in_the_repository_loads() {
    // As the README runs it: the example's placeholder token is refused, so a real one is given
    // (here written over it in a copy, beside the example's settings file).
    let examples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let refused = Config::load(Some(&examples.join("callbridge.toml")))
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("admin_token: a well-known value"),
        "{refused}"
    );
    let text = std::fs::read_to_string(examples.join("callbridge.toml")).unwrap();
    let text = text.replace(
        "replace-with-openssl-rand-hex-32",
        "3b9e5c1f0a7d4e2b8c6f1a0d9e7b5c3a",
    );
    assert!(
        !text.contains("replace-with"),
        "the placeholder is the only token"
    );
    let example = write("example", &text);
    std::fs::copy(
        examples.join("acme-settings.toml"),
        example.with_file_name("acme-settings.toml"),
    )
    .unwrap();
    let (config, tenants) = Config::load(Some(&example)).expect("examples/callbridge.toml loads");
    assert_eq!(config.body_timeout_ms, 30_000);
    assert_eq!(tenants.len(), 1);
}

#[test]
fn a_type_error_names_the_key_as_written_and_never_the_value() {
    let tenant = "[[tenants]]\nid = \"acme\"\nmango_api_key = \"k1\"\nmango_api_salt = \"s1-00000000000000000000000000000\"\n";
    let secret = "7391846205517";
    let cases: &[(&str, String, &str)] = &[
        ("token-type", format!("admin_token = {secret}\n"), "admin_token"),
        (
            "salt-type",
            format!("{GOOD}{}", tenant.replace("\"s1-00000000000000000000000000000\"", secret)),
            "tenants[0].mango_api_salt",
        ),
        (
            "key-type",
            format!("{GOOD}{}", tenant.replace("\"k1\"", &format!("[{secret}]"))),
            "tenants[0].mango_api_key",
        ),
        (
            "database-url-type",
            format!("{GOOD}database_url = {secret}\n"),
            "database_url",
        ),
        (
            "number-as-text",
            format!("{GOOD}max_body_bytes = \"{secret}x\"\n"),
            "max_body_bytes",
        ),
        (
            "crm-secret-type",
            format!(
                "{GOOD}{tenant}[tenants.amocrm]\nbase_url = \"https://acme.amocrm.ru\"\nclient_id = \"id\"\nclient_secret = {secret}\nredirect_uri = \"https://x/cb\"\n"
            ),
            "tenants[0].amocrm.client_secret",
        ),
    ];
    for (name, text, key) in cases {
        let error = Config::load(Some(&write(name, text)))
            .err()
            .unwrap_or_else(|| panic!("{name}: loaded"))
            .to_string();
        assert!(error.contains(key), "{name}: names {key}: {error}");
        assert!(!error.contains(secret), "{name}: shows the value: {error}");
    }
}

/// Config text with the given tenants (ids), SQLite in `dir`.
fn config_with(dir: &std::path::Path, ids: &[&str]) -> PathBuf {
    let mut text = format!(
        "{GOOD}listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\ndirectory_refresh_seconds = 0\n",
        dir.join("data").display()
    );
    for id in ids {
        text += &format!(
            "[[tenants]]\nid = \"{id}\"\nmango_api_key = \"key-{id}\"\nmango_api_salt = \"salt-{id}-000000000000000000000000\"\n"
        );
    }
    let path = dir.join(format!("tenants-{}.toml", ids.join("-")));
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn a_tenant_dropped_from_the_file_is_removed_at_start_and_api_tenants_stay() {
    let dir =
        std::env::temp_dir().join(format!("callbridge-config-{}-dropped", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (config, tenants) = Config::load(Some(&config_with(&dir, &["kept", "dropped"]))).unwrap();
    let running = callbridge_server::start(config, tenants).await.unwrap();
    // A tenant created through the admin API: never the file's.
    let http = reqwest::Client::new();
    let put = http
        .put(format!("http://{}/api/v1/tenants/by-api", running.addr))
        .bearer_auth("long-enough-token")
        .json(&serde_json::json!({"mango_api_key": "key-api", "mango_api_salt": "salt-api-00000000000000000000000"}))
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success(), "{}", put.text().await.unwrap());
    running.shutdown().await;

    let (config, tenants) = Config::load(Some(&config_with(&dir, &["kept"]))).unwrap();
    let running = callbridge_server::start(config, tenants).await.unwrap();
    let ids: Vec<String> = running
        .state
        .store
        .tenants()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(ids, ["by-api", "kept"]);
    assert!(running.state.tenant("dropped").await.is_none());
    // Its webhooks are refused like any unknown tenant's.
    let signed = |id: &str| {
        let json = r#"{"entry_id":"E1","call_id":"c1","timestamp":1733000000,"seq":1,"call_state":"Appeared"}"#;
        let key = format!("key-{id}");
        let sign =
            callbridge_mango::sign(&key, json, &format!("salt-{id}-000000000000000000000000"));
        form_urlencoded::Serializer::new(String::new())
            .append_pair("vpbx_api_key", &key)
            .append_pair("sign", &sign)
            .append_pair("json", json)
            .finish()
    };
    for (id, status) in [("dropped", 403), ("kept", 200)] {
        let r = http
            .post(format!("http://{}/mango/{id}/events/call", running.addr))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(signed(id))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{id}");
    }
    running.shutdown().await;
}
