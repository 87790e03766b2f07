//! Throwaway `redis-server` processes (no persistence), for tests.

use std::fmt::Write as _;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::nats::{is_executable, skipping_forbidden};
use crate::process::free_port;

const DIRS: &[&str] = &["/usr/bin", "/usr/local/bin", "/usr/sbin"];
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A `redis-server` child process on 127.0.0.1, killed on drop.
#[derive(Debug)]
pub struct Redis {
    port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Redis {
    /// Starts a server on a free port (nothing saved to disk) and waits until it answers.
    pub fn start() -> Result<Redis, String> {
        let binary = locate()?;
        let dir = tempfile::Builder::new().prefix("flotilla-testredis-").tempdir().map_err(|e| e.to_string())?;
        let mut last = String::new();
        // `free_port` releases the port before the server binds it: retry on a new one.
        for _ in 0..3 {
            let port = free_port();
            let mut child = Command::new(&binary)
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(dir.path())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
            let deadline = Instant::now() + START_TIMEOUT;
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    let _ = write!(last, "redis-server exited ({status}) on port {port}");
                    break;
                }
                if pong(port) {
                    return Ok(Redis { port, child, _dir: dir });
                }
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    last = format!("redis-server did not answer on port {port} within {START_TIMEOUT:?}");
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Err(last)
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends an inline `PING` and looks for `+PONG`.
fn pong(port: u16) -> bool {
    use std::io::Read;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 16];
    s.write_all(b"PING\r\n").is_ok() && s.read(&mut buf).is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
}

fn locate() -> Result<PathBuf, String> {
    let path = std::env::var_os("PATH");
    let on_path = path
        .as_deref()
        .and_then(|p| std::env::split_paths(p).map(|d| d.join("redis-server")).find(|c| is_executable(c)));
    on_path.or_else(|| DIRS.iter().map(|d| Path::new(d).join("redis-server")).find(|p| is_executable(p))).ok_or_else(
        || {
            "redis-server not found on PATH or in /usr/bin; install it (Debian: `apt-get install redis-server`)"
                .to_owned()
        },
    )
}

/// For tests: a fresh server, or `None` after printing a loud `SKIPPED: ...` when `redis-server`
/// is not installed. With `CI=true` or `FLOTILLA_REQUIRE_REDIS=1` it panics instead of skipping.
pub fn redis_or_skip() -> Option<Redis> {
    if let Err(missing) = locate() {
        let (ci, require) = (std::env::var("CI").ok(), std::env::var("FLOTILLA_REQUIRE_REDIS").ok());
        if skipping_forbidden(ci.as_deref(), require.as_deref()) {
            panic!("SKIPPED: {missing}\n(skipping is not allowed because CI=true or FLOTILLA_REQUIRE_REDIS=1)");
        }
        let banner = "*".repeat(78);
        let _ = writeln!(std::io::stderr(), "\n{banner}\nSKIPPED: {missing}\n{banner}\n");
        return None;
    }
    match Redis::start() {
        Ok(r) => Some(r),
        Err(e) => panic!("flotilla-testkit: redis-server found but it did not start: {e}"),
    }
}
