//! References to tasks ("the second one", "#2", "last one", an id, a title fragment) resolved
//! against the last list shown and the user's stored tasks. An ambiguous reference is returned
//! as such so the engine asks back instead of guessing.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::parse::{Target, edit_distance};
use crate::model::ToolCall;
use crate::tools::{LIST_MAX, TaskView, ToolError, UserTools};

/// A task as remembered between turns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    pub id: String,
    pub title: String,
}

impl From<&TaskView> for Item {
    fn from(t: &TaskView) -> Self {
        Item { id: t.task_id.clone(), title: t.title.clone() }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Resolution {
    Found(Vec<TaskView>),
    /// More than one task fits; ask which.
    Ambiguous(Vec<TaskView>),
    /// Nothing fits; the message says why.
    Missing(String),
}

/// What the engine remembers that references need.
pub struct Memory<'a> {
    pub list: &'a [Item],
    pub focus: Option<&'a Item>,
}

/// Resolves `target`. `prefer` breaks ties between equally good title matches by completion
/// state (completing prefers open tasks, reopening done ones). Reads the API go in `calls`.
pub async fn resolve(
    target: &Target,
    mem: &Memory<'_>,
    prefer: Option<bool>,
    tools: &UserTools,
    calls: &mut Vec<ToolCall>,
) -> Resolution {
    match target {
        Target::Positions(ps) => {
            if mem.list.is_empty() {
                return Resolution::Missing(
                    "I haven't shown you a list yet, so I don't know which one you mean. Say “show my tasks” first, \
                     or name the task."
                        .into(),
                );
            }
            let mut items = Vec::new();
            for p in ps {
                match mem.list.get(p - 1) {
                    Some(item) => items.push(item.clone()),
                    None => {
                        return Resolution::Missing(format!(
                            "There is no #{p} in the last list; it had {} task{}.",
                            mem.list.len(),
                            if mem.list.len() == 1 { "" } else { "s" }
                        ));
                    }
                }
            }
            fetch_items(&items, tools).await
        }
        Target::Last => match mem.list.last() {
            Some(item) => fetch_items(std::slice::from_ref(item), tools).await,
            None => Resolution::Missing("I haven't shown you a list yet; say “show my tasks” first.".into()),
        },
        Target::It => {
            let item = mem.focus.or(if mem.list.len() == 1 { mem.list.first() } else { None });
            match item {
                Some(item) => fetch_items(std::slice::from_ref(item), tools).await,
                None => Resolution::Missing("Which task do you mean? Name it or give its number in the list.".into()),
            }
        }
        Target::Id(id) => fetch_items(&[Item { id: id.clone(), title: id.clone() }], tools).await,
        Target::Text(fragment) => {
            let all = match list(tools, "all", calls).await {
                Ok(all) => all,
                Err(e) => return Resolution::Missing(format!("I couldn't read your tasks: {e}")),
            };
            // What the user was just shown comes first.
            let shown: Vec<TaskView> =
                mem.list.iter().filter_map(|i| all.iter().find(|t| t.task_id == i.id).cloned()).collect();
            let mut hits = best_matches(fragment, &shown);
            if hits.is_empty() {
                hits = best_matches(fragment, &all);
            }
            if hits.len() > 1
                && let Some(c) = prefer
            {
                let preferred: Vec<TaskView> = hits.iter().filter(|t| t.completed == c).cloned().collect();
                if !preferred.is_empty() {
                    hits = preferred;
                }
            }
            match hits.len() {
                0 => Resolution::Missing(format!("I couldn't find a task matching “{fragment}”.")),
                1 => Resolution::Found(hits),
                _ => Resolution::Ambiguous(hits),
            }
        }
        Target::Completed => match list(tools, "completed", calls).await {
            Ok(tasks) if tasks.is_empty() => Resolution::Missing("You have no completed tasks.".into()),
            Ok(tasks) => Resolution::Found(tasks),
            Err(e) => Resolution::Missing(format!("I couldn't read your tasks: {e}")),
        },
        Target::All => match list(tools, "all", calls).await {
            Ok(tasks) if tasks.is_empty() => Resolution::Missing("You have no tasks.".into()),
            Ok(tasks) => Resolution::Found(tasks),
            Err(e) => Resolution::Missing(format!("I couldn't read your tasks: {e}")),
        },
    }
}

/// Reads remembered tasks as stored now; one that is gone is reported, not guessed.
async fn fetch_items(items: &[Item], tools: &UserTools) -> Resolution {
    let mut found = Vec::new();
    for item in items {
        match tools.get_task(&item.id).await {
            Ok(t) => found.push(t),
            Err(ToolError::NotFound(_)) => {
                return Resolution::Missing(format!("“{}” no longer exists (it may have been deleted).", item.title));
            }
            Err(e) => return Resolution::Missing(format!("I couldn't read “{}”: {e}", item.title)),
        }
    }
    Resolution::Found(found)
}

/// Every task with this status, through the `list_tasks` tool (the call is recorded).
pub async fn list(tools: &UserTools, status: &str, calls: &mut Vec<ToolCall>) -> Result<Vec<TaskView>, String> {
    let call = tools.call("list_tasks", json!({"status": status, "sort": "due", "limit": LIST_MAX})).await;
    let out = tasks_of(&call);
    calls.push(call);
    out
}

/// The tasks of a `list_tasks`/`search_tasks` result, or its error.
pub fn tasks_of(call: &ToolCall) -> Result<Vec<TaskView>, String> {
    if let Some(e) = call.result.get("error").and_then(|e| e.as_str()) {
        return Err(e.to_owned());
    }
    Ok(call
        .result
        .get("tasks")
        .and_then(|t| t.as_array())
        .map(|a| a.iter().filter_map(TaskView::from_json).collect())
        .unwrap_or_default())
}

/// Lowercase words of letters, digits, `'` and `-`, single-spaced.
pub fn normalize(s: &str) -> String {
    s.to_lowercase()
        .chars()
        .map(|c| if c.is_alphanumeric() || c == '\'' || c == '-' { c } else { ' ' })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

const STOP: &[&str] = &["the", "a", "an", "my", "to", "of", "for", "on", "at", "and", "with"];

/// The tasks a fragment names, best kind of match only: the exact title, then a substring,
/// then every word as the start of a title word, then every word within one typo.
pub fn best_matches(fragment: &str, tasks: &[TaskView]) -> Vec<TaskView> {
    let f = normalize(fragment);
    if f.is_empty() {
        return Vec::new();
    }
    let words: Vec<&str> = f.split(' ').filter(|w| !STOP.contains(w)).collect();
    let tiers: [&dyn Fn(&str) -> bool; 4] = [
        &|title: &str| title == f,
        &|title: &str| title.contains(&f),
        &|title: &str| !words.is_empty() && words.iter().all(|w| title.split(' ').any(|tw| tw.starts_with(w))),
        &|title: &str| {
            !words.is_empty()
                && words.iter().all(|w| {
                    title
                        .split(' ')
                        .any(|tw| tw.starts_with(w) || (w.chars().count() >= 4 && edit_distance(w, tw) <= 1))
                })
        },
    ];
    for tier in tiers {
        let hits: Vec<TaskView> = tasks.iter().filter(|t| tier(&normalize(&t.title))).cloned().collect();
        if !hits.is_empty() {
            return hits;
        }
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: &str, title: &str, completed: bool) -> TaskView {
        TaskView {
            task_id: id.into(),
            title: title.into(),
            description: None,
            completed,
            priority: "medium".into(),
            tags: vec![],
            due_at: None,
            remind_at: None,
        }
    }

    fn ids(v: Vec<TaskView>) -> Vec<String> {
        v.into_iter().map(|t| t.task_id).collect()
    }

    #[test]
    fn best_kind_of_match_wins() {
        let tasks = [
            task("1", "Buy milk", false),
            task("2", "Buy oat milk", false),
            task("3", "Write the quarterly report", false),
            task("4", "Dentist appointment", false),
        ];
        assert_eq!(ids(best_matches("buy milk", &tasks)), ["1"], "exact beats substring");
        assert_eq!(ids(best_matches("milk", &tasks)), ["1", "2"], "ambiguous");
        assert_eq!(ids(best_matches("the report", &tasks)), ["3"]);
        assert_eq!(ids(best_matches("quarterly report", &tasks)), ["3"]);
        assert_eq!(ids(best_matches("dentst", &tasks)), ["4"], "one typo");
        assert!(best_matches("taxes", &tasks).is_empty());
        assert!(best_matches("", &tasks).is_empty());
    }
}
