//! The Ollama provider against a fake server that speaks Ollama's native `/api/chat` protocol:
//! the loop (arguments as objects, results as `tool` messages), and the failure paths.

mod common;

use std::time::{Duration, Instant};

use common::{FakeLlm, Scripted, metric, ollama_calls, ollama_text, start};
use flotilla_assistant::{Config, Provider};
use serde_json::{Value, json};

fn config(fake: &FakeLlm) -> Config {
    Config {
        provider: Provider::Ollama { url: fake.url.clone(), model: "llama-test".into() },
        llm_timeout: Duration::from_millis(1500),
        ..Config::default()
    }
}

#[tokio::test]
async fn tool_calls_run_and_their_results_go_back_as_tool_messages() {
    let fake = FakeLlm::start().await;
    let ctx = start(config(&fake)).await;
    fake.push(Scripted::Json(ollama_calls(&[
        ("add_task", json!({"title": "Buy bread", "tags": ["home"]})),
        ("add_task", json!({"title": "Buy eggs"})),
    ])));
    fake.push(Scripted::Json(ollama_calls(&[("list_tasks", json!({"status": "pending"}))])));
    fake.push(Scripted::Json(ollama_text("You have 2 pending tasks: Buy bread and Buy eggs.")));
    let body = ctx.chat(None, "add buy bread #home and buy eggs, then show me").await;
    assert_eq!(body["response"], "You have 2 pending tasks: Buy bread and Buy eggs.");
    let names: Vec<&str> = body["tool_calls"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["add_task", "add_task", "list_tasks"]);
    assert_eq!(body["tool_calls"][2]["result"]["count"], 2);
    let mut titles: Vec<String> =
        ctx.alice_tasks().await.iter().map(|t| t["title"].as_str().unwrap().to_owned()).collect();
    titles.sort();
    assert_eq!(titles, ["Buy bread", "Buy eggs"]);

    let got = fake.received();
    assert_eq!(got.len(), 3);
    for r in &got {
        assert_eq!(r.path, "/api/chat");
        assert_eq!(r.body["model"], "llama-test");
        assert_eq!(r.body["stream"], false);
        assert_eq!(r.body["tools"].as_array().unwrap().len(), 6);
        assert_eq!(r.authorization, None);
    }
    let last = got[2].body["messages"].as_array().unwrap();
    let roles: Vec<&str> = last.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["system", "user", "assistant", "tool", "tool", "assistant", "tool"]);
    assert!(
        last[2]["tool_calls"][0]["function"]["arguments"].is_object(),
        "arguments are objects in Ollama's protocol"
    );
    let result: Value = serde_json::from_str(last[3]["content"].as_str().unwrap()).unwrap();
    assert_eq!(result["status"], "created");
    assert_eq!(result["title"], "Buy bread");
}

#[tokio::test]
async fn failures_fall_back_to_the_rules_engine() {
    let fake = FakeLlm::start().await;
    let mut cfg = config(&fake);
    cfg.llm_timeout = Duration::from_millis(300);
    cfg.breaker_threshold = 100;
    let ctx = start(cfg).await;
    let before = ctx.metrics().await;
    fake.push(Scripted::Status(500));
    fake.push(Scripted::Json(ollama_calls(&[("add_task", json!("title: not json"))])));
    fake.push(Scripted::Json(json!({"error": "model 'llama-test' not found"})));
    fake.push(Scripted::Slow(Duration::from_secs(3), ollama_text("late")));
    let started = Instant::now();
    for i in 0..4 {
        let body = ctx.chat(None, &format!("add chore {i}")).await;
        assert_eq!(body["tool_calls"][0]["name"], "add_task", "{body}");
    }
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(ctx.alice_tasks().await.len(), 4, "each message handled once, by the rules engine");
    assert_eq!(ctx.count("SELECT COUNT(*) FROM messages WHERE role = 'user'").await, 4);
    let after = ctx.metrics().await;
    let series = "assistant_turns_total{provider=\"ollama\",outcome=\"fallback\"}";
    assert!(metric(&after, series) >= metric(&before, series) + 4.0, "{after}");
}

#[tokio::test]
async fn an_unreachable_server_falls_back_too() {
    let cfg = Config {
        // Nothing listens on port 9 of the loopback: connection refused.
        provider: Provider::Ollama { url: "http://127.0.0.1:9".into(), model: "m".into() },
        ..Config::default()
    };
    let ctx = common::start(cfg).await;
    let body = ctx.chat(None, "add call the plumber").await;
    assert_eq!(body["tool_calls"][0]["name"], "add_task");
    assert_eq!(ctx.alice_tasks().await.len(), 1);
}
