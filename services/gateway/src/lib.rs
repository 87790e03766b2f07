//! The public edge: routes the public API to the services, verifies tokens, limits rates,
//! applies CORS and security headers, and reports the health of everything behind it.
//!
//! The routing table names each service's [`Upstream`]; in embedded mode an upstream is the
//! service's router in the same process, otherwise a base URL. Everything else — the middleware
//! stack, auth, limits, metrics — is the same code in both modes.

mod config;
pub mod docs;
mod edge;
mod health;
pub mod openapi;
mod routes;
mod upstream;

pub use config::Config;
pub use openapi::openapi;
pub use routes::{
    ACCOUNTS, ASSISTANT, AUDIT, Access, DOCS_PATH, GATEWAY, HEALTH_PATH, MCP_PATH, OPENAPI_PATH, ROUTES, Route, TASKS,
};
pub use upstream::{HttpSettings, HttpUpstream, Upstream, Upstreams};

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware;
use axum::response::Response;
use axum::routing::{MethodFilter, MethodRouter};
use flotilla_runtime::auth::AuthContext;
use flotilla_runtime::config::RuntimeConfig;
use flotilla_runtime::http::{GATEWAY_LIVENESS_PATH, Ops, service_router, service_router_with_fallback};
use flotilla_runtime::problem::status_problem;

pub const SERVICE: &str = "gateway";

/// Shared state of the gateway's handlers and middleware.
pub(crate) struct Gateway {
    pub upstreams: Upstreams,
    pub auth: AuthContext,
    pub limits: edge::Limits,
    pub trusted_proxies: Vec<std::net::IpAddr>,
    pub health: health::HealthCache,
    pub docs: docs::Docs,
}

type Shared = Arc<Gateway>;

/// Builds the gateway. `ops` carries extra readiness checks and scrape hooks from the caller
/// (embedded mode adds the in-process services' databases); `openapi` is the document of the whole
/// public API, served at [`OPENAPI_PATH`] and [`DOCS_PATH`] (see [`openapi::apply_edge`]).
pub fn app(
    cfg: Config,
    rt: &RuntimeConfig,
    auth: AuthContext,
    upstreams: Upstreams,
    ops: Ops,
    openapi: &utoipa::openapi::OpenApi,
) -> Router {
    let gw: Shared = Arc::new(Gateway {
        upstreams,
        limits: edge::Limits::new(cfg.rate_limit_per_ip, cfg.rate_limit_per_user, cfg.shared.as_ref()),
        trusted_proxies: cfg.trusted_proxies.clone(),
        health: health::HealthCache::default(),
        docs: docs::Docs::new(openapi),
        auth,
    });

    let api = ROUTES.iter().fold(Router::new(), |api, route| api.route(route.path, method_router(route, &gw)));

    let mut ops = ops.liveness_at(GATEWAY_LIVENESS_PATH).token_keys(&gw.auth.keys);
    if let Some(shared) = &cfg.shared {
        ops = shared.readiness(ops);
    }
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

    let has_web = gw.upstreams.web.is_some();
    let api = if has_web { api.fallback(to_web) } else { api };
    let api = api
        .layer(middleware::from_fn_with_state(gw.clone(), edge::rate_limit))
        .layer(middleware::from_fn_with_state(gw.clone(), edge::client_address))
        .with_state(gw);

    let api = match edge::cors(&cfg.cors_origins) {
        Some(cors) => api.layer(cors),
        None => api,
    };
    let app = if has_web {
        service_router_with_fallback(SERVICE, api, ops, rt)
    } else {
        service_router(SERVICE, api, ops, rt)
    };
    app.layer(middleware::from_fn(edge::security_headers))
}

/// The handlers of one route's methods; on a bearer route they are behind the token check, made
/// here before any upstream sees the request. Other methods answer 405 (whatever the token) from a
/// fallback that the edge layers (CORS, rate limits) still wrap, so preflight requests work on
/// every route.
fn method_router(route: &Route, gw: &Shared) -> MethodRouter<Shared> {
    let mut router = MethodRouter::new();
    for name in route.methods {
        let method = Method::from_bytes(name.as_bytes()).expect("routing table: a valid method");
        let filter = MethodFilter::try_from(method).expect("routing table: a routable method");
        router = match (route.service, route.path) {
            (ACCOUNTS, _) => router.on(filter, to_accounts),
            (TASKS, _) => router.on(filter, to_tasks),
            (AUDIT, _) => router.on(filter, to_audit),
            (ASSISTANT, _) => router.on(filter, to_assistant),
            (GATEWAY, HEALTH_PATH) => router.on(filter, health::aggregated),
            (GATEWAY, DOCS_PATH) => router.on(filter, docs::viewer),
            (GATEWAY, OPENAPI_PATH) => router.on(filter, docs::document),
            (service, path) => panic!("routing table: no handler for {service} {path}"),
        };
    }
    if route.access == Access::Bearer {
        router = router.route_layer(middleware::from_fn_with_state(gw.clone(), edge::authenticate));
    }
    router.fallback(method_not_allowed)
}

async fn method_not_allowed() -> Response {
    status_problem(StatusCode::METHOD_NOT_ALLOWED, "method not allowed on this route")
}

async fn to_accounts(State(gw): State<Shared>, req: Request) -> Response {
    gw.upstreams.accounts.call(req).await
}

async fn to_tasks(State(gw): State<Shared>, req: Request) -> Response {
    gw.upstreams.tasks.call(req).await
}

async fn to_audit(State(gw): State<Shared>, req: Request) -> Response {
    gw.upstreams.audit.call(req).await
}

async fn to_assistant(State(gw): State<Shared>, req: Request) -> Response {
    gw.upstreams.assistant.call(req).await
}

/// Every path outside the API: the web UI's pages and assets.
async fn to_web(State(gw): State<Shared>, req: Request) -> Response {
    match &gw.upstreams.web {
        Some(web) => web.call(req).await,
        None => status_problem(StatusCode::NOT_FOUND, "no such route"),
    }
}
