//! The transactional outbox and its relay.
//!
//! A service writes its events with [`enqueue`] inside the transaction of the state change, so
//! both commit or neither does. The [`Relay`] publishes unpublished rows in `seq` order, marks
//! each one once the bus acknowledged it, and stops at the first failure (the rest wait, keeping
//! their order, and are retried with back-off). A crash between publish and mark republishes the
//! row; the bus (NATS `Nats-Msg-Id`) and the consumers (inbox) drop the duplicate.
//!
//! One relay publishes per database: on PostgreSQL it holds a session advisory lock on a
//! dedicated connection (other replicas retry every second); on SQLite the single process owns
//! the file.
//!
//! Ordering: rows are published in `seq` order as they become visible. On PostgreSQL two
//! concurrent transactions may commit in the opposite order of their `seq`, so a row can become
//! visible after a later one was published; consumers must not assume a global order across
//! unrelated writes.

use std::sync::Arc;
use std::time::Duration;

use flotilla_runtime::db::{Backend, Db};
use flotilla_runtime::time::now_ms;
use sqlx::{Any, AnyConnection, AssertSqlSafe, Connection, Executor};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::bus::{Bus, BusError};
use crate::event::Event;
use crate::metrics_names::OUTBOX_PENDING;

/// The outbox table for SQLite (paste into the service's `migrations/sqlite`).
pub const OUTBOX_SQLITE: &str = "CREATE TABLE outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    published_at BIGINT NULL
);
CREATE INDEX outbox_unpublished ON outbox (seq) WHERE published_at IS NULL;
";

/// The outbox table for PostgreSQL (paste into the service's `migrations/postgres`).
pub const OUTBOX_POSTGRES: &str = "CREATE TABLE outbox (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    published_at BIGINT NULL
);
CREATE INDEX outbox_unpublished ON outbox (seq) WHERE published_at IS NULL;
";

/// The key of the PostgreSQL advisory lock held by the publishing relay (per database).
pub const RELAY_LOCK_KEY: i64 = 0x0f10_7111_a0b0_0001;

/// Writes `event` to the outbox on `conn`, normally the caller's open transaction:
///
/// ```ignore
/// let mut tx = db.begin().await?;
/// /* the state change */
/// flotilla_events::enqueue(&mut tx, &event).await?;
/// tx.commit().await?;
/// relay.notify();
/// ```
///
/// Fails (`sqlx::Error::Encode`) if the event is invalid (see [`Event::validate`]).
pub async fn enqueue(conn: &mut AnyConnection, event: &Event) -> Result<(), sqlx::Error> {
    // An invalid envelope fails the business write now, instead of being skipped by the relay.
    event.validate().map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    sqlx::query("INSERT INTO outbox (id, type, payload, created_at, published_at) VALUES ($1, $2, $3, $4, NULL)")
        .bind(&event.id)
        .bind(&event.r#type)
        .bind(event.to_json())
        .bind(now_ms())
        .execute(conn)
        .await?;
    Ok(())
}

/// Rows not yet published.
pub async fn pending_count(db: &Db) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE published_at IS NULL").fetch_one(db.read()).await
}

/// Deletes rows published before `before_ms` (retention); returns how many.
pub async fn prune_published(db: &Db, before_ms: i64) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("DELETE FROM outbox WHERE published_at IS NOT NULL AND published_at < $1")
        .bind(before_ms)
        .execute(db.write())
        .await?;
    Ok(done.rows_affected())
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("outbox database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// One pass without any lock: publishes up to `limit` unpublished rows in order, stopping at the
/// first failure. Returns how many were published. The [`Relay`] calls the same code; use this
/// directly only where no relay runs (tests, a one-shot CLI flush).
pub async fn publish_pending(db: &Db, bus: &dyn Bus, limit: i64) -> Result<usize, RelayError> {
    publish_batch(None, db, bus, limit).await
}

async fn fetch_batch<'e, E: Executor<'e, Database = Any>>(
    ex: E,
    limit: i64,
) -> Result<Vec<(i64, String)>, sqlx::Error> {
    sqlx::query_as("SELECT seq, payload FROM outbox WHERE published_at IS NULL ORDER BY seq LIMIT $1")
        .bind(limit)
        .fetch_all(ex)
        .await
}

/// Marks the rows `seqs` published in one statement: one write per pass instead of one per event
/// (on SQLite every write waits for the single writer that the service's own writes need).
/// An explicit list, never a range: a row with a seq in between may commit after the batch was
/// read, and it has not been published.
async fn mark_published<'e, E: Executor<'e, Database = Any>>(ex: E, seqs: &[i64]) -> Result<(), sqlx::Error> {
    if seqs.is_empty() {
        return Ok(());
    }
    let placeholders = (2..seqs.len() + 2).map(|n| format!("${n}")).collect::<Vec<_>>().join(", ");
    let sql = format!("UPDATE outbox SET published_at = $1 WHERE seq IN ({placeholders})");
    let query = seqs.iter().fold(sqlx::query(AssertSqlSafe(sql)).bind(now_ms()), |q, seq| q.bind(*seq));
    query.execute(ex).await?;
    Ok(())
}

/// Publishes one batch; `lock_conn` (PostgreSQL) is the connection holding the advisory lock,
/// used for reads and marks so that losing it (and thus the lock) stops the pass.
async fn publish_batch(
    mut lock_conn: Option<&mut AnyConnection>,
    db: &Db,
    bus: &dyn Bus,
    limit: i64,
) -> Result<usize, RelayError> {
    let rows = match lock_conn.as_deref_mut() {
        Some(conn) => fetch_batch(conn, limit).await?,
        None => fetch_batch(db.read(), limit).await?,
    };
    // Publish in order, stop at the first failure, then mark what went out (a crash before the
    // mark republishes the pass: consumers drop duplicates by event id).
    let mut published = Vec::with_capacity(rows.len());
    let mut failure = None;
    for (seq, payload) in rows {
        match Event::from_json(payload.as_bytes()) {
            Ok(event) => {
                if let Err(e) = bus.publish(&event).await {
                    failure = Some(e);
                    break;
                }
            }
            // Only a hand-edited row can get here (enqueue writes valid envelopes). Skipping it
            // beats blocking every later event forever; the log keeps the payload.
            Err(e) => tracing::error!(seq, error = %e, %payload, "outbox row is not a valid event; skipping it"),
        }
        published.push(seq);
    }
    match lock_conn {
        Some(conn) => mark_published(conn, &published).await?,
        None => mark_published(db.write(), &published).await?,
    }
    match failure {
        Some(e) => Err(e.into()),
        None => Ok(published.len()),
    }
}

/// Relay tuning.
#[derive(Debug, Clone, Copy)]
pub struct RelayOptions {
    /// Rows per pass.
    pub batch_size: i64,
    /// Longest idle wait between passes when nobody calls [`RelayHandle::notify`].
    pub poll_interval: Duration,
    /// Back-off after a failed pass starts at `poll_interval` and doubles up to this.
    pub max_backoff: Duration,
    /// How often a replica that does not hold the PostgreSQL lock tries to take it.
    pub lock_retry: Duration,
}

impl Default for RelayOptions {
    fn default() -> Self {
        Self {
            batch_size: 100,
            poll_interval: Duration::from_millis(250),
            max_backoff: Duration::from_secs(5),
            lock_retry: Duration::from_secs(1),
        }
    }
}

/// Wakes a relay right after a commit (cheap to clone; keep one in the service state).
#[derive(Clone, Default)]
pub struct RelayNotifier(Arc<Notify>);

impl RelayNotifier {
    pub fn notify(&self) {
        self.0.notify_one();
    }
}

/// The outbox relay of one service database.
pub struct Relay {
    service: &'static str,
    db: Db,
    bus: Arc<dyn Bus>,
    options: RelayOptions,
    wake: RelayNotifier,
    stop: watch::Receiver<bool>,
    lock: Option<AnyConnection>,
}

/// Controls a running relay.
pub struct RelayHandle {
    wake: RelayNotifier,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl RelayHandle {
    /// Wakes the relay now (call after committing a transaction that enqueued events).
    pub fn notify(&self) {
        self.wake.notify();
    }

    /// A cloneable waker for request handlers.
    pub fn notifier(&self) -> RelayNotifier {
        self.wake.clone()
    }

    /// Stops the relay after its current pass and waits for it (releasing the PostgreSQL lock).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

impl Relay {
    /// Spawns the relay of `service`'s database with default options.
    pub fn spawn(service: &'static str, db: Db, bus: Arc<dyn Bus>) -> RelayHandle {
        Self::spawn_with(service, db, bus, RelayOptions::default())
    }

    pub fn spawn_with(service: &'static str, db: Db, bus: Arc<dyn Bus>, options: RelayOptions) -> RelayHandle {
        let wake = RelayNotifier::default();
        let (stop_tx, stop) = watch::channel(false);
        let relay = Relay { service, db, bus, options, wake: wake.clone(), stop, lock: None };
        let task = tokio::spawn(relay.run());
        RelayHandle { wake, stop: stop_tx, task }
    }

    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Sleeps for `d`, returning early on stop (and, if `wakeable`, on notify).
    async fn pause(&mut self, d: Duration, wakeable: bool) {
        let wake = self.wake.0.clone();
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = wake.notified(), if wakeable => {}
            _ = self.stop.changed() => {}
        }
    }

    async fn run(mut self) {
        tracing::info!(service = self.service, "outbox relay started");
        let mut failures: u32 = 0;
        while !self.stopping() {
            if self.db.backend == Backend::Postgres && self.lock.is_none() {
                match self.try_lock().await {
                    Ok(true) => tracing::info!(service = self.service, "outbox relay: publishing (lock acquired)"),
                    Ok(false) => {
                        record_pending(self.service, &self.db).await;
                        self.pause(self.options.lock_retry, false).await;
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(service = self.service, error = %e, "outbox relay: cannot reach the database");
                        self.pause(self.options.lock_retry, false).await;
                        continue;
                    }
                }
            }
            let result = match self.bus.state() {
                crate::BusState::Disconnected(why) => Err(RelayError::Bus(BusError::Unavailable(why))),
                crate::BusState::Connected => {
                    publish_batch(self.lock.as_mut(), &self.db, self.bus.as_ref(), self.options.batch_size).await
                }
            };
            record_pending(self.service, &self.db).await;
            match result {
                Ok(n) => {
                    if failures > 0 {
                        tracing::info!(service = self.service, "outbox relay: publishing again");
                        failures = 0;
                    }
                    if n > 0 {
                        tracing::debug!(service = self.service, published = n, "outbox relay pass");
                    }
                    if n as i64 >= self.options.batch_size {
                        continue; // more are waiting
                    }
                    self.pause(self.options.poll_interval, true).await;
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    if failures == 1 || failures.is_multiple_of(20) {
                        tracing::warn!(service = self.service, error = %e, failures, "outbox relay: publish failed; will retry (writes still succeed)");
                    }
                    if matches!(e, RelayError::Db(_)) {
                        // The lock connection may be gone, and the lock with it: take it again.
                        self.release_lock().await;
                    }
                    let exp = 1u32 << failures.saturating_sub(1).min(16);
                    let delay = self.options.poll_interval.saturating_mul(exp).min(self.options.max_backoff);
                    self.pause(delay, false).await;
                }
            }
        }
        self.release_lock().await;
        tracing::info!(service = self.service, "outbox relay stopped");
    }

    /// PostgreSQL: tries to take the advisory lock on a connection of its own.
    async fn try_lock(&mut self) -> Result<bool, sqlx::Error> {
        // Detached: the connection never goes back to the pool with the session lock held.
        let mut conn = self.db.write().acquire().await?.detach();
        let got: i64 =
            sqlx::query_scalar("SELECT CAST(CASE WHEN pg_try_advisory_lock($1) THEN 1 ELSE 0 END AS BIGINT)")
                .bind(RELAY_LOCK_KEY)
                .fetch_one(&mut conn)
                .await?;
        if got == 1 {
            self.lock = Some(conn);
            Ok(true)
        } else {
            let _ = conn.close().await;
            Ok(false)
        }
    }

    async fn release_lock(&mut self) {
        if let Some(mut conn) = self.lock.take() {
            let _ = sqlx::query("SELECT pg_advisory_unlock($1)").bind(RELAY_LOCK_KEY).execute(&mut conn).await;
            let _ = conn.close().await;
        }
    }
}

/// Sets `outbox_pending{service}` (a free function: `&Relay` is not `Send`).
async fn record_pending(service: &'static str, db: &Db) {
    match pending_count(db).await {
        Ok(n) => metrics::gauge!(OUTBOX_PENDING, "service" => service).set(n as f64),
        Err(e) => tracing::debug!(service, error = %e, "outbox relay: cannot count pending rows"),
    }
}
