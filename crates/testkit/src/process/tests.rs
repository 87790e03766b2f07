use super::*;
use std::io::BufRead;
use std::os::unix::process::ExitStatusExt;

const SH: &str = "/bin/sh";

/// Env var that turns [`serve_http_helper`] into a server when this test binary runs it as a
/// child process.
const HELPER_ADDR_VAR: &str = "FLOTILLA_TESTKIT_HELPER_ADDR";

fn local(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

fn sh(script: &str) -> ServiceProcess {
    ServiceProcess::spawn(Path::new(SH), &["-c", script], &[], local(free_port())).expect("spawn /bin/sh")
}

/// Not a test: the HTTP server that the `wait_ready` tests run in a child process (this same test
/// binary, filtered to this function). Ignored, and a no-op without its env var.
#[test]
#[ignore = "helper run as a child process by other tests"]
fn serve_http_helper() {
    let Ok(addr) = std::env::var(HELPER_ADDR_VAR) else {
        return;
    };
    println!("helper starting");
    // Start late, so that wait_ready has to poll a refusing port first.
    std::thread::sleep(Duration::from_millis(300));
    let listener = TcpListener::bind(&addr).expect("helper: bind");
    println!("helper listening on {addr}");
    for stream in listener.incoming() {
        let mut stream = stream.expect("helper: accept");
        let mut reader = io::BufReader::new(stream.try_clone().expect("helper: clone stream"));
        let mut request_line = String::new();
        reader.read_line(&mut request_line).expect("helper: read request");
        // Skip the headers.
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
            line.clear();
        }
        let path = request_line.split_whitespace().nth(1).unwrap_or_default();
        let response = match path {
            "/health" => "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_string(),
            "/chunked" => {
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2;x=y\r\nlo\r\n0\r\n\r\n".to_string()
            }
            _ => "HTTP/1.1 404 Not Found\r\nContent-Length: 7\r\n\r\nmissing".to_string(),
        };
        // Keep the connection open after the response: http_get must not wait for EOF when the
        // length is known.
        let _ = stream.write_all(response.as_bytes());
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(30));
            drop(stream);
        });
    }
}

fn spawn_http_helper() -> ServiceProcess {
    let addr = local(free_port());
    let exe = std::env::current_exe().expect("path of the test binary");
    ServiceProcess::spawn(
        &exe,
        &["--exact", "process::tests::serve_http_helper", "--ignored", "--nocapture", "--test-threads=1"],
        &[(HELPER_ADDR_VAR, addr.to_string())],
        addr,
    )
    .expect("spawn the HTTP helper")
}

#[test]
fn free_port_is_bindable_on_loopback() {
    let port = free_port();
    assert_ne!(port, 0);
    TcpListener::bind(local(port)).expect("the port from free_port can be bound");
}

#[test]
fn exit_status_and_output_are_captured() {
    let mut process = sh("echo hello; echo oops >&2; exit 3");
    let status = process.wait_exit(Duration::from_secs(10)).expect("sh exits");
    assert_eq!(status.code(), Some(3));
    let logs = process.logs();
    assert!(logs.contains("hello\n"), "stdout captured: {logs:?}");
    assert!(logs.contains("oops\n"), "stderr captured: {logs:?}");
}

#[test]
fn explicitly_given_env_vars_are_passed() {
    let process = ServiceProcess::spawn(
        Path::new(SH),
        &["-c", "echo \"value=$FLOTILLA_TESTKIT_X other=$OTHER_X\""],
        &[("FLOTILLA_TESTKIT_X", "42".to_string()), ("OTHER_X", "a b".to_string())],
        local(free_port()),
    );
    let mut process = process.expect("spawn /bin/sh");
    assert!(process.wait_exit(Duration::from_secs(10)).is_some_and(|s| s.success()));
    assert_eq!(process.logs(), "value=42 other=a b\n");
}

#[test]
fn spawn_of_missing_program_fails_with_its_name() {
    let err =
        ServiceProcess::spawn(Path::new("/nonexistent/flotilla"), &[], &[], local(1)).expect_err("no such program");
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
    assert!(err.to_string().contains("/nonexistent/flotilla"), "{err}");
}

#[test]
fn wait_ready_polls_until_200_then_signal_terminates() {
    let mut server = spawn_http_helper();
    assert_eq!(server.base_url(), format!("http://127.0.0.1:{}", server.addr().port()));
    let took =
        server.wait_ready("/health", Duration::from_secs(30)).unwrap_or_else(|e| panic!("helper became ready: {e}"));
    // It sleeps 300 ms before binding, so readiness must have been polled for.
    assert!(took >= Duration::from_millis(250), "took {took:?}");

    let timeout = Duration::from_secs(5);
    assert_eq!(http_get(server.addr(), "/health", timeout).expect("GET /health"), (200, "ok".to_string()));
    assert_eq!(http_get(server.addr(), "/chunked", timeout).expect("GET /chunked"), (200, "hello".to_string()));
    assert_eq!(http_get(server.addr(), "/nope", timeout).expect("GET /nope"), (404, "missing".to_string()));
    assert!(server.logs().contains("helper listening on"), "{}", server.logs());

    server.signal(libc::SIGTERM);
    let status = server.wait_exit(Duration::from_secs(10)).expect("SIGTERM ends the helper");
    assert_eq!(status.signal(), Some(libc::SIGTERM));
}

#[test]
fn wait_ready_reports_an_early_exit_with_the_output() {
    let mut process = sh("echo boom-before-ready; exit 1");
    let err = process.wait_ready("/health", Duration::from_secs(30)).expect_err("the process exits without listening");
    assert!(err.contains("exited"), "{err}");
    assert!(err.contains("boom-before-ready"), "{err}");
}

#[test]
fn wait_ready_times_out_with_the_output() {
    let mut process = sh("echo still-starting; exec sleep 30");
    let start = Instant::now();
    let err = process.wait_ready("/health", Duration::from_millis(300)).expect_err("nothing listens");
    assert!(start.elapsed() < Duration::from_secs(5), "took {:?}", start.elapsed());
    assert!(err.contains("did not answer 200"), "{err}");
    // The output may not be flushed to the file the very instant sh starts; it is by now.
    assert!(process.logs().contains("still-starting"), "{}", process.logs());
}

#[test]
fn wait_exit_returns_none_while_running_and_kill_ends_it() {
    let mut process = sh("exec sleep 30");
    assert_eq!(process.wait_exit(Duration::from_millis(100)), None);
    process.kill();
    let status = process.wait_exit(Duration::ZERO).expect("killed and reaped");
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    // Signalling a reaped process is a no-op (its pid may belong to someone else by now).
    process.signal(libc::SIGTERM);
}

#[test]
fn drop_kills_the_process() {
    let process = sh("exec sleep 30");
    let pid = libc::pid_t::try_from(process.pid()).expect("pid fits");
    drop(process);
    // Killed and reaped: the pid no longer exists (barring immediate reuse).
    // SAFETY: signal 0 only checks for existence.
    assert_eq!(unsafe { libc::kill(pid, 0) }, -1);
}

#[test]
fn http_get_to_a_closed_port_fails() {
    let err = http_get(local(free_port()), "/", Duration::from_secs(2)).expect_err("nothing listens");
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
}

#[test]
fn http_get_times_out_on_a_silent_server() {
    let listener = TcpListener::bind(local(0)).expect("bind");
    let addr = listener.local_addr().expect("local addr");
    // Accepts (via the backlog) but never answers.
    let start = Instant::now();
    let err = http_get(addr, "/", Duration::from_millis(300)).expect_err("no answer");
    assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
    assert!(start.elapsed() < Duration::from_secs(3));
    drop(listener);
}

#[test]
fn http_get_reads_a_body_delimited_by_eof() {
    let listener = TcpListener::bind(local(0)).expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        // The request may arrive in pieces under load: read up to the end of its headers.
        let mut seen = Vec::new();
        let mut buf = [0u8; 1024];
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).expect("read request");
            assert!(n > 0, "client closed before sending the whole request");
            seen.extend_from_slice(&buf[..n]);
        }
        let request = String::from_utf8_lossy(&seen).into_owned();
        stream.write_all(b"HTTP/1.0 503 Service Unavailable\r\nX: y\r\n\r\nnot yet").expect("write response");
        request
    });
    let response = http_get(addr, "/ready?x=1", Duration::from_secs(5)).expect("GET");
    assert_eq!(response, (503, "not yet".to_string()));
    let request = server.join().expect("server thread");
    assert!(request.starts_with("GET /ready?x=1 HTTP/1.1\r\n"), "{request:?}");
    assert!(request.contains("Connection: close\r\n"), "{request:?}");
}

#[test]
fn parse_response_rejects_incomplete_responses() {
    assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab").is_err());
    assert!(parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab").is_err());
    assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
    assert!(parse_response(b"garbage\r\n\r\n").is_err());
    assert_eq!(
        parse_response(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n").expect("complete"),
        (204, String::new())
    );
}
