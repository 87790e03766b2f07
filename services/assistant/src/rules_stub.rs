//! TEMPORARY stand-in for `crate::rules` until the rules engine lands (same signatures).
//! Deleted once `rules::turn` exists.

use crate::model::{HistoryMessage, ToolCall};
use crate::tools::UserTools;

pub struct Context<'a> {
    pub now: time::OffsetDateTime,
    pub tz: &'a str,
    pub history: &'a [HistoryMessage],
}

pub struct Reply {
    pub response: String,
    pub tool_calls: Vec<ToolCall>,
    pub state: Option<serde_json::Value>,
}

pub async fn turn(_ctx: &Context<'_>, message: &str, tools: &UserTools) -> Reply {
    if let Some(title) = message.strip_prefix("add ") {
        let call = tools.call("add_task", serde_json::json!({"title": title})).await;
        return Reply { response: format!("Added {title}"), tool_calls: vec![call], state: None };
    }
    let call = tools.call("list_tasks", serde_json::json!({})).await;
    Reply { response: "Here are your tasks.".into(), tool_calls: vec![call], state: None }
}
