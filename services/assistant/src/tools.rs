//! The assistant's tools: the tasks service's public API as one user, shared by the rules engine,
//! the LLM providers and the MCP server.
//!
//! Every call is a real HTTP request through [`Upstream`] with the user's bearer token, and its
//! result is built from what the API answered (status code checked): a 404 is "not found", never
//! a success (lessons.md: a chatbot reported deletions it never made). The user id is fixed when
//! the tools are made; a `user_id` argument is ignored.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{Method, StatusCode, header};
use flotilla_runtime::upstream::Upstream;
use serde_json::{Map, Value, json};

pub use crate::model::ToolCall;

pub const TOOL_NAMES: [&str; 6] =
    ["add_task", "list_tasks", "complete_task", "delete_task", "update_task", "search_tasks"];

/// Largest response body read from the tasks service (a page of 100 tasks with long
/// descriptions is well below this).
const BODY_LIMIT: usize = 8 * 1024 * 1024;
/// One API page (the API's own maximum).
const PAGE_MAX: usize = 100;
/// How many tasks `list_tasks` and `search_tasks` return at most (following pages).
pub const LIST_MAX: usize = 500;
const LIST_DEFAULT: usize = 100;

/// A tool as offered to a model: its name, what it does, and a JSON Schema of its arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolDefinition {
    pub name: &'static str,
    pub description: &'static str,
    pub parameters: Value,
}

/// The six tools, in [`TOOL_NAMES`] order.
pub fn definitions() -> Vec<ToolDefinition> {
    let priority = json!({"type": "string", "enum": ["low", "medium", "high"]});
    let when = |what: &str| {
        json!({"type": ["string", "null"], "format": "date-time",
               "description": format!("{what} as an RFC 3339 timestamp, e.g. 2026-11-23T17:00:00Z; null clears it")})
    };
    let tags = json!({"type": "array", "items": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,32}$"}, "maxItems": 10,
                      "description": "Labels without '#' (letters, digits, '-' or '_')"});
    let task_id = json!({"type": "string", "description": "The task's id, as returned by list_tasks or search_tasks"});
    vec![
        ToolDefinition {
            name: "add_task",
            description: "Create a task for the user. Returns {task_id, status: \"created\", title}.",
            parameters: json!({
                "type": "object",
                "properties": {
                    "title": {"type": "string", "minLength": 1, "maxLength": 200},
                    "description": {"type": "string", "maxLength": 5000},
                    "priority": priority,
                    "due_at": when("When the task is due"),
                    "tags": tags,
                    "remind_at": when("When to remind the user (not after due_at)"),
                },
                "required": ["title"],
                "additionalProperties": false,
            }),
        },
        ToolDefinition {
            name: "list_tasks",
            description: "List the user's tasks, filtered and sorted. Returns {tasks: [{task_id, title, description, \
                          completed, priority, tags, due_at, remind_at}], count}.",
            parameters: json!({
                "type": "object",
                "properties": {
                    "status": {"type": "string", "enum": ["all", "pending", "completed"], "default": "all"},
                    "priority": priority,
                    "tag": {"type": "string", "description": "Only tasks with this tag (without '#')"},
                    "due_before": {"type": "string", "format": "date-time"},
                    "due_after": {"type": "string", "format": "date-time"},
                    "overdue": {"type": "boolean", "description": "true: pending tasks past their due time"},
                    "sort": {"type": "string", "enum": ["created", "due", "priority", "title"], "default": "created"},
                    "order": {"type": "string", "enum": ["asc", "desc"]},
                    "limit": {"type": "integer", "minimum": 1, "maximum": LIST_MAX, "default": LIST_DEFAULT},
                },
                "additionalProperties": false,
            }),
        },
        ToolDefinition {
            name: "complete_task",
            description: "Mark a task done (completed: true, the default) or reopen it (completed: false). \
                          Returns {task_id, status: \"completed\"|\"reopened\", title}.",
            parameters: json!({
                "type": "object",
                "properties": {"task_id": task_id, "completed": {"type": "boolean", "default": true}},
                "required": ["task_id"],
                "additionalProperties": false,
            }),
        },
        ToolDefinition {
            name: "delete_task",
            description: "Delete a task. Returns {task_id, status: \"deleted\", title}.",
            parameters: json!({
                "type": "object",
                "properties": {"task_id": task_id},
                "required": ["task_id"],
                "additionalProperties": false,
            }),
        },
        ToolDefinition {
            name: "update_task",
            description: "Change some fields of a task; fields not given stay as they are. \
                          Returns {task_id, status: \"updated\", title}.",
            parameters: json!({
                "type": "object",
                "properties": {
                    "task_id": task_id,
                    "title": {"type": "string", "minLength": 1, "maxLength": 200},
                    "description": {"type": ["string", "null"], "maxLength": 5000},
                    "priority": priority,
                    "due_at": when("When the task is due"),
                    "tags": tags,
                    "remind_at": when("When to remind the user (not after due_at)"),
                },
                "required": ["task_id"],
                "additionalProperties": false,
            }),
        },
        ToolDefinition {
            name: "search_tasks",
            description: "Find tasks whose title or description contains the text (case-insensitive). \
                          Returns {tasks: [...], count} like list_tasks.",
            parameters: json!({
                "type": "object",
                "properties": {"query": {"type": "string", "minLength": 1, "maxLength": 200}},
                "required": ["query"],
                "additionalProperties": false,
            }),
        },
    ]
}

/// Why a tool call failed; its JSON form is the call's result.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ToolError {
    #[error("unknown tool {0:?}; the tools are {list}", list = TOOL_NAMES.join(", "))]
    UnknownTool(String),
    #[error("invalid arguments: {0}")]
    InvalidArguments(String),
    /// The task does not exist (or is another user's: the API does not tell them apart).
    #[error("task {0} not found")]
    NotFound(String),
    /// The API refused the request; `message` is its problem detail.
    #[error("{message}")]
    Api { status: u16, message: String },
    /// The API answered something that is not what it documents.
    #[error("unexpected answer from the tasks service: {0}")]
    Unexpected(String),
}

impl ToolError {
    /// The HTTP status behind the error, if the API answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ToolError::NotFound(_) => Some(404),
            ToolError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// `{"error": "<message>", "status": <http status>}` (no `status` when the API did not answer).
    pub fn to_json(&self) -> Value {
        let mut v = json!({"error": self.to_string()});
        if let Some(s) = self.status() {
            v["status"] = json!(s);
        }
        v
    }
}

/// A task as the tools show it.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskView {
    pub task_id: String,
    pub title: String,
    pub description: Option<String>,
    pub completed: bool,
    pub priority: String,
    pub tags: Vec<String>,
    pub due_at: Option<String>,
    pub remind_at: Option<String>,
}

impl TaskView {
    /// From the API's task JSON.
    fn from_api(v: &Value) -> Result<Self, ToolError> {
        let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        let (Some(task_id), Some(title)) = (text("id"), text("title")) else {
            return Err(ToolError::Unexpected("a task without id or title".into()));
        };
        Ok(TaskView {
            task_id,
            title,
            description: text("description"),
            completed: v.get("completed").and_then(Value::as_bool).unwrap_or(false),
            priority: text("priority").unwrap_or_else(|| "medium".into()),
            tags: v
                .get("tags")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|t| t.as_str().map(str::to_owned)).collect())
                .unwrap_or_default(),
            due_at: text("due_at"),
            remind_at: text("remind_at"),
        })
    }

    /// From a tool result's task entry (the inverse of [`TaskView::to_json`]).
    pub fn from_json(v: &Value) -> Option<Self> {
        let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        Some(TaskView {
            task_id: text("task_id")?,
            title: text("title")?,
            description: text("description"),
            completed: v.get("completed").and_then(Value::as_bool)?,
            priority: text("priority").unwrap_or_else(|| "medium".into()),
            tags: v
                .get("tags")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|t| t.as_str().map(str::to_owned)).collect())
                .unwrap_or_default(),
            due_at: text("due_at"),
            remind_at: text("remind_at"),
        })
    }

    pub fn to_json(&self) -> Value {
        json!({
            "task_id": self.task_id,
            "title": self.title,
            "description": self.description,
            "completed": self.completed,
            "priority": self.priority,
            "tags": self.tags,
            "due_at": self.due_at,
            "remind_at": self.remind_at,
        })
    }
}

/// The tasks API as one user.
#[derive(Clone)]
pub struct UserTools {
    tasks: Upstream,
    user_id: String,
    bearer: String,
}

impl std::fmt::Debug for UserTools {
    // The bearer token is a credential: never in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserTools").field("user_id", &self.user_id).finish_non_exhaustive()
    }
}

impl UserTools {
    pub fn new(tasks: Upstream, user_id: impl Into<String>, bearer: impl Into<String>) -> Self {
        Self { tasks, user_id: user_id.into(), bearer: bearer.into() }
    }

    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    /// Runs one tool; never panics: unknown tool, invalid arguments, or an API error give a
    /// ToolCall whose result is {"error": "<clear message>", "status": <http status if any>}.
    pub async fn call(&self, name: &str, arguments: Value) -> ToolCall {
        let result = match self.run(name, &arguments).await {
            Ok(v) => v,
            Err(e) => e.to_json(),
        };
        ToolCall { name: name.to_owned(), arguments, result }
    }

    async fn run(&self, name: &str, arguments: &Value) -> Result<Value, ToolError> {
        let args = Args::new(arguments)?;
        match name {
            "add_task" => self.add_task(&args).await,
            "list_tasks" => self.list_tasks(&args).await,
            "complete_task" => self.complete_task(&args).await,
            "delete_task" => self.delete_task(&args).await,
            "update_task" => self.update_task(&args).await,
            "search_tasks" => self.search_tasks(&args).await,
            other => Err(ToolError::UnknownTool(other.to_owned())),
        }
    }

    /// One task as stored now (not a tool: the rules engine reads a task before deleting or
    /// changing it so that "undo" can put it back).
    pub async fn get_task(&self, task_id: &str) -> Result<TaskView, ToolError> {
        let (status, body) = self.request(Method::GET, &self.task_path(task_id), None).await?;
        expect(status, StatusCode::OK, &body, task_id)?;
        TaskView::from_api(&body)
    }

    async fn add_task(&self, args: &Args<'_>) -> Result<Value, ToolError> {
        args.only(&["title", "description", "priority", "due_at", "tags", "remind_at"])?;
        let title = args.string("title")?.ok_or_else(|| invalid("title is required"))?;
        let mut body = Map::new();
        body.insert("title".into(), json!(title));
        for key in ["description", "due_at", "remind_at"] {
            if let Some(v) = args.nullable_string(key)? {
                body.insert(key.into(), v);
            }
        }
        if let Some(p) = args.priority()? {
            body.insert("priority".into(), json!(p));
        }
        if let Some(t) = args.tags()? {
            body.insert("tags".into(), json!(t));
        }
        let path = format!("/api/{}/tasks", encode(&self.user_id));
        let (status, res) = self.request(Method::POST, &path, Some(Value::Object(body))).await?;
        expect(status, StatusCode::CREATED, &res, "")?;
        let task = TaskView::from_api(&res)?;
        Ok(change(&task, "created"))
    }

    async fn list_tasks(&self, args: &Args<'_>) -> Result<Value, ToolError> {
        args.only(&["status", "priority", "tag", "due_before", "due_after", "overdue", "sort", "order", "limit"])?;
        let mut query: Vec<(&str, String)> = Vec::new();
        if let Some(s) = args.string("status")? {
            let s = s.to_lowercase();
            if !["all", "pending", "completed"].contains(&s.as_str()) {
                return Err(invalid("status must be all, pending or completed"));
            }
            query.push(("status", s));
        }
        if let Some(p) = args.priority()? {
            query.push(("priority", p));
        }
        if let Some(t) = args.string("tag")? {
            query.push(("tag", t.trim_start_matches('#').to_owned()));
        }
        for key in ["due_before", "due_after"] {
            if let Some(v) = args.string(key)? {
                query.push((key, v.to_owned()));
            }
        }
        if let Some(b) = args.boolean("overdue")? {
            query.push(("overdue", b.to_string()));
        }
        if let Some(s) = args.string("sort")? {
            let s = s.to_lowercase();
            if !["created", "due", "priority", "title"].contains(&s.as_str()) {
                return Err(invalid("sort must be created, due, priority or title"));
            }
            query.push(("sort", s));
        }
        if let Some(o) = args.string("order")? {
            let o = o.to_lowercase();
            if o != "asc" && o != "desc" {
                return Err(invalid("order must be asc or desc"));
            }
            query.push(("order", o));
        }
        let limit = match args.integer("limit")? {
            None => LIST_DEFAULT,
            Some(n) if (1..=LIST_MAX as i64).contains(&n) => n as usize,
            Some(_) => return Err(invalid(&format!("limit must be from 1 to {LIST_MAX}"))),
        };
        self.fetch(query, limit).await
    }

    async fn search_tasks(&self, args: &Args<'_>) -> Result<Value, ToolError> {
        args.only(&["query"])?;
        let q = args.string("query")?.map(str::trim).unwrap_or_default();
        if q.is_empty() {
            return Err(invalid("query is required"));
        }
        self.fetch(vec![("q", q.to_owned())], LIST_DEFAULT).await
    }

    /// Pages through the list until `limit` tasks or the last page.
    async fn fetch(&self, query: Vec<(&str, String)>, limit: usize) -> Result<Value, ToolError> {
        let mut tasks = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = (limit - tasks.len()).min(PAGE_MAX);
            let mut pairs = query.clone();
            pairs.push(("limit", page.to_string()));
            if let Some(c) = &cursor {
                pairs.push(("cursor", c.clone()));
            }
            let qs: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={}", encode(v))).collect();
            let path = format!("/api/{}/tasks?{}", encode(&self.user_id), qs.join("&"));
            let (status, body) = self.request(Method::GET, &path, None).await?;
            expect(status, StatusCode::OK, &body, "")?;
            let items = body
                .get("tasks")
                .and_then(Value::as_array)
                .ok_or_else(|| ToolError::Unexpected("a list without tasks".into()))?;
            for item in items {
                tasks.push(TaskView::from_api(item)?);
            }
            cursor = body.get("next_cursor").and_then(Value::as_str).map(str::to_owned);
            if cursor.is_none() || tasks.len() >= limit || items.is_empty() {
                break;
            }
        }
        let count = tasks.len();
        Ok(json!({
            "tasks": tasks.iter().map(TaskView::to_json).collect::<Vec<_>>(),
            "count": count,
            "has_more": cursor.is_some(),
        }))
    }

    async fn complete_task(&self, args: &Args<'_>) -> Result<Value, ToolError> {
        args.only(&["task_id", "completed"])?;
        let id = args.task_id()?;
        let completed = args.boolean("completed")?.unwrap_or(true);
        let path = format!("{}/complete", self.task_path(&id));
        let (status, body) = self.request(Method::PATCH, &path, Some(json!({"completed": completed}))).await?;
        expect(status, StatusCode::OK, &body, &id)?;
        let task = TaskView::from_api(&body)?;
        if task.completed != completed {
            // The API answered 200 but the stored state is not what was asked: say so.
            return Err(ToolError::Unexpected(format!(
                "task {id} is still {}",
                if task.completed { "done" } else { "open" }
            )));
        }
        Ok(change(&task, if completed { "completed" } else { "reopened" }))
    }

    async fn delete_task(&self, args: &Args<'_>) -> Result<Value, ToolError> {
        args.only(&["task_id"])?;
        let id = args.task_id()?;
        // The API answers 204 without a body: read the title first for the result.
        let task = self.get_task(&id).await?;
        let (status, body) = self.request(Method::DELETE, &self.task_path(&id), None).await?;
        expect(status, StatusCode::NO_CONTENT, &body, &id)?;
        Ok(change(&task, "deleted"))
    }

    async fn update_task(&self, args: &Args<'_>) -> Result<Value, ToolError> {
        args.only(&["task_id", "title", "description", "priority", "due_at", "tags", "remind_at"])?;
        let id = args.task_id()?;
        let mut body = Map::new();
        if let Some(t) = args.string("title")? {
            body.insert("title".into(), json!(t));
        }
        for key in ["description", "due_at", "remind_at"] {
            if let Some(v) = args.nullable_string(key)? {
                body.insert(key.into(), v);
            }
        }
        if let Some(p) = args.priority()? {
            body.insert("priority".into(), json!(p));
        }
        if let Some(t) = args.tags()? {
            body.insert("tags".into(), json!(t));
        }
        if body.is_empty() {
            return Err(invalid(
                "nothing to update: give at least one of title, description, priority, due_at, tags, remind_at",
            ));
        }
        let (status, res) = self.request(Method::PATCH, &self.task_path(&id), Some(Value::Object(body))).await?;
        expect(status, StatusCode::OK, &res, &id)?;
        let task = TaskView::from_api(&res)?;
        Ok(change(&task, "updated"))
    }

    fn task_path(&self, id: &str) -> String {
        format!("/api/{}/tasks/{}", encode(&self.user_id), encode(id))
    }

    /// One request as the user; the status and the JSON body (`null` when empty or not JSON).
    async fn request(&self, method: Method, path: &str, body: Option<Value>) -> Result<(StatusCode, Value), ToolError> {
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.bearer))
            .header(header::ACCEPT, "application/json");
        let body = match body {
            Some(v) => {
                builder = builder.header(header::CONTENT_TYPE, "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        let req =
            builder.body(body).map_err(|e| ToolError::InvalidArguments(format!("cannot build the request: {e}")))?;
        let res = self.tasks.call(req).await;
        let status = res.status();
        let bytes = axum::body::to_bytes(res.into_body(), BODY_LIMIT)
            .await
            .map_err(|e| ToolError::Unexpected(format!("could not read the answer: {e}")))?;
        let json = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap_or(Value::Null) };
        Ok((status, json))
    }
}

/// `{task_id, status, title}` plus the task as stored, so replies can say what really happened.
fn change(task: &TaskView, status: &str) -> Value {
    json!({"task_id": task.task_id, "status": status, "title": task.title, "task": task.to_json()})
}

/// Accepts only `want`; anything else (a redirect included) becomes an error with the API's detail.
fn expect(status: StatusCode, want: StatusCode, body: &Value, task_id: &str) -> Result<(), ToolError> {
    if status == want {
        return Ok(());
    }
    if status == StatusCode::NOT_FOUND && !task_id.is_empty() {
        return Err(ToolError::NotFound(task_id.to_owned()));
    }
    let detail = body.get("detail").and_then(Value::as_str).map(str::to_owned);
    let message = match detail {
        Some(d) => d,
        None => format!("the tasks service answered {status}"),
    };
    Err(ToolError::Api { status: status.as_u16(), message })
}

fn invalid(msg: &str) -> ToolError {
    ToolError::InvalidArguments(msg.to_owned())
}

/// Percent-encodes everything but RFC 3986 unreserved characters (for path segments and query
/// values alike).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The arguments object of a call, with typed getters that explain what is wrong.
struct Args<'a>(Option<&'a Map<String, Value>>);

impl<'a> Args<'a> {
    fn new(v: &'a Value) -> Result<Self, ToolError> {
        match v {
            Value::Null => Ok(Args(None)),
            Value::Object(m) => Ok(Args(Some(m))),
            _ => Err(invalid("the arguments must be a JSON object")),
        }
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.0.and_then(|m| m.get(key)).filter(|v| !v.is_null())
    }

    /// Rejects unknown arguments so a misspelt one is not silently dropped; `user_id` is
    /// allowed and ignored (the user comes from the token, never from the arguments).
    fn only(&self, known: &[&str]) -> Result<(), ToolError> {
        let Some(m) = self.0 else { return Ok(()) };
        let unknown: Vec<&str> =
            m.keys().map(String::as_str).filter(|k| *k != "user_id" && !known.contains(k)).collect();
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(invalid(&format!("unknown argument(s) {}; expected {}", unknown.join(", "), known.join(", "))))
        }
    }

    fn string(&self, key: &str) -> Result<Option<&'a str>, ToolError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(invalid(&format!("{key} must be a string"))),
        }
    }

    /// Absent → None; `null` → Some(null) (clears on update); a string → Some(string).
    fn nullable_string(&self, key: &str) -> Result<Option<Value>, ToolError> {
        match self.0.and_then(|m| m.get(key)) {
            None => Ok(None),
            Some(Value::Null) => Ok(Some(Value::Null)),
            Some(Value::String(s)) => Ok(Some(json!(s))),
            Some(_) => Err(invalid(&format!("{key} must be a string or null"))),
        }
    }

    fn boolean(&self, key: &str) -> Result<Option<bool>, ToolError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            // Models often quote booleans.
            Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(_) => Err(invalid(&format!("{key} must be true or false"))),
        }
    }

    fn integer(&self, key: &str) -> Result<Option<i64>, ToolError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => {
                n.as_i64().map(Some).ok_or_else(|| invalid(&format!("{key} must be a whole number")))
            }
            Some(Value::String(s)) => {
                s.trim().parse().map(Some).map_err(|_| invalid(&format!("{key} must be a whole number")))
            }
            Some(_) => Err(invalid(&format!("{key} must be a whole number"))),
        }
    }

    fn task_id(&self) -> Result<String, ToolError> {
        match self.get("task_id") {
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
            Some(Value::Number(n)) => Ok(n.to_string()),
            _ => Err(invalid("task_id is required (a task's id from list_tasks or search_tasks)")),
        }
    }

    fn priority(&self) -> Result<Option<String>, ToolError> {
        match self.string("priority")? {
            None => Ok(None),
            Some(p) => {
                let p = p.trim().to_lowercase();
                if ["low", "medium", "high"].contains(&p.as_str()) {
                    Ok(Some(p))
                } else {
                    Err(invalid("priority must be low, medium or high"))
                }
            }
        }
    }

    /// An array of tags, or one string of tags separated by commas or spaces; '#' is dropped.
    fn tags(&self) -> Result<Option<Vec<String>>, ToolError> {
        let clean = |t: &str| t.trim().trim_start_matches('#').to_owned();
        match self.get("tags") {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|t| t.as_str().map(clean).ok_or_else(|| invalid("tags must be strings")))
                .collect::<Result<Vec<_>, _>>()
                .map(|v| Some(v.into_iter().filter(|t| !t.is_empty()).collect())),
            Some(Value::String(s)) => Ok(Some(s.split([',', ' ']).map(clean).filter(|t| !t.is_empty()).collect())),
            Some(_) => Err(invalid("tags must be an array of strings")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_cover_every_tool_in_order() {
        let defs = definitions();
        let names: Vec<&str> = defs.iter().map(|d| d.name).collect();
        assert_eq!(names, TOOL_NAMES);
        for d in &defs {
            assert_eq!(d.parameters["type"], "object", "{}", d.name);
            assert!(!d.parameters["properties"].as_object().is_some_and(|p| p.contains_key("user_id")), "{}", d.name);
        }
    }

    #[test]
    fn encoding_keeps_unreserved_only() {
        assert_eq!(encode("a b/c?d#e+f"), "a%20b%2Fc%3Fd%23e%2Bf");
        assert_eq!(encode("2026-01-05T17:00:00+01:00"), "2026-01-05T17%3A00%3A00%2B01%3A00");
        assert_eq!(encode("café"), "caf%C3%A9");
    }

    #[test]
    fn errors_carry_the_status() {
        assert_eq!(ToolError::NotFound("x".into()).to_json(), json!({"error": "task x not found", "status": 404}));
        assert!(ToolError::UnknownTool("fly".into()).to_json().get("status").is_none());
    }

    #[test]
    fn arguments_are_checked() {
        let v = json!({"task_id": "a", "user_id": "someone-else", "extra": 1});
        let args = Args::new(&v).unwrap();
        assert!(args.only(&["task_id", "extra"]).is_ok(), "user_id is ignored, not rejected");
        assert!(args.only(&["task_id"]).is_err());
        assert!(Args::new(&json!([1])).is_err());
        let v = json!({"tags": "#home, work", "completed": "false", "limit": "5"});
        let args = Args::new(&v).unwrap();
        assert_eq!(args.tags().unwrap(), Some(vec!["home".to_owned(), "work".to_owned()]));
        assert_eq!(args.boolean("completed").unwrap(), Some(false));
        assert_eq!(args.integer("limit").unwrap(), Some(5));
    }
}
