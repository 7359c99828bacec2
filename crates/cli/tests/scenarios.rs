//! Every folder under `scenarios/` is a case: `events.jsonl`, `settings.toml`, `expected.json`.
//! A new case is a new folder, no code. Each case runs through the real binary as delivered, then
//! reversed and shuffled with duplicated lines: the plan must not change (A1).
//!
//! `expected.json` is checked by `callbridge check-scenarios` (a subset of the output; see
//! `crates/cli/src/check_scenarios.rs`), which `scripts/simulate-scenarios.sh` runs.

use callbridge_test_support::SeededRng;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios")
}

fn simulate(settings: &Path, events: &Path) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_callbridge"))
        .args(["simulate", "--settings"])
        .arg(settings)
        .arg("--events")
        .arg(events)
        .output()
        .expect("run callbridge");
    assert!(
        out.status.success(),
        "simulate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("simulate prints JSON")
}

fn deliveries(lines: &[String]) -> Vec<(String, Vec<String>)> {
    let mut out = vec![("as delivered".to_string(), lines.to_vec())];
    out.push((
        "reversed".to_string(),
        lines.iter().rev().cloned().collect(),
    ));
    for seed in 1..=4u64 {
        // Seeded, so a failing shuffle can be replayed.
        let mut rng = SeededRng::new(seed);
        let mut v = lines.to_vec();
        for _ in 0..=rng.below(lines.len()) {
            let i = rng.below(lines.len());
            v.push(lines[i].clone());
        }
        rng.shuffle(&mut v);
        out.push((format!("shuffled with duplicates, seed {seed}"), v));
    }
    out
}

/// The plans alone, by entry id: the order entries complete in, how each was found complete and
/// the delivery counts may differ with the delivery order; what is written to the CRM may not.
fn plans_only(v: Value) -> Vec<(String, Value)> {
    let mut plans: Vec<(String, Value)> = v["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|entry| {
            let mut entry = entry.clone();
            entry.as_object_mut().map(|e| e.remove("completed_by"));
            (
                entry["entry_id"].as_str().unwrap_or_default().to_string(),
                entry,
            )
        })
        .collect();
    plans.sort_by(|a, b| a.0.cmp(&b.0));
    plans
}

#[test]
fn every_scenario_folder_passes_in_any_delivery_order() {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(scenarios_dir())
        .expect("scenarios folder")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.join("expected.json").exists())
        .collect();
    dirs.sort();
    assert!(
        dirs.len() >= 8,
        "the eight seed cases at least, found {}",
        dirs.len()
    );
    let tmp = std::env::temp_dir().join(format!("callbridge-scenarios-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let mut failures = Vec::new();
    for dir in &dirs {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let settings = dir.join("settings.toml");
        // Checked against expected.json by `check-scenarios` (the test below); here the plan
        // may not change with the delivery order.
        let baseline = simulate(&settings, &dir.join("events.jsonl"));
        let lines: Vec<String> = std::fs::read_to_string(dir.join("events.jsonl"))
            .unwrap()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect();
        for (how, variant) in deliveries(&lines).into_iter().skip(1) {
            let file = tmp.join(format!("{name}.jsonl"));
            std::fs::write(&file, variant.join("\n")).unwrap();
            let got = simulate(&settings, &file);
            if plans_only(got.clone()) != plans_only(baseline.clone()) {
                failures.push(format!(
                    "{name}, {how}: the plan changed:\n  {got}\n  vs {baseline}"
                ));
            }
        }
    }
    std::fs::remove_dir_all(&tmp).ok();
    assert!(
        failures.is_empty(),
        "{} failure(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
    println!("{} scenario folders passed", dirs.len());
}

#[test]
fn check_scenarios_says_pass_or_fail_per_folder_and_fails_on_any_failure() {
    let run = |dir: &Path| {
        Command::new(env!("CARGO_BIN_EXE_callbridge"))
            .arg("check-scenarios")
            .arg(dir)
            .output()
            .expect("run callbridge")
    };
    let folders = std::fs::read_dir(scenarios_dir())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().join("expected.json").exists())
        .count();
    let out = run(&scenarios_dir());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("PASS ")).count(),
        folders,
        "{stdout}"
    );
    assert!(stdout.contains(&format!("{folders} scenarios: {folders} passed, 0 failed")));

    // One scenario copied twice, one of the copies expecting another CRM user.
    let tmp =
        std::env::temp_dir().join(format!("callbridge-check-scenarios-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let source = scenarios_dir().join("a5-internal-ignored");
    for name in ["good", "wrong"] {
        std::fs::create_dir_all(tmp.join(name)).unwrap();
        for file in ["events.jsonl", "settings.toml", "expected.json"] {
            std::fs::copy(source.join(file), tmp.join(name).join(file)).unwrap();
        }
    }
    std::fs::write(
        tmp.join("wrong/expected.json"),
        r#"{"entries": [{"records": [{"crm_user_id": 424242}]}]}"#,
    )
    .unwrap();
    let out = run(&tmp);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "a failure exits non-zero: {stdout}");
    assert!(stdout.contains("PASS good"), "{stdout}");
    assert!(
        stdout.lines().any(|l| l.starts_with("FAIL wrong: ")),
        "{stdout}"
    );
    assert!(
        stdout.contains("2 scenarios: 1 passed, 1 failed"),
        "{stdout}"
    );
    std::fs::remove_dir_all(&tmp).unwrap();
}
