//! The public edge: routes the public API to the services, verifies tokens, limits rates,
//! applies CORS and security headers, and reports the health of everything behind it.
//!
//! The routing table names each service's [`Upstream`]; in embedded mode an upstream is the
//! service's router in the same process, otherwise a base URL. Everything else — the middleware
//! stack, auth, limits, metrics — is the same code in both modes.

mod config;
mod edge;
mod health;
mod upstream;

pub use config::Config;
pub use upstream::{HttpSettings, HttpUpstream, Upstream, Upstreams};

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware;
use axum::response::Response;
use axum::routing::{any, get, post};
use flotilla_runtime::auth::AuthContext;
use flotilla_runtime::config::RuntimeConfig;
use flotilla_runtime::http::{GATEWAY_LIVENESS_PATH, Ops, service_router};

pub const SERVICE: &str = "gateway";

/// Shared state of the gateway's handlers and middleware.
pub(crate) struct Gateway {
    pub upstreams: Upstreams,
    pub auth: AuthContext,
    pub limits: edge::Limits,
    pub trusted_proxies: Vec<std::net::IpAddr>,
    pub health: health::HealthCache,
}

type Shared = Arc<Gateway>;

/// Builds the gateway. `ops` carries extra readiness checks and scrape hooks from the caller
/// (embedded mode adds the in-process services' databases).
pub fn app(cfg: Config, rt: &RuntimeConfig, auth: AuthContext, upstreams: Upstreams, ops: Ops) -> Router {
    let gw: Shared = Arc::new(Gateway {
        upstreams,
        limits: edge::Limits::new(cfg.rate_limit_per_ip, cfg.rate_limit_per_user),
        trusted_proxies: cfg.trusted_proxies.clone(),
        health: health::HealthCache::default(),
        auth,
    });

    // Routes anyone may call.
    let public = Router::new()
        .route("/api/auth/signup", post(to_accounts))
        .route("/api/auth/login", post(to_accounts))
        .route("/api/auth/refresh", post(to_accounts))
        .route("/.well-known/jwks.json", get(to_accounts))
        .route("/health", get(health::aggregated));

    // Routes that need a valid access token, checked here before any upstream sees the request.
    let protected = Router::new()
        .route("/api/auth/logout", any(to_accounts))
        .route("/api/auth/me", any(to_accounts))
        .route("/api/admin/users", any(to_accounts))
        .route("/api/admin/users/{id}", any(to_accounts))
        .route("/api/{user_id}/tasks", any(to_tasks))
        .route("/api/{user_id}/tasks/{*rest}", any(to_tasks))
        .route_layer(middleware::from_fn_with_state(gw.clone(), edge::authenticate));

    let mut ops = ops.liveness_at(GATEWAY_LIVENESS_PATH).token_keys(&gw.auth.keys);
    // Services in this process are part of this process's readiness; services elsewhere are not
    // (their outage must not take the whole edge out of rotation).
    for (name, up) in gw.upstreams.all() {
        if let Upstream::InProcess(_) = up {
            let up = up.clone();
            ops = ops.check(
                name,
                Arc::new(move || {
                    let up = up.clone();
                    Box::pin(async move {
                        let (ready, _) = up.probe_ready(std::time::Duration::from_secs(2)).await;
                        if ready { Ok(()) } else { Err("not ready".into()) }
                    })
                }),
            );
        }
    }

    let api = public
        .merge(protected)
        .layer(middleware::from_fn_with_state(gw.clone(), edge::rate_limit))
        .layer(middleware::from_fn_with_state(gw.clone(), edge::client_address))
        .with_state(gw);

    let api = match edge::cors(&cfg.cors_origins) {
        Some(cors) => api.layer(cors),
        None => api,
    };
    service_router(SERVICE, api, ops, rt).layer(middleware::from_fn(edge::security_headers))
}

async fn to_accounts(State(gw): State<Shared>, req: Request) -> Response {
    gw.upstreams.accounts.call(req).await
}

async fn to_tasks(State(gw): State<Shared>, req: Request) -> Response {
    gw.upstreams.tasks.call(req).await
}
