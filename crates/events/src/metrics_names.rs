//! Metric names of the event backbone: a contract with the alert rules and dashboards (brief
//! section 6). They live here because the runtime's `telemetry::names` belongs to another crate.

/// Counter: events a bus accepted (NATS: acknowledged by JetStream; memory: every subscriber has
/// it durably). Re-publishes after a crash count again.
pub const EVENT_BUS_PUBLISHED_TOTAL: &str = "event_bus_published_total";
/// Counter `{consumer,outcome}`, outcome = `ok` | `duplicate` | `retry` | `dead_letter`.
pub const EVENT_BUS_CONSUMED_TOTAL: &str = "event_bus_consumed_total";
/// Counter `{consumer}`: events moved to the dead letters after the last failed attempt.
pub const EVENT_BUS_DEAD_LETTER_TOTAL: &str = "event_bus_dead_letter_total";
/// Gauge `{service}`: outbox rows not yet published, updated by the relay on every pass.
pub const OUTBOX_PENDING: &str = "outbox_pending";

/// Every name above; a test scrapes a running system and finds each of them.
pub const ALL: &[&str] =
    &[EVENT_BUS_PUBLISHED_TOTAL, EVENT_BUS_CONSUMED_TOTAL, EVENT_BUS_DEAD_LETTER_TOTAL, OUTBOX_PENDING];

/// Values of the `outcome` label of [`EVENT_BUS_CONSUMED_TOTAL`].
pub mod outcome {
    pub const OK: &str = "ok";
    pub const DUPLICATE: &str = "duplicate";
    pub const RETRY: &str = "retry";
    pub const DEAD_LETTER: &str = "dead_letter";
}
