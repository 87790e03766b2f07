//! The LLM providers (Ollama's native `/api/chat`, any OpenAI-compatible `/chat/completions`)
//! and the tool-calling loop: model → tool calls (run through [`UserTools`], i.e. the tasks API
//! as the signed-in user) → results → model, until the model answers in text, the step budget
//! is spent, or something fails.
//!
//! Failures are reported, never hidden: the caller falls back to the rules engine when no tool
//! ran yet, and otherwise answers with what was really done (see `crate::turn`). A circuit
//! breaker stops calling an LLM that keeps failing.

mod ollama;
mod openai;

use std::time::{Duration, Instant};

use axum::http::header;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use flotilla_runtime::breaker::CircuitBreaker;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::config::{Config, Provider};
use crate::metrics::LLM_REQUEST_DURATION_SECONDS;
use crate::model::{HistoryMessage, Role, ToolCall};
use crate::tools::{TOOL_NAMES, ToolDefinition, UserTools, definitions};

/// One message of the provider-neutral transcript sent to a model.
#[derive(Debug, Clone, PartialEq)]
pub enum Msg {
    System(String),
    User(String),
    Assistant { content: String, calls: Vec<Requested> },
    Tool { call_id: String, name: String, content: String },
}

/// A tool call the model asked for, with valid JSON-object arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct Requested {
    pub id: String,
    pub name: String,
    pub arguments: Value,
}

/// What a model answered: text, or tool calls to run.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelReply {
    pub content: String,
    pub calls: Vec<Requested>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LlmError {
    #[error("the language model did not answer in time")]
    Timeout,
    #[error("the language model is unreachable: {0}")]
    Unavailable(String),
    #[error("the language model answered HTTP {0}")]
    Status(u16),
    #[error("the language model's answer is not in the expected format: {0}")]
    Malformed(String),
    #[error("the language model asked for an invalid tool call: {0}")]
    BadToolCall(String),
    #[error("the language model is failing; calls are paused for a while")]
    CircuitOpen,
}

impl LlmError {
    /// The `outcome` label of `llm_request_duration_seconds`.
    fn label(&self) -> &'static str {
        match self {
            LlmError::Timeout => "timeout",
            LlmError::Unavailable(_) | LlmError::CircuitOpen => "unavailable",
            LlmError::Status(_) => "http_error",
            LlmError::Malformed(_) | LlmError::BadToolCall(_) => "malformed",
        }
    }

    /// A bad tool call is the model's choice, not the endpoint failing: it does not open the
    /// circuit.
    fn is_endpoint_failure(&self) -> bool {
        !matches!(self, LlmError::BadToolCall(_) | LlmError::CircuitOpen)
    }
}

/// How a loop ended.
#[derive(Debug, Clone, PartialEq)]
pub enum LoopEnd {
    /// The model answered in text after running `tool_calls`.
    Answer { response: String, tool_calls: Vec<ToolCall> },
    /// The model kept asking for tools until the step budget was spent.
    OutOfSteps { tool_calls: Vec<ToolCall> },
    /// A request failed; `tool_calls` ran before it (their effects are real).
    Failed { error: LlmError, tool_calls: Vec<ToolCall> },
}

/// The wire protocol of one endpoint.
#[derive(Debug, Clone)]
enum Wire {
    Ollama { url: String, model: String },
    OpenAi { url: String, api_key: String, model: String },
}

/// An LLM endpoint with its client, limits and circuit breaker (one per service instance).
pub struct Llm {
    provider: &'static str,
    wire: Wire,
    http: HttpClient,
    timeout: Duration,
    max_steps: u32,
    breaker: CircuitBreaker,
    tools: Vec<ToolDefinition>,
}

impl Llm {
    /// The LLM of `cfg`, or `None` for the rules provider.
    pub fn new(cfg: &Config) -> Option<Self> {
        let wire = match &cfg.provider {
            Provider::Rules => return None,
            Provider::Ollama { url, model } => Wire::Ollama { url: format!("{url}/api/chat"), model: model.clone() },
            Provider::OpenAi { base_url, api_key, model } => Wire::OpenAi {
                url: format!("{base_url}/chat/completions"),
                api_key: api_key.clone(),
                model: model.clone(),
            },
        };
        let http = client(cfg.llm_timeout.min(Duration::from_secs(5)));
        let provider = cfg.provider.name();
        Some(Self {
            provider,
            wire,
            http,
            timeout: cfg.llm_timeout,
            max_steps: cfg.max_steps,
            breaker: CircuitBreaker::new(provider, cfg.breaker_threshold, cfg.breaker_open),
            tools: definitions(),
        })
    }

    pub fn provider(&self) -> &'static str {
        self.provider
    }

    /// Whether a turn would be sent to the fallback at once (open circuit).
    pub fn is_open(&self) -> bool {
        self.breaker.is_open()
    }

    /// Runs the loop for one user message until `deadline`. Each tool call is sent on `sink`
    /// as soon as it ran (the SSE stream shows them live).
    pub async fn run(
        &self,
        system: String,
        history: &[HistoryMessage],
        message: &str,
        tools: &UserTools,
        sink: Option<&mpsc::Sender<ToolCall>>,
        deadline: Instant,
    ) -> LoopEnd {
        let mut transcript = vec![Msg::System(system)];
        transcript.extend(replay(history));
        transcript.push(Msg::User(message.to_owned()));
        let mut done: Vec<ToolCall> = Vec::new();
        for step in 0..self.max_steps {
            let mut reply = match self.request(&transcript, deadline).await {
                Ok(r) => r,
                Err(error) => return LoopEnd::Failed { error, tool_calls: done },
            };
            if reply.calls.is_empty() {
                return LoopEnd::Answer { response: reply.content, tool_calls: done };
            }
            // Ollama sends no ids; the transcript pairs each result with its call by id.
            for (i, call) in reply.calls.iter_mut().enumerate() {
                if call.id.is_empty() {
                    call.id = format!("call_{step}_{i}");
                }
            }
            let mut results = Vec::with_capacity(reply.calls.len());
            for call in &reply.calls {
                let mut arguments = call.arguments.clone();
                // The user is the token's: a model-supplied user id is dropped, never used.
                if let Some(obj) = arguments.as_object_mut() {
                    obj.remove("user_id");
                }
                let ran = tools.call(&call.name, arguments).await;
                if let Some(sink) = sink {
                    let _ = sink.send(ran.clone()).await;
                }
                results.push(Msg::Tool {
                    call_id: call.id.clone(),
                    name: call.name.clone(),
                    content: ran.result.to_string(),
                });
                done.push(ran);
            }
            transcript.push(Msg::Assistant { content: reply.content, calls: reply.calls });
            transcript.extend(results);
        }
        LoopEnd::OutOfSteps { tool_calls: done }
    }

    /// One model request within the per-request limit and the turn's deadline, through the
    /// breaker, timed into `llm_request_duration_seconds`.
    async fn request(&self, transcript: &[Msg], deadline: Instant) -> Result<ModelReply, LlmError> {
        if self.breaker.try_acquire().is_err() {
            return Err(LlmError::CircuitOpen);
        }
        let limit = self.timeout.min(deadline.saturating_duration_since(Instant::now()));
        let start = Instant::now();
        let out = match tokio::time::timeout(limit, self.send(transcript)).await {
            Ok(r) => r.and_then(|reply| check_calls(&reply).map(|()| reply)),
            Err(_) => Err(LlmError::Timeout),
        };
        let outcome = match &out {
            Ok(_) => "ok",
            Err(e) => e.label(),
        };
        metrics::histogram!(LLM_REQUEST_DURATION_SECONDS, "provider" => self.provider, "outcome" => outcome)
            .record(start.elapsed().as_secs_f64());
        match &out {
            Err(e) if e.is_endpoint_failure() => {
                tracing::warn!(provider = self.provider, error = %e, "LLM request failed");
                self.breaker.record_failure();
            }
            Err(e) => {
                tracing::warn!(provider = self.provider, error = %e, "LLM asked for an invalid tool call");
                self.breaker.record_success();
            }
            Ok(_) => self.breaker.record_success(),
        }
        out
    }

    async fn send(&self, transcript: &[Msg]) -> Result<ModelReply, LlmError> {
        let (url, body, key) = match &self.wire {
            Wire::Ollama { url, model } => (url, ollama::request(model, transcript, &self.tools), None),
            Wire::OpenAi { url, api_key, model } => {
                (url, openai::request(model, transcript, &self.tools), Some(api_key.as_str()).filter(|k| !k.is_empty()))
            }
        };
        let mut req = hyper::Request::post(url.as_str()).header(header::CONTENT_TYPE, "application/json");
        if let Some(key) = key {
            req = req.header(header::AUTHORIZATION, format!("Bearer {key}"));
        }
        let req = req
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| LlmError::Unavailable(format!("cannot build the request: {e}")))?;
        // Errors of the client never include the URL's query or the key.
        let res = self.http.request(req).await.map_err(|e| LlmError::Unavailable(error_chain(&e)))?;
        let status = res.status();
        if !status.is_success() {
            return Err(LlmError::Status(status.as_u16()));
        }
        let bytes = Limited::new(res.into_body(), RESPONSE_LIMIT)
            .collect()
            .await
            .map_err(|e| LlmError::Malformed(format!("reading the answer failed: {e}")))?
            .to_bytes();
        let body: Value = serde_json::from_slice(&bytes).map_err(|e| LlmError::Malformed(e.to_string()))?;
        match &self.wire {
            Wire::Ollama { .. } => ollama::response(&body),
            Wire::OpenAi { .. } => openai::response(&body),
        }
    }
}

/// Largest model answer read (a chat completion is a few KiB).
const RESPONSE_LIMIT: usize = 4 * 1024 * 1024;

type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A pooled HTTP/1.1 client for `http://` and `https://` endpoints. TLS is rustls with the ring
/// provider (already in the build for NATS) and the bundled Mozilla roots, set on this client
/// only: enabling TLS in the workspace's reqwest would change every other reqwest client.
fn client(connect_timeout: Duration) -> HttpClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
        .expect("ring supports rustls' default protocol versions")
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(https)
}

/// An error with its causes ("client error (Connect): tcp connect error: Connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

/// Every call names one of the six tools: anything else is a malformed answer (nothing runs).
fn check_calls(reply: &ModelReply) -> Result<(), LlmError> {
    for call in &reply.calls {
        if !TOOL_NAMES.contains(&call.name.as_str()) {
            return Err(LlmError::BadToolCall(format!("unknown tool {:?}", call.name)));
        }
        if !call.arguments.is_object() {
            return Err(LlmError::BadToolCall(format!("the arguments of {} are not a JSON object", call.name)));
        }
    }
    Ok(())
}

/// Stored history as a transcript: an assistant message that ran tools becomes its tool calls,
/// their results, and its text, so that the model sees ids it listed before.
fn replay(history: &[HistoryMessage]) -> Vec<Msg> {
    let mut out = Vec::new();
    for (i, m) in history.iter().enumerate() {
        match m.role {
            Role::User => out.push(Msg::User(m.content.clone())),
            Role::Assistant => {
                if !m.tool_calls.is_empty() {
                    let calls: Vec<Requested> = m
                        .tool_calls
                        .iter()
                        .enumerate()
                        .map(|(j, c)| Requested {
                            id: format!("h{i}_{j}"),
                            name: c.name.clone(),
                            arguments: c.arguments.clone(),
                        })
                        .collect();
                    let results = calls.iter().zip(&m.tool_calls).map(|(r, c)| Msg::Tool {
                        call_id: r.id.clone(),
                        name: c.name.clone(),
                        content: c.result.to_string(),
                    });
                    out.push(Msg::Assistant { content: String::new(), calls: calls.clone() });
                    out.extend(results);
                }
                out.push(Msg::Assistant { content: m.content.clone(), calls: Vec::new() });
            }
        }
    }
    out
}
/// The model's message as both wire formats shape it once located (Ollama: `message`, OpenAI:
/// `choices[0].message`): text in `content`, tool calls in `tool_calls[].function.{name,
/// arguments}` (an object or a JSON string) with an optional `id`.
fn reply_from_message(message: &Value) -> Result<ModelReply, LlmError> {
    let content = message.get("content").and_then(Value::as_str).unwrap_or_default().to_owned();
    let mut calls = Vec::new();
    if let Some(list) = message.get("tool_calls").filter(|v| !v.is_null()) {
        let list = list.as_array().ok_or_else(|| LlmError::Malformed("tool_calls is not a list".into()))?;
        for call in list {
            let function =
                call.get("function").ok_or_else(|| LlmError::BadToolCall("a tool call without function".into()))?;
            let name = function
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| LlmError::BadToolCall("a tool call without a name".into()))?;
            let arguments = parse_arguments(name, function.get("arguments").unwrap_or(&Value::Null))?;
            let id = call.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
            calls.push(Requested { id, name: name.to_owned(), arguments });
        }
    }
    if calls.is_empty() && content.trim().is_empty() {
        return Err(LlmError::Malformed("neither text nor tool calls".into()));
    }
    Ok(ModelReply { content, calls })
}

/// Parses tool-call arguments sent as a JSON string (OpenAI; some Ollama models).
fn parse_arguments(name: &str, raw: &Value) -> Result<Value, LlmError> {
    match raw {
        Value::Object(_) => Ok(raw.clone()),
        Value::Null => Ok(Value::Object(Default::default())),
        Value::String(s) if s.trim().is_empty() => Ok(Value::Object(Default::default())),
        Value::String(s) => serde_json::from_str::<Value>(s)
            .ok()
            .filter(Value::is_object)
            .ok_or_else(|| LlmError::BadToolCall(format!("the arguments of {name} are not a JSON object"))),
        _ => Err(LlmError::BadToolCall(format!("the arguments of {name} are not a JSON object"))),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn history_replays_tool_calls_before_the_reply() {
        let history = vec![
            HistoryMessage { role: Role::User, content: "add milk".into(), tool_calls: vec![], state: None },
            HistoryMessage {
                role: Role::Assistant,
                content: "Added".into(),
                tool_calls: vec![ToolCall {
                    name: "add_task".into(),
                    arguments: json!({"title": "milk"}),
                    result: json!({"task_id": "t1", "status": "created", "title": "milk"}),
                }],
                state: None,
            },
        ];
        let t = replay(&history);
        assert_eq!(t.len(), 4);
        assert!(matches!(&t[1], Msg::Assistant { calls, .. } if calls[0].id == "h1_0"));
        assert!(matches!(&t[2], Msg::Tool { call_id, content, .. } if call_id == "h1_0" && content.contains("t1")));
        assert_eq!(t[3], Msg::Assistant { content: "Added".into(), calls: vec![] });
    }

    #[test]
    fn arguments_must_be_json_objects() {
        assert_eq!(parse_arguments("x", &json!("{\"a\":1}")).unwrap(), json!({"a": 1}));
        assert_eq!(parse_arguments("x", &json!({"a": 1})).unwrap(), json!({"a": 1}));
        assert!(parse_arguments("x", &json!("{not json")).is_err());
        assert!(parse_arguments("x", &json!("[1]")).is_err());
        assert!(parse_arguments("x", &json!(3)).is_err());
        let unknown = ModelReply {
            content: String::new(),
            calls: vec![Requested { id: "1".into(), name: "drop_tables".into(), arguments: json!({}) }],
        };
        assert!(matches!(check_calls(&unknown), Err(LlmError::BadToolCall(_))));
    }
}
