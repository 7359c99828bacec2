//! The per-account limiter against a real HTTP server: what the server sees.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use callbridge_amocrm::{Error, COOLDOWN_INITIAL};
use common::*;
use serde_json::json;

fn account() -> Answer {
    json(200, json!({"id": 1, "name": "Acme", "subdomain": "acme"}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_requests_from_ten_tasks_never_exceed_seven_in_any_second() {
    let mock = mock(|_| account()).await;
    let client = client_with(&mock.base, 7, Duration::from_secs(10));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..20 {
                client.account().await.expect("account");
            }
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    let elapsed = started.elapsed();

    let arrivals: Vec<Instant> = mock.requests().iter().map(|s| s.at).collect();
    assert_eq!(arrivals.len(), 200);
    let busiest = max_in_window(&arrivals, Duration::from_secs(1));
    // The shortest time any 8 consecutive arrivals took: the margin left to the limit.
    let mut sorted = arrivals.clone();
    sorted.sort();
    let tightest = sorted
        .windows(8)
        .map(|w| w[7].duration_since(w[0]))
        .min()
        .expect("200 arrivals");
    assert!(
        busiest <= 7,
        "{busiest} requests arrived within one second (8 arrivals within {tightest:?})"
    );
    // The limiter is not needlessly slow either: 200 at 7 per 1.05 s is about 29 s.
    assert!(elapsed < Duration::from_secs(40), "took {elapsed:?}");
}

#[tokio::test]
async fn a_429_pauses_the_account_and_consecutive_ones_double_the_pause() {
    let hits = Arc::new(AtomicUsize::new(0));
    let mock = mock({
        let hits = hits.clone();
        move |_| match hits.fetch_add(1, Ordering::SeqCst) {
            0 | 1 => html(
                429,
                "<html><body><h1>429 Too Many Requests</h1></body></html>",
            ),
            _ => account(),
        }
    })
    .await;
    let client = client(&mock.base);

    let first = client.account().await.expect_err("429");
    assert!(matches!(first, Error::RateLimited), "{first:?}");
    assert!(first.is_retryable());
    let second = client.account().await.expect_err("429 again");
    assert!(matches!(second, Error::RateLimited), "{second:?}");
    client.account().await.expect("third try passes");

    let seen = mock.requests();
    assert_eq!(seen.len(), 3);
    let gap1 = seen[1].at.duration_since(seen[0].at);
    let gap2 = seen[2].at.duration_since(seen[1].at);
    assert!(
        gap1 >= Duration::from_secs(1),
        "sent {gap1:?} after the first 429"
    );
    assert!(
        gap2 >= Duration::from_secs(2),
        "sent {gap2:?} after the second 429"
    );
    assert!(
        gap2 < Duration::from_secs(4),
        "pause grew too much: {gap2:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_callers_send_nothing_during_the_cooldown() {
    // Every answer carries its arrival's number (as the account id), so a caller can tell when the
    // server saw the request it made; arrival 5 gets the 429.
    let hits = Arc::new(AtomicUsize::new(0));
    let arrivals = Arc::new(Mutex::new(BTreeMap::new()));
    let mock = mock({
        let hits = hits.clone();
        let arrivals = arrivals.clone();
        move |seen| {
            let hit = hits.fetch_add(1, Ordering::SeqCst);
            arrivals.lock().expect("lock").insert(hit as u64, seen.at);
            if hit == 5 {
                html(429, "<html>Too Many Requests</html>")
            } else {
                json(200, json!({"id": hit, "name": "Acme", "subdomain": "acme"}))
            }
        }
    })
    .await;
    let client = client_with(&mock.base, 50, Duration::from_secs(10));
    // When the caller that got the 429 had its answer: the client had begun the pause by then.
    let learnt = Arc::new(Mutex::new(None));
    let mut tasks = Vec::new();
    for _ in 0..5 {
        let client = client.clone();
        let learnt = learnt.clone();
        tasks.push(tokio::spawn(async move {
            // (when the call began, which arrival it was)
            let mut calls: Vec<(Instant, u64)> = Vec::new();
            while calls.len() < 6 {
                let began = Instant::now();
                match client.account().await {
                    Ok(account) => calls.push((began, account.id)),
                    Err(Error::RateLimited) => {
                        *learnt.lock().expect("lock") = Some(Instant::now());
                    }
                    Err(other) => panic!("unexpected {other:?}"),
                }
            }
            calls
        }));
    }
    let mut calls = Vec::new();
    for task in tasks {
        calls.extend(task.await.expect("task"));
    }
    assert_eq!(mock.requests().len(), 31, "30 successes and one 429");
    let arrivals = arrivals.lock().expect("lock").clone();
    let limited_at = arrivals[&5];
    let learnt = learnt
        .lock()
        .expect("lock")
        .expect("one caller got the 429");
    // The property, with no allowance for timing: a call begun once the 429 was known (by any
    // caller: the pause is the account's) reaches the server only after the whole pause, which
    // began after the 429 left the server. Calls begun earlier may have been let go before the
    // pause and are not judged; how many there are depends on the machine's load.
    let after_learning: Vec<Duration> = calls
        .iter()
        .filter(|(began, _)| *began > learnt)
        .map(|(_, arrival)| arrivals[arrival].duration_since(limited_at))
        .collect();
    assert!(
        !after_learning.is_empty(),
        "the caller that got the 429 carried on after it"
    );
    assert!(
        after_learning.iter().all(|d| *d >= COOLDOWN_INITIAL),
        "calls begun after the 429 was known reached the server at {after_learning:?} after it \
         (the pause is {COOLDOWN_INITIAL:?})"
    );
}
