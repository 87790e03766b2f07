//! Events in embedded mode: the real binary (in-process bus, SQLite files) driven over HTTP;
//! what the consumers and the reminder scheduler did is read back from the API and from the
//! tasks database file.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use flotilla_runtime::db::{Db, PoolSettings, sqlite_url_in};
use flotilla_runtime::time::{format_ms, now_ms};
use flotilla_testkit::{ServiceProcess, free_port};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_flotilla"))
}

fn start(data_dir: &Path) -> ServiceProcess {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let env = vec![
        ("FLOTILLA_LISTEN", addr.to_string()),
        ("FLOTILLA_DATA_DIR", data_dir.display().to_string()),
        ("FLOTILLA_LOG_FORMAT", "json".to_owned()),
        ("FLOTILLA_REMINDER_INTERVAL_MS", "200".to_owned()),
    ];
    let mut p = ServiceProcess::spawn(bin(), &[], &env, addr).expect("spawn flotilla");
    p.wait_ready("/health", Duration::from_secs(30)).expect("flotilla becomes ready");
    p
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
    let res = req.send().await.expect("request reaches flotilla");
    let status = res.status();
    let bytes = res.bytes().await.unwrap();
    (status, if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() })
}

async fn signup(c: &reqwest::Client, base: &str, email: &str) -> (String, String) {
    let (s, body) = call(
        c,
        Method::POST,
        format!("{base}/api/auth/signup"),
        None,
        Some(json!({"name": "Events", "email": email, "password": "events flow through"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    (body["user"]["id"].as_str().unwrap().to_owned(), body["access_token"].as_str().unwrap().to_owned())
}

/// Polls `check` every 50 ms until it holds, for up to `timeout`.
async fn eventually<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn scalar(db: &Db, sql: &'static str, bind: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(sql).bind(bind.to_owned()).fetch_one(db.read()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn recurrence_reminders_and_account_deletion_flow_through_the_in_process_bus() {
    let dir = tempfile::tempdir().unwrap();
    let p = start(dir.path());
    let base = p.base_url();
    let c = reqwest::Client::new();
    let tasks_db =
        Db::open("tasks", &sqlite_url_in(dir.path(), "tasks"), flotilla_tasks::MIGRATIONS, PoolSettings::default())
            .unwrap();

    let (user, token) = signup(&c, &base, "flow@example.com").await;
    let (other, other_token) = signup(&c, &base, "bystander@example.com").await;
    let t = Some(token.as_str());
    let tasks = format!("{base}/api/{user}/tasks");

    // Completing a daily task creates the next occurrence, due a day later, exactly once.
    let (s, first) = call(
        &c,
        Method::POST,
        tasks.clone(),
        t,
        Some(json!({"title": "Stretch", "tags": ["health"], "due_at": "2030-04-01T07:00:00Z",
                    "recurrence": {"freq": "daily", "interval": 1}})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{first}");
    let first_id = first["id"].as_str().unwrap().to_owned();
    let (s, done) = call(&c, Method::PATCH, format!("{tasks}/{first_id}/complete"), t, None).await;
    assert_eq!((s, &done["completed"]), (StatusCode::OK, &json!(true)));
    let pending = || {
        let (c, url, token) = (c.clone(), format!("{tasks}?status=pending"), token.clone());
        async move { call(&c, Method::GET, url, Some(&token), None).await.1["tasks"].as_array().unwrap().clone() }
    };
    eventually(Duration::from_secs(10), "the next occurrence", || async { !pending().await.is_empty() }).await;
    tokio::time::sleep(Duration::from_millis(800)).await; // time for a duplicate to show up
    let next = pending().await;
    assert_eq!(next.len(), 1, "exactly one next occurrence: {next:?}");
    assert_eq!(next[0]["title"], "Stretch");
    assert_eq!(next[0]["due_at"], "2030-04-02T07:00:00.000Z");
    assert_eq!(next[0]["tags"], json!(["health"]));
    assert_eq!(next[0]["recurrence"], json!({"freq": "daily", "interval": 1}));

    // A reminder one second ahead is emitted once, at its time.
    let remind_at = now_ms() + 1000;
    let (s, reminded) =
        call(&c, Method::POST, tasks.clone(), t, Some(json!({"title": "Call mum", "remind_at": format_ms(remind_at)})))
            .await;
    assert_eq!(s, StatusCode::CREATED, "{reminded}");
    let reminded_id = reminded["id"].as_str().unwrap().to_owned();
    eventually(Duration::from_secs(10), "reminded_at set", || async {
        scalar(&tasks_db, "SELECT COUNT(*) FROM tasks WHERE id = $1 AND reminded_at IS NOT NULL", &reminded_id).await
            == 1
    })
    .await;
    let at: i64 = sqlx::query_scalar("SELECT reminded_at FROM tasks WHERE id = $1")
        .bind(&reminded_id)
        .fetch_one(tasks_db.read())
        .await
        .unwrap();
    assert!(at >= remind_at, "not before remind_at");
    tokio::time::sleep(Duration::from_millis(800)).await; // several more scheduler ticks
    let reminder_events =
        r#"SELECT COUNT(*) FROM outbox WHERE type = 'task.reminder_due' AND payload LIKE '%' || $1 || '%'"#;
    assert_eq!(scalar(&tasks_db, reminder_events, &reminded_id).await, 1, "one task.reminder_due");
    eventually(Duration::from_secs(10), "outbox drained", || async {
        scalar(&tasks_db, "SELECT COUNT(*) FROM outbox WHERE published_at IS NULL AND id <> $1", "").await == 0
    })
    .await;

    // The bystander's task survives the deletion of the other account.
    let (s, _) =
        call(&c, Method::POST, format!("{base}/api/{other}/tasks"), Some(&other_token), Some(json!({"title": "Mine"})))
            .await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(scalar(&tasks_db, "SELECT COUNT(*) FROM tasks WHERE user_id = $1", &user).await, 3);

    let (s, _) = call(&c, Method::DELETE, format!("{base}/api/auth/me"), t, None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    eventually(Duration::from_secs(10), "the deleted user's tasks gone", || async {
        scalar(&tasks_db, "SELECT COUNT(*) FROM tasks WHERE user_id = $1", &user).await == 0
    })
    .await;
    assert_eq!(scalar(&tasks_db, "SELECT COUNT(*) FROM task_tags WHERE user_id = $1", &user).await, 0);
    assert_eq!(scalar(&tasks_db, "SELECT COUNT(*) FROM tasks WHERE user_id = $1", &other).await, 1);
    let deleted = "SELECT COUNT(*) FROM outbox WHERE type = 'task.deleted' AND payload LIKE '%' || $1 || '%'";
    assert_eq!(scalar(&tasks_db, deleted, &user).await, 3, "one task.deleted per task");

    // The bus metrics are exported.
    let metrics = c.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    use flotilla_events::metrics_names::{EVENT_BUS_CONSUMED_TOTAL, EVENT_BUS_PUBLISHED_TOTAL, OUTBOX_PENDING};
    for name in [EVENT_BUS_PUBLISHED_TOTAL, EVENT_BUS_CONSUMED_TOTAL, OUTBOX_PENDING] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
    tasks_db.close().await;
}
