//! Configuration of the accounts service, from the `FLOTILLA_*` variables declared in the runtime.

use std::net::IpAddr;
use std::time::Duration;

use flotilla_runtime::config::{
    ACCESS_TOKEN_TTL_SECS, ADMIN_EMAIL, ADMIN_NAME, ADMIN_PASSWORD, ConfigError, Env, LOGIN_MAX_FAILURES_PER_ACCOUNT,
    LOGIN_MAX_FAILURES_PER_IP, REFRESH_TOKEN_TTL_SECS, TRUSTED_PROXIES,
};

use crate::policy;

/// The window over which failed logins are counted.
pub const LOGIN_WINDOW: Duration = Duration::from_secs(15 * 60);

/// The admin created (or promoted) at start.
#[derive(Clone)]
pub struct AdminBootstrap {
    pub email: String,
    pub name: String,
    pub password: String,
}

impl std::fmt::Debug for AdminBootstrap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminBootstrap")
            .field("email", &self.email)
            .field("name", &self.name)
            .field("password", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Lifetime of access tokens, in seconds.
    pub access_ttl_secs: i64,
    /// Lifetime of refresh tokens, in seconds.
    pub refresh_ttl_secs: i64,
    pub login_max_failures_per_account: u64,
    pub login_max_failures_per_ip: u64,
    /// Proxies whose `X-Forwarded-For` is believed when throttling logins per client IP.
    pub trusted_proxies: Vec<IpAddr>,
    /// Set when FLOTILLA_ADMIN_EMAIL and FLOTILLA_ADMIN_PASSWORD are.
    pub admin: Option<AdminBootstrap>,
    /// Redis shared by the replicas (`FLOTILLA_REDIS_URL`): login throttling counts across all.
    pub shared: Option<flotilla_runtime::shared::SharedStore>,
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let access_ttl_secs = env.int_in(ACCESS_TOKEN_TTL_SECS, 60, 24 * 3600)? as i64;
        let refresh_ttl_secs = env.int_in(REFRESH_TOKEN_TTL_SECS, 300, 366 * 24 * 3600)? as i64;
        if refresh_ttl_secs < access_ttl_secs {
            return Err(ConfigError::new(
                REFRESH_TOKEN_TTL_SECS,
                &refresh_ttl_secs.to_string(),
                format!("must not be shorter than {ACCESS_TOKEN_TTL_SECS}"),
            ));
        }
        let trusted_proxies = env
            .list(TRUSTED_PROXIES)
            .iter()
            .map(|s| s.parse::<IpAddr>().map_err(|_| ConfigError::new(TRUSTED_PROXIES, s, "expected IP addresses")))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            access_ttl_secs,
            refresh_ttl_secs,
            login_max_failures_per_account: env.int_in(LOGIN_MAX_FAILURES_PER_ACCOUNT, 1, 1_000_000)?,
            login_max_failures_per_ip: env.int_in(LOGIN_MAX_FAILURES_PER_IP, 1, 1_000_000)?,
            trusted_proxies,
            admin: admin_from_env(env)?,
            shared: flotilla_runtime::shared::SharedStore::from_env(env)?,
        })
    }
}

fn admin_from_env(env: &Env) -> Result<Option<AdminBootstrap>, ConfigError> {
    let (email, password) = match (env.get(ADMIN_EMAIL), env.get(ADMIN_PASSWORD)) {
        (None, None) => return Ok(None),
        (Some(_), None) => {
            return Err(ConfigError::new(ADMIN_PASSWORD, "", format!("required when {ADMIN_EMAIL} is set")));
        }
        (None, Some(_)) => {
            return Err(ConfigError::new(ADMIN_EMAIL, "", format!("required when {ADMIN_PASSWORD} is set")));
        }
        (Some(e), Some(p)) => (e, p),
    };
    let email = policy::normalize_email(email).map_err(|e| ConfigError::new(ADMIN_EMAIL, email, e.detail))?;
    // The value is a secret: never echo it.
    policy::check_password(password, &email)
        .map_err(|e| ConfigError::new(ADMIN_PASSWORD, "<redacted>", format!("password {}", e.detail)))?;
    let raw_name = env.string(ADMIN_NAME);
    let name = policy::normalize_name(&raw_name).map_err(|e| ConfigError::new(ADMIN_NAME, &raw_name, e.detail))?;
    Ok(Some(AdminBootstrap { email, name, password: password.to_owned() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let cfg = Config::from_env(&Env::default()).unwrap();
        assert_eq!(cfg.access_ttl_secs, 900);
        assert_eq!(cfg.refresh_ttl_secs, 2_592_000);
        assert_eq!((cfg.login_max_failures_per_account, cfg.login_max_failures_per_ip), (5, 20));
        assert!(cfg.trusted_proxies.is_empty());
        assert!(cfg.admin.is_none());
    }

    #[test]
    fn invalid_values_name_the_variable_and_never_echo_the_admin_password() {
        let err = Config::from_env(&Env::from_pairs([(TRUSTED_PROXIES, "10.0.0.1, proxy")])).unwrap_err();
        assert_eq!(err.var, TRUSTED_PROXIES);
        let err = Config::from_env(&Env::from_pairs([(ACCESS_TOKEN_TTL_SECS, "5")])).unwrap_err();
        assert_eq!(err.var, ACCESS_TOKEN_TTL_SECS);
        let err = Config::from_env(&Env::from_pairs([(ADMIN_EMAIL, "root@example.com")])).unwrap_err();
        assert_eq!(err.var, ADMIN_PASSWORD);
        let err =
            Config::from_env(&Env::from_pairs([(ADMIN_EMAIL, "root@example.com"), (ADMIN_PASSWORD, "password1")]))
                .unwrap_err();
        assert_eq!(err.var, ADMIN_PASSWORD);
        assert!(!err.to_string().contains("password1"), "{err}");
        let ok = Config::from_env(&Env::from_pairs([
            (ADMIN_EMAIL, " Root@Example.com "),
            (ADMIN_PASSWORD, "a long admin secret"),
            (TRUSTED_PROXIES, "10.0.0.1,::1"),
        ]))
        .unwrap();
        let admin = ok.admin.unwrap();
        assert_eq!((admin.email.as_str(), admin.name.as_str()), ("root@example.com", "Administrator"));
        assert!(!format!("{admin:?}").contains("a long admin secret"));
        assert_eq!(ok.trusted_proxies.len(), 2);
    }
}
