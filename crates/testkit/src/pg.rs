//! Throwaway PostgreSQL clusters for tests.
//!
//! Every cluster lives in `/tmp/flotilla-testpg/<pid>-<n>/` (`data/` is the data directory,
//! `server.log` the server log, and the directory itself holds the Unix socket). It listens on a
//! free loopback port with trust authentication for the user `postgres`.
//!
//! PostgreSQL refuses to run as root, so when the tests run as root the server binaries run as the
//! `postgres` OS user (through `Command::uid`/`gid`, which also drops root's supplementary groups).
//!
//! Clusters of killed test processes are cleaned up by the next process that starts one: any
//! directory whose `<pid>` no longer exists is stopped (`pg_ctl stop -m immediate`) and removed.

use std::collections::hash_map::RandomState;
use std::ffi::{CString, OsStr, OsString};
use std::fmt;
use std::fs;
use std::hash::{BuildHasher, Hasher};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Once, OnceLock};
use std::time::Duration;

use crate::process::free_port;

/// Directory under which all clusters live (one sub-directory per cluster).
const BASE_DIR: &str = "/tmp/flotilla-testpg";

/// Where distribution packages install versioned PostgreSQL binaries (`<root>/<version>/bin`).
const VERSIONED_ROOT: &str = "/usr/lib/postgresql";

/// Why no PostgreSQL cluster could be provided (binaries missing, `initdb` or start failed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgUnavailable(pub String);

impl fmt::Display for PgUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PgUnavailable {}

/// The OS user the server binaries run as when we are root.
#[derive(Debug, Clone, Copy)]
struct RunAs {
    uid: u32,
    gid: u32,
}

/// Located PostgreSQL binaries and how to run them.
#[derive(Debug, Clone)]
struct Bins {
    initdb: PathBuf,
    pg_ctl: PathBuf,
    psql: PathBuf,
    /// `Some` when we are root: server binaries must run as the `postgres` user.
    run_as: Option<RunAs>,
}

impl Bins {
    /// A command for a server binary (`initdb`, `pg_ctl`): runs as `postgres` when we are root,
    /// inside `cwd` (which that user can enter), with no inherited `PG*` variables.
    fn server_command(&self, program: &Path, cwd: &Path) -> Command {
        let mut cmd = Command::new(program);
        if let Some(user) = self.run_as {
            cmd.uid(user.uid).gid(user.gid);
        }
        cmd.current_dir(cwd).stdin(Stdio::null());
        remove_pg_env(&mut cmd);
        cmd
    }

    /// `pg_ctl stop -m immediate` on the cluster in `root` (errors ignored), then removes `root`.
    fn stop_and_remove(&self, root: &Path) {
        let data = root.join("data");
        if data.join("postmaster.pid").exists() {
            let _ = self
                .server_command(&self.pg_ctl, root)
                .arg("-D")
                .arg(&data)
                .args(["-w", "-t", "30", "stop", "-m", "immediate"])
                .output();
        }
        let _ = fs::remove_dir_all(root);
    }
}

/// A throwaway PostgreSQL cluster on a free loopback port, trust auth, user `postgres`.
///
/// Clusters from [`Postgres::start`] are stopped and removed on drop; the one from
/// [`Postgres::shared`] when the test process exits.
#[derive(Debug)]
pub struct Postgres {
    bins: Bins,
    /// `/tmp/flotilla-testpg/<pid>-<n>`: holds `data/`, `server.log` and the Unix socket.
    root: PathBuf,
    port: u16,
    /// Per-cluster counter that makes database names unique.
    next_db: AtomicU64,
}

/// The cluster shared by all tests of this process (the result of the first start attempt).
static SHARED: OnceLock<Result<Postgres, PgUnavailable>> = OnceLock::new();

/// Counter for the `<n>` of the cluster directories of this process.
static NEXT_CLUSTER: AtomicU32 = AtomicU32::new(0);

impl Postgres {
    /// One cluster shared by every test of this test process, started on first use (safe to call
    /// concurrently from many threads; later callers wait for the first start) and stopped
    /// (`pg_ctl stop -m immediate`, data dir removed) when the process exits.
    ///
    /// A failed start is remembered: every later call returns the same error quickly.
    pub fn shared() -> Result<&'static Postgres, PgUnavailable> {
        SHARED
            .get_or_init(|| {
                let started = Postgres::start();
                if started.is_ok() {
                    // A static is never dropped, so stop the cluster from an exit hook instead.
                    // SAFETY: registers a plain `extern "C" fn` that does not unwind.
                    unsafe { libc::atexit(stop_shared_at_exit) };
                }
                started
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// A cluster of its own, stopped and removed on drop (for tests that stop/restart PostgreSQL).
    pub fn start() -> Result<Postgres, PgUnavailable> {
        let bins = locate()?.clone();
        cleanup_stale_once(&bins);
        let root = new_cluster_dir(&bins)?;
        // From here on, dropping `pg` (also on the error paths) stops the server and removes `root`.
        let mut pg = Postgres { bins, root, port: 0, next_db: AtomicU64::new(0) };
        pg.initdb()?;
        pg.port = free_port();
        if let Err(first) = pg.pg_ctl_start() {
            // `free_port` releases the port before the server binds it, so another process may
            // have taken it meanwhile: try once more with a new port in that case only.
            if !first.port_in_use {
                return Err(first.error);
            }
            pg.port = free_port();
            pg.pg_ctl_start().map_err(|again| again.error)?;
        }
        Ok(pg)
    }

    /// The TCP port the server listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster directory (`data/` data directory, `server.log`, Unix socket).
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// The URL of `database` on this cluster: `postgres://postgres@127.0.0.1:{port}/{database}`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates a fresh, uniquely named database and returns its URL
    /// (`postgres://postgres@127.0.0.1:{port}/{name}`, no password: trust auth).
    ///
    /// Panics (with psql's output and the server log tail) if the database cannot be created.
    pub fn create_database(&self) -> String {
        let name =
            format!("t_{}_{}_{:08x}", std::process::id(), self.next_db.fetch_add(1, Ordering::Relaxed), random_u32());
        let sql = format!("CREATE DATABASE \"{name}\"");
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.psql("postgres", &sql) {
                Ok(_) => return self.url(&name),
                // CREATE DATABASE fails while another session is connected to template1
                // (e.g. a test inspecting it); that is transient, so retry a few times.
                Err(e) if attempt < 5 && e.contains("is being accessed by other users") => {
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!(
                    "flotilla-testkit: cannot create database {name} on port {}: {e}\n{}",
                    self.port,
                    self.log_tail()
                ),
            }
        }
    }

    /// Runs `sql` with `psql -tA` (tuples only, unaligned) against `database` (a name or a
    /// `postgres://` URL) and returns its stdout, or psql's stderr on failure.
    pub fn psql(&self, database: &str, sql: &str) -> Result<String, String> {
        let mut cmd = Command::new(&self.bins.psql);
        remove_pg_env(&mut cmd);
        cmd.env("PGCONNECT_TIMEOUT", "10").stdin(Stdio::null());
        // `-d` accepts a URL, in which case it overrides -h/-p/-U.
        cmd.args(["-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", "postgres"])
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-d", database, "-c", sql]);
        let out = cmd.output().map_err(|e| format!("cannot run {}: {e}", self.bins.psql.display()))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!("psql failed ({}): {}", out.status, describe_output(&out)))
        }
    }

    /// Stops the server (`pg_ctl stop -m fast`, clients are disconnected) to simulate an outage;
    /// the port then refuses connections until [`Postgres::restart`]. Does nothing if it is
    /// already stopped. Panics if it cannot be stopped.
    pub fn stop(&self) {
        let out = self
            .pg_ctl()
            .args(["-w", "-t", "30", "stop", "-m", "fast"])
            .output()
            .expect("flotilla-testkit: cannot run pg_ctl stop");
        if !out.status.success() && self.is_running() {
            panic!(
                "flotilla-testkit: pg_ctl stop failed ({}): {}\n{}",
                out.status,
                describe_output(&out),
                self.log_tail()
            );
        }
    }

    /// Starts the server again on the same port and data dir (after [`Postgres::stop`]; if it is
    /// still running it is stopped first, so this also works as a plain "bounce").
    /// Panics if it cannot be started (for example because the port was taken meanwhile).
    pub fn restart(&self) {
        if self.is_running() {
            self.stop();
        }
        if let Err(e) = self.pg_ctl_start() {
            panic!("flotilla-testkit: cannot restart PostgreSQL: {}", e.error);
        }
    }

    /// Whether the server of this cluster is running (`pg_ctl status`).
    fn is_running(&self) -> bool {
        self.pg_ctl().arg("status").output().map(|out| out.status.success()).unwrap_or(false)
    }

    fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.root.join("server.log")
    }

    /// `pg_ctl -D <data>` as the right user.
    fn pg_ctl(&self) -> Command {
        let mut cmd = self.bins.server_command(&self.bins.pg_ctl, &self.root);
        cmd.arg("-D").arg(self.data_dir());
        cmd
    }

    fn initdb(&self) -> Result<(), PgUnavailable> {
        let mut cmd = self.bins.server_command(&self.bins.initdb, &self.root);
        cmd.arg("-D").arg(self.data_dir()).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ]);
        if initdb_supports_no_instructions(&self.bins) {
            cmd.arg("--no-instructions");
        }
        let out = cmd.output().map_err(|e| PgUnavailable(format!("cannot run {}: {e}", self.bins.initdb.display())))?;
        if !out.status.success() {
            return Err(PgUnavailable(format!(
                "initdb failed ({}) in {}: {}",
                out.status,
                self.root.display(),
                describe_output(&out)
            )));
        }
        Ok(())
    }

    /// `pg_ctl start` on `self.port`, waiting until the server accepts connections.
    fn pg_ctl_start(&self) -> Result<(), StartError> {
        // Only the log lines written by this attempt tell whether *it* hit a taken port.
        let log_len_before = fs::metadata(self.log_path()).map(|m| m.len()).unwrap_or(0);
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=300",
            self.port,
            self.root.display()
        );
        let out =
            self.pg_ctl().arg("-l").arg(self.log_path()).args(["-w", "-t", "30", "start", "-o", &options]).output();
        let failure = match out {
            Ok(out) if out.status.success() => return Ok(()),
            Ok(out) => format!("pg_ctl start failed ({}): {}", out.status, describe_output(&out)),
            Err(e) => format!("cannot run {}: {e}", self.bins.pg_ctl.display()),
        };
        let log = fs::read(self.log_path()).unwrap_or_default();
        let new_log = log.get(log_len_before as usize..).unwrap_or_default();
        Err(StartError {
            port_in_use: String::from_utf8_lossy(new_log).contains("Address already in use"),
            error: PgUnavailable(format!(
                "{failure} (port {}, dir {})\n{}",
                self.port,
                self.root.display(),
                self.log_tail()
            )),
        })
    }

    /// The last lines of the server log, for error messages.
    fn log_tail(&self) -> String {
        let log = fs::read(self.log_path()).unwrap_or_default();
        let log = String::from_utf8_lossy(&log);
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        format!("--- tail of {} ---\n{tail}", self.log_path().display())
    }

    /// Stops the server immediately and removes the cluster directory (never panics).
    fn teardown(&self) {
        self.bins.stop_and_remove(&self.root);
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// A failed `pg_ctl start`, and whether it failed because the port was already taken.
struct StartError {
    error: PgUnavailable,
    port_in_use: bool,
}

/// Exit hook registered by [`Postgres::shared`].
extern "C" fn stop_shared_at_exit() {
    // Unwinding out of an `extern "C"` fn aborts; teardown should not panic, but be sure.
    let _ = std::panic::catch_unwind(|| {
        if let Some(Ok(pg)) = SHARED.get() {
            pg.teardown();
        }
    });
}

/// For tests: the shared cluster, or `None` after printing a loud `SKIPPED: ...` message to stderr
/// when the PostgreSQL binaries are missing.
///
/// When `CI=true` or `FLOTILLA_REQUIRE_POSTGRES=1` it panics instead of skipping, so CI can never
/// silently skip. If the binaries are present but the cluster fails to start, it always panics:
/// that is a real failure, not a missing prerequisite.
pub fn pg_or_skip() -> Option<&'static Postgres> {
    if let Err(missing) = locate() {
        let message = format!("SKIPPED: {missing}");
        if skipping_forbidden(
            std::env::var("CI").ok().as_deref(),
            std::env::var("FLOTILLA_REQUIRE_POSTGRES").ok().as_deref(),
        ) {
            panic!("{message}\n(skipping is not allowed because CI=true or FLOTILLA_REQUIRE_POSTGRES=1)");
        }
        // Written to the real stderr, not through eprintln!, so that the test harness does not
        // capture (and hide) it for passing tests.
        let banner = "*".repeat(78);
        let _ = writeln!(std::io::stderr(), "\n{banner}\n{message}\n{banner}\n");
        return None;
    }
    match Postgres::shared() {
        Ok(pg) => Some(pg),
        Err(e) => panic!("flotilla-testkit: PostgreSQL binaries found but the cluster did not start: {e}"),
    }
}

/// Whether the environment forbids skipping PostgreSQL tests (`CI`, `FLOTILLA_REQUIRE_POSTGRES`).
fn skipping_forbidden(ci: Option<&str>, require_postgres: Option<&str>) -> bool {
    let truthy = |v: Option<&str>| {
        v.is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("yes"))
    };
    truthy(ci) || truthy(require_postgres)
}

/// The binaries, located once per process.
fn locate() -> Result<&'static Bins, PgUnavailable> {
    static BINS: OnceLock<Result<Bins, PgUnavailable>> = OnceLock::new();
    BINS.get_or_init(|| {
        let path = std::env::var_os("PATH");
        let mut bins = find_bins(path.as_deref(), Path::new(VERSIONED_ROOT))?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            let user = lookup_user("postgres").ok_or_else(|| {
                PgUnavailable(
                    "PostgreSQL refuses to run as root and there is no `postgres` OS user to run \
                     it as; install postgresql-15 (which creates it) or run the tests as a normal user"
                        .to_string(),
                )
            })?;
            bins.run_as = Some(user);
        }
        Ok(bins)
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// Finds `initdb` and `pg_ctl` (both on `path`, else the highest version under `versioned_root`
/// that has both) and `psql` (next to `pg_ctl`, else on `path`, else under `versioned_root`).
fn find_bins(path: Option<&OsStr>, versioned_root: &Path) -> Result<Bins, PgUnavailable> {
    let on_path = |name: &str| -> Option<PathBuf> {
        std::env::split_paths(path?).map(|dir| dir.join(name)).find(|candidate| is_executable(candidate))
    };
    let versioned = versioned_bin_dirs(versioned_root);
    let in_versioned = |name: &str| versioned.iter().map(|dir| dir.join(name)).find(|p| is_executable(p));

    let (initdb, pg_ctl) = match (on_path("initdb"), on_path("pg_ctl")) {
        (Some(initdb), Some(pg_ctl)) => (initdb, pg_ctl),
        _ => versioned
            .iter()
            .map(|dir| (dir.join("initdb"), dir.join("pg_ctl")))
            .find(|(initdb, pg_ctl)| is_executable(initdb) && is_executable(pg_ctl))
            .ok_or_else(|| {
                PgUnavailable(format!(
                    "PostgreSQL binaries (initdb/pg_ctl) not found: looked on PATH and in {}/*/bin; \
                     install postgresql-15 (e.g. `apt-get install postgresql-15`)",
                    versioned_root.display()
                ))
            })?,
    };
    // Prefer the psql of the same installation (PATH's /usr/bin/psql may be a wrapper script).
    let sibling = fs::canonicalize(&pg_ctl)
        .ok()
        .and_then(|real| real.parent().map(|dir| dir.join("psql")))
        .filter(|p| is_executable(p));
    let psql = sibling.or_else(|| on_path("psql")).or_else(|| in_versioned("psql")).ok_or_else(|| {
        PgUnavailable(format!(
            "PostgreSQL client psql not found (next to {}, on PATH or in {}/*/bin); \
                 install postgresql-client-15",
            pg_ctl.display(),
            versioned_root.display()
        ))
    })?;
    Ok(Bins { initdb, pg_ctl, psql, run_as: None })
}

/// `<root>/<version>/bin` directories, highest version first.
fn versioned_bin_dirs(root: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(root) else {
        return Vec::new();
    };
    let mut versions: Vec<(Vec<u32>, PathBuf)> = entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            // "15", or "9.6" for old versions.
            let version = name.split('.').map(|part| part.parse::<u32>().ok()).collect::<Option<Vec<u32>>>()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versions.sort_by(|a, b| b.0.cmp(&a.0));
    versions.into_iter().map(|(_, dir)| dir).collect()
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `--no-instructions` exists since PostgreSQL 13; older initdb would reject it.
fn initdb_supports_no_instructions(bins: &Bins) -> bool {
    Command::new(&bins.initdb)
        .arg("--help")
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("--no-instructions"))
}

/// uid and gid of the OS user `name`.
fn lookup_user(name: &str) -> Option<RunAs> {
    let c_name = CString::new(name).ok()?;
    // SAFETY: all-zero is a valid `passwd` (null pointers and zero ids); it is only read after
    // getpwnam_r filled it in.
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the duration of the call and `buf.len()` is its size.
    let rc = unsafe { libc::getpwnam_r(c_name.as_ptr(), &mut entry, buf.as_mut_ptr(), buf.len(), &mut result) };
    if rc != 0 || result.is_null() {
        return None;
    }
    Some(RunAs { uid: entry.pw_uid, gid: entry.pw_gid })
}

/// The directory that holds this user's clusters: `/tmp/flotilla-testpg` (mode 0755 so that the
/// `postgres` user can traverse it), or `/tmp/flotilla-testpg-<uid>` for a non-root user who cannot
/// write to that one (e.g. because root created it).
fn base_dir() -> PathBuf {
    let shared = PathBuf::from(BASE_DIR);
    if ensure_dir_0755(&shared) && is_writable(&shared) {
        return shared;
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let own = PathBuf::from(format!("{BASE_DIR}-{}", unsafe { libc::geteuid() }));
    ensure_dir_0755(&own);
    own
}

/// Creates `dir` if needed and, if we own it, sets mode 0755 (the umask may have removed bits).
fn ensure_dir_0755(dir: &Path) -> bool {
    if fs::create_dir_all(dir).is_err() {
        return false;
    }
    let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o755));
    true
}

fn is_writable(dir: &Path) -> bool {
    let Ok(c_path) = CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c_path` is a valid NUL-terminated string.
    unsafe { libc::access(c_path.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
}

/// Creates `<base>/<pid>-<n>` for a new cluster, owned by the user that runs the server.
fn new_cluster_dir(bins: &Bins) -> Result<PathBuf, PgUnavailable> {
    let base = base_dir();
    let n = NEXT_CLUSTER.fetch_add(1, Ordering::Relaxed);
    let dir = base.join(format!("{}-{n}", std::process::id()));
    if dir.exists() {
        // Left behind by an earlier process that had our pid (so the stale cleanup skipped it).
        bins.stop_and_remove(&dir);
    }
    let fail = |what: &str, e: std::io::Error| {
        PgUnavailable(format!("cannot {what} cluster directory {}: {e}", dir.display()))
    };
    fs::create_dir(&dir).map_err(|e| fail("create", e))?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).map_err(|e| fail("chmod", e))?;
    if let Some(user) = bins.run_as {
        std::os::unix::fs::chown(&dir, Some(user.uid), Some(user.gid)).map_err(|e| fail("chown", e))?;
    }
    Ok(dir)
}

/// Runs [`cleanup_stale_clusters`] once per process, before the first cluster starts.
fn cleanup_stale_once(bins: &Bins) {
    static CLEANUP: Once = Once::new();
    CLEANUP.call_once(|| cleanup_stale_clusters(bins, &base_dir()));
}

/// Stops and removes every cluster under `base` whose owning process no longer exists, so that
/// killed test runs do not leak servers.
fn cleanup_stale_clusters(bins: &Bins, base: &Path) {
    let Ok(entries) = fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) =
            name.to_str().and_then(|name| name.split_once('-')).and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue; // not one of ours
        };
        if pid != std::process::id() && !process_exists(pid) {
            bins.stop_and_remove(&entry.path());
        }
    }
}

/// Whether process `pid` exists. Signal 0 checks without sending anything; unlike looking at
/// `/proc/<pid>` this also works where there is no /proc (macOS), which would otherwise make every
/// cluster look stale.
fn process_exists(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill with signal 0 only performs the existence/permission check.
    if unsafe { libc::kill(pid, 0) } == 0 {
        return true;
    }
    // EPERM: it exists but belongs to another user.
    std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Removes inherited `PG*` variables (PGDATA, PGPORT, PGOPTIONS, PGSERVICE, ...) that would
/// change what the PostgreSQL binaries do.
fn remove_pg_env(cmd: &mut Command) {
    let inherited: Vec<OsString> =
        std::env::vars_os().map(|(key, _)| key).filter(|key| key.as_bytes().starts_with(b"PG")).collect();
    for key in inherited {
        cmd.env_remove(key);
    }
}

/// stdout and stderr of a finished command, for error messages.
fn describe_output(out: &Output) -> String {
    format!(
        "stdout: {} stderr: {}",
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    )
}

/// A random number for database names (unique across processes sharing a cluster by accident).
fn random_u32() -> u32 {
    // RandomState is randomly seeded per instance; no need for a rand dependency.
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0),
    );
    hasher.finish() as u32
}

#[cfg(test)]
mod tests;
