//! The HTTP serving loop: accepts connections up to a cap, serves each with HTTP/1.1 under a
//! header-read timeout and an idle timeout, backs off when `accept` fails, and on shutdown
//! stops accepting and lets requests in flight finish.
//!
//! `axum::serve` has none of these: a few hundred clients that open a connection and send half a
//! request head (slowloris) held it for ever, and with the descriptor limit reached its accept
//! loop retried `EMFILE` as fast as it could.
//!
//! - **Connection cap**: a semaphore permit is taken *before* `accept`, so at the cap new
//!   connections wait in the kernel's backlog instead of costing a descriptor. The cap is also
//!   kept below the process's descriptor limit (`RLIMIT_NOFILE`, see [`connection_cap`]).
//! - **Header timeout** (hyper's `header_read_timeout`): a request head must arrive within it.
//!   Hyper starts that clock whenever it waits for a head, so it also closes a kept-alive
//!   connection that sends no next request within it.
//! - **Idle timeout**: a connection on which no byte moved either way for this long is closed,
//!   even with a request in flight (a client that stops reading its answer). The card stream
//!   sends a keep-alive comment every 15 s, which is why the bound starts at 20 s.
//! - The body timeout is the webhook routes' own (`webhooks::within_limit`, 408).

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;

/// How each connection is held.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// At most this many connections are served at once.
    pub max_connections: usize,
    /// A request head must arrive within this.
    pub header_timeout: Duration,
    /// A connection with no byte moving either way for this long is closed.
    pub idle_timeout: Duration,
}

/// Descriptors kept for everything but client connections: the database (SQLite's files or a
/// PostgreSQL pool), the CRM and VPBX clients' connections, the runtime, logs.
pub const RESERVED_DESCRIPTORS: u64 = 64;

/// The connection cap the process can keep: `configured`, lowered so that the connections plus
/// [`RESERVED_DESCRIPTORS`] fit in the descriptor limit. The soft limit is first raised towards
/// the hard one as far as needed. Returns the cap and, when it was lowered, the limit that
/// lowered it.
pub fn connection_cap(configured: usize) -> (usize, Option<u64>) {
    let wanted = (configured as u64).saturating_add(RESERVED_DESCRIPTORS);
    let Some(soft) = raise_descriptor_limit(wanted) else {
        return (configured, None);
    };
    cap_for_limit(configured, soft)
}

/// The cap for a given soft descriptor limit; at least half the limit, at least 1.
fn cap_for_limit(configured: usize, soft: u64) -> (usize, Option<u64>) {
    let room = soft
        .saturating_sub(RESERVED_DESCRIPTORS)
        .max(soft / 2)
        .max(1);
    if (configured as u64) <= room {
        (configured, None)
    } else {
        (room as usize, Some(soft))
    }
}

/// Raises the soft `RLIMIT_NOFILE` to `wanted` (never above the hard limit) and returns the
/// soft limit in force; `None` when it cannot be read (or is unlimited).
#[cfg(unix)]
#[allow(clippy::unnecessary_cast)] // `rlim_t` is `u64` on Linux, not on every unix
fn raise_descriptor_limit(wanted: u64) -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given and nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    if limit.rlim_cur == libc::RLIM_INFINITY {
        return None;
    }
    let soft = limit.rlim_cur as u64;
    let hard = limit.rlim_max as u64;
    if soft < wanted {
        let raised = libc::rlimit {
            rlim_cur: wanted.min(hard) as libc::rlim_t,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads the struct it is given; a refusal leaves the limit as it was.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return Some(raised.rlim_cur as u64);
        }
    }
    Some(soft)
}

#[cfg(not(unix))]
fn raise_descriptor_limit(_wanted: u64) -> Option<u64> {
    None
}

/// Longest pause after a failing `accept` (the pauses double from 10 ms up to this).
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting and waits for the
/// open connections to finish their requests in flight (idle ones are closed at once).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let max = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let permits = Arc::new(Semaphore::new(max));
    let (drain, draining) = watch::channel(false);
    let mut backoff = Duration::ZERO;
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break, // never closed
            },
        };
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => {
                backoff = Duration::ZERO;
                stream
            }
            // The client gave up before we took it: nothing wrong with the listener.
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // EMFILE / ENFILE / ENOMEM: retrying at once would spin. Wait, doubling.
                backoff = (backoff * 2).clamp(Duration::from_millis(10), MAX_ACCEPT_BACKOFF);
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "accept failed");
                metrics::counter!("callbridge_accept_errors_total").increment(1);
                tokio::select! {
                    _ = &mut shutdown => break,
                    _ = tokio::time::sleep(backoff) => continue,
                }
            }
        };
        let app = app.clone();
        let draining = draining.clone();
        tokio::spawn(async move {
            serve_connection(stream, app, limits, draining).await;
            drop(permit);
        });
    }
    drop(listener);
    let _ = drain.send(true);
    // Every connection holds a permit until it is done: all of them back means all closed.
    let _ = permits.acquire_many(max as u32).await;
    Ok(())
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

async fn serve_connection(
    stream: TcpStream,
    app: Router,
    limits: ConnectionLimits,
    mut draining: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let epoch = Instant::now();
    let last_activity = Arc::new(AtomicU64::new(0));
    let io = TokioIo::new(Watched {
        inner: stream,
        epoch,
        last_activity: last_activity.clone(),
    });
    // The router takes hyper's `Incoming` body as it is.
    let service = TowerToHyperService::new(app);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    let mut drain_sent = *draining.borrow();
    if drain_sent {
        connection.as_mut().graceful_shutdown();
    }
    loop {
        let idle_since = epoch + Duration::from_millis(last_activity.load(Ordering::Relaxed));
        let idle_deadline = idle_since + limits.idle_timeout;
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    // Timeouts, resets and malformed heads are the client's business.
                    tracing::debug!(error = %e, "connection ended");
                }
                return;
            }
            changed = draining.changed(), if !drain_sent => {
                drain_sent = true;
                if changed.is_ok() {
                    connection.as_mut().graceful_shutdown();
                }
            }
            _ = tokio::time::sleep_until(idle_deadline) => {
                let moved = Duration::from_millis(last_activity.load(Ordering::Relaxed));
                if epoch + moved + limits.idle_timeout <= Instant::now() {
                    tracing::debug!("closing a connection idle for {:?}", limits.idle_timeout);
                    metrics::counter!("callbridge_connections_idle_closed_total").increment(1);
                    return;
                }
            }
        }
    }
}

/// A stream that notes when a byte last moved through it (milliseconds since `epoch`).
struct Watched {
    inner: TcpStream,
    epoch: Instant,
    last_activity: Arc<AtomicU64>,
}

impl Watched {
    fn touch(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.last_activity.store(now, Ordering::Relaxed);
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn the_cap_leaves_room_for_the_database_and_outgoing_clients() {
        assert_eq!(cap_for_limit(1024, 1_048_576), (1024, None));
        assert_eq!(cap_for_limit(1024, 1024), (960, Some(1024)));
        assert_eq!(cap_for_limit(1024, 256), (192, Some(256)));
        // A tiny limit still serves something.
        assert_eq!(cap_for_limit(1024, 64), (32, Some(64)));
        assert_eq!(cap_for_limit(10, 256), (10, None));
    }

    async fn start(limits: ConnectionLimits) -> (std::net::SocketAddr, watch::Sender<bool>) {
        let app = Router::new()
            .route("/big", get(|| async { vec![b'x'; 32 << 20] }))
            .route("/small", get(|| async { "ok" }));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, mut stopped) = watch::channel(false);
        tokio::spawn(serve(listener, app, limits, async move {
            let _ = stopped.wait_for(|s| *s).await;
        }));
        (addr, stop)
    }

    /// Reads until the server closes (or 10 s pass); returns the bytes read.
    async fn read_to_close(stream: &mut TcpStream) -> usize {
        let mut total = 0;
        let mut buf = vec![0; 1 << 16];
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return total,
                Ok(Ok(n)) => total += n,
                Err(_) => panic!("still open after 10 s ({total} bytes read)"),
            }
        }
    }

    #[tokio::test]
    async fn a_client_that_stops_reading_its_answer_is_cut_off_after_the_idle_timeout() {
        let (addr, _stop) = start(ConnectionLimits {
            max_connections: 8,
            header_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_millis(300),
        })
        .await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /big HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        // Read nothing while the server's writes stall on full buffers, long past the timeout.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let read = read_to_close(&mut stream).await;
        assert!(read < 32 << 20, "the whole answer came through: {read}");
    }

    #[tokio::test]
    async fn a_half_sent_head_is_closed_after_the_header_timeout() {
        let (addr, _stop) = start(ConnectionLimits {
            max_connections: 8,
            header_timeout: Duration::from_millis(300),
            idle_timeout: Duration::from_secs(60),
        })
        .await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let started = Instant::now();
        stream
            .write_all(b"GET /small HTTP/1.1\r\nhost")
            .await
            .unwrap();
        read_to_close(&mut stream).await;
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn at_the_cap_new_connections_wait_and_are_served_when_one_closes() {
        let (addr, _stop) = start(ConnectionLimits {
            max_connections: 1,
            header_timeout: Duration::from_millis(500),
            idle_timeout: Duration::from_secs(60),
        })
        .await;
        let mut holder = TcpStream::connect(addr).await.unwrap();
        holder.write_all(b"GET /sm").await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut second = TcpStream::connect(addr).await.unwrap();
        second
            .write_all(b"GET /small HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        // Not served while the first holds the only slot...
        let early =
            tokio::time::timeout(Duration::from_millis(250), second.read(&mut [0; 16])).await;
        assert!(early.is_err(), "served past the cap: {early:?}");
        // ...and served once the header timeout has closed the first.
        tokio::time::timeout(Duration::from_secs(5), second.read_to_end(&mut answer))
            .await
            .expect("served after the slot freed")
            .unwrap();
        assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
    }

    #[tokio::test]
    async fn shutdown_lets_a_request_in_flight_finish() {
        let app = Router::new().route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                "done"
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, mut stopped) = watch::channel(false);
        let server = tokio::spawn(serve(
            listener,
            app,
            ConnectionLimits {
                max_connections: 8,
                header_timeout: Duration::from_secs(5),
                idle_timeout: Duration::from_secs(60),
            },
            async move {
                let _ = stopped.wait_for(|s| *s).await;
            },
        ));
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        stop.send(true).unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.unwrap();
        assert!(String::from_utf8_lossy(&answer).ends_with("done"));
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("the server stopped")
            .unwrap()
            .unwrap();
    }
}
