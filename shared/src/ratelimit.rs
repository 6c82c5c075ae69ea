//! One rate limiter per container for an API that announces its limit (ServiceNow: `X-RateLimit-Limit`
//! requests per window ending at `X-RateLimit-Reset`, `429` with `Retry-After` beyond it).
//!
//! Every worker of the container asks it before a request, so they share the budget instead of each
//! honouring a `Retry-After` alone and returning together: after a 429 every worker waits until the reset,
//! and within a window requests are spread evenly over the time left, at the announced rate.

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use crate::retry::RETRY_AFTER_CAP;

#[derive(Debug, Default)]
struct State {
    /// No request before this (a 429's `Retry-After`).
    blocked_until: Option<Instant>,
    /// The announced window: its end and its limit.
    window: Option<(Instant, u32)>,
    /// Requests this container started in the current window.
    sent: u32,
    /// The earliest time the next paced request may start.
    next_slot: Option<Instant>,
}

/// When a request may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Turn {
    /// Its slot, reserved: go after this wait.
    At(Duration),
    /// No slot yet: ask again after this wait.
    AskAgainAfter(Duration),
}

#[derive(Debug)]
pub struct RateLimiter {
    state: Mutex<State>,
    /// A longer wait is not taken here: the caller is told, and decides (retry later, give the work back).
    max_wait: Duration,
    /// How many containers share the announced limit: each paces to its share.
    share: u32,
}

/// What a response said about the limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Announced {
    pub throttled: bool,
    /// `Retry-After` of a 429.
    pub retry_after: Option<Duration>,
    /// `X-RateLimit-Limit`.
    pub limit: Option<u32>,
    /// `X-RateLimit-Reset` (Unix seconds).
    pub reset_unix: Option<u64>,
}

impl RateLimiter {
    /// `share`: how many containers (each with its own limiter) share the announced limit.
    pub fn new(max_wait: Duration, share: u32) -> Self {
        Self {
            state: Mutex::new(State::default()),
            max_wait,
            share: share.max(1),
        }
    }

    /// Waits for this request's turn. `Err(wait)`: its turn is further away than the limiter's maximum wait
    /// (nothing was reserved; try again after `wait`).
    pub async fn acquire(&self) -> Result<(), Duration> {
        loop {
            match self.reserve(Instant::now())? {
                Turn::At(wait) => {
                    if !wait.is_zero() {
                        tokio::time::sleep(wait).await;
                    }
                    return Ok(());
                }
                Turn::AskAgainAfter(wait) => tokio::time::sleep(wait).await,
            }
        }
    }

    /// This request's turn at `now`: a reserved slot, or a wait before asking again (blocked, or the window's
    /// budget spent).
    fn reserve(&self, now: Instant) -> Result<Turn, Duration> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(until) = s.blocked_until {
            if until > now {
                let wait = until - now;
                return self.within_max(wait).map(|_| Turn::AskAgainAfter(wait));
            }
            s.blocked_until = None;
        }
        let Some((end, limit)) = s.window.filter(|(end, _)| *end > now) else {
            // No window announced (or it ended): nothing to pace by until a response announces one.
            if s.window.is_some() {
                s.window = None;
                s.sent = 0;
                s.next_slot = None;
            }
            return Ok(Turn::At(Duration::ZERO));
        };
        let remaining = limit.saturating_sub(s.sent);
        let slot = s.next_slot.map_or(now, |n| n.max(now));
        if remaining == 0 || slot >= end {
            let wait = end - now;
            return self.within_max(wait).map(|_| Turn::AskAgainAfter(wait));
        }
        self.within_max(slot - now)?;
        // What is left of the budget, spread evenly over what is left of the window.
        s.next_slot = Some(slot + (end - slot) / remaining);
        s.sent += 1;
        Ok(Turn::At(slot - now))
    }

    fn within_max(&self, wait: Duration) -> Result<(), Duration> {
        match wait > self.max_wait {
            true => Err(wait),
            false => Ok(()),
        }
    }

    /// Learns from a response: the announced window, and a 429 holds every worker until its reset.
    pub fn observe(&self, announced: Announced) {
        self.observe_at(announced, Instant::now(), SystemTime::now())
    }

    fn observe_at(&self, a: Announced, now: Instant, wall: SystemTime) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now_unix = wall
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        // A reset or a wait beyond a day is taken as a day: `u64::MAX` would overflow the clock.
        let reset = a.reset_unix.map(|r| {
            let left = (r as f64 - now_unix).clamp(0.0, RETRY_AFTER_CAP.as_secs_f64());
            now + Duration::from_secs_f64(left)
        });
        let share = self.share;
        if let (Some(limit), Some(end)) = (a.limit.map(|l| l / share).filter(|l| *l > 0), reset) {
            let same_window = s
                .window
                // Reset is announced in whole seconds, computed per response.
                .is_some_and(|(known, _)| {
                    known.max(end) - known.min(end) <= Duration::from_secs(2)
                });
            if !same_window {
                // A new window: the budget starts again (requests already paced keep their slots).
                s.window = Some((end, limit));
                s.sent = 0;
            }
        }
        if a.throttled {
            // The later of the two: a Retry-After in whole seconds can be rounded down.
            let until = match (a.retry_after.map(|d| now + d.min(RETRY_AFTER_CAP)), reset) {
                (Some(r), Some(w)) => Some(r.max(w)),
                (r, w) => r.or(w),
            };
            if let Some(until) = until {
                s.blocked_until = Some(s.blocked_until.map_or(until, |b| b.max(until)));
                // Paced slots resume after the block.
                s.next_slot = Some(s.next_slot.map_or(until, |n| n.max(until)));
            }
            if let Some((end, limit)) = s.window {
                // The instance counts requests this container does not see (other containers): the
                // window's budget is spent.
                if until.is_none_or(|u| u <= end) {
                    s.sent = limit;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(limit: u32, reset_in: u64, wall: SystemTime) -> Announced {
        let now = wall.duration_since(UNIX_EPOCH).unwrap().as_secs();
        Announced {
            limit: Some(limit),
            reset_unix: Some(now + reset_in),
            ..Announced::default()
        }
    }

    #[test]
    fn absurd_resets_and_waits_are_capped_not_a_panic() {
        let l = RateLimiter::new(Duration::from_secs(5), 1);
        let (now, wall) = (Instant::now(), SystemTime::now());
        l.observe_at(
            Announced {
                throttled: true,
                retry_after: Some(Duration::from_secs(u64::MAX)),
                limit: Some(100),
                reset_unix: Some(u64::MAX),
            },
            now,
            wall,
        );
        assert_eq!(
            l.reserve(now),
            Err(RETRY_AFTER_CAP),
            "held for the cap, a day: longer than a worker waits"
        );
    }

    #[test]
    fn without_an_announced_limit_nothing_waits() {
        let l = RateLimiter::new(Duration::from_secs(5), 1);
        let now = Instant::now();
        for _ in 0..100 {
            assert_eq!(l.reserve(now), Ok(Turn::At(Duration::ZERO)));
        }
    }

    #[test]
    fn requests_are_spread_evenly_over_the_window_at_the_announced_rate() {
        let l = RateLimiter::new(Duration::from_secs(60), 1);
        let (now, wall) = (Instant::now(), SystemTime::now());
        l.observe_at(window(10, 10, wall), now, wall);
        let waits: Vec<Duration> = (0..10).map(|_| slot(l.reserve(now))).collect();
        // About one a second (the window's end is known to the second).
        for (i, w) in waits.iter().enumerate() {
            let want = i as f64 * waits[1].as_secs_f64();
            assert!((w.as_secs_f64() - want).abs() < 0.01, "{waits:?}");
        }
        assert!(waits[1] > Duration::from_millis(900) && waits[1] <= Duration::from_secs(1));
        // The budget is spent: the next waits for the window's end.
        let next = l.reserve(now);
        assert!(
            matches!(next, Ok(Turn::AskAgainAfter(d)) if d >= Duration::from_secs(9)),
            "{next:?}"
        );
    }

    #[test]
    fn a_429_holds_every_worker_until_its_retry_after() {
        let l = RateLimiter::new(Duration::from_secs(60), 1);
        let (now, wall) = (Instant::now(), SystemTime::now());
        l.observe_at(
            Announced {
                throttled: true,
                retry_after: Some(Duration::from_secs(7)),
                ..Announced::default()
            },
            now,
            wall,
        );
        for _ in 0..5 {
            assert_eq!(
                l.reserve(now),
                Ok(Turn::AskAgainAfter(Duration::from_secs(7)))
            );
        }
        assert_eq!(
            l.reserve(now + Duration::from_secs(8)),
            Ok(Turn::At(Duration::ZERO)),
            "released after it"
        );
    }

    #[test]
    fn a_wait_longer_than_the_maximum_is_handed_back_without_reserving() {
        let l = RateLimiter::new(Duration::from_secs(5), 1);
        let (now, wall) = (Instant::now(), SystemTime::now());
        l.observe_at(
            Announced {
                throttled: true,
                retry_after: Some(Duration::from_secs(3600)),
                ..window(100, 3600, wall)
            },
            now,
            wall,
        );
        assert_eq!(l.reserve(now), Err(Duration::from_secs(3600)));
        assert_eq!(l.reserve(now), Err(Duration::from_secs(3600)));
    }

    #[test]
    fn a_new_window_restores_the_budget_and_a_429_inside_one_spends_it() {
        let l = RateLimiter::new(Duration::from_secs(60), 1);
        let (now, wall) = (Instant::now(), SystemTime::now());
        l.observe_at(window(2, 10, wall), now, wall);
        slot(l.reserve(now));
        slot(l.reserve(now));
        assert!(
            matches!(l.reserve(now), Ok(Turn::AskAgainAfter(d)) if d >= Duration::from_secs(9))
        );
        let later = now + Duration::from_secs(11);
        let wall_later = wall + Duration::from_secs(11);
        l.observe_at(window(2, 10, wall_later), later, wall_later);
        assert_eq!(slot(l.reserve(later)), Duration::ZERO, "a fresh budget");
        // Another container spent the rest: a 429 without Retry-After waits for the reset.
        l.observe_at(
            Announced {
                throttled: true,
                ..window(2, 10, wall_later)
            },
            later,
            wall_later,
        );
        assert!(
            matches!(l.reserve(later), Ok(Turn::AskAgainAfter(d)) if d >= Duration::from_secs(9))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_workers_share_one_budget() {
        let l = std::sync::Arc::new(RateLimiter::new(Duration::from_secs(60), 1));
        l.observe(window(5, 5, SystemTime::now()));
        let start = Instant::now();
        let workers = (0..5).map(|_| {
            let l = l.clone();
            tokio::spawn(async move {
                l.acquire().await.unwrap();
                Instant::now() - start
            })
        });
        let mut at: Vec<Duration> = futures_join(workers).await;
        at.sort();
        // One a second, not five at once.
        for pair in at.windows(2) {
            assert!(pair[1] - pair[0] >= Duration::from_millis(700), "{at:?}");
        }
    }

    #[test]
    fn containers_sharing_a_limit_each_pace_to_their_share() {
        let l = RateLimiter::new(Duration::from_secs(60), 5);
        let (now, wall) = (Instant::now(), SystemTime::now());
        l.observe_at(window(50, 10, wall), now, wall);
        let second = slot(l.reserve(now)).max(slot(l.reserve(now)));
        // 10 of the 50 per window: one every second, not every 200 ms.
        assert!(second > Duration::from_millis(900), "{second:?}");
    }

    async fn futures_join(
        handles: impl Iterator<Item = tokio::task::JoinHandle<Duration>>,
    ) -> Vec<Duration> {
        let mut out = Vec::new();
        for h in handles {
            out.push(h.await.unwrap());
        }
        out
    }

    fn slot(turn: Result<Turn, Duration>) -> Duration {
        match turn {
            Ok(Turn::At(d)) => d,
            other => panic!("expected a slot, got {other:?}"),
        }
    }
}
