//! `flotilla probe [PATH]`: the health check of an image that has no shell and no HTTP client
//! (compose's `healthcheck`). It asks `GET PATH` on the port the service itself listens on
//! (`FLOTILLA_LISTEN` / `--listen`, read by the same code as the server) and succeeds on a 2xx.
//!
//! The request is a bare HTTP/1.1 GET whose status line is all that is read: the `flotilla`
//! binary links no HTTP client of its own (reqwest is only a dev-dependency of this package), and
//! a probe needs nothing more. Plain `http://` only: the services do not speak TLS.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use flotilla_runtime::config::{self, ConfigError, Env};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The longest a probe waits for the answer's status line (connecting included).
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
    let (status, line) = match tokio::time::timeout(TIMEOUT, status_line(url)).await {
        Err(_) => return Err(format!("no answer within {TIMEOUT:?}")),
        Ok(result) => result?,
    };
    if (200..300).contains(&status) { Ok(line) } else { Err(line) }
}

/// Sends the request and reads the answer's status line: (code, `"<code> <reason>"`).
async fn status_line(url: &str) -> Result<(u16, String), String> {
    let (authority, path) = split_url(url)?;
    let addr = if has_port(authority) { authority.to_owned() } else { format!("{authority}:80") };
    let mut stream = TcpStream::connect(&addr).await.map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: flotilla-probe\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.map_err(|e| format!("cannot send the request: {e}"))?;
    let mut line = String::new();
    // A status line is short; a peer that sends more without a line break is not an HTTP server.
    BufReader::new(stream.take(512)).read_line(&mut line).await.map_err(|e| format!("cannot read the answer: {e}"))?;
    parse_status_line(&line).ok_or_else(|| format!("not an HTTP answer: {:?}", line.trim_end()))
}

/// `http://authority/path?query` → (authority, path and query; `/` when empty).
fn split_url(url: &str) -> Result<(&str, &str), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url:?}: expected an http:// URL (the services speak plain HTTP)"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(format!("{url:?}: expected http://HOST[:PORT]/PATH"));
    }
    Ok((authority, path))
}

/// Whether `host:port` or `[v6]:port` names its port.
fn has_port(authority: &str) -> bool {
    authority.rsplit_once(':').is_some_and(|(_, port)| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()))
}

/// `HTTP/1.1 503 Service Unavailable\r\n` → (503, `"503 Service Unavailable"`).
fn parse_status_line(line: &str) -> Option<(u16, String)> {
    let rest = line.strip_prefix("HTTP/")?.split_once(' ')?.1.trim_end();
    let code = rest.get(..3)?.parse::<u16>().ok().filter(|c| (100..600).contains(c))?;
    Some((code, rest.to_owned()))
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

    #[test]
    fn urls_split_into_authority_and_path() {
        assert_eq!(split_url("http://127.0.0.1:8080/ready?x=1"), Ok(("127.0.0.1:8080", "/ready?x=1")));
        assert_eq!(split_url("http://gateway"), Ok(("gateway", "/")));
        assert!(split_url("https://gateway/health").is_err());
        assert!(split_url("http:///ready").is_err());
        assert!(split_url("http://user:pw@host/").is_err());
        assert!(has_port("127.0.0.1:8080") && has_port("[::1]:8080") && has_port("gateway:80"));
        assert!(!has_port("gateway") && !has_port("[::1]") && !has_port("gateway:"));
    }

    #[test]
    fn status_lines_parse() {
        assert_eq!(parse_status_line("HTTP/1.1 200 OK\r\n"), Some((200, "200 OK".into())));
        assert_eq!(
            parse_status_line("HTTP/1.0 503 Service Unavailable\r\n"),
            Some((503, "503 Service Unavailable".into()))
        );
        assert_eq!(parse_status_line("HTTP/1.1 204\r\n"), Some((204, "204".into())));
        assert_eq!(parse_status_line("SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(parse_status_line("HTTP/1.1 99x nope"), None);
        assert_eq!(parse_status_line(""), None);
    }
}
