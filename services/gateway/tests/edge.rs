//! The gateway over real HTTP, in front of the real accounts, tasks and audit services (in
//! process, on SQLite): faithful pass-through, token checks at the edge, rate limits, CORS, security
//! headers, aggregated health.

use std::net::SocketAddr;

use flotilla_gateway::{Config, Upstream, Upstreams};
use flotilla_runtime::auth::AuthContext;
use flotilla_runtime::config::{Env, RuntimeConfig};
use flotilla_runtime::db::{Db, PoolSettings, sqlite_url_in};
use flotilla_runtime::http::Ops;
use reqwest::StatusCode;
use serde_json::{Value, json};

struct System {
    gateway: String,
    tasks_direct: String,
    tasks_db: Db,
    _dir: tempfile::TempDir,
}

async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(flotilla_runtime::server::serve(
        listener,
        app,
        std::time::Duration::from_secs(1),
        std::future::pending(),
    ));
    format!("http://{addr}")
}

async fn start(vars: &[(&str, &str)]) -> System {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::from_pairs(vars.iter().copied());
    let rt = RuntimeConfig::from_env(&env).unwrap();
    let settings = PoolSettings::default();
    let accounts_db = Db::open_and_migrate(
        "accounts",
        &sqlite_url_in(dir.path(), "accounts"),
        flotilla_accounts::MIGRATIONS,
        settings,
    )
    .await
    .unwrap();
    let tasks_db =
        Db::open_and_migrate("tasks", &sqlite_url_in(dir.path(), "tasks"), flotilla_tasks::MIGRATIONS, settings)
            .await
            .unwrap();
    let audit_db =
        Db::open_and_migrate("audit", &sqlite_url_in(dir.path(), "audit"), flotilla_audit::MIGRATIONS, settings)
            .await
            .unwrap();
    let auth = AuthContext::from_env(&env);
    let accounts =
        flotilla_accounts::app(flotilla_accounts::Config::from_env(&env).unwrap(), &rt, accounts_db, auth.clone())
            .await
            .unwrap();
    let tasks = flotilla_tasks::app(&rt, tasks_db.clone(), auth.clone());
    let tasks_direct = serve(tasks.clone()).await;
    let audit = flotilla_audit::app(&rt, audit_db, auth.clone());
    let assistant_db = Db::open_and_migrate(
        "assistant",
        &sqlite_url_in(dir.path(), "assistant"),
        flotilla_assistant::MIGRATIONS,
        settings,
    )
    .await
    .unwrap();
    let assistant_cfg = flotilla_assistant::Config::from_env(&env).unwrap();
    let assistant =
        flotilla_assistant::app(&assistant_cfg, &rt, assistant_db, auth.clone(), Upstream::InProcess(tasks.clone()));
    let upstreams = Upstreams {
        accounts: Upstream::InProcess(accounts),
        tasks: Upstream::InProcess(tasks),
        audit: Upstream::InProcess(audit),
        assistant: Upstream::InProcess(assistant),
        web: None,
    };
    let doc = flotilla_gateway::openapi();
    let gateway =
        serve(flotilla_gateway::app(Config::from_env(&env).unwrap(), &rt, auth, upstreams, Ops::new(), &doc)).await;
    System { gateway, tasks_direct, tasks_db, _dir: dir }
}

/// Signs up a user through the gateway; returns (user id, access token).
async fn signup(base: &str, email: &str) -> (String, String) {
    let res = reqwest::Client::new()
        .post(format!("{base}/api/auth/signup"))
        .json(&json!({"name": "Test", "email": email, "password": "correct horse battery"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let v: Value = res.json().await.unwrap();
    (v["user"]["id"].as_str().unwrap().to_owned(), v["access_token"].as_str().unwrap().to_owned())
}

/// The parts of a response that must not change on the way through the gateway.
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

/// method, path, JSON body, extra headers
type Case = (reqwest::Method, String, Option<Value>, Vec<(&'static str, &'static str)>);

#[tokio::test]
async fn responses_pass_through_unchanged() {
    let sys = start(&[]).await;
    let (user, token) = signup(&sys.gateway, "pass@example.com").await;
    let c = reqwest::Client::new();
    let create = c
        .post(format!("{}/api/{user}/tasks", sys.gateway))
        .bearer_auth(&token)
        .json(&json!({"title": "through the gateway"}))
        .send()
        .await
        .unwrap();
    assert_eq!(create.status(), StatusCode::CREATED);
    let task: Value = create.json().await.unwrap();
    let id = task["id"].as_str().unwrap();

    // Each request is sent to both; everything but hop-level headers must be identical.
    let cases: Vec<Case> = vec![
        (reqwest::Method::GET, format!("/api/{user}/tasks/{id}"), None, vec![]),
        (reqwest::Method::GET, format!("/api/{user}/tasks?limit=5"), None, vec![]),
        (reqwest::Method::GET, format!("/api/{user}/tasks?limit=500"), None, vec![]),
        (reqwest::Method::GET, format!("/api/{user}/tasks/00000000-0000-7000-8000-000000000000"), None, vec![]),
        (reqwest::Method::GET, "/api/someone-else/tasks".to_owned(), None, vec![]),
        (reqwest::Method::POST, format!("/api/{user}/tasks"), Some(json!({"title": ""})), vec![]),
        (
            reqwest::Method::PATCH,
            format!("/api/{user}/tasks/{id}"),
            Some(json!({"title": "x"})),
            vec![("if-match", "\"999\"")],
        ),
    ];
    for (method, path, body, headers) in cases {
        let mut snaps = Vec::new();
        for base in [&sys.gateway, &sys.tasks_direct] {
            let mut req = c.request(method.clone(), format!("{base}{path}")).bearer_auth(&token);
            for (k, v) in &headers {
                req = req.header(*k, *v);
            }
            if let Some(b) = &body {
                req = req.json(b);
            }
            snaps.push(snapshot(req.send().await.unwrap()).await);
        }
        assert_eq!(snaps[0], snaps[1], "{method} {path} differs through the gateway");
    }
    // The task was not changed by the stale write above.
    let now: Value = c
        .get(format!("{}/api/{user}/tasks/{id}", sys.gateway))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(now["title"], "through the gateway");
    assert_eq!(now["version"], task["version"]);
}

#[tokio::test]
async fn tokens_are_checked_at_the_edge() {
    let sys = start(&[]).await;
    let (user, token) = signup(&sys.gateway, "edge@example.com").await;
    let c = reqwest::Client::new();
    for auth in [None, Some("Bearer nonsense"), Some(&*format!("Bearer {token}x"))] {
        let mut req = c.get(format!("{}/api/{user}/tasks", sys.gateway));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{auth:?}");
        assert!(res.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer"));
        assert_eq!(res.headers()["content-type"], "application/problem+json");
    }
    let ok = c.get(format!("{}/api/{user}/tasks", sys.gateway)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    // Public routes need no token.
    let jwks = c.get(format!("{}/.well-known/jwks.json", sys.gateway)).send().await.unwrap();
    assert_eq!(jwks.status(), StatusCode::OK);
    let unknown = c.get(format!("{}/api/nothing/here/at/all", sys.gateway)).send().await.unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert_eq!(unknown.headers()["content-type"], "application/problem+json");
}

#[tokio::test]
async fn per_ip_limit_answers_429_with_headers_and_changes_nothing() {
    let sys = start(&[("FLOTILLA_RATE_LIMIT_PER_IP", "4"), ("FLOTILLA_RATE_LIMIT_PER_USER", "0")]).await;
    let (user, token) = signup(&sys.gateway, "ip@example.com").await; // request 1
    let c = reqwest::Client::new();
    let mut last = None;
    for _ in 0..3 {
        let res = c.get(format!("{}/api/{user}/tasks", sys.gateway)).bearer_auth(&token).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        last = Some(res.headers()["ratelimit-remaining"].to_str().unwrap().to_owned());
    }
    assert_eq!(last.as_deref(), Some("0"));
    let limited = c
        .post(format!("{}/api/{user}/tasks", sys.gateway))
        .bearer_auth(&token)
        .json(&json!({"title": "must not be created"}))
        .send()
        .await
        .unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.headers()["ratelimit-limit"], "4");
    assert_eq!(limited.headers()["ratelimit-remaining"], "0");
    let retry: u64 = limited.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
    assert_eq!(limited.headers()["content-type"], "application/problem+json");
    // Nothing was created: ask the tasks service directly (the gateway would still say 429).
    let list: Value = c
        .get(format!("{}/api/{user}/tasks", sys.tasks_direct))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["tasks"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn per_user_limit_is_separate_from_the_ip_limit() {
    let sys = start(&[("FLOTILLA_RATE_LIMIT_PER_IP", "0"), ("FLOTILLA_RATE_LIMIT_PER_USER", "2")]).await;
    let (alice, alice_token) = signup(&sys.gateway, "alice@example.com").await;
    let (bob, bob_token) = signup(&sys.gateway, "bob@example.com").await;
    let c = reqwest::Client::new();
    let get = |user: &str, token: &str| {
        c.get(format!("{}/api/{user}/tasks", sys.gateway)).bearer_auth(token.to_owned()).send()
    };
    assert_eq!(get(&alice, &alice_token).await.unwrap().status(), StatusCode::OK);
    assert_eq!(get(&alice, &alice_token).await.unwrap().status(), StatusCode::OK);
    let third = get(&alice, &alice_token).await.unwrap();
    assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(third.headers().contains_key("retry-after"));
    assert_eq!(get(&bob, &bob_token).await.unwrap().status(), StatusCode::OK, "bob has his own budget");
}

#[tokio::test]
async fn cors_allows_only_listed_origins() {
    let sys = start(&[("FLOTILLA_CORS_ORIGINS", "https://app.example.com")]).await;
    let c = reqwest::Client::new();
    let preflight = |origin: &'static str| {
        c.request(reqwest::Method::OPTIONS, format!("{}/api/auth/me", sys.gateway))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .send()
    };
    let ok = preflight("https://app.example.com").await.unwrap();
    assert_eq!(ok.headers()["access-control-allow-origin"], "https://app.example.com");
    assert!(!ok.headers().contains_key("access-control-allow-credentials"));
    let evil = preflight("https://evil.example").await.unwrap();
    assert!(!evil.headers().contains_key("access-control-allow-origin"));
    let simple = c
        .get(format!("{}/.well-known/jwks.json", sys.gateway))
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(simple.headers()["access-control-allow-origin"], "https://app.example.com");
}

#[tokio::test]
async fn security_headers_and_request_ids_on_every_response() {
    let sys = start(&[]).await;
    let c = reqwest::Client::new();
    for path in ["/health", "/api/auth/me", "/no/such/route", "/.well-known/jwks.json"] {
        let res = c.get(format!("{}{path}", sys.gateway)).send().await.unwrap();
        let h = res.headers();
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        assert!(h["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"), "{path}");
        assert!(!h["x-request-id"].is_empty(), "{path}");
    }
    // A caller's request id is kept (so logs of the gateway and the service line up).
    let res = c.get(format!("{}/health", sys.gateway)).header("x-request-id", "trace-me-123").send().await.unwrap();
    assert_eq!(res.headers()["x-request-id"], "trace-me-123");
    // The JWKS keeps its own cache policy; API answers are not cached.
    let jwks = c.get(format!("{}/.well-known/jwks.json", sys.gateway)).send().await.unwrap();
    assert!(jwks.headers()["cache-control"].to_str().unwrap().contains("max-age"));
    let api = c.get(format!("{}/api/auth/me", sys.gateway)).send().await.unwrap();
    assert_eq!(api.headers()["cache-control"], "no-store");
}

#[tokio::test]
async fn aggregated_health_reports_each_service_and_fails_when_one_is_down() {
    let sys = start(&[]).await;
    let c = reqwest::Client::new();
    let res = c.get(format!("{}/health", sys.gateway)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["status"], "ok");
    assert_eq!(v["services"].as_object().unwrap().len(), 4, "{v}");
    for svc in ["accounts", "tasks", "audit", "assistant"] {
        assert_eq!(v["services"][svc]["ready"], true, "{v}");
        assert!(v["services"][svc]["latency_ms"].as_f64().unwrap() >= 0.0);
    }
    // The gateway's own liveness and readiness do not depend on that report.
    assert_eq!(c.get(format!("{}/livez", sys.gateway)).send().await.unwrap().status(), StatusCode::OK);

    // Take the tasks database away: the aggregated health must say so, with 503.
    sys.tasks_db.close().await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await; // past the 1 s answer cache
    let res = c.get(format!("{}/health", sys.gateway)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["status"], "unavailable");
    assert_eq!(v["services"]["tasks"]["ready"], false);
    assert_eq!(v["services"]["accounts"]["ready"], true);
    assert_eq!(v["services"]["audit"]["ready"], true);
    assert_eq!(c.get(format!("{}/livez", sys.gateway)).send().await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn oversized_bodies_are_refused_before_reaching_a_service() {
    let sys = start(&[("FLOTILLA_BODY_LIMIT_BYTES", "2048")]).await;
    let big = json!({"name": "x".repeat(5000), "email": "big@example.com", "password": "correct horse battery"});
    let res = reqwest::Client::new().post(format!("{}/api/auth/signup", sys.gateway)).json(&big).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    // No account was made.
    let login = reqwest::Client::new()
        .post(format!("{}/api/auth/login", sys.gateway))
        .json(&json!({"email": "big@example.com", "password": "correct horse battery"}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn unlisted_methods_answer_405_and_preflights_work_on_every_route() {
    let sys = start(&[("FLOTILLA_CORS_ORIGINS", "https://app.example.com")]).await;
    let c = reqwest::Client::new();
    let some = "0190a0b0-0000-7000-8000-000000000000";
    for (method, path) in [
        (reqwest::Method::GET, "/api/auth/signup".to_owned()),
        (reqwest::Method::DELETE, format!("/api/{some}/tasks")),
        (reqwest::Method::POST, format!("/api/{some}/tasks/{some}")),
        (reqwest::Method::PUT, "/api/auth/me".to_owned()),
    ] {
        let res = c.request(method.clone(), format!("{}{path}", sys.gateway)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert_eq!(res.headers()["content-type"], "application/problem+json");
        assert!(res.headers().contains_key("allow"), "{method} {path} says what is allowed");
    }
    // Preflights are answered by the CORS layer on public and protected routes alike.
    for path in ["/api/auth/signup".to_owned(), format!("/api/{some}/tasks/{some}/complete")] {
        let res = c
            .request(reqwest::Method::OPTIONS, format!("{}{path}", sys.gateway))
            .header("origin", "https://app.example.com")
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "{path}: {}", res.status());
        assert_eq!(res.headers()["access-control-allow-origin"], "https://app.example.com", "{path}");
    }
}
