//! Shared test support: databases (SQLite files, throwaway PostgreSQL), a recording handler, a
//! bus that fails on demand, metric reading and polling.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flotilla_events::{BoxFuture, Bus, BusError, BusState, Event, Handler, HandlerError};
use flotilla_runtime::db::{Db, Migrations, PoolSettings, sqlite_url_in};
use sqlx::AnyConnection;
use sqlx::migrate::Migrator;

static SQLITE: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES: Migrator = sqlx::migrate!("./migrations/postgres");
pub const MIGRATIONS: Migrations = Migrations { sqlite: &SQLITE, postgres: &POSTGRES };

/// The handler's own table: one row per handled event (no unique key, so a double-processing
/// would show up as two rows).
const HANDLED: &str = "CREATE TABLE IF NOT EXISTS handled (consumer TEXT NOT NULL, event_id TEXT NOT NULL, \
                       type TEXT NOT NULL, handled_at BIGINT NOT NULL)";

async fn finish(db: Db) -> Db {
    sqlx::raw_sql(HANDLED).execute(db.write()).await.expect("create handled table");
    db
}

/// A migrated SQLite database file in `dir`.
pub async fn sqlite_db(dir: &tempfile::TempDir, name: &'static str) -> Db {
    let db = Db::open_and_migrate(name, &sqlite_url_in(dir.path(), name), MIGRATIONS, PoolSettings::default())
        .await
        .expect("open sqlite");
    finish(db).await
}

/// A migrated fresh PostgreSQL database, or None (SKIPPED banner) without PostgreSQL.
pub async fn pg_db(name: &'static str) -> Option<Db> {
    let pg = flotilla_testkit::pg_or_skip()?;
    let url = pg.create_database();
    let db = Db::open_and_migrate(name, &url, MIGRATIONS, PoolSettings::default()).await.expect("open postgres");
    Some(finish(db).await)
}

pub fn event(ty: &str, n: usize) -> Event {
    Event::new(
        flotilla_events::event::sources::TASKS,
        ty,
        Some(format!("task-{n}")),
        Some("user-1".into()),
        serde_json::json!({ "n": n }),
    )
}

/// Enqueues `events` in one transaction and commits it (or rolls it back).
pub async fn write_events(db: &Db, events: &[Event], commit: bool) {
    let mut tx = db.write().begin().await.unwrap();
    for ev in events {
        flotilla_events::enqueue(&mut tx, ev).await.unwrap();
    }
    if commit { tx.commit().await.unwrap() } else { tx.rollback().await.unwrap() }
}

/// Records each event into `handled`; can fail its first N calls, or always.
pub struct Recorder {
    pub consumer: String,
    pub calls: AtomicU32,
    pub fail_first: AtomicU32,
    pub always_fail: AtomicBool,
    pub permanent: AtomicBool,
    /// Sleep this long inside the first call (to provoke a redelivery).
    pub first_call_sleep: Mutex<Option<Duration>>,
}

impl Recorder {
    pub fn new(consumer: &str) -> Arc<Self> {
        Arc::new(Self {
            consumer: consumer.to_owned(),
            calls: AtomicU32::new(0),
            fail_first: AtomicU32::new(0),
            always_fail: AtomicBool::new(false),
            permanent: AtomicBool::new(false),
            first_call_sleep: Mutex::new(None),
        })
    }

    pub fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Handler for Recorder {
    fn handle<'a>(&'a self, event: &'a Event, tx: &'a mut AnyConnection) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            let call = self.calls.fetch_add(1, Ordering::SeqCst);
            let sleep = self.first_call_sleep.lock().unwrap().take();
            if let Some(d) = sleep {
                tokio::time::sleep(d).await;
            }
            sqlx::query("INSERT INTO handled (consumer, event_id, type, handled_at) VALUES ($1, $2, $3, $4)")
                .bind(&self.consumer)
                .bind(&event.id)
                .bind(&event.r#type)
                .bind(i64::from(call))
                .execute(&mut *tx)
                .await?;
            if self.permanent.load(Ordering::SeqCst) {
                return Err(HandlerError::permanent("payload makes no sense"));
            }
            if self.always_fail.load(Ordering::SeqCst) {
                return Err(HandlerError::failed(format!("boom on call {call}")));
            }
            if self.fail_first.load(Ordering::SeqCst) > call {
                return Err(HandlerError::failed(format!("transient failure {call}")));
            }
            Ok(())
        })
    }
}

/// Rows in `handled` for `consumer` (committed ones only: failed attempts roll theirs back).
pub async fn handled(db: &Db, consumer: &str) -> Vec<String> {
    sqlx::query_scalar("SELECT event_id FROM handled WHERE consumer = $1 ORDER BY handled_at, event_id")
        .bind(consumer)
        .fetch_all(db.read())
        .await
        .unwrap()
}

pub async fn inbox_count(db: &Db, consumer: &str) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM inbox WHERE consumer = $1")
        .bind(consumer)
        .fetch_one(db.read())
        .await
        .unwrap()
}

/// A bus that records what it accepted, and can be "down", fail its next N publishes, or fail
/// every publish once it has accepted `fail_after` events.
#[derive(Default)]
pub struct FlakyBus {
    pub published: Mutex<Vec<String>>,
    pub down: AtomicBool,
    pub fail_next: AtomicU32,
    pub fail_after: Mutex<Option<usize>>,
    pub attempts: AtomicU32,
    pub inner: Option<Arc<dyn Bus>>,
}

impl FlakyBus {
    pub fn ids(&self) -> Vec<String> {
        self.published.lock().unwrap().clone()
    }
}

impl Bus for FlakyBus {
    fn publish<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<(), BusError>> {
        Box::pin(async move {
            self.attempts.fetch_add(1, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) {
                return Err(BusError::Unavailable("test bus is down".into()));
            }
            let failing = self.fail_next.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
            let full = self.fail_after.lock().unwrap().is_some_and(|n| self.published.lock().unwrap().len() >= n);
            if failing || full {
                return Err(BusError::NotAcknowledged { id: event.id.clone(), reason: "injected".into() });
            }
            if let Some(inner) = &self.inner {
                inner.publish(event).await?;
            }
            self.published.lock().unwrap().push(event.id.clone());
            Ok(())
        })
    }

    fn state(&self) -> BusState {
        BusState::Connected
    }
}

/// Polls `check` until it returns true, panicking with `what` after `timeout`.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of one series in the process-wide Prometheus registry (0 if absent).
pub fn metric(name: &str, labels: &[(&str, &str)]) -> f64 {
    let text = flotilla_runtime::telemetry::metrics_handle().render();
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Installs the recorder (call first in tests that read metrics).
pub fn metrics_on() {
    let _ = flotilla_runtime::telemetry::metrics_handle();
}
