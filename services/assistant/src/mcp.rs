//! The MCP server at `/mcp` (Streamable HTTP, official `rmcp` SDK): the six task tools for
//! agents such as desktop AI assistants.
//!
//! - Authentication happens before MCP handling: the route sits behind the same `require_auth`
//!   as the REST API (no or an invalid token is a 401 problem), and every tool call runs
//!   [`UserTools::call`] as the token's user with the token itself. The user never comes from
//!   the arguments.
//! - Stateless: no MCP session is kept (`NeverSessionManager`, JSON responses), so any replica
//!   serves any request and nothing is lost on a restart.
//! - Host checks are off: the server is reached through the gateway or a Kubernetes Service
//!   under names it cannot know, and DNS rebinding gains nothing without a bearer token.

use std::sync::Arc;

use axum::http::request::Parts;
use flotilla_runtime::auth::{Claims, bearer_token};
use flotilla_runtime::upstream::Upstream;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, Implementation, ListToolsResult, PaginatedRequestParams,
    ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::Value;

use crate::tools::{TOOL_NAMES, UserTools, definitions};

/// The MCP tool server of one request.
#[derive(Clone)]
pub struct TaskTools {
    tasks: Upstream,
    tools: Arc<Vec<Tool>>,
}

impl TaskTools {
    pub fn new(tasks: Upstream) -> Self {
        let tools = definitions()
            .into_iter()
            .map(|d| {
                let schema = match d.parameters {
                    Value::Object(map) => map,
                    _ => Default::default(),
                };
                Tool::new(d.name, d.description, Arc::new(schema))
            })
            .collect();
        Self { tasks, tools: Arc::new(tools) }
    }

    /// The caller (claims set by `require_auth`) and their bearer token, from the HTTP request.
    fn caller(context: &RequestContext<RoleServer>) -> Result<(String, String), ErrorData> {
        let parts = context
            .extensions
            .get::<Parts>()
            .ok_or_else(|| ErrorData::internal_error("the HTTP request is not available", None))?;
        let claims =
            parts.extensions.get::<Claims>().ok_or_else(|| ErrorData::invalid_request("not authenticated", None))?;
        let token = bearer_token(&parts.headers).unwrap_or_default().to_owned();
        Ok((claims.sub.clone(), token))
    }
}

impl ServerHandler for TaskTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("flotilla", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Flotilla's task tools: they act on the tasks of the user whose bearer token authenticates \
                 the connection. Dates are RFC 3339 timestamps.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.tools.as_ref().clone()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.tools.iter().find(|t| t.name == name).cloned()
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        if !TOOL_NAMES.contains(&request.name.as_ref()) {
            return Err(ErrorData::invalid_params(format!("unknown tool {:?}", request.name), None));
        }
        let (user_id, token) = Self::caller(&context)?;
        let mut arguments = Value::Object(request.arguments.unwrap_or_default());
        if let Some(obj) = arguments.as_object_mut() {
            obj.remove("user_id"); // the user is the token's
        }
        let call = UserTools::new(self.tasks.clone(), user_id, token).call(&request.name, arguments).await;
        let result = if call.succeeded() {
            CallToolResult::structured(call.result)
        } else {
            CallToolResult::structured_error(call.result)
        };
        Ok(result.into())
    }
}

/// The tower service serving `/mcp` (mount it behind `require_auth`).
pub fn service(tasks: Upstream) -> StreamableHttpService<TaskTools, NeverSessionManager> {
    let server = TaskTools::new(tasks);
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None)
        .disable_allowed_hosts();
    StreamableHttpService::new(move || Ok(server.clone()), Arc::new(NeverSessionManager::default()), config)
}
