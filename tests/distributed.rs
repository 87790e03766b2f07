//! Distributed mode: accounts, tasks, audit, the assistant and the gateway as separate processes,
//! each service on its own PostgreSQL database, talking HTTP, with their events on a throwaway
//! nats-server and their rate limits and revocations shared through a throwaway redis-server.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use flotilla_testkit::nats::{Nats, nats_or_skip};
use flotilla_testkit::{Postgres, Redis, ServiceProcess, free_port, pg_or_skip, redis_or_skip};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_flotilla"))
}

fn addr() -> SocketAddr {
    format!("127.0.0.1:{}", free_port()).parse().unwrap()
}

struct Cluster {
    accounts: ServiceProcess,
    tasks: ServiceProcess,
    audit: ServiceProcess,
    assistant: ServiceProcess,
    gateway: ServiceProcess,
    accounts_db: String,
    tasks_db: String,
    nats: Deps,
}

/// The servers every service process talks to.
struct Deps {
    nats: Nats,
    redis: Option<Redis>,
}

impl Deps {
    fn start(nats: Nats) -> Self {
        Deps { nats, redis: redis_or_skip() }
    }

    /// The variables naming them, plus `extra`.
    fn env(&self, extra: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
        let mut env = vec![("FLOTILLA_NATS_URL", self.nats.url())];
        if let Some(r) = &self.redis {
            env.push(("FLOTILLA_REDIS_URL", r.url()));
        }
        env.extend(extra.iter().cloned());
        env
    }
}

fn spawn(service: &str, at: SocketAddr, env: &[(&str, String)], ready: &str) -> ServiceProcess {
    let mut all = vec![("FLOTILLA_LISTEN", at.to_string()), ("FLOTILLA_LOG_FORMAT", "json".to_owned())];
    all.extend(env.iter().cloned());
    let mut p = ServiceProcess::spawn(bin(), &[service], &all, at).expect("spawn");
    let took = p.wait_ready(ready, Duration::from_secs(30)).unwrap_or_else(|e| panic!("{service} not ready: {e}"));
    eprintln!("{service} ready after {took:?}");
    p
}

fn spawn_accounts(at: SocketAddr, db: &str, deps: &Deps) -> ServiceProcess {
    spawn("accounts", at, &deps.env(&[("FLOTILLA_DATABASE_URL", db.to_owned())]), "/ready")
}

fn spawn_tasks(at: SocketAddr, db: &str, accounts: &ServiceProcess, deps: &Deps) -> ServiceProcess {
    let env = deps.env(&[("FLOTILLA_DATABASE_URL", db.to_owned()), ("FLOTILLA_ACCOUNTS_URL", accounts.base_url())]);
    spawn("tasks", at, &env, "/ready")
}

fn spawn_audit(at: SocketAddr, db: &str, accounts: &ServiceProcess, deps: &Deps) -> ServiceProcess {
    let env = deps.env(&[("FLOTILLA_DATABASE_URL", db.to_owned()), ("FLOTILLA_ACCOUNTS_URL", accounts.base_url())]);
    spawn("audit", at, &env, "/ready")
}

fn spawn_assistant(db: &str, accounts: &ServiceProcess, tasks: &ServiceProcess, deps: &Deps) -> ServiceProcess {
    let env = deps.env(&[
        ("FLOTILLA_DATABASE_URL", db.to_owned()),
        ("FLOTILLA_ACCOUNTS_URL", accounts.base_url()),
        ("FLOTILLA_TASKS_URL", tasks.base_url()),
    ]);
    spawn("assistant", addr(), &env, "/ready")
}

fn start(pg: &Postgres, nats: Nats) -> Cluster {
    let nats = Deps::start(nats);
    let accounts_db = pg.create_database();
    let tasks_db = pg.create_database();
    let audit_db = pg.create_database();
    let assistant_db = pg.create_database();
    let accounts = spawn_accounts(addr(), &accounts_db, &nats);
    let tasks = spawn_tasks(addr(), &tasks_db, &accounts, &nats);
    let audit = spawn_audit(addr(), &audit_db, &accounts, &nats);
    let assistant = spawn_assistant(&assistant_db, &accounts, &tasks, &nats);
    let gateway = spawn(
        "gateway",
        addr(),
        &nats.env(&[
            ("FLOTILLA_ACCOUNTS_URL", accounts.base_url()),
            ("FLOTILLA_TASKS_URL", tasks.base_url()),
            ("FLOTILLA_AUDIT_URL", audit.base_url()),
            ("FLOTILLA_ASSISTANT_URL", assistant.base_url()),
            ("FLOTILLA_UPSTREAM_TIMEOUT_MS", "5000".into()),
            ("FLOTILLA_BREAKER_THRESHOLD", "3".into()),
            ("FLOTILLA_BREAKER_OPEN_MS", "500".into()),
        ]),
        "/ready",
    );
    Cluster { accounts, tasks, audit, assistant, gateway, accounts_db, tasks_db, nats }
}

async fn call(
    c: &reqwest::Client,
    method: Method,
    url: String,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = c.request(method, url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.expect("request reaches the gateway");
    let status = res.status();
    let bytes = res.bytes().await.unwrap();
    (status, if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() })
}

#[tokio::test]
async fn the_user_journey_runs_through_four_processes_and_survives_a_tasks_outage() {
    let Some(pg) = pg_or_skip() else { return };
    let Some(nats) = nats_or_skip() else { return };
    let mut cl = start(pg, nats);
    let gw = cl.gateway.base_url();
    let c = reqwest::Client::new();

    let (s, signup) = call(
        &c,
        Method::POST,
        format!("{gw}/api/auth/signup"),
        None,
        Some(json!({"name": "Grace", "email": "grace@example.com", "password": "compiler pioneer"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{signup}");
    let (s, login) = call(
        &c,
        Method::POST,
        format!("{gw}/api/auth/login"),
        None,
        Some(json!({"email": "grace@example.com", "password": "compiler pioneer"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let user = login["user"]["id"].as_str().unwrap().to_owned();
    let token = login["access_token"].as_str().unwrap().to_owned();
    let refresh = login["refresh_token"].as_str().unwrap().to_owned();
    let tasks = format!("{gw}/api/{user}/tasks");

    let (s, task) =
        call(&c, Method::POST, tasks.clone(), Some(&token), Some(json!({"title": "Ship it", "tags": ["work"]}))).await;
    assert_eq!(s, StatusCode::CREATED, "{task}");
    let id = task["id"].as_str().unwrap().to_owned();
    let (s, list) = call(&c, Method::GET, format!("{tasks}?tag=work"), Some(&token), None).await;
    assert_eq!((s, list["tasks"].as_array().unwrap().len()), (StatusCode::OK, 1));
    let (s, done) = call(&c, Method::PATCH, format!("{tasks}/{id}/complete"), Some(&token), None).await;
    assert_eq!((s, &done["completed"]), (StatusCode::OK, &json!(true)));

    // The audit process recorded each of those writes once (accounts and tasks → NATS → audit),
    // and the gateway serves the feed.
    let feed_types = || {
        let (c, url, token) = (c.clone(), format!("{gw}/api/{user}/activity"), token.clone());
        async move {
            let (s, feed) = call(&c, Method::GET, url, Some(&token), None).await;
            assert_eq!(s, StatusCode::OK, "{feed}");
            let mut types: Vec<String> =
                feed["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap().to_owned()).collect();
            types.sort();
            types
        }
    };
    let expected = ["task.completed", "task.created", "user.logged_in", "user.signed_up"];
    let start_wait = Instant::now();
    while feed_types().await.len() < expected.len() {
        assert!(start_wait.elapsed() < Duration::from_secs(30), "audit records: {:?}", feed_types().await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(feed_types().await, expected);

    // The tasks process dies: the gateway answers 503 quickly (no wait for the 5 s timeout),
    // the breaker opens, and /health names the service that is down.
    cl.tasks.kill();
    let started = Instant::now();
    for _ in 0..5 {
        let (s, body) = call(&c, Method::GET, tasks.clone(), Some(&token), None).await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["status"], 503);
    }
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "503s must not wait for the upstream timeout: {:?}",
        started.elapsed()
    );
    let metrics = c.get(format!("{gw}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"circuit_breaker_state{upstream="tasks"} 1"#), "breaker open:\n{metrics}");
    let health = c.get(format!("{gw}/health")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::SERVICE_UNAVAILABLE);
    let h: Value = health.json().await.unwrap();
    assert_eq!(h["services"]["tasks"]["ready"], false);
    assert_eq!(h["services"]["accounts"]["ready"], true);
    assert_eq!(h["services"]["audit"]["ready"], true);
    assert_eq!(h["services"]["assistant"]["ready"], true);
    // Accounts still works meanwhile.
    let (s, _) = call(&c, Method::GET, format!("{gw}/api/auth/me"), Some(&token), None).await;
    assert_eq!(s, StatusCode::OK);

    // Tasks comes back on the same address: the gateway recovers without a restart.
    cl.tasks = spawn_tasks(cl.tasks.addr(), &cl.tasks_db, &cl.accounts, &cl.nats);
    let mut recovered = false;
    for _ in 0..50 {
        let (s, _) = call(&c, Method::GET, format!("{tasks}/{id}"), Some(&token), None).await;
        if s == StatusCode::OK {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "gateway routes to the restarted tasks service");
    tokio::time::sleep(Duration::from_millis(1100)).await; // past the health answer cache
    assert_eq!(c.get(format!("{gw}/health")).send().await.unwrap().status(), StatusCode::OK);

    // A chat turn through the gateway: the assistant process calls tasks over HTTP as Grace.
    let (s, turn) = call(
        &c,
        Method::POST,
        format!("{gw}/api/{user}/chat"),
        Some(&token),
        Some(json!({"message": "add water the plants"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{turn}");
    assert_eq!(turn["tool_calls"][0]["name"], "add_task", "{turn}");
    let (_, list) = call(&c, Method::GET, format!("{tasks}?q=plants"), Some(&token), None).await;
    assert_eq!(list["tasks"][0]["title"], "water the plants", "{list}");
    let metrics = c.get(format!("{}/metrics", cl.assistant.base_url())).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"assistant_turns_total{provider="rules""#), "the turn is counted:\n{metrics}");

    // Refresh and logout through the gateway.
    let (s, pair) =
        call(&c, Method::POST, format!("{gw}/api/auth/refresh"), None, Some(json!({"refresh_token": refresh}))).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) =
        call(&c, Method::POST, format!("{gw}/api/auth/refresh"), None, Some(json!({"refresh_token": refresh}))).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "reused refresh token");
    let new_refresh = pair["refresh_token"].as_str().unwrap();
    let (s, _) =
        call(&c, Method::POST, format!("{gw}/api/auth/refresh"), None, Some(json!({"refresh_token": new_refresh})))
            .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "reuse revoked the whole family");
    let (s, login2) = call(
        &c,
        Method::POST,
        format!("{gw}/api/auth/login"),
        None,
        Some(json!({"email": "grace@example.com", "password": "compiler pioneer"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let t2 = login2["access_token"].as_str().unwrap();
    let grace = login2["user"]["id"].as_str().unwrap();
    let direct = format!("{}/api/{grace}/tasks", cl.tasks.base_url());
    assert_eq!(call(&c, Method::GET, direct.clone(), Some(t2), None).await.0, StatusCode::OK);
    let (s, _) = call(&c, Method::POST, format!("{gw}/api/auth/logout"), Some(t2), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    if cl.nats.redis.is_some() {
        // The logout happened in accounts; tasks, another process, refuses the access token
        // too (the revocation travelled through Redis), not only after it expires.
        let deadline = Instant::now() + Duration::from_secs(5);
        while call(&c, Method::GET, direct.clone(), Some(t2), None).await.0 != StatusCode::UNAUTHORIZED {
            assert!(Instant::now() < deadline, "tasks still accepts a logged-out token");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            call(&c, Method::GET, format!("{gw}/api/{grace}/tasks"), Some(t2), None).await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    let (s, _) = call(
        &c,
        Method::POST,
        format!("{gw}/api/auth/refresh"),
        None,
        Some(json!({"refresh_token": login2["refresh_token"]})),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

/// What must not change on the way through the gateway.
async fn snapshot(res: reqwest::Response) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let keep = ["content-type", "etag", "location", "www-authenticate", "retry-after", "idempotent-replayed"];
    let mut headers: Vec<(String, String)> = res
        .headers()
        .iter()
        .filter(|(k, _)| keep.contains(&k.as_str()))
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
        .collect();
    headers.sort();
    (res.status().as_u16(), headers, res.bytes().await.unwrap().to_vec())
}

/// method, path, JSON body, extra headers, the service to call directly
type Case<'a> = (Method, String, Option<Value>, Vec<(&'static str, &'static str)>, &'a ServiceProcess);

#[tokio::test]
async fn answers_are_byte_identical_through_the_gateway_and_direct() {
    let Some(pg) = pg_or_skip() else { return };
    let Some(nats) = nats_or_skip() else { return };
    let cl = start(pg, nats);
    let gw = cl.gateway.base_url();
    let c = reqwest::Client::new();
    let (_, signup) = call(
        &c,
        Method::POST,
        format!("{gw}/api/auth/signup"),
        None,
        Some(json!({"name": "Id", "email": "ident@example.com", "password": "same bytes please"})),
    )
    .await;
    let user = signup["user"]["id"].as_str().unwrap();
    let token = signup["access_token"].as_str().unwrap();
    let (_, task) =
        call(&c, Method::POST, format!("{gw}/api/{user}/tasks"), Some(token), Some(json!({"title": "t"}))).await;
    let id = task["id"].as_str().unwrap();

    // An idempotent create made once; below, its replays must look the same both ways.
    let first = c
        .post(format!("{gw}/api/{user}/tasks"))
        .bearer_auth(token)
        .header("idempotency-key", "k-1")
        .json(&json!({"title": "k"}))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    // The feed must hold still while it is read both ways: wait for its three records (signup,
    // two creates).
    let started = Instant::now();
    loop {
        let (s, feed) = call(&c, Method::GET, format!("{gw}/api/{user}/activity"), Some(token), None).await;
        if s == StatusCode::OK && feed["events"].as_array().unwrap().len() == 3 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "three activity records: {feed}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let cases: Vec<Case> = vec![
        (Method::GET, format!("/api/{user}/tasks/{id}"), None, vec![], &cl.tasks),
        (Method::GET, format!("/api/{user}/tasks?limit=0"), None, vec![], &cl.tasks),
        (Method::GET, format!("/api/{user}/tasks/00000000-0000-7000-8000-000000000000"), None, vec![], &cl.tasks),
        (
            Method::PUT,
            format!("/api/{user}/tasks/{id}"),
            Some(json!({"title": "u"})),
            vec![("if-match", "\"77\"")],
            &cl.tasks,
        ),
        (
            Method::POST,
            format!("/api/{user}/tasks"),
            Some(json!({"title": "k"})),
            vec![("idempotency-key", "k-1")],
            &cl.tasks,
        ),
        (Method::GET, "/api/auth/me".into(), None, vec![], &cl.accounts),
        (Method::GET, format!("/api/{user}/activity?limit=2"), None, vec![], &cl.audit),
        (Method::GET, format!("/api/{user}/activity?limit=0"), None, vec![], &cl.audit),
        (Method::GET, "/api/admin/audit".into(), None, vec![], &cl.audit),
        (Method::GET, "/api/admin/dead-letters/tasks".into(), None, vec![], &cl.tasks),
        (
            Method::POST,
            "/api/auth/signup".into(),
            Some(json!({"name": "x", "email": "bad", "password": "1"})),
            vec![],
            &cl.accounts,
        ),
    ];
    for (method, path, body, headers, direct) in cases {
        let mut snaps = Vec::new();
        for base in [gw.clone(), direct.base_url()] {
            let mut req = c.request(method.clone(), format!("{base}{path}")).bearer_auth(token);
            for (k, v) in &headers {
                req = req.header(*k, *v);
            }
            if let Some(b) = &body {
                req = req.json(b);
            }
            snaps.push(snapshot(req.send().await.unwrap()).await);
        }
        assert_eq!(snaps[0], snaps[1], "{method} {path}");
    }
}

#[tokio::test]
async fn rotating_the_signing_key_and_restarting_accounts_logs_nobody_out() {
    let Some(pg) = pg_or_skip() else { return };
    let Some(nats) = nats_or_skip() else { return };
    let mut cl = start(pg, nats);
    let gw = cl.gateway.base_url();
    let c = reqwest::Client::new();
    let (_, signup) = call(
        &c,
        Method::POST,
        format!("{gw}/api/auth/signup"),
        None,
        Some(json!({"name": "Rot", "email": "rot@example.com", "password": "keys come and go"})),
    )
    .await;
    let user = signup["user"]["id"].as_str().unwrap().to_owned();
    let old_token = signup["access_token"].as_str().unwrap().to_owned();
    let tasks = format!("{gw}/api/{user}/tasks");

    // Rotate while accounts is down, then start it again: it signs with the new key and keeps
    // publishing the previous one.
    let accounts_addr = cl.accounts.addr();
    cl.accounts.kill();
    let out = std::process::Command::new(bin())
        .args(["admin", "rotate-key"])
        .env("FLOTILLA_DATABASE_URL", &cl.accounts_db)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    cl.accounts = spawn_accounts(accounts_addr, &cl.accounts_db, &cl.nats);

    let jwks: Value = c.get(format!("{gw}/.well-known/jwks.json")).send().await.unwrap().json().await.unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2, "old and new key published");

    // The token signed before the rotation still works everywhere.
    let (s, _) = call(&c, Method::GET, tasks.clone(), Some(&old_token), None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = call(&c, Method::GET, format!("{gw}/api/auth/me"), Some(&old_token), None).await;
    assert_eq!(s, StatusCode::OK);

    // A token signed with the new key is accepted by the gateway and tasks, which had never
    // seen that key id (they fetch the JWKS again).
    let (s, login) = call(
        &c,
        Method::POST,
        format!("{gw}/api/auth/login"),
        None,
        Some(json!({"email": "rot@example.com", "password": "keys come and go"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let new_token = login["access_token"].as_str().unwrap();
    let (s, body) =
        call(&c, Method::POST, tasks.clone(), Some(new_token), Some(json!({"title": "after rotation"}))).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
}

#[test]
fn accounts_tasks_and_audit_refuse_to_start_without_the_event_bus() {
    for service in ["accounts", "tasks", "audit"] {
        let mut cmd = std::process::Command::new(bin());
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("FLOTILLA_")) {
            cmd.env_remove(k);
        }
        let out = cmd
            .arg(service)
            .env("FLOTILLA_LISTEN", addr().to_string())
            .env("FLOTILLA_DATABASE_URL", "sqlite::memory:")
            .env("FLOTILLA_ACCOUNTS_URL", "http://127.0.0.1:9")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{service}: configuration error exit code; stderr: {stderr}");
        let last = stderr.trim_end().lines().last().unwrap_or_default();
        assert!(
            last.starts_with("flotilla: invalid configuration: FLOTILLA_NATS_URL="),
            "{service}: one line naming the variable: {stderr}"
        );
    }
}

#[test]
fn the_gateway_refuses_to_start_without_the_audit_service() {
    let mut cmd = std::process::Command::new(bin());
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("FLOTILLA_")) {
        cmd.env_remove(k);
    }
    let out = cmd
        .arg("gateway")
        .env("FLOTILLA_LISTEN", addr().to_string())
        .env("FLOTILLA_ACCOUNTS_URL", "http://127.0.0.1:9")
        .env("FLOTILLA_TASKS_URL", "http://127.0.0.1:9")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "configuration error exit code; stderr: {stderr}");
    let last = stderr.trim_end().lines().last().unwrap_or_default();
    assert!(last.starts_with("flotilla: invalid configuration: FLOTILLA_AUDIT_URL="), "{stderr}");
}

/// An LLM that accepts connections and never answers: a turn sent to it is in flight until the
/// test kills the assistant. Returns its URL and a receiver that fires at the first request.
async fn silent_llm() -> (String, tokio::sync::oneshot::Receiver<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut tx = Some(tx);
        let mut held = Vec::new();
        while let Ok((mut conn, _)) = listener.accept().await {
            let mut buf = [0u8; 1024];
            // The request has arrived once its first bytes do.
            if tokio::io::AsyncReadExt::read(&mut conn, &mut buf).await.is_ok_and(|n| n > 0)
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(());
            }
            held.push(conn); // never answered, never closed
        }
    });
    (url, rx)
}

#[tokio::test]
async fn the_assistant_killed_mid_turn_loses_no_stored_message() {
    let Some(pg) = pg_or_skip() else { return };
    let Some(nats) = nats_or_skip() else { return };
    let cl = start(pg, nats);
    let gw = cl.gateway.base_url();
    let c = reqwest::Client::new();
    let (s, signup) = call(
        &c,
        Method::POST,
        format!("{gw}/api/auth/signup"),
        None,
        Some(json!({"name": "Kay", "email": "kay@example.com", "password": "turns survive crashes"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{signup}");
    let user = signup["user"]["id"].as_str().unwrap().to_owned();
    let token = signup["access_token"].as_str().unwrap().to_owned();

    // A second assistant, on its own database, whose model never answers.
    let (llm, asked) = silent_llm().await;
    let db = pg.create_database();
    let at = addr();
    let env = |provider: &str| {
        cl.nats.env(&[
            ("FLOTILLA_DATABASE_URL", db.clone()),
            ("FLOTILLA_ACCOUNTS_URL", cl.accounts.base_url()),
            ("FLOTILLA_TASKS_URL", cl.tasks.base_url()),
            ("FLOTILLA_ASSISTANT_PROVIDER", provider.to_owned()),
            ("FLOTILLA_OLLAMA_URL", llm.clone()),
            ("FLOTILLA_LLM_TIMEOUT_MS", "60000".to_owned()),
            ("FLOTILLA_REQUEST_TIMEOUT_MS", "120000".to_owned()),
        ])
    };
    let mut assistant = spawn("assistant", at, &env("ollama"), "/ready");
    let chat = format!("{}/api/{user}/chat", assistant.base_url());
    let turn = {
        let (c, chat, token) = (c.clone(), chat.clone(), token.clone());
        tokio::spawn(
            async move { c.post(chat).bearer_auth(token).json(&json!({"message": "add buy bread"})).send().await },
        )
    };
    tokio::time::timeout(Duration::from_secs(20), asked).await.expect("the turn reached the model").unwrap();
    assistant.kill(); // SIGKILL, mid-turn
    assert!(turn.await.unwrap().is_err(), "the client saw the connection drop, not an answer");

    // Restarted (offline provider now): the user's message is there, and the conversation goes on.
    let assistant = spawn("assistant", at, &env("rules"), "/ready");
    let base = assistant.base_url();
    let (s, list) = call(&c, Method::GET, format!("{base}/api/{user}/conversations"), Some(&token), None).await;
    assert_eq!(s, StatusCode::OK, "{list}");
    let convs = list["conversations"].as_array().unwrap();
    assert_eq!(convs.len(), 1, "{list}");
    let id = convs[0]["id"].as_str().unwrap();
    let (_, conv) = call(&c, Method::GET, format!("{base}/api/{user}/conversations/{id}"), Some(&token), None).await;
    let messages = conv["messages"].as_array().unwrap();
    assert_eq!(messages[0]["role"], "user", "{conv}");
    assert_eq!(messages[0]["content"], "add buy bread", "{conv}");
    let (s, next) =
        call(&c, Method::POST, chat, Some(&token), Some(json!({"conversation_id": id, "message": "add buy bread"})))
            .await;
    assert_eq!((s, &next["tool_calls"][0]["result"]["status"]), (StatusCode::OK, &json!("created")), "{next}");
}
