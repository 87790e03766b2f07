//! The chat and conversations API over real HTTP with the rules provider, a real tasks service
//! in process as the tools' upstream, and real tokens. After every chat command the stored tasks
//! are read back; after every rejected request, the stored state is checked unchanged.

mod common;

use common::{Ctx, problem, start};
use flotilla_assistant::Config;
use flotilla_runtime::ids::new_id;
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn ctx() -> Ctx {
    start(Config::default()).await
}

/// Parses a `text/event-stream` body into `(event, data)` pairs (comments skipped).
fn parse_sse(text: &str) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let (mut event, mut data) = (String::new(), String::new());
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("event:") {
                event = v.trim().to_owned();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.strip_prefix(' ').unwrap_or(v));
            }
        }
        if !event.is_empty() {
            out.push((event, serde_json::from_str(&data).unwrap_or(Value::String(data))));
        }
    }
    out
}

async fn state(ctx: &Ctx) -> (i64, i64, usize) {
    (
        ctx.count("SELECT COUNT(*) FROM conversations").await,
        ctx.count("SELECT COUNT(*) FROM messages").await,
        ctx.alice_tasks().await.len(),
    )
}

#[tokio::test]
async fn chat_commands_change_the_stored_tasks_and_continue_a_conversation() {
    let ctx = ctx().await;
    let body = ctx.chat(None, "add buy milk").await;
    let conv = body["conversation_id"].as_str().unwrap().to_owned();
    assert_eq!(body["tool_calls"][0]["name"], "add_task");
    assert_eq!(body["tool_calls"][0]["result"]["status"], "created");
    let tasks = ctx.alice_tasks().await;
    assert_eq!(tasks.len(), 1);
    assert_eq!(body["tool_calls"][0]["result"]["task_id"], tasks[0]["id"], "the reply names the stored task");

    let body = ctx.chat(Some(&conv), "show my tasks").await;
    assert_eq!(body["conversation_id"], conv);
    assert_eq!(body["tool_calls"][0]["name"], "list_tasks");
    assert_eq!(ctx.alice_tasks().await.len(), 1, "listing changes nothing");

    let detail = ctx.conversation(&conv).await;
    let messages = detail["messages"].as_array().unwrap();
    let seqs: Vec<i64> = messages.iter().map(|m| m["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, [1, 2, 3, 4]);
    let roles: Vec<&str> = messages.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["user", "assistant", "user", "assistant"]);
    assert_eq!(messages[0]["content"], "add buy milk");
    assert_eq!(messages[3]["tool_calls"], body["tool_calls"]);
    assert_eq!(detail["title"], "add buy milk");
}

/// A conversation whose turns rely on the state stored with earlier messages ("the second
/// one"), with the tasks read back from the tasks service after every command.
#[tokio::test]
async fn a_conversation_of_commands_changes_exactly_what_it_says() {
    let ctx = ctx().await;
    let conv = ctx.chat(None, "add buy milk tomorrow at 5pm, high priority #groceries").await["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let tasks = ctx.alice_tasks().await;
    assert_eq!(tasks.len(), 1);
    assert_eq!((tasks[0]["title"].as_str(), tasks[0]["priority"].as_str()), (Some("buy milk"), Some("high")));
    assert_eq!(tasks[0]["tags"], json!(["groceries"]));
    assert!(tasks[0]["due_at"].is_string());

    ctx.chat(Some(&conv), "add call the plumber").await;
    assert_eq!(ctx.alice_tasks().await.len(), 2);

    let listed = ctx.chat(Some(&conv), "show my tasks").await;
    assert_eq!(listed["tool_calls"][0]["result"]["count"], 2);
    let second_id = listed["tool_calls"][0]["result"]["tasks"][1]["task_id"].as_str().unwrap().to_owned();
    let done = ctx.chat(Some(&conv), "mark the second one done").await;
    assert_eq!(done["tool_calls"].as_array().unwrap().last().unwrap()["result"]["task_id"], second_id.as_str());
    let tasks = ctx.alice_tasks().await;
    let completed: Vec<&str> =
        tasks.iter().filter(|t| t["completed"] == true).map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(completed, [second_id.as_str()], "exactly the second task of the list shown");

    let detail = ctx.conversation(&conv).await;
    assert_eq!(detail["messages"].as_array().unwrap().len(), 8);
}

#[tokio::test]
async fn the_event_stream_is_the_same_turn_as_the_json_answer() {
    let ctx = ctx().await;
    ctx.chat(None, "add water the plants").await;
    let json_turn = ctx.chat(None, "show my tasks").await;
    let res = ctx
        .http
        .post(ctx.chat_url(&ctx.alice))
        .bearer_auth(&ctx.alice_token)
        .header("accept", "text/event-stream")
        .json(&json!({"message": "show my tasks", "tz": "Europe/Paris"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let events = parse_sse(&res.text().await.unwrap());
    let names: Vec<&str> = events.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(names.first(), Some(&"conversation"));
    assert_eq!(&names[names.len() - 2..], ["message", "done"]);
    let done = &events.last().unwrap().1;
    let streamed_calls: Vec<Value> = events.iter().filter(|(e, _)| e == "tool_call").map(|(_, d)| d.clone()).collect();
    assert_eq!(Value::Array(streamed_calls), done["tool_calls"], "tool_call events are the turn's calls");
    assert_eq!(events[names.len() - 2].1["response"], done["response"]);
    assert_eq!(events[0].1["conversation_id"], done["conversation_id"]);
    // The same command, answered as JSON in another conversation, says the same.
    assert_eq!(done["response"], json_turn["response"]);
    assert_eq!(done["tool_calls"], json_turn["tool_calls"]);
    assert_ne!(done["conversation_id"], json_turn["conversation_id"]);
    let stored = ctx.conversation(done["conversation_id"].as_str().unwrap()).await;
    assert_eq!(stored["messages"][1]["content"], done["response"], "the streamed turn is stored");
}

#[tokio::test]
async fn conversations_are_listed_newest_first_in_pages_and_deleted() {
    let ctx = ctx().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(ctx.chat(None, &format!("add chore {i}")).await["conversation_id"].as_str().unwrap().to_owned());
    }
    let list = |query: String| {
        let (http, url, token) =
            (ctx.http.clone(), ctx.url(&format!("/api/{}/conversations{query}", ctx.alice)), ctx.alice_token.clone());
        async move {
            let res = http.get(url).bearer_auth(token).send().await.unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            res.json::<Value>().await.unwrap()
        }
    };
    let first = list("?limit=2".into()).await;
    let page: Vec<&str> =
        first["conversations"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(page, [ids[4].as_str(), ids[3].as_str()]);
    let cursor = first["next_cursor"].as_str().unwrap();
    let second = list(format!("?limit=2&cursor={cursor}")).await;
    assert_eq!(second["conversations"][0]["id"], ids[2]);
    let all = list(String::new()).await;
    assert_eq!(all["conversations"].as_array().unwrap().len(), 5);
    assert!(all["next_cursor"].is_null());

    let url = ctx.url(&format!("/api/{}/conversations/{}", ctx.alice, ids[0]));
    let res = ctx.http.delete(&url).bearer_auth(&ctx.alice_token).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    problem(ctx.http.get(&url).bearer_auth(&ctx.alice_token).send().await.unwrap(), 404).await;
    problem(ctx.http.delete(&url).bearer_auth(&ctx.alice_token).send().await.unwrap(), 404).await;
    assert_eq!(ctx.count("SELECT COUNT(*) FROM messages").await, 8, "its messages went with it");
    assert_eq!(ctx.alice_tasks().await.len(), 5, "deleting a conversation keeps the tasks");
}

#[tokio::test]
async fn other_users_paths_and_conversations_are_out_of_reach() {
    let ctx = ctx().await;
    let conv = ctx.chat(None, "add secret plan").await["conversation_id"].as_str().unwrap().to_owned();
    let before = state(&ctx).await;
    // Bob's token on Alice's paths: 403.
    for res in [
        ctx.http
            .post(ctx.chat_url(&ctx.alice))
            .bearer_auth(&ctx.bob_token)
            .json(&json!({"message": "add x"}))
            .send()
            .await
            .unwrap(),
        ctx.http
            .get(ctx.url(&format!("/api/{}/conversations", ctx.alice)))
            .bearer_auth(&ctx.bob_token)
            .send()
            .await
            .unwrap(),
        ctx.http
            .delete(ctx.url(&format!("/api/{}/conversations/{conv}", ctx.alice)))
            .bearer_auth(&ctx.bob_token)
            .send()
            .await
            .unwrap(),
    ] {
        problem(res, 403).await;
    }
    // Alice's conversation on Bob's own paths: 404, as if it did not exist.
    let bob_conv = ctx.url(&format!("/api/{}/conversations/{conv}", ctx.bob));
    problem(ctx.http.get(&bob_conv).bearer_auth(&ctx.bob_token).send().await.unwrap(), 404).await;
    problem(ctx.http.delete(&bob_conv).bearer_auth(&ctx.bob_token).send().await.unwrap(), 404).await;
    let res = ctx
        .http
        .post(ctx.chat_url(&ctx.bob))
        .bearer_auth(&ctx.bob_token)
        .json(&json!({"conversation_id": conv, "message": "add x"}))
        .send()
        .await
        .unwrap();
    problem(res, 404).await;
    // No token, a forged one, an expired one: 401.
    let expired = ctx.key.sign(&common::claims(&ctx.alice, -3600));
    for token in [None, Some("abc.def.ghi"), Some(expired.as_str())] {
        let mut req = ctx.http.post(ctx.chat_url(&ctx.alice)).json(&json!({"message": "add x"}));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        problem(req.send().await.unwrap(), 401).await;
    }
    assert_eq!(state(&ctx).await, before, "nothing changed");
    assert!(ctx.stored_tasks(&ctx.bob, &ctx.bob_token).await.is_empty());
}

#[tokio::test]
async fn bad_input_is_422_and_changes_nothing() {
    let ctx = ctx().await;
    let conv = ctx.chat(None, "add one").await["conversation_id"].as_str().unwrap().to_owned();
    let before = state(&ctx).await;
    let cases = [
        (json!({"message": ""}), "#/message"),
        (json!({"message": "   \n"}), "#/message"),
        (json!({"message": "x".repeat(4001)}), "#/message"),
        (json!({"message": "add two", "tz": "Mars/Olympus_Mons"}), "#/tz"),
        (json!({"message": "add two", "tz": "Europe/Paris; DROP TABLE"}), "#/tz"),
        (json!({"message": "add two", "conversation_id": conv, "user_id": "someone"}), "#/user_id"),
        (json!({"text": "add two"}), "#/text"),
        (json!({"message": 42}), "#/"),
    ];
    for (body, pointer) in cases {
        let res =
            ctx.http.post(ctx.chat_url(&ctx.alice)).bearer_auth(&ctx.alice_token).json(&body).send().await.unwrap();
        let p = problem(res, 422).await;
        let pointers: Vec<&str> =
            p["errors"].as_array().unwrap().iter().map(|e| e["pointer"].as_str().unwrap()).collect();
        assert!(pointers.iter().any(|ptr| ptr.starts_with(pointer)), "{body} → {p}");
    }
    // Exactly 4000 characters is fine (counted in characters, not bytes).
    let long = "é".repeat(3990);
    let ok = ctx
        .http
        .post(ctx.chat_url(&ctx.alice))
        .bearer_auth(&ctx.alice_token)
        .json(&json!({"message": format!("add {long}")}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let after_ok = state(&ctx).await;
    assert_eq!(after_ok.0, before.0 + 1);

    // Unknown or malformed conversation ids: 404, nothing stored.
    for id in [new_id(), "not-an-id".to_owned()] {
        let res = ctx
            .http
            .post(ctx.chat_url(&ctx.alice))
            .bearer_auth(&ctx.alice_token)
            .json(&json!({"conversation_id": id, "message": "add three"}))
            .send()
            .await
            .unwrap();
        problem(res, 404).await;
    }
    // Not JSON, wrong media type.
    let res = ctx
        .http
        .post(ctx.chat_url(&ctx.alice))
        .bearer_auth(&ctx.alice_token)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    problem(res, 400).await;
    let res = ctx.http.post(ctx.chat_url(&ctx.alice)).bearer_auth(&ctx.alice_token).body("add x").send().await.unwrap();
    problem(res, 415).await;
    // Listing parameters.
    for q in ["limit=0", "limit=101", "cursor=garbage", "page=2"] {
        let res = ctx
            .http
            .get(ctx.url(&format!("/api/{}/conversations?{q}", ctx.alice)))
            .bearer_auth(&ctx.alice_token)
            .send()
            .await
            .unwrap();
        problem(res, 422).await;
    }
    assert_eq!(state(&ctx).await, after_ok, "nothing changed");
}

#[tokio::test]
async fn the_service_reports_ready_and_exports_its_metrics() {
    let ctx = ctx().await;
    let ready = ctx.http.get(ctx.url("/ready")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    ctx.chat(None, "add check metrics").await;
    let text = ctx.metrics().await;
    assert!(common::metric(&text, "assistant_turns_total{provider=\"rules\",outcome=\"ok\"}") >= 1.0, "{text}");
    for name in flotilla_assistant::metrics::ALL {
        assert!(text.contains(name), "{name} in {text}");
    }
    assert!(text.contains("llm_request_duration_seconds_bucket"), "a histogram with buckets, not a summary");
}
