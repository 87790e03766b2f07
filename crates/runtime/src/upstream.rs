//! A call to another service: its router in this process (embedded mode) or the service over
//! HTTP (distributed mode), with timeouts, retries of idempotent calls and a circuit breaker.
//! Both return the service's answer unchanged. The gateway routes the public API through these;
//! the assistant calls tasks and the web UI calls the gateway the same way.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::Problem;
use crate::breaker::CircuitBreaker;
use crate::http::ClientIp;
use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tower::ServiceExt;

/// One service behind the gateway.
#[derive(Clone)]
pub enum Upstream {
    /// The service's router, called in process: no serialisation, no network.
    InProcess(Router),
    /// The service at a base URL, through a pooled HTTP client with timeouts, retries and a
    /// circuit breaker.
    Http(Arc<HttpUpstream>),
}

impl Upstream {
    /// Forwards the request; the upstream's status, headers and body come back unchanged.
    pub async fn call(&self, req: Request) -> Response {
        match self {
            Upstream::InProcess(router) => match router.clone().oneshot(handover(req)).await {
                Ok(res) => res,
                Err(never) => match never {},
            },
            Upstream::Http(up) => up.forward(req).await,
        }
    }

    /// Asks the service's `/ready`; returns readiness and how long the answer took.
    pub async fn probe_ready(&self, limit: Duration) -> (bool, Duration) {
        let start = Instant::now();
        let ready = match self {
            Upstream::InProcess(_) => {
                let req = Request::get(crate::http::READY_PATH).body(Body::empty()).expect("static request is valid");
                matches!(tokio::time::timeout(limit, self.call(req)).await, Ok(res) if res.status() == StatusCode::OK)
            }
            Upstream::Http(up) => up.probe(limit).await,
        };
        (ready, start.elapsed())
    }
}

/// The request as the service would receive it from the network, plus what the edge
/// established (verified claims, client address). The gateway router's own extensions — its
/// path parameters above all — must not leak into the service's routing.
fn handover(req: Request) -> Request {
    let (parts, body) = req.into_parts();
    let mut out = Request::new(body);
    *out.method_mut() = parts.method;
    *out.uri_mut() = parts.uri;
    *out.version_mut() = parts.version;
    *out.headers_mut() = parts.headers;
    let ext = out.extensions_mut();
    if let Some(c) = parts.extensions.get::<crate::auth::Claims>() {
        ext.insert(c.clone());
    }
    if let Some(ip) = parts.extensions.get::<ClientIp>() {
        ext.insert(*ip);
    }
    if let Some(ci) = parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>() {
        ext.insert(*ci);
    }
    out
}

/// Tuning of an HTTP upstream.
#[derive(Debug, Clone, Copy)]
pub struct HttpSettings {
    pub timeout: Duration,
    pub retries: u32,
    pub breaker_threshold: u32,
    pub breaker_open: Duration,
}

pub struct HttpUpstream {
    name: &'static str,
    base: Uri,
    client: Client<HttpConnector, Body>,
    settings: HttpSettings,
    breaker: CircuitBreaker,
}

/// Headers that describe one connection, not the message; never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Why an attempt failed, for the retry decision.
enum Failure {
    /// Nothing reached the service (refused, reset, timed out): safe to retry idempotent calls.
    Transport(String),
    Timeout,
}

impl HttpUpstream {
    /// `base` is `http://host:port` (a path prefix is allowed).
    pub fn new(name: &'static str, base: &str, settings: HttpSettings) -> Result<Self, String> {
        let base: Uri = base.trim_end_matches('/').parse().map_err(|e| format!("{base:?}: {e}"))?;
        if base.scheme_str() != Some("http") || base.authority().is_none() {
            return Err(format!("{base}: expected http://host:port"));
        }
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(1)));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(256)
            .build(connector);
        let breaker = CircuitBreaker::new(name, settings.breaker_threshold, settings.breaker_open);
        Ok(Self { name, base, client, settings, breaker })
    }

    fn target(&self, uri: &Uri) -> Result<Uri, String> {
        let prefix = self.base.path().trim_end_matches('/');
        let pq = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let mut parts = self.base.clone().into_parts();
        parts.path_and_query = Some(format!("{prefix}{pq}").parse().map_err(|e| format!("{e}"))?);
        Uri::from_parts(parts).map_err(|e| e.to_string())
    }

    async fn forward(&self, req: Request) -> Response {
        if let Err(wait) = self.breaker.try_acquire() {
            return unavailable(self.name, wait.as_secs().max(1));
        }
        let (mut parts, body) = req.into_parts();
        let uri = match self.target(&parts.uri) {
            Ok(u) => u,
            Err(e) => return Problem::bad_request(format!("cannot forward this path: {e}")).into_response(),
        };
        let client_ip = parts.extensions.get::<ClientIp>().map(|c| c.0);
        prepare_headers(&mut parts.headers, client_ip);

        // Idempotent requests are buffered (bodies are small and bounded) so they can be retried;
        // others stream straight through and are tried once.
        let idempotent =
            matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE);
        let result = if idempotent {
            let bytes = match body.collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => return Problem::bad_request("could not read the request body").into_response(),
            };
            let mut attempt = 0;
            loop {
                let req = build(&parts.method, &uri, &parts.headers, Body::from(bytes.clone()));
                let out = self.attempt(req).await;
                let retryable = match &out {
                    Err(_) => true,
                    Ok(res) => matches!(res.status().as_u16(), 502..=504),
                };
                if !retryable || attempt >= self.settings.retries || self.breaker.is_open() {
                    break out;
                }
                attempt += 1;
                tokio::time::sleep(backoff(attempt)).await;
            }
        } else {
            self.attempt(build(&parts.method, &uri, &parts.headers, body)).await
        };

        match result {
            Ok(res) => {
                if matches!(res.status().as_u16(), 502..=504) {
                    self.breaker.record_failure();
                } else {
                    self.breaker.record_success();
                }
                res
            }
            Err(Failure::Timeout) => {
                self.breaker.record_failure();
                Problem::new(StatusCode::GATEWAY_TIMEOUT, format!("the {} service did not answer in time", self.name))
                    .into_response()
            }
            Err(Failure::Transport(e)) => {
                self.breaker.record_failure();
                tracing::warn!(upstream = self.name, error = %e, "upstream unreachable");
                unavailable(self.name, 1)
            }
        }
    }

    async fn attempt(&self, req: hyper::Request<Body>) -> Result<Response, Failure> {
        match tokio::time::timeout(self.settings.timeout, self.client.request(req)).await {
            Err(_) => Err(Failure::Timeout),
            Ok(Err(e)) => Err(Failure::Transport(e.to_string())),
            Ok(Ok(res)) => {
                let (mut parts, body) = res.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                Ok(Response::from_parts(parts, Body::new(body)))
            }
        }
    }

    async fn probe(&self, limit: Duration) -> bool {
        let Ok(uri) = self.target(&Uri::from_static(crate::http::READY_PATH)) else { return false };
        let req = build(&Method::GET, &uri, &HeaderMap::new(), Body::empty());
        matches!(tokio::time::timeout(limit, self.client.request(req)).await, Ok(Ok(res)) if res.status() == StatusCode::OK)
    }
}

fn build(method: &Method, uri: &Uri, headers: &HeaderMap, body: Body) -> hyper::Request<Body> {
    let mut req = hyper::Request::new(body);
    *req.method_mut() = method.clone();
    *req.uri_mut() = uri.clone();
    *req.headers_mut() = headers.clone();
    req
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Headers named in `Connection` are hop-by-hop too.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
}

/// Request headers for the upstream: hop-by-hop removed, `Host` from the target, the client
/// address appended to `X-Forwarded-For`, and a `traceparent` (W3C) made if the caller sent none.
/// `x-request-id` was already set by the request middleware and travels as is.
fn prepare_headers(headers: &mut HeaderMap, client_ip: Option<std::net::IpAddr>) {
    strip_hop_by_hop(headers);
    headers.remove(header::HOST);
    if let Some(ip) = client_ip {
        let xff = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
            Some(prev) => format!("{prev}, {ip}"),
            None => ip.to_string(),
        };
        if let Ok(v) = HeaderValue::from_str(&xff) {
            headers.insert("x-forwarded-for", v);
        }
    }
    if !headers.contains_key("traceparent") {
        let trace = uuid::Uuid::new_v4().simple().to_string();
        let span = &uuid::Uuid::new_v4().simple().to_string()[..16];
        if let Ok(v) = HeaderValue::from_str(&format!("00-{trace}-{span}-01")) {
            headers.insert("traceparent", v);
        }
    }
}

/// Exponential back-off with full jitter: 0..(25 ms · 2^attempt).
fn backoff(attempt: u32) -> Duration {
    let cap = 25u64 << attempt.min(6);
    Duration::from_millis(rand::random::<u64>() % (cap + 1))
}

fn unavailable(name: &str, retry_after: u64) -> Response {
    Problem::new(StatusCode::SERVICE_UNAVAILABLE, format!("the {name} service is unavailable; retry shortly"))
        .retry_after(retry_after)
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_are_dropped_and_forwarding_headers_added() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("keep-alive, x-secret-hop"));
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("host", HeaderValue::from_static("public.example"));
        h.insert("x-forwarded-for", HeaderValue::from_static("198.51.100.1"));
        h.insert("x-request-id", HeaderValue::from_static("abc"));
        prepare_headers(&mut h, Some("203.0.113.5".parse().unwrap()));
        for gone in ["connection", "x-secret-hop", "keep-alive", "host"] {
            assert!(!h.contains_key(gone), "{gone}");
        }
        assert_eq!(h["x-forwarded-for"], "198.51.100.1, 203.0.113.5");
        assert_eq!(h["x-request-id"], "abc");
        let tp = h["traceparent"].to_str().unwrap();
        assert!(tp.starts_with("00-") && tp.len() == 55, "{tp}");
    }

    #[test]
    fn targets_keep_path_and_query_under_the_base() {
        let up = HttpUpstream::new(
            "t",
            "http://127.0.0.1:9/prefix/",
            HttpSettings {
                timeout: Duration::from_secs(1),
                retries: 0,
                breaker_threshold: 1,
                breaker_open: Duration::from_secs(1),
            },
        )
        .unwrap();
        let t = up.target(&"/api/u/tasks?limit=5".parse().unwrap()).unwrap();
        assert_eq!(t.to_string(), "http://127.0.0.1:9/prefix/api/u/tasks?limit=5");
        assert!(HttpUpstream::new("t", "https://x", up.settings).is_err(), "TLS to upstreams is the mesh's job");
    }

    #[test]
    fn backoff_is_bounded_and_grows() {
        for attempt in 1..10 {
            assert!(backoff(attempt) <= Duration::from_millis(25 << attempt.min(6)));
        }
    }
}
