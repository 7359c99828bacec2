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
    let tenant = "[[tenants]]\nid = \"acme\"\nmango_api_key = \"k1\"\nmango_api_salt = \"s1\"\n";
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
            format!("{GOOD}{}", tenant.replace("\"s1\"", "\"\"")),
            "tenants[0]: mango_api_key and mango_api_salt must be set",
        ),
        (
            "missing-settings",
            format!("{GOOD}{tenant}settings = \"nowhere.toml\"\n"),
            "cannot read settings",
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
            error.contains(&*path.to_string_lossy()) || error.contains("nowhere.toml"),
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
    let example = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/callbridge.toml");
    let (config, tenants) = Config::load(Some(&example)).expect("examples/callbridge.toml loads");
    assert_eq!(config.body_timeout_ms, 30_000);
    assert_eq!(tenants.len(), 1);
}
