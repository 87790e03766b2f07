//! The assistant part of the public API document, generated from the handlers' annotations.
//!
//! Error responses are described by status and meaning; their `application/problem+json` body,
//! the `bearer` security scheme and the edge's 429 are added where the whole document is
//! assembled (the gateway's `openapi` module and the binary). `/mcp` is not a REST operation
//! and is described in the `assistant` tag's text by the binary.

use utoipa::OpenApi as _;

#[derive(utoipa::OpenApi)]
#[openapi(paths(crate::http::chat, crate::http::list, crate::http::read, crate::http::remove))]
struct AssistantApi;

/// The assistant operations and their schemas.
pub fn openapi() -> utoipa::openapi::OpenApi {
    AssistantApi::openapi()
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::turn::MESSAGE_MAX;

    fn doc() -> Value {
        serde_json::to_value(openapi()).unwrap()
    }

    #[test]
    fn every_route_of_the_router_is_documented() {
        let doc = doc();
        let mut ops: Vec<String> = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                ops.push(format!("{} {path}", method.to_uppercase()));
            }
        }
        ops.sort();
        assert_eq!(
            ops,
            [
                "DELETE /api/{user_id}/conversations/{id}",
                "GET /api/{user_id}/conversations",
                "GET /api/{user_id}/conversations/{id}",
                "POST /api/{user_id}/chat",
            ]
        );
    }

    #[test]
    fn chat_documents_both_media_types_and_the_event_names() {
        let doc = doc();
        let chat = &doc["paths"]["/api/{user_id}/chat"]["post"];
        let content = &chat["responses"]["200"]["content"];
        assert!(content.get("application/json").is_some() && content.get("text/event-stream").is_some(), "{content}");
        let text = chat["description"].as_str().unwrap();
        for event in ["`conversation`", "`tool_call`", "`message`", "`done`", "`error`"] {
            assert!(text.contains(event), "{event} in {text}");
        }
        let s = &doc["components"]["schemas"];
        assert_eq!(s["ChatRequest"]["properties"]["message"]["maxLength"], MESSAGE_MAX);
        assert_eq!(s["ChatRequest"]["required"], serde_json::json!(["message"]));
        for name in
            ["ChatResponse", "ToolCall", "Conversation", "ConversationList", "ConversationDetail", "ChatMessage"]
        {
            assert!(s.get(name).is_some(), "{name} schema");
        }
    }
}
