//! Waiting for a condition with a deadline, instead of sleeping a fixed time and hoping.

use std::time::{Duration, Instant};

/// How often a condition is checked again.
const POLL: Duration = Duration::from_millis(50);

/// Checks `ready` until it returns `Some`, and returns that; panics naming `what` was awaited
/// when `timeout` passes first. For blocking tests.
pub fn wait_until<T>(what: &str, timeout: Duration, mut ready: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = ready() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "waited {timeout:?} for {what}, in vain"
        );
        std::thread::sleep(POLL);
    }
}

/// [`wait_until`] for async tests: `ready` is awaited each time and the pauses yield to the
/// runtime.
pub async fn wait_until_async<T, F>(
    what: &str,
    timeout: Duration,
    mut ready: impl FnMut() -> F,
) -> T
where
    F: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = ready().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "waited {timeout:?} for {what}, in vain"
        );
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_value_once_ready() {
        let mut calls = 0;
        let got = wait_until("the third call", Duration::from_secs(5), || {
            calls += 1;
            (calls == 3).then_some(calls)
        });
        assert_eq!(got, 3);
    }

    #[test]
    #[should_panic(expected = "waited 100ms for something that never happens, in vain")]
    fn fails_naming_what_it_waited_for() {
        wait_until::<()>(
            "something that never happens",
            Duration::from_millis(100),
            || None,
        );
    }

    #[tokio::test]
    async fn the_async_wait_returns_the_value_once_ready() {
        let started = Instant::now();
        let got = wait_until_async("a tenth of a second", Duration::from_secs(5), || async {
            (started.elapsed() >= Duration::from_millis(100)).then_some("ready")
        })
        .await;
        assert_eq!(got, "ready");
    }
}
