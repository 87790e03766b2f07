//! A chat turn, independent of HTTP: validate, store the user's message (committed before any
//! provider runs, so a crash mid-turn never loses it), read the newest history from the
//! database, let the provider answer with tool calls, and store the assistant's message with
//! its `chat.turn_completed` event in one transaction.

use std::sync::Arc;
use std::time::{Duration, Instant};

use flotilla_runtime::FieldError;
use flotilla_runtime::ids::{is_id, new_id};
use flotilla_runtime::time::now_ms;
use flotilla_runtime::upstream::Upstream;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::config::Config;
use crate::error::ChatError;
use crate::events::turn_completed;
use crate::llm::{Llm, LoopEnd};
use crate::metrics::count_turn;
use crate::model::{HistoryMessage, Role, ToolCall};
use crate::rules;
use crate::store::{Conversation, Message, NewMessage, Store};
use crate::tools::UserTools;

/// Longest user message, in characters.
pub const MESSAGE_MAX: usize = 4000;
/// Longest time zone name accepted.
pub const TZ_MAX: usize = 64;
/// Characters of the first message kept as a conversation's title.
const TITLE_MAX: usize = 80;

/// A chat request: a message, optionally in an existing conversation and a time zone.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ChatRequest)]
pub struct ChatInput {
    /// Continue this conversation (another user's, or an unknown id, is 404); absent starts one.
    #[schema(required = false)]
    pub conversation_id: Option<String>,
    /// What the user says, 1 to 4000 characters (stored exactly as sent).
    #[schema(min_length = 1, max_length = 4000)]
    pub message: String,
    /// The user's IANA time zone (e.g. `Europe/Paris`) for dates like "tomorrow 5pm"; UTC if absent.
    #[schema(required = false, max_length = 64, example = "Europe/Paris")]
    pub tz: Option<String>,
}

/// The answer to a chat turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = ChatResponse)]
pub struct TurnBody {
    pub conversation_id: String,
    /// The assistant's reply, built from what the tools really returned.
    pub response: String,
    /// Every tool call of the turn, in order, with its real result.
    pub tool_calls: Vec<ToolCall>,
}

/// A turn whose user message is stored; the provider has not run yet.
#[derive(Debug, Clone)]
pub struct Begun {
    pub user_id: String,
    pub conversation: Conversation,
    pub user_message: Message,
    pub tz: String,
}

/// The assistant: its store, the tasks API the tools call, and the provider.
#[derive(Clone)]
pub struct Assistant {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    tasks: Upstream,
    cfg: Config,
    llm: Option<Llm>,
    /// Longest time the LLM part of a turn may take (leaves room for the fallback before the
    /// request's own time limit).
    budget: Duration,
}

impl Assistant {
    pub fn new(store: Store, tasks: Upstream, cfg: Config, request_timeout: Duration) -> Self {
        let llm = Llm::new(&cfg);
        crate::metrics::register(cfg.provider.name());
        // A quarter of the request's time (at least 200 ms) is kept for the fallback and storage.
        let budget = request_timeout.saturating_sub((request_timeout / 4).max(Duration::from_millis(200)));
        Self { inner: Arc::new(Inner { store, tasks, cfg, llm, budget: budget.max(Duration::from_millis(100)) }) }
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn tasks(&self) -> &Upstream {
        &self.inner.tasks
    }

    /// Validates the request and stores the user's message (a new conversation if none is
    /// named). Invalid input and unknown conversations change nothing.
    pub async fn begin(&self, user_id: &str, input: ChatInput) -> Result<Begun, ChatError> {
        let tz = validate(&input)?;
        let now = now_ms();
        let msg = NewMessage::user(&input.message);
        let (conversation, user_message) = match &input.conversation_id {
            None => self.inner.store.create_conversation(user_id, &title_of(&input.message), &msg, now).await?,
            Some(id) => {
                if !is_id(id) {
                    return Err(ChatError::NotFound);
                }
                let stored = self.inner.store.append(user_id, id, &msg, None, now).await?.ok_or(ChatError::NotFound)?;
                let conversation = self.inner.store.conversation(user_id, id).await?.ok_or(ChatError::NotFound)?;
                (conversation, stored)
            }
        };
        Ok(Begun { user_id: user_id.to_owned(), conversation, user_message, tz })
    }

    /// Runs the provider for a begun turn and stores its reply. `bearer` is the caller's token:
    /// the tools call the tasks API with it. Tool calls go to `sink` as they complete.
    pub async fn finish(
        &self,
        begun: Begun,
        bearer: String,
        sink: Option<mpsc::Sender<ToolCall>>,
    ) -> Result<TurnBody, ChatError> {
        let inner = &self.inner;
        let conv_id = begun.conversation.id.clone();
        let history: Vec<HistoryMessage> = inner
            .store
            .history(&conv_id, begun.user_message.seq, inner.cfg.history)
            .await?
            .iter()
            .map(Message::to_history)
            .collect();
        let tools = UserTools::new(inner.tasks.clone(), begun.user_id.clone(), bearer);
        let message = begun.user_message.content.as_str();
        let provider = inner.cfg.provider.name();
        let (reply, outcome) = match &inner.llm {
            None => (self.rules_turn(&begun.tz, &history, message, &tools, sink.as_ref()).await, "ok"),
            Some(llm) => self.llm_turn(llm, &begun.tz, &history, message, &tools, sink.as_ref()).await,
        };
        let id = new_id();
        let event = turn_completed(&begun.user_id, &conv_id, &id, provider, outcome, &reply.tool_calls);
        let msg = NewMessage {
            id,
            role: Role::Assistant,
            content: reply.response.clone(),
            tool_calls: reply.tool_calls.clone(),
            state: reply.state,
        };
        let stored = inner.store.append(&begun.user_id, &conv_id, &msg, Some(&event), now_ms()).await?;
        count_turn(provider, outcome);
        if stored.is_none() {
            // Deleted while the turn ran: the reply has nowhere to go.
            return Err(ChatError::NotFound);
        }
        Ok(TurnBody { conversation_id: conv_id, response: reply.response, tool_calls: reply.tool_calls })
    }

    async fn rules_turn(
        &self,
        tz: &str,
        history: &[HistoryMessage],
        message: &str,
        tools: &UserTools,
        sink: Option<&mpsc::Sender<ToolCall>>,
    ) -> Reply {
        let ctx = rules::Context { now: time::OffsetDateTime::now_utc(), tz, history };
        let r = rules::turn(&ctx, message, tools).await;
        if let Some(sink) = sink {
            for call in &r.tool_calls {
                let _ = sink.send(call.clone()).await;
            }
        }
        Reply { response: r.response, tool_calls: r.tool_calls, state: r.state }
    }

    /// The LLM loop, with its fallbacks: before any tool ran, the rules engine answers; after,
    /// the reply says what failed and what was really done (running the message again through
    /// the rules engine could repeat a write).
    async fn llm_turn(
        &self,
        llm: &Llm,
        tz: &str,
        history: &[HistoryMessage],
        message: &str,
        tools: &UserTools,
        sink: Option<&mpsc::Sender<ToolCall>>,
    ) -> (Reply, &'static str) {
        let deadline = Instant::now() + self.inner.budget;
        let end = llm.run(system_prompt(tz), history, message, tools, sink, deadline).await;
        match end {
            LoopEnd::Answer { response, tool_calls } => (Reply { response, tool_calls, state: None }, "ok"),
            LoopEnd::OutOfSteps { tool_calls } => {
                let response = format!(
                    "I stopped after {} steps without finishing. What I did: {}",
                    self.inner.cfg.max_steps,
                    summary(&tool_calls)
                );
                (Reply { response, tool_calls, state: None }, "error")
            }
            LoopEnd::Failed { error, tool_calls } if tool_calls.is_empty() => {
                tracing::info!(provider = llm.provider(), %error, "LLM turn failed; the rules engine answers");
                (self.rules_turn(tz, history, message, tools, sink).await, "fallback")
            }
            LoopEnd::Failed { error, tool_calls } => {
                let response = format!("I could not finish: {error}. What I did: {}", summary(&tool_calls));
                (Reply { response, tool_calls, state: None }, "error")
            }
        }
    }
}

/// A provider's answer.
struct Reply {
    response: String,
    tool_calls: Vec<ToolCall>,
    state: Option<Value>,
}

/// Checks a chat request; returns its time zone (UTC by default).
pub fn validate(input: &ChatInput) -> Result<String, ChatError> {
    let mut errors = Vec::new();
    let n = input.message.chars().count();
    if input.message.trim().is_empty() {
        errors.push(FieldError::new("message", "must not be empty or blank"));
    } else if n > MESSAGE_MAX {
        errors.push(FieldError::new("message", format!("must be at most {MESSAGE_MAX} characters (it has {n})")));
    }
    let tz = input.tz.as_deref().map(str::trim).filter(|t| !t.is_empty()).unwrap_or("UTC");
    if !is_time_zone(tz) {
        errors.push(FieldError::new("tz", "must be an IANA time zone name, e.g. Europe/Paris or UTC"));
    }
    if errors.is_empty() { Ok(tz.to_owned()) } else { Err(ChatError::Invalid(errors)) }
}

/// An IANA time zone name known to the bundled database.
pub fn is_time_zone(name: &str) -> bool {
    name.len() <= TZ_MAX && jiff::tz::TimeZone::get(name).is_ok()
}

/// The first line of the first message, shortened.
fn title_of(message: &str) -> String {
    let line = message.trim().lines().next().unwrap_or_default().trim();
    let mut title: String = line.chars().take(TITLE_MAX).collect();
    if line.chars().count() > TITLE_MAX {
        title.push('…');
    }
    title
}

/// The instructions of the LLM: its role, the time, and to report only what the tools did.
fn system_prompt(tz: &str) -> String {
    let now = jiff::tz::TimeZone::get(tz)
        .map(|z| jiff::Timestamp::now().to_zoned_datetime(z).strftime("%A %Y-%m-%d %H:%M %:z").to_string())
        .unwrap_or_else(|_| jiff::Timestamp::now().to_string());
    format!(
        "You are Flotilla's task assistant. You manage the signed-in user's tasks only through the \
         tools you are given; they act for that user, so never ask for or pass a user id. \
         The user's time zone is {tz}; it is now {now}. Write dates in tool arguments as RFC 3339 \
         timestamps with an offset. Use task ids returned by list_tasks or search_tasks; never \
         invent one. Before deleting several tasks, ask the user to confirm. After using tools, \
         answer briefly and say only what their results show: if a tool returned an error, say \
         that it failed and why."
    )
}

/// What tool calls did, from their results: `add_task: created "Buy milk"; …`.
pub fn summary(calls: &[ToolCall]) -> String {
    if calls.is_empty() {
        return "nothing".into();
    }
    calls
        .iter()
        .map(|c| {
            let r = &c.result;
            if let Some(err) = r.get("error").and_then(Value::as_str) {
                format!("{} failed ({err})", c.name)
            } else if let (Some(status), Some(title)) =
                (r.get("status").and_then(Value::as_str), r.get("title").and_then(Value::as_str))
            {
                format!("{}: {status} \"{title}\"", c.name)
            } else if let Some(n) = r.get("count").and_then(Value::as_u64) {
                format!("{}: {n} task(s)", c.name)
            } else {
                format!("{}: done", c.name)
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn input(message: &str, tz: Option<&str>) -> ChatInput {
        ChatInput { conversation_id: None, message: message.into(), tz: tz.map(Into::into) }
    }

    #[test]
    fn messages_and_time_zones_are_checked() {
        assert_eq!(validate(&input("hi", None)).unwrap(), "UTC");
        assert_eq!(validate(&input("hi", Some("Europe/Paris"))).unwrap(), "Europe/Paris");
        assert_eq!(validate(&input(&"é".repeat(MESSAGE_MAX), None)).unwrap(), "UTC");
        for (m, tz) in [("", None), ("   ", None), (&*"x".repeat(MESSAGE_MAX + 1), None), ("hi", Some("Mars/Olympus"))]
        {
            assert!(matches!(validate(&input(m, tz)), Err(ChatError::Invalid(_))), "{m:?} {tz:?}");
        }
    }

    #[test]
    fn titles_are_the_first_line_shortened() {
        assert_eq!(title_of("  Buy milk\nand bread"), "Buy milk");
        assert_eq!(title_of(&"a".repeat(100)).chars().count(), TITLE_MAX + 1);
    }

    #[test]
    fn summaries_come_from_results() {
        let calls = vec![
            ToolCall {
                name: "add_task".into(),
                arguments: json!({}),
                result: json!({"task_id": "1", "status": "created", "title": "Milk"}),
            },
            ToolCall { name: "delete_task".into(), arguments: json!({}), result: json!({"error": "task 9 not found"}) },
        ];
        assert_eq!(summary(&calls), "add_task: created \"Milk\"; delete_task failed (task 9 not found)");
    }
}
