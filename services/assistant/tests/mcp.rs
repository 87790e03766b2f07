//! The MCP server at `/mcp` with the official rmcp client over Streamable HTTP: list the tools,
//! call each one as the token's user, check the stored tasks; no or a bad token is a 401 before
//! any MCP handling.

mod common;

use common::{Ctx, start};
use flotilla_assistant::Config;
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};

async fn client(ctx: &Ctx, token: &str) -> RunningService<RoleClient, ()> {
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(ctx.url("/mcp")).auth_header(token.to_owned()),
    );
    ().serve(transport).await.expect("MCP client connects")
}

async fn call(client: &RunningService<RoleClient, ()>, name: &'static str, args: Value) -> CallToolResult {
    let mut params = CallToolRequestParams::new(name);
    params.arguments = args.as_object().cloned();
    client.call_tool(params).await.expect("tool call answered")
}

fn structured(r: &CallToolResult) -> Value {
    r.structured_content.clone().expect("structured result")
}

#[tokio::test]
async fn every_tool_works_through_mcp_for_the_token_user() {
    let ctx = start(Config::default()).await;
    let mcp = client(&ctx, &ctx.alice_token).await;
    let tools = mcp.list_all_tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(names, ["add_task", "list_tasks", "complete_task", "delete_task", "update_task", "search_tasks"]);
    assert!(tools.iter().all(|t| t.input_schema.get("type") == Some(&json!("object"))));

    // A user id in the arguments is ignored: the task is the token user's.
    let added = call(&mcp, "add_task", json!({"title": "Write report", "priority": "high", "user_id": ctx.bob})).await;
    assert_eq!(added.is_error, Some(false));
    let added = structured(&added);
    assert_eq!(added["status"], "created");
    let id = added["task_id"].as_str().unwrap().to_owned();
    let stored = ctx.alice_tasks().await;
    assert_eq!((stored.len(), stored[0]["title"].as_str()), (1, Some("Write report")));
    assert!(ctx.stored_tasks(&ctx.bob, &ctx.bob_token).await.is_empty());
    call(&mcp, "add_task", json!({"title": "Buy stamps"})).await;

    let listed = structured(&call(&mcp, "list_tasks", json!({"status": "pending"})).await);
    assert_eq!(listed["count"], 2);
    let found = structured(&call(&mcp, "search_tasks", json!({"query": "report"})).await);
    assert_eq!(found["count"], 1);

    let updated = structured(&call(&mcp, "update_task", json!({"task_id": id, "title": "Write the report"})).await);
    assert_eq!(updated["title"], "Write the report");
    let done = structured(&call(&mcp, "complete_task", json!({"task_id": id})).await);
    assert_eq!(done["status"], "completed");
    let stored = ctx.alice_tasks().await;
    let task = stored.iter().find(|t| t["id"] == id.as_str()).unwrap();
    assert_eq!((task["title"].as_str(), task["completed"].as_bool()), (Some("Write the report"), Some(true)));

    let deleted = structured(&call(&mcp, "delete_task", json!({"task_id": id})).await);
    assert_eq!(deleted["status"], "deleted");
    assert_eq!(ctx.alice_tasks().await.len(), 1);

    // A failing call is a tool error with the API's reason, not a success.
    let missing = call(&mcp, "delete_task", json!({"task_id": id})).await;
    assert_eq!(missing.is_error, Some(true));
    assert_eq!(structured(&missing)["status"], 404);

    // Bob's session sees none of Alice's tasks.
    let bob = client(&ctx, &ctx.bob_token).await;
    assert_eq!(structured(&call(&bob, "list_tasks", json!({})).await)["count"], 0);
    let stolen = call(&bob, "complete_task", json!({"task_id": stored[0]["id"]})).await;
    assert_eq!(stolen.is_error, Some(true));
    mcp.cancel().await.unwrap();
    bob.cancel().await.unwrap();
}

#[tokio::test]
async fn no_or_bad_token_is_401_before_mcp() {
    let ctx = start(Config::default()).await;
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    for token in [None, Some("abc.def.ghi")] {
        let mut req =
            ctx.http.post(ctx.url("/mcp")).header("accept", "application/json, text/event-stream").json(&init);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status().as_u16(), 401);
        assert!(res.headers().contains_key("www-authenticate"));
    }
    let transport =
        StreamableHttpClientTransport::from_config(StreamableHttpClientTransportConfig::with_uri(ctx.url("/mcp")));
    assert!(().serve(transport).await.is_err(), "the rmcp client cannot connect without a token");
}
