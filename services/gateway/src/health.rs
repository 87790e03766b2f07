//! The public `GET /health`: each service's readiness and latency; 503 when one is not ready.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::Shared;

/// Per-service time limit of a health probe.
const PROBE_LIMIT: Duration = Duration::from_secs(2);
/// Answers are reused this long, so a flood of `/health` calls cannot load the databases.
const CACHE_FOR: Duration = Duration::from_millis(1000);

/// One service as the gateway sees it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct ServiceHealth {
    /// Whether its `/ready` answered 200 in time.
    ready: bool,
    /// How long the probe took, in milliseconds.
    latency_ms: f64,
}

/// The services behind the gateway: `ok` when every one is ready, else `unavailable` (and 503).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct Health {
    #[schema(schema_with = health_status)]
    status: &'static str,
    /// By service name (`accounts`, `tasks`, `audit`, `assistant`, and `web` when the gateway serves the UI).
    services: BTreeMap<&'static str, ServiceHealth>,
}

fn health_status() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .enum_values(Some(["ok", "unavailable"]))
        .build()
}

#[derive(Default)]
pub(crate) struct HealthCache(Mutex<Option<(Instant, Health)>>);

/// Readiness and probe latency of every service behind the gateway.
#[utoipa::path(
    get,
    path = "/health",
    operation_id = "health",
    tag = "gateway",
    responses(
        (status = 200, description = "Every service is ready.", body = Health),
        (status = 503, description = "At least one service is not ready (named in the body).", body = Health),
    )
)]
pub(crate) async fn aggregated(State(gw): State<Shared>) -> Response {
    let cached = gw.health.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let health = match cached {
        Some((at, h)) if at.elapsed() < CACHE_FOR => h,
        _ => {
            let h = probe_all(&gw).await;
            *gw.health.0.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), h.clone()));
            h
        }
    };
    let status = if health.status == "ok" { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(health)).into_response()
}

async fn probe_all(gw: &Shared) -> Health {
    let probes = gw.upstreams.all().into_iter().map(|(name, up)| async move {
        let (ready, latency) = up.probe_ready(PROBE_LIMIT).await;
        (name, ServiceHealth { ready, latency_ms: (latency.as_secs_f64() * 1e5).round() / 100.0 })
    });
    // Concurrently: a service that is down must not delay the others' answers.
    let services: BTreeMap<_, _> = futures_util::future::join_all(probes).await.into_iter().collect();
    let all_ready = services.values().all(|s| s.ready);
    Health { status: if all_ready { "ok" } else { "unavailable" }, services }
}
