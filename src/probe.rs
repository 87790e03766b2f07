//! `flotilla probe [PATH]`: the health check of an image that has no shell and no HTTP client
//! (compose's `healthcheck`). It asks `GET PATH` on the port the service itself listens on
//! (`FLOTILLA_LISTEN` / `--listen`, read by the same code as the server) and succeeds on a 2xx.
//!
//! Plain `http://` only (the services do not speak TLS): reqwest, which the binary already links
//! for the token keys, is built here without a TLS backend.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use flotilla_runtime::config::{self, ConfigError, Env};

/// The longest a probe waits for the answer (connecting included).
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// `flotilla probe [PATH] [--url URL]`: `Ok` with the line to print on a 2xx answer, `Err` with it
/// otherwise (a bad `FLOTILLA_LISTEN` included).
pub async fn run(env: &Env, path: &str, url: Option<&str>) -> Result<String, String> {
    let url = match url {
        Some(url) => url.to_owned(),
        None => local_url(env, path).map_err(|e| format!("probe: {e}"))?,
    };
    check(&url).await.map(|status| format!("probe {url}: {status}")).map_err(|why| format!("probe {url}: {why}"))
}

/// `http://<host>:<port><path>` of this process's own listener: its host if that is a specific
/// address, loopback if it listens on every address (`0.0.0.0`, `[::]`). `ready` means `/ready`.
pub fn local_url(env: &Env, path: &str) -> Result<String, ConfigError> {
    let listen = env.addr(config::LISTEN)?;
    let host = if listen.ip().is_unspecified() { IpAddr::V4(Ipv4Addr::LOCALHOST) } else { listen.ip() };
    let slash = if path.starts_with('/') { "" } else { "/" };
    Ok(format!("http://{}{slash}{path}", SocketAddr::new(host, listen.port())))
}

/// `GET url` within [`TIMEOUT`]: `Ok` with the status (e.g. `200 OK`) on a 2xx answer, `Err` with
/// the status or the reason there was none otherwise.
pub async fn check(url: &str) -> Result<String, String> {
    if !url.starts_with("http://") {
        return Err(format!("{url:?}: expected an http:// URL (the services speak plain HTTP)"));
    }
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
    let res = client.get(url).send().await.map_err(|e| {
        if e.is_timeout() {
            format!("no answer within {TIMEOUT:?}")
        } else if e.is_connect() {
            "cannot connect (nothing listens there?)".to_owned()
        } else {
            format!("no answer: {e}")
        }
    })?;
    let status = res.status();
    let line = format!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or(""));
    let line = line.trim_end().to_owned();
    if status.is_success() { Ok(line) } else { Err(line) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url_for(listen: &str, path: &str) -> String {
        local_url(&Env::from_pairs([(config::LISTEN, listen)]), path).unwrap()
    }

    #[test]
    fn asks_the_listen_port_on_loopback_when_listening_everywhere() {
        assert_eq!(url_for("0.0.0.0:8080", "/ready"), "http://127.0.0.1:8080/ready");
        assert_eq!(url_for("[::]:8081", "/health"), "http://127.0.0.1:8081/health");
        assert_eq!(url_for("127.0.0.2:9000", "/ready"), "http://127.0.0.2:9000/ready");
        assert_eq!(url_for("[::1]:9000", "/livez"), "http://[::1]:9000/livez");
        assert_eq!(url_for("127.0.0.1:8080", "ready"), "http://127.0.0.1:8080/ready");
        assert_eq!(local_url(&Env::default(), "/ready").unwrap(), "http://127.0.0.1:8080/ready", "the default");
        let err = local_url(&Env::from_pairs([(config::LISTEN, "localhost")]), "/ready").unwrap_err();
        assert_eq!(err.var, config::LISTEN);
    }
}
