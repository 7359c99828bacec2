//! `callbridge generate` writes what `callbridge simulate` reads, and simulate makes of it what the
//! generated calls were: one entry per call, the right outcome, every record attributed by the
//! mapping table (unmapped employees' records to the "Save all calls" user, never a CRM user of
//! their own), cards only for mapped employees.

use callbridge_traffic::{generate, CallTruth, Config};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_callbridge"))
}

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().expect("run callbridge");
    assert!(
        out.status.success(),
        "callbridge failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn generate_files(dir: &Path, calls: usize, seed: u64) -> (std::path::PathBuf, std::path::PathBuf) {
    let events = dir.join(format!("events-{seed}.jsonl"));
    let settings = dir.join(format!("settings-{seed}.toml"));
    run(bin()
        .args([
            "generate",
            "--calls",
            &calls.to_string(),
            "--seed",
            &seed.to_string(),
        ])
        .args(["--rate", "0.7", "--duplicates", "0.05", "--reorder", "0.05"])
        .args(["--lost-summaries", "0.05", "--out"])
        .arg(&events)
        .arg("--settings-out")
        .arg(&settings));
    (events, settings)
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("callbridge-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn simulate_makes_of_generated_traffic_what_the_calls_were() {
    let dir = temp_dir("generate");
    let (events, settings) = generate_files(&dir, 400, 11);
    // The same generation in-process gives the ground truth (the command's defaults).
    let truth = generate(&Config {
        calls: 400,
        seed: 11,
        rate: 0.7,
        duplicates: 0.05,
        reorder: 0.05,
        lost_summaries: 0.05,
        ..Config::default()
    });
    let lines = std::fs::read_to_string(&events).unwrap();
    assert_eq!(lines.lines().count(), truth.events.len());
    for line in lines.lines().take(50) {
        let v: Value = serde_json::from_str(line).unwrap();
        assert!(v["path"].as_str().unwrap().starts_with("events/"));
        assert!(v["json"].is_object());
    }
    assert_eq!(
        std::fs::read_to_string(&settings).unwrap(),
        truth.staff.settings_toml()
    );

    let out: Value = serde_json::from_slice(&run(bin()
        .arg("simulate")
        .arg("--settings")
        .arg(&settings)
        .arg("--events")
        .arg(&events)))
    .expect("simulate prints JSON");
    let stats = &out["stats"];
    let entries = out["entries"].as_array().unwrap();
    // Every generated call completes, exactly once.
    assert_eq!(entries.len(), truth.calls.len());
    assert_eq!(stats["entries"], truth.calls.len());
    assert_eq!(stats["unfinished"], serde_json::json!([]));
    assert_eq!(stats["events"], truth.events.len());
    assert!(stats["duplicates"].as_u64().unwrap() > 0);
    let by_id: HashMap<&str, &CallTruth> = truth
        .calls
        .iter()
        .map(|c| (c.entry_id.as_str(), c))
        .collect();
    let ids: BTreeSet<&str> = entries
        .iter()
        .map(|e| e["entry_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), entries.len(), "an entry was planned twice");

    let staff = &truth.staff;
    let mapped_users: BTreeSet<u64> = staff
        .employees
        .iter()
        .filter_map(|e| e.crm_user_id)
        .collect();
    let fallback = staff.fallback_crm_user_id;
    let (mut answered, mut missed, mut internal, mut fallback_records) = (0, 0, 0, 0);
    for e in entries {
        let id = e["entry_id"].as_str().unwrap();
        let call = by_id
            .get(id)
            .unwrap_or_else(|| panic!("{id}: not a generated call"));
        let records = e["records"].as_array().unwrap();
        let what = format!("{id} ({:?})", call.kind);
        if e["direction"] == "internal" {
            internal += 1;
            assert!(records.is_empty(), "{what}: internal call written");
            assert!(e["reasons"].as_array().unwrap().contains(&"A5".into()));
            continue;
        }
        if call.answered {
            answered += 1;
            assert_eq!(e["outcome"], "answered", "{what}");
            // "Save all calls" is on: one record per conversation, in order.
            let exts: Vec<&str> = records
                .iter()
                .map(|r| r["employee_extension"].as_str().unwrap())
                .collect();
            assert_eq!(exts, call.talkers, "{what}");
            let recorded = records
                .iter()
                .filter(|r| !r["recording_id"].is_null())
                .count();
            assert_eq!(recorded, call.recordings.iter().flatten().count(), "{what}");
            // Exactly one record creates the CRM entities (P4).
            let creators = records
                .iter()
                .filter(|r| r["creates_entities"] == true)
                .count();
            assert_eq!(creators, 1, "{what}");
        } else {
            missed += 1;
            assert_eq!(e["outcome"], "missed", "{what}");
            assert!(records.len() <= 1, "{what}");
        }
        for r in records {
            let user = r["crm_user_id"].as_u64().unwrap();
            let reasons = r["reasons"].as_array().unwrap();
            match r["employee_extension"]
                .as_str()
                .and_then(|x| staff.employee(x))
            {
                Some(emp) => match emp.crm_user_id {
                    Some(own) => {
                        assert_eq!(user, own, "{what}");
                        assert!(reasons.contains(&"P1".into()), "{what}");
                    }
                    None => {
                        // Unmapped: never a user of their own, always the fallback (P2).
                        assert_eq!(user, fallback, "{what}");
                        assert!(reasons.contains(&"P2".into()), "{what}");
                        fallback_records += 1;
                    }
                },
                // M2 (D): a group call offered to no employee goes to the fallback user.
                None if reasons.contains(&"M2".into()) => {
                    assert_eq!(user, fallback, "{what}");
                    assert!(reasons.contains(&"P2".into()), "{what}");
                    assert!(r["employee_extension"].is_null(), "{what}");
                }
                None => panic!("{what}: record without a known employee: {r}"),
            }
        }
        // Cards only for mapped employees' CRM users (C1).
        for card in e["cards"].as_array().unwrap() {
            let card = card.as_u64().unwrap();
            assert!(mapped_users.contains(&card), "{what}: card for {card}");
        }
    }
    assert!(answered > 200 && missed > 20 && internal > 10 && fallback_records > 20);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn generate_is_deterministic_and_refuses_bad_shares() {
    let dir = temp_dir("generate-det");
    let (a, _) = generate_files(&dir, 50, 5);
    let first = std::fs::read(&a).unwrap();
    let (b, _) = generate_files(&dir, 50, 5);
    assert_eq!(first, std::fs::read(&b).unwrap());
    let out = bin()
        .args(["generate", "--calls", "5", "--duplicates", "1.5", "--out"])
        .arg(dir.join("x.jsonl"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--duplicates"), "{err}");
    std::fs::remove_dir_all(dir).ok();
}
