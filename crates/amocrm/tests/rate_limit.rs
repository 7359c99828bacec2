//! The per-account limiter against a real HTTP server: what the server sees.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use callbridge_amocrm::Error;
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
    let hits = Arc::new(AtomicUsize::new(0));
    let limited = Arc::new(Mutex::new(None));
    let mock = mock({
        let hits = hits.clone();
        let limited = limited.clone();
        move |seen| {
            if hits.fetch_add(1, Ordering::SeqCst) == 5 {
                *limited.lock().expect("lock") = Some(seen.at);
                html(429, "<html>Too Many Requests</html>")
            } else {
                account()
            }
        }
    })
    .await;
    let client = client_with(&mock.base, 50, Duration::from_secs(10));
    let mut tasks = Vec::new();
    for _ in 0..5 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut done = 0;
            while done < 6 {
                match client.account().await {
                    Ok(_) => done += 1,
                    Err(Error::RateLimited) => {}
                    Err(other) => panic!("unexpected {other:?}"),
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    let seen = mock.requests();
    assert_eq!(seen.len(), 31, "30 successes and one 429");
    let limited_at = limited
        .lock()
        .expect("lock")
        .expect("one request got the 429");
    // Requests let go before the 429 came back may still land after it: one per other caller on
    // its way, plus what those callers started while the 429's answer was travelling (a loaded
    // machine stretches that). Nothing else until the 1 s pause is over: without the pause, at
    // 50/s, ~40 would land in that second.
    let in_cooldown: Vec<Duration> = seen
        .iter()
        .filter(|s| s.at > limited_at)
        .map(|s| s.at.duration_since(limited_at))
        .filter(|d| *d < Duration::from_secs(1))
        .collect();
    assert!(
        in_cooldown.len() < 10,
        "sent during the cool-down at {in_cooldown:?}"
    );
    let after = seen
        .iter()
        .filter(|s| s.at.duration_since(limited_at) >= Duration::from_secs(1))
        .count();
    assert!(
        after >= 20,
        "work resumed after the pause ({after} requests)"
    );
}
