//! The OpenAI provider against a fake endpoint that speaks the chat completions protocol: the
//! tool-calling loop, the requests' shape, and every failure path (500, malformed tool call,
//! slow answer, open circuit, failure after a tool ran), checking the stored tasks, the stored
//! messages and the metrics each time.

mod common;

use std::time::{Duration, Instant};

use common::{FakeLlm, Scripted, metric, openai_calls, openai_text, start};
use flotilla_assistant::{Config, Provider};
use serde_json::{Value, json};

fn config(fake: &FakeLlm) -> Config {
    Config {
        provider: Provider::OpenAi {
            base_url: format!("{}/v1", fake.url),
            api_key: "sk-test-key".into(),
            model: "gpt-test".into(),
        },
        llm_timeout: Duration::from_millis(1500),
        ..Config::default()
    }
}

fn series(outcome: &str) -> String {
    format!("assistant_turns_total{{provider=\"openai\",outcome=\"{outcome}\"}}")
}

#[tokio::test]
async fn the_loop_runs_tools_for_the_token_user_and_sends_their_results_back() {
    let fake = FakeLlm::start().await;
    let ctx = start(config(&fake)).await;
    let before = ctx.metrics().await;
    fake.push(Scripted::Json(openai_calls(&[(
        "call_a",
        "add_task",
        // A user id from the model is never used: the task is the token user's.
        &json!({"title": "Buy milk", "priority": "high", "user_id": ctx.bob}).to_string(),
    )])));
    fake.push(Scripted::Json(openai_text("I added \"Buy milk\" with high priority.")));
    let body = ctx.chat(None, "please add buy milk, it's urgent").await;
    assert_eq!(body["response"], "I added \"Buy milk\" with high priority.");
    let calls = body["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["name"], "add_task");
    assert_eq!(calls[0]["result"]["status"], "created");
    assert_eq!(calls[0]["arguments"].get("user_id"), None);

    let tasks = ctx.alice_tasks().await;
    assert_eq!(tasks.len(), 1);
    assert_eq!((tasks[0]["title"].as_str(), tasks[0]["priority"].as_str()), (Some("Buy milk"), Some("high")));
    assert!(ctx.stored_tasks(&ctx.bob, &ctx.bob_token).await.is_empty());

    let got = fake.received();
    assert_eq!(got.len(), 2);
    for r in &got {
        assert_eq!(r.path, "/v1/chat/completions");
        assert_eq!(r.authorization.as_deref(), Some("Bearer sk-test-key"));
        assert_eq!(r.body["model"], "gpt-test");
        let names: Vec<&str> =
            r.body["tools"].as_array().unwrap().iter().map(|t| t["function"]["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["add_task", "list_tasks", "complete_task", "delete_task", "update_task", "search_tasks"]);
        assert!(
            r.body["tools"]
                .as_array()
                .unwrap()
                .iter()
                .all(|t| t["type"] == "function" && t["function"]["parameters"]["type"] == "object")
        );
    }
    let first = got[0].body["messages"].as_array().unwrap();
    assert_eq!((first[0]["role"].as_str(), first.len()), (Some("system"), 2));
    assert_eq!(first[1], json!({"role": "user", "content": "please add buy milk, it's urgent"}));
    let second = got[1].body["messages"].as_array().unwrap();
    assert_eq!(second.len(), 4);
    assert_eq!(second[2]["role"], "assistant");
    assert_eq!(second[2]["tool_calls"][0]["id"], "call_a");
    assert!(second[2]["tool_calls"][0]["function"]["arguments"].is_string(), "arguments go back as a JSON string");
    assert_eq!(second[3]["role"], "tool");
    assert_eq!(second[3]["tool_call_id"], "call_a");
    let result: Value = serde_json::from_str(second[3]["content"].as_str().unwrap()).unwrap();
    assert_eq!(result["task_id"], tasks[0]["id"]);

    let conv = ctx.conversation(body["conversation_id"].as_str().unwrap()).await;
    let messages = conv["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[1]["tool_calls"], body["tool_calls"]);

    let after = ctx.metrics().await;
    assert!(metric(&after, &series("ok")) >= metric(&before, &series("ok")) + 1.0, "{after}");
    assert!(after.contains("llm_request_duration_seconds_bucket{provider=\"openai\",outcome=\"ok\""), "{after}");
}

#[tokio::test]
async fn the_next_turn_reads_the_stored_history_with_its_tool_calls() {
    let fake = FakeLlm::start().await;
    let ctx = start(config(&fake)).await;
    fake.push(Scripted::Json(openai_calls(&[("c1", "add_task", r#"{"title":"Call mum"}"#)])));
    fake.push(Scripted::Json(openai_text("Added.")));
    let first = ctx.chat(None, "add call mum").await;
    let conv = first["conversation_id"].as_str().unwrap();
    let task_id = first["tool_calls"][0]["result"]["task_id"].as_str().unwrap().to_owned();
    fake.push(Scripted::Json(openai_calls(&[("c2", "complete_task", &json!({"task_id": task_id}).to_string())])));
    fake.push(Scripted::Json(openai_text("Done.")));
    let second = ctx.chat(Some(conv), "I called her").await;
    assert_eq!(second["conversation_id"], conv);
    assert_eq!(second["tool_calls"][0]["result"]["status"], "completed");
    assert_eq!(ctx.alice_tasks().await[0]["completed"], true);
    // Turn two's first request replays turn one: user, assistant tool call, tool result, reply.
    let messages = fake.received()[2].body["messages"].as_array().unwrap().clone();
    let roles: Vec<&str> = messages.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["system", "user", "assistant", "tool", "assistant", "user"]);
    assert!(messages[3]["content"].as_str().unwrap().contains(&task_id));
    assert_eq!(messages[4]["content"], "Added.");
}

#[tokio::test]
async fn a_500_falls_back_to_the_rules_engine_and_keeps_the_message() {
    let fake = FakeLlm::start().await;
    let ctx = start(config(&fake)).await;
    let before = ctx.metrics().await;
    fake.push(Scripted::Status(500));
    let body = ctx.chat(None, "add water the plants").await;
    assert!(!body["response"].as_str().unwrap().is_empty());
    assert_eq!(body["tool_calls"][0]["name"], "add_task", "the rules engine did the work: {body}");
    let tasks = ctx.alice_tasks().await;
    assert_eq!(tasks.len(), 1, "exactly once");
    let conv = ctx.conversation(body["conversation_id"].as_str().unwrap()).await;
    assert_eq!(conv["messages"][0]["content"], "add water the plants");
    assert_eq!(conv["messages"][1]["role"], "assistant");
    let after = ctx.metrics().await;
    assert!(metric(&after, &series("fallback")) >= metric(&before, &series("fallback")) + 1.0);
    assert!(after.contains("llm_request_duration_seconds_bucket{provider=\"openai\",outcome=\"http_error\""));
}

#[tokio::test]
async fn a_malformed_tool_call_runs_nothing_and_falls_back() {
    let fake = FakeLlm::start().await;
    let ctx = start(config(&fake)).await;
    for bad in
        [openai_calls(&[("c1", "drop_all_tasks", "{}")]), openai_calls(&[("c1", "add_task", "{\"title\": oops")])]
    {
        fake.push(Scripted::Json(bad));
        let body = ctx.chat(None, "show my tasks").await;
        let names: Vec<&str> =
            body["tool_calls"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert!(names.iter().all(|n| *n != "drop_all_tasks" && *n != "add_task"), "{body}");
    }
    assert!(ctx.alice_tasks().await.is_empty(), "the malformed calls changed nothing");
    assert_eq!(ctx.count("SELECT COUNT(*) FROM messages").await, 4, "both turns stored");
}

#[tokio::test]
async fn a_slow_answer_times_out_and_falls_back() {
    let fake = FakeLlm::start().await;
    let mut cfg = config(&fake);
    cfg.llm_timeout = Duration::from_millis(300);
    let ctx = start(cfg).await;
    fake.push(Scripted::Slow(Duration::from_secs(3), openai_text("too late")));
    let started = Instant::now();
    let body = ctx.chat(None, "add feed the cat").await;
    assert!(started.elapsed() < Duration::from_secs(2), "did not wait for the slow model");
    assert_ne!(body["response"], "too late");
    assert_eq!(ctx.alice_tasks().await.len(), 1);
    assert!(
        ctx.metrics().await.contains("llm_request_duration_seconds_bucket{provider=\"openai\",outcome=\"timeout\"")
    );
}

#[tokio::test]
async fn a_failure_after_a_tool_ran_reports_what_was_done_without_repeating_it() {
    let fake = FakeLlm::start().await;
    let ctx = start(config(&fake)).await;
    fake.push(Scripted::Json(openai_calls(&[("c1", "add_task", r#"{"title":"Pay rent"}"#)])));
    fake.push(Scripted::Status(503));
    let body = ctx.chat(None, "add pay rent").await;
    let response = body["response"].as_str().unwrap();
    assert!(response.contains("could not finish") && response.contains("Pay rent"), "{response}");
    assert_eq!(body["tool_calls"].as_array().unwrap().len(), 1);
    assert_eq!(ctx.alice_tasks().await.len(), 1, "not added a second time by a fallback");
}

#[tokio::test]
async fn the_step_budget_bounds_the_loop() {
    let fake = FakeLlm::start().await;
    let mut cfg = config(&fake);
    cfg.max_steps = 2;
    let ctx = start(cfg).await;
    for _ in 0..3 {
        fake.push(Scripted::Json(openai_calls(&[("c", "list_tasks", "{}")])));
    }
    let body = ctx.chat(None, "keep listing").await;
    assert_eq!(fake.received().len(), 2);
    assert_eq!(body["tool_calls"].as_array().unwrap().len(), 2);
    assert!(body["response"].as_str().unwrap().contains("stopped after 2 steps"), "{body}");
}

#[tokio::test]
async fn an_open_circuit_skips_the_model() {
    let fake = FakeLlm::start().await;
    let mut cfg = config(&fake);
    cfg.breaker_threshold = 2;
    cfg.breaker_open = Duration::from_secs(60);
    let ctx = start(cfg).await;
    fake.push(Scripted::Status(500));
    fake.push(Scripted::Status(502));
    ctx.chat(None, "show my tasks").await;
    ctx.chat(None, "show my tasks").await;
    assert_eq!(fake.received().len(), 2);
    // The gauge is process-wide and other tests make breakers of the same name: check it exists.
    assert!(ctx.metrics().await.contains("circuit_breaker_state{upstream=\"openai\"}"));
    fake.push(Scripted::Json(openai_text("never asked")));
    let body = ctx.chat(None, "add sweep the floor").await;
    assert_eq!(fake.received().len(), 2, "no request while the circuit is open");
    assert_ne!(body["response"], "never asked");
    assert_eq!(ctx.alice_tasks().await.len(), 1, "the rules engine answered");
}
