//! Events in embedded mode: the real binary (in-process bus, SQLite files) driven over HTTP;
//! what the consumers and the reminder scheduler did is read back from the API (the activity
//! feed and the audit log of the audit consumer among them) and from the tasks database file.

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

/// The whole activity feed of `user` through the gateway (every page), newest first.
async fn activity(c: &reqwest::Client, base: &str, user: &str, token: &str) -> Vec<Value> {
    let mut events = Vec::new();
    let mut url = format!("{base}/api/{user}/activity?limit=100");
    loop {
        let (s, page) = call(c, Method::GET, url, Some(token), None).await;
        assert_eq!(s, StatusCode::OK, "{page}");
        events.extend(page["events"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(cursor) => url = format!("{base}/api/{user}/activity?limit=100&cursor={cursor}"),
            None => return events,
        }
    }
}

fn types_of(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_write_is_recorded_once_in_the_activity_feed_and_the_audit_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut admin_create = std::process::Command::new(bin());
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("FLOTILLA_")) {
        admin_create.env_remove(k);
    }
    let out = admin_create
        .args(["admin", "create", "--email", "auditor@example.com", "--name", "Auditor"])
        .env("FLOTILLA_DATA_DIR", dir.path())
        .env("FLOTILLA_ADMIN_PASSWORD", "audits every event")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let p = start(dir.path());
    let base = p.base_url();
    let c = reqwest::Client::new();

    // Each write, then its record in the feed (waiting for it keeps the expected order exact:
    // the accounts and tasks relays publish independently).
    let mut expected: Vec<&str> = Vec::new();
    let recorded = |user: String, token: String, n: usize| {
        let (c, base) = (c.clone(), base.clone());
        async move {
            eventually(Duration::from_secs(10), &format!("{n} activity records"), || async {
                activity(&c, &base, &user, &token).await.len() >= n
            })
            .await;
        }
    };

    let (user, _) = signup(&c, &base, "audited@example.com").await;
    expected.push("user.signed_up");
    let (s, login) = call(
        &c,
        Method::POST,
        format!("{base}/api/auth/login"),
        None,
        Some(json!({"email": "audited@example.com", "password": "events flow through"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{login}");
    expected.push("user.logged_in");
    let token = login["access_token"].as_str().unwrap().to_owned();
    let t = Some(token.as_str());
    recorded(user.clone(), token.clone(), expected.len()).await;

    let tasks = format!("{base}/api/{user}/tasks");
    let (s, task) = call(&c, Method::POST, tasks.clone(), t, Some(json!({"title": "Audit me"}))).await;
    assert_eq!(s, StatusCode::CREATED, "{task}");
    let task_id = task["id"].as_str().unwrap().to_owned();
    expected.push("task.created");
    recorded(user.clone(), token.clone(), expected.len()).await;
    let (s, _) = call(&c, Method::PATCH, format!("{tasks}/{task_id}"), t, Some(json!({"title": "Audited"}))).await;
    assert_eq!(s, StatusCode::OK);
    expected.push("task.updated");
    recorded(user.clone(), token.clone(), expected.len()).await;
    let (s, _) = call(&c, Method::PATCH, format!("{tasks}/{task_id}/complete"), t, None).await;
    assert_eq!(s, StatusCode::OK);
    expected.push("task.completed");
    recorded(user.clone(), token.clone(), expected.len()).await;
    let (s, _) = call(&c, Method::DELETE, format!("{tasks}/{task_id}"), t, None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    expected.push("task.deleted");
    recorded(user.clone(), token.clone(), expected.len()).await;

    // Exactly one record per write, newest first, even after time for duplicates to show up.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let feed = activity(&c, &base, &user, &token).await;
    expected.reverse();
    assert_eq!(types_of(&feed), expected, "{feed:#?}");
    let ids: std::collections::BTreeSet<&str> = feed.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), feed.len(), "one record per event id");
    for e in &feed[..4] {
        assert_eq!(e["subject"], task_id.as_str(), "{e}");
        assert_eq!(e["source"], "/flotilla/tasks");
    }
    assert_eq!(feed[5]["data"]["email"], "audited@example.com", "the signup's data: {}", feed[5]);

    // Another user sees none of it: 403 on the path, and their own feed holds only their events.
    let (other, other_token) = signup(&c, &base, "nosy@example.com").await;
    let (s, body) = call(&c, Method::GET, format!("{base}/api/{user}/activity"), Some(&other_token), None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    eventually(Duration::from_secs(10), "the other user's signup recorded", || async {
        !activity(&c, &base, &other, &other_token).await.is_empty()
    })
    .await;
    let theirs = activity(&c, &base, &other, &other_token).await;
    assert_eq!(types_of(&theirs), ["user.signed_up"], "{theirs:#?}");
    assert!(theirs.iter().all(|e| !ids.contains(e["id"].as_str().unwrap())));
    // Nor can they search the audit log.
    let (s, _) = call(&c, Method::GET, format!("{base}/api/admin/audit"), Some(&other_token), None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // The admin finds the user's task.created in the audit log.
    let (s, admin) = call(
        &c,
        Method::POST,
        format!("{base}/api/auth/login"),
        None,
        Some(json!({"email": "auditor@example.com", "password": "audits every event"})),
    )
    .await;
    assert_eq!((s, &admin["user"]["role"]), (StatusCode::OK, &json!("admin")), "{admin}");
    let admin_token = admin["access_token"].as_str().unwrap();
    let (s, found) = call(
        &c,
        Method::GET,
        format!("{base}/api/admin/audit?user_id={user}&type=task.created"),
        Some(admin_token),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{found}");
    let found = found["events"].as_array().unwrap();
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!((&found[0]["subject"], &found[0]["user_id"]), (&json!(task_id), &json!(user)));
    assert_eq!(found[0]["id"], feed[3]["id"], "the same record as in the feed");

    // The consumers' dead-letter endpoints are routed (and empty: nothing failed).
    for consumer in ["audit", "tasks"] {
        let url = format!("{base}/api/admin/dead-letters/{consumer}");
        let (s, body) = call(&c, Method::GET, url.clone(), Some(admin_token), None).await;
        assert_eq!((s, &body["dead_letters"]), (StatusCode::OK, &json!([])), "{consumer}: {body}");
        let (s, _) = call(&c, Method::GET, url, Some(&token), None).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{consumer}: admins only");
        let replay = format!("{base}/api/admin/dead-letters/{consumer}/00000000-0000-7000-8000-000000000000/replay");
        let (s, body) = call(&c, Method::POST, replay, Some(admin_token), None).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{consumer}: {body}");
    }
}
