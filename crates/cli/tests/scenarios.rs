//! Every folder under `scenarios/` is a case: `events.jsonl`, `settings.toml`, `expected.json`.
//! A new case is a new folder, no code. Each case runs through the real binary as delivered, then
//! reversed and shuffled with duplicated lines: the plan must not change (A1).
//!
//! `expected.json` is a subset of the output: objects match key by key; arrays match element by
//! element with the same length, except `reasons`, which must be contained in the actual
//! reasons; `"employee_extension": null` matches any extension.

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

/// Checks `expected` against `actual`; returns the first mismatch as a path and a message.
fn subset(expected: &Value, actual: &Value, path: &str) -> Result<(), String> {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (key, ev) in e {
                let here = format!("{path}.{key}");
                if key == "employee_extension" && ev.is_null() {
                    continue;
                }
                let av = a
                    .get(key)
                    .ok_or_else(|| format!("{here}: missing in output"))?;
                if key == "reasons" {
                    let (Value::Array(want), Value::Array(have)) = (ev, av) else {
                        return Err(format!("{here}: expected arrays"));
                    };
                    for r in want {
                        if !have.contains(r) {
                            return Err(format!("{here}: {r} not among {av}"));
                        }
                    }
                    continue;
                }
                subset(ev, av, &here)?;
            }
            Ok(())
        }
        (Value::Array(e), Value::Array(a)) => {
            if e.len() != a.len() {
                return Err(format!(
                    "{path}: expected {} items, got {}: {actual}",
                    e.len(),
                    a.len()
                ));
            }
            e.iter()
                .zip(a)
                .enumerate()
                .try_for_each(|(i, (ev, av))| subset(ev, av, &format!("{path}[{i}]")))
        }
        _ if expected == actual => Ok(()),
        _ => Err(format!("{path}: expected {expected}, got {actual}")),
    }
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
        let expected: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap())
                .unwrap_or_else(|e| panic!("{name}/expected.json: {e}"));
        let settings = dir.join("settings.toml");
        let baseline = simulate(&settings, &dir.join("events.jsonl"));
        if let Err(e) = subset(&expected, &baseline, &name) {
            failures.push(e);
            continue;
        }
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
fn the_subset_check_can_fail() {
    let actual: Value = serde_json::json!({"records": [{"reasons": ["P1"], "crm_user_id": 1}]});
    assert!(subset(
        &serde_json::json!({"records": [{"reasons": ["P2"]}]}),
        &actual,
        "x"
    )
    .is_err());
    assert!(subset(
        &serde_json::json!({"records": [{"crm_user_id": 2}]}),
        &actual,
        "x"
    )
    .is_err());
    assert!(subset(&serde_json::json!({"records": []}), &actual, "x").is_err());
    assert!(subset(
        &serde_json::json!({"records": [{"reasons": ["P1"]}]}),
        &actual,
        "x"
    )
    .is_ok());
}
