//! The HTTP handlers: authenticate, parse, call [`Assistant`], shape the response (JSON or
//! Server-Sent Events).

use std::convert::Infallible;

use axum::Router;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use flotilla_runtime::auth::{Auth, AuthContext, bearer_token, require_auth};
use flotilla_runtime::ids::is_id;
use flotilla_runtime::time::format_ms;
use flotilla_runtime::{ApiJson, ApiPath, ApiQuery, FieldError, Problem};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::mpsc;

use crate::error::ChatError;
use crate::model::{Role, ToolCall};
use crate::store::{After, Conversation, Message};
use crate::turn::{Assistant, ChatInput, TurnBody};

type Result<T, E = ChatError> = std::result::Result<T, E>;

/// Default and largest page of conversations.
pub const PAGE_DEFAULT: i64 = 20;
pub const PAGE_MAX: i64 = 100;

/// The API routes and `/mcp`, behind token verification.
pub fn router(assistant: Assistant, auth: &AuthContext) -> Router {
    let mcp = Router::new().nest_service("/mcp", crate::mcp::service(assistant.tasks().clone()));
    Router::new()
        .route("/api/{user_id}/chat", post(chat))
        .route("/api/{user_id}/conversations", get(list))
        .route("/api/{user_id}/conversations/{id}", get(read).delete(remove))
        .with_state(assistant)
        .merge(mcp)
        .layer(axum::middleware::from_fn_with_state(auth.verifier.clone(), require_auth))
}

/// A conversation without its messages.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = Conversation)]
pub struct ConversationJson {
    pub id: String,
    pub title: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When its last message was stored.
    #[schema(format = DateTime)]
    pub updated_at: String,
}

impl From<&Conversation> for ConversationJson {
    fn from(c: &Conversation) -> Self {
        Self {
            id: c.id.clone(),
            title: c.title.clone(),
            created_at: format_ms(c.created_at),
            updated_at: format_ms(c.updated_at),
        }
    }
}

/// One message of a conversation.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = ChatMessage)]
pub struct MessageJson {
    pub id: String,
    /// 1, 2, 3 … the order of the conversation.
    pub seq: i64,
    pub role: Role,
    pub content: String,
    /// The tool calls of an assistant message (empty for the user's).
    pub tool_calls: Vec<ToolCall>,
    #[schema(format = DateTime)]
    pub created_at: String,
}

impl From<&Message> for MessageJson {
    fn from(m: &Message) -> Self {
        Self {
            id: m.id.clone(),
            seq: m.seq,
            role: m.role,
            content: m.content.clone(),
            tool_calls: m.tool_calls.clone(),
            created_at: format_ms(m.created_at),
        }
    }
}

/// A conversation with every message, in order.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = ConversationDetail)]
pub struct ConversationDetail {
    #[serde(flatten)]
    #[schema(inline)]
    pub conversation: ConversationJson,
    pub messages: Vec<MessageJson>,
}

/// One page of conversations.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = ConversationList)]
pub struct ListBody {
    pub conversations: Vec<ConversationJson>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    #[schema(required)]
    pub next_cursor: Option<String>,
}

/// Chat with the assistant
///
/// Sends one message; the assistant answers, calling task tools as the signed-in user. The
/// user's message is stored before the assistant runs. With `Accept: text/event-stream` the
/// same turn is streamed as Server-Sent Events:
/// - `conversation` — `{conversation_id}`, first;
/// - `tool_call` — one per tool call as it completes: `{name, arguments, result}`;
/// - `message` — `{response}`: the reply text;
/// - `done` — the full JSON body of the non-streamed answer, last;
/// - `error` — instead of `message`/`done` when the turn failed: a problem+json object.
///
/// Validation errors and unknown conversations are answered as problem+json before any stream starts.
#[utoipa::path(
    post,
    path = "/api/{user_id}/chat",
    operation_id = "chat",
    tag = "assistant",
    params(("user_id" = String, Path, description = "The signed-in user's id (another user's is 403).")),
    request_body = ChatInput,
    responses(
        (status = 200, description = "The assistant's answer (JSON), or the turn as Server-Sent Events.",
            content(
                (TurnBody = "application/json"),
                (String = "text/event-stream"),
            )),
        (status = 400, description = "The body is not valid JSON."),
        (status = 401, description = "Missing, invalid, expired or revoked access token."),
        (status = 403, description = "The path user is not the signed-in user."),
        (status = 404, description = "No such conversation."),
        (status = 413, description = "The body is too large."),
        (status = 415, description = "The body is not `application/json`."),
        (status = 422, description = "Invalid fields (`message` 1 to 4000 characters, `tz` an IANA zone), each listed in `errors`."),
    ),
    security(("bearer" = []))
)]
async fn chat(
    State(assistant): State<Assistant>,
    auth: Auth,
    ApiPath(user_id): ApiPath<String>,
    req: Request,
) -> Result<Response> {
    auth.require_user(&user_id)?;
    // Parsed after the user check: another user's path is a 403 whatever the body.
    let headers = req.headers().clone();
    let ApiJson(input) = ApiJson::<ChatInput>::from_request(req, &()).await?;
    let begun = assistant.begin(&user_id, input).await?;
    // In embedded mode the gateway verified the token and passes it on unchanged.
    let bearer = bearer_token(&headers).unwrap_or_default().to_owned();
    if wants_event_stream(&headers) {
        return Ok(stream(assistant, begun, bearer).into_response());
    }
    // The turn runs in its own task: a client that goes away does not cut it in the middle.
    let body = tokio::spawn(async move { assistant.finish(begun, bearer, None).await })
        .await
        .map_err(|e| ChatError::Turn(e.to_string()))??;
    Ok(axum::Json(body).into_response())
}

fn wants_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|t| t.trim().starts_with("text/event-stream")))
}

/// The turn as SSE events (see [`chat`]); runs in its own task like the JSON turn.
fn stream(assistant: Assistant, begun: crate::turn::Begun, bearer: String) -> impl IntoResponse {
    let (tx, mut rx) = mpsc::channel::<SseEvent>(32);
    tokio::spawn(async move {
        let _ = tx.send(json_event("conversation", &json!({"conversation_id": begun.conversation.id}))).await;
        let (calls_tx, mut calls_rx) = mpsc::channel::<ToolCall>(16);
        let forward_tx = tx.clone();
        let forward = tokio::spawn(async move {
            while let Some(call) = calls_rx.recv().await {
                let _ = forward_tx.send(json_event("tool_call", &call)).await;
            }
        });
        let result = assistant.finish(begun, bearer, Some(calls_tx)).await;
        let _ = forward.await; // every tool_call goes out before the end
        match result {
            Ok(body) => {
                let _ = tx.send(json_event("message", &json!({"response": body.response}))).await;
                let _ = tx.send(json_event("done", &body)).await;
            }
            Err(e) => {
                let _ = tx.send(json_event("error", &Problem::from(e))).await;
            }
        }
    });
    let events = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|e| e.map(Ok::<_, Infallible>)));
    Sse::new(events).keep_alive(KeepAlive::default())
}

fn json_event<T: Serialize>(name: &'static str, data: &T) -> SseEvent {
    SseEvent::default().event(name).json_data(data).unwrap_or_else(|_| SseEvent::default().event(name).data("{}"))
}

/// List conversations
///
/// The signed-in user's conversations, most recently active first; pages follow `next_cursor`.
#[utoipa::path(
    get,
    path = "/api/{user_id}/conversations",
    operation_id = "list_conversations",
    tag = "assistant",
    params(
        ("user_id" = String, Path, description = "The signed-in user's id (another user's is 403)."),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 100, description = "Page size (20 by default)."),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page."),
    ),
    responses(
        (status = 200, description = "One page of conversations.", body = ListBody),
        (status = 401, description = "Missing, invalid, expired or revoked access token."),
        (status = 403, description = "The path user is not the signed-in user."),
        (status = 422, description = "Invalid or unknown query parameters, each listed in `errors`."),
    ),
    security(("bearer" = []))
)]
async fn list(
    State(assistant): State<Assistant>,
    auth: Auth,
    ApiPath(user_id): ApiPath<String>,
    ApiQuery(pairs): ApiQuery<Vec<(String, String)>>,
) -> Result<Response> {
    auth.require_user(&user_id)?;
    let (limit, after) = parse_list_query(&pairs).map_err(ChatError::Invalid)?;
    let mut page = assistant.store().conversations(&user_id, limit + 1, after.as_ref()).await?;
    let next_cursor = if page.len() as i64 > limit {
        page.truncate(limit as usize);
        page.last().map(|c| encode_cursor(c.updated_at, &c.id))
    } else {
        None
    };
    let body = ListBody { conversations: page.iter().map(ConversationJson::from).collect(), next_cursor };
    Ok(axum::Json(body).into_response())
}

/// Read a conversation
#[utoipa::path(
    get,
    path = "/api/{user_id}/conversations/{id}",
    operation_id = "get_conversation",
    tag = "assistant",
    params(
        ("user_id" = String, Path, description = "The signed-in user's id (another user's is 403)."),
        ("id" = String, Path, description = "The conversation's id (another user's is 404)."),
    ),
    responses(
        (status = 200, description = "The conversation and its messages, in order.", body = ConversationDetail),
        (status = 401, description = "Missing, invalid, expired or revoked access token."),
        (status = 403, description = "The path user is not the signed-in user."),
        (status = 404, description = "No such conversation."),
    ),
    security(("bearer" = []))
)]
async fn read(
    State(assistant): State<Assistant>,
    auth: Auth,
    ApiPath((user_id, id)): ApiPath<(String, String)>,
) -> Result<Response> {
    auth.require_user(&user_id)?;
    if !is_id(&id) {
        return Err(ChatError::NotFound);
    }
    let conv = assistant.store().conversation(&user_id, &id).await?.ok_or(ChatError::NotFound)?;
    let messages = assistant.store().messages(&conv.id).await?;
    let body =
        ConversationDetail { conversation: (&conv).into(), messages: messages.iter().map(MessageJson::from).collect() };
    Ok(axum::Json(body).into_response())
}

/// Delete a conversation
#[utoipa::path(
    delete,
    path = "/api/{user_id}/conversations/{id}",
    operation_id = "delete_conversation",
    tag = "assistant",
    params(
        ("user_id" = String, Path, description = "The signed-in user's id (another user's is 403)."),
        ("id" = String, Path, description = "The conversation's id (another user's is 404)."),
    ),
    responses(
        (status = 204, description = "Deleted, with its messages."),
        (status = 401, description = "Missing, invalid, expired or revoked access token."),
        (status = 403, description = "The path user is not the signed-in user."),
        (status = 404, description = "No such conversation."),
    ),
    security(("bearer" = []))
)]
async fn remove(
    State(assistant): State<Assistant>,
    auth: Auth,
    ApiPath((user_id, id)): ApiPath<(String, String)>,
) -> Result<Response> {
    auth.require_user(&user_id)?;
    if !is_id(&id) || !assistant.store().delete_conversation(&user_id, &id).await? {
        return Err(ChatError::NotFound);
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `limit` and `cursor`; anything else is a 422 naming the parameter.
fn parse_list_query(pairs: &[(String, String)]) -> Result<(i64, Option<After>), Vec<FieldError>> {
    let mut errors = Vec::new();
    let (mut limit, mut after) = (PAGE_DEFAULT, None);
    let mut seen: Vec<&str> = Vec::new();
    for (k, v) in pairs {
        if seen.contains(&k.as_str()) {
            errors.push(FieldError::new(k, "is repeated"));
            continue;
        }
        seen.push(k);
        match k.as_str() {
            "limit" => match v.parse::<i64>() {
                Ok(n) if (1..=PAGE_MAX).contains(&n) => limit = n,
                _ => errors.push(FieldError::new("limit", format!("must be a whole number from 1 to {PAGE_MAX}"))),
            },
            "cursor" => match decode_cursor(v) {
                Some(a) => after = Some(a),
                None => errors.push(FieldError::new("cursor", "is not a cursor returned by this API")),
            },
            _ => errors.push(FieldError::new(k, "is not a known parameter")),
        }
    }
    if errors.is_empty() { Ok((limit, after)) } else { Err(errors) }
}

/// Opaque keyset cursor: base64url of `{"v":1,"u":updated_at,"id":…}`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CursorJson {
    v: u8,
    u: i64,
    id: String,
}

fn encode_cursor(updated_at: i64, id: &str) -> String {
    let c = CursorJson { v: 1, u: updated_at, id: id.to_owned() };
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&c).unwrap_or_default())
}

fn decode_cursor(s: &str) -> Option<After> {
    let bytes = URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok()?;
    let c: CursorJson = serde_json::from_slice(&bytes).ok()?;
    (c.v == 1 && is_id(&c.id)).then_some(After { updated_at: c.u, id: c.id })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let id = flotilla_runtime::ids::new_id();
        let c = encode_cursor(42, &id);
        assert_eq!(decode_cursor(&c), Some(After { updated_at: 42, id }));
        assert_eq!(decode_cursor("nope"), None);
        let pairs = |v: &[(&str, &str)]| v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect::<Vec<_>>();
        assert!(parse_list_query(&pairs(&[("limit", "0")])).is_err());
        assert!(parse_list_query(&pairs(&[("limit", "5"), ("limit", "6")])).is_err());
        assert!(parse_list_query(&pairs(&[("page", "2")])).is_err());
        assert_eq!(parse_list_query(&pairs(&[("limit", "100")])).unwrap().0, 100);
    }

    #[test]
    fn event_stream_is_asked_for_by_accept() {
        let mut h = HeaderMap::new();
        assert!(!wants_event_stream(&h));
        h.insert(header::ACCEPT, "application/json, text/event-stream;q=0.9".parse().unwrap());
        assert!(wants_event_stream(&h));
    }
}
