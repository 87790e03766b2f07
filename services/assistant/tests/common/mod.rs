//! Test harness: the assistant served on a loopback port (SQLite in a temp dir) with a real
//! tasks service in process as its upstream, real EdDSA tokens, and a fake LLM server that
//! speaks Ollama's and OpenAI's wire protocols from a script.
#![allow(dead_code)] // each test binary uses a part

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use flotilla_assistant::Config;
use flotilla_runtime::auth::{AuthContext, Claims, JwkSet, Role, SigningKey, TokenPolicy};
use flotilla_runtime::config::{Env, RuntimeConfig};
use flotilla_runtime::db::{Db, PoolSettings};
use flotilla_runtime::ids::new_id;
use flotilla_runtime::time::now_secs;
use flotilla_runtime::upstream::Upstream;
use serde_json::{Value, json};
use tower::ServiceExt;

pub const ISSUER: &str = "flotilla";
pub const AUDIENCE: &str = "flotilla-api";

pub struct Ctx {
    pub base: String,
    pub http: reqwest::Client,
    pub alice: String,
    pub bob: String,
    pub alice_token: String,
    pub bob_token: String,
    pub key: SigningKey,
    pub db: Db,
    pub tasks: Router,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

pub fn claims(sub: &str, exp_in: i64) -> Claims {
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

pub fn runtime() -> RuntimeConfig {
    RuntimeConfig::from_env(&Env::from_pairs([("FLOTILLA_LOG_FORMAT", "human")])).expect("defaults")
}

/// The assistant with `cfg`, a fresh tasks service in process, and two users.
pub async fn start(cfg: Config) -> Ctx {
    let dir = tempfile::tempdir().expect("temp dir");
    let open = |name: &'static str, migrations| {
        let url = format!("sqlite://{}", dir.path().join(format!("{name}.db")).display());
        async move { Db::open_and_migrate(name, &url, migrations, PoolSettings::default()).await.expect("database") }
    };
    let tasks_db = open(flotilla_tasks::SERVICE, flotilla_tasks::MIGRATIONS).await;
    let db = open(flotilla_assistant::SERVICE, flotilla_assistant::MIGRATIONS).await;
    let auth = AuthContext::new(TokenPolicy { issuer: ISSUER.into(), audience: AUDIENCE.into() });
    let key = SigningKey::generate();
    auth.keys.replace(JwkSet { keys: vec![key.jwk()] });
    let rt = runtime();
    let tasks = flotilla_tasks::app(&rt, tasks_db, auth.clone());
    let app = flotilla_assistant::app(&cfg, &rt, db.clone(), auth, Upstream::InProcess(tasks.clone()));
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
        alice_token: key.sign(&claims(&alice, 900)),
        bob_token: key.sign(&claims(&bob, 900)),
        key,
        alice,
        bob,
        db,
        tasks,
        _dir: dir,
        _stop: stop,
    }
}

impl Ctx {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn chat_url(&self, user: &str) -> String {
        self.url(&format!("/api/{user}/chat"))
    }

    /// Alice says `message` (in `conversation`, if any); the JSON answer.
    pub async fn chat(&self, conversation: Option<&str>, message: &str) -> Value {
        let mut body = json!({"message": message});
        if let Some(c) = conversation {
            body["conversation_id"] = json!(c);
        }
        let res =
            self.http.post(self.chat_url(&self.alice)).bearer_auth(&self.alice_token).json(&body).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "chat {message:?}");
        res.json().await.unwrap()
    }

    /// A user's tasks as the tasks service has them stored now.
    pub async fn stored_tasks(&self, user: &str, token: &str) -> Vec<Value> {
        let req = Request::get(format!("/api/{user}/tasks?status=all&limit=100"))
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        let res = self.tasks.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let bytes = axum::body::to_bytes(res.into_body(), 10_000_000).await.unwrap();
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        v["tasks"].as_array().cloned().unwrap_or_default()
    }

    pub async fn alice_tasks(&self) -> Vec<Value> {
        self.stored_tasks(&self.alice, &self.alice_token).await
    }

    /// Rows of a table of the assistant's database.
    pub async fn count(&self, table_sql: &'static str) -> i64 {
        sqlx::query_scalar(table_sql).fetch_one(self.db.read()).await.unwrap()
    }

    /// A conversation as the API returns it.
    pub async fn conversation(&self, id: &str) -> Value {
        let res = self
            .http
            .get(self.url(&format!("/api/{}/conversations/{id}", self.alice)))
            .bearer_auth(&self.alice_token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        res.json().await.unwrap()
    }

    pub async fn metrics(&self) -> String {
        self.http.get(self.url("/metrics")).send().await.unwrap().text().await.unwrap()
    }
}

/// The value of one series in a Prometheus text scrape (0 when absent).
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines().find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().parse::<f64>().ok())).unwrap_or(0.0)
}

/// Checks a problem+json response with this status and returns its body.
pub async fn problem(res: reqwest::Response, status: u16) -> Value {
    assert_eq!(res.status().as_u16(), status, "status of {}", res.url());
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], status);
    body
}

/// One answer of the fake LLM.
#[derive(Debug, Clone)]
pub enum Scripted {
    Json(Value),
    Status(u16),
    /// Answers after a pause.
    Slow(Duration, Value),
}

/// A request the fake LLM received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub authorization: Option<String>,
    pub body: Value,
}

/// A fake LLM endpoint: answers each request with the next scripted answer (500 when the script
/// is exhausted) and records what it received. Serves `/api/chat` (Ollama) and
/// `/v1/chat/completions` (OpenAI).
#[derive(Clone)]
pub struct FakeLlm {
    pub url: String,
    script: Arc<Mutex<VecDeque<Scripted>>>,
    received: Arc<Mutex<Vec<Received>>>,
}

impl FakeLlm {
    pub async fn start() -> Self {
        let fake = FakeLlm {
            url: String::new(),
            script: Arc::new(Mutex::new(VecDeque::new())),
            received: Arc::new(Mutex::new(Vec::new())),
        };
        let app = Router::new()
            .route("/api/chat", post(answer))
            .route("/v1/chat/completions", post(answer))
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        FakeLlm { url, ..fake }
    }

    pub fn push(&self, answer: Scripted) {
        self.script.lock().unwrap().push_back(answer);
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    pub fn remaining(&self) -> usize {
        self.script.lock().unwrap().len()
    }
}

async fn answer(State(fake): State<FakeLlm>, headers: HeaderMap, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let bytes = axum::body::to_bytes(req.into_body(), 10_000_000).await.unwrap_or_default();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let authorization = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
    fake.received.lock().unwrap().push(Received { path, authorization, body });
    let next = fake.script.lock().unwrap().pop_front();
    match next {
        Some(Scripted::Json(v)) => axum::Json(v).into_response(),
        Some(Scripted::Status(s)) => {
            (StatusCode::from_u16(s).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), "scripted failure").into_response()
        }
        Some(Scripted::Slow(d, v)) => {
            tokio::time::sleep(d).await;
            axum::Json(v).into_response()
        }
        None => (StatusCode::INTERNAL_SERVER_ERROR, "script exhausted").into_response(),
    }
}

/// An OpenAI answer with text.
pub fn openai_text(text: &str) -> Value {
    json!({"id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-test",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}]})
}

/// An OpenAI answer with tool calls `(id, name, arguments as a JSON string)`.
pub fn openai_calls(calls: &[(&str, &str, &str)]) -> Value {
    let calls: Vec<Value> = calls
        .iter()
        .map(|(id, name, args)| json!({"id": id, "type": "function", "function": {"name": name, "arguments": args}}))
        .collect();
    json!({"id": "chatcmpl-2", "object": "chat.completion", "model": "gpt-test",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": null, "tool_calls": calls}}]})
}

/// An Ollama answer with text.
pub fn ollama_text(text: &str) -> Value {
    json!({"model": "llama-test", "created_at": "2026-11-23T10:00:00Z",
        "message": {"role": "assistant", "content": text}, "done": true, "done_reason": "stop"})
}

/// An Ollama answer with tool calls `(name, arguments)`.
pub fn ollama_calls(calls: &[(&str, Value)]) -> Value {
    let calls: Vec<Value> =
        calls.iter().map(|(name, args)| json!({"function": {"name": name, "arguments": args}})).collect();
    json!({"model": "llama-test", "created_at": "2026-11-23T10:00:00Z",
        "message": {"role": "assistant", "content": "", "tool_calls": calls}, "done": true})
}
