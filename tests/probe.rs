//! `flotilla probe`, the health check of an image without a shell or HTTP client (compose runs it),
//! against a running embedded server: exit 0 on a 2xx answer, 1 on anything else, one line on
//! stderr either way.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use flotilla_testkit::{ServiceProcess, free_port};

/// `flotilla probe ARGS…` with exactly `env` among the FLOTILLA_* variables.
fn probe(args: &[&str], env: &[(&str, String)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_flotilla"));
    cmd.arg("probe").args(args);
    for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("FLOTILLA_")) {
        cmd.env_remove(name);
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    cmd.output().expect("flotilla probe runs")
}

/// The exit code and the one line printed on stderr.
fn outcome(out: &Output) -> (Option<i32>, String) {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(stderr.lines().count(), 1, "one line on stderr, got: {stderr:?}");
    assert!(out.stdout.is_empty(), "nothing on stdout: {:?}", String::from_utf8_lossy(&out.stdout));
    (out.status.code(), stderr.trim_end().to_owned())
}

fn listen(addr: impl ToString) -> [(&'static str, String); 1] {
    [("FLOTILLA_LISTEN", addr.to_string())]
}

#[test]
fn probe_passes_on_a_2xx_and_fails_on_anything_else() {
    let dir = tempfile::tempdir().unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let env = [("FLOTILLA_LISTEN", addr.to_string()), ("FLOTILLA_DATA_DIR", dir.path().display().to_string())];
    let mut server = ServiceProcess::spawn(Path::new(env!("CARGO_BIN_EXE_flotilla")), &[], &env, addr).unwrap();
    server.wait_ready("/ready", Duration::from_secs(30)).unwrap();

    // The service's own listen address, from FLOTILLA_LISTEN or --listen; /ready by default.
    let (code, line) = outcome(&probe(&[], &listen(addr)));
    assert_eq!(code, Some(0), "{line}");
    assert_eq!(line, format!("flotilla: probe http://{addr}/ready: 200 OK"));
    let (code, line) = outcome(&probe(&["/health"], &listen(addr)));
    assert_eq!((code, line.ends_with("/health: 200 OK")), (Some(0), true), "{line}");
    let (code, line) = outcome(&probe(&["/ready", "--listen", &addr.to_string()], &[]));
    assert_eq!(code, Some(0), "--listen: {line}");
    // Listening on every address (compose's 0.0.0.0:8080): the probe asks loopback.
    let (code, line) = outcome(&probe(&["/ready"], &listen(format!("0.0.0.0:{}", addr.port()))));
    assert_eq!(code, Some(0), "0.0.0.0: {line}");
    assert!(line.contains(&format!("http://127.0.0.1:{}/ready", addr.port())), "{line}");
    let (code, line) = outcome(&probe(&["--url", &format!("http://{addr}/health")], &[]));
    assert_eq!(code, Some(0), "--url: {line}");

    // A path that answers 404.
    let (code, line) = outcome(&probe(&["/no-such-page"], &listen(addr)));
    assert_eq!(code, Some(1), "{line}");
    assert!(line.ends_with("/no-such-page: 404 Not Found"), "{line}");
    drop(server);

    // Nothing listens on the port (the service is gone).
    let (code, line) = outcome(&probe(&["/ready"], &listen(addr)));
    assert_eq!(code, Some(1), "{line}");
    assert!(line.contains("cannot connect"), "{line}");
}

#[test]
fn probe_gives_up_after_two_seconds_and_never_exits_2() {
    // A port that accepts connections (the kernel's backlog) but never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let start = Instant::now();
    let (code, line) = outcome(&probe(&[], &listen(addr)));
    assert_eq!(code, Some(1), "{line}");
    assert!(line.ends_with("no answer within 2s"), "{line}");
    assert!(start.elapsed() < Duration::from_secs(5), "took {:?}", start.elapsed());

    // A bad FLOTILLA_LISTEN is unhealthy (1), not a configuration exit (2: Docker reserves it).
    let (code, line) = outcome(&probe(&[], &listen("localhost")));
    assert_eq!(code, Some(1), "{line}");
    assert!(line.contains("FLOTILLA_LISTEN"), "{line}");
    let (code, line) = outcome(&probe(&["--url", "https://127.0.0.1:1/ready"], &[]));
    assert_eq!(code, Some(1), "{line}");
    assert!(line.contains("http://"), "{line}");
    drop(silent);
}
