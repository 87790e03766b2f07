//! What a turn is made of, shared by the rules engine, the LLM providers, the store, the HTTP
//! API and the MCP server.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One tool call of a turn, as returned to clients and stored with the assistant's message.
/// `result` is what the tool really returned (`{task_id, status, title}`, `{tasks:[…], count}`,
/// or `{error, status?}`): replies are built from it, never from what was intended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ToolCall {
    pub name: String,
    pub arguments: Value,
    pub result: Value,
}

impl ToolCall {
    /// The tool did what it was asked (its result carries no `error`).
    pub fn succeeded(&self) -> bool {
        self.result.get("error").is_none()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
}

/// A stored message of a conversation. `state` is the rules engine's memory after an assistant
/// message (the last list shown, a pending confirmation, what "undo" would revert): kept in the
/// database with the message so that any replica can serve the next turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryMessage {
    pub role: Role,
    pub content: String,
    pub tool_calls: Vec<ToolCall>,
    pub state: Option<Value>,
}
