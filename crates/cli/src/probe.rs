//! `callbridge probe [--url URL]`: asks a running service's `/readyz` and exits 0 when it answers
//! 200, 1 otherwise, printing the answer. For container health checks, where the runtime image
//! has no curl. Plain HTTP on the local address only (the service behind its proxy).

use anyhow::{bail, Context, Result};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
    /// The readiness URL (plain http).
    #[arg(long, default_value = "http://127.0.0.1:8080/readyz")]
    url: String,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 5)]
    timeout_seconds: u64,
}

pub fn run(args: &Args) -> Result<()> {
    let Some(rest) = args.url.strip_prefix("http://") else {
        bail!(
            "--url: only http:// URLs (the service's own address), got {}",
            args.url
        );
    };
    let (host_port, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let timeout = Duration::from_secs(args.timeout_seconds.max(1));
    let addr = host_port
        .to_socket_addrs()
        .with_context(|| format!("--url: cannot resolve {host_port}"))?
        .next()
        .with_context(|| format!("--url: no address for {host_port}"))?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("{}: no answer", args.url))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host_port}\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .with_context(|| format!("{}: reading the answer", args.url))?;
    let answer = String::from_utf8_lossy(&answer);
    let status = answer.split_whitespace().nth(1).unwrap_or("");
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b).trim();
    println!("{status} {body}");
    if status != "200" {
        bail!("{}: not ready ({status})", args.url);
    }
    Ok(())
}
