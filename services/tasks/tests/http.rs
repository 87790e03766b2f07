//! The tasks API over real HTTP: the service router served on a loopback port (SQLite in a temp
//! dir), called with reqwest and real EdDSA tokens. After every rejected write the stored state is
//! read back to check that nothing changed.

use std::time::Duration;

use flotilla_runtime::auth::{AuthContext, Claims, JwkSet, Role, SigningKey, TokenPolicy};
use flotilla_runtime::config::{Env, RuntimeConfig};
use flotilla_runtime::db::{Db, PoolSettings};
use flotilla_runtime::ids::new_id;
use flotilla_runtime::time::now_secs;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};

const ISSUER: &str = "flotilla";
const AUDIENCE: &str = "flotilla-api";

struct Ctx {
    base: String,
    http: reqwest::Client,
    key: SigningKey,
    alice: String,
    bob: String,
    alice_token: String,
    bob_token: String,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

fn claims(sub: &str, exp_in: i64) -> Claims {
    let now = now_secs();
    Claims {
        sub: sub.into(),
        role: Role::User,
        iat: now,
        exp: now + exp_in,
        iss: ISSUER.into(),
        aud: AUDIENCE.into(),
        jti: new_id(),
        sid: new_id(),
    }
}

async fn start() -> Ctx {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("tasks.db").display());
    let db = Db::open_and_migrate(flotilla_tasks::SERVICE, &url, flotilla_tasks::MIGRATIONS, PoolSettings::default())
        .await
        .expect("database");
    let auth = AuthContext::new(TokenPolicy { issuer: ISSUER.into(), audience: AUDIENCE.into() });
    let key = SigningKey::generate();
    auth.keys.replace(JwkSet { keys: vec![key.jwk()] });
    let rt = RuntimeConfig::from_env(&Env::from_pairs([("FLOTILLA_LOG_FORMAT", "human")])).expect("defaults");
    let app = flotilla_tasks::app(&rt, db, auth);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(flotilla_runtime::server::serve(listener, app, Duration::from_secs(1), async move {
        let _ = stopped.await;
    }));
    let alice = new_id();
    let bob = new_id();
    Ctx {
        base,
        http: reqwest::Client::new(),
        alice_token: key.sign(&claims(&alice, 900)),
        bob_token: key.sign(&claims(&bob, 900)),
        key,
        alice,
        bob,
        _dir: dir,
        _stop: stop,
    }
}

impl Ctx {
    fn tasks(&self, user: &str) -> String {
        format!("{}/api/{user}/tasks", self.base)
    }

    fn task(&self, user: &str, id: &str) -> String {
        format!("{}/api/{user}/tasks/{id}", self.base)
    }

    /// A request as Alice to her own tasks.
    fn alice(&self, method: Method, url: &str) -> RequestBuilder {
        self.http.request(method, url).bearer_auth(&self.alice_token)
    }

    async fn create(&self, body: Value) -> Value {
        let res = self.alice(Method::POST, &self.tasks(&self.alice)).json(&body).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::CREATED, "{body}");
        res.json().await.unwrap()
    }

    /// Alice's task as stored now.
    async fn stored(&self, id: &str) -> Value {
        let res = self.alice(Method::GET, &self.task(&self.alice, id)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        res.json().await.unwrap()
    }

    async fn list(&self, token: &str, user: &str, query: &str) -> Value {
        let res = self.http.get(format!("{}?{query}", self.tasks(user))).bearer_auth(token).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{query}");
        res.json().await.unwrap()
    }

    async fn count(&self) -> usize {
        self.list(&self.alice_token, &self.alice, "limit=100").await["tasks"].as_array().unwrap().len()
    }
}

/// Checks a problem+json response with this status and returns its body.
async fn problem(res: Response, status: u16) -> Value {
    assert_eq!(res.status().as_u16(), status, "status of {}", res.url());
    assert_eq!(res.headers()["content-type"], "application/problem+json");
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

#[tokio::test]
async fn create_answers_201_with_location_and_etag_and_get_returns_it() {
    let ctx = start().await;
    let body = json!({
        "title": "  Pay rent ",
        "description": "before the 5th",
        "priority": "high",
        "tags": ["Home", "money", "home"],
        "due_at": "2026-02-05T10:00:00+01:00",
        "remind_at": "2026-02-04T09:00:00Z",
        "recurrence": {"freq": "monthly", "interval": 1, "count": 12}
    });
    let res = ctx.alice(Method::POST, &ctx.tasks(&ctx.alice)).json(&body).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(res.headers()["etag"], "\"1\"");
    let task: Value = res.json().await.unwrap();
    assert_eq!(location, format!("/api/{}/tasks/{}", ctx.alice, task["id"].as_str().unwrap()));
    assert_eq!(task["user_id"], ctx.alice);
    assert_eq!(task["title"], "Pay rent");
    assert_eq!(task["description"], "before the 5th");
    assert_eq!(task["completed"], false);
    assert_eq!(task["completed_at"], Value::Null);
    assert_eq!(task["priority"], "high");
    assert_eq!(task["tags"], json!(["home", "money"]));
    assert_eq!(task["due_at"], "2026-02-05T09:00:00.000Z");
    assert_eq!(task["remind_at"], "2026-02-04T09:00:00.000Z");
    assert_eq!(task["recurrence"], json!({"freq": "monthly", "interval": 1, "count": 12}));
    assert_eq!(task["version"], 1);
    assert_eq!(task["created_at"], task["updated_at"]);

    let res = ctx.alice(Method::GET, &format!("{}{location}", ctx.base)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["etag"], "\"1\"");
    assert_eq!(res.json::<Value>().await.unwrap(), task);

    let minimal = ctx.create(json!({"title": "Buy milk"})).await;
    assert_eq!(minimal["priority"], "medium");
    assert_eq!(minimal["tags"], json!([]));
    assert_eq!(minimal["description"], Value::Null);
    assert_eq!(minimal["recurrence"], Value::Null);
}

#[tokio::test]
async fn missing_or_bad_tokens_get_401_with_a_challenge_and_change_nothing() {
    let ctx = start().await;
    let task = ctx.create(json!({"title": "mine"})).await;
    let id = task["id"].as_str().unwrap();
    let stranger = SigningKey::generate();
    let expired = ctx.key.sign(&claims(&ctx.alice, -3600));
    let bad_tokens = [
        None,
        Some("not-a-jwt".to_owned()),
        Some(stranger.sign(&claims(&ctx.alice, 900))),
        Some(expired),
        Some(format!("{}x", ctx.alice_token)),
    ];
    for token in bad_tokens {
        for (method, url) in [
            (Method::GET, ctx.tasks(&ctx.alice)),
            (Method::POST, ctx.tasks(&ctx.alice)),
            (Method::GET, ctx.task(&ctx.alice, id)),
            (Method::PUT, ctx.task(&ctx.alice, id)),
            (Method::PATCH, ctx.task(&ctx.alice, id)),
            (Method::DELETE, ctx.task(&ctx.alice, id)),
            (Method::PATCH, format!("{}/complete", ctx.task(&ctx.alice, id))),
        ] {
            let mut req = ctx.http.request(method.clone(), &url).json(&json!({"title": "hacked"}));
            if let Some(t) = &token {
                req = req.bearer_auth(t);
            }
            let res = req.send().await.unwrap();
            let challenge = res.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned());
            problem(res, 401).await;
            let challenge = challenge.expect("WWW-Authenticate on 401");
            assert!(challenge.starts_with("Bearer"), "{challenge}");
            if token.is_some() {
                assert!(challenge.contains("invalid_token"), "{method} {url}: {challenge}");
            }
        }
    }
    assert_eq!(ctx.stored(id).await, task);
    assert_eq!(ctx.count().await, 1);
}

#[tokio::test]
async fn another_users_path_is_403_and_changes_nothing() {
    let ctx = start().await;
    let task = ctx.create(json!({"title": "mine"})).await;
    let id = task["id"].as_str().unwrap();
    // Bob's token on Alice's paths.
    for (method, url) in [
        (Method::GET, ctx.tasks(&ctx.alice)),
        (Method::POST, ctx.tasks(&ctx.alice)),
        (Method::GET, ctx.task(&ctx.alice, id)),
        (Method::PUT, ctx.task(&ctx.alice, id)),
        (Method::PATCH, ctx.task(&ctx.alice, id)),
        (Method::DELETE, ctx.task(&ctx.alice, id)),
        (Method::PATCH, format!("{}/complete", ctx.task(&ctx.alice, id))),
    ] {
        let res = ctx
            .http
            .request(method, &url)
            .bearer_auth(&ctx.bob_token)
            .json(&json!({"title": "hacked"}))
            .send()
            .await
            .unwrap();
        problem(res, 403).await;
    }
    assert_eq!(ctx.stored(id).await, task);
    assert_eq!(ctx.count().await, 1);
    assert_eq!(ctx.list(&ctx.bob_token, &ctx.bob, "").await["tasks"], json!([]));
}

#[tokio::test]
async fn other_users_unknown_and_malformed_task_ids_are_404() {
    let ctx = start().await;
    let task = ctx.create(json!({"title": "mine"})).await;
    let id = task["id"].as_str().unwrap();
    let bob = |method: Method, url: String| ctx.http.request(method, url).bearer_auth(&ctx.bob_token);
    for target in [id.to_owned(), new_id(), "not-a-uuid".to_owned(), "1 OR 1=1".to_owned()] {
        // Alice's id on Bob's own path: indistinguishable from an unknown id.
        let url = ctx.task(&ctx.bob, &target);
        problem(bob(Method::GET, url.clone()).send().await.unwrap(), 404).await;
        problem(bob(Method::PUT, url.clone()).json(&json!({"title": "x"})).send().await.unwrap(), 404).await;
        problem(bob(Method::PATCH, url.clone()).json(&json!({"title": "x"})).send().await.unwrap(), 404).await;
        problem(bob(Method::DELETE, url.clone()).send().await.unwrap(), 404).await;
        problem(bob(Method::PATCH, format!("{url}/complete")).send().await.unwrap(), 404).await;
    }
    for target in [new_id(), "not-a-uuid".to_owned()] {
        let res = ctx.alice(Method::GET, &ctx.task(&ctx.alice, &target)).send().await.unwrap();
        problem(res, 404).await;
    }
    assert_eq!(ctx.stored(id).await, task);
}

#[tokio::test]
async fn stale_if_match_is_412_and_matching_tags_write() {
    let ctx = start().await;
    let task = ctx.create(json!({"title": "v1"})).await;
    let id = task["id"].as_str().unwrap();
    let url = ctx.task(&ctx.alice, id);
    let res = ctx.alice(Method::PATCH, &url).header("if-match", "\"1\"").json(&json!({"title": "v2"})).send().await;
    let res = res.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["etag"], "\"2\"");
    let v2: Value = res.json().await.unwrap();
    assert_eq!((v2["title"].as_str(), v2["version"].as_i64()), (Some("v2"), Some(2)));

    for stale in ["\"1\"", "W/\"1\"", "garbage", "\"3\""] {
        let attempts = [
            ctx.alice(Method::PUT, &url).json(&json!({"title": "stale"})),
            ctx.alice(Method::PATCH, &url).json(&json!({"title": "stale"})),
            ctx.alice(Method::PATCH, &format!("{url}/complete")),
            ctx.alice(Method::DELETE, &url),
        ];
        for req in attempts {
            let res = req.header("if-match", stale).send().await.unwrap();
            assert_eq!(res.headers()["etag"], "\"2\"", "a 412 names the current version");
            problem(res, 412).await;
        }
    }
    assert_eq!(ctx.stored(id).await, v2, "nothing changed");

    for (n, tag) in ["W/\"2\"", "*", "\"1\", \"3\""].into_iter().enumerate() {
        let res = ctx
            .alice(Method::PATCH, &url)
            .header("if-match", tag)
            .json(&json!({"description": format!("d{n}")}))
            .send();
        let res = res.await.unwrap();
        if n < 2 {
            assert_eq!(res.status(), StatusCode::OK, "{tag}");
        } else {
            problem(res, 412).await;
        }
    }
    assert_eq!(ctx.stored(id).await["version"], 4);
    let res = ctx.alice(Method::DELETE, &url).header("if-match", "\"4\"").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    problem(ctx.alice(Method::GET, &url).send().await.unwrap(), 404).await;
}

#[tokio::test]
async fn every_create_validation_rule_is_422_and_creates_nothing() {
    let ctx = start().await;
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (json!({}), vec!["#/title"]),
        (json!({"title": "   "}), vec!["#/title"]),
        (json!({"title": "x".repeat(201)}), vec!["#/title"]),
        (json!({"title": 7}), vec!["#/title"]),
        (json!({"title": "t", "description": "x".repeat(5001)}), vec!["#/description"]),
        (json!({"title": "t", "priority": "urgent"}), vec!["#/priority"]),
        (json!({"title": "t", "tags": (0..11).map(|i| format!("t{i}")).collect::<Vec<_>>()}), vec!["#/tags"]),
        (json!({"title": "t", "tags": ["ok", "has space"]}), vec!["#/tags/1"]),
        (json!({"title": "t", "tags": ["x".repeat(33)]}), vec!["#/tags/0"]),
        (json!({"title": "t", "tags": [""]}), vec!["#/tags/0"]),
        (json!({"title": "t", "due_at": "next friday"}), vec!["#/due_at"]),
        (json!({"title": "t", "remind_at": "2026-13-01T00:00:00Z"}), vec!["#/remind_at"]),
        (
            json!({"title": "t", "due_at": "2026-01-01T00:00:00Z", "remind_at": "2026-01-01T00:00:01Z"}),
            vec!["#/remind_at"],
        ),
        (json!({"title": "t", "recurrence": {"freq": "hourly"}}), vec!["#/recurrence/freq"]),
        (json!({"title": "t", "recurrence": {"interval": 2}}), vec!["#/recurrence/freq"]),
        (json!({"title": "t", "recurrence": {"freq": "daily", "interval": 0}}), vec!["#/recurrence/interval"]),
        (json!({"title": "t", "recurrence": {"freq": "daily", "interval": 366}}), vec!["#/recurrence/interval"]),
        (json!({"title": "t", "recurrence": {"freq": "daily", "count": 0}}), vec!["#/recurrence/count"]),
        (json!({"title": "t", "recurrence": {"freq": "daily", "count": 1001}}), vec!["#/recurrence/count"]),
        (json!({"title": "t", "recurrence": {"freq": "daily", "until": "soon"}}), vec!["#/recurrence/until"]),
        (
            json!({"title": "t", "recurrence": {"freq": "daily", "until": "2027-01-01T00:00:00Z", "count": 3}}),
            vec!["#/recurrence"],
        ),
        (
            json!({"title": "t", "due_at": "2026-01-01T00:00:00Z",
                   "recurrence": {"freq": "daily", "until": "2025-12-31T00:00:00Z"}}),
            vec!["#/recurrence/until"],
        ),
        (json!({"title": "t", "recurrence": {"freq": "daily", "byday": "MO"}}), vec!["#/recurrence/byday"]),
        (json!({"title": "t", "recurrence": "daily"}), vec!["#/recurrence"]),
        (json!({"title": "t", "done": true}), vec!["#/done"]),
        (json!({"title": "t", "completed": true}), vec!["#/completed"]),
        (
            json!({"title": "", "priority": "x", "tags": "a", "due_at": 1, "recurrence": {"freq": "x"}}),
            vec!["#/title", "#/priority", "#/tags", "#/due_at", "#/recurrence/freq"],
        ),
    ];
    for (body, expected) in cases {
        let res = ctx.alice(Method::POST, &ctx.tasks(&ctx.alice)).json(&body).send().await.unwrap();
        let p = problem(res, 422).await;
        assert_eq!(pointers(&p), expected, "{body}");
    }
    assert_eq!(ctx.count().await, 0, "no invalid create stored anything");
}

#[tokio::test]
async fn malformed_oversized_and_non_json_bodies_are_rejected_and_change_nothing() {
    let ctx = start().await;
    let task = ctx.create(json!({"title": "keep"})).await;
    let id = task["id"].as_str().unwrap();
    let targets = [
        (Method::POST, ctx.tasks(&ctx.alice)),
        (Method::PUT, ctx.task(&ctx.alice, id)),
        (Method::PATCH, ctx.task(&ctx.alice, id)),
        (Method::PATCH, format!("{}/complete", ctx.task(&ctx.alice, id))),
    ];
    for (method, url) in &targets {
        let send = |body: Vec<u8>, ct: &'static str| {
            ctx.alice(method.clone(), url).header("content-type", ct).body(body).send()
        };
        problem(send(b"{".to_vec(), "application/json").await.unwrap(), 400).await;
        problem(send(b"not json".to_vec(), "application/json").await.unwrap(), 400).await;
        problem(send(b"{\"title\": \"x\"}".to_vec(), "text/plain").await.unwrap(), 415).await;
        let huge = format!("{{\"title\": \"t\", \"description\": \"{}\"}}", "x".repeat(70_000));
        problem(send(huge.into_bytes(), "application/json").await.unwrap(), 413).await;
        // Without a declared length (chunked), the limit still holds.
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![Ok(b"{\"title\": \"".to_vec()), Ok(vec![b'x'; 70_000])];
        let res = ctx
            .alice(method.clone(), url)
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)))
            .send()
            .await
            .unwrap();
        problem(res, 413).await;
    }
    let put = ctx.alice(Method::PUT, &ctx.task(&ctx.alice, id)).json(&json!({"title": "t", "x": 1})).send();
    assert_eq!(pointers(&problem(put.await.unwrap(), 422).await), vec!["#/x"]);
    let complete = ctx.alice(Method::PATCH, &format!("{}/complete", ctx.task(&ctx.alice, id)));
    let res = complete.json(&json!({"completed": "yes"})).send().await.unwrap();
    problem(res, 422).await;
    assert_eq!(ctx.stored(id).await, task);
    assert_eq!(ctx.count().await, 1);
}

#[tokio::test]
async fn idempotent_creates_replay_the_original_and_create_nothing() {
    let ctx = start().await;
    let body = r#"{"title": "Pay rent", "tags": ["home"]}"#;
    let post = |key: &str, body: &str| {
        ctx.alice(Method::POST, &ctx.tasks(&ctx.alice))
            .header("idempotency-key", key)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
    };
    let first = post("key-1", body).await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let (loc, etag) = (first.headers()["location"].clone(), first.headers()["etag"].clone());
    let original: Value = first.json().await.unwrap();

    let again = post("key-1", body).await.unwrap();
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.headers()["location"], loc);
    assert_eq!(again.headers()["etag"], etag);
    assert_eq!(again.json::<Value>().await.unwrap(), original);
    assert_eq!(ctx.count().await, 1);

    let p = problem(post("key-1", r#"{"title": "Something else"}"#).await.unwrap(), 422).await;
    assert_eq!(p["detail"], "Idempotency-Key was already used with a different request");
    for bad in ["", "has space", &"k".repeat(256)] {
        problem(post(bad, body).await.unwrap(), 422).await;
    }
    assert_eq!(ctx.count().await, 1);

    // Concurrent retries of one request: one task.
    let results = futures_util::future::join_all((0..6).map(|_| post("key-2", body))).await;
    let mut ids = std::collections::HashSet::new();
    for r in results {
        let r = r.unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        ids.insert(r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 1);
    assert_eq!(ctx.count().await, 2);
}

#[tokio::test]
async fn patch_changes_only_present_fields_and_null_clears() {
    let ctx = start().await;
    let task = ctx
        .create(json!({"title": "t", "description": "d", "priority": "high", "tags": ["a", "b"],
            "due_at": "2026-05-01T00:00:00Z", "remind_at": "2026-04-30T00:00:00Z",
            "recurrence": {"freq": "weekly", "interval": 2}}))
        .await;
    let id = task["id"].as_str().unwrap();
    let url = ctx.task(&ctx.alice, id);
    let patch = |body: Value| ctx.alice(Method::PATCH, &url).json(&body).send();

    let res = patch(json!({})).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["etag"], "\"1\"");
    assert_eq!(res.json::<Value>().await.unwrap(), task, "an empty patch changes nothing, not even the version");

    let res = patch(json!({"priority": "low"})).await.unwrap();
    let v2: Value = res.json().await.unwrap();
    let mut expected = task.clone();
    expected["priority"] = json!("low");
    expected["version"] = json!(2);
    expected["updated_at"] = v2["updated_at"].clone();
    assert_eq!(v2, expected);

    let v3: Value = patch(json!({"description": null, "remind_at": null, "recurrence": null, "tags": []}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v3["description"], Value::Null);
    assert_eq!(v3["remind_at"], Value::Null);
    assert_eq!(v3["recurrence"], Value::Null);
    assert_eq!(v3["tags"], json!([]));
    assert_eq!(v3["due_at"], "2026-05-01T00:00:00.000Z", "absent fields are kept");
    assert_eq!(v3["title"], "t");
    assert_eq!(v3["version"], 3);
    assert_eq!(ctx.list(&ctx.alice_token, &ctx.alice, "tag=a").await["tasks"], json!([]));

    let same: Value = patch(json!({"priority": "low"})).await.unwrap().json().await.unwrap();
    assert_eq!(same["version"], 3, "a patch to the same values is no change");

    for (body, ptr) in [
        (json!({"title": null}), "#/title"),
        (json!({"title": ""}), "#/title"),
        (json!({"priority": null}), "#/priority"),
        (json!({"tags": null}), "#/tags"),
        (json!({"completed": null}), "#/completed"),
        (json!({"remind_at": "2026-05-02T00:00:00Z"}), "#/remind_at"),
        (json!({"recurrence": {"freq": "daily", "until": "2026-04-01T00:00:00Z"}}), "#/recurrence/until"),
        (json!({"owner": "bob"}), "#/owner"),
    ] {
        let p = problem(patch(body.clone()).await.unwrap(), 422).await;
        assert_eq!(pointers(&p), vec![ptr], "{body}");
    }
    assert_eq!(ctx.stored(id).await, v3, "rejected patches changed nothing");

    let done: Value = patch(json!({"completed": true, "title": "  renamed "})).await.unwrap().json().await.unwrap();
    assert_eq!((done["completed"].as_bool(), done["title"].as_str()), (Some(true), Some("renamed")));
    assert!(done["completed_at"].is_string());
}

#[tokio::test]
async fn put_replaces_the_whole_task() {
    let ctx = start().await;
    let task = ctx
        .create(json!({"title": "t", "description": "d", "priority": "high", "tags": ["a"],
            "due_at": "2026-05-01T00:00:00Z"}))
        .await;
    let id = task["id"].as_str().unwrap();
    let url = ctx.task(&ctx.alice, id);
    let res = ctx.alice(Method::PUT, &url).json(&json!({"title": "new", "completed": true})).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["etag"], "\"2\"");
    let v2: Value = res.json().await.unwrap();
    assert_eq!(v2["title"], "new");
    assert_eq!(v2["description"], Value::Null, "absent optional fields are reset");
    assert_eq!(v2["priority"], "medium");
    assert_eq!(v2["tags"], json!([]));
    assert_eq!(v2["due_at"], Value::Null);
    assert_eq!(v2["completed"], true);
    assert!(v2["completed_at"].is_string());
    assert_eq!((&v2["id"], &v2["created_at"]), (&task["id"], &task["created_at"]));

    let res = ctx.alice(Method::PUT, &url).json(&json!({"description": "no title"})).send().await.unwrap();
    assert_eq!(pointers(&problem(res, 422).await), vec!["#/title"]);
    assert_eq!(ctx.stored(id).await, v2);

    let v3: Value =
        ctx.alice(Method::PUT, &url).json(&json!({"title": "new"})).send().await.unwrap().json().await.unwrap();
    assert_eq!((v3["completed"].as_bool(), &v3["completed_at"]), (Some(false), &Value::Null), "completed resets too");
}

#[tokio::test]
async fn complete_toggles_without_a_body_and_sets_with_one() {
    let ctx = start().await;
    let task = ctx.create(json!({"title": "t"})).await;
    let url = format!("{}/complete", ctx.task(&ctx.alice, task["id"].as_str().unwrap()));
    let done: Value = ctx.alice(Method::PATCH, &url).send().await.unwrap().json().await.unwrap();
    assert_eq!((done["completed"].as_bool(), done["version"].as_i64()), (Some(true), Some(2)));
    let completed_at = done["completed_at"].as_str().expect("completion time").to_owned();

    let still: Value =
        ctx.alice(Method::PATCH, &url).json(&json!({"completed": true})).send().await.unwrap().json().await.unwrap();
    assert_eq!((still["completed_at"].as_str(), still["version"].as_i64()), (Some(completed_at.as_str()), Some(2)));

    let reopened: Value = ctx.alice(Method::PATCH, &url).send().await.unwrap().json().await.unwrap();
    assert_eq!((reopened["completed"].as_bool(), &reopened["completed_at"]), (Some(false), &Value::Null));
    assert_eq!(reopened["version"], 3);

    let res = ctx.alice(Method::PATCH, &url).json(&json!({"completed": false})).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = ctx.alice(Method::PATCH, &url).json(&json!({"completed": true, "at": 1})).send().await.unwrap();
    problem(res, 422).await;
    assert_eq!(ctx.stored(task["id"].as_str().unwrap()).await["completed"], false);
}

#[tokio::test]
async fn delete_answers_204_and_the_task_is_gone() {
    let ctx = start().await;
    let keep = ctx.create(json!({"title": "keep"})).await;
    let task = ctx.create(json!({"title": "drop", "tags": ["x"]})).await;
    let url = ctx.task(&ctx.alice, task["id"].as_str().unwrap());
    let res = ctx.alice(Method::DELETE, &url).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert!(res.bytes().await.unwrap().is_empty());
    problem(ctx.alice(Method::GET, &url).send().await.unwrap(), 404).await;
    problem(ctx.alice(Method::DELETE, &url).send().await.unwrap(), 404).await;
    let list = ctx.list(&ctx.alice_token, &ctx.alice, "").await;
    assert_eq!(list["tasks"], json!([keep]));
    assert_eq!(ctx.list(&ctx.alice_token, &ctx.alice, "tag=x").await["tasks"], json!([]));
}

#[tokio::test]
async fn list_filters_sorts_and_pages_with_cursors() {
    let ctx = start().await;
    for i in 0..25 {
        let priority = ["low", "medium", "high"][i % 3];
        let mut body = json!({"title": format!("task {i:02}"), "priority": priority});
        if i % 5 == 0 {
            body["tags"] = json!(["five"]);
            body["description"] = json!("50% done_now");
        }
        if i % 2 == 0 {
            body["due_at"] = json!(format!("2020-01-{:02}T00:00:00Z", i + 1));
        }
        ctx.create(body).await;
    }
    let list = |q: &'static str| ctx.list(&ctx.alice_token, &ctx.alice, q);
    let first = list("").await;
    assert_eq!(first["tasks"].as_array().unwrap().len(), 20, "default limit");
    assert_eq!(first["tasks"][0]["title"], "task 24", "newest first by default");
    let cursor = first["next_cursor"].as_str().expect("more pages").to_owned();
    let second = ctx.list(&ctx.alice_token, &ctx.alice, &format!("cursor={cursor}")).await;
    assert_eq!(second["tasks"].as_array().unwrap().len(), 5);
    assert_eq!(second["next_cursor"], Value::Null);
    assert_eq!(second["tasks"][4]["title"], "task 00");

    assert_eq!(list("tag=FIVE").await["tasks"].as_array().unwrap().len(), 5);
    assert_eq!(list("q=50%25%20DONE_").await["tasks"].as_array().unwrap().len(), 5);
    assert_eq!(list("q=0%25").await["tasks"].as_array().unwrap().len(), 5, "% is literal: '50%' matches");
    assert_eq!(list("q=task%2001").await["tasks"][0]["title"], "task 01");
    assert_eq!(list("priority=high&limit=100").await["tasks"].as_array().unwrap().len(), 8);
    assert_eq!(list("overdue=true&limit=100").await["tasks"].as_array().unwrap().len(), 13);
    assert_eq!(list("due_before=2020-01-03T00:00:00Z").await["tasks"].as_array().unwrap().len(), 1);
    let by_due = list("sort=due&limit=100").await;
    let dues: Vec<&Value> = by_due["tasks"].as_array().unwrap().iter().map(|t| &t["due_at"]).collect();
    assert_eq!(dues[0], "2020-01-01T00:00:00.000Z");
    assert!(dues[13..].iter().all(|d| d.is_null()), "no due date sorts last");
    assert_eq!(list("sort=title&order=desc&limit=1").await["tasks"][0]["title"], "task 24");
    assert_eq!(list("status=completed").await["tasks"], json!([]));
}

#[tokio::test]
async fn bad_query_parameters_and_cursors_are_422_naming_them() {
    let ctx = start().await;
    ctx.create(json!({"title": "a"})).await;
    ctx.create(json!({"title": "b"})).await;
    let by_title = ctx.list(&ctx.alice_token, &ctx.alice, "sort=title&limit=1").await;
    let title_cursor = by_title["next_cursor"].as_str().unwrap().to_owned();
    let cases: Vec<(String, Vec<&str>)> = vec![
        ("status=done".into(), vec!["#/status"]),
        ("priority=urgent".into(), vec!["#/priority"]),
        ("tag=a%20b".into(), vec!["#/tag"]),
        ("q=".into(), vec!["#/q"]),
        (format!("q={}", "x".repeat(201)), vec!["#/q"]),
        ("due_before=tomorrow".into(), vec!["#/due_before"]),
        ("due_after=2026-02-30T00:00:00Z".into(), vec!["#/due_after"]),
        ("overdue=1".into(), vec!["#/overdue"]),
        ("sort=size".into(), vec!["#/sort"]),
        ("order=up".into(), vec!["#/order"]),
        ("limit=0".into(), vec!["#/limit"]),
        ("limit=101".into(), vec!["#/limit"]),
        ("limit=abc".into(), vec!["#/limit"]),
        ("page=2".into(), vec!["#/page"]),
        ("cursor=garbage".into(), vec!["#/cursor"]),
        (format!("cursor={title_cursor}"), vec!["#/cursor"]),
        (format!("sort=title&order=desc&cursor={title_cursor}"), vec!["#/cursor"]),
        ("limit=5&limit=6".into(), vec!["#/limit"]),
        ("status=x&limit=0".into(), vec!["#/status", "#/limit"]),
    ];
    for (query, expected) in cases {
        let res = ctx.alice(Method::GET, &format!("{}?{query}", ctx.tasks(&ctx.alice))).send().await.unwrap();
        let p = problem(res, 422).await;
        assert_eq!(pointers(&p), expected, "{query}");
    }
    let ok = ctx.list(&ctx.alice_token, &ctx.alice, &format!("sort=title&cursor={title_cursor}")).await;
    assert_eq!(ok["tasks"][0]["title"], "b");
}

#[tokio::test]
async fn operations_endpoints_answer() {
    let ctx = start().await;
    let health = ctx.http.get(format!("{}/health", ctx.base)).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let ready = ctx.http.get(format!("{}/ready", ctx.base)).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    assert_eq!(ready.json::<Value>().await.unwrap()["checks"]["database"], "ok");
    let metrics = ctx.http.get(format!("{}/metrics", ctx.base)).send().await.unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);
    problem(ctx.http.get(format!("{}/api/nowhere", ctx.base)).send().await.unwrap(), 404).await;
}
