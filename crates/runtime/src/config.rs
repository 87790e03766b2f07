//! Configuration from `FLOTILLA_*` environment variables.
//!
//! Every variable the binary reads is declared once in [`VARS`]; the README, the compose file and
//! the Helm chart are checked against this table by tests. Command-line flags are applied as
//! overrides of the same names, so there is one parsing path and one error format:
//! `invalid configuration: FLOTILLA_LISTEN="abc": not an address:port`.

use std::collections::HashMap;
use std::fmt::Display;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

/// A variable the binary reads: its name, its default (as text) and what it does.
#[derive(Debug, Clone, Copy)]
pub struct Var {
    pub name: &'static str,
    pub default: &'static str,
    pub help: &'static str,
}

macro_rules! vars {
    ($($ident:ident = $name:literal, $default:literal, $help:literal;)*) => {
        $(pub const $ident: &str = $name;)*
        /// Every `FLOTILLA_*` variable read by any part of the binary.
        pub const VARS: &[Var] = &[$(Var { name: $name, default: $default, help: $help }),*];
    };
}

vars! {
    LISTEN = "FLOTILLA_LISTEN", "127.0.0.1:8080", "Address and port to listen on.";
    DATA_DIR = "FLOTILLA_DATA_DIR", "./data", "Directory of the SQLite files in embedded mode.";
    DATABASE_URL = "FLOTILLA_DATABASE_URL", "", "A single service's own database: `sqlite:PATH` or `postgres://…` (default: SQLite in the data dir).";
    LOG = "FLOTILLA_LOG", "info", "Log filter (tracing `EnvFilter` syntax, e.g. `info,flotilla_tasks=debug`).";
    LOG_FORMAT = "FLOTILLA_LOG_FORMAT", "auto", "`json`, `human`, or `auto` (human on a terminal, JSON otherwise).";
    REQUEST_TIMEOUT_MS = "FLOTILLA_REQUEST_TIMEOUT_MS", "10000", "Per-request time limit; slower requests get 504.";
    BODY_LIMIT_BYTES = "FLOTILLA_BODY_LIMIT_BYTES", "65536", "Largest accepted request body; larger bodies get 413.";
    SHUTDOWN_GRACE_SECS = "FLOTILLA_SHUTDOWN_GRACE_SECS", "20", "On SIGTERM/SIGINT, how long in-flight requests may take to finish.";
    DB_MAX_CONNECTIONS = "FLOTILLA_DB_MAX_CONNECTIONS", "10", "Database pool size per service (SQLite: readers; writes use one connection).";
    DB_ACQUIRE_TIMEOUT_MS = "FLOTILLA_DB_ACQUIRE_TIMEOUT_MS", "2000", "Longest wait for a pooled connection before answering 503.";
    JWT_ISSUER = "FLOTILLA_JWT_ISSUER", "flotilla", "`iss` of issued access tokens, checked on every request.";
    JWT_AUDIENCE = "FLOTILLA_JWT_AUDIENCE", "flotilla-api", "`aud` of issued access tokens, checked on every request.";
    ACCESS_TOKEN_TTL_SECS = "FLOTILLA_ACCESS_TOKEN_TTL_SECS", "900", "Lifetime of access tokens (15 minutes).";
    REFRESH_TOKEN_TTL_SECS = "FLOTILLA_REFRESH_TOKEN_TTL_SECS", "2592000", "Lifetime of refresh tokens (30 days).";
    ADMIN_EMAIL = "FLOTILLA_ADMIN_EMAIL", "", "With FLOTILLA_ADMIN_PASSWORD: create this admin at start if no such user exists.";
    ADMIN_PASSWORD = "FLOTILLA_ADMIN_PASSWORD", "", "Password of the bootstrap admin (a secret: set it from a Secret, never a ConfigMap).";
    ADMIN_NAME = "FLOTILLA_ADMIN_NAME", "Administrator", "Display name of the bootstrap admin.";
    LOGIN_MAX_FAILURES_PER_ACCOUNT = "FLOTILLA_LOGIN_MAX_FAILURES_PER_ACCOUNT", "5", "Failed logins per email in 15 minutes before logins for it are refused (429).";
    LOGIN_MAX_FAILURES_PER_IP = "FLOTILLA_LOGIN_MAX_FAILURES_PER_IP", "20", "Failed logins per client IP in 15 minutes before its logins are refused (429).";
    CORS_ORIGINS = "FLOTILLA_CORS_ORIGINS", "", "Comma-separated origins allowed to call the API from a browser (empty: none).";
    RATE_LIMIT_PER_IP = "FLOTILLA_RATE_LIMIT_PER_IP", "1200", "Requests per minute per client IP at the gateway (0 = off).";
    RATE_LIMIT_PER_USER = "FLOTILLA_RATE_LIMIT_PER_USER", "600", "Requests per minute per signed-in user at the gateway (0 = off).";
    TRUSTED_PROXIES = "FLOTILLA_TRUSTED_PROXIES", "", "Comma-separated proxy IPs whose X-Forwarded-For is believed (e.g. the ingress controller).";
    ACCOUNTS_URL = "FLOTILLA_ACCOUNTS_URL", "", "Base URL of the accounts service (gateway upstream; JWKS source of the other services).";
    TASKS_URL = "FLOTILLA_TASKS_URL", "", "Base URL of the tasks service (gateway upstream).";
    AUDIT_URL = "FLOTILLA_AUDIT_URL", "", "Base URL of the audit service (gateway upstream).";
    NATS_URL = "FLOTILLA_NATS_URL", "", "NATS JetStream server of the event bus in distributed mode, e.g. nats://nats:4222 (embedded mode uses an in-process bus).";
    REMINDER_INTERVAL_MS = "FLOTILLA_REMINDER_INTERVAL_MS", "1000", "Tasks: how often the reminder scheduler looks for reminders that are due.";
    AUDIT_RETENTION_DAYS = "FLOTILLA_AUDIT_RETENTION_DAYS", "365", "Audit: records older than this are deleted by the retention job.";
    UPSTREAM_TIMEOUT_MS = "FLOTILLA_UPSTREAM_TIMEOUT_MS", "5000", "Gateway: time limit of one attempt at an upstream call.";
    UPSTREAM_RETRIES = "FLOTILLA_UPSTREAM_RETRIES", "2", "Gateway: extra attempts for idempotent requests that failed to connect or got 502/503/504.";
    BREAKER_THRESHOLD = "FLOTILLA_BREAKER_THRESHOLD", "5", "Gateway: consecutive failures that open an upstream's circuit.";
    BREAKER_OPEN_MS = "FLOTILLA_BREAKER_OPEN_MS", "5000", "Gateway: how long an open circuit fails fast before one probe is let through.";
    ASSISTANT_URL = "FLOTILLA_ASSISTANT_URL", "", "Base URL of the assistant service (gateway upstream).";
    WEB_URL = "FLOTILLA_WEB_URL", "", "Base URL of the web UI service (gateway upstream for every path outside the API; optional).";
    GATEWAY_URL = "FLOTILLA_GATEWAY_URL", "", "Web: base URL of the gateway whose public API the UI calls (distributed mode).";
    REDIS_URL = "FLOTILLA_REDIS_URL", "", "Redis for rate limits and token revocations shared by all replicas, e.g. redis://redis:6379 (empty: in memory, one process).";
    ASSISTANT_PROVIDER = "FLOTILLA_ASSISTANT_PROVIDER", "rules", "Assistant: `rules` (offline, built in), `ollama` or `openai`.";
    ASSISTANT_HISTORY = "FLOTILLA_ASSISTANT_HISTORY", "20", "Assistant: how many of a conversation's newest messages each turn reads.";
    ASSISTANT_MAX_STEPS = "FLOTILLA_ASSISTANT_MAX_STEPS", "5", "Assistant: most model calls (tool-calling rounds) in one turn.";
    LLM_TIMEOUT_MS = "FLOTILLA_LLM_TIMEOUT_MS", "30000", "Assistant: time limit of one LLM request; on timeout the turn falls back to the rules engine.";
    OLLAMA_URL = "FLOTILLA_OLLAMA_URL", "http://127.0.0.1:11434", "Assistant: Ollama server (`ollama` provider).";
    OLLAMA_MODEL = "FLOTILLA_OLLAMA_MODEL", "llama3.1", "Assistant: Ollama model with tool support.";
    OPENAI_BASE_URL = "FLOTILLA_OPENAI_BASE_URL", "https://api.openai.com/v1", "Assistant: any OpenAI-compatible `/v1` endpoint (`openai` provider).";
    OPENAI_API_KEY = "FLOTILLA_OPENAI_API_KEY", "", "Assistant: API key of the OpenAI-compatible endpoint (a secret).";
    OPENAI_MODEL = "FLOTILLA_OPENAI_MODEL", "gpt-4o-mini", "Assistant: model name sent to the OpenAI-compatible endpoint.";
    WEB_SESSION_KEY = "FLOTILLA_WEB_SESSION_KEY", "", "Web: secret (≥ 32 characters) that signs session and CSRF tokens; the same on every web replica (empty: random per process).";
    COOKIE_SECURE = "FLOTILLA_COOKIE_SECURE", "true", "Web: mark session cookies `Secure` (set `false` only for plain-HTTP use other than localhost).";
}

/// Invalid configuration: names the variable, the value and the reason, on one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {var}={value:?}: {reason}")]
pub struct ConfigError {
    pub var: String,
    pub value: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(var: &str, value: &str, reason: impl Display) -> Self {
        Self { var: var.to_owned(), value: value.to_owned(), reason: reason.to_string() }
    }
}

/// A snapshot of the environment plus flag overrides; all configuration is read through it.
#[derive(Debug, Clone, Default)]
pub struct Env {
    values: HashMap<String, String>,
}

impl Env {
    /// The process environment (only `FLOTILLA_*` variables are kept).
    pub fn from_process() -> Self {
        Self::from_pairs(std::env::vars().filter(|(k, _)| k.starts_with("FLOTILLA_")))
    }

    pub fn from_pairs<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        Self { values: pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect() }
    }

    /// Applies a command-line flag: it wins over the environment.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        self.values.insert(name.to_owned(), value.into());
    }

    /// The raw value; an empty string counts as unset.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str).filter(|v| !v.trim().is_empty())
    }

    /// The value or the default declared in [`VARS`].
    pub fn string(&self, name: &str) -> String {
        match self.get(name) {
            Some(v) => v.trim().to_owned(),
            None => default_of(name).to_owned(),
        }
    }

    /// Parses the value (or the declared default) with `FromStr`.
    pub fn parse<T>(&self, name: &str) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        let raw = self.string(name);
        raw.parse::<T>().map_err(|e| ConfigError::new(name, &raw, e))
    }

    pub fn addr(&self, name: &str) -> Result<SocketAddr, ConfigError> {
        let raw = self.string(name);
        raw.parse().map_err(|_| ConfigError::new(name, &raw, "expected address:port, e.g. 127.0.0.1:8080"))
    }

    /// A positive integer within `min..=max`.
    pub fn int_in(&self, name: &str, min: u64, max: u64) -> Result<u64, ConfigError> {
        let raw = self.string(name);
        let n: u64 = raw.parse().map_err(|_| ConfigError::new(name, &raw, "expected a whole number"))?;
        if n < min || n > max {
            return Err(ConfigError::new(name, &raw, format!("must be between {min} and {max}")));
        }
        Ok(n)
    }

    pub fn millis(&self, name: &str, min: u64, max: u64) -> Result<Duration, ConfigError> {
        self.int_in(name, min, max).map(Duration::from_millis)
    }

    pub fn secs(&self, name: &str, min: u64, max: u64) -> Result<Duration, ConfigError> {
        self.int_in(name, min, max).map(Duration::from_secs)
    }

    /// A comma-separated list; empty items are dropped.
    pub fn list(&self, name: &str) -> Vec<String> {
        self.string(name).split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
    }

    /// `FLOTILLA_*` variables that nothing reads: most likely typos, reported at start.
    pub fn unknown(&self) -> Vec<String> {
        let mut v: Vec<String> =
            self.values.keys().filter(|k| !VARS.iter().any(|var| var.name == *k)).cloned().collect();
        v.sort();
        v
    }
}

fn default_of(name: &str) -> &'static str {
    VARS.iter().find(|v| v.name == name).map(|v| v.default).unwrap_or("")
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Human,
}

/// Settings every service shares: listener, logs, limits, database pool.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    pub listen: SocketAddr,
    pub log_filter: String,
    pub log_format: LogFormat,
    pub request_timeout: Duration,
    pub body_limit: usize,
    pub shutdown_grace: Duration,
    pub db_max_connections: u32,
    pub db_acquire_timeout: Duration,
}

impl RuntimeConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        use std::io::IsTerminal;
        let log_format = match env.string(LOG_FORMAT).as_str() {
            "json" => LogFormat::Json,
            "human" => LogFormat::Human,
            "auto" if std::io::stdout().is_terminal() => LogFormat::Human,
            "auto" => LogFormat::Json,
            other => return Err(ConfigError::new(LOG_FORMAT, other, "expected json, human or auto")),
        };
        let log_filter = env.string(LOG);
        tracing_subscriber::EnvFilter::try_new(&log_filter).map_err(|e| ConfigError::new(LOG, &log_filter, e))?;
        Ok(Self {
            listen: env.addr(LISTEN)?,
            log_filter,
            log_format,
            request_timeout: env.millis(REQUEST_TIMEOUT_MS, 100, 600_000)?,
            body_limit: env.int_in(BODY_LIMIT_BYTES, 1024, 64 * 1024 * 1024)? as usize,
            shutdown_grace: env.secs(SHUTDOWN_GRACE_SECS, 0, 3600)?,
            db_max_connections: env.int_in(DB_MAX_CONNECTIONS, 1, 1000)? as u32,
            db_acquire_timeout: env.millis(DB_ACQUIRE_TIMEOUT_MS, 10, 60_000)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_when_unset_or_empty() {
        let env = Env::from_pairs([(LISTEN, "  ")]);
        let cfg = RuntimeConfig::from_env(&env).expect("defaults are valid");
        assert_eq!(cfg.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(cfg.request_timeout, Duration::from_secs(10));
        assert_eq!(cfg.body_limit, 65536);
    }

    #[test]
    fn invalid_values_name_the_variable_on_one_line() {
        let env = Env::from_pairs([(LISTEN, "localhost")]);
        let err = RuntimeConfig::from_env(&env).unwrap_err();
        assert_eq!(err.var, LISTEN);
        let line = err.to_string();
        assert!(
            line.starts_with("invalid configuration: FLOTILLA_LISTEN=\"localhost\": expected address:port"),
            "{line}"
        );
        assert!(!line.contains('\n'));

        let env = Env::from_pairs([(REQUEST_TIMEOUT_MS, "5")]);
        let err = RuntimeConfig::from_env(&env).unwrap_err();
        assert_eq!(err.var, REQUEST_TIMEOUT_MS);
        assert!(err.reason.contains("between 100 and"), "{err}");

        let env = Env::from_pairs([(LOG_FORMAT, "xml")]);
        assert_eq!(RuntimeConfig::from_env(&env).unwrap_err().var, LOG_FORMAT);
    }

    #[test]
    fn flags_override_the_environment() {
        let mut env = Env::from_pairs([(LISTEN, "127.0.0.1:1")]);
        env.set(LISTEN, "127.0.0.1:2");
        assert_eq!(env.addr(LISTEN).unwrap().port(), 2);
    }

    #[test]
    fn unknown_flotilla_variables_are_reported() {
        let env = Env::from_pairs([(LISTEN, "127.0.0.1:1"), ("FLOTILLA_LISTNE", "x")]);
        assert_eq!(env.unknown(), vec!["FLOTILLA_LISTNE".to_owned()]);
    }

    #[test]
    fn lists_drop_empty_items() {
        let env = Env::from_pairs([(CORS_ORIGINS, " https://a.example, ,https://b.example ")]);
        assert_eq!(env.list(CORS_ORIGINS), vec!["https://a.example", "https://b.example"]);
    }

    #[test]
    fn every_variable_is_declared_once_with_the_prefix() {
        for (i, v) in VARS.iter().enumerate() {
            assert!(v.name.starts_with("FLOTILLA_"), "{}", v.name);
            assert!(!v.help.is_empty());
            assert!(VARS[i + 1..].iter().all(|w| w.name != v.name), "{} declared twice", v.name);
        }
    }
}
