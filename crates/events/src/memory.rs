//! The in-process bus of embedded mode.
//!
//! `publish` hands the event to every matching subscriber in turn, through the idempotent
//! [`Consumer`] runner, and returns only when each of them has it durably (processed, duplicate or
//! dead-lettered). So the relay marks an outbox row published only once every consumer has it; a
//! crash in between just redelivers it and the inboxes drop the duplicate. There is no queue at
//! all: the relay's outbox *is* the queue, and it is durable.

use std::sync::{Arc, RwLock};

use flotilla_runtime::db::Db;

use crate::bus::{BoxFuture, Bus, BusError, BusState, Handler};
use crate::consumer::{Consumer, RetryPolicy};
use crate::event::{Event, subject_matches};
use crate::metrics_names::EVENT_BUS_PUBLISHED_TOTAL;

struct Subscriber {
    consumer: Consumer,
    /// NATS-style subject filters (`flotilla.task.>`); empty = every event.
    filters: Vec<String>,
}

/// The in-process bus. Share it as `Arc<MemoryBus>` (it is an `Arc<dyn Bus>` for the relays).
#[derive(Default)]
pub struct MemoryBus {
    subscribers: RwLock<Vec<Arc<Subscriber>>>,
}

impl MemoryBus {
    pub fn new() -> Self {
        Self::default()
    }

    /// Subscribes a consumer to every event.
    pub fn subscribe(&self, name: impl Into<String>, db: Db, handler: Arc<dyn Handler>, policy: RetryPolicy) {
        self.subscribe_filtered(name, &[], db, handler, policy);
    }

    /// Subscribes a consumer to the events whose subject (`flotilla.<type>`) matches one of
    /// `filters` (NATS wildcards `*` and `>`; empty = every event), like [`crate::NatsBus::subscribe`].
    pub fn subscribe_filtered(
        &self,
        name: impl Into<String>,
        filters: &[&str],
        db: Db,
        handler: Arc<dyn Handler>,
        policy: RetryPolicy,
    ) {
        let subscriber = Subscriber {
            consumer: Consumer::new(name, db, handler, policy),
            filters: filters.iter().map(|f| (*f).to_owned()).collect(),
        };
        self.subscribers.write().unwrap_or_else(|e| e.into_inner()).push(Arc::new(subscriber));
    }

    /// The subscribed consumers (for the admin endpoints: dead letters, replay).
    pub fn consumers(&self) -> Vec<Consumer> {
        self.subscribers.read().unwrap_or_else(|e| e.into_inner()).iter().map(|s| s.consumer.clone()).collect()
    }
}

impl Bus for MemoryBus {
    fn publish<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<(), BusError>> {
        Box::pin(async move {
            let subject = event.nats_subject();
            // Snapshot: never hold the lock across an await.
            let subscribers: Vec<Arc<Subscriber>> =
                self.subscribers.read().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect();
            for sub in subscribers {
                if !sub.filters.is_empty() && !sub.filters.iter().any(|f| subject_matches(f, &subject)) {
                    continue;
                }
                sub.consumer.process(event).await.map_err(|e| BusError::Consumer {
                    consumer: sub.consumer.name().to_owned(),
                    id: event.id.clone(),
                    reason: e.to_string(),
                })?;
            }
            metrics::counter!(EVENT_BUS_PUBLISHED_TOTAL).increment(1);
            Ok(())
        })
    }

    fn state(&self) -> BusState {
        BusState::Connected
    }
}
