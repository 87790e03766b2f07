//! One service per process (`flotilla accounts|tasks|audit|assistant|web|gateway`), each with its
//! own database (web and gateway have none), configured only through `FLOTILLA_*` variables.
//!
//! Accounts and tasks publish their events through their outbox relay to NATS JetStream
//! (`FLOTILLA_NATS_URL`, required: without it their events would never leave the outbox); tasks
//! also subscribes its consumer (durable `tasks`) and runs the reminder scheduler. Audit only
//! consumes (durable `audit`, every subject) and runs its retention job. The assistant publishes
//! `chat.turn_completed` and consumes `user.deleted` (durable `assistant`); its tools call tasks
//! at `FLOTILLA_TASKS_URL`. The web UI calls the gateway at `FLOTILLA_GATEWAY_URL`.

use std::sync::Arc;

use flotilla_events::retention::EventTables;
use flotilla_events::{Bus, NatsBus, Relay, RetryPolicy};

use flotilla_runtime::auth::AuthContext;
use flotilla_runtime::config::{self, ConfigError, Env, RuntimeConfig};
use flotilla_runtime::db::{Db, Migrations};
use flotilla_runtime::http::Ops;
use flotilla_runtime::jwks::JwksClient;
use flotilla_runtime::server;
use flotilla_runtime::shared::SharedStore;
use flotilla_runtime::upstream::{HttpUpstream, Upstream};
use tokio::task::JoinHandle;

use crate::cli::{Failure, fail, nats_url, open_db, reminder_interval, service_db_url};

/// The service's own database (`FLOTILLA_DATABASE_URL`), migrated, and the hourly pruning of its
/// event tables.
async fn service_db(
    env: &Env,
    rt: &RuntimeConfig,
    service: &'static str,
    migrations: Migrations,
    tables: EventTables,
) -> Result<(Db, JoinHandle<()>), Failure> {
    let db = open_db(service, &service_db_url(env, service), migrations, rt).await?;
    let pruning = flotilla_events::retention::spawn_pruning(service, db.clone(), tables);
    Ok((db, pruning))
}

/// Connects to NATS (the client keeps reconnecting in the background: a server that is down now
/// only delays publishing; `/ready` reports it).
async fn connect_bus(url: &str) -> Result<NatsBus, Failure> {
    NatsBus::connect(url).await.map_err(|e| fail("event bus", e))
}

pub async fn accounts(env: &Env, rt: RuntimeConfig) -> Result<(), Failure> {
    let cfg = flotilla_accounts::Config::from_env(env)?;
    let nats = nats_url(env, flotilla_accounts::SERVICE)?;
    let listener = server::bind(rt.listen).await.map_err(|e| fail("listen", e))?;
    let (db, pruning) = service_db(
        env,
        &rt,
        flotilla_accounts::SERVICE,
        flotilla_accounts::MIGRATIONS,
        flotilla_accounts::EVENT_TABLES,
    )
    .await?;
    let bus = connect_bus(&nats).await?;
    let dyn_bus: Arc<dyn Bus> = Arc::new(bus.clone());
    let relay = Relay::spawn(flotilla_accounts::SERVICE, db.clone(), dyn_bus.clone());
    let events = flotilla_accounts::EventWiring { notifier: relay.notifier(), bus: dyn_bus };
    let auth = AuthContext::from_env(env);
    share_revocations(env, &auth)?;
    let app = flotilla_accounts::app_with_events(cfg, &rt, db.clone(), auth, events)
        .await
        .map_err(|e| fail("accounts", e))?;
    tracing::info!(listen = %rt.listen, "accounts ready");
    let served = server::serve(listener, app, rt.shutdown_grace, server::shutdown_signal()).await;
    relay.shutdown().await;
    bus.shutdown().await;
    served.map_err(|e| fail("server", e))?;
    pruning.abort();
    db.close().await;
    Ok(())
}

/// With `FLOTILLA_REDIS_URL`, revocations made anywhere apply here (and ours everywhere).
fn share_revocations(env: &Env, auth: &AuthContext) -> Result<(), Failure> {
    if let Some(store) = SharedStore::from_env(env)? {
        store.share_revocations(&auth.revocations);
    }
    Ok(())
}

/// Token keys for a service that is not accounts: fetched from accounts' JWKS endpoint.
fn remote_auth(env: &Env) -> Result<AuthContext, Failure> {
    let url = env.get(config::ACCOUNTS_URL).ok_or_else(|| {
        ConfigError::new(config::ACCOUNTS_URL, "", "required: tokens are verified with the keys accounts publishes")
    })?;
    let auth = AuthContext::from_env(env);
    share_revocations(env, &auth)?;
    let jwks = Arc::new(JwksClient::new(url, auth.keys.clone()));
    auth.verifier.set_refresher(jwks.clone());
    jwks.spawn();
    Ok(auth)
}

pub async fn tasks(env: &Env, rt: RuntimeConfig) -> Result<(), Failure> {
    let nats = nats_url(env, flotilla_tasks::SERVICE)?;
    let interval = reminder_interval(env)?;
    let auth = remote_auth(env)?;
    let listener = server::bind(rt.listen).await.map_err(|e| fail("listen", e))?;
    let (db, pruning) =
        service_db(env, &rt, flotilla_tasks::SERVICE, flotilla_tasks::MIGRATIONS, flotilla_tasks::EVENT_TABLES).await?;
    let bus = connect_bus(&nats).await?;
    let dyn_bus: Arc<dyn Bus> = Arc::new(bus.clone());
    let relay = Relay::spawn(flotilla_tasks::SERVICE, db.clone(), dyn_bus.clone());
    bus.subscribe(
        flotilla_tasks::events::CONSUMER,
        flotilla_tasks::events::SUBSCRIPTIONS,
        db.clone(),
        Arc::new(flotilla_tasks::events::TasksHandler::new(relay.notifier())),
        flotilla_tasks::events::retry_policy(),
    )
    .map_err(|e| fail("event bus", e))?;
    let store = flotilla_tasks::Store::with_notifier(db.clone(), relay.notifier());
    let reminders = flotilla_tasks::reminders::Scheduler::new(store, interval).spawn();
    let events = flotilla_tasks::EventWiring { notifier: relay.notifier(), bus: dyn_bus };
    let app = flotilla_tasks::app_with_events(&rt, db.clone(), auth, events);
    tracing::info!(listen = %rt.listen, "tasks ready");
    let served = server::serve(listener, app, rt.shutdown_grace, server::shutdown_signal()).await;
    reminders.shutdown().await;
    bus.shutdown().await; // the consumer finishes the event in hand
    relay.shutdown().await;
    served.map_err(|e| fail("server", e))?;
    pruning.abort();
    db.close().await;
    Ok(())
}

pub async fn audit(env: &Env, rt: RuntimeConfig) -> Result<(), Failure> {
    let cfg = flotilla_audit::Config::from_env(env)?;
    let nats = nats_url(env, flotilla_audit::SERVICE)?;
    let auth = remote_auth(env)?;
    let listener = server::bind(rt.listen).await.map_err(|e| fail("listen", e))?;
    let (db, pruning) =
        service_db(env, &rt, flotilla_audit::SERVICE, flotilla_audit::MIGRATIONS, flotilla_audit::EVENT_TABLES).await?;
    let bus = connect_bus(&nats).await?;
    bus.subscribe(
        flotilla_audit::CONSUMER,
        &["flotilla.>"],
        db.clone(),
        flotilla_audit::handler(db.clone()),
        RetryPolicy::default(),
    )
    .map_err(|e| fail("event bus", e))?;
    let retention = flotilla_audit::spawn_retention(db.clone(), &cfg);
    let dyn_bus: Arc<dyn Bus> = Arc::new(bus.clone());
    let app = flotilla_audit::app_with_bus(&rt, db.clone(), auth, dyn_bus);
    tracing::info!(listen = %rt.listen, "audit ready");
    let served = server::serve(listener, app, rt.shutdown_grace, server::shutdown_signal()).await;
    retention.abort();
    bus.shutdown().await; // the consumer finishes the event in hand
    served.map_err(|e| fail("server", e))?;
    pruning.abort();
    db.close().await;
    Ok(())
}

/// An HTTP upstream named by a required variable (the gateway's settings: timeouts, retries,
/// breaker).
fn required_upstream(env: &Env, var: &str, name: &'static str, why: &str) -> Result<Upstream, Failure> {
    let url = env.get(var).ok_or_else(|| ConfigError::new(var, "", format!("required: {why}")))?;
    let settings = flotilla_gateway::Config::from_env(env)?.http;
    let up = HttpUpstream::new(name, url, settings).map_err(|e| ConfigError::new(var, url, e))?;
    Ok(Upstream::Http(Arc::new(up)))
}

pub async fn assistant(env: &Env, rt: RuntimeConfig) -> Result<(), Failure> {
    let cfg = flotilla_assistant::Config::from_env(env)?;
    let nats = nats_url(env, flotilla_assistant::SERVICE)?;
    let tasks = required_upstream(env, config::TASKS_URL, "tasks", "the assistant's tools call the tasks API")?;
    let auth = remote_auth(env)?;
    let listener = server::bind(rt.listen).await.map_err(|e| fail("listen", e))?;
    let (db, pruning) = service_db(
        env,
        &rt,
        flotilla_assistant::SERVICE,
        flotilla_assistant::MIGRATIONS,
        flotilla_assistant::EVENT_TABLES,
    )
    .await?;
    let bus = connect_bus(&nats).await?;
    let dyn_bus: Arc<dyn Bus> = Arc::new(bus.clone());
    let relay = Relay::spawn(flotilla_assistant::SERVICE, db.clone(), dyn_bus.clone());
    bus.subscribe(
        flotilla_assistant::events::CONSUMER,
        flotilla_assistant::events::SUBSCRIPTIONS,
        db.clone(),
        flotilla_assistant::events::handler(),
        RetryPolicy::default(),
    )
    .map_err(|e| fail("event bus", e))?;
    let events = flotilla_assistant::EventWiring { notifier: relay.notifier(), bus: dyn_bus };
    let app = flotilla_assistant::app_with_events(&cfg, &rt, db.clone(), auth, tasks, events);
    tracing::info!(listen = %rt.listen, "assistant ready");
    let served = server::serve(listener, app, rt.shutdown_grace, server::shutdown_signal()).await;
    bus.shutdown().await; // the consumer finishes the event in hand
    relay.shutdown().await;
    served.map_err(|e| fail("server", e))?;
    pruning.abort();
    db.close().await;
    Ok(())
}

pub async fn web(env: &Env, rt: RuntimeConfig) -> Result<(), Failure> {
    let cfg = flotilla_web::Config::from_env(env)?;
    let api =
        required_upstream(env, config::GATEWAY_URL, "gateway", "the web UI calls the public API through the gateway")?;
    let listener = server::bind(rt.listen).await.map_err(|e| fail("listen", e))?;
    let app = flotilla_web::app(&cfg, &rt, api);
    tracing::info!(listen = %rt.listen, "web ready");
    server::serve(listener, app, rt.shutdown_grace, server::shutdown_signal()).await.map_err(|e| fail("server", e))
}

pub async fn gateway(env: &Env, rt: RuntimeConfig) -> Result<(), Failure> {
    let cfg = flotilla_gateway::Config::from_env(env)?;
    let upstreams = cfg.http_upstreams(env)?;
    let auth = remote_auth(env)?;
    let listener = server::bind(rt.listen).await.map_err(|e| fail("listen", e))?;
    let app = flotilla_gateway::app(cfg, &rt, auth, upstreams, Ops::new(), &crate::openapi::document());
    tracing::info!(listen = %rt.listen, "gateway ready");
    server::serve(listener, app, rt.shutdown_grace, server::shutdown_signal()).await.map_err(|e| fail("server", e))
}
