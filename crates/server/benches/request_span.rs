//! What the request span (`request_span.rs`) costs: the same requests through the router with
//! the span layer (what `serve` runs) and without it, in process (no sockets), under a log
//! subscriber like `serve`'s (fmt, INFO, so the span is on and its fields are formatted) that
//! writes nowhere.
//!
//! Three requests: `GET /healthz` (nothing but the layer and the router: the span's share at its
//! largest), a webhook of a known tenant with a wrong signature (parsed, the tenant looked up,
//! the signature checked, refused before the store: a webhook's work without the disk), and
//! `GET /api/v1/tenants/acme` with the admin token (a store read).
//!
//! `cargo bench -p callbridge-server --bench request_span`; figures in `docs/benchmarks.md`.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use callbridge_server::config::Config;
use callbridge_server::webhooks::BodyLimits;
use callbridge_test_support::{one_tenant_config, TestTenant};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use std::time::{Duration, Instant};
use tower::ServiceExt;

const ADMIN_TOKEN: &str = "bench-admin-token";
const KEY: &str = "bench-key";
const SALT: &str = "bench-salt-0000000000000000000000";

/// A request measured: its name, how to make it, and the status it must get.
type Case = (&'static str, fn() -> Request<Body>, StatusCode);

fn healthz() -> Request<Body> {
    Request::get("/healthz")
        .body(Body::empty())
        .expect("request")
}

fn refused_webhook() -> Request<Body> {
    let json = r#"{"entry_id":"BENCH-1","call_id":"c1","timestamp":1733000000,"seq":1,"call_state":"Appeared"}"#;
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("vpbx_api_key", KEY)
        .append_pair(
            "sign",
            "0000000000000000000000000000000000000000000000000000000000000000",
        )
        .append_pair("json", json)
        .finish();
    Request::post("/mango/acme/events/call")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .expect("request")
}

fn tenant_read() -> Request<Body> {
    Request::get("/api/v1/tenants/acme")
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .body(Body::empty())
        .expect("request")
}

/// Sends `iters` requests one after another and reads each answer to its end (the span closes
/// when the body does).
async fn send(
    app: &Router,
    request: fn() -> Request<Body>,
    want: StatusCode,
    iters: u64,
) -> Duration {
    let started = Instant::now();
    for _ in 0..iters {
        let response = app.clone().oneshot(request()).await.expect("infallible");
        assert_eq!(response.status(), want);
        axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
    }
    started.elapsed()
}

fn request_span(c: &mut Criterion) {
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_writer(std::io::sink)
        .init();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = std::env::temp_dir().join(format!("callbridge-bench-span-{}", std::process::id()));
    let file = one_tenant_config(
        &dir,
        ADMIN_TOKEN,
        &TestTenant {
            id: "acme",
            mango_api_key: KEY,
            mango_api_salt: SALT,
        },
    );
    let (config, tenants) = Config::load(Some(&file)).expect("config");
    let running = runtime
        .block_on(callbridge_server::start(config, tenants))
        .expect("service");
    let limits = || BodyLimits {
        max_bytes: 64 * 1024,
        read_timeout: Duration::from_secs(5),
    };
    let with_span = callbridge_server::router(running.state.clone(), limits());
    let without_span = callbridge_server::routes(running.state.clone(), limits());

    let requests: [Case; 3] = [
        ("healthz", healthz, StatusCode::OK),
        ("webhook_refused", refused_webhook, StatusCode::FORBIDDEN),
        ("tenant_read", tenant_read, StatusCode::OK),
    ];
    let mut group = c.benchmark_group("request_span");
    group.measurement_time(Duration::from_secs(4));
    for (name, request, want) in requests {
        for (variant, app) in [("with_span", &with_span), ("without_span", &without_span)] {
            group.bench_function(BenchmarkId::new(name, variant), |b| {
                b.iter_custom(|iters| runtime.block_on(send(app, request, want, iters)))
            });
        }
    }
    group.finish();
    runtime.block_on(running.shutdown());
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, request_span);
criterion_main!(benches);
