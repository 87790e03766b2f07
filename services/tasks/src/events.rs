//! The tasks service's events: what it emits, and its consumer.
//!
//! Emitted (through the outbox, in the transaction of the change; `subject` = task id,
//! `userid` = owner, `data` = the task's API JSON, plus `series` for later occurrences of a
//! recurring task):
//! - `task.created` — a create (also the next occurrence of a recurring task);
//! - `task.updated` — PUT/PATCH that changes the task without changing `completed`;
//! - `task.completed` / `task.reopened` — a write that changes `completed` (complete endpoint,
//!   PUT or PATCH);
//! - `task.deleted` — `data` = `{id}`; one per task, also for each task removed because its
//!   owner's account was deleted;
//! - `task.reminder_due` — by the reminder scheduler ([`crate::reminders`]) at `remind_at`.
//!
//! Consumed (consumer `tasks`, subjects [`SUBSCRIPTIONS`]), each inside the consumer's
//! transaction (inbox row + effects + their events commit together):
//! - `task.completed` of a task with a recurrence rule creates the next occurrence exactly once
//!   (the inbox drops duplicate deliveries; the unique `(series_id, occurrence)` index makes a
//!   second completion of the same occurrence, or a racing replica, a no-op);
//! - `user.deleted` deletes the user's tasks, tags and idempotency keys and emits `task.deleted`
//!   for each task.

use flotilla_events::event::{sources, types};
use flotilla_events::outbox::RelayNotifier;
use flotilla_events::{BoxFuture, Event, Handler, HandlerError, RetryPolicy, enqueue};
use flotilla_runtime::ids::new_id;
use flotilla_runtime::time::{now_ms, parse_rfc3339};
use sqlx::AnyConnection;

use crate::model::{Recurrence, Series, Task, TaskContent, TaskJson};
use crate::recurrence::next_occurrence;
use crate::store::{delete_user_tasks, insert_tags, insert_task};

/// The durable consumer name of the tasks service (NATS durable, inbox and dead-letter key).
pub const CONSUMER: &str = "tasks";

/// What the tasks consumer subscribes to.
pub const SUBSCRIPTIONS: &[&str] = &["flotilla.task.completed", "flotilla.user.deleted"];

/// The retry policy of the tasks consumer.
pub fn retry_policy() -> RetryPolicy {
    RetryPolicy::default()
}

/// An event about `task` (`subject` = its id, `userid` = its owner, `data` = its JSON).
pub fn task_event(event_type: &str, task: &Task) -> Event {
    Event::new(sources::TASKS, event_type, Some(task.id.clone()), Some(task.user_id.clone()), task.event_data())
}

/// `task.deleted` of task `id` of `user_id` (`data` = `{id}`).
pub fn task_deleted(user_id: &str, id: &str) -> Event {
    Event::new(
        sources::TASKS,
        types::TASK_DELETED,
        Some(id.to_owned()),
        Some(user_id.to_owned()),
        serde_json::json!({ "id": id }),
    )
}

/// The handler of the tasks consumer.
#[derive(Clone, Default)]
pub struct TasksHandler {
    notifier: RelayNotifier,
}

impl TasksHandler {
    /// `notifier` wakes the tasks outbox relay when handling enqueued events.
    pub fn new(notifier: RelayNotifier) -> Self {
        Self { notifier }
    }

    async fn on_completed(&self, event: &Event, tx: &mut AnyConnection) -> Result<(), HandlerError> {
        let Some(next) = next_task(event)? else { return Ok(()) };
        if insert_task(tx, &next, true).await? {
            insert_tags(tx, &next).await?;
            enqueue(tx, &task_event(types::TASK_CREATED, &next)).await?;
            // Wakes the relay for its next pass (after this transaction commits).
            self.notifier.notify();
            tracing::info!(task_id = %next.id, series = ?next.series, "next occurrence of a recurring task created");
        } else {
            tracing::debug!(series = ?next.series, "next occurrence exists already");
        }
        Ok(())
    }

    async fn on_user_deleted(&self, event: &Event, tx: &mut AnyConnection) -> Result<(), HandlerError> {
        let user = event
            .userid
            .clone()
            .or_else(|| event.data.get("id").and_then(|v| v.as_str()).map(str::to_owned))
            .filter(|u| !u.is_empty())
            .ok_or_else(|| HandlerError::permanent("user.deleted without userid or data.id"))?;
        let ids = delete_user_tasks(tx, &user).await?;
        for id in &ids {
            enqueue(tx, &task_deleted(&user, id)).await?;
        }
        if !ids.is_empty() {
            self.notifier.notify();
        }
        tracing::info!(user_id = %user, tasks = ids.len(), "deleted the tasks of a deleted user");
        Ok(())
    }
}

impl Handler for TasksHandler {
    fn handle<'a>(&'a self, event: &'a Event, tx: &'a mut AnyConnection) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            match event.r#type.as_str() {
                types::TASK_COMPLETED => self.on_completed(event, tx).await,
                types::USER_DELETED => self.on_user_deleted(event, tx).await,
                // Not subscribed (a NATS consumer with several filters sees more): nothing to do.
                _ => Ok(()),
            }
        })
    }
}

fn time_field(value: Option<&str>, name: &str) -> Result<Option<i64>, HandlerError> {
    value
        .map(|s| parse_rfc3339(s).ok_or_else(|| HandlerError::permanent(format!("{name} is not RFC 3339: {s:?}"))))
        .transpose()
}

/// The next occurrence of the task in a `task.completed` event, if it recurs and its series
/// goes on. The new task is pending, with the same content, in the same series.
pub fn next_task(event: &Event) -> Result<Option<Task>, HandlerError> {
    let data: TaskJson = serde_json::from_value(event.data.clone())
        .map_err(|e| HandlerError::permanent(format!("task.completed data is not a task: {e}")))?;
    let Some(rec) = &data.recurrence else { return Ok(None) };
    let rule = Recurrence {
        freq: rec.freq,
        interval: rec.interval,
        until: time_field(rec.until.as_deref(), "recurrence.until")?,
        count: rec.count,
    };
    let series: Option<Series> = event
        .data
        .get("series")
        .map(|v| serde_json::from_value(v.clone()))
        .transpose()
        .map_err(|e| HandlerError::permanent(format!("task.completed series: {e}")))?;
    let due_at = time_field(data.due_at.as_deref(), "due_at")?;
    let remind_at = time_field(data.remind_at.as_deref(), "remind_at")?;
    let completed_at =
        time_field(data.completed_at.as_deref(), "completed_at")?.or_else(|| event.time_ms()).unwrap_or_else(now_ms);
    let occurrence = series.as_ref().map_or(1, |s| s.occurrence);
    let Some(next) = next_occurrence(&rule, occurrence, due_at, remind_at, completed_at) else {
        return Ok(None);
    };
    let content = TaskContent {
        title: data.title,
        description: data.description,
        priority: data.priority,
        tags: data.tags,
        due_at: Some(next.due_at),
        remind_at: next.remind_at,
        recurrence: Some(rule),
    };
    let mut task = Task::new(new_id(), data.user_id, content, now_ms());
    task.series = Some(Series { id: series.map_or(data.id, |s| s.id), occurrence: next.occurrence });
    Ok(Some(task))
}
