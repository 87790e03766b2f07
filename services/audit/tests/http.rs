//! The audit API over real HTTP: the service router served on a loopback port (SQLite in a temp
//! dir), called with reqwest and real EdDSA tokens. Events arrive the way they do in production:
//! through a `MemoryBus` whose audit consumer runs the audit handler.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use flotilla_audit::{CONSUMER, MIGRATIONS, SERVICE, app_with_handler, handler};
use flotilla_events::event::{sources, types};
use flotilla_events::{BoxFuture, Bus, Event, Handler, HandlerError, MemoryBus, RetryPolicy};
use flotilla_runtime::auth::{AuthContext, Claims, JwkSet, Role, SigningKey, TokenPolicy};
use flotilla_runtime::config::{Env, RuntimeConfig};
use flotilla_runtime::db::{Db, PoolSettings};
use flotilla_runtime::ids::new_id;
use flotilla_runtime::time::now_secs;
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use sqlx::AnyConnection;

const ISSUER: &str = "flotilla";
const AUDIENCE: &str = "flotilla-api";

/// The audit handler, failing while `failing` is set (a broken dependency, then fixed).
struct Flaky {
    inner: Arc<dyn Handler>,
    failing: AtomicBool,
}

impl Handler for Flaky {
    fn handle<'a>(&'a self, event: &'a Event, tx: &'a mut AnyConnection) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            if self.failing.load(Ordering::SeqCst) {
                return Err(HandlerError::failed("audit storage is broken (injected)"));
            }
            self.inner.handle(event, tx).await
        })
    }
}

struct Ctx {
    base: String,
    http: reqwest::Client,
    key: SigningKey,
    bus: MemoryBus,
    flaky: Arc<Flaky>,
    alice: String,
    bob: String,
    alice_token: String,
    bob_token: String,
    admin_token: String,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

fn claims(sub: &str, role: Role, exp_in: i64) -> Claims {
    let now = now_secs();
    Claims {
        sub: sub.into(),
        role,
        iat: now,
        exp: now + exp_in,
        iss: ISSUER.into(),
        aud: AUDIENCE.into(),
        jti: new_id(),
        sid: new_id(),
    }
}

fn fast_policy() -> RetryPolicy {
    RetryPolicy { max_attempts: 3, base_backoff: Duration::from_millis(2), max_backoff: Duration::from_millis(10) }
}

/// Serves the audit app; the bus's audit consumer and the replay endpoint both use the flaky
/// wrapper of the real handler (healthy unless a test breaks it).
async fn start() -> Ctx {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("audit.db").display());
    let db = Db::open_and_migrate(SERVICE, &url, MIGRATIONS, PoolSettings::default()).await.expect("database");
    let auth = AuthContext::new(TokenPolicy { issuer: ISSUER.into(), audience: AUDIENCE.into() });
    let key = SigningKey::generate();
    auth.keys.replace(JwkSet { keys: vec![key.jwk()] });
    let flaky = Arc::new(Flaky { inner: handler(db.clone()), failing: AtomicBool::new(false) });
    let bus = MemoryBus::new();
    bus.subscribe(CONSUMER, db.clone(), flaky.clone(), fast_policy());
    let rt = RuntimeConfig::from_env(&Env::from_pairs([("FLOTILLA_LOG_FORMAT", "human")])).expect("defaults");
    let app = app_with_handler(&rt, db, auth, flaky.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(flotilla_runtime::server::serve(listener, app, Duration::from_secs(1), async move {
        let _ = stopped.await;
    }));
    let (alice, bob) = (new_id(), new_id());
    Ctx {
        base,
        http: reqwest::Client::new(),
        alice_token: key.sign(&claims(&alice, Role::User, 900)),
        bob_token: key.sign(&claims(&bob, Role::User, 900)),
        admin_token: key.sign(&claims(&new_id(), Role::Admin, 900)),
        key,
        bus,
        flaky,
        alice,
        bob,
        _dir: dir,
        _stop: stop,
    }
}

fn event(ty: &str, user: Option<&str>, n: usize) -> Event {
    Event::new(sources::TASKS, ty, Some(format!("task-{n}")), user.map(str::to_owned), json!({ "n": n }))
}

impl Ctx {
    fn activity_url(&self, user: &str) -> String {
        format!("{}/api/{user}/activity", self.base)
    }

    fn audit_url(&self) -> String {
        format!("{}/api/admin/audit", self.base)
    }

    fn dead_letters_url(&self) -> String {
        format!("{}/api/admin/dead-letters/audit", self.base)
    }

    fn replay_url(&self, id: &str) -> String {
        format!("{}/api/admin/dead-letters/audit/{id}/replay", self.base)
    }

    async fn publish(&self, ev: &Event) {
        self.bus.publish(ev).await.expect("the bus takes the event");
    }

    async fn send(&self, method: Method, url: &str, token: Option<&str>) -> Response {
        let mut req = self.http.request(method, url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.unwrap()
    }

    async fn ok(&self, method: Method, url: &str, token: &str) -> Value {
        let res = self.send(method, url, Some(token)).await;
        assert_eq!(res.status(), StatusCode::OK, "{url}");
        assert!(res.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
        res.json().await.unwrap()
    }

    /// Every event of a listing, following `next_cursor` (`url` has its own `?…` or not).
    async fn all(&self, url: &str, token: &str, limit: usize) -> Vec<Value> {
        let sep = if url.contains('?') { '&' } else { '?' };
        let mut events = Vec::new();
        let mut next = format!("{url}{sep}limit={limit}");
        loop {
            let page = self.ok(Method::GET, &next, token).await;
            let batch = page["events"].as_array().unwrap();
            assert!(batch.len() <= limit);
            events.extend(batch.iter().cloned());
            match page["next_cursor"].as_str() {
                Some(c) => next = format!("{url}{sep}limit={limit}&cursor={c}"),
                None => return events,
            }
        }
    }

    async fn activity_ids(&self, user: &str, token: &str) -> Vec<String> {
        ids(&self.all(&self.activity_url(user), token, 100).await)
    }

    async fn dead_letters(&self) -> Vec<Value> {
        self.ok(Method::GET, &self.dead_letters_url(), &self.admin_token).await["dead_letters"]
            .as_array()
            .unwrap()
            .clone()
    }
}

fn ids(events: &[Value]) -> Vec<String> {
    events.iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect()
}

/// Checks a problem+json response with this status and returns its body.
async fn problem(res: Response, status: u16) -> Value {
    assert_eq!(res.status().as_u16(), status, "status of {}", res.url());
    assert_eq!(res.headers()["content-type"], "application/problem+json", "{}", res.url());
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], status);
    assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()));
    body
}

fn pointers(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .map(|errs| errs.iter().map(|e| e["pointer"].as_str().unwrap_or_default().to_owned()).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn activity_shows_the_users_own_events_newest_first_in_pages() {
    let ctx = start().await;
    let mut mine = Vec::new();
    for n in 0..25 {
        let ev = event(types::TASK_CREATED, Some(&ctx.alice), n);
        ctx.publish(&ev).await;
        mine.push(ev);
        ctx.publish(&event(types::TASK_UPDATED, Some(&ctx.bob), n)).await;
    }
    let first = ctx.ok(Method::GET, &ctx.activity_url(&ctx.alice), &ctx.alice_token).await;
    let events = first["events"].as_array().unwrap();
    assert_eq!(events.len(), 20, "default limit");
    let newest = &mine[24];
    assert_eq!(
        events[0],
        json!({
            "id": newest.id,
            "type": "task.created",
            "source": "/flotilla/tasks",
            "subject": "task-24",
            "time": flotilla_runtime::time::format_ms(newest.time_ms().unwrap()),
            "data": {"n": 24},
        })
    );
    assert!(first["next_cursor"].is_string());

    let want: Vec<String> = mine.iter().rev().map(|e| e.id.clone()).collect();
    for limit in [1, 7, 100] {
        assert_eq!(ids(&ctx.all(&ctx.activity_url(&ctx.alice), &ctx.alice_token, limit).await), want, "limit {limit}");
    }
    let last = ctx.ok(Method::GET, &format!("{}?limit=100", ctx.activity_url(&ctx.alice)), &ctx.alice_token).await;
    assert_eq!(last["next_cursor"], Value::Null);
    assert_eq!(ctx.activity_ids(&ctx.bob, &ctx.bob_token).await.len(), 25);
}

#[tokio::test(flavor = "multi_thread")]
async fn end_to_end_each_user_sees_exactly_their_events() {
    let ctx = start().await;
    let mut alice_events = Vec::new();
    let mut bob_events = Vec::new();
    let mut everything = Vec::new();
    for n in 0..6 {
        let (ty, user, list) = match n % 3 {
            0 => (types::TASK_CREATED, Some(ctx.alice.as_str()), Some(&mut alice_events)),
            1 => (types::TASK_COMPLETED, Some(ctx.bob.as_str()), Some(&mut bob_events)),
            _ => (types::USER_LOGIN_FAILED, None, None),
        };
        let ev = event(ty, user, n);
        ctx.publish(&ev).await;
        ctx.publish(&ev).await; // a duplicate delivery changes nothing
        if let Some(list) = list {
            list.insert(0, ev.id.clone());
        }
        everything.insert(0, ev);
    }
    assert_eq!(ctx.activity_ids(&ctx.alice, &ctx.alice_token).await, alice_events);
    assert_eq!(ctx.activity_ids(&ctx.bob, &ctx.bob_token).await, bob_events);

    let audit = ctx.all(&ctx.audit_url(), &ctx.admin_token, 4).await;
    assert_eq!(ids(&audit), everything.iter().map(|e| e.id.clone()).collect::<Vec<_>>());
    for (got, ev) in audit.iter().zip(&everything) {
        assert_eq!(got["user_id"], json!(ev.userid), "admin events name their user");
        assert_eq!(got["type"], ev.r#type);
    }
    let bobs = ctx.all(&format!("{}?user_id={}", ctx.audit_url(), ctx.bob), &ctx.admin_token, 100).await;
    assert_eq!(ids(&bobs), bob_events);
    let failed = ctx.all(&format!("{}?type=user.login_failed", ctx.audit_url()), &ctx.admin_token, 100).await;
    assert_eq!(failed.len(), 2);
    assert!(failed.iter().all(|e| e["user_id"].is_null()));
    let in_range = ctx
        .all(
            &format!("{}?since=2000-01-01T00:00:00Z&until=2999-01-01T00:00:00%2B01:00", ctx.audit_url()),
            &ctx.admin_token,
            100,
        )
        .await;
    assert_eq!(in_range.len(), 6);
    let none = ctx.all(&format!("{}?until=2000-01-01T00:00:00Z", ctx.audit_url()), &ctx.admin_token, 100).await;
    assert!(none.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_or_bad_tokens_get_401_on_every_route() {
    let ctx = start().await;
    let stranger = SigningKey::generate();
    let expired = ctx.key.sign(&claims(&ctx.alice, Role::Admin, -3600));
    let forged = stranger.sign(&claims(&ctx.alice, Role::Admin, 900));
    let routes = [
        (Method::GET, ctx.activity_url(&ctx.alice)),
        (Method::GET, ctx.audit_url()),
        (Method::GET, ctx.dead_letters_url()),
        (Method::POST, ctx.replay_url(&new_id())),
    ];
    for token in [None, Some("not-a-jwt"), Some(forged.as_str()), Some(expired.as_str())] {
        for (method, url) in &routes {
            let res = ctx.send(method.clone(), url, token).await;
            assert!(res.headers().contains_key("www-authenticate"));
            problem(res, 401).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn other_users_and_non_admins_get_403() {
    let ctx = start().await;
    ctx.publish(&event(types::TASK_CREATED, Some(&ctx.alice), 0)).await;
    problem(ctx.send(Method::GET, &ctx.activity_url(&ctx.alice), Some(&ctx.bob_token)).await, 403).await;
    // Even an admin reads other users' events through the admin search, not their feed.
    problem(ctx.send(Method::GET, &ctx.activity_url(&ctx.alice), Some(&ctx.admin_token)).await, 403).await;
    for (method, url) in [
        (Method::GET, ctx.audit_url()),
        (Method::GET, format!("{}?user_id={}", ctx.audit_url(), ctx.alice)),
        (Method::GET, ctx.dead_letters_url()),
        (Method::POST, ctx.replay_url(&new_id())),
    ] {
        let body = problem(ctx.send(method, &url, Some(&ctx.alice_token)).await, 403).await;
        assert_eq!(body["detail"], "administrator role required");
    }
    // 403 comes before parameter checks: nothing about the parameters leaks.
    problem(ctx.send(Method::GET, &format!("{}?limit=0", ctx.audit_url()), Some(&ctx.alice_token)).await, 403).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_parameters_and_cursors_get_422_naming_them() {
    let ctx = start().await;
    let activity = ctx.activity_url(&ctx.alice);
    let audit = ctx.audit_url();
    let cases: Vec<(String, &str, Vec<&str>)> = vec![
        (format!("{activity}?limit=0"), &ctx.alice_token, vec!["#/limit"]),
        (format!("{activity}?limit=101"), &ctx.alice_token, vec!["#/limit"]),
        (format!("{activity}?limit=ten"), &ctx.alice_token, vec!["#/limit"]),
        (format!("{activity}?cursor=garbage"), &ctx.alice_token, vec!["#/cursor"]),
        // a well-formed base64url JSON that is no cursor of ours
        (format!("{activity}?cursor=eyJ2IjoxLCJzZXEiOi0xfQ"), &ctx.alice_token, vec!["#/cursor"]),
        (format!("{activity}?type=task.created"), &ctx.alice_token, vec!["#/type"]),
        (format!("{activity}?limit=5&limit=6"), &ctx.alice_token, vec!["#/limit"]),
        (format!("{audit}?since=yesterday"), &ctx.admin_token, vec!["#/since"]),
        (format!("{audit}?until=2026-13-01T00:00:00Z"), &ctx.admin_token, vec!["#/until"]),
        (format!("{audit}?since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z"), &ctx.admin_token, vec!["#/until"]),
        (format!("{audit}?type=task.*"), &ctx.admin_token, vec!["#/type"]),
        (format!("{audit}?user_id="), &ctx.admin_token, vec!["#/user_id"]),
        (format!("{audit}?cursor=%20"), &ctx.admin_token, vec!["#/cursor"]),
        (format!("{audit}?sort=asc&foo=1&limit=1000"), &ctx.admin_token, vec!["#/sort", "#/foo", "#/limit"]),
        (format!("{}?limit=1001", ctx.dead_letters_url()), &ctx.admin_token, vec!["#/limit"]),
        (format!("{}?cursor=x", ctx.dead_letters_url()), &ctx.admin_token, vec!["#/cursor"]),
    ];
    for (url, token, want) in cases {
        let body = problem(ctx.send(Method::GET, &url, Some(token)).await, 422).await;
        assert_eq!(pointers(&body), want, "{url}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_dead_letters_and_routes_get_404() {
    let ctx = start().await;
    for id in [new_id(), "not-an-id".to_owned()] {
        let body = problem(ctx.send(Method::POST, &ctx.replay_url(&id), Some(&ctx.admin_token)).await, 404).await;
        assert_eq!(body["detail"], "no such dead letter");
    }
    problem(ctx.send(Method::GET, &format!("{}/api/admin/nothing", ctx.base), Some(&ctx.admin_token)).await, 404).await;
    problem(ctx.send(Method::GET, &ctx.replay_url(&new_id()), Some(&ctx.admin_token)).await, 405).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_handler_dead_letters_and_replay_after_the_fix_records_once() {
    let ctx = start().await;
    let ok_before = event(types::TASK_CREATED, Some(&ctx.alice), 0);
    ctx.publish(&ok_before).await;
    assert!(ctx.dead_letters().await.is_empty());

    ctx.flaky.failing.store(true, Ordering::SeqCst);
    let lost = event(types::TASK_COMPLETED, Some(&ctx.alice), 1);
    ctx.publish(&lost).await; // every attempt fails: dead-lettered, and the bus moves on
    assert_eq!(ctx.activity_ids(&ctx.alice, &ctx.alice_token).await, vec![ok_before.id.clone()]);

    let letters = ctx.dead_letters().await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    let letter = &letters[0];
    assert_eq!(letter["event_id"], lost.id);
    assert_eq!(letter["type"], "task.completed");
    assert_eq!(letter["attempts"], 3);
    assert!(letter["error"].as_str().unwrap().contains("injected"));
    assert_eq!(letter["replayed_at"], Value::Null);
    assert_eq!(letter["event"]["id"], lost.id);
    assert_eq!(letter["event"]["data"], json!({"n": 1}));
    let id = letter["id"].as_str().unwrap().to_owned();

    // Replaying while still broken: 500, the letter stays with one more attempt.
    let body = problem(ctx.send(Method::POST, &ctx.replay_url(&id), Some(&ctx.admin_token)).await, 500).await;
    assert!(body["detail"].as_str().unwrap().contains("kept"), "{body}");
    let letters = ctx.dead_letters().await;
    assert_eq!((letters[0]["attempts"].clone(), letters[0]["replayed_at"].clone()), (json!(4), Value::Null));
    assert_eq!(ctx.activity_ids(&ctx.alice, &ctx.alice_token).await, vec![ok_before.id.clone()]);

    // Fixed: the replay records it, once.
    ctx.flaky.failing.store(false, Ordering::SeqCst);
    let replayed = ctx.ok(Method::POST, &ctx.replay_url(&id), &ctx.admin_token).await;
    assert_eq!(replayed, json!({"id": id, "event_id": lost.id, "outcome": "processed"}));
    let want = vec![lost.id.clone(), ok_before.id.clone()];
    assert_eq!(ctx.activity_ids(&ctx.alice, &ctx.alice_token).await, want);
    let letters = ctx.dead_letters().await;
    assert_eq!(letters.len(), 1, "a replayed letter stays listed");
    assert!(letters[0]["replayed_at"].is_string());

    // Replaying again, or a late redelivery of the event, changes nothing.
    let again = ctx.ok(Method::POST, &ctx.replay_url(&id), &ctx.admin_token).await;
    assert_eq!(again["outcome"], "already_processed");
    ctx.publish(&lost).await;
    assert_eq!(ctx.activity_ids(&ctx.alice, &ctx.alice_token).await, want);
    assert_eq!(ctx.all(&ctx.audit_url(), &ctx.admin_token, 100).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn operations_endpoints_answer() {
    let ctx = start().await;
    for path in ["/health", "/ready"] {
        let res = ctx.send(Method::GET, &format!("{}{path}", ctx.base), None).await;
        assert_eq!(res.status(), StatusCode::OK, "{path}");
    }
    let res = ctx.send(Method::GET, &format!("{}/metrics", ctx.base), None).await;
    assert_eq!(res.status(), StatusCode::OK);
}
