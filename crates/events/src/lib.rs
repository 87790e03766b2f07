//! Flotilla's event backbone (brief section 5).
//!
//! - [`event`]: the CloudEvents 1.0 JSON envelope and the event types.
//! - [`outbox`]: events are written in the same transaction as the state change
//!   ([`outbox::enqueue`]); a [`outbox::Relay`] publishes them in order and marks them sent.
//! - [`bus`]: the small [`Bus`] trait (publish + state) and the consumer-side [`Handler`] trait.
//! - [`consumer`]: the idempotent consumer runner shared by both buses (inbox table keyed by
//!   event id, retries with jittered exponential back-off, durable dead letters and replay).
//! - [`memory`]: the in-process bus of embedded mode.
//! - [`nats`]: the NATS JetStream bus of distributed mode.
//!
//! Delivery is at-least-once end to end: a crash between publish and mark republishes an outbox
//! row, NATS drops a re-publish within its duplicate window (`Nats-Msg-Id` = event id), and every
//! consumer drops what its inbox already holds. Each consumer therefore applies an event once.

pub mod bus;
pub mod consumer;
pub mod event;
pub mod memory;
pub mod metrics_names;
pub mod nats;
pub mod outbox;
pub mod retention;

pub use bus::{BoxFuture, Bus, BusError, BusState, Handler, HandlerError};
pub use consumer::{
    ConsumeError, Consumer, DeadLetter, Outcome, ReplayError, ReplayOutcome, RetryPolicy, list_dead_letters,
    replay_dead_letter,
};
pub use event::{Event, subject_for};
pub use memory::MemoryBus;
pub use nats::{NatsBus, SubscribeOptions};
pub use outbox::{Relay, RelayHandle, RelayOptions, enqueue};
