//! The audit service: an append-only log of every event, the users' activity feed, the admins'
//! audit search, a retention job, and the admin endpoints of this consumer's dead letters.
//!
//! # Append-only
//!
//! `audit_log` holds one record per event id, ever. The code only ever inserts into it, from
//! [`handler`] inside the consumer's inbox transaction and with `ON CONFLICT (id) DO NOTHING` (so a
//! redelivered or replayed event never makes a second record), and deletes from it only in the
//! retention job ([`store::Store::delete_older_than`], run by [`spawn_retention`]). No statement
//! of this crate updates a record; a test greps the sources to keep it so.
//!
//! # Personal data
//!
//! Event `data` may hold personal data: it is stored and served to its user and to admins, and
//! never logged. Logs name event ids and types only.
//!
//! # Wiring (done by the binary)
//!
//! - embedded: `bus.subscribe(CONSUMER, db.clone(), handler(db.clone()), policy)` on the
//!   `MemoryBus`;
//! - distributed: `nats.subscribe(CONSUMER, &["flotilla.>"], db.clone(), handler(db.clone()), policy)`;
//! - `app(&rt, db.clone(), auth)` for HTTP (or [`app_with_bus`], whose `/ready` includes the
//!   bus the consumer reads from) and `spawn_retention(db, &Config::from_env(&env)?)`.

pub mod cursor;
pub mod error;
pub mod http;
pub mod openapi;
pub mod query;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use flotilla_events::{BoxFuture, Bus, Event, Handler, HandlerError};
use flotilla_runtime::auth::AuthContext;
use flotilla_runtime::config::{AUDIT_RETENTION_DAYS, ConfigError, Env, RuntimeConfig};
use flotilla_runtime::db::{Db, Migrations};
use flotilla_runtime::http::{Ops, service_router};
use flotilla_runtime::time::now_ms;
use sqlx::AnyConnection;
use sqlx::migrate::Migrator;

pub use error::AuditError;
pub use openapi::openapi;
pub use store::Store;

pub const SERVICE: &str = "audit";
/// The consumer name of the audit service (inbox rows, dead letters, NATS durable consumer).
pub const CONSUMER: &str = "audit";

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

pub static MIGRATIONS: Migrations = Migrations { sqlite: &SQLITE_MIGRATIONS, postgres: &POSTGRES_MIGRATIONS };

/// The event tables [`MIGRATIONS`] create (it consumes every event and publishes none), for their pruning.
pub const EVENT_TABLES: flotilla_events::retention::EventTables = flotilla_events::retention::EventTables::INBOX;

/// How often the retention job runs (it also runs once at start).
pub const RETENTION_INTERVAL: Duration = Duration::from_secs(3600);

const DAY: Duration = Duration::from_secs(86_400);

/// The audit service's own settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Records whose event time is older than this are deleted by the retention job.
    pub retention: Duration,
}

impl Config {
    /// `FLOTILLA_AUDIT_RETENTION_DAYS` (1 to 3650; 365 by default).
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let days = env.int_in(AUDIT_RETENTION_DAYS, 1, 3650)?;
        Ok(Self { retention: DAY * days as u32 })
    }
}

/// The audit consumer's handler: appends every event it is given to `audit_log`, in the
/// consumer's transaction.
struct Recorder;

impl Handler for Recorder {
    fn handle<'a>(&'a self, event: &'a Event, tx: &'a mut AnyConnection) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            let inserted = store::append(tx, event, now_ms()).await?;
            if inserted {
                tracing::debug!(event_id = %event.id, r#type = %event.r#type, "event recorded");
            } else {
                tracing::debug!(event_id = %event.id, r#type = %event.r#type, "event already recorded");
            }
            Ok(())
        })
    }
}

/// The handler to subscribe as [`CONSUMER`]: appends every event to the audit log (idempotent:
/// one record per event id). `db` is the audit database the consumer runs on; the handler itself
/// writes through the consumer's transaction.
pub fn handler(db: Db) -> Arc<dyn Handler> {
    let _ = db; // the consumer passes its transaction on this database
    Arc::new(Recorder)
}

/// The service router (API + /health /ready /metrics), already wrapped by `service_router`.
pub fn app(rt: &RuntimeConfig, db: Db, auth: AuthContext) -> axum::Router {
    let h = handler(db.clone());
    app_with_handler(rt, db, auth, h)
}

/// [`app`] whose `/ready` also reports the event bus the consumer reads from (`event_bus`):
/// while it is disconnected no event reaches the log (distributed mode).
pub fn app_with_bus(rt: &RuntimeConfig, db: Db, auth: AuthContext, bus: Arc<dyn Bus>) -> axum::Router {
    let ops = Ops::new().database(&db).token_keys(&auth.keys).check(
        "event_bus",
        Arc::new(move || {
            let state = bus.state();
            Box::pin(async move { if state.is_connected() { Ok(()) } else { Err(state.to_string()) } })
        }),
    );
    service_router(SERVICE, http::router(Store::new(db.clone()), handler(db), &auth), ops, rt)
}

/// [`app`] with another handler for dead-letter replays (tests use one that fails on demand).
pub fn app_with_handler(rt: &RuntimeConfig, db: Db, auth: AuthContext, handler: Arc<dyn Handler>) -> axum::Router {
    let ops = Ops::new().database(&db).token_keys(&auth.keys);
    service_router(SERVICE, http::router(Store::new(db), handler, &auth), ops, rt)
}

/// Runs the retention job now and then every [`RETENTION_INTERVAL`]: deletes the records whose
/// event time is older than `cfg.retention` (and inbox rows as old). Failures are logged and
/// retried at the next run. Abort the handle to stop it.
pub fn spawn_retention(db: Db, cfg: &Config) -> tokio::task::JoinHandle<()> {
    let retention = cfg.retention;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(RETENTION_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let store = Store::new(db);
        loop {
            tick.tick().await; // the first tick is immediate
            let cutoff = now_ms().saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
            match store.enforce_retention(cutoff).await {
                Ok(n) => tracing::info!(deleted = n, cutoff_ms = cutoff, "audit retention applied"),
                Err(e) => tracing::warn!(error = %e, "audit retention failed; retrying at the next run"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_days_are_read_and_bounded() {
        assert_eq!(Config::from_env(&Env::default()).unwrap().retention, DAY * 365);
        let env = Env::from_pairs([(AUDIT_RETENTION_DAYS, "30")]);
        assert_eq!(Config::from_env(&env).unwrap().retention, DAY * 30);
        for bad in ["0", "3651", "-1", "abc", "1.5"] {
            let err = Config::from_env(&Env::from_pairs([(AUDIT_RETENTION_DAYS, bad)])).unwrap_err();
            assert_eq!(err.var, AUDIT_RETENTION_DAYS, "{bad}");
        }
    }

    #[test]
    fn migrations_hold_the_published_event_ddl() {
        use flotilla_events::consumer::{DEAD_LETTERS_POSTGRES, DEAD_LETTERS_SQLITE, INBOX_POSTGRES, INBOX_SQLITE};
        let sqlite = include_str!("../migrations/sqlite/0001_init.sql");
        let postgres = include_str!("../migrations/postgres/0001_init.sql");
        for ddl in [INBOX_SQLITE, DEAD_LETTERS_SQLITE] {
            assert!(sqlite.contains(ddl), "sqlite migration lacks:\n{ddl}");
        }
        for ddl in [INBOX_POSTGRES, DEAD_LETTERS_POSTGRES] {
            assert!(postgres.contains(ddl), "postgres migration lacks:\n{ddl}");
        }
    }

    /// The log is append-only: no statement of this crate updates `audit_log`, and it is deleted
    /// from only in the store's retention method.
    #[test]
    fn no_code_updates_the_audit_log() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut deletes = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let text =
                std::fs::read_to_string(&path).unwrap().to_uppercase().split_whitespace().collect::<Vec<_>>().join(" ");
            let needle = ["UPDATE", "AUDIT_LOG"].join(" ");
            assert!(!text.contains(&needle), "{} updates audit_log", path.display());
            let needle = ["DELETE FROM", "AUDIT_LOG"].join(" ");
            let n = text.matches(&needle).count();
            if n > 0 {
                assert!(path.ends_with("store.rs"), "{} deletes from audit_log", path.display());
            }
            deletes += n;
        }
        assert_eq!(deletes, 1, "only the retention statement deletes");
    }
}
