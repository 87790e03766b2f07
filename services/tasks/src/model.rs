//! The task and its rules that do not need a database: JSON shape, ETags, completion, versions.

use flotilla_runtime::time::format_ms;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Low,
    Medium,
    High,
}

impl Priority {
    pub const NAMES: &'static str = "low, medium or high";

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Medium => "medium",
            Priority::High => "high",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "low" => Some(Priority::Low),
            "medium" => Some(Priority::Medium),
            "high" => Some(Priority::High),
            _ => None,
        }
    }

    /// The stored value: sorts by importance.
    pub fn rank(self) -> i64 {
        match self {
            Priority::Low => 1,
            Priority::Medium => 2,
            Priority::High => 3,
        }
    }

    pub fn from_rank(rank: i64) -> Option<Self> {
        match rank {
            1 => Some(Priority::Low),
            2 => Some(Priority::Medium),
            3 => Some(Priority::High),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Freq {
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

impl Freq {
    pub const NAMES: &'static str = "daily, weekly, monthly or yearly";

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "daily" => Some(Freq::Daily),
            "weekly" => Some(Freq::Weekly),
            "monthly" => Some(Freq::Monthly),
            "yearly" => Some(Freq::Yearly),
            _ => None,
        }
    }
}

/// How a task repeats. Stored (as JSON text) and validated; the next occurrence is created by the
/// `task.completed` event handler ([`crate::events`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recurrence {
    pub freq: Freq,
    pub interval: i64,
    /// Unix milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<i64>,
}

/// The fields a user writes (create and full replace set all of them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskContent {
    pub title: String,
    pub description: Option<String>,
    pub priority: Priority,
    pub tags: Vec<String>,
    pub due_at: Option<i64>,
    pub remind_at: Option<i64>,
    pub recurrence: Option<Recurrence>,
}

/// A stored task. Timestamps are unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub id: String,
    pub user_id: String,
    pub title: String,
    pub description: Option<String>,
    pub completed: bool,
    pub completed_at: Option<i64>,
    pub priority: Priority,
    pub tags: Vec<String>,
    pub due_at: Option<i64>,
    pub remind_at: Option<i64>,
    pub recurrence: Option<Recurrence>,
    pub created_at: i64,
    pub updated_at: i64,
    pub version: i64,
    /// Set on the occurrences of a recurring task after the first (not part of the API JSON).
    pub series: Option<Series>,
}

/// Where a task stands in its recurring series: the id of the series' first task and the
/// 1-based number of this occurrence (unique together: see migration 0002).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Series {
    pub id: String,
    pub occurrence: i64,
}

impl Task {
    /// A new task at version 1.
    pub fn new(id: String, user_id: String, content: TaskContent, now: i64) -> Self {
        let mut task = Task {
            id,
            user_id,
            title: String::new(),
            description: None,
            completed: false,
            completed_at: None,
            priority: Priority::Medium,
            tags: Vec::new(),
            due_at: None,
            remind_at: None,
            recurrence: None,
            created_at: now,
            updated_at: now,
            version: 1,
            series: None,
        };
        task.set_content(content);
        task
    }

    pub fn content(&self) -> TaskContent {
        TaskContent {
            title: self.title.clone(),
            description: self.description.clone(),
            priority: self.priority,
            tags: self.tags.clone(),
            due_at: self.due_at,
            remind_at: self.remind_at,
            recurrence: self.recurrence,
        }
    }

    pub fn set_content(&mut self, c: TaskContent) {
        self.title = c.title;
        self.description = c.description;
        self.priority = c.priority;
        self.tags = c.tags;
        self.due_at = c.due_at;
        self.remind_at = c.remind_at;
        self.recurrence = c.recurrence;
    }

    /// Completes or reopens; `completed_at` is kept when the task already was completed.
    pub fn set_completed(&mut self, completed: bool, now: i64) {
        match (self.completed, completed) {
            (false, true) => self.completed_at = Some(now),
            (_, false) => self.completed_at = None,
            (true, true) => {}
        }
        self.completed = completed;
        // Storing the change enqueues task.completed in the same transaction (see
        // `Store::update`); its consumer creates the next occurrence of a recurring task.
    }

    /// `data` of this task's events: the API JSON, plus `series` for later occurrences of a
    /// recurring task (the consumer that creates the next occurrence needs it).
    pub fn event_data(&self) -> serde_json::Value {
        let mut data = serde_json::to_value(self.to_json()).unwrap_or_default();
        if let (Some(series), Some(map)) = (&self.series, data.as_object_mut()) {
            map.insert("series".into(), serde_json::json!({"id": series.id, "occurrence": series.occurrence}));
        }
        data
    }

    /// `"<version>"`.
    pub fn etag(&self) -> String {
        etag(self.version)
    }

    /// The sort key used for title sorting and search.
    pub fn title_key(&self) -> String {
        self.title.to_lowercase()
    }

    pub fn description_key(&self) -> Option<String> {
        self.description.as_ref().map(|d| d.to_lowercase())
    }

    /// What the API returns.
    pub fn to_json(&self) -> TaskJson {
        TaskJson {
            id: self.id.clone(),
            user_id: self.user_id.clone(),
            title: self.title.clone(),
            description: self.description.clone(),
            completed: self.completed,
            completed_at: self.completed_at.map(format_ms),
            priority: self.priority,
            tags: self.tags.clone(),
            due_at: self.due_at.map(format_ms),
            remind_at: self.remind_at.map(format_ms),
            recurrence: self.recurrence.map(|r| RecurrenceJson {
                freq: r.freq,
                interval: r.interval,
                until: r.until.map(format_ms),
                count: r.count,
            }),
            created_at: format_ms(self.created_at),
            updated_at: format_ms(self.updated_at),
            version: self.version,
        }
    }
}

/// Decides the next state of a write: `None` when `next` changes nothing (no version bump),
/// else `next` with the version bumped and `updated_at` set.
pub fn bump(current: &Task, mut next: Task, now: i64) -> Option<Task> {
    if next == *current {
        return None;
    }
    next.version = current.version + 1;
    // Keep updated_at strictly increasing even if the clock steps back.
    next.updated_at = now.max(current.updated_at);
    Some(next)
}

/// The task as JSON: timestamps in RFC 3339 (UTC, milliseconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = Task)]
pub struct TaskJson {
    #[schema(example = "0190a0b0-0000-7000-8000-000000000000")]
    pub id: String,
    pub user_id: String,
    pub title: String,
    #[schema(required)]
    pub description: Option<String>,
    pub completed: bool,
    #[schema(required, format = DateTime)]
    pub completed_at: Option<String>,
    pub priority: Priority,
    /// Lowercased, without duplicates.
    pub tags: Vec<String>,
    #[schema(required, format = DateTime)]
    pub due_at: Option<String>,
    #[schema(required, format = DateTime)]
    pub remind_at: Option<String>,
    #[schema(required)]
    pub recurrence: Option<RecurrenceJson>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
    /// Grows by one with every change; the `ETag` is this number in quotes.
    #[schema(minimum = 1)]
    pub version: i64,
}

/// How a task repeats: every `interval` `freq`s, until a time or for `count` occurrences.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = Recurrence)]
pub struct RecurrenceJson {
    pub freq: Freq,
    #[schema(minimum = 1, maximum = 365)]
    pub interval: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub until: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 1000)]
    pub count: Option<i64>,
}

pub fn etag(version: i64) -> String {
    format!("\"{version}\"")
}

/// Whether an `If-Match` header value allows a write to the task at `version`: `*`, or a list
/// containing `"<version>"` or `W/"<version>"`. Anything else (also garbage) does not match.
pub fn if_match_allows(header: &str, version: i64) -> bool {
    let wanted = etag(version);
    header.split(',').map(str::trim).any(|tag| tag == "*" || tag == wanted || tag.strip_prefix("W/") == Some(&wanted))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content(title: &str) -> TaskContent {
        TaskContent {
            title: title.into(),
            description: None,
            priority: Priority::Medium,
            tags: vec![],
            due_at: None,
            remind_at: None,
            recurrence: None,
        }
    }

    #[test]
    fn priorities_round_trip_through_rank_and_name() {
        for p in [Priority::Low, Priority::Medium, Priority::High] {
            assert_eq!(Priority::from_rank(p.rank()), Some(p));
            assert_eq!(Priority::parse(p.as_str()), Some(p));
        }
        assert!(Priority::Low.rank() < Priority::High.rank());
        assert_eq!(Priority::parse("HIGH"), None);
    }

    #[test]
    fn if_match_accepts_star_strong_weak_and_lists() {
        assert!(if_match_allows("*", 3));
        assert!(if_match_allows("\"3\"", 3));
        assert!(if_match_allows("W/\"3\"", 3));
        assert!(if_match_allows("\"1\", \"3\"", 3));
        assert!(!if_match_allows("\"2\"", 3));
        assert!(!if_match_allows("3", 3));
        assert!(!if_match_allows("", 3));
        assert!(!if_match_allows("W/3", 3));
    }

    #[test]
    fn completion_sets_and_clears_completed_at() {
        let mut t = Task::new("id".into(), "u".into(), content("a"), 1000);
        t.set_completed(true, 2000);
        assert_eq!((t.completed, t.completed_at), (true, Some(2000)));
        t.set_completed(true, 3000);
        assert_eq!(t.completed_at, Some(2000), "completing again keeps the first completion time");
        t.set_completed(false, 4000);
        assert_eq!((t.completed, t.completed_at), (false, None));
    }

    #[test]
    fn bump_skips_no_op_writes_and_increments_versions() {
        let t = Task::new("id".into(), "u".into(), content("a"), 1000);
        assert_eq!(bump(&t, t.clone(), 5000), None);
        let mut next = t.clone();
        next.title = "b".into();
        let bumped = bump(&t, next, 5000).unwrap();
        assert_eq!((bumped.version, bumped.updated_at, bumped.created_at), (2, 5000, 1000));
        let mut next = t.clone();
        next.title = "c".into();
        assert_eq!(bump(&t, next, 10).unwrap().updated_at, 1000, "updated_at never goes back");
    }

    #[test]
    fn json_uses_rfc3339_and_null_for_missing_values() {
        let mut c = content("Pay rent");
        c.due_at = Some(1_795_000_000_000);
        c.recurrence = Some(Recurrence { freq: Freq::Monthly, interval: 1, until: None, count: Some(3) });
        let t = Task::new("id".into(), "u".into(), c, 1_700_000_000_000);
        let v = serde_json::to_value(t.to_json()).unwrap();
        assert_eq!(v["due_at"], "2026-11-18T11:06:40.000Z");
        assert_eq!(v["created_at"], "2023-11-14T22:13:20.000Z");
        assert_eq!(v["description"], serde_json::Value::Null);
        assert_eq!(v["completed_at"], serde_json::Value::Null);
        assert_eq!(v["priority"], "medium");
        assert_eq!(v["recurrence"], serde_json::json!({"freq": "monthly", "interval": 1, "count": 3}));
        assert_eq!(v["version"], 1);
        assert_eq!(t.etag(), "\"1\"");
    }
}
