//! Shutdown (issue 21 item 4): `/readyz` goes red at once, the listener closes, a request in
//! flight is still answered, and the service stops well within `shutdown_timeout_seconds`.
//! (SIGTERM with CRM work in a 429 pause: `cli/tests/delivery.rs`.)

mod support;

use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

const KEY: &str = "shutdown-key";
const SALT: &str = "shutdown-salt-00000000000000000000";

async fn readyz(router: &axum::Router) -> (u16, String) {
    let response = router
        .clone()
        .oneshot(
            axum::http::Request::get("/readyz")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn readyz_goes_red_at_once_in_flight_requests_are_answered_and_the_service_stops() {
    let (running, dir) =
        support::start_acme("shutdown", "shutdown-admin-token-1f4e", KEY, SALT).await;
    let addr = running.addr;
    let router = callbridge_server::router(
        running.state.clone(),
        callbridge_server::webhooks::BodyLimits {
            max_bytes: 65_536,
            read_timeout: Duration::from_secs(30),
        },
    );
    assert_eq!(readyz(&router).await.0, 200);

    // A webhook whose body is still on its way when shutdown begins.
    let json = r#"{"entry_id":"SHUTDOWN-1","call_id":"c1","timestamp":1733000000,"seq":1,"call_state":"Appeared"}"#;
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("vpbx_api_key", KEY)
        .append_pair("sign", &callbridge_mango::sign(KEY, json, SALT))
        .append_pair("json", json)
        .finish();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /mango/acme/events/call HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let (first, rest) = body.split_at(body.len() / 2);
    stream.write_all(first.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let asked = Instant::now();
    let _ = running.shutdown_handle().send(true);
    // Red at once: a balancer polling it stops sending before anything else stops.
    let red = loop {
        let (status, text) = readyz(&router).await;
        if status == 503 {
            break text;
        }
        assert!(asked.elapsed() < Duration::from_secs(1), "still ready");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(red, "shutting down");
    // The listener is closed: a new connection is refused.
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            break;
        }
        assert!(asked.elapsed() < Duration::from_secs(5), "still accepting");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The request in flight is still answered.
    stream.write_all(rest.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    tokio::time::timeout(Duration::from_secs(10), running.wait())
        .await
        .expect("stopped within shutdown_timeout_seconds");
    let _ = std::fs::remove_dir_all(&dir);
}
