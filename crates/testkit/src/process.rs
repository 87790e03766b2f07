//! Child processes (normally the `flotilla` binary) and a minimal blocking HTTP GET to check
//! their readiness without an HTTP client crate.

use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (binds port 0, reads the port, drops the listener).
///
/// The port is free *now*; another process may take it before the caller binds it, which is rare
/// enough for tests (callers that can retry should).
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("flotilla-testkit: cannot bind 127.0.0.1:0 to find a free port")
}

/// Minimal blocking HTTP/1.1 `GET path` (with `Connection: close`) that must finish within
/// `timeout`. Returns the status code and the body (chunked bodies are decoded, invalid UTF-8 is
/// replaced).
pub fn http_get(addr: SocketAddr, path: &str, timeout: Duration) -> io::Result<(u16, String)> {
    let deadline = Instant::now() + timeout;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_write_timeout(Some(remaining(deadline)?))?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: */*\r\nConnection: close\r\n\r\n")?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        // Re-arm the read timeout so that the whole exchange respects the deadline.
        stream.set_read_timeout(Some(remaining(deadline)?))?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                raw.extend_from_slice(&buf[..n]);
                // Do not depend on the server closing the connection once the body is complete.
                if parse_response(&raw).is_ok() {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("GET http://{addr}{path}: no complete response within {timeout:?}"),
                ));
            }
            Err(e) => return Err(e),
        }
    }
    parse_response(&raw)
}

/// Time left until `deadline`, or a `TimedOut` error (a zero timeout would mean "no timeout").
fn remaining(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::Error::new(io::ErrorKind::TimedOut, "HTTP GET timed out"));
    }
    Ok(left)
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_string())
}

/// Parses a complete HTTP/1.x response into (status, body). Errors if it is incomplete or invalid.
fn parse_response(raw: &[u8]) -> io::Result<(u16, String)> {
    let head_end = find(raw, b"\r\n\r\n").ok_or_else(|| invalid("incomplete HTTP response head"))?;
    let head = String::from_utf8_lossy(&raw[..head_end]);
    let body = &raw[head_end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| invalid(&format!("invalid HTTP status line: {status_line:?}")))?;

    let mut content_length = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_length = Some(value.parse::<usize>().map_err(|_| invalid("invalid Content-Length"))?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        }
    }

    let body = if chunked {
        decode_chunked(body)?
    } else if let Some(len) = content_length {
        body.get(..len).ok_or_else(|| invalid("incomplete HTTP body"))?.to_vec()
    } else {
        // Neither: the body ends when the server closes the connection (we read until EOF).
        body.to_vec()
    };
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Decodes a `Transfer-Encoding: chunked` body; errors if it is incomplete or invalid.
fn decode_chunked(mut data: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = find(data, b"\r\n").ok_or_else(|| invalid("incomplete chunk size"))?;
        let size_line = String::from_utf8_lossy(&data[..line_end]);
        // The size may be followed by `;extensions`.
        let size_hex = size_line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16).map_err(|_| invalid("invalid chunk size"))?;
        data = &data[line_end + 2..];
        if size == 0 {
            // Trailers after the last chunk are ignored.
            return Ok(out);
        }
        let chunk = data.get(..size).ok_or_else(|| invalid("incomplete chunk"))?;
        out.extend_from_slice(chunk);
        data = data.get(size + 2..).ok_or_else(|| invalid("incomplete chunk"))?;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

/// A child process (normally the `flotilla` binary) with stdout and stderr captured to a log file
/// in a temporary directory. It is killed (SIGKILL) on drop unless it already exited; if the
/// dropping thread is panicking (a failed test), the tail of its output is printed.
#[derive(Debug)]
pub struct ServiceProcess {
    child: Child,
    program: PathBuf,
    addr: SocketAddr,
    log_path: PathBuf,
    /// Keeps the log file alive until the process value is dropped.
    _log_dir: tempfile::TempDir,
    /// Set once the child has been reaped (its pid may then be reused: never signal it again).
    status: Option<ExitStatus>,
}

impl ServiceProcess {
    /// Spawns `program args...` with the inherited environment minus every variable whose name
    /// starts with `FLOTILLA_` (so a developer's shell cannot leak config into tests), plus exactly
    /// `envs`. `addr` is the address the process will listen on (see [`ServiceProcess::base_url`]).
    pub fn spawn(
        program: &Path,
        args: &[&str],
        envs: &[(&str, String)],
        addr: SocketAddr,
    ) -> io::Result<ServiceProcess> {
        let log_dir = tempfile::Builder::new().prefix("flotilla-process-").tempdir()?;
        let log_path = log_dir.path().join("output.log");
        // Append mode: stdout and stderr share one file without overwriting each other.
        let log = OpenOptions::new().create(true).append(true).open(&log_path)?;

        let mut cmd = Command::new(program);
        cmd.args(args).stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        let inherited: Vec<OsString> =
            std::env::vars_os().map(|(key, _)| key).filter(|key| key.as_bytes().starts_with(b"FLOTILLA_")).collect();
        for key in inherited {
            cmd.env_remove(key);
        }
        cmd.envs(envs.iter().map(|(key, value)| (key, value)));
        let child =
            cmd.spawn().map_err(|e| io::Error::new(e.kind(), format!("cannot spawn {}: {e}", program.display())))?;
        Ok(ServiceProcess { child, program: program.to_path_buf(), addr, log_path, _log_dir: log_dir, status: None })
    }

    /// The address given to [`ServiceProcess::spawn`].
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` (from [`ServiceProcess::addr`]).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Polls `GET path` until it answers 200, for up to `timeout`. Returns how long it took, or an
    /// error with the process output if it timed out or the process exited.
    pub fn wait_ready(&mut self, path: &str, timeout: Duration) -> Result<Duration, String> {
        let start = Instant::now();
        let mut last = String::from("no attempt");
        loop {
            if let Some(status) = self.try_wait() {
                return Err(format!(
                    "{} exited ({status}) before GET {}{path} answered 200 (last attempt: {last})\n{}",
                    self.program.display(),
                    self.base_url(),
                    self.describe_logs()
                ));
            }
            let left = timeout.saturating_sub(start.elapsed());
            if left.is_zero() {
                return Err(format!(
                    "GET {}{path} did not answer 200 within {timeout:?} (last attempt: {last})\n{}",
                    self.base_url(),
                    self.describe_logs()
                ));
            }
            match http_get(self.addr, path, left.min(Duration::from_secs(2))) {
                Ok((200, _)) => return Ok(start.elapsed()),
                Ok((status, body)) => last = format!("HTTP {status}: {body}"),
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(left.min(Duration::from_millis(10)));
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends signal `sig` (e.g. `libc::SIGTERM`). Does nothing once the process has been reaped.
    pub fn signal(&self, sig: i32) {
        if self.status.is_some() {
            return;
        }
        let pid = libc::pid_t::try_from(self.pid()).expect("flotilla-testkit: pid fits in pid_t");
        // SAFETY: plain kill(2) on our own, not yet reaped, child.
        unsafe { libc::kill(pid, sig) };
    }

    /// Kills the process (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        if self.try_wait().is_none() {
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
    }

    /// Waits up to `timeout` for the process to exit; returns its exit status, or `None` if it is
    /// still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            std::thread::sleep(left.min(Duration::from_millis(10)));
        }
    }

    /// Everything the process printed so far (stdout and stderr, interleaved).
    pub fn logs(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.log_path).unwrap_or_default()).into_owned()
    }

    /// The exit status if the process has exited (reaping it), else `None`.
    fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    fn describe_logs(&self) -> String {
        format!("--- output of {} (pid {}) ---\n{}", self.program.display(), self.pid(), self.logs())
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            // Shown by the test harness next to the failure (eprintln! output is captured).
            let logs = self.logs();
            let lines: Vec<&str> = logs.lines().collect();
            eprintln!(
                "--- last output of {} (pid {}) ---\n{}",
                self.program.display(),
                self.pid(),
                lines[lines.len().saturating_sub(100)..].join("\n")
            );
        }
    }
}

#[cfg(test)]
mod tests;
