//! Figures a test measured (the chaos suite's, the short fuzz run's), kept for a person to read:
//! the test runner hides a passing test's output, so each line also goes to the file
//! `scripts/test.sh` names, which prints them before its total line.

use std::io::Write;

/// The variable naming the figures file.
pub const FIGURES_LOG_VAR: &str = "CALLBRIDGE_TEST_FIGURES_LOG";

/// Prints `line` and appends it to the figures file when there is one.
pub fn note_figures(line: &str) {
    println!("{line}");
    let Ok(path) = std::env::var(FIGURES_LOG_VAR) else {
        return;
    };
    // One short append per line: whole lines even with tests running in parallel.
    let appended = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()));
    if let Err(e) = appended {
        panic!("{FIGURES_LOG_VAR}={path}: cannot append to it: {e}");
    }
}
