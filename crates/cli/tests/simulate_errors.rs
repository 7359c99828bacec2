//! `simulate` on bad input: non-zero exit and one line on stderr naming the file and line, or the
//! key, at fault. Nothing is half-printed as success.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn case_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/r6-card-only-for-mapped")
}

fn tmp(name: &str, content: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("callbridge-errors-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

fn simulate(settings: &Path, events: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_callbridge"))
        .args(["simulate", "--settings"])
        .arg(settings)
        .arg("--events")
        .arg(events)
        .output()
        .expect("run callbridge")
}

/// Asserts a failure whose stderr is exactly one line containing every `needle`.
fn assert_one_line_error(out: &Output, needles: &[&str]) {
    assert!(
        !out.status.success(),
        "expected failure, got success: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one line expected: {err}"
    );
    for n in needles {
        assert!(err.contains(n), "{n:?} not in {err}");
    }
}

fn good_events() -> String {
    std::fs::read_to_string(case_dir().join("events.jsonl")).unwrap()
}

#[test]
fn malformed_json_line_names_file_and_line() {
    let mut text = good_events();
    text.push_str("{\"path\":\"events/call\",\"json\":{\"entry_id\":\n");
    let events = tmp("broken.jsonl", &text);
    let out = simulate(&case_dir().join("settings.toml"), &events);
    assert_one_line_error(&out, &["broken.jsonl:7:"]);
}

#[test]
fn unknown_call_state_names_the_field() {
    let line = good_events()
        .lines()
        .next()
        .unwrap()
        .replace("Appeared", "Ringing");
    let events = tmp("state.jsonl", &format!("{line}\n"));
    let out = simulate(&case_dir().join("settings.toml"), &events);
    assert_one_line_error(&out, &["state.jsonl:1:", "call_state", "Ringing"]);
}

#[test]
fn missing_entry_id_names_the_field() {
    let events = tmp(
        "noentry.jsonl",
        "{\"path\":\"events/summary\",\"json\":{\"call_direction\":1}}\n",
    );
    let out = simulate(&case_dir().join("settings.toml"), &events);
    assert_one_line_error(&out, &["noentry.jsonl:1:", "entry_id"]);
}

#[test]
fn unknown_settings_key_names_the_key_and_line() {
    let settings = tmp(
        "typo.toml",
        "plan = \"extended\"\n\n[calls.save_all_calls]\nenable = true\n",
    );
    let out = simulate(&settings, &case_dir().join("events.jsonl"));
    assert_one_line_error(&out, &["typo.toml", "line 4", "enable"]);
}

#[test]
fn unknown_settings_value_is_refused() {
    let settings = tmp(
        "value.toml",
        "[calls.missed_group]\nowner_when_unset = \"random\"\n",
    );
    let out = simulate(&settings, &case_dir().join("events.jsonl"));
    assert_one_line_error(&out, &["value.toml", "line 2", "random"]);
}

#[test]
fn save_all_calls_on_the_basic_plan_is_refused() {
    let settings = tmp(
        "basic.toml",
        "plan = \"basic\"\n[calls.save_all_calls]\nenabled = true\ncrm_user_id = 9000\n",
    );
    let out = simulate(&settings, &case_dir().join("events.jsonl"));
    assert_one_line_error(
        &out,
        &[
            "basic.toml",
            "calls.save_all_calls.enabled",
            "extended",
            "S2",
        ],
    );
}

#[test]
fn save_all_calls_without_a_user_is_refused() {
    let settings = tmp("nouser.toml", "[calls.save_all_calls]\nenabled = true\n");
    let out = simulate(&settings, &case_dir().join("events.jsonl"));
    assert_one_line_error(
        &out,
        &["nouser.toml", "calls.save_all_calls.crm_user_id", "S1"],
    );
}

#[test]
fn missing_files_are_named() {
    let out = simulate(
        Path::new("/nonexistent/settings.toml"),
        &case_dir().join("events.jsonl"),
    );
    assert_one_line_error(&out, &["/nonexistent/settings.toml"]);
    let out = simulate(
        &case_dir().join("settings.toml"),
        Path::new("/nonexistent/events.jsonl"),
    );
    assert_one_line_error(&out, &["/nonexistent/events.jsonl"]);
}

#[test]
fn ignored_paths_and_blank_lines_are_accepted() {
    let mut text = String::from("\n{\"path\":\"events/sms\",\"json\":{\"command_id\":\"x\"}}\n");
    text += "{\"path\":\"ping\",\"json\":{}}\n";
    text += &good_events();
    let events = tmp("extra.jsonl", &text);
    let out = simulate(&case_dir().join("settings.toml"), &events);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["entries"].as_array().unwrap().len(), 1);
    assert_eq!(v["stats"]["ignored_paths"], 2);
}

/// An entry of which only a keypress and a recording arrived is no call with "a leg still up":
/// the warning says its call events are missing, and `stats.without_legs` names it.
#[test]
fn an_entry_without_call_legs_is_named_as_such() {
    let mut text = String::from(
        "{\"path\":\"events/dtmf\",\"json\":{\"entry_id\":\"only-extras\",\"call_id\":\"c\",\"seq\":1,\"dtmf\":\"1\",\"timestamp\":1764100000,\"location\":\"ivr.1\"}}\n",
    );
    text += "{\"path\":\"events/recording\",\"json\":{\"entry_id\":\"only-extras\",\"recording_id\":\"r\",\"recording_state\":\"Completed\",\"completion_code\":1000,\"timestamp\":1764100050}}\n";
    text += &good_events();
    let events = tmp("extras.jsonl", &text);
    let out = simulate(&case_dir().join("settings.toml"), &events);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["entries"].as_array().unwrap().len(), 1);
    assert_eq!(
        v["stats"]["without_legs"],
        serde_json::json!(["only-extras"])
    );
    assert_eq!(v["stats"]["unfinished"], serde_json::json!([]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("entry only-extras has only recording or keypress events"),
        "{stderr}"
    );
    assert!(!stderr.contains("leg up"), "{stderr}");
}

#[test]
fn json_field_may_be_the_raw_string_as_posted() {
    let line = good_events().lines().next().unwrap().to_string();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    let raw = serde_json::json!({"path": v["path"], "json": v["json"].to_string()});
    let events = tmp("raw.jsonl", &format!("{raw}\n"));
    let out = simulate(&case_dir().join("settings.toml"), &events);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
