//! `[processing] abandon_after_hours`: the horizon after which an entry that never completes is
//! given up (A4a). 24 hours by default; zero or negative is refused naming the key.

use callbridge_server::config::Config;

fn load(name: &str, text: &str) -> Result<Config, String> {
    let dir = std::env::temp_dir().join(format!("callbridge-abandon-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    Config::load(Some(&path))
        .map(|(config, _)| config)
        .map_err(|e| e.to_string())
}

const TOKEN: &str = "admin_token = \"long-enough-token\"\n";

#[test]
fn the_abandonment_horizon_defaults_to_a_day_and_refuses_zero_or_less() {
    let config = load("default", TOKEN).unwrap();
    assert_eq!(config.processing.abandon_after_hours, 24);
    assert_eq!(config.processing.abandon_after_ms, None);
    let config = load(
        "two",
        &format!("{TOKEN}[processing]\nabandon_after_hours = 2\n"),
    )
    .unwrap();
    assert_eq!(config.processing.abandon_after_hours, 2);
    for value in ["0", "-3"] {
        let error = load(
            &format!("bad{value}"),
            &format!("{TOKEN}[processing]\nabandon_after_hours = {value}\n"),
        )
        .expect_err(value);
        assert!(
            error.contains("processing.abandon_after_hours"),
            "{value}: {error}"
        );
    }
}
