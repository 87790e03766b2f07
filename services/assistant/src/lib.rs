//! The assistant service: chat turns with tool calls against the tasks API (offline rules
//! engine, Ollama, or any OpenAI-compatible endpoint), conversations stored in its own database
//! (SQLite or PostgreSQL), and the MCP server.
//!
//! Contract used by the binary (keep these signatures):
//! - [`SERVICE`], [`MIGRATIONS`], [`Config::from_env`];
//! - [`app`] / [`app_with_events`]: the service router (API + `/mcp` + `/health` `/ready`
//!   `/metrics`);
//! - [`events::CONSUMER`], [`events::SUBSCRIPTIONS`], [`events::handler`]: the `user.deleted`
//!   consumer that deletes a user's conversations;
//! - [`openapi`]: the assistant's part of the API document.
//!
//! # Wiring (done by the binary)
//!
//! - embedded: `Relay::spawn(SERVICE, db, bus)`, `bus.subscribe_filtered(events::CONSUMER,
//!   events::SUBSCRIPTIONS, db, events::handler(), events::retry_policy())` on the `MemoryBus`,
//!   and `app_with_events(&cfg, &rt, db, auth, Upstream::InProcess(tasks_router), EventWiring
//!   {notifier: relay.notifier(), bus})`;
//! - distributed: the same with the `NatsBus` (`subscribe(CONSUMER, SUBSCRIPTIONS, …)`) and
//!   `Upstream::Http` to the tasks service.

pub mod config;
pub mod error;
pub mod events;
pub mod http;
pub mod llm;
pub mod mcp;
pub mod metrics;
pub mod model;
pub mod openapi;
pub mod rules;
pub mod store;
pub mod tools;
pub mod turn;

use std::sync::Arc;

use flotilla_events::Bus;
use flotilla_events::outbox::RelayNotifier;
use flotilla_runtime::auth::AuthContext;
use flotilla_runtime::config::RuntimeConfig;
use flotilla_runtime::db::{Db, Migrations};
use flotilla_runtime::http::{Ops, service_router};
use flotilla_runtime::upstream::Upstream;
use sqlx::migrate::Migrator;

pub use config::{Config, Provider};
pub use error::ChatError;
pub use openapi::openapi;
pub use store::Store;
pub use turn::Assistant;

pub const SERVICE: &str = "assistant";

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

pub static MIGRATIONS: Migrations = Migrations { sqlite: &SQLITE_MIGRATIONS, postgres: &POSTGRES_MIGRATIONS };

/// The event tables [`MIGRATIONS`] create (it publishes events and consumes some), for their pruning.
pub const EVENT_TABLES: flotilla_events::retention::EventTables = flotilla_events::retention::EventTables::BOTH;

/// The event side of a running assistant: the waker of its outbox relay and the bus the relay
/// publishes to (its state is part of `/ready`).
#[derive(Clone)]
pub struct EventWiring {
    pub notifier: RelayNotifier,
    pub bus: Arc<dyn Bus>,
}

/// The service router. `tasks` is the tasks service (in process or over HTTP); every tool call
/// goes through its public API with the caller's bearer token. Turns still enqueue their
/// `chat.turn_completed` events; without a relay they stay in the outbox (tests).
pub fn app(cfg: &Config, rt: &RuntimeConfig, db: Db, auth: AuthContext, tasks: Upstream) -> axum::Router {
    let ops = Ops::new().database(&db).token_keys(&auth.keys);
    let assistant = Assistant::new(Store::new(db), tasks, cfg.clone(), rt.request_timeout);
    service_router(SERVICE, http::router(assistant, &auth), ops, rt)
}

/// [`app`] for a service whose outbox relay runs: commits wake the relay and `/ready` includes
/// the bus state (`event_bus`).
pub fn app_with_events(
    cfg: &Config,
    rt: &RuntimeConfig,
    db: Db,
    auth: AuthContext,
    tasks: Upstream,
    events: EventWiring,
) -> axum::Router {
    let bus = events.bus.clone();
    let ops = Ops::new().database(&db).token_keys(&auth.keys).check(
        "event_bus",
        Arc::new(move || {
            let state = bus.state();
            Box::pin(async move { if state.is_connected() { Ok(()) } else { Err(state.to_string()) } })
        }),
    );
    let store = Store::with_notifier(db, events.notifier);
    let assistant = Assistant::new(store, tasks, cfg.clone(), rt.request_timeout);
    service_router(SERVICE, http::router(assistant, &auth), ops, rt)
}
