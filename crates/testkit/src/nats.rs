//! Throwaway `nats-server` processes with JetStream, for tests.
//!
//! Each server listens on a free loopback port and keeps its JetStream store in a temporary
//! directory; [`Nats::stop`] and [`Nats::restart`] simulate an outage (same port, same store, so
//! streams, consumers and messages survive). The server is killed and its directory removed on
//! drop.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::process::free_port;

/// Where distribution packages put `nats-server` when it is not on PATH.
const FALLBACK_DIRS: &[&str] = &["/usr/sbin", "/usr/local/sbin", "/usr/local/bin", "/usr/bin"];

/// How long a start may take before it counts as failed.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// Why no NATS server could be provided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsUnavailable(pub String);

impl fmt::Display for NatsUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NatsUnavailable {}

/// A `nats-server -js` child process on 127.0.0.1.
#[derive(Debug)]
pub struct Nats {
    binary: PathBuf,
    port: u16,
    /// Holds `store/` (JetStream) and `server.log`; removed on drop.
    dir: tempfile::TempDir,
    child: Mutex<Option<Child>>,
}

impl Nats {
    /// Starts a server with JetStream on a free port and waits until it accepts connections.
    pub fn start() -> Result<Nats, String> {
        let binary = locate().map_err(|e| e.0)?;
        let dir = tempfile::Builder::new()
            .prefix("flotilla-testnats-")
            .tempdir()
            .map_err(|e| format!("cannot create a directory for nats-server: {e}"))?;
        let mut nats = Nats { binary, port: free_port(), dir, child: Mutex::new(None) };
        if let Err(first) = nats.spawn() {
            // `free_port` releases the port before the server binds it: retry once on a new one.
            nats.port = free_port();
            nats.spawn().map_err(|again| format!("{again} (first attempt: {first})"))?;
        }
        Ok(nats)
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory holding the JetStream store and the server log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stops the server (SIGTERM, then SIGKILL after 10 s) and waits for it; the port refuses
    /// connections until [`Nats::restart`]. Does nothing if it is not running.
    pub fn stop(&self) {
        let mut guard = self.child.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(mut child) = guard.take() {
            terminate(&mut child);
        }
    }

    /// Starts the server again on the same port with the same store (stopping it first if it is
    /// running). Panics if it does not come up.
    pub fn restart(&self) {
        self.stop();
        if let Err(e) = self.spawn() {
            panic!("flotilla-testkit: cannot restart nats-server: {e}");
        }
    }

    /// Whether the server process is running.
    pub fn is_running(&self) -> bool {
        let mut guard = self.child.lock().unwrap_or_else(|e| e.into_inner());
        match guard.as_mut() {
            Some(child) => child.try_wait().ok().flatten().is_none(),
            None => false,
        }
    }

    /// The last lines of the server log, for error messages.
    pub fn log_tail(&self) -> String {
        let log = fs::read(self.log_path()).unwrap_or_default();
        let log = String::from_utf8_lossy(&log);
        let lines: Vec<&str> = log.lines().collect();
        format!("--- tail of {} ---\n{}", self.log_path().display(), lines[lines.len().saturating_sub(40)..].join("\n"))
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// Spawns the server and waits until the port accepts connections.
    fn spawn(&self) -> Result<(), String> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|e| format!("cannot open {}: {e}", self.log_path().display()))?;
        let stderr = log.try_clone().map_err(|e| e.to_string())?;
        let mut child = Command::new(&self.binary)
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js", "-sd"])
            .arg(self.dir.path().join("store"))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.binary.display()))?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("nats-server exited ({status}) on port {}\n{}", self.port, self.log_tail()));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() && self.jetstream_ready() {
                break;
            }
            if Instant::now() >= deadline {
                terminate(&mut child);
                return Err(format!(
                    "nats-server did not accept connections on port {} within {START_TIMEOUT:?}\n{}",
                    self.port,
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        *self.child.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
        Ok(())
    }

    /// The server logs "Server is ready" once JetStream has recovered its store.
    fn jetstream_ready(&self) -> bool {
        let log = fs::read(self.log_path()).unwrap_or_default();
        let log = String::from_utf8_lossy(&log);
        // Only the last start counts (the log is appended across restarts).
        let last_start = log.rfind("Starting nats-server").unwrap_or(0);
        log[last_start..].contains("Server is ready")
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let mut guard = self.child.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(mut child) = guard.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // `dir` (TempDir) removes the store afterwards.
    }
}

/// SIGTERM, wait up to 10 s, then SIGKILL.
fn terminate(child: &mut Child) {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) on our own child, which has not been reaped yet.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Finds `nats-server` on PATH, else in the usual system directories.
fn locate() -> Result<PathBuf, NatsUnavailable> {
    let path = std::env::var_os("PATH");
    let on_path = path.as_deref().and_then(|p| {
        std::env::split_paths(p).map(|dir| dir.join("nats-server")).find(|candidate| is_executable(candidate))
    });
    on_path
        .or_else(|| FALLBACK_DIRS.iter().map(|d| Path::new(d).join("nats-server")).find(|p| is_executable(p)))
        .ok_or_else(|| {
            NatsUnavailable(format!(
                "nats-server not found on PATH or in {}; install it (Debian: `apt-get install nats-server`)",
                FALLBACK_DIRS.join(", ")
            ))
        })
}

/// Shared with the other throwaway servers of this crate.
pub(crate) fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// For tests: a fresh server, or `None` after printing a loud `SKIPPED: ...` message to stderr when
/// `nats-server` is not installed.
///
/// When `CI=true` or `FLOTILLA_REQUIRE_NATS=1` it panics instead of skipping, so CI can never
/// silently skip. If the binary is present but the server does not start, it always panics.
pub fn nats_or_skip() -> Option<Nats> {
    if let Err(missing) = locate() {
        let message = format!("SKIPPED: {missing}");
        if skipping_forbidden(
            std::env::var("CI").ok().as_deref(),
            std::env::var("FLOTILLA_REQUIRE_NATS").ok().as_deref(),
        ) {
            panic!("{message}\n(skipping is not allowed because CI=true or FLOTILLA_REQUIRE_NATS=1)");
        }
        // Written to the real stderr so the test harness does not hide it for passing tests.
        let banner = "*".repeat(78);
        let _ = writeln!(std::io::stderr(), "\n{banner}\n{message}\n{banner}\n");
        return None;
    }
    match Nats::start() {
        Ok(nats) => Some(nats),
        Err(e) => panic!("flotilla-testkit: nats-server found but it did not start: {e}"),
    }
}

/// `CI=true` or the server's `FLOTILLA_REQUIRE_*` switch: a missing binary fails the test.
pub(crate) fn skipping_forbidden(ci: Option<&str>, require: Option<&str>) -> bool {
    let truthy = |v: Option<&str>| {
        v.is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("yes"))
    };
    truthy(ci) || truthy(require)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skipping_rules() {
        assert!(skipping_forbidden(Some("true"), None));
        assert!(skipping_forbidden(None, Some("1")));
        assert!(!skipping_forbidden(None, None));
        assert!(!skipping_forbidden(Some("false"), Some("0")));
    }

    #[test]
    fn start_stop_restart_keeps_the_store() {
        let Some(nats) = nats_or_skip() else { return };
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, nats.port()));
        assert!(nats.url().starts_with("nats://127.0.0.1:"));
        assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok());
        assert!(nats.is_running());
        nats.stop();
        assert!(!nats.is_running());
        assert!(TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err());
        nats.restart();
        assert!(nats.is_running());
        assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok());
        assert!(nats.dir().join("store").join("jetstream").exists(), "{}", nats.log_tail());
        let dir = nats.dir().to_path_buf();
        drop(nats);
        assert!(!dir.exists());
    }
}
