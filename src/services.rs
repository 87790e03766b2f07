//! One service per process (`flotilla accounts|tasks|gateway`), each with its own database,
//! configured only through `FLOTILLA_*` variables.

use std::sync::Arc;

use flotilla_runtime::auth::AuthContext;
use flotilla_runtime::config::{self, ConfigError, Env, RuntimeConfig};
use flotilla_runtime::http::Ops;
use flotilla_runtime::jwks::JwksClient;
use flotilla_runtime::server;

use crate::cli::{Failure, fail, open_db, service_db_url};

pub async fn accounts(env: &Env, rt: RuntimeConfig) -> Result<(), Failure> {
    let cfg = flotilla_accounts::Config::from_env(env)?;
    let listener = server::bind(rt.listen).await.map_err(|e| fail("listen", e))?;
    let url = service_db_url(env, flotilla_accounts::SERVICE);
    let db = open_db(flotilla_accounts::SERVICE, &url, flotilla_accounts::MIGRATIONS, &rt).await?;
    let app = flotilla_accounts::app(cfg, &rt, db.clone(), AuthContext::from_env(env))
        .await
        .map_err(|e| fail("accounts", e))?;
    tracing::info!(listen = %rt.listen, "accounts ready");
    server::serve(listener, app, rt.shutdown_grace, server::shutdown_signal()).await.map_err(|e| fail("server", e))?;
    db.close().await;
    Ok(())
}

/// Token keys for a service that is not accounts: fetched from accounts' JWKS endpoint.
fn remote_auth(env: &Env) -> Result<AuthContext, Failure> {
    let url = env.get(config::ACCOUNTS_URL).ok_or_else(|| {
        ConfigError::new(config::ACCOUNTS_URL, "", "required: tokens are verified with the keys accounts publishes")
    })?;
    let auth = AuthContext::from_env(env);
    let jwks = Arc::new(JwksClient::new(url, auth.keys.clone()));
    auth.verifier.set_refresher(jwks.clone());
    jwks.spawn();
    Ok(auth)
}

pub async fn tasks(env: &Env, rt: RuntimeConfig) -> Result<(), Failure> {
    let auth = remote_auth(env)?;
    let listener = server::bind(rt.listen).await.map_err(|e| fail("listen", e))?;
    let url = service_db_url(env, flotilla_tasks::SERVICE);
    let db = open_db(flotilla_tasks::SERVICE, &url, flotilla_tasks::MIGRATIONS, &rt).await?;
    let app = flotilla_tasks::app(&rt, db.clone(), auth);
    tracing::info!(listen = %rt.listen, "tasks ready");
    server::serve(listener, app, rt.shutdown_grace, server::shutdown_signal()).await.map_err(|e| fail("server", e))?;
    db.close().await;
    Ok(())
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
