//! Every line of every scenario in `scenarios/*/events.jsonl` parses, both from the decoded value
//! (as `simulate` does) and from the raw text (as `serve` does), to the same event.

use callbridge_core::PbxEvent;
use callbridge_mango::{parse_event, parse_value, Webhook};
use serde_json::Value;
use std::path::PathBuf;

fn scenario_files() -> Vec<PathBuf> {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../scenarios"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.expect("dir entry").path().join("events.jsonl"))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_scenario_line_parses() {
    let files = scenario_files();
    assert!(!files.is_empty(), "no scenarios found");
    let mut events = 0;
    let mut kinds = std::collections::BTreeSet::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read events.jsonl");
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let where_ = format!("{}:{}", file.display(), n + 1);
            let record: Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{where_}: {e}"));
            let path = record["path"]
                .as_str()
                .unwrap_or_else(|| panic!("{where_}: no path"));
            let json = &record["json"];
            let from_value = parse_value(path, json).unwrap_or_else(|e| panic!("{where_}: {e}"));
            let from_text =
                parse_event(path, &json.to_string()).unwrap_or_else(|e| panic!("{where_}: {e}"));
            assert_eq!(from_value, from_text, "{where_}");
            match from_value {
                Webhook::Event(event) => {
                    // The entry id made it through untouched.
                    assert_eq!(
                        Some(event.entry_id()),
                        json["entry_id"].as_str(),
                        "{where_}"
                    );
                    kinds.insert(match event {
                        PbxEvent::Call(_) => "call",
                        PbxEvent::Summary(_) => "summary",
                        PbxEvent::Recording(_) => "recording",
                        PbxEvent::RecordAdded(_) => "record_added",
                        PbxEvent::RecordTagged(_) => "record_tagged",
                        PbxEvent::Dtmf(_) => "dtmf",
                    });
                    events += 1;
                }
                Webhook::Ignored { path } => {
                    assert!(!path.starts_with("events/call"), "{where_}: {path} ignored");
                }
            }
        }
    }
    assert!(events > 20, "only {events} events parsed");
    // The scenarios exercise every event kind the parser produces.
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        [
            "call",
            "dtmf",
            "record_added",
            "record_tagged",
            "recording",
            "summary"
        ]
    );
}
