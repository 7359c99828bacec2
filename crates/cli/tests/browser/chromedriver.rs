//! Debian's Chromium and chromedriver: where they are, and a chromedriver process of the test's own
//! on a free loopback port, killed when dropped.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The Chromium binary: `CALLBRIDGE_CHROMIUM`, else Debian's `/usr/bin/chromium`.
pub fn chromium_path() -> PathBuf {
    binary("CALLBRIDGE_CHROMIUM", "/usr/bin/chromium")
}

/// The chromedriver binary: `CALLBRIDGE_CHROMEDRIVER`, else Debian's `/usr/bin/chromedriver`.
pub fn chromedriver_path() -> PathBuf {
    binary("CALLBRIDGE_CHROMEDRIVER", "/usr/bin/chromedriver")
}

fn binary(variable: &str, default: &str) -> PathBuf {
    let path = std::env::var_os(variable).map_or_else(|| PathBuf::from(default), PathBuf::from);
    // Never skipped: without a browser the browser tests fail, saying what is missing.
    assert!(
        path.is_file(),
        "{} is not installed (set {variable} or install Debian's chromium and chromium-driver; \
         scripts/test.sh does when it runs as root)",
        path.display()
    );
    path
}

/// A chromedriver listening on 127.0.0.1, for this test alone.
pub struct Chromedriver {
    child: Child,
    pub url: String,
}

impl Chromedriver {
    pub fn start() -> Chromedriver {
        let port = free_port();
        let mut child = Command::new(chromedriver_path())
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start chromedriver");
        // Its first line says it started (or why not); the rest is drained so it never blocks.
        let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        std::thread::spawn(move || for _ in lines {});
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("chromedriver exited ({status}) before listening: {first}");
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen on port {port} within 10 s: {first}"
            );
            std::thread::sleep(Duration::from_millis(25));
        }
        Chromedriver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nothing listens on now: the OS picks it, then the listener is closed for chromedriver.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("local address").port()
}
