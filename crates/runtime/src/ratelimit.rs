//! Fixed-window counters: the gateway's per-IP/per-user limits and accounts' login throttling.
//!
//! Windows start at multiples of their length since the epoch, the same scheme the shared store
//! (`INCR` + `EXPIRE` in Redis) uses, so [`Limiter`] behaves the same in memory and shared by
//! every replica.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::shared::SharedStore;
use crate::time::now_ms;

/// What a check decided, with the numbers for `RateLimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u64,
    pub remaining: u64,
    /// Seconds until the window resets (≥ 1).
    pub reset_secs: u64,
}

pub struct WindowLimiter {
    limit: u64,
    window_ms: i64,
    /// key → (window index, count in that window)
    counts: Mutex<HashMap<String, (i64, u64)>>,
}

/// Keys kept before stale windows are swept; bounds memory under a flood of distinct keys.
const SWEEP_AT: usize = 50_000;

impl WindowLimiter {
    pub fn new(limit: u64, window: Duration) -> Self {
        Self { limit, window_ms: window.as_millis().max(1) as i64, counts: Mutex::new(HashMap::new()) }
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    pub fn window_secs(&self) -> u64 {
        (self.window_ms / 1000).max(1) as u64
    }

    fn window_at(&self, now: i64) -> (i64, u64) {
        let index = now.div_euclid(self.window_ms);
        let reset_ms = (index + 1) * self.window_ms - now;
        (index, ((reset_ms + 999) / 1000).max(1) as u64)
    }

    /// Counts one request for `key` and says whether it is within the limit.
    pub fn hit(&self, key: &str) -> Decision {
        self.hit_at(key, now_ms())
    }

    fn hit_at(&self, key: &str, now: i64) -> Decision {
        let (index, reset_secs) = self.window_at(now);
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if counts.len() >= SWEEP_AT {
            counts.retain(|_, (i, _)| *i == index);
        }
        let entry = counts.entry(key.to_owned()).or_insert((index, 0));
        if entry.0 != index {
            *entry = (index, 0);
        }
        entry.1 = entry.1.saturating_add(1);
        decision(self.limit, entry.1, true, reset_secs)
    }

    /// Looks without counting: is `key` already over the limit in this window?
    pub fn peek(&self, key: &str) -> Decision {
        let now = now_ms();
        let (index, reset_secs) = self.window_at(now);
        let used = match self.counts.lock().unwrap_or_else(|p| p.into_inner()).get(key) {
            Some((i, n)) if *i == index => *n,
            _ => 0,
        };
        decision(self.limit, used, false, reset_secs)
    }

    /// Forgets `key` (a successful login clears that account's failures).
    pub fn reset(&self, key: &str) {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }
}

/// The decision for `used` hits in a window: `counted` when `used` includes the request being
/// decided (a hit), not when only looking (a peek, which must leave room for one more).
fn decision(limit: u64, used: u64, counted: bool, reset_secs: u64) -> Decision {
    let allowed = if counted { used <= limit } else { used < limit };
    Decision { allowed, limit, remaining: limit.saturating_sub(used), reset_secs }
}

/// A limiter whose counts live in memory, or in Redis shared by every replica. When Redis does
/// not answer, the local count decides: limits degrade to per replica instead of refusing traffic.
pub struct Limiter {
    local: WindowLimiter,
    shared: Option<(SharedStore, &'static str)>,
}

impl Limiter {
    pub fn new(limit: u64, window: Duration, shared: Option<&SharedStore>, scope: &'static str) -> Self {
        Self { local: WindowLimiter::new(limit, window), shared: shared.map(|s| (s.clone(), scope)) }
    }

    /// Counts one request for `key` and says whether it is within the limit.
    pub async fn hit(&self, key: &str) -> Decision {
        if let Some((store, scope)) = &self.shared {
            let (index, reset_secs) = self.local.window_at(now_ms());
            match store.incr_window(scope, key, index, self.local.window_secs()).await {
                Ok(used) => return decision(self.local.limit, used, true, reset_secs),
                Err(e) => shared_unavailable(&e),
            }
        }
        self.local.hit(key)
    }

    /// Looks without counting: is `key` already over the limit in this window?
    pub async fn peek(&self, key: &str) -> Decision {
        if let Some((store, scope)) = &self.shared {
            let (index, reset_secs) = self.local.window_at(now_ms());
            match store.get_window(scope, key, index).await {
                Ok(used) => return decision(self.local.limit, used, false, reset_secs),
                Err(e) => shared_unavailable(&e),
            }
        }
        self.local.peek(key)
    }

    /// Forgets `key` in the current window.
    pub async fn reset(&self, key: &str) {
        if let Some((store, scope)) = &self.shared {
            let (index, _) = self.local.window_at(now_ms());
            if let Err(e) = store.del_window(scope, key, index).await {
                shared_unavailable(&e);
            }
        }
        self.local.reset(key);
    }
}

fn shared_unavailable(e: &crate::shared::SharedError) {
    metrics::counter!(crate::telemetry::names::SHARED_STORE_ERRORS_TOTAL).increment(1);
    // Once per failure burst would be nicer; debug keeps an outage from flooding the log (the
    // counter and `/ready` report it).
    tracing::debug!(error = %e, "shared rate-limit store unavailable; counting locally");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_within_a_window_and_starts_over_in_the_next() {
        let l = WindowLimiter::new(2, Duration::from_secs(60));
        let t = 60_000 * 1000 + 59_500; // 0.5 s before a window ends
        let a = l.hit_at("k", t);
        assert!(a.allowed);
        assert_eq!((a.remaining, a.reset_secs), (1, 1));
        assert!(l.hit_at("k", t).allowed);
        let third = l.hit_at("k", t);
        assert!(!third.allowed);
        assert_eq!(third.remaining, 0);
        assert!(l.hit_at("other", t).allowed, "keys are independent");
        let next = l.hit_at("k", t + 1000);
        assert!(next.allowed, "a new window starts empty");
        assert_eq!(next.reset_secs, 60);
    }

    #[test]
    fn peek_does_not_count_and_reset_forgets() {
        let l = WindowLimiter::new(1, Duration::from_secs(900));
        assert!(l.peek("a").allowed);
        assert!(l.peek("a").allowed);
        l.hit("a");
        assert!(!l.peek("a").allowed);
        l.reset("a");
        assert!(l.peek("a").allowed);
    }

    #[test]
    fn sweeping_keeps_memory_bounded() {
        let l = WindowLimiter::new(5, Duration::from_secs(1));
        for i in 0..SWEEP_AT {
            l.hit_at(&i.to_string(), 0);
        }
        l.hit_at("late", 5_000);
        assert_eq!(l.counts.lock().unwrap().len(), 1);
    }
}
