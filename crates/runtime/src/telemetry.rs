//! Logs (tracing, JSON or human) and the process-wide Prometheus recorder.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::config::{LogFormat, RuntimeConfig};

/// Metric names are a contract with the alert rules and dashboards (brief section 6).
pub mod names {
    pub const HTTP_REQUESTS_TOTAL: &str = "http_requests_total";
    pub const HTTP_REQUEST_DURATION_SECONDS: &str = "http_request_duration_seconds";
    pub const DB_POOL_CONNECTIONS: &str = "db_pool_connections";
    /// The most connections the pool may open (SQLite: the readers plus the one writer), the
    /// denominator of the pool saturation alert.
    pub const DB_POOL_MAX_CONNECTIONS: &str = "db_pool_max_connections";
    pub const DB_QUERY_DURATION_SECONDS: &str = "db_query_duration_seconds";
    pub const RATE_LIMITED_TOTAL: &str = "rate_limited_total";
    pub const CIRCUIT_BREAKER_STATE: &str = "circuit_breaker_state";
    /// Failed calls to the Redis shared by the replicas (limits then count per replica).
    pub const SHARED_STORE_ERRORS_TOTAL: &str = "shared_store_errors_total";
    /// Every name above; a test scrapes a running system and finds each of them.
    pub const ALL: &[&str] = &[
        HTTP_REQUESTS_TOTAL,
        HTTP_REQUEST_DURATION_SECONDS,
        DB_POOL_CONNECTIONS,
        DB_POOL_MAX_CONNECTIONS,
        DB_QUERY_DURATION_SECONDS,
        RATE_LIMITED_TOTAL,
    ];
}

/// Latency buckets (seconds): fine below 25 ms where the targets are, coarse above.
const BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Starts logging once per process; later calls are ignored (tests start many services).
pub fn init_logging(cfg: &RuntimeConfig) {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let filter = tracing_subscriber::EnvFilter::try_new(&cfg.log_filter)
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
        let _ = match cfg.log_format {
            LogFormat::Json => {
                builder.json().flatten_event(true).with_current_span(true).with_span_list(false).try_init()
            }
            LogFormat::Human => builder.compact().try_init(),
        };
    });
}

/// The process-wide recorder, installed on first use, with histogram buckets configured so the
/// exporter writes `_bucket` series (the default would be summaries, useless to alert rules).
pub fn metrics_handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
            .expect("static bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        // If another recorder is already installed (never in the binary), metrics still render
        // from this handle but stay empty; that would show up in the metrics tests.
        let _ = metrics::set_global_recorder(recorder);
        let upkeep = handle.clone();
        std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(Duration::from_secs(5));
                    upkeep.run_upkeep();
                }
            })
            .expect("spawn metrics upkeep thread");
        handle
    })
}
