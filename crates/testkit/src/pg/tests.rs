use super::*;
use crate::process::ServiceProcess;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Instant;

/// Env var that turns the `*_helper` tests into actors when this test binary runs them as a child.
const HELPER_VAR: &str = "FLOTILLA_TESTKIT_PG_HELPER";

/// Whether something accepts TCP connections on `127.0.0.1:port`.
fn accepts_connections(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok()
}

/// The database name at the end of a URL from `create_database`.
fn db_name(url: &str) -> &str {
    url.rsplit('/').next().expect("URL has a path")
}

/// Runs this test binary, filtered to the ignored helper test `name`, as a child process.
fn spawn_helper(name: &str) -> ServiceProcess {
    let exe = std::env::current_exe().expect("path of the test binary");
    let filter = format!("pg::tests::{name}");
    ServiceProcess::spawn(
        &exe,
        &[&filter, "--exact", "--ignored", "--nocapture", "--test-threads=1"],
        &[(HELPER_VAR, "1".to_string())],
        SocketAddr::from((Ipv4Addr::LOCALHOST, 1)), // the helper does not listen
    )
    .expect("spawn helper")
}

/// Waits until the helper printed `CLUSTER <dir> <port>` and returns (dir, port).
fn wait_for_cluster_line(helper: &mut ServiceProcess) -> (PathBuf, u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let logs = helper.logs();
        // With --nocapture, libtest prints "test <name> ... " on the same line first.
        if let Some((_, rest)) = logs.lines().find_map(|line| line.split_once("CLUSTER ")) {
            let mut parts = rest.split_whitespace();
            let dir = PathBuf::from(parts.next().expect("dir in CLUSTER line"));
            let port = parts.next().and_then(|p| p.parse().ok()).expect("port in CLUSTER line");
            return (dir, port);
        }
        // Re-read after the exit: the line may have been printed just before it.
        if let Some(status) = helper.wait_exit(Duration::from_millis(50))
            && !helper.logs().contains("CLUSTER ")
        {
            panic!("helper exited ({status}) without a cluster:\n{}", helper.logs());
        }
        assert!(Instant::now() < deadline, "helper printed no cluster:\n{logs}");
    }
}

#[test]
fn shared_cluster_creates_distinct_working_databases() {
    let Some(pg) = pg_or_skip() else { return };
    assert!(std::ptr::eq(pg, Postgres::shared().expect("shared cluster")));

    let first = pg.create_database();
    let second = pg.create_database();
    assert_ne!(first, second);
    let prefix = format!("postgres://postgres@127.0.0.1:{}/", pg.port());
    for url in [&first, &second] {
        assert!(url.starts_with(&prefix), "{url}");
        assert!(db_name(url).starts_with(&format!("t_{}_", std::process::id())), "{url}");
        // Connect through the URL itself: it must work as given (trust auth, no password).
        let current = pg.psql(url, "select current_database()").expect("query through the URL");
        assert_eq!(current.trim(), db_name(url));
    }
    // A table in one database is not visible in the other.
    pg.psql(&first, "create table only_in_first (x int)").expect("create table");
    let err = pg.psql(&second, "select * from only_in_first").expect_err("other database");
    assert!(err.contains("does not exist"), "{err}");
}

#[test]
fn shared_cluster_is_safe_to_use_from_many_threads() {
    if pg_or_skip().is_none() {
        return;
    }
    let threads: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(|| {
                let pg = Postgres::shared().expect("shared cluster");
                (pg as *const Postgres as usize, pg.create_database())
            })
        })
        .collect();
    let results: Vec<(usize, String)> = threads.into_iter().map(|t| t.join().expect("thread")).collect();
    assert!(results.iter().all(|(ptr, _)| *ptr == results[0].0), "one cluster");
    let mut urls: Vec<&String> = results.iter().map(|(_, url)| url).collect();
    urls.sort();
    urls.dedup();
    assert_eq!(urls.len(), 8, "distinct databases");
}

#[test]
fn own_cluster_stops_restarts_and_is_removed_on_drop() {
    let Some(shared) = pg_or_skip() else { return };
    let pg = Postgres::start().unwrap_or_else(|e| panic!("own cluster: {e}"));
    let port = pg.port();
    let dir = pg.dir().to_path_buf();
    assert_ne!(port, shared.port());
    assert!(dir.join("data").join("PG_VERSION").exists());
    assert!(accepts_connections(port));
    let url = pg.create_database();
    pg.psql(&url, "create table survives (x int); insert into survives values (7)").expect("write before the outage");

    pg.stop();
    assert!(!accepts_connections(port), "stopped server refuses connections");
    assert!(pg.psql(&url, "select 1").is_err());
    pg.stop(); // stopping twice is harmless

    pg.restart();
    assert_eq!(pg.port(), port);
    assert!(accepts_connections(port), "restarted server accepts connections");
    assert_eq!(pg.psql(&url, "select x from survives").expect("data survives").trim(), "7");

    // restart() on a running server bounces it.
    pg.restart();
    assert_eq!(pg.psql(&url, "select 1").expect("after bounce").trim(), "1");

    drop(pg);
    assert!(!dir.exists(), "{} removed on drop", dir.display());
    assert!(!accepts_connections(port), "server stopped on drop");
}

/// Not a test: run as a child by `shared_cluster_is_stopped_when_the_process_exits`.
#[test]
#[ignore = "helper run as a child process by other tests"]
fn shared_cluster_helper() {
    if std::env::var(HELPER_VAR).is_err() {
        return;
    }
    let pg = Postgres::shared().unwrap_or_else(|e| panic!("helper: shared cluster: {e}"));
    println!("CLUSTER {} {}", pg.dir().display(), pg.port());
    // Returning lets the test harness exit the process, which runs the atexit hook.
}

#[test]
fn shared_cluster_is_stopped_when_the_process_exits() {
    if pg_or_skip().is_none() {
        return;
    }
    let mut helper = spawn_helper("shared_cluster_helper");
    let (dir, port) = wait_for_cluster_line(&mut helper);
    let status = helper.wait_exit(Duration::from_secs(60)).expect("helper exits");
    assert!(status.success(), "helper failed ({status}):\n{}", helper.logs());
    assert!(!dir.exists(), "{} removed at exit", dir.display());
    assert!(!accepts_connections(port), "server stopped at exit");
}

/// Not a test: run as a child by `clusters_of_killed_processes_are_cleaned_up`; starts a cluster
/// and waits to be killed, leaking it.
#[test]
#[ignore = "helper run as a child process by other tests"]
fn leaked_cluster_helper() {
    if std::env::var(HELPER_VAR).is_err() {
        return;
    }
    let pg = Postgres::start().unwrap_or_else(|e| panic!("helper: own cluster: {e}"));
    println!("CLUSTER {} {}", pg.dir().display(), pg.port());
    std::thread::sleep(Duration::from_secs(120));
}

#[test]
fn clusters_of_killed_processes_are_cleaned_up() {
    if pg_or_skip().is_none() {
        return;
    }
    let bins = locate().expect("binaries");
    // Make sure this process' own one-time cleanup is over, so that only the explicit call
    // below removes the leaked cluster.
    cleanup_stale_once(bins);

    let mut helper = spawn_helper("leaked_cluster_helper");
    let (dir, port) = wait_for_cluster_line(&mut helper);
    assert!(dir.join("data").exists());
    assert!(accepts_connections(port));
    assert!(dir.starts_with(base_dir()), "{}", dir.display());

    helper.kill(); // SIGKILL: no Drop, no atexit; the server keeps running
    cleanup_stale_clusters(bins, &base_dir());
    assert!(!dir.exists(), "{} removed", dir.display());
    assert!(!accepts_connections(port), "leaked server stopped");
    // The shared cluster of this (living) process was left alone.
    let shared = Postgres::shared().expect("shared cluster");
    assert!(shared.dir().exists());
    assert!(accepts_connections(shared.port()));
}

#[test]
fn missing_binaries_are_reported_with_an_install_hint() {
    let err = find_bins(Some(OsStr::new("")), Path::new("/nonexistent/postgresql")).expect_err("nothing to find");
    assert!(err.to_string().starts_with("PostgreSQL binaries (initdb/pg_ctl) not found:"), "{err}");
    assert!(err.to_string().contains("install postgresql-15"), "{err}");
    let err = find_bins(None, Path::new("/nonexistent/postgresql")).expect_err("no PATH");
    assert!(err.0.contains("not found"), "{err}");
}

#[test]
fn versioned_binaries_are_found_highest_version_first() {
    let root = tempfile::tempdir().expect("tempdir");
    for version in ["9.6", "13", "15", "not-a-version"] {
        let bin = root.path().join(version).join("bin");
        fs::create_dir_all(&bin).expect("mkdir");
        for name in ["initdb", "pg_ctl", "psql"] {
            fs::write(bin.join(name), "#!/bin/sh\n").expect("write");
            fs::set_permissions(bin.join(name), fs::Permissions::from_mode(0o755)).expect("chmod");
        }
    }
    // Version 15 lacks pg_ctl, so 13 is the highest complete installation.
    fs::remove_file(root.path().join("15/bin/pg_ctl")).expect("rm");
    let bins = find_bins(Some(OsStr::new("/nonexistent")), root.path()).expect("found");
    assert_eq!(bins.initdb, root.path().join("13/bin/initdb"));
    assert_eq!(bins.pg_ctl, root.path().join("13/bin/pg_ctl"));
    assert_eq!(bins.psql, root.path().join("13/bin/psql"));
}

#[test]
fn ci_and_require_postgres_forbid_skipping() {
    assert!(!skipping_forbidden(None, None));
    assert!(!skipping_forbidden(Some("false"), Some("0")));
    assert!(skipping_forbidden(Some("true"), None));
    assert!(skipping_forbidden(Some("TRUE"), None));
    assert!(skipping_forbidden(None, Some("1")));
}

#[test]
fn unavailable_displays_its_message() {
    let err = PgUnavailable("initdb failed".to_string());
    assert_eq!(err.to_string(), "initdb failed");
    let _: &dyn std::error::Error = &err;
}
