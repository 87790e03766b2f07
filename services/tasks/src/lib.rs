//! The tasks service: users' tasks with filters, search, keyset pagination, idempotent creates
//! and optimistic concurrency (ETag / If-Match), on SQLite or PostgreSQL.

pub mod cursor;
pub mod error;
pub mod events;
pub mod http;
pub mod model;
pub mod openapi;
pub mod query;
pub mod recurrence;
pub mod reminders;
pub mod service;
pub mod store;
pub mod validate;

use std::sync::Arc;

use flotilla_events::Bus;
use flotilla_events::outbox::RelayNotifier;
use flotilla_runtime::auth::AuthContext;
use flotilla_runtime::config::RuntimeConfig;
use flotilla_runtime::db::{Db, Migrations};
use flotilla_runtime::http::{Ops, service_router};
use sqlx::migrate::Migrator;

pub use error::TaskError;
pub use openapi::openapi;
pub use service::Tasks;
pub use store::Store;

pub const SERVICE: &str = "tasks";

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

pub static MIGRATIONS: Migrations = Migrations { sqlite: &SQLITE_MIGRATIONS, postgres: &POSTGRES_MIGRATIONS };

/// The event tables [`MIGRATIONS`] create (it publishes events and consumes some), for their pruning.
pub const EVENT_TABLES: flotilla_events::retention::EventTables = flotilla_events::retention::EventTables::BOTH;

/// The event side of a running tasks service: the waker of its outbox relay and the bus the
/// relay publishes to (its state is part of `/ready`).
#[derive(Clone)]
pub struct EventWiring {
    pub notifier: RelayNotifier,
    pub bus: Arc<dyn Bus>,
}

/// The service router (API + /health /ready /metrics), already wrapped by runtime::http::service_router.
/// Writes still enqueue their events; without a relay they stay in the outbox (tests).
pub fn app(rt: &RuntimeConfig, db: Db, auth: AuthContext) -> axum::Router {
    let ops = Ops::new().database(&db).token_keys(&auth.keys);
    service_router(SERVICE, http::router(Store::new(db), &auth), ops, rt)
}

/// The service router of a service whose outbox relay runs: commits wake the relay and `/ready`
/// includes the bus state (`event_bus`).
pub fn app_with_events(rt: &RuntimeConfig, db: Db, auth: AuthContext, events: EventWiring) -> axum::Router {
    let ops = bus_check(Ops::new().database(&db).token_keys(&auth.keys), events.bus.clone());
    service_router(SERVICE, http::router(Store::with_notifier(db, events.notifier), &auth), ops, rt)
}

/// Readiness includes the event bus being connected (the outbox keeps writes safe meanwhile,
/// but a disconnected bus means events are not flowing).
pub fn bus_check(ops: Ops, bus: Arc<dyn Bus>) -> Ops {
    ops.check(
        "event_bus",
        Arc::new(move || {
            let state = bus.state();
            Box::pin(async move { if state.is_connected() { Ok(()) } else { Err(state.to_string()) } })
        }),
    )
}
