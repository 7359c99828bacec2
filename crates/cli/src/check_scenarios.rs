//! `callbridge check-scenarios DIR`: every folder of DIR with `events.jsonl`, `settings.toml`
//! and `expected.json` is run through `simulate` (the default periods) and its output checked
//! against `expected.json`; one PASS or FAIL line a folder, with the first mismatch, and exit 1
//! when any failed.
//!
//! `expected.json` is a subset of the output: objects match key by key; arrays match element by
//! element with the same length, except `reasons`, which must be contained in the actual
//! reasons; `"employee_extension": null` matches any extension.

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// The folder of scenario folders (the repository's `scenarios/`).
    dir: PathBuf,
}

pub fn run(args: &Args) -> Result<()> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&args.dir)
        .with_context(|| format!("{}: cannot read the folder", args.dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("expected.json").is_file())
        .collect();
    dirs.sort();
    if dirs.is_empty() {
        bail!(
            "{}: no scenario folder (one with expected.json, events.jsonl and settings.toml)",
            args.dir.display()
        );
    }
    let mut failed = 0;
    for dir in &dirs {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match check_one(dir) {
            Ok(()) => println!("PASS {name}"),
            Err(e) => {
                failed += 1;
                println!("FAIL {name}: {}", format!("{e:#}").replace('\n', " "));
            }
        }
    }
    println!(
        "{} scenarios: {} passed, {failed} failed",
        dirs.len(),
        dirs.len() - failed
    );
    if failed > 0 {
        bail!("{failed} of {} scenarios failed", dirs.len());
    }
    Ok(())
}

fn check_one(dir: &std::path::Path) -> Result<()> {
    let expected_file = dir.join("expected.json");
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(&expected_file)
            .with_context(|| format!("{}: cannot read", expected_file.display()))?,
    )
    .with_context(|| format!("{}: not JSON", expected_file.display()))?;
    let actual =
        crate::simulate::simulate_files(&dir.join("settings.toml"), &dir.join("events.jsonl"))?;
    subset(&expected, &actual, "").map_err(|e| anyhow!(e))
}

/// Checks `expected` against `actual`; the first mismatch as a path and a message.
pub fn subset(expected: &Value, actual: &Value, path: &str) -> Result<(), String> {
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
                    if let Some(r) = want.iter().find(|r| !have.contains(r)) {
                        return Err(format!("{here}: {r} not among {av}"));
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

#[cfg(test)]
mod tests {
    use super::subset;
    use serde_json::json;

    #[test]
    fn the_subset_check_can_fail() {
        let actual = json!({"records": [{"reasons": ["P1"], "crm_user_id": 1}]});
        assert!(subset(&json!({"records": [{"reasons": ["P2"]}]}), &actual, "x").is_err());
        assert!(subset(&json!({"records": [{"crm_user_id": 2}]}), &actual, "x").is_err());
        assert!(subset(&json!({"records": []}), &actual, "x").is_err());
        assert!(subset(&json!({"records": [{"reasons": ["P1"]}]}), &actual, "x").is_ok());
    }
}
