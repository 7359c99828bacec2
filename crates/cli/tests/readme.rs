//! The README's commands work as written: each code block marked `<!-- readme-test: NAME -->`
//! runs in bash, unchanged, with the built `callbridge` first on `PATH`, from a copy of the
//! repository's `examples/` (so the example's data folder is made in a temporary folder, not in
//! the checkout). Processes the block leaves in the background are stopped at the end. The
//! sandboxes block listens on its fixed ports (8080, 8181, 8282); a port already taken fails the
//! test naming it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The `sh` block after the marker `<!-- readme-test: NAME`.
fn marked_block(readme: &str, name: &str) -> String {
    let marker = format!("<!-- readme-test: {name}");
    let at = readme
        .find(&marker)
        .unwrap_or_else(|| panic!("README.md has no block marked {marker:?}"));
    let rest = &readme[at..];
    let start = rest
        .find("```sh\n")
        .expect("a ```sh block after the marker")
        + 6;
    let len = rest[start..].find("```").expect("the block's end");
    rest[start..start + len].to_string()
}

#[test]
fn the_sandboxes_block_runs_as_written() {
    for port in [8080, 8181, 8282] {
        assert!(
            std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "port {port}, which the README's sandboxes block uses, is taken on this machine"
        );
    }
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let block = marked_block(&readme, "sandboxes");
    let dir = std::env::temp_dir().join(format!("callbridge-readme-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let bin = dir.join("bin");
    let work = dir.join("checkout");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(work.join("examples")).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_callbridge"), bin.join("callbridge")).unwrap();
    for entry in std::fs::read_dir(repo().join("examples")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), work.join("examples").join(entry.file_name())).unwrap();
    }
    // The block as written; around it only strict mode and the clean-up of what it started.
    let script =
        format!("set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null; wait' EXIT\n{block}\n");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let output = Command::new("timeout")
        .arg(Duration::from_secs(120).as_secs().to_string())
        .args(["bash", "-c", &script])
        .current_dir(&work)
        .env("PATH", path)
        .env_remove("CALLBRIDGE_ADMIN_TOKEN")
        .env_remove("CALLBRIDGE_DATABASE_URL")
        .env_remove("CALLBRIDGE_DATA_DIR")
        .env_remove("CALLBRIDGE_LOG")
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the block failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    // The last command lists the newest planned calls of the example tenant.
    let last = stdout.lines().last().unwrap_or("");
    let entries: serde_json::Value = serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("the entries answer is JSON ({e}): {last}\n{stderr}"));
    let listed = entries["entries"].as_array().map_or(0, Vec::len);
    assert!(listed > 0, "calls were planned: {entries}");
    assert!(
        work.join("data/callbridge.db").exists(),
        "the example's data folder"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
