//! Token buckets (docs/configuration.md "Rate limits") and the outbound
//! limit per provider host, shared by every Notification of a function,
//! which waits for a token within the delivery's deadline. The inbound
//! limit per source address, answered at the door, is `host::ratelimit`.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::delivery::metrics::Metrics;
use crate::delivery::verdict::Verdict;
use crate::event::config::{OutboundLimits, Rate};

/// Buckets kept per limiter: past it, full buckets (which a fresh one
/// equals) are forgotten first, then the least recently used, so a flood of
/// source addresses cannot grow memory without bound.
pub const MAX_KEYS: usize = 10_000;

/// The time source, injected so the buckets are tested without sleeping.
pub trait Clock: Send + Sync {
    fn now(&self) -> Instant;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// One bucket: `burst` tokens, refilled at `rate` per second. A token may
/// be reserved ahead (the count goes negative), so waiters queue in order
/// and are spaced `1/rate` apart.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate: Rate, now: Instant) -> TokenBucket {
        TokenBucket {
            rate: rate.per_second,
            burst: f64::from(rate.burst),
            tokens: f64::from(rate.burst),
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        if now > self.last {
            let dt = (now - self.last).as_secs_f64();
            self.tokens = (self.tokens + dt * self.rate).min(self.burst);
            self.last = now;
        }
    }

    /// Takes one token if it is available within `max_wait`: `Ok(wait)`,
    /// the caller going ahead after `wait` (zero: now). Otherwise
    /// `Err(wait)`, the time until one would be, and nothing is taken.
    pub fn reserve(&mut self, now: Instant, max_wait: Duration) -> Result<Duration, Duration> {
        self.refill(now);
        let wait = if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::try_from_secs_f64((1.0 - self.tokens) / self.rate).unwrap_or(Duration::MAX)
        };
        if wait > max_wait {
            return Err(wait);
        }
        self.tokens -= 1.0;
        Ok(wait)
    }

    /// Without refilling, so `last` still tells the least recently used.
    fn is_full(&self, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens + dt * self.rate >= self.burst
    }
}

/// Buckets by key, created on first use, bounded to [`MAX_KEYS`].
pub struct Buckets<K> {
    clock: Arc<dyn Clock>,
    max_keys: usize,
    map: Mutex<HashMap<K, TokenBucket>>,
}

impl<K: Hash + Eq + Clone> Buckets<K> {
    pub fn new(clock: Arc<dyn Clock>, max_keys: usize) -> Buckets<K> {
        Buckets {
            clock,
            max_keys: max_keys.max(1),
            map: Mutex::new(HashMap::new()),
        }
    }

    /// [`TokenBucket::reserve`] on `key`'s bucket (new ones have `rate`).
    pub fn reserve(&self, key: &K, rate: Rate, max_wait: Duration) -> Result<Duration, Duration> {
        let now = self.clock.now();
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if !map.contains_key(key) && map.len() >= self.max_keys {
            map.retain(|_, b| !b.is_full(now));
            if map.len() >= self.max_keys
                && let Some(oldest) = map
                    .iter()
                    .min_by_key(|(_, b)| b.last)
                    .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        map.entry(key.clone())
            .or_insert_with(|| TokenBucket::new(rate, now))
            .reserve(now, max_wait)
    }

    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The outbound limit: one bucket per provider host, shared by every
/// Notification of the function.
pub struct OutboundLimiter {
    default: Option<Rate>,
    hosts: HashMap<String, Rate>,
    buckets: Buckets<String>,
    metrics: Arc<Metrics>,
}

impl OutboundLimiter {
    /// `None` when no host is limited.
    pub fn new(spec: &OutboundLimits, metrics: Arc<Metrics>) -> Option<OutboundLimiter> {
        OutboundLimiter::with_clock(spec, metrics, Arc::new(SystemClock))
    }

    pub fn with_clock(
        spec: &OutboundLimits,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
    ) -> Option<OutboundLimiter> {
        if spec.default.is_none() && spec.hosts.is_empty() {
            return None;
        }
        Some(OutboundLimiter {
            default: spec.default,
            hosts: spec
                .hosts
                .iter()
                .map(|(h, r)| (h.as_str().to_string(), *r))
                .collect(),
            buckets: Buckets::new(clock, MAX_KEYS),
            metrics,
        })
    }

    /// Waits for a token of `url`'s host, at most until `deadline`. When the
    /// wait would pass it, nothing is taken and the delivery fails retryably
    /// (the sender retries after the `Retry-After`).
    pub async fn acquire(&self, url: &url::Url, deadline: Instant) -> Result<(), Verdict> {
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        // A configured host is its own label; every other host shares
        // `default`, so the label set stays the config's.
        let (rate, label) = match self.hosts.get(&host) {
            Some(r) => (*r, host.as_str()),
            None => match self.default {
                Some(r) => (r, "default"),
                None => return Ok(()),
            },
        };
        let now = self.buckets.clock.now();
        match self
            .buckets
            .reserve(&host, rate, deadline.saturating_duration_since(now))
        {
            Ok(wait) if wait.is_zero() => Ok(()),
            Ok(wait) => {
                self.metrics
                    .rate_limit_waits
                    .with_label_values(&[label])
                    .inc();
                tracing::debug!(%host, wait_ms = wait.as_millis() as u64, "waiting for the outbound rate limit");
                tokio::time::sleep(wait).await;
                Ok(())
            }
            Err(wait) => {
                self.metrics
                    .rate_limited
                    .with_label_values(&["outbound", label])
                    .inc();
                Err(Verdict::Retryable {
                    status: None,
                    retry_after: Some(wait),
                    message: format!(
                        "outbound rate limit of {host}: the next request slot is {:.1} s away, past the delivery deadline",
                        wait.as_secs_f64()
                    ),
                })
            }
        }
    }
}

/// A clock for tests, here and in `host::ratelimit`.
#[cfg(test)]
pub(crate) mod manual {
    use super::*;

    /// A clock that moves only when told.
    pub struct Manual(Mutex<Instant>);

    impl Manual {
        pub fn new() -> Arc<Manual> {
            Arc::new(Manual(Mutex::new(Instant::now())))
        }
        pub fn advance(&self, d: Duration) {
            *self.0.lock().unwrap() += d;
        }
    }

    impl Clock for Manual {
        fn now(&self) -> Instant {
            *self.0.lock().unwrap()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::ratelimit::manual::Manual;

    fn rate(per_second: f64, burst: u32) -> Rate {
        Rate { per_second, burst }
    }

    const NOW: Duration = Duration::ZERO;

    #[test]
    fn burst_then_refusal_with_the_time_to_the_next_token() {
        let clock = Manual::new();
        let mut b = TokenBucket::new(rate(2.0, 3), clock.now());
        for _ in 0..3 {
            assert_eq!(b.reserve(clock.now(), NOW), Ok(Duration::ZERO));
        }
        assert_eq!(b.reserve(clock.now(), NOW), Err(Duration::from_millis(500)));
        // A refusal takes nothing: the same wait, less the time gone by.
        clock.advance(Duration::from_millis(200));
        assert_eq!(b.reserve(clock.now(), NOW), Err(Duration::from_millis(300)));
        clock.advance(Duration::from_millis(300));
        assert_eq!(b.reserve(clock.now(), NOW), Ok(Duration::ZERO));
        assert!(b.reserve(clock.now(), NOW).is_err());
    }

    #[test]
    fn refill_stops_at_the_burst() {
        let clock = Manual::new();
        let mut b = TokenBucket::new(rate(10.0, 2), clock.now());
        clock.advance(Duration::from_secs(3600));
        assert!(b.reserve(clock.now(), NOW).is_ok());
        assert!(b.reserve(clock.now(), NOW).is_ok());
        assert!(b.reserve(clock.now(), NOW).is_err());
    }

    #[test]
    fn reservations_queue_waiters_one_interval_apart() {
        let clock = Manual::new();
        let mut b = TokenBucket::new(rate(4.0, 1), clock.now());
        let max = Duration::from_secs(1);
        let waits: Vec<_> = (0..5).map(|_| b.reserve(clock.now(), max)).collect();
        assert_eq!(
            waits,
            [
                Ok(Duration::ZERO),
                Ok(Duration::from_millis(250)),
                Ok(Duration::from_millis(500)),
                Ok(Duration::from_millis(750)),
                Ok(Duration::from_secs(1)),
            ]
        );
        // The sixth would pass the allowed wait: refused, nothing reserved.
        assert_eq!(
            b.reserve(clock.now(), max),
            Err(Duration::from_millis(1250))
        );
        clock.advance(Duration::from_millis(250));
        assert_eq!(b.reserve(clock.now(), max), Ok(Duration::from_secs(1)));
    }

    #[test]
    fn keys_have_their_own_buckets_and_the_key_count_is_bounded() {
        let clock = Manual::new();
        let buckets: Buckets<u32> = Buckets::new(clock.clone(), 3);
        let r = rate(1.0, 1);
        assert!(buckets.reserve(&1, r, NOW).is_ok());
        assert!(buckets.reserve(&1, r, NOW).is_err());
        clock.advance(Duration::from_millis(10));
        assert!(buckets.reserve(&2, r, NOW).is_ok());
        assert!(buckets.reserve(&3, r, NOW).is_ok());
        // Full map, no bucket refilled: the least recently used (1) goes.
        clock.advance(Duration::from_millis(100));
        assert!(buckets.reserve(&4, r, NOW).is_ok());
        assert_eq!(buckets.len(), 3);
        assert!(buckets.reserve(&2, r, NOW).is_err(), "2 was kept");
        assert!(buckets.reserve(&3, r, NOW).is_err(), "3 was kept");
        // Once refilled, buckets are forgotten first (they equal new ones).
        clock.advance(Duration::from_secs(5));
        assert!(buckets.reserve(&5, r, NOW).is_ok());
        assert_eq!(buckets.len(), 1);
    }

    #[tokio::test]
    async fn outbound_refuses_a_wait_past_the_deadline_without_taking_a_token() {
        let metrics = Arc::new(Metrics::new());
        let clock = Manual::new();
        let spec: OutboundLimits = serde_json::from_value(serde_json::json!({
            "hosts": {"api.github.com": {"ratePerSecond": 0.5, "burst": 1}}
        }))
        .unwrap();
        let l = OutboundLimiter::with_clock(&spec, metrics.clone(), clock.clone()).unwrap();
        let gh = url::Url::parse("https://API.github.com/repos/o/r/statuses/abc").unwrap();
        let other = url::Url::parse("https://hooks.slack.com/x").unwrap();
        let deadline = clock.now() + Duration::from_secs(1);
        assert!(l.acquire(&gh, deadline).await.is_ok());
        // Not configured and no default: never limited.
        for _ in 0..5 {
            assert!(l.acquire(&other, deadline).await.is_ok());
        }
        let Err(Verdict::Retryable {
            retry_after,
            message,
            ..
        }) = l.acquire(&gh, deadline).await
        else {
            panic!("expected a retryable refusal")
        };
        assert_eq!(retry_after, Some(Duration::from_secs(2)));
        assert!(
            message.contains("rate limit of api.github.com"),
            "{message}"
        );
        clock.advance(Duration::from_secs(2));
        assert!(
            l.acquire(&gh, clock.now()).await.is_ok(),
            "nothing was taken"
        );
        assert!(
            metrics.render().contains(
                "relay_rate_limited_total{direction=\"outbound\",key=\"api.github.com\"} 1"
            )
        );
        assert!(
            OutboundLimiter::new(&OutboundLimits::default(), metrics).is_none(),
            "off by default"
        );
    }
}
