//! Form fields ⇄ API JSON, and times in the visitor's offset.

use flotilla_runtime::time::parse_rfc3339;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

/// A task as the API returns it (only the fields the pages use).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct TaskView {
    pub id: String,
    pub title: String,
    pub description: Option<String>,
    pub completed: bool,
    pub priority: String,
    pub tags: Vec<String>,
    pub due_at: Option<String>,
    pub remind_at: Option<String>,
    pub recurrence: Option<Value>,
    pub version: i64,
}

impl TaskView {
    pub fn overdue(&self, now_ms: i64) -> bool {
        !self.completed && self.due_at.as_deref().and_then(parse_rfc3339).is_some_and(|due| due < now_ms)
    }

    pub fn repeat(&self) -> &str {
        self.recurrence.as_ref().and_then(|r| r.get("freq")).and_then(Value::as_str).unwrap_or("none")
    }

    /// The fields a re-created task needs ("Undo" after a delete).
    pub fn saved_fields(raw: &Value) -> Value {
        let mut out = Map::new();
        for key in ["title", "description", "priority", "tags", "due_at", "remind_at", "recurrence", "completed"] {
            if let Some(v) = raw.get(key).filter(|v| !v.is_null()) {
                out.insert(key.to_owned(), v.clone());
            }
        }
        Value::Object(out)
    }
}

/// Field errors by form field name.
#[derive(Debug, Clone, Default)]
pub struct Errors(pub Vec<(String, String)>);

impl Errors {
    pub fn get(&self, field: &str) -> Option<&str> {
        self.0.iter().find(|(f, _)| f == field).map(|(_, m)| m.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// API field names (JSON pointers' first segment) to form field names.
    pub fn from_api(fields: Vec<(String, String)>) -> Self {
        Errors(
            fields
                .into_iter()
                .map(|(f, m)| {
                    let form = match f.as_str() {
                        "due_at" => "due",
                        "remind_at" => "remind",
                        "recurrence" => "repeat",
                        other => other,
                    };
                    (form.to_owned(), m)
                })
                .collect(),
        )
    }
}

pub fn field<'a>(pairs: &'a [(String, String)], name: &str) -> &'a str {
    pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or("")
}

pub const PRIORITIES: [&str; 3] = ["low", "medium", "high"];
pub const REPEATS: [&str; 5] = ["none", "daily", "weekly", "monthly", "yearly"];

/// The task form as typed (kept as text so an invalid form comes back as the user left it).
#[derive(Debug, Clone, Default)]
pub struct TaskForm {
    pub title: String,
    pub description: String,
    pub priority: String,
    pub tags: String,
    pub due: String,
    pub remind: String,
    pub repeat: String,
    /// The repeat shown when the edit form was rendered: an unchanged repeat keeps the task's
    /// interval, end and count.
    pub repeat_was: String,
    pub version: String,
}

impl TaskForm {
    pub fn blank() -> Self {
        Self { priority: "medium".into(), repeat: "none".into(), ..Self::default() }
    }

    pub fn from_pairs(p: &[(String, String)]) -> Self {
        Self {
            title: field(p, "title").to_owned(),
            description: field(p, "description").to_owned(),
            priority: field(p, "priority").to_owned(),
            tags: field(p, "tags").to_owned(),
            due: field(p, "due").to_owned(),
            remind: field(p, "remind").to_owned(),
            repeat: field(p, "repeat").to_owned(),
            repeat_was: field(p, "repeat_was").to_owned(),
            version: field(p, "version").to_owned(),
        }
    }

    pub fn from_task(t: &TaskView, tz: i32) -> Self {
        Self {
            title: t.title.clone(),
            description: t.description.clone().unwrap_or_default(),
            priority: t.priority.clone(),
            tags: t.tags.join(", "),
            due: t.due_at.as_deref().map(|d| input_value(d, tz)).unwrap_or_default(),
            remind: t.remind_at.as_deref().map(|d| input_value(d, tz)).unwrap_or_default(),
            repeat: t.repeat().to_owned(),
            repeat_was: t.repeat().to_owned(),
            version: t.version.to_string(),
        }
    }

    /// The API body: every field for a create; for an edit (`patch`), empty optional fields are
    /// `null` (cleared) and an unchanged repeat is left out.
    pub fn to_json(&self, tz: i32, patch: bool) -> Result<Value, Errors> {
        let mut errs = Vec::new();
        let mut body = Map::new();
        body.insert("title".into(), json!(self.title.trim()));
        let desc = self.description.trim();
        if !desc.is_empty() {
            body.insert("description".into(), json!(self.description));
        } else if patch {
            body.insert("description".into(), Value::Null);
        }
        if !self.priority.is_empty() {
            body.insert("priority".into(), json!(self.priority));
        }
        body.insert("tags".into(), json!(split_tags(&self.tags)));
        for (name, key, text) in [("due", "due_at", &self.due), ("remind", "remind_at", &self.remind)] {
            if text.trim().is_empty() {
                if patch {
                    body.insert(key.into(), Value::Null);
                }
                continue;
            }
            match parse_input(text, tz) {
                Some(v) => {
                    body.insert(key.into(), json!(v));
                }
                None => errs.push((name.to_owned(), "enter a date and time such as 2026-05-04 17:00".to_owned())),
            }
        }
        let repeat = if self.repeat.is_empty() { "none" } else { self.repeat.as_str() };
        if !(patch && repeat == self.repeat_was) {
            match repeat {
                "none" if patch => {
                    body.insert("recurrence".into(), Value::Null);
                }
                "none" => {}
                freq => {
                    body.insert("recurrence".into(), json!({ "freq": freq }));
                }
            }
        }
        if errs.is_empty() { Ok(Value::Object(body)) } else { Err(Errors(errs)) }
    }
}

/// "home, #Errands  work" → ["home", "errands", "work"] (the API checks each tag).
pub fn split_tags(s: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for t in s.split(|c: char| c == ',' || c.is_whitespace()) {
        let t = t.trim().trim_start_matches('#').to_lowercase();
        if !t.is_empty() && !out.contains(&t) {
            out.push(t);
        }
    }
    out
}

fn offset(tz: i32) -> UtcOffset {
    UtcOffset::from_whole_seconds(tz * 60).unwrap_or(UtcOffset::UTC)
}

fn at(ms: i64, tz: i32) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000).ok().map(|t| t.to_offset(offset(tz)))
}

/// The value of a `datetime-local` input: `2026-05-04T17:00`.
pub fn input_value(rfc3339: &str, tz: i32) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]");
    parse_rfc3339(rfc3339).and_then(|ms| at(ms, tz)).and_then(|t| t.format(&fmt).ok()).unwrap_or_default()
}

/// A `datetime-local` value (or `2026-05-04 17:00`) in the visitor's offset → RFC 3339 UTC.
pub fn parse_input(s: &str, tz: i32) -> Option<String> {
    let s = s.trim().replace(' ', "T");
    let long = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    let short = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]");
    let local = PrimitiveDateTime::parse(&s, &short).or_else(|_| PrimitiveDateTime::parse(&s, &long)).ok()?;
    let utc = local.assume_offset(offset(tz)).to_offset(UtcOffset::UTC);
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    utc.format(&fmt).ok()
}

/// "Today 17:00", "Tomorrow 09:30", "Mon 4 May 17:00", "Mon 4 May 2027 17:00".
pub fn display_time(rfc3339: &str, tz: i32, now_ms: i64) -> String {
    let (Some(t), Some(now)) = (parse_rfc3339(rfc3339).and_then(|ms| at(ms, tz)), at(now_ms, tz)) else {
        return rfc3339.to_owned();
    };
    let hm = time::macros::format_description!("[hour]:[minute]");
    let clock = t.format(&hm).unwrap_or_default();
    let days = (t.date() - now.date()).whole_days();
    let day = match days {
        0 => "Today".to_owned(),
        1 => "Tomorrow".to_owned(),
        -1 => "Yesterday".to_owned(),
        _ if t.year() == now.year() => {
            let f = time::macros::format_description!("[weekday repr:short] [day padding:none] [month repr:short]");
            t.format(&f).unwrap_or_default()
        }
        _ => {
            let f =
                time::macros::format_description!("[weekday repr:short] [day padding:none] [month repr:short] [year]");
            t.format(&f).unwrap_or_default()
        }
    };
    format!("{day} {clock}")
}

/// "UTC" or "UTC+02:00": the offset the page shows and reads times in.
pub fn offset_label(tz: i32) -> String {
    if tz == 0 {
        return "UTC".into();
    }
    let sign = if tz < 0 { '-' } else { '+' };
    let m = tz.abs();
    format!("UTC{sign}{:02}:{:02}", m / 60, m % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_times_convert_both_ways() {
        assert_eq!(parse_input("2026-05-04T17:00", 120).as_deref(), Some("2026-05-04T15:00:00Z"));
        assert_eq!(parse_input("2026-05-04 17:00", 0).as_deref(), Some("2026-05-04T17:00:00Z"));
        assert_eq!(parse_input("tomorrow", 0), None);
        assert_eq!(input_value("2026-05-04T15:00:00Z", 120), "2026-05-04T17:00");
        assert_eq!(offset_label(-330), "UTC-05:30");
    }

    #[test]
    fn display_is_relative_near_today() {
        let now = parse_rfc3339("2026-05-04T10:00:00Z").unwrap();
        assert_eq!(display_time("2026-05-04T17:00:00Z", 0, now), "Today 17:00");
        assert_eq!(display_time("2026-05-05T09:30:00Z", 0, now), "Tomorrow 09:30");
        assert_eq!(display_time("2026-05-20T09:30:00Z", 0, now), "Wed 20 May 09:30");
        assert_eq!(display_time("2027-05-20T09:30:00Z", 0, now), "Thu 20 May 2027 09:30");
    }

    #[test]
    fn the_form_becomes_the_api_body() {
        let mut f = TaskForm::blank();
        f.title = "  Buy milk ".into();
        f.tags = "#Home, errands home".into();
        f.due = "2026-05-04T17:00".into();
        let v = f.to_json(0, false).unwrap();
        assert_eq!(v["title"], "Buy milk");
        assert_eq!(v["tags"], json!(["home", "errands"]));
        assert_eq!(v["due_at"], "2026-05-04T17:00:00Z");
        assert!(v.get("remind_at").is_none() && v.get("recurrence").is_none());
        // An edit clears emptied fields and keeps an unchanged repeat.
        f.due.clear();
        f.repeat = "weekly".into();
        f.repeat_was = "weekly".into();
        let p = f.to_json(0, true).unwrap();
        assert_eq!(p["due_at"], Value::Null);
        assert!(p.get("recurrence").is_none());
        f.due = "soon".into();
        assert!(f.to_json(0, true).unwrap_err().get("due").is_some());
    }
}
