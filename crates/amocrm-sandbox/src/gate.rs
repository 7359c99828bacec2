//! The gate every `/api` and `/oauth2` request passes first: the account's block, the sliding
//! rate-limit window, statistics and injected faults. Pure bookkeeping under a mutex; the caller
//! does the waiting.

use crate::{Faults, Stats};
use std::collections::VecDeque;
use std::time::Duration;
use tokio::time::Instant;

const WINDOW: Duration = Duration::from_millis(1000);
const VIOLATION_WINDOW: Duration = Duration::from_secs(60);

/// What to do with one arriving request.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The account is blocked: 403 with an HTML body.
    Blocked,
    /// Over the limit: 429 with an HTML body.
    RateLimited,
    /// Let it through after `latency`, unless `fault` says otherwise.
    Pass {
        latency: Duration,
        fault: Option<Fault>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Hold the request until the client gives up (or the sandbox stops).
    Hang,
    /// Carry the request out, then hold its answer until the client gives up: a write that
    /// happened but whose answer was lost.
    LoseAnswer,
    /// Answer this status instead of handling the request.
    Status(u16),
    /// A random 503, with a JSON body when `json` is set and an HTML one otherwise.
    Unavailable { json: bool },
}

/// A small deterministic generator (SplitMix64), so an error rate gives the same sequence of
/// failures on every run with the same traffic.
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    pub fn new(seed: u64) -> Self {
        SplitMix(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A float in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

pub struct Gate {
    pub rps: u32,
    pub block_after: u32,
    arrivals: VecDeque<Instant>,
    violations: VecDeque<Instant>,
    pub stats: Stats,
    pub faults: Faults,
    /// How many of the next API requests are carried out with their answer lost.
    pub lose_answers: u32,
    rng: SplitMix,
}

impl Gate {
    pub fn new(rps: u32, block_after: u32, faults: Faults) -> Self {
        Gate {
            rps,
            block_after,
            arrivals: VecDeque::new(),
            violations: VecDeque::new(),
            stats: Stats::default(),
            faults,
            lose_answers: 0,
            rng: SplitMix::new(0x5EED_CA11_B41D_6E00),
        }
    }

    /// Records one arrival at `now` on `route` and decides its fate.
    pub fn admit(&mut self, route: &str, now: Instant) -> Verdict {
        self.stats.requests += 1;
        *self.stats.by_route.entry(route.to_owned()).or_insert(0) += 1;

        // Every arrival counts in the window, rejected ones too: a client that keeps hammering
        // after a 429 stays over the limit, as it would against the real gateway.
        while let Some(&first) = self.arrivals.front() {
            if now.duration_since(first) >= WINDOW {
                self.arrivals.pop_front();
            } else {
                break;
            }
        }
        self.arrivals.push_back(now);
        let in_window = u32::try_from(self.arrivals.len()).unwrap_or(u32::MAX);
        self.stats.max_requests_in_any_second =
            self.stats.max_requests_in_any_second.max(in_window);

        if self.stats.blocked {
            return Verdict::Blocked;
        }
        if in_window > self.rps {
            self.stats.rate_limited += 1;
            while let Some(&first) = self.violations.front() {
                if now.duration_since(first) >= VIOLATION_WINDOW {
                    self.violations.pop_front();
                } else {
                    break;
                }
            }
            self.violations.push_back(now);
            if self.block_after > 0 && self.violations.len() >= self.block_after as usize {
                self.stats.blocked = true;
                tracing::warn!(
                    violations = self.violations.len(),
                    "amoCRM sandbox: account blocked after repeated rate-limit violations"
                );
            }
            return Verdict::RateLimited;
        }

        let latency = Duration::from_millis(self.faults.latency_ms);
        let fault = if self.faults.hang_next > 0 {
            self.faults.hang_next -= 1;
            Some(Fault::Hang)
        } else if self.lose_answers > 0 {
            self.lose_answers -= 1;
            Some(Fault::LoseAnswer)
        } else if !self.faults.fail_next.is_empty() {
            // An injected 429 is not the limiter's: `rate_limited` stays a measure of the client.
            Some(Fault::Status(self.faults.fail_next.remove(0)))
        } else if self.faults.error_rate > 0.0 && self.rng.next_f64() < self.faults.error_rate {
            Some(Fault::Unavailable {
                json: self.rng.next_u64() & 1 == 0,
            })
        } else {
            None
        };
        Verdict::Pass { latency, fault }
    }

    /// Lifts a block and forgets past violations and arrivals: a fresh start.
    pub fn unblock(&mut self) {
        self.stats.blocked = false;
        self.violations.clear();
        self.arrivals.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_slides_and_blocks_after_violations() {
        let mut gate = Gate::new(2, 3, Faults::default());
        let t0 = Instant::now();
        assert!(matches!(gate.admit("r", t0), Verdict::Pass { .. }));
        assert!(matches!(gate.admit("r", t0), Verdict::Pass { .. }));
        assert_eq!(gate.admit("r", t0), Verdict::RateLimited);
        // One second later the window is empty again.
        let t1 = t0 + Duration::from_millis(1000);
        assert!(matches!(gate.admit("r", t1), Verdict::Pass { .. }));
        assert!(matches!(gate.admit("r", t1), Verdict::Pass { .. }));
        assert_eq!(gate.admit("r", t1), Verdict::RateLimited);
        assert_eq!(gate.admit("r", t1), Verdict::RateLimited);
        assert!(gate.stats.blocked);
        let t2 = t1 + Duration::from_secs(5);
        assert_eq!(gate.admit("r", t2), Verdict::Blocked);
        assert_eq!(gate.stats.rate_limited, 3);
        assert_eq!(gate.stats.max_requests_in_any_second, 4);
        assert_eq!(gate.stats.requests, 8);
        assert_eq!(gate.stats.by_route.get("r"), Some(&8));
        gate.unblock();
        assert!(matches!(gate.admit("r", t2), Verdict::Pass { .. }));
    }

    #[test]
    fn violations_older_than_a_minute_are_forgotten() {
        let mut gate = Gate::new(1, 2, Faults::default());
        let t0 = Instant::now();
        gate.admit("r", t0);
        assert_eq!(gate.admit("r", t0), Verdict::RateLimited);
        let t1 = t0 + Duration::from_secs(61);
        gate.admit("r", t1);
        assert_eq!(gate.admit("r", t1), Verdict::RateLimited);
        assert!(!gate.stats.blocked);
    }

    #[test]
    fn faults_are_applied_in_order() {
        let faults = Faults {
            latency_ms: 5,
            error_rate: 0.0,
            fail_next: vec![500, 429],
            hang_next: 1,
        };
        let mut gate = Gate::new(100, 0, faults);
        let now = Instant::now();
        let fault = |v: Verdict| match v {
            Verdict::Pass { fault, latency } => {
                assert_eq!(latency, Duration::from_millis(5));
                fault
            }
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(fault(gate.admit("r", now)), Some(Fault::Hang));
        assert_eq!(fault(gate.admit("r", now)), Some(Fault::Status(500)));
        assert_eq!(fault(gate.admit("r", now)), Some(Fault::Status(429)));
        assert_eq!(fault(gate.admit("r", now)), None);
        assert_eq!(gate.stats.rate_limited, 0);
    }

    #[test]
    fn error_rate_is_deterministic_and_roughly_right() {
        let run = || {
            let mut gate = Gate::new(
                u32::MAX,
                0,
                Faults {
                    error_rate: 0.25,
                    ..Faults::default()
                },
            );
            let now = Instant::now();
            (0..1000)
                .map(|_| matches!(gate.admit("r", now), Verdict::Pass { fault: Some(_), .. }))
                .collect::<Vec<_>>()
        };
        let a = run();
        assert_eq!(a, run());
        let failures = a.iter().filter(|f| **f).count();
        assert!(
            (150..350).contains(&failures),
            "{failures} failures of 1000"
        );
    }
}
