//! The NATS JetStream bus of distributed mode (works with nats-server 2.9 and later).
//!
//! - Stream `FLOTILLA_EVENTS`: subjects `flotilla.>`, file storage, 2-minute duplicate window.
//!   `publish` sets `Nats-Msg-Id` = event id (so a relay re-publish after a crash is dropped by
//!   the server) and waits for JetStream's ack.
//! - Stream `FLOTILLA_DLQ`: subjects `flotilla_dlq.>`; a consumer's dead letters go to
//!   `flotilla_dlq.<consumer>` (they are also in the consumer's `dead_letters` table, the copy
//!   the replay endpoint uses).
//! - One durable pull consumer per consuming service (explicit acks, bounded redelivery). Each
//!   message runs through the idempotent [`Consumer`] runner (inbox, retries, dead letters) and
//!   is acknowledged afterwards; a redelivered message is a duplicate in the inbox.
//!
//! The client reconnects forever; the fetch loops keep going across server restarts (re-creating
//! the stream and consumer handles when needed) and publishes fail fast while disconnected, so
//! the relay keeps rows in the outbox until the server is back.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::{self, AckKind, stream};
use async_nats::{Client, HeaderMap};
use bytes::Bytes;
use flotilla_runtime::db::Db;
use futures_util::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::bus::{BoxFuture, Bus, BusError, BusState, Handler};
use crate::consumer::{Consumer, Outcome, RetryPolicy};
use crate::event::{Event, SUBJECT_PREFIX, subject_matches};
use crate::metrics_names::EVENT_BUS_PUBLISHED_TOTAL;

pub const EVENTS_STREAM: &str = "FLOTILLA_EVENTS";
pub const DLQ_STREAM: &str = "FLOTILLA_DLQ";
/// Dead letters of consumer `c` are published on `flotilla_dlq.c`.
pub const DLQ_SUBJECT_PREFIX: &str = "flotilla_dlq.";
/// The server-side de-duplication window of `FLOTILLA_EVENTS`.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// How long `FLOTILLA_EVENTS` keeps events (a consumer down for longer misses them).
pub const EVENTS_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// Header naming the consumer on dead-letter messages.
pub const HEADER_CONSUMER: &str = "Flotilla-Consumer";
/// Header carrying the last error on dead-letter messages (one line).
pub const HEADER_ERROR: &str = "Flotilla-Error";

/// How a subscription fetches.
#[derive(Debug, Clone, Copy)]
pub struct SubscribeOptions {
    /// Unacknowledged messages are redelivered after this (the runner's retries of one message
    /// should finish well within it).
    pub ack_wait: Duration,
    /// Messages per pull request.
    pub batch: usize,
    /// How long one pull request waits for messages (also bounds how long a lost request, e.g.
    /// across a server restart, goes unnoticed).
    pub fetch_expires: Duration,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        Self { ack_wait: Duration::from_secs(30), batch: 16, fetch_expires: Duration::from_secs(2) }
    }
}

struct Inner {
    url: String,
    client: Client,
    js: jetstream::Context,
    streams_ready: AtomicBool,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// The JetStream bus. Cheap to clone.
#[derive(Clone)]
pub struct NatsBus {
    inner: Arc<Inner>,
}

impl NatsBus {
    /// Connects to `url` (e.g. `nats://127.0.0.1:4222`). The client keeps (re)connecting in the
    /// background forever, so this succeeds while the server is down (publishes fail until it is
    /// up); it waits up to two seconds for a first connection and then creates the streams if
    /// it can (otherwise they are created by the first publish or subscription).
    pub async fn connect(url: &str) -> Result<NatsBus, BusError> {
        let client = async_nats::ConnectOptions::new()
            .name("flotilla")
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(5))
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis(100u64.saturating_mul(1 << attempts.min(5))).min(Duration::from_secs(2))
            })
            .event_callback(|event| async move {
                tracing::info!(%event, "nats connection event");
            })
            .connect(url)
            .await
            .map_err(|e| BusError::Setup(format!("cannot connect to {url}: {e}")))?;
        let js = jetstream::new(client.clone());
        let bus = NatsBus {
            inner: Arc::new(Inner {
                url: url.to_owned(),
                client,
                js,
                streams_ready: AtomicBool::new(false),
                stop: watch::channel(false).0,
                tasks: Mutex::new(Vec::new()),
            }),
        };
        for _ in 0..100 {
            if bus.inner.client.connection_state() == State::Connected {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if let Err(e) = bus.ensure_streams().await {
            tracing::warn!(url, error = %e, "nats: streams not ready yet; will retry");
        }
        Ok(bus)
    }

    /// The underlying client (for tests and diagnostics).
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// The JetStream context (for tests and diagnostics).
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.inner.js
    }

    /// Creates `FLOTILLA_EVENTS` and `FLOTILLA_DLQ` if they do not exist (an existing stream is
    /// left as it is).
    pub async fn ensure_streams(&self) -> Result<(), BusError> {
        if self.inner.streams_ready.load(Ordering::Acquire) {
            return Ok(());
        }
        self.connected()?;
        let js = &self.inner.js;
        js.get_or_create_stream(stream::Config {
            name: EVENTS_STREAM.to_owned(),
            subjects: vec![format!("{SUBJECT_PREFIX}>")],
            storage: stream::StorageType::File,
            duplicate_window: DUPLICATE_WINDOW,
            max_age: EVENTS_MAX_AGE,
            ..Default::default()
        })
        .await
        .map_err(|e| BusError::Setup(format!("stream {EVENTS_STREAM}: {e}")))?;
        js.get_or_create_stream(stream::Config {
            name: DLQ_STREAM.to_owned(),
            subjects: vec![format!("{DLQ_SUBJECT_PREFIX}>")],
            storage: stream::StorageType::File,
            duplicate_window: DUPLICATE_WINDOW,
            ..Default::default()
        })
        .await
        .map_err(|e| BusError::Setup(format!("stream {DLQ_STREAM}: {e}")))?;
        self.inner.streams_ready.store(true, Ordering::Release);
        Ok(())
    }

    fn connected(&self) -> Result<(), BusError> {
        match self.state() {
            BusState::Connected => Ok(()),
            BusState::Disconnected(why) => Err(BusError::Unavailable(why)),
        }
    }

    /// Subscribes consumer `name` (a durable pull consumer of that name) to the events matching
    /// `filters` (e.g. `["flotilla.task.>"]`; empty = every event) with default options. Returns
    /// at once: the fetch loop runs in the background until [`NatsBus::shutdown`], creating the
    /// consumer when the server is reachable.
    ///
    /// A durable consumer keeps the filter it was created with; changing it needs a new name.
    pub fn subscribe(
        &self,
        name: &str,
        filters: &[&str],
        db: Db,
        handler: Arc<dyn Handler>,
        policy: RetryPolicy,
    ) -> Result<(), BusError> {
        self.subscribe_with(name, filters, db, handler, policy, SubscribeOptions::default())
    }

    pub fn subscribe_with(
        &self,
        name: &str,
        filters: &[&str],
        db: Db,
        handler: Arc<dyn Handler>,
        policy: RetryPolicy,
        options: SubscribeOptions,
    ) -> Result<(), BusError> {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err(BusError::Setup(format!("invalid consumer name {name:?}: use letters, digits, '_' and '-'")));
        }
        if let Some(bad) = filters.iter().find(|f| !f.starts_with(SUBJECT_PREFIX) || f.len() <= SUBJECT_PREFIX.len()) {
            return Err(BusError::Setup(format!("filter {bad:?} is not a flotilla.<type> subject filter")));
        }
        let worker = Worker {
            bus: self.clone(),
            consumer: Consumer::new(name, db, handler, policy),
            filters: filters.iter().map(|f| (*f).to_owned()).collect(),
            options,
            stop: self.inner.stop.subscribe(),
        };
        let task = tokio::spawn(worker.run());
        self.inner.tasks.lock().unwrap_or_else(|e| e.into_inner()).push(task);
        Ok(())
    }

    /// Stops every subscription (each finishes the message in hand) and flushes the client.
    pub async fn shutdown(&self) {
        let _ = self.inner.stop.send(true);
        let tasks: Vec<JoinHandle<()>> =
            std::mem::take(&mut *self.inner.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for task in tasks {
            let _ = task.await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), self.inner.client.flush()).await;
    }

    async fn publish_event(&self, event: &Event) -> Result<(), BusError> {
        self.connected()?;
        self.ensure_streams().await?;
        let mut headers = HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, event.id.as_str());
        let not_acked = |reason: String| BusError::NotAcknowledged { id: event.id.clone(), reason };
        let ack = self
            .inner
            .js
            .publish_with_headers(event.nats_subject(), headers, Bytes::from(event.to_json()))
            .await
            .map_err(|e| not_acked(e.to_string()))?
            .await
            .map_err(|e| {
                if e.kind() == jetstream::context::PublishErrorKind::StreamNotFound {
                    // The server lost its store (or the stream was deleted): re-create it.
                    self.inner.streams_ready.store(false, Ordering::Release);
                }
                not_acked(e.to_string())
            })?;
        if ack.duplicate {
            tracing::debug!(event_id = %event.id, "nats: duplicate publish dropped by the server");
        }
        metrics::counter!(EVENT_BUS_PUBLISHED_TOTAL).increment(1);
        Ok(())
    }

    /// Publishes a dead letter on `flotilla_dlq.<consumer>` (de-duplicated per consumer and event).
    async fn publish_dead_letter(
        &self,
        consumer: &str,
        payload: Bytes,
        event_id: &str,
        error: &str,
    ) -> Result<(), BusError> {
        self.connected()?;
        self.ensure_streams().await?;
        let mut headers = HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, format!("{consumer}:{event_id}").as_str());
        headers.insert(HEADER_CONSUMER, consumer);
        let one_line: String = error.chars().map(|c| if c.is_control() { ' ' } else { c }).take(1000).collect();
        headers.insert(HEADER_ERROR, one_line.as_str());
        self.inner
            .js
            .publish_with_headers(format!("{DLQ_SUBJECT_PREFIX}{consumer}"), headers, payload)
            .await
            .map_err(|e| BusError::NotAcknowledged { id: event_id.to_owned(), reason: e.to_string() })?
            .await
            .map_err(|e| BusError::NotAcknowledged { id: event_id.to_owned(), reason: e.to_string() })?;
        Ok(())
    }
}

impl Bus for NatsBus {
    fn publish<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<(), BusError>> {
        Box::pin(self.publish_event(event))
    }

    fn state(&self) -> BusState {
        match self.inner.client.connection_state() {
            State::Connected => BusState::Connected,
            State::Pending => BusState::Disconnected(format!("connecting to {}", self.inner.url)),
            State::Disconnected => BusState::Disconnected(format!("disconnected from {}", self.inner.url)),
        }
    }
}

/// The fetch loop of one subscription.
struct Worker {
    bus: NatsBus,
    consumer: Consumer,
    filters: Vec<String>,
    options: SubscribeOptions,
    stop: watch::Receiver<bool>,
}

/// Consecutive fetch errors after which the consumer handle is re-created.
const RECREATE_AFTER: u32 = 3;

impl Worker {
    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    async fn pause(&mut self, d: Duration) {
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = self.stop.changed() => {}
        }
    }

    /// Server-side filter: JetStream 2.9 takes one filter subject per consumer, so several
    /// filters subscribe to everything and the rest is filtered (and acked) here.
    fn server_filter(&self) -> String {
        match self.filters.as_slice() {
            [one] => one.clone(),
            _ => String::new(),
        }
    }

    async fn setup(&self) -> Result<PullConsumer, BusError> {
        self.bus.connected()?;
        self.bus.ensure_streams().await?;
        let stream = self
            .bus
            .inner
            .js
            .get_stream(EVENTS_STREAM)
            .await
            .map_err(|e| BusError::Setup(format!("stream {EVENTS_STREAM}: {e}")))?;
        let name = self.consumer.name().to_owned();
        let config = pull::Config {
            durable_name: Some(name.clone()),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::Explicit,
            ack_wait: self.options.ack_wait,
            max_deliver: i64::from(self.consumer.policy().max_attempts.max(1)) + 1,
            filter_subject: self.server_filter(),
            ..Default::default()
        };
        stream.get_or_create_consumer(&name, config).await.map_err(|e| BusError::Setup(format!("consumer {name}: {e}")))
    }

    async fn run(mut self) {
        let name = self.consumer.name().to_owned();
        tracing::info!(consumer = %name, filters = ?self.filters, "nats subscription started");
        let mut setup_failures: u32 = 0;
        'setup: while !self.stopping() {
            let pull = match self.setup().await {
                Ok(pull) => {
                    if setup_failures > 0 {
                        tracing::info!(consumer = %name, "nats consumer ready again");
                    }
                    setup_failures = 0;
                    pull
                }
                Err(e) => {
                    setup_failures = setup_failures.saturating_add(1);
                    if setup_failures == 1 || setup_failures.is_multiple_of(30) {
                        tracing::warn!(consumer = %name, error = %e, "nats consumer not ready; retrying");
                    }
                    self.pause(Duration::from_millis(250 * u64::from(setup_failures.min(8)))).await;
                    continue;
                }
            };
            let mut fetch_failures: u32 = 0;
            while !self.stopping() {
                let request =
                    pull.batch().max_messages(self.options.batch).expires(self.options.fetch_expires).messages();
                let batch = tokio::select! {
                    batch = request => batch,
                    _ = self.stop.changed() => break 'setup,
                };
                let mut batch = match batch {
                    Ok(batch) => batch,
                    Err(e) => {
                        fetch_failures += 1;
                        tracing::debug!(consumer = %name, error = %e, fetch_failures, "nats pull request failed");
                        if fetch_failures >= RECREATE_AFTER {
                            continue 'setup;
                        }
                        self.pause(Duration::from_millis(200 * u64::from(fetch_failures))).await;
                        continue;
                    }
                };
                loop {
                    let next = tokio::select! {
                        next = batch.next() => next,
                        _ = self.stop.changed() => break 'setup,
                    };
                    match next {
                        None => break,
                        Some(Ok(message)) => {
                            fetch_failures = 0;
                            self.handle(message).await;
                        }
                        Some(Err(e)) => {
                            fetch_failures += 1;
                            tracing::debug!(consumer = %name, error = %e, fetch_failures, "nats pull error");
                            break;
                        }
                    }
                }
                if fetch_failures >= RECREATE_AFTER {
                    self.pause(Duration::from_millis(500)).await;
                    continue 'setup;
                }
            }
        }
        tracing::info!(consumer = %name, "nats subscription stopped");
    }

    /// Runs one message through the consumer runner, then acknowledges it.
    async fn handle(&mut self, message: jetstream::Message) {
        let name = self.consumer.name().to_owned();
        let event = match Event::from_json(&message.payload) {
            Ok(event) => event,
            Err(e) => {
                // Not an event at all: keep it in the dead-letter stream, never redeliver.
                tracing::error!(consumer = %name, subject = %message.subject, error = %e, "nats: undecodable message dead-lettered");
                let id = message.info().map(|i| format!("stream-seq-{}", i.stream_sequence)).unwrap_or_default();
                if let Err(e) = self.bus.publish_dead_letter(&name, message.payload.clone(), &id, &e.to_string()).await
                {
                    tracing::warn!(consumer = %name, error = %e, "nats: cannot publish dead letter");
                }
                let _ = message.ack_with(AckKind::Term).await;
                return;
            }
        };
        if self.filters.len() > 1 && !self.filters.iter().any(|f| subject_matches(f, &message.subject)) {
            let _ = message.ack().await;
            return;
        }
        loop {
            match self.consumer.process(&event).await {
                Ok(Outcome::DeadLettered) => {
                    let error = crate::consumer::get_dead_letter_error(self.consumer.db(), &name, &event.id).await;
                    if let Err(e) =
                        self.bus.publish_dead_letter(&name, Bytes::from(event.to_json()), &event.id, &error).await
                    {
                        // The dead letter is durable in the consumer's table either way.
                        tracing::warn!(consumer = %name, event_id = %event.id, error = %e, "nats: cannot publish dead letter");
                    }
                    break;
                }
                Ok(_) => break,
                Err(e) => {
                    // The consumer's database is down: hold the message (extending its ack wait)
                    // and retry, rather than burning its limited redeliveries.
                    tracing::warn!(consumer = %name, event_id = %event.id, error = %e, "nats: cannot record event; holding it");
                    let _ = message.ack_with(AckKind::Progress).await;
                    self.pause(self.consumer.policy().max_backoff.min(Duration::from_secs(5))).await;
                    if self.stopping() {
                        return; // unacked: redelivered after ack_wait
                    }
                }
            }
        }
        if let Err(e) = message.ack().await {
            tracing::debug!(consumer = %name, event_id = %event.id, error = %e, "nats: ack failed; the redelivery will be a duplicate");
        }
    }
}
