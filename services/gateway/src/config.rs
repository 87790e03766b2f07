use std::net::IpAddr;

use flotilla_runtime::config::{
    ACCOUNTS_URL, ASSISTANT_URL, AUDIT_URL, BREAKER_OPEN_MS, BREAKER_THRESHOLD, CORS_ORIGINS, ConfigError, Env,
    RATE_LIMIT_PER_IP, RATE_LIMIT_PER_USER, TASKS_URL, TRUSTED_PROXIES, UPSTREAM_RETRIES, UPSTREAM_TIMEOUT_MS, WEB_URL,
};

use flotilla_runtime::shared::SharedStore;

use crate::upstream::{HttpSettings, HttpUpstream, Upstream, Upstreams};

/// The gateway's own settings (the shared ones are in `RuntimeConfig`).
#[derive(Debug, Clone)]
pub struct Config {
    pub cors_origins: Vec<String>,
    /// Requests per minute; 0 disables the limit.
    pub rate_limit_per_ip: u64,
    pub rate_limit_per_user: u64,
    pub trusted_proxies: Vec<IpAddr>,
    pub http: HttpSettings,
    /// Redis shared by the replicas (`FLOTILLA_REDIS_URL`): rate limits count across all of them.
    pub shared: Option<SharedStore>,
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let cors_origins = env.list(CORS_ORIGINS);
        for origin in &cors_origins {
            let ok = (origin.starts_with("http://") || origin.starts_with("https://"))
                && !origin.ends_with('/')
                && origin.parse::<axum::http::HeaderValue>().is_ok();
            if !ok {
                return Err(ConfigError::new(
                    CORS_ORIGINS,
                    origin,
                    "each origin must be scheme://host[:port] without a trailing slash (no wildcards)",
                ));
            }
        }
        let trusted_proxies = env
            .list(TRUSTED_PROXIES)
            .iter()
            .map(|s| s.parse::<IpAddr>().map_err(|_| ConfigError::new(TRUSTED_PROXIES, s, "expected IP addresses")))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            cors_origins,
            rate_limit_per_ip: env.int_in(RATE_LIMIT_PER_IP, 0, 10_000_000)?,
            rate_limit_per_user: env.int_in(RATE_LIMIT_PER_USER, 0, 10_000_000)?,
            trusted_proxies,
            shared: SharedStore::from_env(env)?,
            http: HttpSettings {
                timeout: env.millis(UPSTREAM_TIMEOUT_MS, 50, 300_000)?,
                retries: env.int_in(UPSTREAM_RETRIES, 0, 5)? as u32,
                breaker_threshold: env.int_in(BREAKER_THRESHOLD, 1, 1000)? as u32,
                breaker_open: env.millis(BREAKER_OPEN_MS, 100, 600_000)?,
            },
        })
    }

    /// Distributed mode: the services at `FLOTILLA_ACCOUNTS_URL`, `FLOTILLA_TASKS_URL`,
    /// `FLOTILLA_AUDIT_URL` and `FLOTILLA_ASSISTANT_URL` (each required), and the web UI at
    /// `FLOTILLA_WEB_URL` (optional: without it the gateway serves the API only).
    pub fn http_upstreams(&self, env: &Env) -> Result<Upstreams, ConfigError> {
        let one = |var: &str, name: &'static str| -> Result<Upstream, ConfigError> {
            let url = env.get(var).ok_or_else(|| ConfigError::new(var, "", "required when the gateway runs alone"))?;
            HttpUpstream::new(name, url, self.http)
                .map(|u| Upstream::Http(std::sync::Arc::new(u)))
                .map_err(|e| ConfigError::new(var, url, e))
        };
        Ok(Upstreams {
            accounts: one(ACCOUNTS_URL, "accounts")?,
            tasks: one(TASKS_URL, "tasks")?,
            audit: one(AUDIT_URL, "audit")?,
            assistant: one(ASSISTANT_URL, "assistant")?,
            web: match env.get(WEB_URL) {
                Some(_) => Some(one(WEB_URL, "web")?),
                None => None,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_and_malformed_origins_are_refused() {
        for bad in ["*", "example.com", "https://example.com/"] {
            let env = Env::from_pairs([(CORS_ORIGINS, bad)]);
            assert_eq!(Config::from_env(&env).unwrap_err().var, CORS_ORIGINS, "{bad}");
        }
        let env = Env::from_pairs([(CORS_ORIGINS, "https://app.example.com,http://localhost:3000")]);
        assert_eq!(Config::from_env(&env).unwrap().cors_origins.len(), 2);
    }

    #[test]
    fn proxies_must_be_ip_addresses() {
        let env = Env::from_pairs([(TRUSTED_PROXIES, "10.0.0.1, ingress")]);
        let err = Config::from_env(&env).unwrap_err();
        assert_eq!((err.var.as_str(), err.value.as_str()), (TRUSTED_PROXIES, "ingress"));
    }
}
