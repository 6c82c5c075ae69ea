//! The one retry engine: exponential backoff with full jitter, `Retry-After` honoured, every attempt bounded
//! by the invocation's deadline.

use std::future::Future;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use rand::Rng;

use crate::failure::FailureClass;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, including the first.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Longest `Retry-After` honoured inside one invocation; longer waits give the message back to the queue.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The capped exponential ceiling for retry number `retry` (0-based).
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.min(20));
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }

    /// Full jitter: uniform in `[0, ceiling]`.
    pub fn backoff(&self, retry: u32) -> Duration {
        let ceiling = self.ceiling(retry).as_millis() as u64;
        Duration::from_millis(rand::rng().random_range(0..=ceiling))
    }

    /// The wait before the next attempt: the server's `Retry-After` when given (plus a little jitter so
    /// concurrent workers do not return together), else full-jitter backoff.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        match retry_after {
            Some(server) => {
                let spread = (self.base_delay.as_millis() as u64).max(1);
                server + Duration::from_millis(rand::rng().random_range(0..=spread))
            }
            None => self.backoff(retry),
        }
    }
}

/// A failure the retry engine can classify.
pub trait Retryable: Sized {
    fn class(&self) -> FailureClass;
    /// The wait the server asked for (`Retry-After`, a rate-limit reset), if any.
    fn retry_after(&self) -> Option<Duration> {
        None
    }
    /// Whether the failed attempt may still have taken effect (a timeout after the commit, a 5xx, a dropped
    /// connection): the next attempt must look before writing again.
    fn ambiguous(&self) -> bool {
        false
    }
    /// The error of an attempt cut off at its time budget (`started`: it was sent, so it is ambiguous).
    fn out_of_time(budget: Duration, started: bool) -> Self;
}

/// What an attempt is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// 1 for the first attempt.
    pub number: u32,
    /// An earlier attempt failed ambiguously: what it tried may have happened.
    pub after_ambiguous: bool,
    /// The time this attempt has (it is cut off after it).
    pub budget: Duration,
}

/// Runs attempts under a [`RetryPolicy`] and a [`Deadline`]: each attempt is cut off at the remaining budget
/// (deadline minus `reserve`, at most `attempt_timeout`); no attempt starts with less than `min_attempt`;
/// permanent failures, a `Retry-After` above the policy's maximum and running out of attempts end it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retrier {
    pub policy: RetryPolicy,
    /// Time kept back from the deadline for the work after the calls (recording, answering).
    pub reserve: Duration,
    /// The longest one attempt may take.
    pub attempt_timeout: Duration,
    /// The least time worth starting an attempt with.
    pub min_attempt: Duration,
}

impl Default for Retrier {
    fn default() -> Self {
        Self {
            policy: RetryPolicy::default(),
            reserve: Duration::from_millis(1500),
            attempt_timeout: Duration::from_secs(10),
            min_attempt: Duration::from_millis(500),
        }
    }
}

/// Why the engine is retrying, for the caller's log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryNotice {
    /// The attempt that failed (1-based).
    pub failed_attempt: u32,
    pub delay: Duration,
}

impl Retrier {
    /// The budget of an attempt starting now, or `None` when too little time is left to start one.
    pub fn budget(&self, deadline: Deadline) -> Option<Duration> {
        let left = deadline.remaining().saturating_sub(self.reserve);
        (left >= self.min_attempt && !left.is_zero()).then(|| left.min(self.attempt_timeout))
    }

    /// Runs `attempt` until it succeeds or retrying must stop; returns the last error then. `on_retry` is told
    /// of each retry before its wait (for the caller's log line, with its correlation ids).
    pub async fn run<T, E: Retryable, F: Future<Output = Result<T, E>>>(
        &self,
        deadline: Deadline,
        mut attempt: impl FnMut(Attempt) -> F,
        on_retry: impl Fn(&E, RetryNotice),
    ) -> Result<T, E> {
        let mut after_ambiguous = false;
        let mut number = 1;
        loop {
            let Some(budget) = self.budget(deadline) else {
                return Err(E::out_of_time(Duration::ZERO, false));
            };
            let this = Attempt {
                number,
                after_ambiguous,
                budget,
            };
            let e = match tokio::time::timeout(budget, attempt(this)).await {
                Ok(Ok(done)) => return Ok(done),
                Ok(Err(e)) => e,
                Err(_) => E::out_of_time(budget, true),
            };
            if e.class() == FailureClass::Permanent || number >= self.policy.max_attempts {
                return Err(e);
            }
            let hint = e.retry_after();
            if hint.is_some_and(|h| h > self.policy.max_retry_after) {
                return Err(e);
            }
            let delay = self.policy.delay(number - 1, hint);
            if !deadline.allows(delay + self.min_attempt, self.reserve) {
                return Err(e);
            }
            after_ambiguous |= e.ambiguous();
            on_retry(
                &e,
                RetryNotice {
                    failed_attempt: number,
                    delay,
                },
            );
            tokio::time::sleep(delay).await;
            number += 1;
        }
    }
}

/// Equal jitter: uniform in `[d/2, d]`, for polling waits that should not line up across workers.
pub fn jitter(d: Duration) -> Duration {
    let ms = d.as_millis() as u64;
    Duration::from_millis(rand::rng().random_range(ms / 2..=ms))
}

/// The longest `Retry-After` taken from an answer. Every caller waits far less (its own maximum); a server's
/// `1e20` or `u64::MAX` would otherwise overflow the clocks it is added to.
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(86_400);

/// Parses `Retry-After` as delta-seconds or an HTTP date, at most [`RETRY_AFTER_CAP`].
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs).min(RETRY_AFTER_CAP));
    }
    if let Ok(secs) = v.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Some(Duration::from_secs_f64(
                secs.min(RETRY_AFTER_CAP.as_secs_f64()),
            ));
        }
    }
    let fmt = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let at = time::PrimitiveDateTime::parse(v, &fmt).ok()?.assume_utc();
    let at: SystemTime = at.into();
    Some(
        at.duration_since(now)
            .unwrap_or(Duration::ZERO)
            .min(RETRY_AFTER_CAP),
    )
}

/// Wall-clock budget of one invocation.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    at: Instant,
}

impl Deadline {
    /// A Lambda context deadline (milliseconds since the epoch).
    pub fn from_epoch_ms(deadline_ms: u64) -> Self {
        Self::after(Duration::from_millis(
            deadline_ms.saturating_sub(crate::clock::epoch_ms()),
        ))
    }

    pub fn after(d: Duration) -> Self {
        Self {
            at: Instant::now() + d,
        }
    }

    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    /// Whether waiting `wait` still leaves `reserve` for the work after it.
    pub fn allows(&self, wait: Duration, reserve: Duration) -> bool {
        self.remaining() > wait + reserve
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_within_the_capped_ceiling() {
        let p = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
            max_retry_after: Duration::from_secs(30),
        };
        assert_eq!(p.ceiling(0), Duration::from_millis(100));
        assert_eq!(p.ceiling(3), Duration::from_millis(800));
        assert_eq!(p.ceiling(10), Duration::from_secs(2));
        assert_eq!(p.ceiling(u32::MAX), Duration::from_secs(2));
        let samples: Vec<Duration> = (0..500).map(|_| p.backoff(4)).collect();
        assert!(samples.iter().all(|d| *d <= Duration::from_millis(1600)));
        // Full jitter spreads over the range rather than clustering at the ceiling.
        assert!(samples.iter().any(|d| *d < Duration::from_millis(400)));
        assert!(samples.iter().any(|d| *d > Duration::from_millis(1200)));
    }

    #[test]
    fn retry_after_wins_over_backoff() {
        let p = RetryPolicy::default();
        let d = p.delay(0, Some(Duration::from_secs(3)));
        assert!(d >= Duration::from_secs(3) && d <= Duration::from_secs(3) + p.base_delay);
    }

    #[test]
    fn parses_retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(parse_retry_after("2", now), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("1.5", now),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        // A server's absurd wait is capped, not a panic or an overflow further on.
        for absurd in [
            "1e20",
            "18446744073709551615",
            "18446744073709551616",
            "86401",
            "Fri, 31 Dec 9999 23:59:59 GMT",
        ] {
            assert_eq!(
                parse_retry_after(absurd, now),
                Some(RETRY_AFTER_CAP),
                "{absurd}"
            );
        }
        assert_eq!(parse_retry_after("-1", now), None);
    }

    #[derive(Debug, PartialEq)]
    enum TestError {
        Busy(Option<Duration>),
        Lost,
        Refused,
        OutOfTime { started: bool },
    }

    impl Retryable for TestError {
        fn class(&self) -> FailureClass {
            match self {
                TestError::Refused => FailureClass::Permanent,
                _ => FailureClass::Transient,
            }
        }
        fn retry_after(&self) -> Option<Duration> {
            match self {
                TestError::Busy(h) => *h,
                _ => None,
            }
        }
        fn ambiguous(&self) -> bool {
            matches!(
                self,
                TestError::Lost | TestError::OutOfTime { started: true }
            )
        }
        fn out_of_time(_: Duration, started: bool) -> Self {
            TestError::OutOfTime { started }
        }
    }

    fn fast() -> Retrier {
        Retrier {
            policy: RetryPolicy {
                max_attempts: 4,
                base_delay: Duration::from_millis(10),
                max_delay: Duration::from_millis(40),
                max_retry_after: Duration::from_secs(30),
            },
            reserve: Duration::from_secs(1),
            attempt_timeout: Duration::from_secs(10),
            min_attempt: Duration::from_millis(500),
        }
    }

    /// Runs `script` (one result per attempt) and returns the engine's result and the attempts seen.
    async fn run_script(
        r: Retrier,
        deadline: Deadline,
        script: Vec<Result<u32, TestError>>,
    ) -> (Result<u32, TestError>, Vec<Attempt>) {
        let mut seen = Vec::new();
        let mut script = script.into_iter();
        let result = r
            .run(
                deadline,
                |a: Attempt| {
                    seen.push(a);
                    std::future::ready(script.next().unwrap_or(Err(TestError::Busy(None))))
                },
                |_, _| {},
            )
            .await;
        (result, seen)
    }

    #[tokio::test(start_paused = true)]
    async fn engine_stops_at_success_permanent_failure_or_the_attempt_limit() {
        let long = Deadline::after(Duration::from_secs(60));
        let (r, seen) = run_script(fast(), long, vec![Err(TestError::Busy(None)), Ok(7)]).await;
        assert_eq!((r, seen.len()), (Ok(7), 2));
        let (r, seen) = run_script(fast(), long, vec![Err(TestError::Refused), Ok(7)]).await;
        assert_eq!((r, seen.len()), (Err(TestError::Refused), 1));
        let (r, seen) = run_script(fast(), long, vec![]).await;
        assert_eq!((r, seen.len()), (Err(TestError::Busy(None)), 4));
        assert_eq!(
            seen.iter().map(|a| a.number).collect::<Vec<_>>(),
            [1, 2, 3, 4]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn engine_tells_later_attempts_that_an_earlier_one_may_have_taken_effect() {
        let long = Deadline::after(Duration::from_secs(60));
        let script = vec![Err(TestError::Busy(None)), Err(TestError::Lost), Ok(1)];
        let (_, seen) = run_script(fast(), long, script).await;
        let flags: Vec<bool> = seen.iter().map(|a| a.after_ambiguous).collect();
        assert_eq!(flags, [false, false, true]);
    }

    #[tokio::test(start_paused = true)]
    async fn engine_honours_retry_after_and_gives_up_on_one_above_the_maximum() {
        let long = Deadline::after(Duration::from_secs(120));
        let started = Instant::now();
        let script = vec![Err(TestError::Busy(Some(Duration::from_secs(5)))), Ok(1)];
        let (r, _) = run_script(fast(), long, script).await;
        assert_eq!(r, Ok(1));
        assert!(started.elapsed() >= Duration::from_secs(5));
        let script = vec![Err(TestError::Busy(Some(Duration::from_secs(31)))), Ok(1)];
        let (r, seen) = run_script(fast(), long, script).await;
        assert_eq!(r, Err(TestError::Busy(Some(Duration::from_secs(31)))));
        assert_eq!(seen.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn engine_cuts_a_hanging_attempt_at_the_deadline_minus_the_reserve() {
        // 60 s left, 10 s per attempt, 1 s reserve: a server that never answers gets cut attempts, and the
        // last one ends before the reserve, never after the deadline.
        let deadline = Deadline::after(Duration::from_secs(25));
        let mut r = fast();
        r.policy.max_attempts = 10;
        let mut seen = Vec::new();
        let result: Result<(), TestError> = r
            .run(
                deadline,
                |a: Attempt| {
                    seen.push(a);
                    std::future::pending()
                },
                |_, _| {},
            )
            .await;
        assert_eq!(result, Err(TestError::OutOfTime { started: true }));
        assert!(
            deadline.remaining() >= Duration::from_secs(1),
            "{:?}",
            deadline.remaining()
        );
        assert_eq!(seen[0].budget, Duration::from_secs(10));
        assert!(seen[1..].iter().all(|a| a.after_ambiguous));
        assert!(seen
            .last()
            .is_some_and(|a| a.budget < Duration::from_secs(10)));
    }

    #[tokio::test(start_paused = true)]
    async fn engine_starts_nothing_without_time_for_an_attempt() {
        let (r, seen) = run_script(
            fast(),
            Deadline::after(Duration::from_millis(1200)),
            vec![Ok(1)],
        )
        .await;
        assert_eq!(
            (r, seen.len()),
            (Err(TestError::OutOfTime { started: false }), 0)
        );
    }

    #[test]
    fn deadline_budget() {
        let d = Deadline::after(Duration::from_secs(10));
        assert!(d.allows(Duration::from_secs(1), Duration::from_secs(1)));
        assert!(!d.allows(Duration::from_secs(9), Duration::from_secs(2)));
        assert!(Deadline::after(Duration::ZERO).remaining() == Duration::ZERO);
    }
}
