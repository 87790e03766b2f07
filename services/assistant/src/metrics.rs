//! The assistant's metric names (a contract with the alert rules and dashboards, brief
//! section 6). Histogram buckets come from the runtime's recorder (every `*_seconds` metric).

/// Counter of chat turns: `provider` = rules | ollama | openai; `outcome` = ok (the provider
/// answered), fallback (the LLM failed before any tool ran: the rules engine answered), error (the
/// LLM failed after tools ran, or ran out of steps: a reply saying what was done).
pub const ASSISTANT_TURNS_TOTAL: &str = "assistant_turns_total";
/// Histogram of LLM requests: `provider`, `outcome` = ok | timeout | unavailable | http_error |
/// malformed.
pub const LLM_REQUEST_DURATION_SECONDS: &str = "llm_request_duration_seconds";
/// Every name above.
pub const ALL: &[&str] = &[ASSISTANT_TURNS_TOTAL, LLM_REQUEST_DURATION_SECONDS];

pub fn count_turn(provider: &'static str, outcome: &'static str) {
    metrics::counter!(ASSISTANT_TURNS_TOTAL, "provider" => provider, "outcome" => outcome).increment(1);
}

/// Makes the series of `provider` exist (at 0) from the start, so a scrape of a fresh process
/// shows every contract metric and alert rules have series before the first turn (with the
/// rules provider the LLM histogram simply stays empty).
pub fn register(provider: &'static str) {
    flotilla_runtime::telemetry::metrics_handle();
    for outcome in ["ok", "fallback", "error"] {
        metrics::counter!(ASSISTANT_TURNS_TOTAL, "provider" => provider, "outcome" => outcome).increment(0);
    }
    // Registering the handle is enough for the exporter to list the (empty) histogram.
    let _ = metrics::histogram!(LLM_REQUEST_DURATION_SECONDS, "provider" => provider, "outcome" => "ok");
}
