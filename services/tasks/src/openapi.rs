//! The tasks part of the public API document, generated from the handlers' annotations.
//!
//! Error responses are described by status and meaning; their `application/problem+json` body
//! (the `Problem` schema), the `bearer` security scheme and the edge's 429 are added where the
//! whole document is assembled (the gateway's `openapi` module and the binary).

use utoipa::OpenApi as _;

use crate::model::Freq;

#[derive(utoipa::OpenApi)]
#[openapi(paths(
    crate::http::list,
    crate::http::create,
    crate::http::read,
    crate::http::replace,
    crate::http::update,
    crate::http::remove,
    crate::http::complete,
    crate::http::dead_letters,
    crate::http::replay_dead_letter,
))]
struct TasksApi;

/// The tasks operations and their schemas.
pub fn openapi() -> utoipa::openapi::OpenApi {
    TasksApi::openapi()
}

/// How a task repeats, as written in a request: `interval` defaults to 1; give either `until` or
/// `count`, not both; `until` must be after `due_at`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // a description, never built
pub struct RecurrenceInput {
    freq: Freq,
    #[schema(minimum = 1, maximum = 365, default = 1)]
    interval: Option<i64>,
    #[schema(format = DateTime)]
    until: Option<String>,
    #[schema(minimum = 1, maximum = 1000)]
    count: Option<i64>,
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::validate::{COUNT_MAX, DESCRIPTION_MAX, IDEMPOTENCY_KEY_MAX, INTERVAL_MAX, TAGS_MAX, TITLE_MAX};

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
                "DELETE /api/{user_id}/tasks/{id}",
                "GET /api/admin/dead-letters/tasks",
                "GET /api/{user_id}/tasks",
                "GET /api/{user_id}/tasks/{id}",
                "PATCH /api/{user_id}/tasks/{id}",
                "PATCH /api/{user_id}/tasks/{id}/complete",
                "POST /api/admin/dead-letters/tasks/{id}/replay",
                "POST /api/{user_id}/tasks",
                "PUT /api/{user_id}/tasks/{id}",
            ]
        );
    }

    #[test]
    fn limits_in_the_document_are_the_validators() {
        let doc = doc();
        let s = &doc["components"]["schemas"];
        assert_eq!(s["NewTask"]["properties"]["title"]["maxLength"], TITLE_MAX);
        assert_eq!(s["NewTask"]["required"], json!(["title"]));
        assert_eq!(s["NewTask"]["properties"]["description"]["maxLength"], DESCRIPTION_MAX);
        assert_eq!(s["NewTask"]["properties"]["tags"]["maxItems"], TAGS_MAX);
        assert_eq!(s["TaskUpdate"]["properties"]["title"]["maxLength"], TITLE_MAX);
        assert_eq!(s["RecurrenceInput"]["properties"]["interval"]["maximum"], INTERVAL_MAX);
        assert_eq!(s["RecurrenceInput"]["properties"]["count"]["maximum"], COUNT_MAX);
        assert_eq!(s["Recurrence"]["properties"]["interval"]["maximum"], INTERVAL_MAX);
        assert_eq!(s["Recurrence"]["properties"]["count"]["maximum"], COUNT_MAX);
        let create = &doc["paths"]["/api/{user_id}/tasks"]["post"];
        let key = create["parameters"].as_array().unwrap().iter().find(|p| p["name"] == "Idempotency-Key").unwrap();
        assert_eq!((&key["in"], &key["schema"]["maxLength"]), (&json!("header"), &json!(IDEMPOTENCY_KEY_MAX)));
    }

    #[test]
    fn task_schema_lists_every_field_the_api_returns() {
        let doc = doc();
        let schema = &doc["components"]["schemas"]["Task"];
        let content = crate::model::TaskContent {
            title: "t".into(),
            description: None,
            priority: crate::model::Priority::Medium,
            tags: vec![],
            due_at: None,
            remind_at: None,
            recurrence: None,
        };
        let task = crate::model::Task::new("id".into(), "u".into(), content, 0).to_json();
        let json = serde_json::to_value(task).unwrap();
        let fields: Vec<&String> = json.as_object().unwrap().keys().collect();
        let props: Vec<&String> = schema["properties"].as_object().unwrap().keys().collect();
        assert_eq!(props, fields, "same fields, same order");
        assert_eq!(schema["required"].as_array().unwrap().len(), fields.len(), "always present (null when unset)");
    }
}
