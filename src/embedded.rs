//! Embedded mode: every service in one process, SQLite files in the data dir, the gateway
//! routing to the services' routers in process (the web UI behind every path outside the API),
//! events on the in-process bus.
//!
//! Events: one [`MemoryBus`]; an outbox relay per service database publishes to it; the tasks
//! consumer (recurrence, user deletion), the assistant consumer (user deletion) and the audit
//! consumer (every event into the audit log) are subscribed to it; the reminder scheduler, the
//! audit retention job and the pruning of old event rows run. On shutdown the HTTP server drains
//! first, then those jobs and the relays stop (each relay finishes its pass), then the databases
//! close.

use std::sync::Arc;
use std::time::Instant;

use flotilla_events::{Bus, MemoryBus, Relay, RetryPolicy};
use flotilla_gateway::{Upstream, Upstreams};
use flotilla_runtime::auth::AuthContext;
use flotilla_runtime::config::{self, Env, RuntimeConfig};
use flotilla_runtime::db::{Db, sqlite_url_in};
use flotilla_runtime::http::Ops;
use flotilla_runtime::server;

use crate::cli::{Failure, data_dir, fail, open_db, reminder_interval};

pub async fn run(env: &Env, rt: RuntimeConfig) -> Result<(), Failure> {
    let started = Instant::now();
    if env.get(config::DATABASE_URL).is_some() {
        return Err(Failure::Other(
            "FLOTILLA_DATABASE_URL names one service's database; embedded mode keeps each service's SQLite file in FLOTILLA_DATA_DIR (unset it, or run `flotilla accounts` …)".into(),
        ));
    }
    let accounts_cfg = flotilla_accounts::Config::from_env(env)?;
    let audit_cfg = flotilla_audit::Config::from_env(env)?;
    let assistant_cfg = flotilla_assistant::Config::from_env(env)?;
    let web_cfg = flotilla_web::Config::from_env(env)?;
    let gateway_cfg = flotilla_gateway::Config::from_env(env)?;
    let reminder_interval = reminder_interval(env)?;
    let listener = server::bind(rt.listen).await.map_err(|e| fail("listen", e))?;

    let dir = data_dir(env);
    let (accounts_url, tasks_url, audit_url, assistant_url) = (
        sqlite_url_in(&dir, flotilla_accounts::SERVICE),
        sqlite_url_in(&dir, flotilla_tasks::SERVICE),
        sqlite_url_in(&dir, flotilla_audit::SERVICE),
        sqlite_url_in(&dir, flotilla_assistant::SERVICE),
    );
    let (accounts_db, tasks_db, audit_db, assistant_db) = tokio::try_join!(
        open_db(flotilla_accounts::SERVICE, &accounts_url, flotilla_accounts::MIGRATIONS, &rt),
        open_db(flotilla_tasks::SERVICE, &tasks_url, flotilla_tasks::MIGRATIONS, &rt),
        open_db(flotilla_audit::SERVICE, &audit_url, flotilla_audit::MIGRATIONS, &rt),
        open_db(flotilla_assistant::SERVICE, &assistant_url, flotilla_assistant::MIGRATIONS, &rt),
    )?;

    let bus = Arc::new(MemoryBus::new());
    bus.subscribe_filtered(
        flotilla_tasks::events::CONSUMER,
        flotilla_tasks::events::SUBSCRIPTIONS,
        tasks_db.clone(),
        Arc::new(flotilla_tasks::events::TasksHandler::default()),
        flotilla_tasks::events::retry_policy(),
    );
    bus.subscribe(
        flotilla_audit::CONSUMER,
        audit_db.clone(),
        flotilla_audit::handler(audit_db.clone()),
        RetryPolicy::default(),
    );
    bus.subscribe_filtered(
        flotilla_assistant::events::CONSUMER,
        flotilla_assistant::events::SUBSCRIPTIONS,
        assistant_db.clone(),
        flotilla_assistant::events::handler(),
        RetryPolicy::default(),
    );
    let retention = flotilla_audit::spawn_retention(audit_db.clone(), &audit_cfg);
    let pruning = [
        (flotilla_accounts::SERVICE, &accounts_db, flotilla_accounts::EVENT_TABLES),
        (flotilla_tasks::SERVICE, &tasks_db, flotilla_tasks::EVENT_TABLES),
        (flotilla_audit::SERVICE, &audit_db, flotilla_audit::EVENT_TABLES),
        (flotilla_assistant::SERVICE, &assistant_db, flotilla_assistant::EVENT_TABLES),
    ]
    .map(|(service, db, tables)| flotilla_events::retention::spawn_pruning(service, db.clone(), tables));
    let dyn_bus: Arc<dyn Bus> = bus.clone();
    let accounts_relay = Relay::spawn(flotilla_accounts::SERVICE, accounts_db.clone(), dyn_bus.clone());
    let tasks_relay = Relay::spawn(flotilla_tasks::SERVICE, tasks_db.clone(), dyn_bus.clone());
    let assistant_relay = Relay::spawn(flotilla_assistant::SERVICE, assistant_db.clone(), dyn_bus.clone());
    let tasks_store = flotilla_tasks::Store::with_notifier(tasks_db.clone(), tasks_relay.notifier());
    let reminders = flotilla_tasks::reminders::Scheduler::new(tasks_store, reminder_interval).spawn();

    let auth = AuthContext::from_env(env);
    let accounts_events = flotilla_accounts::EventWiring { notifier: accounts_relay.notifier(), bus: dyn_bus.clone() };
    let accounts =
        flotilla_accounts::app_with_events(accounts_cfg, &rt, accounts_db.clone(), auth.clone(), accounts_events)
            .await
            .map_err(|e| fail("accounts", e))?;
    let tasks_events = flotilla_tasks::EventWiring { notifier: tasks_relay.notifier(), bus: dyn_bus.clone() };
    let tasks = flotilla_tasks::app_with_events(&rt, tasks_db.clone(), auth.clone(), tasks_events);
    let audit = flotilla_audit::app(&rt, audit_db.clone(), auth.clone());
    let assistant_events = flotilla_assistant::EventWiring { notifier: assistant_relay.notifier(), bus: dyn_bus };
    let assistant = flotilla_assistant::app_with_events(
        &assistant_cfg,
        &rt,
        assistant_db.clone(),
        auth.clone(),
        Upstream::InProcess(tasks.clone()),
        assistant_events,
    );
    let mut upstreams = Upstreams {
        accounts: Upstream::InProcess(accounts),
        tasks: Upstream::InProcess(tasks),
        audit: Upstream::InProcess(audit),
        assistant: Upstream::InProcess(assistant),
        web: None,
    };
    let doc = crate::openapi::document();
    // The web UI calls the public API through a gateway of its own (same code and settings, in
    // process); the gateway that listens hands it every path outside the API.
    let api_for_web =
        flotilla_gateway::app(gateway_cfg.clone(), &rt, auth.clone(), upstreams.clone(), Ops::new(), &doc);
    upstreams.web = Some(Upstream::InProcess(flotilla_web::app(&web_cfg, &rt, Upstream::InProcess(api_for_web))));
    let ops = pool_gauges(Ops::new(), [&accounts_db, &tasks_db, &audit_db, &assistant_db]);
    let app = flotilla_gateway::app(gateway_cfg, &rt, auth, upstreams, ops, &doc);

    let url = format!("http://{}", listener.local_addr().map_err(|e| fail("listen", e))?);
    tracing::info!(%url, data_dir = %dir.display(), ready_ms = started.elapsed().as_millis() as u64, "flotilla ready (embedded)");
    println!("Flotilla is ready at {url} (embedded mode, data in {}; Ctrl-C to stop)", dir.display());
    let served = server::serve(listener, app, rt.shutdown_grace, server::shutdown_signal()).await;
    reminders.shutdown().await;
    retention.abort();
    pruning.iter().for_each(|p| p.abort());
    accounts_relay.shutdown().await;
    tasks_relay.shutdown().await;
    assistant_relay.shutdown().await;
    served.map_err(|e| fail("server", e))?;
    accounts_db.close().await;
    tasks_db.close().await;
    audit_db.close().await;
    assistant_db.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Publishes the pool gauges of the given databases before each scrape of `/metrics`.
pub fn pool_gauges<'a>(ops: Ops, dbs: impl IntoIterator<Item = &'a Db>) -> Ops {
    dbs.into_iter().fold(ops, |ops, db| {
        let db = db.clone();
        ops.before_scrape(Arc::new(move || db.record_pool_metrics()))
    })
}
