//! Flotilla accounts: users, argon2id password hashing, EdDSA access tokens with rotating refresh
//! tokens (reuse revokes the session), signing keys published as JWKS, and admin user management.
//!
//! Layout: `store` holds all SQL; `policy`, `password`, `tokens` and `keys` hold the rules;
//! `service` the use cases; `http` the thin axum handlers; `error` the one error type.

pub mod config;
pub mod error;
pub mod events;
pub mod http;
pub mod keys;
pub mod model;
pub mod openapi;
pub mod password;
pub mod policy;
pub mod service;
pub mod store;
pub mod tokens;

use std::sync::Arc;
use std::time::Duration;

use flotilla_events::Bus;
use flotilla_events::outbox::RelayNotifier;
use flotilla_runtime::auth::AuthContext;
use flotilla_runtime::config::RuntimeConfig;
use flotilla_runtime::db::{Db, Migrations};
use flotilla_runtime::http::{Ops, service_router};

pub use config::{AdminBootstrap, Config};
pub use error::Error;
pub use keys::rotate_signing_key;
pub use model::User;
pub use openapi::openapi;
pub use service::{Accounts, Outcome, ensure_admin, promote};
pub use store::Store;

pub const SERVICE: &str = "accounts";

static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The accounts schema for both engines.
pub static MIGRATIONS: Migrations = Migrations { sqlite: &SQLITE_MIGRATOR, postgres: &POSTGRES_MIGRATOR };

/// The event tables [`MIGRATIONS`] create (it publishes events and consumes none), for their pruning.
pub const EVENT_TABLES: flotilla_events::retention::EventTables = flotilla_events::retention::EventTables::OUTBOX;

/// How often a running service re-reads its signing keys (to pick up a rotation made by the CLI
/// or another replica).
pub const KEY_RELOAD_INTERVAL: Duration = Duration::from_secs(60);

/// The event side of a running accounts service: the waker of its outbox relay and the bus the
/// relay publishes to (its state is part of `/ready`).
#[derive(Clone)]
pub struct EventWiring {
    pub notifier: RelayNotifier,
    pub bus: Arc<dyn Bus>,
}

/// Loads/creates signing keys, publishes them into `auth.keys`, runs the env admin bootstrap,
/// and returns the service router already wrapped by `service_router`. Writes enqueue their
/// events; without a relay (this function) they wait in the outbox.
///
/// The database must be reachable and migrated (`Db::open_and_migrate` or `Db::migrate`).
pub async fn app(cfg: Config, rt: &RuntimeConfig, db: Db, auth: AuthContext) -> Result<axum::Router, Error> {
    build(cfg, rt, db, auth, None).await
}

/// [`app`] for a service whose outbox relay runs: commits wake the relay and `/ready` includes
/// the bus state (`event_bus`).
pub async fn app_with_events(
    cfg: Config,
    rt: &RuntimeConfig,
    db: Db,
    auth: AuthContext,
    events: EventWiring,
) -> Result<axum::Router, Error> {
    build(cfg, rt, db, auth, Some(events)).await
}

async fn build(
    cfg: Config,
    rt: &RuntimeConfig,
    db: Db,
    auth: AuthContext,
    events: Option<EventWiring>,
) -> Result<axum::Router, Error> {
    let store = match &events {
        Some(ev) => Store::with_notifier(db.clone(), ev.notifier.clone()),
        None => Store::new(db.clone()),
    };
    if let Some(admin) = &cfg.admin {
        let outcome = ensure_admin(&store, &admin.email, &admin.name, &admin.password).await?;
        tracing::info!(email = %admin.email, ?outcome, "bootstrap administrator ensured");
    }
    let shared = cfg.shared.clone();
    let accounts = Arc::new(Accounts::new(cfg, store, auth).await?);
    spawn_key_reloader(&accounts);

    let ready_db = db.clone();
    let ops = Ops::new()
        .check(
            "database",
            Arc::new(move || {
                let db = ready_db.clone();
                Box::pin(async move { db.check_ready().await })
            }),
        )
        .before_scrape(Arc::new(move || db.record_pool_metrics()));
    let ops = match events {
        Some(ev) => {
            let bus = ev.bus;
            ops.check(
                "event_bus",
                Arc::new(move || {
                    let state = bus.state();
                    Box::pin(async move { if state.is_connected() { Ok(()) } else { Err(state.to_string()) } })
                }),
            )
        }
        None => ops,
    };
    let ops = match &shared {
        Some(store) => store.readiness(ops),
        None => ops,
    };
    Ok(service_router(SERVICE, http::router(accounts), ops, rt))
}

/// Re-reads the signing keys periodically for as long as the service state is alive.
fn spawn_key_reloader(accounts: &Arc<Accounts>) {
    let weak = Arc::downgrade(accounts);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(KEY_RELOAD_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(accounts) = weak.upgrade() else { return };
            if let Err(e) = accounts.signer.reload(&accounts.store).await {
                tracing::warn!(error = %e, "reloading signing keys failed; keeping the current ones");
            }
        }
    });
}
