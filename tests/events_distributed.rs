//! Events in distributed mode: accounts, tasks, audit and the gateway as separate processes on a
//! throwaway PostgreSQL, publishing to (and audit consuming from) a throwaway nats-server
//! (JetStream).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use flotilla_events::{Event, NatsBus};
use flotilla_runtime::db::{Db, PoolSettings};
use flotilla_testkit::nats::nats_or_skip;
use flotilla_testkit::{ServiceProcess, free_port, pg_or_skip};
use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_flotilla"))
}

fn addr() -> SocketAddr {
    format!("127.0.0.1:{}", free_port()).parse().unwrap()
}

fn spawn(service: &str, env: &[(&str, String)]) -> ServiceProcess {
    spawn_at(service, addr(), env)
}

fn spawn_at(service: &str, at: SocketAddr, env: &[(&str, String)]) -> ServiceProcess {
    let mut all = vec![("FLOTILLA_LISTEN", at.to_string()), ("FLOTILLA_LOG_FORMAT", "json".to_owned())];
    all.extend(env.iter().cloned());
    let mut p = ServiceProcess::spawn(bin(), &[service], &all, at).expect("spawn");
    p.wait_ready("/ready", Duration::from_secs(30)).unwrap_or_else(|e| panic!("{service} not ready: {e}"));
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
    let res = req.send().await.expect("request reaches the gateway");
    let status = res.status();
    let bytes = res.bytes().await.unwrap();
    (status, if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() })
}

async fn eventually<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn ready_status(c: &reqwest::Client, service: &ServiceProcess) -> (StatusCode, String) {
    let res = c.get(format!("{}/ready", service.base_url())).send().await.unwrap();
    (res.status(), res.text().await.unwrap())
}

/// Every event on `subject` in the FLOTILLA_EVENTS stream, read with a throwaway consumer.
async fn stream_events(bus: &NatsBus, subject: &str) -> Vec<Event> {
    let stream = bus.jetstream().get_stream("FLOTILLA_EVENTS").await.unwrap();
    let consumer = stream
        .create_consumer(pull::Config {
            filter_subject: subject.to_owned(),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::None,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut events = Vec::new();
    loop {
        let mut batch = consumer.fetch().max_messages(500).messages().await.unwrap();
        let mut got = 0;
        while let Some(msg) = batch.next().await {
            let msg = msg.unwrap();
            events.push(Event::from_json(&msg.payload).unwrap());
            got += 1;
        }
        if got == 0 {
            return events;
        }
    }
}

/// The whole activity feed of `user` through the gateway (every page), newest first.
async fn activity(c: &reqwest::Client, gw: &str, user: &str, token: &str) -> Vec<Value> {
    let mut events = Vec::new();
    let mut url = format!("{gw}/api/{user}/activity?limit=100");
    loop {
        let (s, page) = call(c, Method::GET, url, Some(token), None).await;
        assert_eq!(s, StatusCode::OK, "{page}");
        events.extend(page["events"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(cursor) => url = format!("{gw}/api/{user}/activity?limit=100&cursor={cursor}"),
            None => return events,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn recurrence_and_a_nats_outage_through_the_gateway() {
    let Some(pg) = pg_or_skip() else { return };
    let Some(nats) = nats_or_skip() else { return };
    let (accounts_url, tasks_url, audit_url) = (pg.create_database(), pg.create_database(), pg.create_database());
    let accounts = spawn("accounts", &[("FLOTILLA_DATABASE_URL", accounts_url), ("FLOTILLA_NATS_URL", nats.url())]);
    let tasks_env = [
        ("FLOTILLA_DATABASE_URL", tasks_url.clone()),
        ("FLOTILLA_ACCOUNTS_URL", accounts.base_url()),
        ("FLOTILLA_NATS_URL", nats.url()),
    ];
    let mut tasks = spawn("tasks", &tasks_env);
    let audit = spawn(
        "audit",
        &[
            ("FLOTILLA_DATABASE_URL", audit_url),
            ("FLOTILLA_ACCOUNTS_URL", accounts.base_url()),
            ("FLOTILLA_NATS_URL", nats.url()),
        ],
    );
    let assistant = spawn(
        "assistant",
        &[
            ("FLOTILLA_DATABASE_URL", pg.create_database()),
            ("FLOTILLA_ACCOUNTS_URL", accounts.base_url()),
            ("FLOTILLA_TASKS_URL", tasks.base_url()),
            ("FLOTILLA_NATS_URL", nats.url()),
        ],
    );
    let gateway = spawn(
        "gateway",
        &[
            ("FLOTILLA_ACCOUNTS_URL", accounts.base_url()),
            ("FLOTILLA_TASKS_URL", tasks.base_url()),
            ("FLOTILLA_AUDIT_URL", audit.base_url()),
            ("FLOTILLA_ASSISTANT_URL", assistant.base_url()),
        ],
    );
    let gw = gateway.base_url();
    let c = reqwest::Client::new();
    let tasks_db = Db::open("tasks", &tasks_url, flotilla_tasks::MIGRATIONS, PoolSettings::default()).unwrap();
    let pending_rows = || async {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM outbox WHERE published_at IS NULL")
            .fetch_one(tasks_db.read())
            .await
            .unwrap()
    };

    let (s, signup) = call(
        &c,
        Method::POST,
        format!("{gw}/api/auth/signup"),
        None,
        Some(json!({"name": "Nat", "email": "nat@example.com", "password": "jet stream ahoy"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{signup}");
    let user = signup["user"]["id"].as_str().unwrap().to_owned();
    let token = signup["access_token"].as_str().unwrap().to_owned();
    let t = Some(token.as_str());
    let list = format!("{gw}/api/{user}/tasks");

    // Recurrence across processes: task.completed goes out through NATS and back into tasks.
    let (s, first) = call(
        &c,
        Method::POST,
        list.clone(),
        t,
        Some(json!({"title": "Standup", "due_at": "2030-09-30T09:00:00Z", "recurrence": {"freq": "daily", "interval": 1}})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{first}");
    let (s, _) = call(&c, Method::PATCH, format!("{list}/{}/complete", first["id"].as_str().unwrap()), t, None).await;
    assert_eq!(s, StatusCode::OK);
    let pending = || {
        let (c, url, token) = (c.clone(), format!("{list}?status=pending"), token.clone());
        async move { call(&c, Method::GET, url, Some(&token), None).await.1["tasks"].as_array().unwrap().clone() }
    };
    eventually(Duration::from_secs(30), "the next occurrence", || async { !pending().await.is_empty() }).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let next = pending().await;
    assert_eq!(next.len(), 1, "exactly one next occurrence: {next:?}");
    assert_eq!(next[0]["due_at"], "2030-10-01T09:00:00.000Z");

    // NATS goes away: /ready of tasks says so, and creates keep succeeding into the outbox.
    nats.stop();
    eventually(Duration::from_secs(15), "tasks not ready without the bus", || async {
        let (s, body) = ready_status(&c, &tasks).await;
        s == StatusCode::SERVICE_UNAVAILABLE && body.contains("event_bus")
    })
    .await;
    let mut created = Vec::new();
    for i in 0..20 {
        let (s, task) =
            call(&c, Method::POST, list.clone(), t, Some(json!({"title": format!("during outage {i}")}))).await;
        assert_eq!(s, StatusCode::CREATED, "{task}");
        created.push(task["id"].as_str().unwrap().to_owned());
    }
    assert!(pending_rows().await >= 20, "the events wait in the outbox");

    // The tasks process is killed between commit and publish: its events are committed but
    // were never published. A new process on the same database publishes them, once each.
    let tasks_addr = tasks.addr();
    tasks.kill();
    nats.restart();
    let tasks = spawn_at("tasks", tasks_addr, &tasks_env);
    eventually(Duration::from_secs(60), "the outbox drained", || async { pending_rows().await == 0 }).await;
    eventually(Duration::from_secs(15), "tasks ready again", || async {
        ready_status(&c, &tasks).await.0 == StatusCode::OK
    })
    .await;

    // Each task.created is in JetStream exactly once.
    let bus = NatsBus::connect(&nats.url()).await.unwrap();
    let events = stream_events(&bus, "flotilla.task.created").await;
    let mut per_id: HashMap<String, usize> = HashMap::new();
    for ev in &events {
        *per_id.entry(ev.id.clone()).or_default() += 1;
    }
    assert!(per_id.values().all(|&n| n == 1), "no event id twice in the stream");
    for id in &created {
        let n = events.iter().filter(|e| e.subject.as_deref() == Some(id.as_str())).count();
        assert_eq!(n, 1, "task.created of {id} reached the bus once");
    }
    let outbox_created: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE type = 'task.created'")
        .fetch_one(tasks_db.read())
        .await
        .unwrap();
    assert_eq!(events.len() as i64, outbox_created, "stream and outbox agree (22: 2 recurring + 20)");
    bus.shutdown().await;

    // The audit process (its consumer survived the outage too) recorded each task.created once,
    // and the gateway serves the feed.
    eventually(Duration::from_secs(30), "audit ready again", || async {
        ready_status(&c, &audit).await.0 == StatusCode::OK
    })
    .await;
    let created_in_feed = || async {
        let feed = activity(&c, &gw, &user, &token).await;
        feed.into_iter().filter(|e| e["type"] == "task.created").collect::<Vec<_>>()
    };
    eventually(Duration::from_secs(30), "every task.created in the activity feed", || async {
        created_in_feed().await.len() >= events.len()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await; // time for a duplicate to show up
    let feed_created = created_in_feed().await;
    assert_eq!(feed_created.len(), events.len(), "one record per task.created (22)");
    for id in &created {
        let n = feed_created.iter().filter(|e| e["subject"] == id.as_str()).count();
        assert_eq!(n, 1, "task.created of {id} is in the feed once");
    }
    let feed_ids: std::collections::BTreeSet<&str> = feed_created.iter().map(|e| e["id"].as_str().unwrap()).collect();
    let stream_ids: std::collections::BTreeSet<&str> = events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(feed_ids, stream_ids, "the feed records exactly the stream's events");

    // The gateway's health lists every service, audit included.
    eventually(Duration::from_secs(15), "every service healthy", || async {
        c.get(format!("{gw}/health")).send().await.unwrap().status() == StatusCode::OK
    })
    .await;
    let health: Value = c.get(format!("{gw}/health")).send().await.unwrap().json().await.unwrap();
    let names: Vec<&String> = health["services"].as_object().unwrap().keys().collect();
    assert_eq!(names, ["accounts", "assistant", "audit", "tasks"], "{health}");
    assert_eq!(health["services"]["audit"]["ready"], true, "{health}");

    // Deleting the account (accounts → user.deleted → NATS → tasks) removes the user's tasks.
    let (s, _) = call(&c, Method::DELETE, format!("{gw}/api/auth/me"), t, None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    eventually(Duration::from_secs(30), "the deleted user's tasks gone", || async {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM tasks WHERE user_id = $1")
            .bind(&user)
            .fetch_one(tasks_db.read())
            .await
            .unwrap()
            == 0
    })
    .await;
    tasks_db.close().await;
}
