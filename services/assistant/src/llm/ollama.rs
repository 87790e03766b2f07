//! Ollama's native chat API: `POST /api/chat` with `{model, messages, tools, stream: false}`.
//! Tool calls come back as `message.tool_calls[].function.{name, arguments}` with `arguments`
//! a JSON object; results go back as `{role: "tool", content}` messages (plus `tool_name`,
//! which recent Ollama versions use to pair them).

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
                "content": content,
                "tool_calls": calls.iter().map(|c| json!({"function": {"name": c.name, "arguments": c.arguments}})).collect::<Vec<_>>(),
            }),
            Msg::Tool { name, content, .. } => json!({"role": "tool", "content": content, "tool_name": name}),
        })
        .collect();
    json!({
        "model": model,
        "messages": messages,
        "tools": tools.iter().map(|t| json!({"type": "function", "function": {
            "name": t.name, "description": t.description, "parameters": t.parameters}})).collect::<Vec<_>>(),
        "stream": false,
    })
}

pub fn response(body: &Value) -> Result<ModelReply, LlmError> {
    let message =
        body.get("message").filter(|m| m.is_object()).ok_or_else(|| LlmError::Malformed("no message".into()))?;
    reply_from_message(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_calls_and_results_round_trip_through_the_wire_format() {
        let body = json!({"model": "m", "message": {"role": "assistant", "content": "",
            "tool_calls": [{"function": {"name": "add_task", "arguments": {"title": "milk"}}}]}, "done": true});
        let reply = response(&body).unwrap();
        assert_eq!(reply.calls[0].name, "add_task");
        assert_eq!(reply.calls[0].arguments, json!({"title": "milk"}));
        let req = request(
            "m",
            &[
                Msg::User("hi".into()),
                Msg::Assistant { content: String::new(), calls: reply.calls.clone() },
                Msg::Tool { call_id: "c".into(), name: "add_task".into(), content: "{}".into() },
            ],
            &[],
        );
        assert_eq!(req["stream"], false);
        assert_eq!(req["messages"][1]["tool_calls"][0]["function"]["arguments"]["title"], "milk");
        assert_eq!(req["messages"][2]["role"], "tool");
        assert!(response(&json!({"error": "model not found"})).is_err());
    }
}
