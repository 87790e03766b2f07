//! The OpenAI chat completions API (`POST {base}/chat/completions`), as served by OpenAI and the
//! compatible servers. Tool calls come back in `choices[0].message.tool_calls[]` as
//! `{id, type: "function", function: {name, arguments}}` with `arguments` a JSON *string*;
//! results go back as `{role: "tool", tool_call_id, content}` messages.

use serde_json::{Value, json};

use super::{LlmError, ModelReply, Msg, reply_from_message};
use crate::tools::ToolDefinition;

pub fn request(model: &str, transcript: &[Msg], tools: &[ToolDefinition]) -> Value {
    let messages: Vec<Value> = transcript
        .iter()
        .map(|m| match m {
            Msg::System(text) => json!({"role": "system", "content": text}),
            Msg::User(text) => json!({"role": "user", "content": text}),
            Msg::Assistant { content, calls } if calls.is_empty() => json!({"role": "assistant", "content": content}),
            Msg::Assistant { content, calls } => json!({
                "role": "assistant",
                "content": if content.is_empty() { Value::Null } else { json!(content) },
                "tool_calls": calls.iter().map(|c| json!({"id": c.id, "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments.to_string()}})).collect::<Vec<_>>(),
            }),
            Msg::Tool { call_id, content, .. } => json!({"role": "tool", "tool_call_id": call_id, "content": content}),
        })
        .collect();
    json!({
        "model": model,
        "messages": messages,
        "tools": tools.iter().map(|t| json!({"type": "function", "function": {
            "name": t.name, "description": t.description, "parameters": t.parameters}})).collect::<Vec<_>>(),
    })
}

pub fn response(body: &Value) -> Result<ModelReply, LlmError> {
    let message = body
        .pointer("/choices/0/message")
        .filter(|m| m.is_object())
        .ok_or_else(|| LlmError::Malformed("no choices[0].message".into()))?;
    reply_from_message(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_travel_as_json_strings() {
        let body = json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": null,
            "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "complete_task", "arguments": "{\"task_id\":\"t1\"}"}}]}}]});
        let reply = response(&body).unwrap();
        assert_eq!(reply.calls[0].id, "call_1");
        assert_eq!(reply.calls[0].arguments, json!({"task_id": "t1"}));
        let req = request(
            "gpt",
            &[
                Msg::Assistant { content: String::new(), calls: reply.calls.clone() },
                Msg::Tool { call_id: "call_1".into(), name: "complete_task".into(), content: "{}".into() },
            ],
            &[],
        );
        assert_eq!(req["messages"][0]["tool_calls"][0]["function"]["arguments"], "{\"task_id\":\"t1\"}");
        assert_eq!(req["messages"][1]["tool_call_id"], "call_1");
        let bad = json!({"choices": [{"message": {"tool_calls": [{"id": "x", "function": {"name": "add_task", "arguments": "{oops"}}]}}]});
        assert!(matches!(response(&bad), Err(LlmError::BadToolCall(_))));
    }
}
