//! A circuit breaker for calls to another service: after `threshold` consecutive failures it
//! opens and fails calls at once for `open_for`; then one probe call is let through (half-open)
//! and its outcome closes or re-opens it. The state is exported as
//! `circuit_breaker_state{upstream}`: 0 closed, 1 open, 2 half-open.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::telemetry::names::CIRCUIT_BREAKER_STATE;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One probe is in flight since the given instant.
    HalfOpen {
        since: Instant,
    },
}

pub struct CircuitBreaker {
    name: String,
    threshold: u32,
    open_for: Duration,
    state: Mutex<State>,
}

impl CircuitBreaker {
    pub fn new(name: &str, threshold: u32, open_for: Duration) -> Self {
        crate::telemetry::metrics_handle(); // the recorder must exist before the first gauge
        let b = Self {
            name: name.to_owned(),
            threshold: threshold.max(1),
            open_for,
            state: Mutex::new(State::Closed { failures: 0 }),
        };
        b.publish(State::Closed { failures: 0 });
        b
    }

    /// `Ok` to go ahead; `Err(wait)` when the circuit is open (answer 503 with `Retry-After`).
    pub fn try_acquire(&self) -> Result<(), Duration> {
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match *state {
            State::Closed { .. } => Ok(()),
            State::Open { until } if now < until => Err(until - now),
            // The probe's caller may have gone away without reporting: allow a new probe then.
            State::HalfOpen { since } if now.duration_since(since) < self.open_for => Err(Duration::from_secs(1)),
            State::Open { .. } | State::HalfOpen { .. } => {
                *state = State::HalfOpen { since: now };
                self.publish(*state);
                Ok(())
            }
        }
    }

    pub fn record_success(&self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if *state != (State::Closed { failures: 0 }) {
            if !matches!(*state, State::Closed { .. }) {
                tracing::info!(upstream = %self.name, "circuit closed");
            }
            *state = State::Closed { failures: 0 };
            self.publish(*state);
        }
    }

    pub fn record_failure(&self) {
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let next = match *state {
            State::Closed { failures } if failures + 1 < self.threshold => State::Closed { failures: failures + 1 },
            State::Open { until } => State::Open { until },
            _ => {
                tracing::warn!(upstream = %self.name, open_for_ms = self.open_for.as_millis() as u64, "circuit opened");
                State::Open { until: now + self.open_for }
            }
        };
        *state = next;
        self.publish(next);
    }

    pub fn is_open(&self) -> bool {
        matches!(*self.state.lock().unwrap_or_else(|p| p.into_inner()), State::Open { until } if Instant::now() < until)
    }

    fn publish(&self, state: State) {
        let v = match state {
            State::Closed { .. } => 0.0,
            State::Open { .. } => 1.0,
            State::HalfOpen { .. } => 2.0,
        };
        metrics::gauge!(CIRCUIT_BREAKER_STATE, "upstream" => self.name.clone()).set(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_then_probes_once_and_closes_on_success() {
        let b = CircuitBreaker::new("t", 3, Duration::from_millis(50));
        for _ in 0..2 {
            assert!(b.try_acquire().is_ok());
            b.record_failure();
        }
        assert!(!b.is_open(), "two failures are below the threshold");
        b.record_failure();
        assert!(b.is_open());
        let wait = b.try_acquire().unwrap_err();
        assert!(wait <= Duration::from_millis(50));
        std::thread::sleep(Duration::from_millis(60));
        assert!(b.try_acquire().is_ok(), "one probe after the pause");
        assert!(b.try_acquire().is_err(), "only one probe at a time");
        b.record_success();
        assert!(b.try_acquire().is_ok());
        assert!(!b.is_open());
    }

    #[test]
    fn a_failed_probe_reopens_and_a_success_resets_the_count() {
        let b = CircuitBreaker::new("t2", 2, Duration::from_millis(20));
        b.record_failure();
        b.record_success();
        b.record_failure();
        assert!(!b.is_open(), "failures must be consecutive");
        b.record_failure();
        assert!(b.is_open());
        std::thread::sleep(Duration::from_millis(30));
        assert!(b.try_acquire().is_ok());
        b.record_failure();
        assert!(b.is_open(), "failed probe opens the circuit again");
    }

    #[test]
    fn state_is_exported() {
        let b = CircuitBreaker::new("exported-upstream", 1, Duration::from_secs(60));
        b.record_failure();
        let text = crate::telemetry::metrics_handle().render();
        assert!(text.contains(r#"circuit_breaker_state{upstream="exported-upstream"} 1"#), "{text}");
    }
}
