//! The HTTP stack every service shares: request ids, one log line and metrics per request,
//! timeouts, body limits, panics as 500s, and the operations endpoints `/health`, `/ready`,
//! `/metrics`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::future::BoxFuture;
use serde_json::json;
use tracing::Instrument;

use crate::config::RuntimeConfig;
use crate::problem::{Problem, status_problem};
use crate::telemetry::{metrics_handle, names};

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Operations paths, defined once (probes in the chart and compose file are checked against them).
pub const HEALTH_PATH: &str = "/health";
pub const READY_PATH: &str = "/ready";
pub const METRICS_PATH: &str = "/metrics";
/// The gateway's liveness path: its `/health` reports on the services behind it.
pub const GATEWAY_LIVENESS_PATH: &str = "/livez";

/// A named readiness check (database, bus, upstream keys…).
pub type CheckFn = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// The operations endpoints of one service.
#[derive(Clone, Default)]
pub struct Ops {
    checks: Vec<(&'static str, CheckFn)>,
    before_scrape: Vec<Arc<dyn Fn() + Send + Sync>>,
    liveness_path: Option<&'static str>,
}

impl Ops {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn check(mut self, name: &'static str, f: CheckFn) -> Self {
        self.checks.push((name, f));
        self
    }

    /// Readiness includes the database (reachable, migrated); scrapes publish its pool gauges.
    pub fn database(self, db: &crate::db::Db) -> Self {
        let (ready, gauges) = (db.clone(), db.clone());
        self.check(
            "database",
            Arc::new(move || {
                let db = ready.clone();
                Box::pin(async move { db.check_ready().await })
            }),
        )
        .before_scrape(Arc::new(move || gauges.record_pool_metrics()))
    }

    /// Readiness includes having token verification keys (fetched from accounts at start).
    pub fn token_keys(self, keys: &Arc<crate::auth::PublicKeys>) -> Self {
        let keys = keys.clone();
        self.check(
            "token_keys",
            Arc::new(move || {
                let empty = keys.is_empty();
                Box::pin(
                    async move { if empty { Err("no token verification keys loaded yet".into()) } else { Ok(()) } },
                )
            }),
        )
    }

    /// Serves liveness on another path (the gateway's `/health` is the public aggregated one).
    pub fn liveness_at(mut self, path: &'static str) -> Self {
        self.liveness_path = Some(path);
        self
    }

    /// Runs before each `/metrics` render (to publish gauges such as pool sizes).
    pub fn before_scrape(mut self, f: Arc<dyn Fn() + Send + Sync>) -> Self {
        self.before_scrape.push(f);
        self
    }

    /// Readiness: every check passes; otherwise 503 with what failed.
    pub async fn ready(&self) -> (bool, serde_json::Value) {
        let mut ok = true;
        let mut checks = serde_json::Map::new();
        for (name, f) in &self.checks {
            let value = match f().await {
                Ok(()) => json!("ok"),
                Err(e) => {
                    ok = false;
                    json!(e)
                }
            };
            checks.insert((*name).to_owned(), value);
        }
        (ok, json!({ "status": if ok { "ready" } else { "not ready" }, "checks": checks }))
    }

    pub fn metrics_text(&self) -> String {
        for f in &self.before_scrape {
            f();
        }
        metrics_handle().render()
    }

    /// `/health`, `/ready` and `/metrics`.
    pub fn router(self) -> Router {
        let ready_ops = self.clone();
        Router::new()
            .route(self.liveness_path.unwrap_or(HEALTH_PATH), get(|| async { axum::Json(json!({ "status": "ok" })) }))
            .route(
                READY_PATH,
                get(move || {
                    let ops = ready_ops.clone();
                    async move {
                        let (ok, body) = ops.ready().await;
                        let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
                        (status, axum::Json(body))
                    }
                }),
            )
            .route(
                METRICS_PATH,
                get(move || {
                    let ops = self.clone();
                    async move {
                        ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], ops.metrics_text())
                    }
                }),
            )
    }
}

/// The request id of the current request, for handlers that log or forward it.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

fn valid_request_id(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    !b.is_empty() && b.len() <= 128 && b.iter().all(|c| c.is_ascii_alphanumeric() || b"-_.:".contains(c))
}

/// Takes a well-formed incoming `x-request-id` (from the gateway or a proxy) or makes one, puts it
/// on the request, the response and a tracing span, and logs one line per request.
async fn request_context(service: &'static str, mut req: Request, next: Next) -> Response {
    let id = match req.headers().get(&REQUEST_ID) {
        Some(v) if valid_request_id(v) => v.clone(),
        _ => HeaderValue::from_str(&uuid::Uuid::now_v7().simple().to_string()).expect("hex is a valid header value"),
    };
    req.headers_mut().insert(REQUEST_ID, id.clone());
    let id_str = id.to_str().unwrap_or_default().to_owned();
    req.extensions_mut().insert(RequestId(id_str.clone()));
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
    let span = tracing::info_span!("request", service, request_id = %id_str, method = %method,
        route = route.as_deref().unwrap_or("unmatched"));
    let start = Instant::now();
    let mut res = next.run(req).instrument(span.clone()).await;
    let status = res.status().as_u16();
    let elapsed = start.elapsed();
    let route = route.as_deref().unwrap_or("unmatched").to_owned();
    metrics::counter!(names::HTTP_REQUESTS_TOTAL, "service" => service, "route" => route.clone(),
        "method" => method.to_string(), "status" => status.to_string())
    .increment(1);
    metrics::histogram!(names::HTTP_REQUEST_DURATION_SECONDS, "service" => service, "route" => route,
        "method" => method.to_string())
    .record(elapsed.as_secs_f64());
    span.in_scope(|| {
        if status >= 500 {
            tracing::warn!(status, elapsed_ms = elapsed.as_secs_f64() * 1e3, "request failed");
        } else {
            tracing::debug!(status, elapsed_ms = elapsed.as_secs_f64() * 1e3, "request");
        }
    });
    res.headers_mut().insert(REQUEST_ID, id);
    res
}

/// Ends a request that takes longer than `limit` with 504 (the work is dropped, its transaction
/// rolled back).
async fn time_limit(limit: Duration, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(res) => res,
        Err(_) => {
            Problem::new(StatusCode::GATEWAY_TIMEOUT, "the request took too long and was cancelled").into_response()
        }
    }
}

/// Rejects bodies over the limit by their declared length before reading them; bodies without a
/// length are cut off by the extractor limit (also 413).
async fn declared_length_limit(limit: usize, req: Request, next: Next) -> Response {
    let declared =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "request body is too large").into_response();
    }
    next.run(req).await
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("handler panicked");
    Problem::internal().into_response()
}

/// Wraps a service's API routes and operations endpoints in the shared stack.
pub fn service_router(service: &'static str, api: Router, ops: Ops, cfg: &RuntimeConfig) -> Router {
    let api = api.fallback(|| async { status_problem(StatusCode::NOT_FOUND, "no such route") });
    service_router_with_fallback(service, api, ops, cfg)
}

/// [`service_router`] for an `api` router that has its own fallback for unknown paths (the
/// gateway in front of the web UI hands every path outside the API to it).
pub fn service_router_with_fallback(service: &'static str, api: Router, ops: Ops, cfg: &RuntimeConfig) -> Router {
    metrics_handle(); // install the recorder before the first request is counted
    let limit = cfg.body_limit;
    let timeout = cfg.request_timeout;
    api.merge(ops.router())
        .method_not_allowed_fallback(|| async {
            status_problem(StatusCode::METHOD_NOT_ALLOWED, "method not allowed on this route")
        })
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn(move |req: Request, next: Next| declared_length_limit(limit, req, next)))
        .layer(middleware::from_fn(move |req: Request, next: Next| time_limit(timeout, req, next)))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panic_response))
        .layer(middleware::from_fn(move |req: Request, next: Next| request_context(service, req, next)))
}

/// The client address as seen by the edge. Set by the gateway; services fall back to the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// The client's IP: the TCP peer, unless the peer is a trusted proxy, in which case the rightmost
/// `X-Forwarded-For` entry that is not itself a trusted proxy (never trust arbitrary peers).
pub fn client_ip(req: &Request, trusted: &[IpAddr]) -> Option<IpAddr> {
    if let Some(ClientIp(ip)) = req.extensions().get::<ClientIp>() {
        return Some(*ip);
    }
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())?;
    if !trusted.contains(&peer) {
        return Some(peer);
    }
    let forwarded =
        req.headers().get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>().join(",");
    forwarded
        .split(',')
        .rev()
        .filter_map(|s| s.trim().parse::<IpAddr>().ok())
        .find(|ip| !trusted.contains(ip))
        .or(Some(peer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    fn req_from(peer: &str, xff: Option<&str>) -> Request {
        let mut r = Request::builder().uri("/").body(Body::empty()).unwrap();
        r.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer.parse().unwrap()));
        if let Some(x) = xff {
            r.headers_mut().insert("x-forwarded-for", HeaderValue::from_str(x).unwrap());
        }
        r
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxy: IpAddr = "10.0.0.2".parse().unwrap();
        let spoof = req_from("203.0.113.9:1234", Some("1.2.3.4"));
        assert_eq!(client_ip(&spoof, &[proxy]), Some("203.0.113.9".parse().unwrap()));
        let via_proxy = req_from("10.0.0.2:1234", Some("1.2.3.4, 198.51.100.7"));
        assert_eq!(client_ip(&via_proxy, &[proxy]), Some("198.51.100.7".parse().unwrap()));
        let no_header = req_from("10.0.0.2:1234", None);
        assert_eq!(client_ip(&no_header, &[proxy]), Some(proxy));
    }

    #[test]
    fn request_ids_are_checked() {
        assert!(valid_request_id(&HeaderValue::from_static("abc-123_x.y:z")));
        assert!(!valid_request_id(&HeaderValue::from_static("a b")));
        assert!(!valid_request_id(&HeaderValue::from_static("")));
    }
}
