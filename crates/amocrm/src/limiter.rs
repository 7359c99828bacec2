//! The per-account rate limiter: a sliding window over the instants requests were let go, and
//! an account-wide pause after a 429.
//!
//! Each request's instant is when its answer began to arrive (see [`Permit`]), so the guarantee
//! holds at the CRM's end too: however a request was delayed on the way, it arrived before the
//! instant it is counted at.
//!
//! Why a sliding window and not a token bucket: amoCRM counts requests per second and answers
//! the excess with 429, and repeated 429s get the account blocked (403) until support lifts it.
//! A bucket with burst N lets N requests out at the end of one second and N more at the start of
//! the next, so 2N can land in one second. The window here keeps the instants of the last N
//! grants and lets a new request go only when the oldest of them is more than a window old, so
//! no window of that length ever holds more than N grants.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::{sleep_until, Instant};

/// The window amoCRM counts in.
pub const RATE_WINDOW: Duration = Duration::from_secs(1);
/// Added to [`RATE_WINDOW`]: a request's place counts from when its answer began to arrive
/// (after the CRM had it), so only clock granularity is left to cover.
pub const RATE_WINDOW_MARGIN: Duration = Duration::from_millis(10);
/// The pause after a first 429; it doubles on each further 429 in a row.
pub const COOLDOWN_INITIAL: Duration = Duration::from_secs(1);
/// The longest pause after repeated 429s.
pub const COOLDOWN_MAX: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
struct Pause {
    /// No request is let go before this instant.
    until: Option<Instant>,
    /// When the latest pause began; a 429 for a request let go before then belongs to the same
    /// burst and must not lengthen the pause again.
    started: Option<Instant>,
    /// 429s in a row with no successful request in between.
    streak: u32,
}

#[derive(Debug, Default)]
struct Slots {
    next_id: u64,
    /// Requests let go and still counting: in flight, or finished less than a window ago.
    slots: VecDeque<Slot>,
}

#[derive(Debug)]
struct Slot {
    id: u64,
    /// When it was let go, replaced by when its answer began to arrive.
    at: Instant,
    done: bool,
}

#[derive(Debug)]
pub(crate) struct RateLimiter {
    /// Requests per window; only ever lowered (see [`AccountLimiter::limit_to`]).
    max: AtomicUsize,
    window: Duration,
    /// Whose turn it is. The tokio mutex is fair (FIFO), so waiting requests go in the order
    /// they asked, and the one holding it sleeps with it held: the queue cannot jump ahead.
    turn: tokio::sync::Mutex<()>,
    /// The counted requests; a std mutex held only briefly, so a finishing request can record
    /// its end while the next one waits for its turn.
    slots: Mutex<Slots>,
    /// Kept apart (and only ever held briefly, never across an await) so a 429 can start a
    /// pause while a request is asleep in the queue; that request checks the pause again right
    /// before it goes.
    pause: Mutex<Pause>,
}

/// A request's place in the window. Dropping it (when the answer's head has arrived, or the
/// request failed or was cancelled) moves its instant to that moment: the request certainly
/// reached the CRM before then, so counting a window from there holds however long it was
/// delayed on the way, which a count from the moment it was let go cannot promise.
pub(crate) struct Permit<'a> {
    limiter: &'a RateLimiter,
    id: u64,
    /// When the request was let go.
    pub(crate) at: Instant,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let now = Instant::now();
        let mut slots = self.limiter.slots();
        if let Some(slot) = slots.slots.iter_mut().find(|s| s.id == self.id) {
            slot.at = now;
            slot.done = true;
        }
    }
}

impl RateLimiter {
    pub(crate) fn new(max_per_window: u32, window: Duration) -> Self {
        let max = (max_per_window as usize).max(1);
        RateLimiter {
            max: AtomicUsize::new(max),
            window,
            turn: tokio::sync::Mutex::new(()),
            slots: Mutex::new(Slots::default()),
            pause: Mutex::new(Pause::default()),
        }
    }

    fn pause(&self) -> MutexGuard<'_, Pause> {
        // The guarded data is plain values that are always whole; a panic elsewhere while the
        // lock was held cannot leave them half-written, so a poisoned lock is still usable.
        self.pause.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn slots(&self) -> MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for a turn; the permit holds the request's place in the window until dropped.
    pub(crate) async fn acquire(&self) -> Permit<'_> {
        let _turn = self.turn.lock().await;
        loop {
            match self.try_grant(0) {
                Ok(permit) => return permit,
                Err(at) => sleep_until(at).await,
            }
        }
    }

    /// Like [`RateLimiter::acquire`], for work that can wait: it goes only while more than
    /// `reserve` of the window's places are free, so that many stay for other requests. It does
    /// not keep the queue while it waits, so those requests pass it.
    pub(crate) async fn acquire_leaving(&self, reserve: usize) -> Permit<'_> {
        if reserve == 0 {
            return self.acquire().await;
        }
        loop {
            let retry_at = {
                let _turn = self.turn.lock().await;
                match self.try_grant(reserve) {
                    Ok(permit) => return permit,
                    Err(at) => at,
                }
            };
            sleep_until(retry_at).await;
        }
    }

    /// Waits until a request could go at once (the account is not paused and a place is free),
    /// without taking the place: a caller can then gather what to send while it waited.
    pub(crate) async fn wait_for_place(&self) {
        loop {
            let at = {
                let _turn = self.turn.lock().await;
                match self.free_at(0) {
                    None => return,
                    Some(at) => at,
                }
            };
            sleep_until(at).await;
        }
    }

    /// `None` when a request leaving `reserve` places could go now; else the instant to look
    /// again.
    fn free_at(&self, reserve: usize) -> Option<Instant> {
        let max = self.max.load(Ordering::Relaxed);
        let now = Instant::now();
        if let Some(until) = self.pause().until.filter(|until| *until > now) {
            return Some(until);
        }
        let mut slots = self.slots();
        let window = self.window;
        slots
            .slots
            .retain(|s| !(s.done && now.duration_since(s.at) >= window));
        if slots.slots.len() + reserve.min(max - 1) < max {
            return None;
        }
        // The place the waiter needs frees when enough finished requests leave the window.
        let mut ends: Vec<Instant> = slots
            .slots
            .iter()
            .filter(|s| s.done)
            .map(|s| s.at + window)
            .collect();
        ends.sort_unstable();
        let needed = slots.slots.len() + reserve.min(max - 1) + 1 - max;
        // Every counted request still in flight (or not enough finished): look again shortly.
        Some(
            ends.get(needed - 1)
                .copied()
                .unwrap_or(now + Duration::from_millis(5)),
        )
    }

    /// A permit, when the account is not paused and more than `reserve` places are free; else
    /// the instant to look again.
    fn try_grant(&self, reserve: usize) -> Result<Permit<'_>, Instant> {
        if let Some(at) = self.free_at(reserve) {
            return Err(at);
        }
        let now = Instant::now();
        let mut slots = self.slots();
        let id = slots.next_id;
        slots.next_id += 1;
        slots.slots.push_back(Slot {
            id,
            at: now,
            done: false,
        });
        Ok(Permit {
            limiter: self,
            id,
            at: now,
        })
    }

    /// A request let go at `granted_at` got a 429: pause the account. Returns the pause begun,
    /// or `None` when the request belonged to a burst already being paused for.
    pub(crate) fn on_rate_limited(&self, granted_at: Instant) -> Option<Duration> {
        let mut pause = self.pause();
        if pause.started.is_some_and(|started| granted_at < started) {
            return None;
        }
        pause.streak = pause.streak.saturating_add(1);
        // 1 s, 2 s, 4 s, ... capped; the shift is bounded so it cannot overflow.
        let factor = 1u32 << pause.streak.saturating_sub(1).min(16);
        let cooldown = COOLDOWN_INITIAL.saturating_mul(factor).min(COOLDOWN_MAX);
        let now = Instant::now();
        pause.until = Some(now + cooldown);
        pause.started = Some(now);
        Some(cooldown)
    }

    /// A request let go at `granted_at` got through the CRM's gateway (any answer but 429): the
    /// run of 429s is over, unless the request predates the latest pause.
    pub(crate) fn on_passed(&self, granted_at: Instant) {
        let mut pause = self.pause();
        if pause.started.is_none_or(|started| granted_at >= started) {
            pause.streak = 0;
        }
    }
}

/// One CRM account's limiter, to share between the clients of every tenant connected to that
/// account ([`AmoClient::with_shared`](crate::AmoClient::with_shared)): amoCRM counts requests
/// per account, whoever sends them, so two tenants on one account with a limiter each would send
/// twice the account's limit. Cheap to clone; clones are the same limiter.
#[derive(Debug, Clone)]
pub struct AccountLimiter(pub(crate) Arc<RateLimiter>);

impl AccountLimiter {
    /// A limiter letting `requests_per_second` (at least 1) requests go in any second.
    pub fn new(requests_per_second: u32) -> Self {
        AccountLimiter(Arc::new(RateLimiter::new(
            requests_per_second,
            RATE_WINDOW + RATE_WINDOW_MARGIN,
        )))
    }

    /// Requests it lets go in any second.
    pub fn requests_per_second(&self) -> u32 {
        self.0.max.load(Ordering::Relaxed) as u32
    }

    /// Lowers the limit to `requests_per_second` if that is lower (never raises it): tenants of
    /// one account may ask for different rates, and the account gets the most careful one.
    pub fn limit_to(&self, requests_per_second: u32) {
        self.0
            .max
            .fetch_min((requests_per_second as usize).max(1), Ordering::Relaxed);
    }

    /// How many handles of this limiter exist (clients and the caller's own), so a registry can
    /// drop limiters nobody uses any more.
    pub fn handles(&self) -> usize {
        Arc::strong_count(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    const WINDOW: Duration = Duration::from_millis(1050);

    /// Largest number of instants inside any half-open window `[t, t + window)`.
    fn max_in_window(instants: &[Instant], window: Duration) -> usize {
        let mut sorted = instants.to_vec();
        sorted.sort();
        let mut best = 0;
        let mut lo = 0;
        for hi in 0..sorted.len() {
            while sorted[hi].duration_since(sorted[lo]) >= window {
                lo += 1;
            }
            best = best.max(hi - lo + 1);
        }
        best
    }

    #[tokio::test(start_paused = true)]
    async fn never_more_than_n_in_any_window_and_fifo() {
        let limiter = Arc::new(RateLimiter::new(7, WINDOW));
        let start = Instant::now();
        let mut handles = Vec::new();
        for i in 0..30 {
            let limiter = limiter.clone();
            handles.push(tokio::spawn(async move { (i, limiter.acquire().await.at) }));
            // Let task i reach the queue before task i + 1 is spawned, so the arrival order is
            // known.
            tokio::task::yield_now().await;
        }
        let mut grants = Vec::new();
        for handle in handles {
            grants.push(handle.await.expect("task"));
        }
        let instants: Vec<Instant> = grants.iter().map(|(_, at)| *at).collect();
        assert_eq!(max_in_window(&instants, WINDOW), 7);
        // FIFO: grants come in the order the tasks asked.
        for pair in grants.windows(2) {
            assert!(
                pair[0].1 <= pair[1].1,
                "task {} overtook {}",
                pair[1].0,
                pair[0].0
            );
        }
        // And no slower than needed: 30 grants of 7 per window need exactly 4 more windows.
        let last = instants.iter().max().copied().expect("grants");
        assert_eq!(last.duration_since(start), WINDOW * 4);
    }

    #[tokio::test(start_paused = true)]
    async fn background_work_leaves_places_and_lets_others_pass() {
        let limiter = Arc::new(RateLimiter::new(7, WINDOW));
        let start = Instant::now();
        // Background requests with a reserve of 2: five go at once, the sixth waits.
        let mut background = Vec::new();
        for _ in 0..6 {
            let limiter = limiter.clone();
            background.push(tokio::spawn(
                async move { limiter.acquire_leaving(2).await.at },
            ));
            tokio::task::yield_now().await;
        }
        tokio::task::yield_now().await;
        // Two ordinary requests asked after them still go at once: the reserve was theirs.
        let urgent_a = limiter.acquire().await.at;
        let urgent_b = limiter.acquire().await.at;
        assert_eq!(urgent_a, start);
        assert_eq!(urgent_b, start);
        let mut grants = Vec::new();
        for handle in background {
            grants.push(handle.await.expect("task"));
        }
        grants.sort();
        assert!(grants[..5].iter().all(|at| *at == start), "{grants:?}");
        // The sixth waits until three places are free again (7 taken, 2 kept): one window.
        assert_eq!(grants[5].duration_since(start), WINDOW);
        let mut all = grants.clone();
        all.extend([urgent_a, urgent_b]);
        assert_eq!(max_in_window(&all, WINDOW), 7);
        // A reserve as large as the window still lets work through, one at a time.
        let lone = RateLimiter::new(3, WINDOW);
        let at = lone.acquire_leaving(10).await.at;
        assert_eq!(at, Instant::now());
    }

    #[tokio::test(start_paused = true)]
    async fn a_shared_limiter_is_only_ever_lowered() {
        let shared = AccountLimiter::new(7);
        shared.limit_to(3);
        shared.limit_to(5);
        assert_eq!(shared.requests_per_second(), 3);
        shared.limit_to(0);
        assert_eq!(shared.requests_per_second(), 1, "never below one");
        let start = Instant::now();
        let a = shared.0.acquire().await.at;
        let b = shared.0.acquire().await.at;
        assert_eq!(a, start);
        assert!(b.duration_since(start) >= RATE_WINDOW, "{:?}", b - start);
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_for_a_place_takes_none() {
        let limiter = RateLimiter::new(3, WINDOW);
        let start = Instant::now();
        for _ in 0..3 {
            drop(limiter.acquire().await);
        }
        limiter.wait_for_place().await;
        assert_eq!(
            Instant::now().duration_since(start),
            WINDOW,
            "waits for the window"
        );
        // The place is still free: a request goes at once, and so do the other two.
        for _ in 0..3 {
            assert_eq!(limiter.acquire().await.at, start + WINDOW);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn cooldown_doubles_caps_and_resets() {
        let limiter = RateLimiter::new(100, WINDOW);
        let mut expected = vec![1u64, 2, 4, 8, 16, 30, 30];
        let mut last_grant = limiter.acquire().await.at;
        for secs in expected.drain(..) {
            let cooldown = limiter.on_rate_limited(last_grant).expect("a new pause");
            assert_eq!(cooldown, Duration::from_secs(secs));
            let before = Instant::now();
            last_grant = limiter.acquire().await.at;
            assert_eq!(last_grant.duration_since(before), Duration::from_secs(secs));
        }
        limiter.on_passed(last_grant);
        let granted = limiter.acquire().await.at;
        assert_eq!(
            limiter.on_rate_limited(granted),
            Some(COOLDOWN_INITIAL),
            "a success ends the run of 429s"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_429s_pauses_once() {
        let limiter = RateLimiter::new(100, WINDOW);
        let a = limiter.acquire().await.at;
        let b = limiter.acquire().await.at;
        tokio::time::advance(Duration::from_millis(10)).await;
        assert_eq!(limiter.on_rate_limited(a), Some(COOLDOWN_INITIAL));
        // b was already on its way when the pause began: its 429 is the same event.
        assert_eq!(limiter.on_rate_limited(b), None);
        // Nor does its late success cut a later run short.
        limiter.on_passed(b);
        let c = limiter.acquire().await.at;
        assert_eq!(limiter.on_rate_limited(c), Some(Duration::from_secs(2)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_back_a_request_already_waiting_for_the_window() {
        let limiter = Arc::new(RateLimiter::new(1, WINDOW));
        let first = limiter.acquire().await.at;
        let waiting = {
            let limiter = limiter.clone();
            tokio::spawn(async move { limiter.acquire().await.at })
        };
        tokio::time::advance(Duration::from_millis(100)).await;
        // The 429 for `first` arrives while the second request sleeps in the queue.
        assert_eq!(limiter.on_rate_limited(first), Some(COOLDOWN_INITIAL));
        let second = waiting.await.expect("task");
        assert!(second.duration_since(first) >= Duration::from_millis(1100));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_request_counts_from_when_its_answer_arrived() {
        let limiter = RateLimiter::new(2, Duration::from_millis(1000));
        let start = Instant::now();
        let slow = limiter.acquire().await;
        let quick = limiter.acquire().await;
        drop(quick);
        // The slow one is still on its way after three seconds: it still holds its place, so
        // only the quick one's place is free again.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let third = limiter.acquire().await;
        drop(third);
        let waiting = tokio::time::timeout(Duration::from_millis(1), limiter.acquire()).await;
        assert!(waiting.is_err(), "a request went while two were counted");
        drop(slow);
        let fourth = limiter.acquire().await;
        // A whole window from the slow answer, not from when the slow one left.
        let waited = fourth.at.duration_since(start);
        assert!(waited >= Duration::from_secs(4), "{waited:?}");
    }
}
