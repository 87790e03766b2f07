//! The public routing table: every path and method the gateway serves, who may call it, and which
//! service answers. The gateway's routers are built from it and the API document is checked
//! against it (`tests/openapi.rs`), so a route cannot be served without being documented.

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone.
    Public,
    /// A valid access token (`Authorization: Bearer …`), checked at the edge.
    Bearer,
}

/// One public path of the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// In axum (and OpenAPI) syntax: `/api/{user_id}/tasks/{id}`.
    pub path: &'static str,
    /// Upper-case HTTP methods; any other method answers 405 (`GET` also answers `HEAD`).
    pub methods: &'static [&'static str],
    pub access: Access,
    /// [`ACCOUNTS`], [`TASKS`], [`AUDIT`], [`ASSISTANT`] or [`GATEWAY`] (answered by the gateway
    /// itself).
    pub service: &'static str,
}

pub const ACCOUNTS: &str = "accounts";
pub const TASKS: &str = "tasks";
pub const AUDIT: &str = "audit";
pub const ASSISTANT: &str = "assistant";
pub const GATEWAY: &str = crate::SERVICE;

/// The aggregated health of the services behind the gateway.
pub const HEALTH_PATH: &str = flotilla_runtime::http::HEALTH_PATH;
/// The MCP server (Streamable HTTP) of the assistant.
pub const MCP_PATH: &str = "/mcp";
/// The API document viewer (HTML, rendered on the server).
pub const DOCS_PATH: &str = "/docs";
/// The OpenAPI document (JSON).
pub const OPENAPI_PATH: &str = "/docs/openapi.json";

const fn route(path: &'static str, methods: &'static [&'static str], access: Access, service: &'static str) -> Route {
    Route { path, methods, access, service }
}

use Access::{Bearer, Public};

/// Every public route. The operations endpoints (`/livez`, `/ready`, `/metrics`) are not public
/// API and are not listed.
pub const ROUTES: &[Route] = &[
    route("/api/auth/signup", &["POST"], Public, ACCOUNTS),
    route("/api/auth/login", &["POST"], Public, ACCOUNTS),
    route("/api/auth/refresh", &["POST"], Public, ACCOUNTS),
    route("/.well-known/jwks.json", &["GET"], Public, ACCOUNTS),
    route("/api/auth/logout", &["POST"], Bearer, ACCOUNTS),
    route("/api/auth/me", &["GET", "PATCH", "DELETE"], Bearer, ACCOUNTS),
    route("/api/admin/users", &["GET"], Bearer, ACCOUNTS),
    route("/api/admin/users/{id}", &["PATCH"], Bearer, ACCOUNTS),
    route("/api/{user_id}/tasks", &["GET", "POST"], Bearer, TASKS),
    route("/api/{user_id}/tasks/{id}", &["GET", "PUT", "PATCH", "DELETE"], Bearer, TASKS),
    route("/api/{user_id}/tasks/{id}/complete", &["PATCH"], Bearer, TASKS),
    route("/api/admin/dead-letters/tasks", &["GET"], Bearer, TASKS),
    route("/api/admin/dead-letters/tasks/{id}/replay", &["POST"], Bearer, TASKS),
    route("/api/{user_id}/activity", &["GET"], Bearer, AUDIT),
    route("/api/admin/audit", &["GET"], Bearer, AUDIT),
    route("/api/admin/dead-letters/audit", &["GET"], Bearer, AUDIT),
    route("/api/admin/dead-letters/audit/{id}/replay", &["POST"], Bearer, AUDIT),
    route("/api/{user_id}/chat", &["POST"], Bearer, ASSISTANT),
    route("/api/{user_id}/conversations", &["GET"], Bearer, ASSISTANT),
    route("/api/{user_id}/conversations/{id}", &["GET", "DELETE"], Bearer, ASSISTANT),
    route(MCP_PATH, &["GET", "POST", "DELETE"], Bearer, ASSISTANT),
    route(HEALTH_PATH, &["GET"], Public, GATEWAY),
    route(DOCS_PATH, &["GET"], Public, GATEWAY),
    route(OPENAPI_PATH, &["GET"], Public, GATEWAY),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_well_formed() {
        let mut seen = std::collections::BTreeSet::new();
        for r in ROUTES {
            assert!(seen.insert(r.path), "{} listed twice", r.path);
            assert!(r.path.starts_with('/'), "{}", r.path);
            assert!(!r.methods.is_empty(), "{}", r.path);
            for m in r.methods {
                assert!(["GET", "POST", "PUT", "PATCH", "DELETE"].contains(m), "{} {m}", r.path);
            }
            assert!([ACCOUNTS, TASKS, AUDIT, ASSISTANT, GATEWAY].contains(&r.service), "{}", r.path);
            assert!(!r.path.contains("{*"), "no catch-alls: every public path is explicit ({})", r.path);
        }
        for ops in ["/livez", "/ready", "/metrics"] {
            assert!(!seen.contains(ops), "{ops} is an operations endpoint, not public API");
        }
    }
}
