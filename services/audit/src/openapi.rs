//! The audit part of the public API document, generated from the handlers' annotations.
//!
//! Error responses are described by status and meaning; their `application/problem+json` body
//! (the `Problem` schema), the `bearer` security scheme and the edge's 429 are added where the
//! whole document is assembled (the gateway's `openapi` module and the binary).

use utoipa::OpenApi as _;

#[derive(utoipa::OpenApi)]
#[openapi(paths(crate::http::activity, crate::http::audit, crate::http::dead_letters, crate::http::replay))]
struct AuditApi;

/// The audit operations and their schemas.
pub fn openapi() -> utoipa::openapi::OpenApi {
    AuditApi::openapi()
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::query::{ACTIVITY_PARAMS, AUDIT_PARAMS, DEAD_LETTER_PARAMS, LIMIT_MAX};

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
                "GET /api/admin/audit",
                "GET /api/admin/dead-letters/audit",
                "GET /api/{user_id}/activity",
                "POST /api/admin/dead-letters/audit/{id}/replay",
            ]
        );
    }

    fn query_params(op: &Value) -> Vec<String> {
        op["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["in"] == "query")
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn documented_parameters_are_the_parsed_ones() {
        let doc = doc();
        assert_eq!(query_params(&doc["paths"]["/api/{user_id}/activity"]["get"]), ACTIVITY_PARAMS);
        assert_eq!(query_params(&doc["paths"]["/api/admin/audit"]["get"]), AUDIT_PARAMS);
        assert_eq!(query_params(&doc["paths"]["/api/admin/dead-letters/audit"]["get"]), DEAD_LETTER_PARAMS);
        let limit = doc["paths"]["/api/admin/audit"]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "limit")
            .unwrap()
            .clone();
        assert_eq!(limit["schema"]["maximum"], json!(LIMIT_MAX));
    }

    #[test]
    fn event_schemas_list_every_field_the_api_returns() {
        let doc = doc();
        let s = &doc["components"]["schemas"];
        let record = crate::store::Record {
            seq: 1,
            id: "e".into(),
            event_type: "task.created".into(),
            source: "/flotilla/tasks".into(),
            subject: None,
            user_id: None,
            time_ms: 0,
            recorded_at: 0,
            data: Value::Null,
        };
        for (name, json) in [
            ("ActivityEvent", serde_json::to_value(record.to_activity_json()).unwrap()),
            ("AuditEvent", serde_json::to_value(record.to_audit_json()).unwrap()),
        ] {
            let fields: Vec<&String> = json.as_object().unwrap().keys().collect();
            let props: Vec<&String> = s[name]["properties"].as_object().unwrap().keys().collect();
            assert_eq!(props, fields, "{name}: same fields, same order");
            assert_eq!(s[name]["required"].as_array().unwrap().len(), fields.len(), "{name}: always present");
        }
    }
}
