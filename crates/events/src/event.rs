//! The CloudEvents 1.0 envelope (JSON format) and Flotilla's event types.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `specversion` of every event.
pub const SPEC_VERSION: &str = "1.0";
/// `datacontenttype` of every event: `data` is JSON.
pub const CONTENT_TYPE: &str = "application/json";

/// `source` of the events of each service.
pub mod sources {
    pub const ACCOUNTS: &str = "/flotilla/accounts";
    pub const TASKS: &str = "/flotilla/tasks";
    pub const ASSISTANT: &str = "/flotilla/assistant";
}

/// Every event type of the brief (section 5). The NATS subject is `flotilla.<type>`.
pub mod types {
    pub const USER_SIGNED_UP: &str = "user.signed_up";
    pub const USER_LOGGED_IN: &str = "user.logged_in";
    pub const USER_LOGIN_FAILED: &str = "user.login_failed";
    pub const USER_DELETED: &str = "user.deleted";
    pub const TASK_CREATED: &str = "task.created";
    pub const TASK_UPDATED: &str = "task.updated";
    pub const TASK_COMPLETED: &str = "task.completed";
    pub const TASK_REOPENED: &str = "task.reopened";
    pub const TASK_DELETED: &str = "task.deleted";
    pub const TASK_REMINDER_DUE: &str = "task.reminder_due";
    pub const CHAT_TURN_COMPLETED: &str = "chat.turn_completed";

    pub const ALL: &[&str] = &[
        USER_SIGNED_UP,
        USER_LOGGED_IN,
        USER_LOGIN_FAILED,
        USER_DELETED,
        TASK_CREATED,
        TASK_UPDATED,
        TASK_COMPLETED,
        TASK_REOPENED,
        TASK_DELETED,
        TASK_REMINDER_DUE,
        CHAT_TURN_COMPLETED,
    ];
}

/// Prefix of every event subject on NATS.
pub const SUBJECT_PREFIX: &str = "flotilla.";

/// The NATS subject of an event type: `flotilla.<type>` (e.g. `flotilla.task.created`).
pub fn subject_for(event_type: &str) -> String {
    format!("{SUBJECT_PREFIX}{event_type}")
}

/// Whether a NATS subject matches a filter with `*` (one token) and `>` (the rest, at least one
/// token) wildcards, as JetStream matches consumer filters.
pub fn subject_matches(filter: &str, subject: &str) -> bool {
    let mut subject_tokens = subject.split('.');
    let mut filter_tokens = filter.split('.').peekable();
    while let Some(f) = filter_tokens.next() {
        if f == ">" && filter_tokens.peek().is_none() {
            return subject_tokens.next().is_some();
        }
        match subject_tokens.next() {
            Some(s) if f == "*" || f == s => {}
            _ => return false,
        }
    }
    subject_tokens.next().is_none()
}

/// One event: a CloudEvents 1.0 envelope in its JSON format.
///
/// `userid` is an extension attribute: the user the event concerns (the activity feed and the
/// user-deletion fan-out key on it). `subject` is the CloudEvents subject (e.g. the task id), not
/// the NATS subject (see [`Event::nats_subject`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub specversion: String,
    pub id: String,
    pub source: String,
    pub r#type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    pub time: String,
    pub datacontenttype: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userid: Option<String>,
    #[serde(default)]
    pub data: Value,
}

impl Event {
    /// A new event with a fresh UUIDv7 id and the current time.
    pub fn new(
        source: impl Into<String>,
        event_type: impl Into<String>,
        subject: Option<String>,
        userid: Option<String>,
        data: Value,
    ) -> Self {
        Self {
            specversion: SPEC_VERSION.to_owned(),
            id: flotilla_runtime::ids::new_id(),
            source: source.into(),
            r#type: event_type.into(),
            subject,
            time: flotilla_runtime::time::format_ms(flotilla_runtime::time::now_ms()),
            datacontenttype: CONTENT_TYPE.to_owned(),
            userid,
            data,
        }
    }

    /// The NATS subject this event is published on: `flotilla.<type>`.
    pub fn nats_subject(&self) -> String {
        subject_for(&self.r#type)
    }

    /// `time` as unix milliseconds (None if it is not RFC 3339).
    pub fn time_ms(&self) -> Option<i64> {
        flotilla_runtime::time::parse_rfc3339(&self.time)
    }

    /// The JSON envelope.
    pub fn to_json(&self) -> String {
        // Serializing plain strings and a `Value` cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses and checks a JSON envelope (specversion 1.0, non-empty id, source and type).
    pub fn from_json(bytes: &[u8]) -> Result<Self, EventError> {
        let event: Event = serde_json::from_slice(bytes).map_err(|e| EventError::Invalid(e.to_string()))?;
        event.validate()?;
        Ok(event)
    }

    /// Checks the envelope: specversion 1.0, non-empty id, source and type, and a type usable as
    /// a NATS subject suffix.
    pub fn validate(&self) -> Result<(), EventError> {
        if self.specversion != SPEC_VERSION {
            return Err(EventError::Invalid(format!("unsupported specversion {:?}", self.specversion)));
        }
        if self.id.is_empty() || self.source.is_empty() || self.r#type.is_empty() {
            return Err(EventError::Invalid("id, source and type must not be empty".into()));
        }
        // Types become NATS subject tokens: no wildcards, spaces or empty tokens.
        let bad_token = |t: &str| t.is_empty() || t.contains(['*', '>', ' ', '\t', '\r', '\n']);
        if self.r#type.split('.').any(bad_token) {
            return Err(EventError::Invalid(format!("type {:?} is not a valid subject suffix", self.r#type)));
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("invalid event: {0}")]
    Invalid(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_is_cloudevents_json() {
        let ev = Event::new(
            sources::TASKS,
            types::TASK_CREATED,
            Some("task-1".into()),
            Some("user-1".into()),
            serde_json::json!({"title": "Buy milk"}),
        );
        let json: Value = serde_json::from_str(&ev.to_json()).unwrap();
        assert_eq!(json["specversion"], "1.0");
        assert_eq!(json["type"], "task.created");
        assert_eq!(json["source"], "/flotilla/tasks");
        assert_eq!(json["subject"], "task-1");
        assert_eq!(json["userid"], "user-1");
        assert_eq!(json["datacontenttype"], "application/json");
        assert_eq!(json["data"]["title"], "Buy milk");
        assert!(flotilla_runtime::ids::is_id(json["id"].as_str().unwrap()));
        assert!(ev.time_ms().is_some());
        assert_eq!(Event::from_json(ev.to_json().as_bytes()).unwrap(), ev);
        assert_eq!(ev.nats_subject(), "flotilla.task.created");

        let bare = Event::new(sources::ACCOUNTS, types::USER_DELETED, None, None, Value::Null);
        let json: Value = serde_json::from_str(&bare.to_json()).unwrap();
        assert!(json.get("subject").is_none() && json.get("userid").is_none());
    }

    #[test]
    fn invalid_envelopes_are_rejected() {
        assert!(Event::from_json(b"not json").is_err());
        let mut ev = Event::new(sources::TASKS, types::TASK_CREATED, None, None, Value::Null);
        ev.specversion = "0.3".into();
        assert!(Event::from_json(ev.to_json().as_bytes()).is_err());
        let mut ev = Event::new(sources::TASKS, "task.>", None, None, Value::Null);
        assert!(Event::from_json(ev.to_json().as_bytes()).is_err());
        ev.r#type = "task..x".into();
        assert!(Event::from_json(ev.to_json().as_bytes()).is_err());
    }

    #[test]
    fn every_type_has_a_subject() {
        for t in types::ALL {
            assert_eq!(subject_for(t), format!("flotilla.{t}"));
            assert!(subject_matches("flotilla.>", &subject_for(t)));
        }
    }

    #[test]
    fn subject_wildcards() {
        assert!(subject_matches("flotilla.task.>", "flotilla.task.created"));
        assert!(subject_matches("flotilla.*.created", "flotilla.task.created"));
        assert!(subject_matches("flotilla.task.created", "flotilla.task.created"));
        assert!(!subject_matches("flotilla.task.>", "flotilla.task"));
        assert!(!subject_matches("flotilla.task.>", "flotilla.user.deleted"));
        assert!(!subject_matches("flotilla.*", "flotilla.task.created"));
        assert!(!subject_matches("flotilla.task.created.x", "flotilla.task.created"));
    }
}
