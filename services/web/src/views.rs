//! The pages, as maud templates: everything interpolated is HTML-escaped by the engine. No inline
//! scripts, styles or event handlers (the Content-Security-Policy forbids them).

use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde_json::Value;

use crate::assets;
use crate::forms::{Errors, PRIORITIES, REPEATS, TaskForm, TaskView, display_time, offset_label};
use crate::session::CSRF_FIELD;
use crate::visit::{Visit, WebError};

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Tasks,
    Activity,
    Status,
    Account,
    None,
}

fn csrf_input(visit: &Visit) -> Markup {
    html! { input type="hidden" name=(CSRF_FIELD) value=(visit.csrf()); }
}

/// Every page: skip link, header with navigation, main region, the flash message.
pub fn page(visit: &Visit, title: &str, nav: Nav, flash: Option<Markup>, body: Markup) -> Markup {
    let user = visit.user();
    let link = |href: &str, label: &str, this: Nav| {
        html! { li { a href=(href) aria-current=[(nav == this).then_some("page")] { (label) } } }
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light";
                title { (title) " · Flotilla" }
                link rel="stylesheet" href=(assets::css_url());
                link rel="icon" href=(assets::icon_url()) type="image/svg+xml";
                script src=(assets::js_url()) defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href=(if user.is_some() { "/tasks" } else { "/login" }) { "Flotilla" }
                    nav aria-label="Main" {
                        ul {
                            @if user.is_some() {
                                (link("/tasks", "Tasks", Nav::Tasks))
                                (link("/activity", "Activity", Nav::Activity))
                            }
                            (link("/status", "Status", Nav::Status))
                            @if user.is_none() {
                                (link("/login", "Log in", Nav::Account))
                                (link("/signup", "Sign up", Nav::Account))
                            }
                        }
                    }
                    @if let Some(u) = &user {
                        form.signout method="post" action="/logout" {
                            (csrf_input(visit))
                            span.who { "Signed in as " strong { (u.name) } }
                            button.link type="submit" { "Log out" }
                        }
                    }
                }
                main #main tabindex="-1" {
                    div #flash role="status" aria-live="polite" {
                        @if let Some(f) = flash { (f) }
                    }
                    (body)
                }
                footer.bottom { p { "Flotilla — tasks by click or by chat." } }
            }
        }
    }
}

fn field_error(errors: &Errors, name: &str, id: &str) -> Markup {
    html! {
        @if let Some(msg) = errors.get(name) {
            p.field-error id=(format!("{id}-error")) { (msg) }
        }
    }
}

fn described(errors: &Errors, name: &str, id: &str) -> Option<String> {
    errors.get(name).map(|_| format!("{id}-error"))
}

fn invalid(errors: &Errors, name: &str) -> Option<&'static str> {
    errors.get(name).map(|_| "true")
}

/// An alert above a form that names what went wrong.
fn alert(message: Option<&str>) -> Markup {
    html! { @if let Some(m) = message { div.alert role="alert" data-focus { p { (m) } } } }
}

// ---- sign up, log in, log out ----

pub struct AuthForm<'a> {
    pub name: &'a str,
    pub email: &'a str,
    pub next: &'a str,
    pub message: Option<&'a str>,
    pub errors: Errors,
}

pub fn login(visit: &Visit, f: &AuthForm) -> Markup {
    let e = &f.errors;
    let body = html! {
        section.card.narrow aria-labelledby="login-h" {
            h1 #login-h { "Log in" }
            (alert(f.message))
            form method="post" action="/login" novalidate {
                (csrf_input(visit))
                input type="hidden" name="next" value=(f.next);
                div.field {
                    label for="login-email" { "Email" }
                    input #login-email type="email" name="email" value=(f.email) required autocomplete="email"
                        aria-invalid=[invalid(e, "email")] aria-describedby=[described(e, "email", "login-email")];
                    (field_error(e, "email", "login-email"))
                }
                div.field {
                    label for="login-password" { "Password" }
                    input #login-password type="password" name="password" required autocomplete="current-password"
                        aria-invalid=[invalid(e, "password")] aria-describedby=[described(e, "password", "login-password")];
                    (field_error(e, "password", "login-password"))
                }
                button.primary type="submit" { "Log in" }
            }
            p { "New here? " a href="/signup" { "Create an account" } "." }
        }
    };
    page(visit, "Log in", Nav::Account, None, body)
}

pub fn signup(visit: &Visit, f: &AuthForm) -> Markup {
    let e = &f.errors;
    let body = html! {
        section.card.narrow aria-labelledby="signup-h" {
            h1 #signup-h { "Create your account" }
            (alert(f.message))
            form method="post" action="/signup" novalidate {
                (csrf_input(visit))
                div.field {
                    label for="signup-name" { "Name" }
                    input #signup-name type="text" name="name" value=(f.name) required maxlength="100" autocomplete="name"
                        aria-invalid=[invalid(e, "name")] aria-describedby=[described(e, "name", "signup-name")];
                    (field_error(e, "name", "signup-name"))
                }
                div.field {
                    label for="signup-email" { "Email" }
                    input #signup-email type="email" name="email" value=(f.email) required autocomplete="email"
                        aria-invalid=[invalid(e, "email")] aria-describedby=[described(e, "email", "signup-email")];
                    (field_error(e, "email", "signup-email"))
                }
                div.field {
                    label for="signup-password" { "Password" }
                    input #signup-password type="password" name="password" required minlength="8" autocomplete="new-password"
                        aria-invalid=[invalid(e, "password")]
                        aria-describedby=(described(e, "password", "signup-password").map(|d| format!("{d} signup-password-hint")).unwrap_or_else(|| "signup-password-hint".into()));
                    p.hint #signup-password-hint { "At least 8 characters; not a common password." }
                    (field_error(e, "password", "signup-password"))
                }
                button.primary type="submit" { "Sign up" }
            }
            p { "Already have an account? " a href="/login" { "Log in" } "." }
        }
    };
    page(visit, "Sign up", Nav::Account, None, body)
}

pub fn logout_confirm(visit: &Visit) -> Markup {
    let body = html! {
        section.card.narrow aria-labelledby="logout-h" {
            h1 #logout-h { "Log out?" }
            form method="post" action="/logout" {
                (csrf_input(visit))
                button.primary type="submit" { "Log out" }
                " "
                a href="/tasks" { "Back to your tasks" }
            }
        }
    };
    page(visit, "Log out", Nav::None, None, body)
}

// ---- tasks ----

/// The list's filters, as in the query string.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    pub status: String,
    pub priority: String,
    pub tag: String,
    pub q: String,
    pub sort: String,
    pub order: String,
    pub cursor: String,
}

impl Filters {
    pub fn from_pairs(p: &[(String, String)]) -> Self {
        let f = |n: &str| crate::forms::field(p, n).trim().to_owned();
        Self {
            status: f("status"),
            priority: f("priority"),
            tag: f("tag"),
            q: f("q"),
            sort: f("sort"),
            order: f("order"),
            cursor: f("cursor"),
        }
    }

    /// The non-empty filters as query pairs (without the cursor).
    pub fn pairs(&self) -> Vec<(&'static str, &str)> {
        [
            ("status", self.status.as_str()),
            ("priority", &self.priority),
            ("tag", &self.tag),
            ("q", &self.q),
            ("sort", &self.sort),
            ("order", &self.order),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .collect()
    }

    /// `/tasks?…` with these filters (and a cursor).
    pub fn url(&self, cursor: Option<&str>) -> String {
        let mut pairs = self.pairs();
        if let Some(c) = cursor {
            pairs.push(("cursor", c));
        }
        if pairs.is_empty() {
            "/tasks".into()
        } else {
            format!("/tasks?{}", serde_urlencoded::to_string(pairs).unwrap_or_default())
        }
    }

    pub fn any(&self) -> bool {
        !self.pairs().iter().all(|(k, _)| *k == "sort" || *k == "order")
    }
}

pub struct ChatEntry {
    pub user: bool,
    pub text: String,
    pub tool_calls: Vec<(String, Value, Value)>,
}

impl ChatEntry {
    /// A message of the API (`{role, content, tool_calls}`).
    pub fn from_json(m: &Value) -> Option<Self> {
        let role = m.get("role")?.as_str()?;
        let text = m.get("content").or_else(|| m.get("response")).and_then(Value::as_str).unwrap_or("").to_owned();
        let tool_calls = m
            .get("tool_calls")
            .and_then(Value::as_array)
            .map(|calls| {
                calls
                    .iter()
                    .map(|c| {
                        (
                            c.get("name").and_then(Value::as_str).unwrap_or("tool").to_owned(),
                            c.get("arguments").cloned().unwrap_or(Value::Null),
                            c.get("result").cloned().unwrap_or(Value::Null),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(Self { user: role == "user", text, tool_calls })
    }
}

pub struct TasksPage<'a> {
    /// Where actions return to: this list with its filters.
    pub back: &'a str,
    /// A fresh `Idempotency-Key` for the create form (a double submit creates one task).
    pub idem: &'a str,
    pub tasks: &'a [TaskView],
    pub next_cursor: Option<&'a str>,
    pub filters: &'a Filters,
    pub form: &'a TaskForm,
    pub errors: &'a Errors,
    pub message: Option<&'a str>,
    pub flash: Option<Markup>,
    pub chat: &'a [ChatEntry],
    pub chat_message: &'a str,
    pub chat_error: Option<&'a str>,
    pub now_ms: i64,
}

/// The flash after an action: a message, and for a delete the "Undo" form.
pub fn flash_markup(visit: &Visit, message: &str, undo: Option<&Value>, back: &str) -> Markup {
    html! {
        div.flash data-focus tabindex="-1" {
            @if !message.is_empty() { p { (message) } }
            @if let Some(saved) = undo {
                form.inline method="post" action="/tasks/restore" {
                    (csrf_input(visit))
                    input type="hidden" name="saved" value=(saved.to_string());
                    input type="hidden" name="back" value=(back);
                    button.secondary type="submit" { "Undo" }
                }
            }
        }
    }
}

pub fn tasks(visit: &Visit, p: TasksPage) -> Markup {
    let back = p.back.to_owned();
    let f = p.filters;
    let body = html! {
        div.layout {
            div.primary {
                h1 { "Your tasks" }
                (new_task_form(visit, p.form, p.errors, p.message, &back, p.idem))
                (filters_form(f))
                section #list aria-labelledby="list-h" {
                    h2 #list-h { @if f.any() { "Matching tasks" } @else { "All tasks" } }
                    @if p.tasks.is_empty() {
                        p.empty {
                            @if f.any() { "No task matches these filters. " a href="/tasks" { "Show all tasks" } "." }
                            @else { "No tasks yet. Add one above, or ask the assistant." }
                        }
                    } @else {
                        ul.tasks {
                            @for t in p.tasks { (task_item(visit, t, &back, p.now_ms)) }
                        }
                    }
                    @if p.next_cursor.is_some() || !f.cursor.is_empty() {
                        nav.pager aria-label="Pages" {
                            @if !f.cursor.is_empty() { a href=(f.url(None)) { "First page" } }
                            @if let Some(c) = p.next_cursor { a href=(f.url(Some(c))) rel="next" { "Next page" } }
                        }
                    }
                }
            }
            (chat_panel(visit, p.chat, p.chat_message, p.chat_error))
        }
    };
    page(visit, "Tasks", Nav::Tasks, p.flash, body)
}

fn new_task_form(
    visit: &Visit,
    form: &TaskForm,
    errors: &Errors,
    message: Option<&str>,
    back: &str,
    idem: &str,
) -> Markup {
    html! {
        section.card #new-task aria-labelledby="new-h" {
            h2 #new-h { "Add a task" }
            (alert(message))
            form method="post" action="/tasks" novalidate {
                (csrf_input(visit))
                input type="hidden" name="back" value=(back);
                input type="hidden" name="idem" value=(idem);
                (task_fields(visit, "new", form, errors, false))
                button.primary type="submit" { "Add task" }
            }
        }
    }
}

/// The fields of the create and edit forms (`prefix` keeps ids unique).
fn task_fields(visit: &Visit, prefix: &str, form: &TaskForm, e: &Errors, full: bool) -> Markup {
    let id = |n: &str| format!("{prefix}-{n}");
    let tz = offset_label(visit.tz_minutes);
    html! {
        div.field {
            label for=(id("title")) { "Title" }
            input id=(id("title")) type="text" name="title" value=(form.title) required maxlength="200"
                aria-invalid=[invalid(e, "title")] aria-describedby=[described(e, "title", &id("title"))];
            (field_error(e, "title", &id("title")))
        }
        details.more open[full || !e.is_empty() || !form.description.is_empty() || !form.due.is_empty()] {
            summary { "Details: description, priority, tags, due date, reminder, repeat" }
            div.field {
                label for=(id("description")) { "Description" }
                textarea id=(id("description")) name="description" rows="3" maxlength="5000"
                    aria-invalid=[invalid(e, "description")] aria-describedby=[described(e, "description", &id("description"))] { (form.description) }
                (field_error(e, "description", &id("description")))
            }
            div.row {
                div.field {
                    label for=(id("priority")) { "Priority" }
                    select id=(id("priority")) name="priority" {
                        @for p in PRIORITIES {
                            option value=(p) selected[form.priority == p] { (capitalise(p)) }
                        }
                    }
                    (field_error(e, "priority", &id("priority")))
                }
                div.field {
                    label for=(id("tags")) { "Tags" }
                    input id=(id("tags")) type="text" name="tags" value=(form.tags) placeholder="home, errands"
                        aria-invalid=[invalid(e, "tags")]
                        aria-describedby=(described(e, "tags", &id("tags")).map(|d| format!("{d} {}", id("tags-hint"))).unwrap_or_else(|| id("tags-hint")));
                    p.hint id=(id("tags-hint")) { "Separated by commas." }
                    (field_error(e, "tags", &id("tags")))
                }
            }
            div.row {
                div.field {
                    label for=(id("due")) { "Due (" (tz) ")" }
                    input id=(id("due")) type="datetime-local" name="due" value=(form.due)
                        aria-invalid=[invalid(e, "due")] aria-describedby=[described(e, "due", &id("due"))];
                    (field_error(e, "due", &id("due")))
                }
                div.field {
                    label for=(id("remind")) { "Remind me (" (tz) ")" }
                    input id=(id("remind")) type="datetime-local" name="remind" value=(form.remind)
                        aria-invalid=[invalid(e, "remind")] aria-describedby=[described(e, "remind", &id("remind"))];
                    (field_error(e, "remind", &id("remind")))
                }
                div.field {
                    label for=(id("repeat")) { "Repeat" }
                    select id=(id("repeat")) name="repeat" {
                        @for r in REPEATS {
                            option value=(r) selected[form.repeat == r] { (if r == "none" { "Never".to_owned() } else { capitalise(r) }) }
                        }
                    }
                    (field_error(e, "repeat", &id("repeat")))
                }
            }
        }
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

fn filters_form(f: &Filters) -> Markup {
    let select = |id: &str, name: &str, label: &str, current: &str, options: &[(&str, &str)]| {
        html! {
            div.field {
                label for=(id) { (label) }
                select id=(id) name=(name) data-autosubmit {
                    @for (value, text) in options {
                        option value=(value) selected[current == *value] { (text) }
                    }
                }
            }
        }
    };
    html! {
        section.card #filters aria-labelledby="filters-h" {
            h2 #filters-h { "Find tasks" }
            form.filters method="get" action="/tasks" role="search" {
                div.field.grow {
                    label for="f-q" { "Search" }
                    input #f-q type="search" name="q" value=(f.q) maxlength="200" placeholder="Words in title or description";
                }
                (select("f-status", "status", "Status", &f.status, &[("", "All"), ("pending", "Pending"), ("completed", "Completed")]))
                (select("f-priority", "priority", "Priority", &f.priority, &[("", "Any"), ("high", "High"), ("medium", "Medium"), ("low", "Low")]))
                div.field {
                    label for="f-tag" { "Tag" }
                    input #f-tag type="text" name="tag" value=(f.tag) maxlength="32" size="10";
                }
                (select("f-sort", "sort", "Sort by", &f.sort, &[("", "Newest"), ("due", "Due date"), ("priority", "Priority"), ("title", "Title")]))
                (select("f-order", "order", "Order", &f.order, &[("", "Default"), ("asc", "Ascending"), ("desc", "Descending")]))
                div.buttons {
                    button.secondary type="submit" { "Apply" }
                    @if f.any() { a href="/tasks" { "Clear" } }
                }
            }
        }
    }
}

fn task_item(visit: &Visit, t: &TaskView, back: &str, now_ms: i64) -> Markup {
    let overdue = t.overdue(now_ms);
    let tz = visit.tz_minutes;
    html! {
        li.task #(format!("task-{}", t.id)) .done[t.completed] .overdue[overdue] {
            form.toggle method="post" action=(format!("/tasks/{}/complete", t.id)) {
                (csrf_input(visit))
                input type="hidden" name="completed" value=(if t.completed { "false" } else { "true" });
                input type="hidden" name="back" value=(back);
                button.check #(format!("toggle-{}", t.id)) type="submit" {
                    span aria-hidden="true" { (if t.completed { PreEscaped("&#10003;") } else { PreEscaped("&nbsp;") }) }
                    span.vh { (if t.completed { "Reopen " } else { "Complete " }) "“" (t.title) "”" }
                }
            }
            div.body {
                p.title { a href=(edit_url(&t.id, back)) { (t.title) } }
                p.meta {
                    span class=(format!("badge prio-{}", t.priority)) { (capitalise(&t.priority)) " priority" }
                    @if t.completed { span.badge.ok { "Done" } }
                    @if overdue { span.badge.late { "Overdue" } }
                    @if let Some(d) = &t.due_at {
                        span { "Due " time datetime=(d) { (display_time(d, tz, now_ms)) } }
                    }
                    @if let Some(r) = &t.remind_at {
                        span { "Reminder " time datetime=(r) { (display_time(r, tz, now_ms)) } }
                    }
                    @if t.repeat() != "none" { span { "Repeats " (t.repeat()) } }
                    @for tag in &t.tags {
                        a.tag href=(format!("/tasks?{}", serde_urlencoded::to_string([("tag", tag.as_str())]).unwrap_or_default())) { "#" (tag) }
                    }
                }
                @if let Some(d) = t.description.as_deref().filter(|d| !d.trim().is_empty()) {
                    p.desc { (d) }
                }
            }
            div.actions {
                a.button.secondary href=(edit_url(&t.id, back)) { "Edit" span.vh { " “" (t.title) "”" } }
                form.inline method="post" action=(format!("/tasks/{}/delete", t.id)) {
                    (csrf_input(visit))
                    input type="hidden" name="back" value=(back);
                    button.danger type="submit" { "Delete" span.vh { " “" (t.title) "”" } }
                }
            }
        }
    }
}

fn edit_url(id: &str, back: &str) -> String {
    format!("/tasks/{id}/edit?{}", serde_urlencoded::to_string([("back", back)]).unwrap_or_default())
}

pub fn edit(visit: &Visit, id: &str, form: &TaskForm, errors: &Errors, message: Option<&str>, back: &str) -> Markup {
    let body = html! {
        section.card.narrow aria-labelledby="edit-h" {
            h1 #edit-h { "Edit task" }
            (alert(message))
            form method="post" action=(format!("/tasks/{id}")) novalidate {
                (csrf_input(visit))
                input type="hidden" name="version" value=(form.version);
                input type="hidden" name="repeat_was" value=(form.repeat_was);
                input type="hidden" name="back" value=(back);
                (task_fields(visit, "edit", form, errors, true))
                div.buttons {
                    button.primary type="submit" { "Save changes" }
                    a href=(back) { "Cancel" }
                }
            }
        }
    };
    page(visit, "Edit task", Nav::Tasks, None, body)
}

fn chat_panel(visit: &Visit, entries: &[ChatEntry], message: &str, error: Option<&str>) -> Markup {
    html! {
        aside.chat.card #chat aria-labelledby="chat-h" {
            h2 #chat-h { "Assistant" }
            p.hint { "Ask in plain words: “add water the plants tomorrow”, “what is due this week?”, “complete the first one”." }
            ol.transcript #transcript aria-live="polite" {
                @for e in entries {
                    li class=(if e.user { "msg user" } else { "msg bot" }) {
                        span.vh { (if e.user { "You: " } else { "Assistant: " }) }
                        p { (e.text) }
                        @if !e.tool_calls.is_empty() {
                            details.tools {
                                summary { "Actions taken (" (e.tool_calls.len()) ")" }
                                ul {
                                    @for (name, args, result) in &e.tool_calls {
                                        li {
                                            code { (name) } " " span.args { (compact(args)) }
                                            " → " span class=(if result.get("error").is_some() { "result failed" } else { "result" }) { (compact(result)) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            (alert(error))
            form.chat-form method="post" action="/chat" data-chat {
                (csrf_input(visit))
                div.field {
                    label for="chat-message" { "Message the assistant" }
                    input #chat-message type="text" name="message" value=(message) required maxlength="2000" autocomplete="off";
                }
                div.buttons {
                    button.primary type="submit" { "Send" }
                }
            }
            @if !entries.is_empty() {
                form.inline method="post" action="/chat/new" {
                    (csrf_input(visit))
                    button.link type="submit" { "Start a new conversation" }
                }
            }
        }
    }
}

/// A short one-line rendering of a tool's arguments or result: scalar fields as they are, a nested
/// task by its title, lists by their length.
fn compact(v: &Value) -> String {
    let s = match v {
        Value::Null => String::new(),
        Value::Object(m) => m
            .iter()
            .filter_map(|(k, v)| match v {
                Value::Null => None,
                Value::String(s) => Some(format!("{k}: {s}")),
                Value::Object(o) => o.get("title").and_then(Value::as_str).map(|t| format!("{k}: “{t}”")),
                Value::Array(a) if a.iter().all(|x| !x.is_object()) => Some(format!(
                    "{k}: {}",
                    a.iter().map(|x| x.as_str().map_or(x.to_string(), str::to_owned)).collect::<Vec<_>>().join(", ")
                )),
                Value::Array(a) => Some(format!("{k}: {} item(s)", a.len())),
                other => Some(format!("{k}: {other}")),
            })
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    };
    if s.chars().count() > 240 { format!("{}…", s.chars().take(240).collect::<String>()) } else { s }
}

// ---- activity and status ----

pub fn activity(visit: &Visit, events: &[Value], next: Option<&str>, first: bool, now_ms: i64) -> Markup {
    let body = html! {
        h1 { "Your activity" }
        @if events.is_empty() {
            p.empty { "Nothing yet. What you do — sign-ins, tasks created, completed, deleted — shows up here." }
        } @else {
            ol.activity {
                @for ev in events {
                    li {
                        @let time = ev.get("time").and_then(Value::as_str).unwrap_or("");
                        time datetime=(time) { (display_time(time, visit.tz_minutes, now_ms)) }
                        " "
                        span { (describe_event(ev)) }
                    }
                }
            }
        }
        @if next.is_some() || !first {
            nav.pager aria-label="Pages" {
                @if !first { a href="/activity" { "Newest" } }
                @if let Some(c) = next {
                    a href=(format!("/activity?{}", serde_urlencoded::to_string([("cursor", c)]).unwrap_or_default())) rel="next" { "Older" }
                }
            }
        }
    };
    page(visit, "Activity", Nav::Activity, None, body)
}

fn describe_event(ev: &Value) -> String {
    let kind = ev.get("type").and_then(Value::as_str).unwrap_or("event");
    let title = ev.pointer("/data/title").and_then(Value::as_str).map(|t| format!("“{t}”")).unwrap_or_default();
    match kind {
        "task.created" => format!("Created {title}"),
        "task.updated" => format!("Edited {title}"),
        "task.completed" => format!("Completed {title}"),
        "task.reopened" => format!("Reopened {title}"),
        "task.deleted" => "Deleted a task".into(),
        "task.reminder_due" => format!("Reminder for {title}"),
        "user.signed_up" => "Created your account".into(),
        "user.logged_in" => "Logged in".into(),
        "user.login_failed" => "A login with a wrong password".into(),
        "user.deleted" => "Deleted the account".into(),
        "chat.turn_completed" => "Chatted with the assistant".into(),
        other => other.to_owned(),
    }
}

pub fn status(visit: &Visit, health: Option<&Value>) -> Markup {
    let services = health.and_then(|h| h.get("services")).and_then(Value::as_object);
    let all_ok = health.and_then(|h| h.get("status")).and_then(Value::as_str) == Some("ok");
    let body = html! {
        h1 { "Service status" }
        @match services {
            None => div.alert role="alert" { p { "The gateway did not answer, so the state of the services is unknown. Try again in a moment; if it persists, the gateway is down." } },
            Some(services) => {
                p.summary.ok[all_ok].bad[!all_ok] {
                    @if all_ok { "All services are working." } @else { "Some services are not working: pages that need them will show an error until they are back." }
                }
                table.status {
                    caption.vh { "Each service's readiness and response time" }
                    thead { tr { th scope="col" { "Service" } th scope="col" { "State" } th scope="col" { "Response time" } } }
                    tbody {
                        @for (name, s) in services {
                            @let ready = s.get("ready").and_then(Value::as_bool).unwrap_or(false);
                            tr {
                                th scope="row" { (name) }
                                td { span.badge.ok[ready].late[!ready] { (if ready { "Up" } else { "Down" }) } }
                                td { (s.get("latency_ms").and_then(Value::as_f64).map(|l| format!("{l:.1} ms")).unwrap_or_default()) }
                            }
                        }
                    }
                }
            }
        }
        p { a href="/status" { "Check again" } }
    };
    page(visit, "Status", Nav::Status, None, body)
}

// ---- errors ----

pub fn error_page(visit: &Visit, err: &WebError) -> Markup {
    let signed_in = visit.user().is_some();
    let home = if signed_in { ("/tasks", "Go to your tasks") } else { ("/login", "Go to the login page") };
    let (title, what, todo): (&str, String, &str) = match err {
        WebError::NotFound => (
            "Page not found",
            format!("There is nothing at {}. The task may have been deleted, or the address mistyped.", visit.uri.split('?').next().unwrap_or("/")),
            "Check the address, or start again from your task list.",
        ),
        WebError::Csrf => (
            "This form has expired",
            "The form was sent without a valid security token (it may be from an old tab or a session that has ended). Nothing was changed.".into(),
            "Go back, reload the page, and send the form again.",
        ),
        WebError::BadRequest(d) => ("That request was not understood", d.clone(), "Go back and try again from the page."),
        WebError::Api(s, d, retry) if s.as_u16() == 429 => (
            "Too many requests",
            d.clone(),
            if retry.is_some() { "Wait a little (the limit resets within a minute) and try again." } else { "Wait a little and try again." },
        ),
        WebError::Api(s, d, _) if s.is_server_error() => (
            "Something went wrong on our side",
            d.clone(),
            "Try again in a moment. The status page shows which service is affected.",
        ),
        WebError::Api(_, d, _) => ("That did not work", d.clone(), "Go back and check what you entered."),
        WebError::Unavailable => (
            "The service is not answering",
            "Flotilla could not reach the API.".into(),
            "Try again in a moment. The status page shows which service is affected.",
        ),
        WebError::SignedOut => ("Please log in", "Your session has ended.".into(), "Log in again to continue."),
    };
    let body = html! {
        section.card.narrow.error aria-labelledby="error-h" {
            h1 #error-h { (title) }
            p { (what) }
            p.todo { strong { "What to do: " } (todo) }
            ul.links {
                li { a href=(home.0) { (home.1) } }
                li { a href="/status" { "Service status" } }
            }
        }
    };
    page(visit, title, Nav::None, None, body)
}
