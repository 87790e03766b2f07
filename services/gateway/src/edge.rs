//! Edge middleware: client address, rate limits, token check, CORS, security headers.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use flotilla_runtime::Problem;
use flotilla_runtime::auth::Claims;
use flotilla_runtime::http::{ClientIp, client_ip};
use flotilla_runtime::ratelimit::{Decision, Limiter};
use flotilla_runtime::shared::SharedStore;
use flotilla_runtime::telemetry::names::RATE_LIMITED_TOTAL;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::Shared;

pub(crate) struct Limits {
    per_ip: Option<Limiter>,
    per_user: Option<Limiter>,
}

impl Limits {
    pub fn new(per_ip: u64, per_user: u64, shared: Option<&SharedStore>) -> Self {
        let make = |n: u64, scope| (n > 0).then(|| Limiter::new(n, Duration::from_secs(60), shared, scope));
        Self { per_ip: make(per_ip, "ip"), per_user: make(per_user, "user") }
    }
}

/// Resolves the client address once (trusted proxies only) for the limits and for accounts'
/// login throttling.
pub(crate) async fn client_address(State(gw): State<Shared>, mut req: Request, next: Next) -> Response {
    if let Some(ip) = client_ip(&req, &gw.trusted_proxies) {
        req.extensions_mut().insert(ClientIp(ip));
    }
    next.run(req).await
}

/// The per-user decision made after authentication, handed back out to [`rate_limit`].
#[derive(Clone, Copy)]
struct UserDecision(Decision);

/// Per-IP limit before anything else; the per-user limit is applied in [`authenticate`]. The
/// response carries the `RateLimit-*` headers of whichever limit is closer to running out.
pub(crate) async fn rate_limit(State(gw): State<Shared>, req: Request, next: Next) -> Response {
    if req.method() == Method::OPTIONS {
        return next.run(req).await;
    }
    let ip_decision = match (&gw.limits.per_ip, req.extensions().get::<ClientIp>()) {
        (Some(limiter), Some(ClientIp(ip))) => Some(limiter.hit(&ip.to_string()).await),
        _ => None,
    };
    if let Some(d) = ip_decision.filter(|d| !d.allowed) {
        return limited(d, "ip");
    }
    let mut res = next.run(req).await;
    let user_decision = res.extensions_mut().remove::<UserDecision>().map(|u| u.0);
    let shown = match (ip_decision, user_decision) {
        (Some(a), Some(b)) => Some(if b.remaining < a.remaining { b } else { a }),
        (a, b) => a.or(b),
    };
    if let Some(d) = shown {
        set_rate_headers(&mut res, d);
    }
    res
}

fn set_rate_headers(res: &mut Response, d: Decision) {
    let h = res.headers_mut();
    h.insert(HeaderName::from_static("ratelimit-limit"), HeaderValue::from(d.limit));
    h.insert(HeaderName::from_static("ratelimit-remaining"), HeaderValue::from(d.remaining));
    h.insert(HeaderName::from_static("ratelimit-reset"), HeaderValue::from(d.reset_secs));
}

fn limited(d: Decision, scope: &'static str) -> Response {
    metrics::counter!(RATE_LIMITED_TOTAL, "scope" => scope).increment(1);
    let mut res = Problem::new(axum::http::StatusCode::TOO_MANY_REQUESTS, "rate limit exceeded; retry later")
        .retry_after(d.reset_secs)
        .into_response();
    set_rate_headers(&mut res, d);
    res
}

/// Verifies the bearer token at the edge; upstreams receive the verified claims with the
/// request (in process) and check them again themselves (over the network).
pub(crate) async fn authenticate(State(gw): State<Shared>, mut req: Request, next: Next) -> Response {
    let claims: Claims = match gw.auth.verifier.verify_headers(req.headers()).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let user_decision = match &gw.limits.per_user {
        Some(l) => Some(l.hit(&claims.sub).await),
        None => None,
    };
    if let Some(d) = user_decision.filter(|d| !d.allowed) {
        return limited(d, "user");
    }
    req.extensions_mut().insert(claims);
    let mut res = next.run(req).await;
    if let Some(d) = user_decision {
        res.extensions_mut().insert(UserDecision(d));
    }
    res
}

/// CORS for the configured origins only; no wildcard, no credentials (the API uses bearer tokens).
pub(crate) fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let origins: Vec<HeaderValue> = origins.iter().filter_map(|o| o.parse().ok()).collect();
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::IF_MATCH,
                HeaderName::from_static("idempotency-key"),
                HeaderName::from_static("x-request-id"),
            ])
            .expose_headers([
                header::ETAG,
                header::LOCATION,
                header::RETRY_AFTER,
                HeaderName::from_static("ratelimit-limit"),
                HeaderName::from_static("ratelimit-remaining"),
                HeaderName::from_static("ratelimit-reset"),
                HeaderName::from_static("x-request-id"),
                HeaderName::from_static("idempotent-replayed"),
            ])
            .max_age(Duration::from_secs(600)),
    )
}

/// Headers for every response of the public edge (kept when an upstream already set them).
pub(crate) const SECURITY_HEADERS: &[(&str, &str)] = &[
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("content-security-policy", "default-src 'none'; frame-ancestors 'none'"),
    ("strict-transport-security", "max-age=31536000; includeSubDomains"),
    ("cache-control", "no-store"),
];

pub(crate) async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    for (name, value) in SECURITY_HEADERS {
        res.headers_mut().entry(HeaderName::from_static(name)).or_insert(HeaderValue::from_static(value));
    }
    res
}
