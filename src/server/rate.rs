//! Rate limits: a token bucket per client and route class, so that a test
//! suite can exercise its client's back-off against taskyard.
//!
//! A client is the API key it sent (in whichever header its face reads),
//! else its address. A route class is `read` (GET, HEAD) or `write` (every
//! other method); each class has its own rate and burst from the config,
//! and a class without one is not limited. The buckets live in memory: a
//! restart refills them. Owns the arithmetic only; which routes are
//! limited is the server's (face routes, never `/healthz` or `/metrics`),
//! and how a refusal reads (429, `retry-after`) is each face's.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::limits::RATE_BUCKETS_MAX;

/// What a class of routes allows one client.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    /// Requests per second, on average.
    pub per_second: f64,
    /// Requests at once, after a quiet spell.
    pub burst: u32,
}

/// The limits of each route class; `None`: that class is not limited.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RateLimitConfig {
    pub read: Option<Limit>,
    pub write: Option<Limit>,
}

impl RateLimitConfig {
    pub fn is_set(&self) -> bool {
        self.read.is_some() || self.write.is_some()
    }
}

/// A route class, by method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteClass {
    Read,
    Write,
}

impl RouteClass {
    pub fn of(method: &str) -> RouteClass {
        match method {
            "GET" | "HEAD" => RouteClass::Read,
            _ => RouteClass::Write,
        }
    }

    /// The class's name in the config (`rate_limits.read`).
    pub fn as_str(self) -> &'static str {
        match self {
            RouteClass::Read => "read",
            RouteClass::Write => "write",
        }
    }
}

/// A request over its limit: when a token is back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limited {
    pub class: RouteClass,
    pub limit: Limit,
    pub retry_after: Duration,
}

impl Limited {
    /// The wait in whole milliseconds, at least 1 (`retry-after-ms`).
    pub fn retry_after_ms(&self) -> u64 {
        self.retry_after.as_millis().max(1) as u64
    }

    /// The wait in whole seconds, rounded up (`retry-after`).
    pub fn retry_after_s(&self) -> u64 {
        self.retry_after_ms().div_ceil(1_000)
    }

    /// What every face says, naming the limit and its config key.
    pub fn message(&self) -> String {
        let class = self.class.as_str();
        format!(
            "rate limit of {} {class} requests per second (burst {}) exceeded \
             (rate_limits.{class}); retry after {} ms",
            self.limit.per_second,
            self.limit.burst,
            self.retry_after_ms()
        )
    }
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Every client's buckets.
pub struct RateLimits {
    config: RateLimitConfig,
    buckets: Mutex<HashMap<(String, RouteClass), Bucket>>,
}

impl RateLimits {
    pub fn new(config: RateLimitConfig) -> RateLimits {
        RateLimits {
            config,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `client` in `class` at `now`, or says when one is
    /// back.
    pub fn take(&self, client: &str, class: RouteClass, now: Instant) -> Result<(), Limited> {
        let limit = match class {
            RouteClass::Read => self.config.read,
            RouteClass::Write => self.config.write,
        };
        let Some(limit) = limit else {
            return Ok(());
        };
        let burst = f64::from(limit.burst.max(1));
        let mut buckets = self.buckets.lock();
        if buckets.len() >= RATE_BUCKETS_MAX && !buckets.contains_key(&(client.to_string(), class))
        {
            // Forget the clients whose buckets have refilled: they are as
            // new ones would be, so nothing is lost by it.
            buckets.retain(|_, bucket| refilled(bucket, limit, now) < burst);
        }
        let bucket = buckets
            .entry((client.to_string(), class))
            .or_insert(Bucket {
                tokens: burst,
                at: now,
            });
        bucket.tokens = refilled(bucket, limit, now).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let missing = 1.0 - bucket.tokens;
        Err(Limited {
            class,
            limit,
            retry_after: Duration::from_secs_f64(missing / limit.per_second.max(f64::MIN_POSITIVE)),
        })
    }
}

fn refilled(bucket: &Bucket, limit: Limit, now: Instant) -> f64 {
    let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
    bucket.tokens + elapsed * limit.per_second
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> RateLimits {
        RateLimits::new(RateLimitConfig {
            read: None,
            write: Some(Limit {
                per_second: 2.0,
                burst: 3,
            }),
        })
    }

    #[test]
    fn a_burst_then_one_token_per_interval() {
        let limits = limits();
        let start = Instant::now();
        for _ in 0..3 {
            assert!(limits.take("k", RouteClass::Write, start).is_ok());
        }
        let limited = limits
            .take("k", RouteClass::Write, start)
            .expect_err("the burst is spent");
        assert_eq!(limited.retry_after, Duration::from_millis(500));
        // Half a second later one token is back, and only one.
        let later = start + Duration::from_millis(500);
        assert!(limits.take("k", RouteClass::Write, later).is_ok());
        assert!(limits.take("k", RouteClass::Write, later).is_err());
    }

    #[test]
    fn clients_and_classes_have_their_own_buckets() {
        let limits = limits();
        let now = Instant::now();
        for _ in 0..3 {
            limits.take("a", RouteClass::Write, now).expect("a's burst");
        }
        assert!(limits.take("a", RouteClass::Write, now).is_err());
        assert!(
            limits.take("b", RouteClass::Write, now).is_ok(),
            "b has its own"
        );
        for _ in 0..100 {
            assert!(
                limits.take("a", RouteClass::Read, now).is_ok(),
                "reads are not limited"
            );
        }
    }

    #[test]
    fn the_bucket_table_stays_bounded() {
        let limits = limits();
        let now = Instant::now();
        for client in 0..RATE_BUCKETS_MAX * 2 {
            // Each client spends one token; a second later all have refilled.
            let at = now + Duration::from_secs((client / RATE_BUCKETS_MAX) as u64 * 2);
            limits
                .take(&client.to_string(), RouteClass::Write, at)
                .expect("a new client has its burst");
        }
        assert!(limits.buckets.lock().len() <= RATE_BUCKETS_MAX + 1);
    }
}
