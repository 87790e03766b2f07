//! The assistant's events: what it emits, and its consumer.
//!
//! Emitted (through the outbox, in the transaction that stores the assistant's message):
//! - `chat.turn_completed` — `subject` = conversation id, `userid` = the user, `data` =
//!   `{conversation_id, message_id, provider, outcome, tool_calls: [{name, succeeded}]}`. The
//!   texts of the messages are not in the event (the audit log keeps events for a year).
//!
//! Consumed (consumer [`CONSUMER`], subjects [`SUBSCRIPTIONS`]), inside the consumer's
//! transaction (inbox row + effects commit together, so a redelivery is a no-op):
//! - `user.deleted` deletes the user's conversations and their messages.

use std::sync::Arc;

use flotilla_events::event::{sources, types};
use flotilla_events::{BoxFuture, Event, Handler, HandlerError, RetryPolicy};
use serde_json::json;
use sqlx::AnyConnection;

use crate::model::ToolCall;
use crate::store::delete_user_conversations;

/// The durable consumer name of the assistant (NATS durable, inbox and dead-letter key).
pub const CONSUMER: &str = "assistant";

/// What the assistant consumer subscribes to.
pub const SUBSCRIPTIONS: &[&str] = &["flotilla.user.deleted"];

/// The retry policy of the assistant consumer.
pub fn retry_policy() -> RetryPolicy {
    RetryPolicy::default()
}

/// `chat.turn_completed` of a turn whose assistant message is `message_id`.
pub fn turn_completed(
    user_id: &str,
    conversation_id: &str,
    message_id: &str,
    provider: &str,
    outcome: &str,
    tool_calls: &[ToolCall],
) -> Event {
    let calls: Vec<_> = tool_calls.iter().map(|c| json!({"name": c.name, "succeeded": c.succeeded()})).collect();
    Event::new(
        sources::ASSISTANT,
        types::CHAT_TURN_COMPLETED,
        Some(conversation_id.to_owned()),
        Some(user_id.to_owned()),
        json!({
            "conversation_id": conversation_id,
            "message_id": message_id,
            "provider": provider,
            "outcome": outcome,
            "tool_calls": calls,
        }),
    )
}

/// The handler of the assistant consumer: `user.deleted` deletes the user's conversations.
#[derive(Clone, Default)]
pub struct AssistantHandler;

impl Handler for AssistantHandler {
    fn handle<'a>(&'a self, event: &'a Event, tx: &'a mut AnyConnection) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            if event.r#type != types::USER_DELETED {
                // Not subscribed (a NATS consumer with several filters sees more): nothing to do.
                return Ok(());
            }
            let user = event
                .userid
                .clone()
                .or_else(|| event.data.get("id").and_then(|v| v.as_str()).map(str::to_owned))
                .filter(|u| !u.is_empty())
                .ok_or_else(|| HandlerError::permanent("user.deleted without userid or data.id"))?;
            let n = delete_user_conversations(tx, &user).await?;
            tracing::info!(user_id = %user, conversations = n, "deleted the conversations of a deleted user");
            Ok(())
        })
    }
}

/// The handler to subscribe as [`CONSUMER`] to [`SUBSCRIPTIONS`].
pub fn handler() -> Arc<dyn Handler> {
    Arc::new(AssistantHandler)
}
