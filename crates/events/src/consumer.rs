//! The idempotent consumer runner shared by both buses, and the durable dead letters.
//!
//! Processing one delivered event = one transaction on the consumer's own database:
//! `INSERT INTO inbox (consumer, event_id, …) ON CONFLICT DO NOTHING`; no row inserted means the
//! event was processed before (a duplicate: commit and acknowledge); otherwise the handler runs in
//! the same transaction and everything commits together. A failed attempt rolls back and is
//! retried with jittered exponential back-off; after `max_attempts` the event is written to the
//! `dead_letters` table (and, on NATS, to the dead-letter stream) and acknowledged.
//!
//! An unreachable consumer database is not the event's fault: those attempts never dead-letter;
//! the runner returns [`ConsumeError::Unavailable`] and the bus redelivers later.

use std::sync::Arc;
use std::time::Duration;

use flotilla_runtime::db::Db;
use flotilla_runtime::ids::new_id;
use flotilla_runtime::time::now_ms;
use rand::Rng;
use serde::Serialize;
use sqlx::Row;

use crate::bus::{Handler, HandlerError, is_unavailable};
use crate::event::Event;
use crate::metrics_names::{EVENT_BUS_CONSUMED_TOTAL, EVENT_BUS_DEAD_LETTER_TOTAL, outcome};

/// The inbox: one row per (consumer, processed event). Same DDL on both engines.
pub const INBOX_SQLITE: &str = "CREATE TABLE inbox (
    consumer TEXT NOT NULL,
    event_id TEXT NOT NULL,
    processed_at BIGINT NOT NULL,
    PRIMARY KEY (consumer, event_id)
);
CREATE INDEX inbox_processed_at ON inbox (processed_at);
";
pub const INBOX_POSTGRES: &str = INBOX_SQLITE;

/// Durable dead letters (one row per consumer and event). Same DDL on both engines.
pub const DEAD_LETTERS_SQLITE: &str = "CREATE TABLE dead_letters (
    id TEXT PRIMARY KEY,
    consumer TEXT NOT NULL,
    event_id TEXT NOT NULL,
    type TEXT NOT NULL,
    payload TEXT NOT NULL,
    error TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    replayed_at BIGINT NULL,
    UNIQUE (consumer, event_id)
);
CREATE INDEX dead_letters_created_at ON dead_letters (created_at);
";
pub const DEAD_LETTERS_POSTGRES: &str = DEAD_LETTERS_SQLITE;

/// Attempts and back-off of one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Handler attempts before the event is dead-lettered (at least 1).
    pub max_attempts: u32,
    pub base_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { max_attempts: 5, base_backoff: Duration::from_millis(100), max_backoff: Duration::from_secs(10) }
    }
}

impl RetryPolicy {
    /// The pause after failed attempt `attempt` (1-based): `base · 2^(attempt-1)`, capped at
    /// `max_backoff`, with jitter (uniform in the upper half) so that consumers do not retry in
    /// lockstep.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self.base_backoff.saturating_mul(1u32 << attempt.saturating_sub(1).min(20)).min(self.max_backoff);
        let nanos = u64::try_from(exp.as_nanos()).unwrap_or(u64::MAX);
        if nanos < 2 {
            return exp;
        }
        Duration::from_nanos(rand::thread_rng().gen_range(nanos / 2..=nanos))
    }

    fn attempts(&self) -> u32 {
        self.max_attempts.max(1)
    }
}

/// What happened to a delivered event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The handler ran and its effects committed with the inbox row.
    Processed,
    /// The inbox already had it: nothing was done.
    Duplicate,
    /// Every attempt failed: it is in `dead_letters` now.
    DeadLettered,
}

#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    /// The consumer's database is unreachable: nothing was recorded; redeliver later.
    #[error("consumer {consumer}: database unavailable: {reason}")]
    Unavailable { consumer: String, reason: String },
    /// The dead letter itself could not be written: nothing was recorded; redeliver later.
    #[error("consumer {consumer}: cannot record dead letter for event {event_id}: {source}")]
    DeadLetter { consumer: String, event_id: String, source: sqlx::Error },
}

/// Why one attempt failed.
enum AttemptError {
    Unavailable(String),
    Handler(HandlerError),
}

impl From<sqlx::Error> for AttemptError {
    fn from(e: sqlx::Error) -> Self {
        if is_unavailable(&e) { AttemptError::Unavailable(e.to_string()) } else { AttemptError::Handler(e.into()) }
    }
}

/// One named consumer: its database (inbox, dead letters), its handler and its retry policy.
#[derive(Clone)]
pub struct Consumer {
    name: Arc<str>,
    db: Db,
    handler: Arc<dyn Handler>,
    policy: RetryPolicy,
}

impl Consumer {
    pub fn new(name: impl Into<String>, db: Db, handler: Arc<dyn Handler>, policy: RetryPolicy) -> Self {
        let name: Arc<str> = Arc::from(name.into());
        // Present (at 0) from the start, so alert rules on it have a series before the first
        // dead letter, and a scrape of a fresh system shows every contract metric.
        metrics::counter!(EVENT_BUS_DEAD_LETTER_TOTAL, "consumer" => name.to_string()).increment(0);
        Self { name, db, handler, policy }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn policy(&self) -> RetryPolicy {
        self.policy
    }

    /// Processes one delivered event exactly once per consumer (see the module docs). `Ok` means
    /// the bus may acknowledge it; `Err` means nothing was recorded and it must be redelivered.
    pub async fn process(&self, event: &Event) -> Result<Outcome, ConsumeError> {
        let max = self.policy.attempts();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let error = match self.attempt(event).await {
                Ok(true) => {
                    self.count(outcome::OK);
                    tracing::debug!(consumer = %self.name, event_id = %event.id, r#type = %event.r#type, "event processed");
                    return Ok(Outcome::Processed);
                }
                Ok(false) => {
                    self.count(outcome::DUPLICATE);
                    tracing::debug!(consumer = %self.name, event_id = %event.id, "duplicate event dropped");
                    return Ok(Outcome::Duplicate);
                }
                Err(e) => e,
            };
            match error {
                AttemptError::Unavailable(reason) => {
                    if attempt >= max {
                        tracing::warn!(consumer = %self.name, event_id = %event.id, %reason, "consumer database unavailable; event left for redelivery");
                        return Err(ConsumeError::Unavailable { consumer: self.name.to_string(), reason });
                    }
                    tracing::warn!(consumer = %self.name, event_id = %event.id, attempt, %reason, "consumer database unavailable; retrying");
                }
                AttemptError::Handler(e) => {
                    if attempt >= max || matches!(e, HandlerError::Permanent(_)) {
                        self.dead_letter(event, &e, attempt).await?;
                        return Ok(Outcome::DeadLettered);
                    }
                    tracing::warn!(consumer = %self.name, event_id = %event.id, r#type = %event.r#type, attempt, error = %e, "handler failed; retrying");
                }
            }
            self.count(outcome::RETRY);
            tokio::time::sleep(self.policy.backoff(attempt)).await;
        }
    }

    /// Replays one of this consumer's database's dead letters (see [`replay_dead_letter`]).
    pub async fn replay_dead_letter(&self, id: &str) -> Result<ReplayOutcome, ReplayError> {
        replay_dead_letter(&self.db, self.handler.as_ref(), id).await
    }

    /// One attempt: `Ok(true)` processed, `Ok(false)` duplicate.
    async fn attempt(&self, event: &Event) -> Result<bool, AttemptError> {
        let mut tx = self.db.begin().await?;
        if !insert_inbox(&mut tx, &self.name, &event.id).await? {
            tx.commit().await?;
            return Ok(false);
        }
        if let Err(e) = self.handler.handle(event, &mut tx).await {
            // Dropping `tx` rolls back; do it explicitly to free the connection at once.
            let _ = tx.rollback().await;
            return Err(if e.is_unavailable() {
                AttemptError::Unavailable(e.to_string())
            } else {
                AttemptError::Handler(e)
            });
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn dead_letter(&self, event: &Event, error: &HandlerError, attempts: u32) -> Result<(), ConsumeError> {
        sqlx::query(
            "INSERT INTO dead_letters (id, consumer, event_id, type, payload, error, attempts, created_at, replayed_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL) \
             ON CONFLICT (consumer, event_id) DO UPDATE SET error = excluded.error, \
             attempts = dead_letters.attempts + excluded.attempts, replayed_at = NULL",
        )
        .bind(new_id())
        .bind(&*self.name)
        .bind(&event.id)
        .bind(&event.r#type)
        .bind(event.to_json())
        .bind(error.to_string())
        .bind(i64::from(attempts))
        .bind(now_ms())
        .execute(self.db.write())
        .await
        .map_err(|source| ConsumeError::DeadLetter {
            consumer: self.name.to_string(),
            event_id: event.id.clone(),
            source,
        })?;
        self.count(outcome::DEAD_LETTER);
        metrics::counter!(EVENT_BUS_DEAD_LETTER_TOTAL, "consumer" => self.name.to_string()).increment(1);
        tracing::error!(consumer = %self.name, event_id = %event.id, r#type = %event.r#type, attempts, error = %error, "event dead-lettered");
        Ok(())
    }

    fn count(&self, outcome: &'static str) {
        metrics::counter!(EVENT_BUS_CONSUMED_TOTAL, "consumer" => self.name.to_string(), "outcome" => outcome)
            .increment(1);
    }
}

/// Records (consumer, event) in the inbox; false if it was there already.
async fn insert_inbox(conn: &mut sqlx::AnyConnection, consumer: &str, event_id: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO inbox (consumer, event_id, processed_at) VALUES ($1, $2, $3) \
         ON CONFLICT (consumer, event_id) DO NOTHING",
    )
    .bind(consumer)
    .bind(event_id)
    .bind(now_ms())
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Whether `consumer` has processed `event_id` (its inbox has it).
pub async fn is_processed(db: &Db, consumer: &str, event_id: &str) -> Result<bool, sqlx::Error> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM inbox WHERE consumer = $1 AND event_id = $2")
        .bind(consumer)
        .bind(event_id)
        .fetch_one(db.read())
        .await?;
    Ok(n > 0)
}

/// Deletes inbox rows processed before `before_ms` (keep them far longer than any redelivery can
/// take: a redelivery after its inbox row is gone would be processed again). Returns the count.
pub async fn prune_inbox(db: &Db, before_ms: i64) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("DELETE FROM inbox WHERE processed_at < $1").bind(before_ms).execute(db.write()).await?;
    Ok(done.rows_affected())
}

/// One dead letter, as the admin endpoints show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetter {
    pub id: String,
    pub consumer: String,
    pub event_id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    /// The full event envelope (JSON).
    pub payload: String,
    pub error: String,
    pub attempts: i64,
    pub created_at: i64,
    pub replayed_at: Option<i64>,
}

impl DeadLetter {
    /// The dead-lettered event.
    pub fn event(&self) -> Result<Event, crate::event::EventError> {
        Event::from_json(self.payload.as_bytes())
    }

    fn from_row(row: &sqlx::any::AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: row.try_get("id")?,
            consumer: row.try_get("consumer")?,
            event_id: row.try_get("event_id")?,
            event_type: row.try_get("type")?,
            payload: row.try_get("payload")?,
            error: row.try_get("error")?,
            attempts: row.try_get("attempts")?,
            created_at: row.try_get("created_at")?,
            replayed_at: row.try_get("replayed_at")?,
        })
    }
}

/// The recorded error of a consumer's dead letter (empty if none).
pub(crate) async fn get_dead_letter_error(db: &Db, consumer: &str, event_id: &str) -> String {
    sqlx::query_scalar("SELECT error FROM dead_letters WHERE consumer = $1 AND event_id = $2")
        .bind(consumer)
        .bind(event_id)
        .fetch_optional(db.read())
        .await
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// The newest dead letters first (at most `limit`, clamped to 1..=1000).
pub async fn list_dead_letters(db: &Db, limit: i64) -> Result<Vec<DeadLetter>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, consumer, event_id, type, payload, error, attempts, created_at, replayed_at \
         FROM dead_letters ORDER BY created_at DESC, id DESC LIMIT $1",
    )
    .bind(limit.clamp(1, 1000))
    .fetch_all(db.read())
    .await?;
    rows.iter().map(DeadLetter::from_row).collect()
}

/// One dead letter by id.
pub async fn get_dead_letter(db: &Db, id: &str) -> Result<Option<DeadLetter>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT id, consumer, event_id, type, payload, error, attempts, created_at, replayed_at \
         FROM dead_letters WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(db.read())
    .await?;
    row.as_ref().map(DeadLetter::from_row).transpose()
}

/// What a replay did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayOutcome {
    /// The handler ran and committed; `replayed_at` is set.
    Processed,
    /// The consumer had already processed the event (an earlier replay or a redelivery): nothing
    /// was done.
    AlreadyProcessed,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("no dead letter with id {0}")]
    NotFound(String),
    #[error("the dead letter's payload is not a valid event: {0}")]
    InvalidPayload(String),
    /// The handler failed again; the dead letter stays (its error and attempts are updated).
    #[error("handler failed again: {0}")]
    Handler(HandlerError),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
}

/// Runs `handler` once more on a dead letter, through the same inbox path as a delivery (so a
/// replay of an event that was processed meanwhile is a no-op), as the dead letter's consumer.
/// On success `replayed_at` is set in the same transaction.
pub async fn replay_dead_letter(db: &Db, handler: &dyn Handler, id: &str) -> Result<ReplayOutcome, ReplayError> {
    let letter = get_dead_letter(db, id).await?.ok_or_else(|| ReplayError::NotFound(id.to_owned()))?;
    let event = letter.event().map_err(|e| ReplayError::InvalidPayload(e.to_string()))?;
    let mut tx = db.begin().await?;
    if !insert_inbox(&mut tx, &letter.consumer, &event.id).await? {
        tx.commit().await?;
        metrics::counter!(EVENT_BUS_CONSUMED_TOTAL, "consumer" => letter.consumer.clone(), "outcome" => outcome::DUPLICATE)
            .increment(1);
        tracing::info!(dead_letter = id, consumer = %letter.consumer, event_id = %event.id, "replay: already processed");
        return Ok(ReplayOutcome::AlreadyProcessed);
    }
    if let Err(e) = handler.handle(&event, &mut tx).await {
        let _ = tx.rollback().await;
        sqlx::query("UPDATE dead_letters SET error = $1, attempts = attempts + 1 WHERE id = $2")
            .bind(e.to_string())
            .bind(id)
            .execute(db.write())
            .await?;
        tracing::warn!(dead_letter = id, consumer = %letter.consumer, event_id = %event.id, error = %e, "replay failed");
        return Err(ReplayError::Handler(e));
    }
    sqlx::query("UPDATE dead_letters SET replayed_at = COALESCE(replayed_at, $1) WHERE id = $2")
        .bind(now_ms())
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    metrics::counter!(EVENT_BUS_CONSUMED_TOTAL, "consumer" => letter.consumer.clone(), "outcome" => outcome::OK)
        .increment(1);
    tracing::info!(dead_letter = id, consumer = %letter.consumer, event_id = %event.id, "dead letter replayed");
    Ok(ReplayOutcome::Processed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        let p = RetryPolicy::default();
        for attempt in 1..=10 {
            let exp = (p.base_backoff * 2u32.pow(attempt - 1)).min(p.max_backoff);
            let d = p.backoff(attempt);
            assert!(d <= exp && d >= exp / 2, "attempt {attempt}: {d:?} vs {exp:?}");
        }
        assert!(p.backoff(1000) <= p.max_backoff);
        let zero = RetryPolicy { base_backoff: Duration::ZERO, ..p };
        assert_eq!(zero.backoff(3), Duration::ZERO);
    }
}
