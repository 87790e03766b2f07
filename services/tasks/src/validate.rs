//! Request bodies and their validation. Every field is taken as raw JSON first so that one
//! response can list every invalid field (a typed serde struct stops at the first error).

use flotilla_runtime::FieldError;
use flotilla_runtime::time::parse_rfc3339;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::model::{Freq, Priority, Recurrence, Task, TaskContent};

pub const TITLE_MAX: usize = 200;
pub const DESCRIPTION_MAX: usize = 5000;
pub const TAGS_MAX: usize = 10;
pub const TAG_MAX: usize = 32;
pub const INTERVAL_MAX: i64 = 365;
pub const COUNT_MAX: i64 = 1000;
pub const IDEMPOTENCY_KEY_MAX: usize = 255;

/// A JSON member: absent, explicitly `null`, or a value (PATCH tells the three apart).
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Field {
    #[default]
    Absent,
    Null,
    Value(Value),
}

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Only called when the member is present (`#[serde(default)]` covers absence).
        Ok(match Value::deserialize(d)? {
            Value::Null => Field::Null,
            v => Field::Value(v),
        })
    }
}

impl Field {
    /// `null` and absence mean the same (create, replace).
    fn value(&self) -> Option<&Value> {
        match self {
            Field::Value(v) => Some(v),
            _ => None,
        }
    }
}

/// A new task (`POST /api/{user_id}/tasks`). Absent fields take their defaults; `remind_at` must
/// not be after `due_at`, and `recurrence.until` must be after `due_at`.
// The schema describes the JSON; `validate_create` checks the rules and reports every invalid
// field at once.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewTask)]
pub struct CreateInput {
    /// Trimmed.
    #[serde(default)]
    #[schema(value_type = String, required = true, min_length = 1, max_length = 200, example = "Buy milk")]
    pub title: Field,
    #[serde(default)]
    #[schema(value_type = Option<String>, max_length = 5000)]
    pub description: Field,
    #[serde(default)]
    #[schema(value_type = Option<Priority>, default = "medium")]
    pub priority: Field,
    /// At most 10; each 1 to 32 letters, digits, `-` or `_`; stored lowercased.
    #[serde(default)]
    #[schema(value_type = Option<Vec<String>>, max_items = 10, example = json!(["home"]))]
    pub tags: Field,
    #[serde(default)]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub due_at: Field,
    #[serde(default)]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub remind_at: Field,
    #[serde(default)]
    #[schema(value_type = Option<crate::openapi::RecurrenceInput>)]
    pub recurrence: Field,
}

/// `PUT` (full replace) and `PATCH` (partial) of a task: the fields of a new task plus `completed`.
///
/// PUT replaces the whole task: `title` is required and absent fields take their defaults.
/// PATCH changes only the fields sent; `null` clears `description`, `due_at`, `remind_at` and
/// `recurrence` (the others cannot be `null`).
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TaskUpdate)]
pub struct UpdateInput {
    #[serde(default)]
    #[schema(value_type = String, min_length = 1, max_length = 200)]
    pub title: Field,
    #[serde(default)]
    #[schema(value_type = Option<String>, max_length = 5000)]
    pub description: Field,
    #[serde(default)]
    #[schema(value_type = Priority)]
    pub priority: Field,
    /// At most 10; each 1 to 32 letters, digits, `-` or `_`; stored lowercased.
    #[serde(default)]
    #[schema(value_type = Vec<String>, max_items = 10)]
    pub tags: Field,
    #[serde(default)]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub due_at: Field,
    #[serde(default)]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub remind_at: Field,
    #[serde(default)]
    #[schema(value_type = Option<crate::openapi::RecurrenceInput>)]
    pub recurrence: Field,
    #[serde(default)]
    #[schema(value_type = bool)]
    pub completed: Field,
}

impl From<CreateInput> for UpdateInput {
    fn from(c: CreateInput) -> Self {
        UpdateInput {
            title: c.title,
            description: c.description,
            priority: c.priority,
            tags: c.tags,
            due_at: c.due_at,
            remind_at: c.remind_at,
            recurrence: c.recurrence,
            completed: Field::Absent,
        }
    }
}

/// `PATCH …/complete` with a body: sets the completion state (without a body, it toggles).
#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Completion)]
pub struct CompleteInput {
    pub completed: bool,
}

/// A validated partial update: `None` leaves a field alone; for nullable fields `Some(None)` clears.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskPatch {
    pub title: Option<String>,
    pub description: Option<Option<String>>,
    pub priority: Option<Priority>,
    pub tags: Option<Vec<String>>,
    pub due_at: Option<Option<i64>>,
    pub remind_at: Option<Option<i64>>,
    pub recurrence: Option<Option<Recurrence>>,
    pub completed: Option<bool>,
}

impl TaskPatch {
    pub fn is_empty(&self) -> bool {
        *self == TaskPatch::default()
    }
}

/// Validates a create body.
pub fn validate_create(input: CreateInput) -> Result<TaskContent, Vec<FieldError>> {
    validate_replace(input.into()).map(|(content, _)| content)
}

/// Validates a full replacement: absent (or null) optional fields take their defaults.
pub fn validate_replace(input: UpdateInput) -> Result<(TaskContent, bool), Vec<FieldError>> {
    let mut errs = Vec::new();
    let title = match &input.title {
        Field::Value(v) => title(v, &mut errs),
        _ => {
            errs.push(FieldError::new("title", "is required"));
            None
        }
    };
    let description = input.description.value().and_then(|v| description(v, &mut errs));
    let priority = input.priority.value().map_or(Some(Priority::Medium), |v| priority(v, &mut errs));
    let tags = input.tags.value().map_or(Some(Vec::new()), |v| tags(v, &mut errs));
    let due_at = input.due_at.value().and_then(|v| timestamp("due_at", v, &mut errs));
    let remind_at = input.remind_at.value().and_then(|v| timestamp("remind_at", v, &mut errs));
    let recurrence = input.recurrence.value().and_then(|v| recurrence(v, &mut errs));
    let completed = input.completed.value().map_or(Some(false), |v| boolean("completed", v, &mut errs));
    // Cross-field rules only when the fields themselves are valid.
    if errs.is_empty() {
        cross_check(due_at, remind_at, recurrence.as_ref(), "remind_at", "recurrence/until", &mut errs);
    }
    match (title, priority, tags, completed) {
        (Some(title), Some(priority), Some(tags), Some(completed)) if errs.is_empty() => {
            Ok((TaskContent { title, description, priority, tags, due_at, remind_at, recurrence }, completed))
        }
        _ => Err(errs),
    }
}

/// Validates a partial update. `title`, `priority`, `tags` and `completed` cannot be `null`.
pub fn validate_patch(input: UpdateInput) -> Result<TaskPatch, Vec<FieldError>> {
    let mut errs = Vec::new();
    let mut patch = TaskPatch::default();
    let not_null = |name: &str, errs: &mut Vec<FieldError>| errs.push(FieldError::new(name, "cannot be null"));
    match &input.title {
        Field::Absent => {}
        Field::Null => not_null("title", &mut errs),
        Field::Value(v) => patch.title = title(v, &mut errs),
    }
    match &input.priority {
        Field::Absent => {}
        Field::Null => not_null("priority", &mut errs),
        Field::Value(v) => patch.priority = priority(v, &mut errs),
    }
    match &input.tags {
        Field::Absent => {}
        Field::Null => not_null("tags", &mut errs),
        Field::Value(v) => patch.tags = tags(v, &mut errs),
    }
    match &input.completed {
        Field::Absent => {}
        Field::Null => not_null("completed", &mut errs),
        Field::Value(v) => patch.completed = boolean("completed", v, &mut errs),
    }
    patch.description = nullable(&input.description, |v| description(v, &mut errs));
    patch.due_at = nullable(&input.due_at, |v| timestamp("due_at", v, &mut errs));
    patch.remind_at = nullable(&input.remind_at, |v| timestamp("remind_at", v, &mut errs));
    patch.recurrence = nullable(&input.recurrence, |v| recurrence(v, &mut errs));
    if errs.is_empty() { Ok(patch) } else { Err(errs) }
}

/// `Absent` → None (unchanged); `Null` → Some(None) (cleared); a value → Some(Some(parsed)).
/// An invalid value also yields None (its error is already recorded).
fn nullable<T>(field: &Field, parse: impl FnOnce(&Value) -> Option<T>) -> Option<Option<T>> {
    match field {
        Field::Absent => None,
        Field::Null => Some(None),
        Field::Value(v) => parse(v).map(Some),
    }
}

/// Applies a validated patch to `task` and checks the rules between fields on the result.
/// Errors point at the fields the patch sent, so the client sees what to change.
pub fn apply_patch(task: &Task, patch: &TaskPatch, now: i64) -> Result<Task, Vec<FieldError>> {
    let mut next = task.clone();
    if let Some(t) = &patch.title {
        next.title = t.clone();
    }
    if let Some(d) = &patch.description {
        next.description = d.clone();
    }
    if let Some(p) = patch.priority {
        next.priority = p;
    }
    if let Some(t) = &patch.tags {
        next.tags = t.clone();
    }
    if let Some(d) = patch.due_at {
        next.due_at = d;
    }
    if let Some(r) = patch.remind_at {
        next.remind_at = r;
    }
    if let Some(r) = patch.recurrence {
        next.recurrence = r;
    }
    if let Some(c) = patch.completed {
        next.set_completed(c, now);
    }
    let mut errs = Vec::new();
    let remind_ptr = if patch.remind_at.is_some() || patch.due_at.is_none() { "remind_at" } else { "due_at" };
    let until_ptr = if patch.recurrence.is_some() || patch.due_at.is_none() { "recurrence/until" } else { "due_at" };
    cross_check(next.due_at, next.remind_at, next.recurrence.as_ref(), remind_ptr, until_ptr, &mut errs);
    if errs.is_empty() { Ok(next) } else { Err(errs) }
}

fn cross_check(
    due_at: Option<i64>,
    remind_at: Option<i64>,
    recurrence: Option<&Recurrence>,
    remind_ptr: &str,
    until_ptr: &str,
    errs: &mut Vec<FieldError>,
) {
    if let (Some(due), Some(remind)) = (due_at, remind_at)
        && remind > due
    {
        errs.push(FieldError::new(remind_ptr, "the reminder must not be after the due date (remind_at <= due_at)"));
    }
    if let (Some(due), Some(until)) = (due_at, recurrence.and_then(|r| r.until))
        && until <= due
    {
        errs.push(FieldError::new(until_ptr, "the recurrence must end after the due date (until > due_at)"));
    }
}

fn title(v: &Value, errs: &mut Vec<FieldError>) -> Option<String> {
    let Some(s) = v.as_str() else {
        errs.push(FieldError::new("title", "must be a string"));
        return None;
    };
    let t = s.trim();
    let n = t.chars().count();
    if n == 0 {
        errs.push(FieldError::new("title", "must not be empty"));
        None
    } else if n > TITLE_MAX {
        errs.push(FieldError::new("title", format!("must be at most {TITLE_MAX} characters (got {n})")));
        None
    } else {
        Some(t.to_owned())
    }
}

fn description(v: &Value, errs: &mut Vec<FieldError>) -> Option<String> {
    let Some(s) = v.as_str() else {
        errs.push(FieldError::new("description", "must be a string or null"));
        return None;
    };
    let n = s.chars().count();
    if n > DESCRIPTION_MAX {
        errs.push(FieldError::new("description", format!("must be at most {DESCRIPTION_MAX} characters (got {n})")));
        None
    } else {
        Some(s.to_owned())
    }
}

fn priority(v: &Value, errs: &mut Vec<FieldError>) -> Option<Priority> {
    let p = v.as_str().and_then(Priority::parse);
    if p.is_none() {
        errs.push(FieldError::new("priority", format!("must be {}", Priority::NAMES)));
    }
    p
}

/// Whether `tag` (already lowercased or not) is 1–32 letters, digits, `-` or `_`.
pub fn is_valid_tag(tag: &str) -> bool {
    let n = tag.chars().count();
    (1..=TAG_MAX).contains(&n) && tag.chars().all(|c| c.is_alphanumeric() || c == '-' || c == '_')
}

fn tags(v: &Value, errs: &mut Vec<FieldError>) -> Option<Vec<String>> {
    let Some(items) = v.as_array() else {
        errs.push(FieldError::new("tags", "must be an array of strings"));
        return None;
    };
    let before = errs.len();
    let mut out: Vec<String> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match item.as_str() {
            Some(t) if is_valid_tag(t) => {
                let t = t.to_lowercase();
                if !out.contains(&t) {
                    out.push(t);
                }
            }
            _ => errs.push(FieldError::new(
                &format!("tags/{i}"),
                format!("a tag is 1 to {TAG_MAX} letters, digits, '-' or '_'"),
            )),
        }
    }
    if items.len() > TAGS_MAX && out.len() > TAGS_MAX {
        errs.push(FieldError::new("tags", format!("at most {TAGS_MAX} tags (got {})", out.len())));
    }
    (errs.len() == before).then_some(out)
}

fn timestamp(name: &str, v: &Value, errs: &mut Vec<FieldError>) -> Option<i64> {
    let ms = v.as_str().and_then(parse_rfc3339);
    if ms.is_none() {
        errs.push(FieldError::new(name, "must be an RFC 3339 timestamp such as 2026-11-23T17:00:00Z"));
    }
    ms
}

fn boolean(name: &str, v: &Value, errs: &mut Vec<FieldError>) -> Option<bool> {
    let b = v.as_bool();
    if b.is_none() {
        errs.push(FieldError::new(name, "must be true or false"));
    }
    b
}

fn integer_in(name: &str, v: &Value, min: i64, max: i64, errs: &mut Vec<FieldError>) -> Option<i64> {
    match v.as_i64() {
        Some(n) if (min..=max).contains(&n) => Some(n),
        _ => {
            errs.push(FieldError::new(name, format!("must be a whole number from {min} to {max}")));
            None
        }
    }
}

fn recurrence(v: &Value, errs: &mut Vec<FieldError>) -> Option<Recurrence> {
    let Some(obj) = v.as_object() else {
        errs.push(FieldError::new("recurrence", "must be an object {freq, interval?, until?, count?} or null"));
        return None;
    };
    let before = errs.len();
    for key in obj.keys() {
        if !matches!(key.as_str(), "freq" | "interval" | "until" | "count") {
            errs.push(FieldError::new(&format!("recurrence/{key}"), "unknown field"));
        }
    }
    let present = |k: &str| obj.get(k).filter(|v| !v.is_null());
    let freq = match present("freq") {
        None => {
            errs.push(FieldError::new("recurrence/freq", "is required"));
            None
        }
        Some(f) => {
            let f = f.as_str().and_then(Freq::parse);
            if f.is_none() {
                errs.push(FieldError::new("recurrence/freq", format!("must be {}", Freq::NAMES)));
            }
            f
        }
    };
    let interval = match present("interval") {
        None => Some(1),
        Some(i) => integer_in("recurrence/interval", i, 1, INTERVAL_MAX, errs),
    };
    let until = present("until").and_then(|u| timestamp("recurrence/until", u, errs));
    let count = present("count").and_then(|c| integer_in("recurrence/count", c, 1, COUNT_MAX, errs));
    if present("until").is_some() && present("count").is_some() {
        errs.push(FieldError::new("recurrence", "give either until or count, not both"));
    }
    match (freq, interval) {
        (Some(freq), Some(interval)) if errs.len() == before => Some(Recurrence { freq, interval, until, count }),
        _ => None,
    }
}

/// An `Idempotency-Key` header value: 1–255 visible ASCII characters.
pub fn is_valid_idempotency_key(key: &[u8]) -> bool {
    (1..=IDEMPOTENCY_KEY_MAX).contains(&key.len()) && key.iter().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn create(v: Value) -> Result<TaskContent, Vec<FieldError>> {
        validate_create(serde_json::from_value(v).unwrap())
    }

    fn pointers(errs: &[FieldError]) -> Vec<&str> {
        errs.iter().map(|e| e.pointer.as_str()).collect()
    }

    #[test]
    fn minimal_create_takes_defaults_and_trims_the_title() {
        let c = create(json!({"title": "  Buy milk "})).unwrap();
        assert_eq!(c.title, "Buy milk");
        assert_eq!(c.priority, Priority::Medium);
        assert!(c.tags.is_empty() && c.description.is_none() && c.recurrence.is_none());
    }

    #[test]
    fn every_invalid_field_is_listed() {
        let errs = create(json!({
            "title": "   ",
            "description": "x".repeat(5001),
            "priority": "urgent",
            "tags": ["ok", "not ok", ""],
            "due_at": "tomorrow",
            "remind_at": 5,
            "recurrence": {"freq": "hourly", "interval": 0, "count": 1001, "extra": 1}
        }))
        .unwrap_err();
        assert_eq!(
            pointers(&errs),
            vec![
                "#/title",
                "#/description",
                "#/priority",
                "#/tags/1",
                "#/tags/2",
                "#/due_at",
                "#/remind_at",
                "#/recurrence/extra",
                "#/recurrence/freq",
                "#/recurrence/interval",
                "#/recurrence/count",
            ]
        );
    }

    #[test]
    fn title_limits_count_characters() {
        assert!(create(json!({"title": "é".repeat(200)})).is_ok());
        assert_eq!(pointers(&create(json!({"title": "é".repeat(201)})).unwrap_err()), vec!["#/title"]);
        assert_eq!(pointers(&create(json!({})).unwrap_err()), vec!["#/title"]);
        assert_eq!(pointers(&create(json!({"title": null})).unwrap_err()), vec!["#/title"]);
        assert_eq!(pointers(&create(json!({"title": 5})).unwrap_err()), vec!["#/title"]);
    }

    #[test]
    fn tags_are_lowercased_deduplicated_in_order_and_limited() {
        let c = create(json!({"title": "t", "tags": ["Work", "home", "WORK", "a_b-1"]})).unwrap();
        assert_eq!(c.tags, vec!["work", "home", "a_b-1"]);
        let eleven: Vec<String> = (0..11).map(|i| format!("t{i}")).collect();
        assert_eq!(pointers(&create(json!({"title": "t", "tags": eleven})).unwrap_err()), vec!["#/tags"]);
        assert!(create(json!({"title": "t", "tags": ["x".repeat(32)]})).is_ok());
        assert_eq!(pointers(&create(json!({"title": "t", "tags": ["x".repeat(33)]})).unwrap_err()), vec!["#/tags/0"]);
        assert_eq!(pointers(&create(json!({"title": "t", "tags": "work"})).unwrap_err()), vec!["#/tags"]);
    }

    #[test]
    fn reminder_and_recurrence_end_are_checked_against_the_due_date() {
        let ok = create(json!({"title": "t", "due_at": "2026-01-02T00:00:00+01:00",
            "remind_at": "2026-01-01T23:00:00Z"}))
        .unwrap();
        assert_eq!(ok.remind_at, ok.due_at, "offsets are honoured");
        let errs = create(json!({"title": "t", "due_at": "2026-01-02T00:00:00Z", "remind_at": "2026-01-02T00:00:01Z",
            "recurrence": {"freq": "daily", "until": "2026-01-01T00:00:00Z"}}))
        .unwrap_err();
        assert_eq!(pointers(&errs), vec!["#/remind_at", "#/recurrence/until"]);
        let errs =
            create(json!({"title": "t", "recurrence": {"freq": "daily", "until": "2026-01-01T00:00:00Z", "count": 2}}))
                .unwrap_err();
        assert_eq!(pointers(&errs), vec!["#/recurrence"]);
        let r = create(json!({"title": "t", "recurrence": {"freq": "weekly"}})).unwrap().recurrence.unwrap();
        assert_eq!((r.freq, r.interval, r.until, r.count), (Freq::Weekly, 1, None, None));
        assert_eq!(
            pointers(&create(json!({"title": "t", "recurrence": {"interval": 2}})).unwrap_err()),
            vec!["#/recurrence/freq"]
        );
    }

    #[test]
    fn unknown_fields_are_rejected_by_the_body_types() {
        assert!(serde_json::from_value::<CreateInput>(json!({"title": "t", "done": true})).is_err());
        assert!(serde_json::from_value::<CreateInput>(json!({"title": "t", "completed": true})).is_err());
        assert!(serde_json::from_value::<UpdateInput>(json!({"title": "t", "completed": true})).is_ok());
    }

    #[test]
    fn patch_distinguishes_absent_null_and_values() {
        let p =
            validate_patch(serde_json::from_value(json!({"description": null, "tags": [], "due_at": null})).unwrap())
                .unwrap();
        assert_eq!(p.description, Some(None));
        assert_eq!(p.tags, Some(vec![]));
        assert_eq!(p.due_at, Some(None));
        assert_eq!(p.title, None);
        assert_eq!(p.remind_at, None);
        assert!(validate_patch(UpdateInput::default()).unwrap().is_empty());
        let errs =
            validate_patch(serde_json::from_value(json!({"title": null, "completed": "yes"})).unwrap()).unwrap_err();
        assert_eq!(pointers(&errs), vec!["#/title", "#/completed"]);
    }

    #[test]
    fn patch_checks_rules_on_the_merged_task() {
        let content = create(json!({"title": "t", "due_at": "2026-01-02T00:00:00Z",
            "remind_at": "2026-01-01T00:00:00Z"}))
        .unwrap();
        let task = Task::new("id".into(), "u".into(), content, 0);
        let earlier =
            validate_patch(serde_json::from_value(json!({"due_at": "2025-12-31T00:00:00Z"})).unwrap()).unwrap();
        assert_eq!(pointers(&apply_patch(&task, &earlier, 1).unwrap_err()), vec!["#/due_at"]);
        let cleared = validate_patch(serde_json::from_value(json!({"due_at": null})).unwrap()).unwrap();
        assert_eq!(apply_patch(&task, &cleared, 1).unwrap().due_at, None);
        let done = validate_patch(serde_json::from_value(json!({"completed": true})).unwrap()).unwrap();
        let next = apply_patch(&task, &done, 7).unwrap();
        assert_eq!((next.completed, next.completed_at), (true, Some(7)));
    }

    #[test]
    fn replace_resets_absent_fields() {
        let (c, completed) = validate_replace(serde_json::from_value(json!({"title": "t"})).unwrap()).unwrap();
        assert_eq!((c.priority, c.tags.len(), completed), (Priority::Medium, 0, false));
        let (_, completed) =
            validate_replace(serde_json::from_value(json!({"title": "t", "completed": true})).unwrap()).unwrap();
        assert!(completed);
    }

    #[test]
    fn idempotency_keys_are_visible_ascii() {
        assert!(is_valid_idempotency_key(b"abc-123"));
        assert!(is_valid_idempotency_key(&[b'k'; 255]));
        assert!(!is_valid_idempotency_key(&[b'k'; 256]));
        assert!(!is_valid_idempotency_key(b""));
        assert!(!is_valid_idempotency_key(b"a b"));
        assert!(!is_valid_idempotency_key("é".as_bytes()));
    }
}
