//! Embedded mode: every service in one process, SQLite files in the data dir, the gateway
//! routing to the services' routers in process.

use std::sync::Arc;
use std::time::Instant;

use flotilla_gateway::{Upstream, Upstreams};
use flotilla_runtime::auth::AuthContext;
use flotilla_runtime::config::{self, Env, RuntimeConfig};
use flotilla_runtime::db::{Db, sqlite_url_in};
use flotilla_runtime::http::Ops;
use flotilla_runtime::server;

use crate::cli::{Failure, data_dir, fail, open_db};

pub async fn run(env: &Env, rt: RuntimeConfig) -> Result<(), Failure> {
    let started = Instant::now();
    if env.get(config::DATABASE_URL).is_some() {
        return Err(Failure::Other(
            "FLOTILLA_DATABASE_URL names one service's database; embedded mode keeps each service's SQLite file in FLOTILLA_DATA_DIR (unset it, or run `flotilla accounts` …)".into(),
        ));
    }
    let accounts_cfg = flotilla_accounts::Config::from_env(env)?;
    let gateway_cfg = flotilla_gateway::Config::from_env(env)?;
    let listener = server::bind(rt.listen).await.map_err(|e| fail("listen", e))?;

    let dir = data_dir(env);
    let (accounts_url, tasks_url) =
        (sqlite_url_in(&dir, flotilla_accounts::SERVICE), sqlite_url_in(&dir, flotilla_tasks::SERVICE));
    let (accounts_db, tasks_db) = tokio::try_join!(
        open_db(flotilla_accounts::SERVICE, &accounts_url, flotilla_accounts::MIGRATIONS, &rt),
        open_db(flotilla_tasks::SERVICE, &tasks_url, flotilla_tasks::MIGRATIONS, &rt),
    )?;

    let auth = AuthContext::from_env(env);
    let accounts = flotilla_accounts::app(accounts_cfg, &rt, accounts_db.clone(), auth.clone())
        .await
        .map_err(|e| fail("accounts", e))?;
    let tasks = flotilla_tasks::app(&rt, tasks_db.clone(), auth.clone());
    let ops = pool_gauges(Ops::new(), [&accounts_db, &tasks_db]);
    let upstreams = Upstreams { accounts: Upstream::InProcess(accounts), tasks: Upstream::InProcess(tasks) };
    let app = flotilla_gateway::app(gateway_cfg, &rt, auth, upstreams, ops, &crate::openapi::document());

    let url = format!("http://{}", listener.local_addr().map_err(|e| fail("listen", e))?);
    tracing::info!(%url, data_dir = %dir.display(), ready_ms = started.elapsed().as_millis() as u64, "flotilla ready (embedded)");
    println!("Flotilla is ready at {url} (embedded mode, data in {}; Ctrl-C to stop)", dir.display());
    server::serve(listener, app, rt.shutdown_grace, server::shutdown_signal()).await.map_err(|e| fail("server", e))?;
    accounts_db.close().await;
    tasks_db.close().await;
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
