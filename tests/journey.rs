//! The `flotilla` binary started as a user starts it (embedded mode, SQLite in a data dir),
//! driven over HTTP through the gateway.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use flotilla_testkit::{ServiceProcess, free_port};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_flotilla"))
}

/// The binary with none of the caller's `FLOTILLA_*` variables (CI sets test-harness ones).
fn command() -> std::process::Command {
    let mut cmd = std::process::Command::new(bin());
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("FLOTILLA_")) {
        cmd.env_remove(k);
    }
    cmd
}

fn start(data_dir: &Path, extra: &[(&str, &str)]) -> ServiceProcess {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut env = vec![
        ("FLOTILLA_LISTEN", addr.to_string()),
        ("FLOTILLA_DATA_DIR", data_dir.display().to_string()),
        ("FLOTILLA_LOG_FORMAT", "json".to_owned()),
    ];
    env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    let mut p = ServiceProcess::spawn(bin(), &[], &env, addr).expect("spawn flotilla");
    let took = p.wait_ready("/health", Duration::from_secs(30)).expect("flotilla becomes ready");
    eprintln!("embedded flotilla ready after {took:?}");
    p
}

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("request reaches the server");
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.bytes().await.unwrap();
        let v = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).expect("JSON body") };
        (status, headers, v)
    }
}

fn titles(list: &Value) -> Vec<String> {
    list["tasks"].as_array().unwrap().iter().map(|t| t["title"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn a_user_signs_up_manages_tasks_refreshes_and_logs_out() {
    use reqwest::Method as M;
    let dir = tempfile::tempdir().unwrap();
    let p = start(dir.path(), &[]);
    assert!(p.logs().contains(&format!("Flotilla is ready at {}", p.base_url())), "prints the URL: {}", p.logs());
    let c = Client { http: reqwest::Client::new(), base: p.base_url() };

    let (s, _, signup) = c
        .call(
            M::POST,
            "/api/auth/signup",
            None,
            Some(json!({"name": "Ada", "email": "Ada@Example.com", "password": "analytical engine"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{signup}");
    assert_eq!(signup["token_type"], "bearer");
    assert_eq!(signup["user"]["email"], "ada@example.com");
    let user = signup["user"]["id"].as_str().unwrap().to_owned();

    let (s, _, login) = c
        .call(
            M::POST,
            "/api/auth/login",
            None,
            Some(json!({"email": "ada@example.com", "password": "analytical engine"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let token = login["access_token"].as_str().unwrap().to_owned();
    let refresh = login["refresh_token"].as_str().unwrap().to_owned();
    let t = Some(token.as_str());

    let (s, _, me) = c.call(M::GET, "/api/auth/me", t, None).await;
    assert_eq!((s, me["id"].as_str()), (StatusCode::OK, Some(user.as_str())));

    // Create four tasks.
    let tasks = format!("/api/{user}/tasks");
    let specs = [
        json!({"title": "Write the report", "priority": "high", "tags": ["work"], "due_at": "2030-01-02T09:00:00Z"}),
        json!({"title": "Buy milk", "priority": "low", "tags": ["home", "shopping"], "due_at": "2030-01-01T17:00:00Z"}),
        json!({"title": "Call the dentist", "description": "about the report of the x-ray", "tags": ["health"]}),
        json!({"title": "Pay rent", "priority": "high", "due_at": "2020-01-01T00:00:00Z"}),
    ];
    let mut ids = Vec::new();
    for spec in specs {
        let (s, h, task) = c.call(M::POST, &tasks, t, Some(spec)).await;
        assert_eq!(s, StatusCode::CREATED, "{task}");
        assert_eq!(h["location"].to_str().unwrap(), format!("{tasks}/{}", task["id"].as_str().unwrap()));
        assert_eq!(h["etag"], "\"1\"");
        ids.push(task["id"].as_str().unwrap().to_owned());
    }

    // Filters, search, sorting.
    let (_, _, high) = c.call(M::GET, &format!("{tasks}?priority=high&sort=title&order=asc"), t, None).await;
    assert_eq!(titles(&high), ["Pay rent", "Write the report"]);
    let (_, _, tagged) = c.call(M::GET, &format!("{tasks}?tag=shopping"), t, None).await;
    assert_eq!(titles(&tagged), ["Buy milk"]);
    let (_, _, found) = c.call(M::GET, &format!("{tasks}?q=REPORT&sort=title"), t, None).await;
    assert_eq!(titles(&found), ["Call the dentist", "Write the report"]);
    let (_, _, overdue) = c.call(M::GET, &format!("{tasks}?overdue=true"), t, None).await;
    assert_eq!(titles(&overdue), ["Pay rent"]);
    let (_, _, by_due) = c.call(M::GET, &format!("{tasks}?sort=due"), t, None).await;
    assert_eq!(titles(&by_due), ["Pay rent", "Buy milk", "Write the report", "Call the dentist"]);
    let (s, _, bad) = c.call(M::GET, &format!("{tasks}?sort=colour"), t, None).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");

    // Paging: every task exactly once.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(cur) => format!("{tasks}?limit=3&cursor={cur}"),
            None => format!("{tasks}?limit=3"),
        };
        let (s, _, page) = c.call(M::GET, &path, t, None).await;
        assert_eq!(s, StatusCode::OK);
        seen.extend(titles(&page));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 4);
    assert_eq!(seen, ["Pay rent", "Call the dentist", "Buy milk", "Write the report"], "newest first");

    // Update with optimistic concurrency.
    let milk = format!("{tasks}/{}", ids[1]);
    let (s, h, got) = c.call(M::GET, &milk, t, None).await;
    assert_eq!(s, StatusCode::OK);
    let etag = h["etag"].to_str().unwrap().to_owned();
    let patched = c
        .http
        .patch(format!("{}{milk}", c.base))
        .bearer_auth(&token)
        .header("if-match", &etag)
        .json(&json!({"title": "Buy oat milk"}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), StatusCode::OK);
    let stale = c
        .http
        .patch(format!("{}{milk}", c.base))
        .bearer_auth(&token)
        .header("if-match", &etag)
        .json(&json!({"title": "Buy cow milk"}))
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED);
    let (_, _, now) = c.call(M::GET, &milk, t, None).await;
    assert_eq!(now["title"], "Buy oat milk");
    assert_eq!(now["version"].as_i64(), Some(got["version"].as_i64().unwrap() + 1));

    // Complete, then filter by status.
    let (s, _, done) = c.call(M::PATCH, &format!("{milk}/complete"), t, None).await;
    assert_eq!((s, &done["completed"]), (StatusCode::OK, &json!(true)));
    let (_, _, pending) = c.call(M::GET, &format!("{tasks}?status=pending&sort=title"), t, None).await;
    assert_eq!(titles(&pending), ["Call the dentist", "Pay rent", "Write the report"]);
    let (_, _, completed) = c.call(M::GET, &format!("{tasks}?status=completed"), t, None).await;
    assert_eq!(titles(&completed), ["Buy oat milk"]);

    // Delete.
    let (s, _, _) = c.call(M::DELETE, &format!("{tasks}/{}", ids[2]), t, None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _, _) = c.call(M::GET, &format!("{tasks}/{}", ids[2]), t, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Another user cannot see or touch any of it.
    let (_, _, eve) = c
        .call(
            M::POST,
            "/api/auth/signup",
            None,
            Some(json!({"name": "Eve", "email": "eve@example.com", "password": "snooping around"})),
        )
        .await;
    let eve_token = eve["access_token"].as_str().unwrap();
    let (s, _, _) = c.call(M::GET, &tasks, Some(eve_token), None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let eve_path = format!("/api/{}/tasks/{}", eve["user"]["id"].as_str().unwrap(), ids[0]);
    let (s, _, _) = c.call(M::DELETE, &eve_path, Some(eve_token), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, _) = c.call(M::GET, &format!("{tasks}/{}", ids[0]), t, None).await;
    assert_eq!(s, StatusCode::OK, "still there");

    // Refresh rotates; the old refresh token is then rejected.
    let (s, _, rotated) = c.call(M::POST, "/api/auth/refresh", None, Some(json!({"refresh_token": refresh}))).await;
    assert_eq!(s, StatusCode::OK);
    let new_token = rotated["access_token"].as_str().unwrap().to_owned();
    let new_refresh = rotated["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(new_refresh, refresh);
    let (s, _, _) = c.call(M::GET, &tasks, Some(&new_token), None).await;
    assert_eq!(s, StatusCode::OK);

    // Logout ends the session: its access and refresh tokens stop working.
    let (s, _, _) = c.call(M::POST, "/api/auth/logout", Some(&new_token), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _, _) = c.call(M::GET, &tasks, Some(&new_token), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _, _) = c.call(M::POST, "/api/auth/refresh", None, Some(json!({"refresh_token": new_refresh}))).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _, _) = c.call(M::POST, "/api/auth/refresh", None, Some(json!({"refresh_token": refresh}))).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn data_survives_a_restart_and_sigterm_drains_in_flight_requests() {
    let dir = tempfile::tempdir().unwrap();
    let p = start(dir.path(), &[]);
    let base = p.base_url();

    // A signup whose body arrives slowly: SIGTERM lands while it is in flight.
    let body =
        serde_json::to_vec(&json!({"name": "Slow", "email": "slow@example.com", "password": "patience pays"})).unwrap();
    let (head, tail) = body.split_at(10);
    let (head, tail) = (bytes::Bytes::copy_from_slice(head), bytes::Bytes::copy_from_slice(tail));
    let stream = futures_util::stream::unfold(0, move |step| {
        let (head, tail) = (head.clone(), tail.clone());
        async move {
            match step {
                0 => Some((Ok::<_, std::io::Error>(head), 1)),
                1 => {
                    tokio::time::sleep(Duration::from_millis(700)).await;
                    Some((Ok(tail), 2))
                }
                _ => None,
            }
        }
    });
    let len = body.len();
    let request = reqwest::Client::new()
        .post(format!("{base}/api/auth/signup"))
        .header("content-type", "application/json")
        .header("content-length", len)
        .body(reqwest::Body::wrap_stream(stream))
        .send();
    let pid = p.pid();
    let signal = async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    };
    let (res, ()) = tokio::join!(request, signal);
    let res = res.expect("the in-flight request is answered, not cut off");
    assert_eq!(res.status(), StatusCode::CREATED);
    let mut p = p;
    let status = p.wait_exit(Duration::from_secs(10)).expect("exits after draining");
    assert!(status.success(), "clean exit: {status:?}\n{}", p.logs());
    drop(p);

    // Same data dir, new process: the account is still there.
    let p2 = start(dir.path(), &[]);
    let login = reqwest::Client::new()
        .post(format!("{}/api/auth/login", p2.base_url()))
        .json(&json!({"email": "slow@example.com", "password": "patience pays"}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::OK);
}

#[test]
fn invalid_configuration_stops_the_process_with_one_line_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    for (var, value) in
        [("FLOTILLA_LISTEN", "localhost"), ("FLOTILLA_RATE_LIMIT_PER_IP", "-3"), ("FLOTILLA_LOG_FORMAT", "xml")]
    {
        let out = command().env(var, value).env("FLOTILLA_DATA_DIR", dir.path()).output().expect("run flotilla");
        assert_eq!(out.status.code(), Some(2), "{var}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line: {stderr}");
        assert!(lines[0].starts_with(&format!("flotilla: invalid configuration: {var}=")), "{stderr}");
    }
    // A port that is taken is one clear line too.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let out = command()
        .env("FLOTILLA_LISTEN", taken.local_addr().unwrap().to_string())
        .env("FLOTILLA_DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot listen on"));
}

#[tokio::test]
async fn metrics_use_the_contract_names_and_ops_endpoints_answer() {
    let dir = tempfile::tempdir().unwrap();
    let p = start(dir.path(), &[]);
    let c = reqwest::Client::new();
    // Some traffic so the counters exist.
    let _ = c
        .post(format!("{}/api/auth/login", p.base_url()))
        .json(&json!({"email": "x@example.com", "password": "whatever1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(c.get(format!("{}/ready", p.base_url())).send().await.unwrap().status(), StatusCode::OK);
    let text = c.get(format!("{}/metrics", p.base_url())).send().await.unwrap().text().await.unwrap();
    for name in flotilla_runtime::telemetry::names::ALL.iter().filter(|n| **n != "rate_limited_total") {
        assert!(text.contains(name), "{name} missing from /metrics");
    }
    assert!(text.contains("http_request_duration_seconds_bucket"), "histograms have buckets");
    assert!(text.contains(r#"service="accounts""#) && text.contains(r#"service="gateway""#));
}

#[test]
fn admin_create_makes_an_administrator_who_can_list_users() {
    let dir = tempfile::tempdir().unwrap();
    let out = command()
        .args(["admin", "create", "--email", "root@example.com", "--name", "Root"])
        .env("FLOTILLA_DATA_DIR", dir.path())
        .env("FLOTILLA_ADMIN_PASSWORD", "a strong admin pass")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let weak = command()
        .args(["admin", "create", "--email", "weak@example.com"])
        .env("FLOTILLA_DATA_DIR", dir.path())
        .env("FLOTILLA_ADMIN_PASSWORD", "password")
        .output()
        .unwrap();
    assert!(!weak.status.success(), "a weak admin password is refused");

    let p = start(dir.path(), &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = reqwest::Client::new();
        let login: Value = c
            .post(format!("{}/api/auth/login", p.base_url()))
            .json(&json!({"email": "root@example.com", "password": "a strong admin pass"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(login["user"]["role"], "admin");
        let users = c
            .get(format!("{}/api/admin/users", p.base_url()))
            .bearer_auth(login["access_token"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(users.status(), StatusCode::OK);
        let v: Value = users.json().await.unwrap();
        let emails: Vec<&str> = v["users"].as_array().unwrap().iter().map(|u| u["email"].as_str().unwrap()).collect();
        assert_eq!(emails, ["root@example.com"]);
    });
}

#[tokio::test]
async fn json_logs_carry_the_request_id_and_never_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let p = start(dir.path(), &[("FLOTILLA_LOG", "debug")]);
    let c = reqwest::Client::new();
    let res = c
        .post(format!("{}/api/auth/signup", p.base_url()))
        .header("x-request-id", "journey-req-42")
        .json(&json!({"name": "Log", "email": "log@example.com", "password": "quiet please now"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "journey-req-42");
    let body: Value = res.json().await.unwrap();
    let token = body["access_token"].as_str().unwrap().to_owned();
    let _ = c.get(format!("{}/api/auth/me", p.base_url())).bearer_auth(&token).send().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs = p.logs();
    let lines: Vec<Value> = logs.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    assert!(!lines.is_empty(), "logs are JSON lines:\n{logs}");
    let tagged: Vec<&Value> = lines.iter().filter(|l| l.to_string().contains("journey-req-42")).collect();
    // The gateway's and the accounts service's request lines both carry the caller's id.
    let services: std::collections::BTreeSet<String> =
        tagged.iter().filter_map(|l| l["span"]["service"].as_str().map(str::to_owned)).collect();
    assert!(services.contains("gateway") && services.contains("accounts"), "{services:?} in\n{logs}");
    assert!(!logs.contains(&token), "an access token was logged");
    assert!(!logs.contains("quiet please now"), "a password was logged");
}

#[test]
fn migrate_prepares_every_embedded_database_and_one_service_database_and_is_repeatable() {
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let out = command().arg("migrate").env("FLOTILLA_DATA_DIR", dir.path()).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8_lossy(&out.stdout);
        for service in ["accounts", "tasks", "audit"] {
            assert!(stdout.contains(&format!("{service}: migrations applied")), "{stdout}");
            assert!(dir.path().join(format!("{service}.db")).exists());
        }
    }
    let unknown =
        command().args(["migrate", "--service", "nope"]).env("FLOTILLA_DATA_DIR", dir.path()).output().unwrap();
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unknown service"));

    if let Some(pg) = flotilla_testkit::pg_or_skip() {
        let url = pg.create_database();
        let out =
            command().args(["migrate", "--service", "tasks"]).env("FLOTILLA_DATABASE_URL", &url).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let tables = pg
            .psql(&url, "SELECT count(*) FROM information_schema.tables WHERE table_name IN ('tasks','outbox')")
            .unwrap();
        assert_eq!(tables.trim(), "2");
        let url = pg.create_database();
        let out =
            command().args(["migrate", "--service", "audit"]).env("FLOTILLA_DATABASE_URL", &url).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let tables = pg
            .psql(&url, "SELECT count(*) FROM information_schema.tables WHERE table_name IN ('audit_log','inbox')")
            .unwrap();
        assert_eq!(tables.trim(), "2");
        // One database URL cannot serve every service.
        let all = command().arg("migrate").env("FLOTILLA_DATABASE_URL", &url).output().unwrap();
        assert!(!all.status.success());
    }
}
