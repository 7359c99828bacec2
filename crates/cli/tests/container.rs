//! The container image: built from the repository's Dockerfile and run with a configuration
//! mounted, it must answer `/readyz` with 200 and report healthy. Needs a Docker daemon; where
//! `docker info` fails (or `CALLBRIDGE_TEST_DOCKER=0`), the test does not pretend: it says
//! "container test: NOT RUN (...)" on stderr and in the file named by
//! `CALLBRIDGE_TEST_CONTAINER_LOG`, which `scripts/test.sh` prints beside its total line.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn note(line: &str) {
    eprintln!("{line}");
    if let Ok(file) = std::env::var("CALLBRIDGE_TEST_CONTAINER_LOG") {
        let _ = std::fs::write(file, format!("{line}\n"));
    }
}

fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("docker {args:?}: {e}"))
}

/// Why Docker cannot be used here, if it cannot.
fn docker_unavailable() -> Option<String> {
    if std::env::var("CALLBRIDGE_TEST_DOCKER").as_deref() == Ok("0") {
        return Some("CALLBRIDGE_TEST_DOCKER=0".into());
    }
    match Command::new("docker")
        .arg("info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(status) if status.success() => None,
        Ok(_) => Some("no Docker daemon".into()),
        Err(_) => Some("no Docker daemon: the docker command is not installed".into()),
    }
}

/// Removes the container when the test ends, however it ends.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.0]);
    }
}

#[test]
fn the_image_builds_and_answers_readyz() {
    if let Some(why) = docker_unavailable() {
        note(&format!("container test: NOT RUN ({why})"));
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let tag = format!("callbridge-test:{}", std::process::id());
    let build = Command::new("docker")
        .args(["build", "-t", &tag, "."])
        .current_dir(&root)
        .status()
        .expect("docker build");
    assert!(build.success(), "docker build failed");

    let dir = std::env::temp_dir().join(format!("callbridge-container-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("callbridge.toml");
    std::fs::write(
        &config,
        "admin_token = \"4c1d9e7a2b5f8036e1a4d7c0b3f69e25\"\n\
         directory_refresh_seconds = 0\n\
         [[tenants]]\nid = \"acme\"\nmango_api_key = \"container-key\"\n\
         mango_api_salt = \"0123456789abcdef0123456789abcdef\"\n",
    )
    .unwrap();
    let name = format!("callbridge-test-{}", std::process::id());
    let mount = format!("{}:/etc/callbridge/callbridge.toml:ro", config.display());
    let run = docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "-p",
        "127.0.0.1::8080",
        "-v",
        &mount,
        &tag,
    ]);
    assert!(run.status.success(), "docker run: {run:?}");
    let _container = Container(name.clone());
    let port = docker(&["port", &name, "8080/tcp"]);
    let port = String::from_utf8_lossy(&port.stdout);
    let addr = port
        .lines()
        .next()
        .expect("a published port")
        .trim()
        .to_string();

    let deadline = Instant::now() + Duration::from_secs(60);
    let body = loop {
        match reqwest::blocking::get(format!("http://{addr}/readyz")) {
            Ok(r) if r.status() == 200 => break r.text().unwrap(),
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(500)),
            other => {
                let logs = docker(&["logs", &name]);
                panic!(
                    "no 200 from /readyz: {other:?}\n{}",
                    String::from_utf8_lossy(&logs.stderr)
                );
            }
        }
    };
    assert!(body.starts_with("ready"), "{body}");
    // Its own health check (callbridge probe inside the image) agrees.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let health = docker(&["inspect", "-f", "{{.State.Health.Status}}", &name]);
        let health = String::from_utf8_lossy(&health.stdout).trim().to_string();
        if health == "healthy" {
            break;
        }
        assert!(Instant::now() < deadline, "health status {health}");
        std::thread::sleep(Duration::from_secs(1));
    }
    let user = docker(&["exec", &name, "id", "-u"]);
    assert_eq!(
        String::from_utf8_lossy(&user.stdout).trim(),
        "10001",
        "not root"
    );
    note("container test: ran (image built, /readyz 200, healthy)");
    let _ = docker(&["rmi", "-f", &tag]);
    std::fs::remove_dir_all(&dir).unwrap();
}
