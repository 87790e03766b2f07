//! The bus trait (publishing side, used by the outbox relay) and the handler trait (consuming
//! side, run by [`crate::consumer::Consumer`] inside the consumer's own transaction).

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use sqlx::AnyConnection;

use crate::event::Event;

/// A boxed, sendable future (object-safe async trait methods).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Whether the bus can take publishes now (reported by `/ready` of the relay side).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusState {
    Connected,
    Disconnected(String),
}

impl BusState {
    pub fn is_connected(&self) -> bool {
        matches!(self, BusState::Connected)
    }
}

impl fmt::Display for BusState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BusState::Connected => f.write_str("connected"),
            BusState::Disconnected(why) => write!(f, "disconnected: {why}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The bus cannot be reached now (disconnected, no JetStream, time-out); retry later.
    #[error("event bus unavailable: {0}")]
    Unavailable(String),
    /// The publish was sent but not acknowledged; it may or may not be stored (retry: the bus
    /// de-duplicates by event id).
    #[error("publish of event {id} not acknowledged: {reason}")]
    NotAcknowledged { id: String, reason: String },
    /// A subscriber of the in-process bus could not record the event (its database failed).
    #[error("consumer {consumer} could not take event {id}: {reason}")]
    Consumer { consumer: String, id: String, reason: String },
    /// Setting up streams or consumers failed.
    #[error("event bus setup failed: {0}")]
    Setup(String),
}

/// Where events go. Implementations: [`crate::MemoryBus`], [`crate::NatsBus`].
pub trait Bus: Send + Sync {
    /// Publishes one event and returns once the bus has it durably (NATS: JetStream ack; memory:
    /// every subscriber processed it). An error means "retry later": the event id is the
    /// de-duplication id, so a retried publish never results in a second delivery to a consumer.
    fn publish<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<(), BusError>>;

    /// Current connection state.
    fn state(&self) -> BusState;
}

/// Why a handler failed.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// A failure that may go away (retried with back-off, then dead-lettered).
    #[error("{0}")]
    Failed(String),
    /// A failure that cannot go away by retrying (e.g. a malformed payload): dead-lettered at
    /// once, without further attempts.
    #[error("permanent failure: {0}")]
    Permanent(String),
    /// A database error of the handler's own statements.
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
}

impl HandlerError {
    pub fn failed(message: impl fmt::Display) -> Self {
        HandlerError::Failed(message.to_string())
    }

    pub fn permanent(message: impl fmt::Display) -> Self {
        HandlerError::Permanent(message.to_string())
    }

    /// The database is unreachable (not the handler's fault): never dead-letter for this.
    pub(crate) fn is_unavailable(&self) -> bool {
        matches!(self, HandlerError::Db(e) if is_unavailable(e))
    }
}

/// Pool exhaustion and lost connections: the database is unavailable, not the event bad.
pub(crate) fn is_unavailable(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_))
}

/// What a consumer does with an event. It runs inside the consumer's database transaction
/// (`tx`): everything it writes there commits together with the inbox row that marks the event
/// processed, or not at all. It must not have effects outside that transaction that are unsafe to
/// repeat (a failed attempt is rolled back and retried).
pub trait Handler: Send + Sync {
    fn handle<'a>(&'a self, event: &'a Event, tx: &'a mut AnyConnection) -> BoxFuture<'a, Result<(), HandlerError>>;
}
