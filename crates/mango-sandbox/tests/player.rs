//! The traffic player against a small webhook receiver that checks every request as callbridge
//! does: the key, the signature (`callbridge_mango::sign::verify`) and the payload
//! (`callbridge_mango::webhook::parse_event`). Loopback only.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use callbridge_core::PbxEvent;
use callbridge_mango::api::VpbxClient;
use callbridge_mango::webhook::{parse_event, Webhook};
use callbridge_mango_sandbox::{
    play, start_vpbx_api, EmulatorError, PlayConfig, PlayProgress, Vpbx, VpbxConfig,
};
use callbridge_traffic::StaffConfig;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const KEY: &str = "player-key-42";
const SALT: &str = "player-salt-secret";

/// One request the receiver accepted.
#[derive(Clone)]
struct Hit {
    at: Instant,
    path: String,
    json: String,
    event: PbxEvent,
}

#[derive(Default)]
struct Receiver {
    hits: Mutex<Vec<Hit>>,
    pings: Mutex<Vec<Instant>>,
    /// Refusals (bad signature or payload) with the reason.
    refused: Mutex<Vec<String>>,
    /// Answer 503 to the first delivery of every n-th distinct event (0: never).
    fail_every: usize,
    distinct: Mutex<HashMap<(String, String), usize>>,
    failed_once: Mutex<HashSet<(String, String)>>,
    answered_503: Mutex<usize>,
}

async fn receive(state: &Receiver, path: String, body: Bytes) -> StatusCode {
    if body.is_empty() {
        state.pings.lock().unwrap().push(Instant::now());
        return StatusCode::OK;
    }
    let fields: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let (Some(key), Some(sign), Some(json)) = (
        fields.get("vpbx_api_key"),
        fields.get("sign"),
        fields.get("json"),
    ) else {
        state.refused.lock().unwrap().push("missing field".into());
        return StatusCode::BAD_REQUEST;
    };
    if key != KEY || !callbridge_mango::sign::verify(key, json, SALT, sign) {
        state
            .refused
            .lock()
            .unwrap()
            .push(format!("bad signature on {path}"));
        return StatusCode::FORBIDDEN;
    }
    let event = match parse_event(&path, json) {
        Ok(Webhook::Event(event)) => event,
        other => {
            state
                .refused
                .lock()
                .unwrap()
                .push(format!("{path}: {other:?}"));
            return StatusCode::BAD_REQUEST;
        }
    };
    if state.fail_every > 0 {
        let id = (path.clone(), json.clone());
        let n = {
            let mut distinct = state.distinct.lock().unwrap();
            let next = distinct.len();
            *distinct.entry(id.clone()).or_insert(next)
        };
        if n % state.fail_every == 0 && state.failed_once.lock().unwrap().insert(id) {
            *state.answered_503.lock().unwrap() += 1;
            return StatusCode::SERVICE_UNAVAILABLE;
        }
    }
    state.hits.lock().unwrap().push(Hit {
        at: Instant::now(),
        path,
        json: json.clone(),
        event,
    });
    StatusCode::OK
}

async fn start_receiver(receiver: Arc<Receiver>) -> SocketAddr {
    let app = Router::new()
        .route(
            "/mango/acme/",
            post(|State(r): State<Arc<Receiver>>, body: Bytes| async move {
                receive(&r, String::new(), body).await
            }),
        )
        .route(
            "/mango/acme/{*path}",
            post(
                |State(r): State<Arc<Receiver>>, Path(path): Path<String>, body: Bytes| async move {
                    receive(&r, path, body).await
                },
            ),
        )
        .with_state(receiver);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn config(addr: SocketAddr) -> PlayConfig {
    PlayConfig {
        webhook_base: format!("http://{addr}/mango/acme/"),
        api_key: KEY.into(),
        api_salt: SALT.into(),
        ..PlayConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn plays_the_office_at_the_rate_with_mangos_habits() {
    let receiver = Arc::new(Receiver::default());
    let addr = start_receiver(receiver.clone()).await;
    let play_config = PlayConfig {
        calls: 50,
        calls_per_second: 25.0,
        seed: 7,
        duplicate_rate: 0.1,
        reorder_rate: 0.05,
        lost_summary_rate: 0.1,
        recorded_rate: 0.8,
        // Office time runs 200 times faster within calls; calls still start at 25 per second.
        time_compression: 200.0,
        concurrency: 8,
        ..config(addr)
    };
    let vpbx = Vpbx::for_office(play_config.seed, &play_config.staff);
    let api = start_vpbx_api(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        VpbxConfig::new(KEY, SALT, vpbx.clone()),
    )
    .await
    .unwrap();
    let updates: Arc<Mutex<Vec<PlayProgress>>> = Arc::default();
    let seen = updates.clone();
    let report = play(&play_config, &vpbx, move |p| seen.lock().unwrap().push(p))
        .await
        .unwrap();

    assert!(
        receiver.refused.lock().unwrap().is_empty(),
        "{:?}",
        receiver.refused.lock().unwrap()
    );
    let hits = receiver.hits.lock().unwrap().clone();
    let pings = receiver.pings.lock().unwrap().clone();
    assert_eq!(pings.len(), 1, "one connection check");
    assert!(
        hits.iter().all(|h| h.at >= pings[0]),
        "the check comes first"
    );
    assert_eq!(report.ping_status, Some(200));

    // Every delivery arrived and was acknowledged.
    assert!(report.all_delivered(), "{:?}", report.summary_json());
    assert_eq!(hits.len() as u64, report.events_sent);
    assert_eq!(report.http_errors, BTreeMap::new());

    // The calls: as many distinct entries as asked for, each with all of its events.
    let mut by_entry: HashMap<&str, HashSet<(&str, &str)>> = HashMap::new();
    for h in &hits {
        by_entry
            .entry(h.event.entry_id())
            .or_default()
            .insert((h.path.as_str(), h.json.as_str()));
    }
    assert_eq!(by_entry.len(), 50);
    assert_eq!(report.truths.len(), 50);
    for truth in &report.truths {
        let events = &by_entry[truth.entry_id.as_str()];
        assert_eq!(events.len(), truth.events, "{truth:?}");
        let has_summary = events.iter().any(|(path, _)| *path == "events/summary");
        assert_eq!(has_summary, !truth.summary_lost, "{truth:?}");
        let timing = &report.entries[&truth.entry_id];
        assert_eq!(timing.summary_sent_at.is_some(), !truth.summary_lost);
        assert_eq!(timing.summary_acked_at.is_some(), !truth.summary_lost);
        assert_eq!(timing.kind, format!("{:?}", truth.kind));
    }
    // Lost summaries: absent exactly as reported, and there are some at 10%.
    let lost = report.truths.iter().filter(|t| t.summary_lost).count() as u64;
    assert_eq!(report.lost_summaries, lost);
    assert!(lost >= 1, "seed 7 loses some summaries");

    // Duplicates: re-deliveries of identical requests, as many as reported, about 10%.
    let distinct: HashSet<(&str, &str)> = hits
        .iter()
        .map(|h| (h.path.as_str(), h.json.as_str()))
        .collect();
    let duplicates = hits.len() - distinct.len();
    assert_eq!(duplicates as u64, report.duplicates_sent);
    assert_eq!(distinct.len() as u64, report.events);
    let share = duplicates as f64 / distinct.len() as f64;
    assert!((0.05..=0.2).contains(&share), "duplicate share {share}");

    // The rate: the 50 calls' first events spread over about 2 seconds (50 / 25 per second).
    let firsts: Vec<Instant> = {
        let mut first: HashMap<&str, Instant> = HashMap::new();
        for h in &hits {
            first
                .entry(h.event.entry_id())
                .and_modify(|t| *t = (*t).min(h.at))
                .or_insert(h.at);
        }
        first.into_values().collect()
    };
    let span = *firsts.iter().max().unwrap() - *firsts.iter().min().unwrap();
    eprintln!(
        "calls started over {span:?}; duplicate share {share:.3}; {lost} lost summaries; {} ms in all",
        report.elapsed_ms
    );
    assert!(
        span >= Duration::from_millis(1500) && span <= Duration::from_secs(8),
        "calls started over {span:?}"
    );

    // Progress was reported, finishing with everything delivered.
    let last = updates.lock().unwrap().last().cloned().unwrap();
    assert!(last.finished && last.delivered == report.events_sent && last.calls_started == 50);

    // The PBX knows every call, and serves the recordings the traffic made.
    assert_eq!(vpbx.calls_seen(), 50);
    let recording = report
        .truths
        .iter()
        .flat_map(|t| t.recordings.iter().flatten())
        .next()
        .expect("some call was recorded");
    let client = VpbxClient::with_base_url(api.base_url(), KEY, SALT).unwrap();
    let link = client.recording_link(recording).await.unwrap();
    let mp3 = reqwest::get(&link).await.unwrap().bytes().await.unwrap();
    assert_eq!(&mp3[..2], &[0xFF, 0xFB]);
    api.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_and_counted() {
    let receiver = Arc::new(Receiver {
        fail_every: 4,
        ..Receiver::default()
    });
    let addr = start_receiver(receiver.clone()).await;
    let play_config = PlayConfig {
        calls: 8,
        calls_per_second: 40.0,
        seed: 3,
        duplicate_rate: 0.0,
        reorder_rate: 0.0,
        lost_summary_rate: 0.0,
        time_compression: 500.0,
        retry_backoff: Duration::from_millis(20),
        ..config(addr)
    };
    let vpbx = Vpbx::for_office(3, &StaffConfig::default());
    let report = play(&play_config, &vpbx, |_| {}).await.unwrap();
    let refused = *receiver.answered_503.lock().unwrap() as u64;
    assert!(refused >= 5, "{refused}");
    assert_eq!(report.http_errors, BTreeMap::from([(503, refused)]));
    assert_eq!(report.retries, refused);
    assert!(report.all_delivered(), "{:?}", report.summary_json());
    // Each distinct event arrived exactly once (the 503 attempts were not stored).
    let hits = receiver.hits.lock().unwrap();
    assert_eq!(hits.len() as u64, report.events);
    assert_eq!(report.duplicates_sent, 0);
}

#[tokio::test]
async fn a_refused_connection_check_or_no_receiver_stops_the_play_early() {
    // Nothing listens: the port of a listener that was closed.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let vpbx = Vpbx::for_office(1, &StaffConfig::default());
    let err = play(&config(closed), &vpbx, |_| {}).await.unwrap_err();
    assert!(matches!(err, EmulatorError::Unreachable { .. }), "{err}");

    // A receiver that refuses the tenant.
    let app = Router::new().fallback(|| async { StatusCode::FORBIDDEN });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let err = play(&config(addr), &vpbx, |_| {}).await.unwrap_err();
    assert!(
        matches!(err, EmulatorError::PingRefused { status: 403, .. }),
        "{err}"
    );
    assert!(!err.to_string().contains(SALT));
    assert_eq!(vpbx.calls_seen(), 0, "nothing was played");
}

#[tokio::test]
async fn traffic_of_another_office_is_refused() {
    let vpbx = Vpbx::for_office(1, &StaffConfig::default());
    let err = play(
        &PlayConfig {
            seed: 2,
            ..config("127.0.0.1:9".parse().unwrap())
        },
        &vpbx,
        |_| {},
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, EmulatorError::StaffMismatch { seed: 2 }),
        "{err}"
    );
}
