//! The OpenAPI 3.1 document of the whole public API, assembled from the parts each crate
//! generates from its handlers: the gateway's (`/health`, `/docs`, the `Problem` schema, the
//! `bearer` scheme), accounts', tasks', audit's and the assistant's. The gateway serves it at `/docs/openapi.json` and
//! renders it at `/docs`.

use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{InfoBuilder, LicenseBuilder, OpenApi, OpenApiVersion};

const DESCRIPTION: &str = "The public API of Flotilla, a multi-user task manager, as served by its gateway.

Requests and answers are JSON. Every error is `application/problem+json` (RFC 9457) with \
`status` and `detail`; a 422 lists each invalid field in `errors` as `{pointer, detail}`. \
Besides the answers listed per operation, any operation may answer 500, 502, 503 or 504 \
(a service failed, is unreachable or too slow), an unknown path answers 404 and an unlisted \
method 405.

Protected operations need `Authorization: Bearer <access token>` (from signup, login or \
refresh); the user in a `/api/{user_id}/…` path must be the signed-in user. Answers carry \
`RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset`; over a limit, 429 with \
`Retry-After`.";

/// Tags in the order the viewer shows them.
const TAGS: &[(&str, &str)] = &[
    ("auth", "Accounts: sign-up, sign-in, token refresh and the caller's profile."),
    ("tasks", "The signed-in user's tasks: filters, search, paging, optimistic concurrency."),
    (
        "assistant",
        "Chat turns that act on the signed-in user's tasks through tools, the conversations, and the MCP server at `/mcp` that exposes the same tools to agents.",
    ),
    ("audit", "The activity feed of the signed-in user and, for administrators, the audit log of every event."),
    ("admin", "User management and the event consumers' dead letters, for administrators."),
    ("gateway", "The edge itself: health of the services behind it, and this documentation."),
];

/// The whole document.
pub fn document() -> OpenApi {
    let [mut doc, accounts, tasks, audit, assistant] = parts();
    doc.merge(accounts);
    doc.merge(tasks);
    doc.merge(audit);
    doc.merge(assistant);
    add_mcp(&mut doc);
    doc.openapi = OpenApiVersion::Version31;
    doc.info = InfoBuilder::new()
        .title("Flotilla API")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(DESCRIPTION))
        .license(Some(LicenseBuilder::new().name("Apache-2.0").identifier(Some("Apache-2.0")).build()))
        .build();
    doc.tags = Some(TAGS.iter().map(|(name, d)| TagBuilder::new().name(*name).description(Some(*d)).build()).collect());
    flotilla_gateway::openapi::apply_edge(&mut doc);
    doc
}

const MCP_DESCRIPTION: &str = "The Model Context Protocol server (Streamable HTTP transport, JSON-RPC 2.0 \
messages), for agents such as desktop AI assistants. It exposes the assistant's tools (`add_task`, \
`list_tasks`, `complete_task`, `delete_task`, `update_task`, `search_tasks`), acting for the user of \
the bearer token. Stateless: any replica answers any request. See the README for connecting a client.";

/// `/mcp` speaks JSON-RPC, not REST: documented by hand, one operation per method.
fn add_mcp(doc: &mut OpenApi) {
    use utoipa::openapi::ResponseBuilder;
    use utoipa::openapi::path::{HttpMethod, OperationBuilder};
    use utoipa::openapi::security::SecurityRequirement;
    let ops = [
        (HttpMethod::Post, "mcp_post", "Send an MCP message", "The JSON-RPC answer, as JSON or as an event stream."),
        (
            HttpMethod::Get,
            "mcp_get",
            "Open an MCP event stream",
            "A stream of server messages, or 405 in stateless mode.",
        ),
        (HttpMethod::Delete, "mcp_delete", "End an MCP session", "The session ended (or there was none)."),
    ];
    for (method, id, summary, ok) in ops {
        let op = OperationBuilder::new()
            .tag("assistant")
            .operation_id(Some(id))
            .summary(Some(summary))
            .description(Some(MCP_DESCRIPTION))
            .security(SecurityRequirement::new("bearer", Vec::<String>::new()))
            .response("200", ResponseBuilder::new().description(ok))
            .response("401", ResponseBuilder::new().description("Missing, invalid, expired or revoked access token."))
            .build();
        doc.paths.add_path_operation(flotilla_gateway::MCP_PATH, vec![method], op);
    }
}

/// The parts, gateway first.
fn parts() -> [OpenApi; 5] {
    [
        flotilla_gateway::openapi(),
        flotilla_accounts::openapi(),
        flotilla_tasks::openapi(),
        flotilla_audit::openapi(),
        flotilla_assistant::openapi(),
    ]
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use flotilla_gateway::{Access, ROUTES};
    use serde_json::Value;

    use super::*;

    fn json(doc: &OpenApi) -> Value {
        serde_json::to_value(doc).unwrap()
    }

    fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
        let mut ops = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                ops.push((method.to_uppercase(), path.clone(), op));
            }
        }
        ops
    }

    #[test]
    fn parts_do_not_collide() {
        // `OpenApi::merge` silently keeps the first of two schemas or operations with one name.
        let (mut schemas, mut ops) = (BTreeMap::new(), BTreeMap::new());
        for (i, part) in parts().iter().enumerate() {
            let v = json(part);
            for name in v["components"]["schemas"].as_object().into_iter().flatten().map(|(k, _)| k.clone()) {
                if let Some(other) = schemas.insert(name.clone(), i) {
                    panic!("schema {name} is defined by parts {other} and {i}");
                }
            }
            for (method, path, _) in operations(&v) {
                assert!(ops.insert(format!("{method} {path}"), i).is_none(), "{method} {path} twice");
            }
        }
    }

    #[test]
    fn document_is_exactly_the_routing_table() {
        let doc = json(&document());
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
        let documented: BTreeSet<String> = operations(&doc).iter().map(|(m, p, _)| format!("{m} {p}")).collect();
        let served: BTreeSet<String> =
            ROUTES.iter().flat_map(|r| r.methods.iter().map(move |m| format!("{m} {}", r.path))).collect();
        assert_eq!(documented, served);
    }

    #[test]
    fn security_and_401s_follow_the_access_of_each_route() {
        let doc = json(&document());
        assert_eq!(doc["components"]["securitySchemes"]["bearer"]["bearerFormat"], "JWT");
        for (method, path, op) in operations(&doc) {
            let route = ROUTES.iter().find(|r| r.path == path).unwrap();
            let bearer = op["security"] == serde_json::json!([{"bearer": []}]);
            assert_eq!(bearer, route.access == Access::Bearer, "{method} {path}: security");
            if bearer {
                assert!(op["responses"]["401"].is_object(), "{method} {path} documents its 401");
            }
            assert!(op["responses"]["429"].is_object(), "{method} {path}: the edge's rate limit");
        }
    }

    #[test]
    fn references_resolve_ids_are_unique_and_errors_are_problems() {
        let doc = json(&document());
        let text = doc.to_string();
        for piece in text.split("\"$ref\":\"").skip(1) {
            let target = &piece[..piece.find('"').unwrap()];
            let name = target.strip_prefix("#/components/schemas/").expect("local schema refs only");
            assert!(doc["components"]["schemas"][name].is_object(), "{target} does not resolve");
        }
        let mut ids = BTreeSet::new();
        for (method, path, op) in operations(&doc) {
            let id = op["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path} has an operationId"));
            assert!(ids.insert(id.to_owned()), "operationId {id} used twice");
            let tag = op["tags"][0].as_str().unwrap();
            assert!(TAGS.iter().any(|(t, _)| *t == tag), "{method} {path}: tag {tag} is listed");
            for (status, r) in op["responses"].as_object().unwrap() {
                assert!(!r["description"].as_str().unwrap().is_empty(), "{method} {path} {status}");
                if status.starts_with('4') {
                    let schema = &r["content"]["application/problem+json"]["schema"]["$ref"];
                    assert_eq!(schema, "#/components/schemas/Problem", "{method} {path} {status}");
                }
            }
        }
    }
}
