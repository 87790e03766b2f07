//! Page handlers: read the form or query, call the API as the visitor, answer with a page or a
//! redirect (post/redirect/get, so reloading never repeats an action).

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use flotilla_runtime::ids::is_id;
use flotilla_runtime::time::now_ms;
use serde_json::{Value, json};

use crate::forms::{Errors, TaskForm, TaskView, field};
use crate::session::random_id;
use crate::views::{self, AuthForm, ChatEntry, Filters, TasksPage};
use crate::visit::{PageResult, Visit, WebError, form_pairs};

type V = Extension<Visit>;

fn query_pairs(q: &Option<String>) -> Vec<(String, String)> {
    q.as_deref().map(|q| serde_urlencoded::from_str(q).unwrap_or_default()).unwrap_or_default()
}

/// A local path to return to after an action; anything else (another site, a protocol-relative
/// URL) becomes `fallback`: never an open redirect.
fn local_path(candidate: &str, fallback: &str) -> String {
    let ok = candidate.starts_with('/')
        && !candidate.starts_with("//")
        && !candidate.contains('\\')
        && !candidate.chars().any(char::is_control);
    if ok { candidate.to_owned() } else { fallback.to_owned() }
}

/// Actions on tasks return to the list they were made from.
fn back_to_list(pairs: &[(String, String)]) -> String {
    let b = field(pairs, "back");
    if b == "/tasks" || b.starts_with("/tasks?") { local_path(b, "/tasks") } else { "/tasks".into() }
}

fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

fn task_id(id: &str) -> Result<&str, WebError> {
    if is_id(id) { Ok(id) } else { Err(WebError::NotFound) }
}

pub async fn root(Extension(v): V) -> Response {
    see_other(if v.user().is_some() { "/tasks" } else { "/login" })
}

pub async fn not_found() -> WebError {
    WebError::NotFound
}

// ---- sign up, log in, log out ----

pub async fn login_page(Extension(v): V, RawQuery(q): RawQuery) -> Response {
    let pairs = query_pairs(&q);
    let next = local_path(field(&pairs, "next"), "/tasks");
    if v.user().is_some() {
        return see_other(&next);
    }
    let flash = v.take_flash().map(|f| f.message);
    let form = AuthForm { name: "", email: "", next: &next, message: flash.as_deref(), errors: Errors::default() };
    views::login(&v, &form).into_response()
}

pub async fn login_post(Extension(v): V, body: Bytes) -> PageResult {
    let p = form_pairs(&body);
    let next = local_path(field(&p, "next"), "/tasks");
    let email = field(&p, "email").trim();
    let body = json!({ "email": email, "password": field(&p, "password") });
    match v.sign_in_call("/api/auth/login", &body).await? {
        Ok(tokens) => {
            v.sign_in(&tokens);
            Ok(see_other(&next))
        }
        Err(reply) => {
            let message = match reply.status.as_u16() {
                401 => "The email or password is wrong.".to_owned(),
                403 => "This account is disabled. Ask an administrator to enable it.".to_owned(),
                429 => format!(
                    "Too many failed attempts. Wait {} and try again.",
                    reply.retry_after().map(|s| format!("{s} seconds")).unwrap_or_else(|| "a few minutes".into())
                ),
                422 => "Enter your email and password.".to_owned(),
                _ => return Err(WebError::from_reply(&reply)),
            };
            let errors = Errors::from_api(reply.field_errors());
            let form = AuthForm { name: "", email, next: &next, message: Some(&message), errors };
            Ok((reply.status, views::login(&v, &form)).into_response())
        }
    }
}

pub async fn signup_page(Extension(v): V) -> Response {
    if v.user().is_some() {
        return see_other("/tasks");
    }
    let form = AuthForm { name: "", email: "", next: "/tasks", message: None, errors: Errors::default() };
    views::signup(&v, &form).into_response()
}

pub async fn signup_post(Extension(v): V, body: Bytes) -> PageResult {
    let p = form_pairs(&body);
    let (name, email) = (field(&p, "name").trim(), field(&p, "email").trim());
    let body = json!({ "name": name, "email": email, "password": field(&p, "password") });
    match v.sign_in_call("/api/auth/signup", &body).await? {
        Ok(tokens) => {
            v.sign_in(&tokens);
            v.flash(&format!("Welcome, {}! Add your first task below.", tokens.user.name), None, None);
            Ok(see_other("/tasks"))
        }
        Err(reply) => {
            let (message, errors) = match reply.status.as_u16() {
                409 => (
                    "An account with this email already exists. Log in instead.".to_owned(),
                    Errors(vec![("email".into(), "is already registered".into())]),
                ),
                422 => ("Please correct the fields below.".to_owned(), Errors::from_api(reply.field_errors())),
                429 => ("Too many attempts. Wait a minute and try again.".to_owned(), Errors::default()),
                _ => return Err(WebError::from_reply(&reply)),
            };
            let form = AuthForm { name, email, next: "/tasks", message: Some(&message), errors };
            Ok((reply.status, views::signup(&v, &form)).into_response())
        }
    }
}

pub async fn logout_page(Extension(v): V) -> Response {
    if v.user().is_none() {
        return see_other("/login");
    }
    views::logout_confirm(&v).into_response()
}

pub async fn logout_post(Extension(v): V) -> Response {
    if let Some(u) = v.user() {
        // Ends the refresh token family at accounts; the cookie is replaced whatever the answer.
        let _ = v.call(Method::POST, "/api/auth/logout", Some(&json!({ "refresh_token": u.refresh }))).await;
    }
    v.sign_out();
    v.flash("You are logged out.", None, None);
    see_other("/login")
}

// ---- tasks ----

struct ListInput {
    filters: Filters,
    form: TaskForm,
    errors: Errors,
    message: Option<String>,
    flash: Option<maud::Markup>,
    chat_message: String,
    chat_error: Option<String>,
    status: StatusCode,
}

impl ListInput {
    fn new(filters: Filters) -> Self {
        Self {
            filters,
            form: TaskForm::blank(),
            errors: Errors::default(),
            message: None,
            flash: None,
            chat_message: String::new(),
            chat_error: None,
            status: StatusCode::OK,
        }
    }
}

pub async fn tasks_page(Extension(v): V, RawQuery(q): RawQuery) -> PageResult {
    v.require_user()?;
    let filters = Filters::from_pairs(&query_pairs(&q));
    render_tasks(&v, ListInput::new(filters), None).await
}

/// The task page: the list with its filters, the create form, the chat.
async fn render_tasks(v: &Visit, mut input: ListInput, mut chat_turn: Option<Value>) -> PageResult {
    let user = v.require_user()?;
    let back = input.filters.url(None);
    if let Some(f) = v.take_flash() {
        if input.flash.is_none() && (!f.message.is_empty() || f.undo.is_some()) {
            input.flash = Some(views::flash_markup(v, &f.message, f.undo.as_ref(), &back));
        }
        chat_turn = chat_turn.or(f.chat);
    }
    let mut query: Vec<(&str, &str)> = input.filters.pairs();
    if !input.filters.cursor.is_empty() {
        query.push(("cursor", &input.filters.cursor));
    }
    query.push(("limit", "20"));
    let path = format!("/api/{}/tasks?{}", user.id, serde_urlencoded::to_string(&query).unwrap_or_default());
    let reply = v.call(Method::GET, &path, None).await?;
    let (tasks, next_cursor) = if reply.ok() {
        let tasks: Vec<TaskView> = serde_json::from_value(reply.body["tasks"].clone()).unwrap_or_default();
        (tasks, reply.body["next_cursor"].as_str().map(str::to_owned))
    } else if reply.status == StatusCode::UNPROCESSABLE_ENTITY {
        let why = reply.field_errors().into_iter().map(|(f, m)| format!("{f}: {m}")).collect::<Vec<_>>().join("; ");
        input.message.get_or_insert(format!("These filters are not valid ({why}). Change them and apply again."));
        (Vec::new(), None)
    } else {
        return Err(WebError::from_reply(&reply));
    };
    let chat = load_chat(v, &user, chat_turn).await;
    let page = views::tasks(
        v,
        TasksPage {
            back: &back,
            idem: &random_id(),
            tasks: &tasks,
            next_cursor: next_cursor.as_deref(),
            filters: &input.filters,
            form: &input.form,
            errors: &input.errors,
            message: input.message.as_deref(),
            flash: input.flash,
            chat: &chat,
            chat_message: &input.chat_message,
            chat_error: input.chat_error.as_deref(),
            now_ms: now_ms(),
        },
    );
    Ok((input.status, page).into_response())
}

/// The conversation shown on the task page: its newest messages from the assistant, or (when the
/// history cannot be read) the turn just made.
async fn load_chat(v: &Visit, user: &crate::session::SignedIn, turn: Option<Value>) -> Vec<ChatEntry> {
    if let Some(id) = user.conversation.as_deref().filter(|id| is_id(id)) {
        let path = format!("/api/{}/conversations/{id}", user.id);
        if let Ok(r) = v.call(Method::GET, &path, None).await
            && r.ok()
            && let Some(messages) = r.body.get("messages").and_then(Value::as_array)
        {
            let start = messages.len().saturating_sub(20);
            return messages[start..].iter().filter_map(ChatEntry::from_json).collect();
        }
    }
    let Some(turn) = turn else { return Vec::new() };
    let mut out = Vec::new();
    if let Some(m) = turn.get("message").and_then(Value::as_str) {
        out.push(ChatEntry { user: true, text: m.to_owned(), tool_calls: Vec::new() });
    }
    let reply = json!({ "role": "assistant", "content": turn.get("response"), "tool_calls": turn.get("tool_calls") });
    out.extend(ChatEntry::from_json(&reply));
    out
}

pub async fn create_task(Extension(v): V, body: Bytes) -> PageResult {
    let user = v.require_user()?;
    let p = form_pairs(&body);
    let back = back_to_list(&p);
    let form = TaskForm::from_pairs(&p);
    let filters = filters_of(&back);
    let invalid = |form: TaskForm, errors: Errors, status: StatusCode| ListInput {
        form,
        errors,
        message: Some("The task was not added: correct the fields marked below.".into()),
        status,
        ..ListInput::new(filters.clone())
    };
    let json = match form.to_json(v.tz_minutes, false) {
        Ok(j) => j,
        Err(errors) => return render_tasks(&v, invalid(form, errors, StatusCode::UNPROCESSABLE_ENTITY), None).await,
    };
    let idem: Vec<(&'static str, String)> = match field(&p, "idem") {
        k if !k.is_empty() && k.len() <= 64 && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') => {
            vec![("idempotency-key", k.to_owned())]
        }
        _ => Vec::new(),
    };
    let reply = v.call_with(Method::POST, &format!("/api/{}/tasks", user.id), Some(&json), &idem).await?;
    match reply.status.as_u16() {
        200 | 201 => {
            let title = reply.body["title"].as_str().unwrap_or_default();
            v.flash(&format!("Added “{title}”."), None, None);
            Ok(see_other(&back))
        }
        422 => {
            let errors = Errors::from_api(reply.field_errors());
            render_tasks(&v, invalid(form, errors, reply.status), None).await
        }
        _ => Err(WebError::from_reply(&reply)),
    }
}

fn filters_of(list_url: &str) -> Filters {
    let q = list_url.split_once('?').map(|(_, q)| q.to_owned());
    Filters::from_pairs(&query_pairs(&q))
}

async fn get_task(v: &Visit, user_id: &str, id: &str) -> Result<(TaskView, Value), WebError> {
    let reply = v.call(Method::GET, &format!("/api/{user_id}/tasks/{id}"), None).await?;
    if !reply.ok() {
        return Err(WebError::from_reply(&reply));
    }
    let task = serde_json::from_value(reply.body.clone()).map_err(|_| WebError::Unavailable)?;
    Ok((task, reply.body))
}

pub async fn edit_page(Extension(v): V, Path(id): Path<String>, RawQuery(q): RawQuery) -> PageResult {
    let user = v.require_user()?;
    let id = task_id(&id)?;
    let back = back_to_list(&query_pairs(&q));
    let (task, _) = get_task(&v, &user.id, id).await?;
    let form = TaskForm::from_task(&task, v.tz_minutes);
    Ok(views::edit(&v, id, &form, &Errors::default(), None, &back).into_response())
}

/// A task's own address shows its edit form.
pub async fn edit_redirect(Path(id): Path<String>) -> PageResult {
    Ok(see_other(&format!("/tasks/{}/edit", task_id(&id)?)))
}

pub async fn update_task(Extension(v): V, Path(id): Path<String>, body: Bytes) -> PageResult {
    let user = v.require_user()?;
    let id = task_id(&id)?;
    let p = form_pairs(&body);
    let back = back_to_list(&p);
    let form = TaskForm::from_pairs(&p);
    let json = match form.to_json(v.tz_minutes, true) {
        Ok(j) => j,
        Err(errors) => {
            let page = views::edit(&v, id, &form, &errors, Some("Correct the fields marked below."), &back);
            return Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response());
        }
    };
    let if_match: Vec<(&'static str, String)> = match form.version.parse::<i64>() {
        Ok(n) => vec![("if-match", format!("\"{n}\""))],
        Err(_) => Vec::new(),
    };
    let reply = v.call_with(Method::PATCH, &format!("/api/{}/tasks/{id}", user.id), Some(&json), &if_match).await?;
    match reply.status.as_u16() {
        200 => {
            let title = reply.body["title"].as_str().unwrap_or_default();
            v.flash(&format!("Saved “{title}”."), None, None);
            Ok(see_other(&back))
        }
        412 => {
            let (task, _) = get_task(&v, &user.id, id).await?;
            let latest = TaskForm::from_task(&task, v.tz_minutes);
            let msg = "This task was changed somewhere else while you were editing. This is its latest version: make your change again.";
            Ok((StatusCode::PRECONDITION_FAILED, views::edit(&v, id, &latest, &Errors::default(), Some(msg), &back))
                .into_response())
        }
        422 => {
            let errors = Errors::from_api(reply.field_errors());
            let page = views::edit(&v, id, &form, &errors, Some("Correct the fields marked below."), &back);
            Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
        }
        _ => Err(WebError::from_reply(&reply)),
    }
}

pub async fn complete_task(Extension(v): V, Path(id): Path<String>, body: Bytes) -> PageResult {
    let user = v.require_user()?;
    let id = task_id(&id)?;
    let p = form_pairs(&body);
    let back = back_to_list(&p);
    let completed = match field(&p, "completed") {
        "true" => true,
        "false" => false,
        _ => return Err(WebError::BadRequest("The form did not say whether to complete or reopen the task.".into())),
    };
    let path = format!("/api/{}/tasks/{id}/complete", user.id);
    let reply = v.call(Method::PATCH, &path, Some(&json!({ "completed": completed }))).await?;
    if !reply.ok() {
        return Err(WebError::from_reply(&reply));
    }
    let title = reply.body["title"].as_str().unwrap_or_default();
    let verb = if completed { "Completed" } else { "Reopened" };
    v.flash(&format!("{verb} “{title}”."), None, None);
    Ok(see_other(&back))
}

pub async fn delete_task(Extension(v): V, Path(id): Path<String>, body: Bytes) -> PageResult {
    let user = v.require_user()?;
    let id = task_id(&id)?;
    let p = form_pairs(&body);
    let back = back_to_list(&p);
    let (task, raw) = get_task(&v, &user.id, id).await?;
    let reply = v.call(Method::DELETE, &format!("/api/{}/tasks/{id}", user.id), None).await?;
    if !reply.ok() && reply.status != StatusCode::NOT_FOUND {
        return Err(WebError::from_reply(&reply));
    }
    let message = format!("Deleted “{}”.", task.title);
    let saved = TaskView::saved_fields(&raw);
    if v.flash(&message, Some(saved.clone()), None) {
        return Ok(see_other(&back));
    }
    // Too large for a cookie (a long description): show the undo on this answer instead.
    let input = ListInput {
        flash: Some(views::flash_markup(&v, &message, Some(&saved), &back)),
        ..ListInput::new(filters_of(&back))
    };
    render_tasks(&v, input, None).await
}

/// "Undo" of a delete: the task is created again from its saved fields.
pub async fn restore_task(Extension(v): V, body: Bytes) -> PageResult {
    let user = v.require_user()?;
    let p = form_pairs(&body);
    let back = back_to_list(&p);
    let saved: Value = serde_json::from_str(field(&p, "saved"))
        .map_err(|_| WebError::BadRequest("The undo form was incomplete; the task could not be restored.".into()))?;
    let mut body = TaskView::saved_fields(&saved);
    let completed = body.as_object_mut().and_then(|o| o.remove("completed")).and_then(|c| c.as_bool());
    let reply = v.call(Method::POST, &format!("/api/{}/tasks", user.id), Some(&body)).await?;
    if !reply.ok() {
        return Err(WebError::from_reply(&reply));
    }
    if completed == Some(true)
        && let Some(new_id) = reply.body["id"].as_str()
    {
        let path = format!("/api/{}/tasks/{new_id}/complete", user.id);
        let done = v.call(Method::PATCH, &path, Some(&json!({ "completed": true }))).await?;
        if !done.ok() {
            return Err(WebError::from_reply(&done));
        }
    }
    v.flash(&format!("Restored “{}”.", reply.body["title"].as_str().unwrap_or_default()), None, None);
    Ok(see_other(&back))
}

// ---- chat ----

pub async fn chat_post(Extension(v): V, body: Bytes) -> PageResult {
    let user = v.require_user()?;
    let p = form_pairs(&body);
    let message = field(&p, "message").trim().to_owned();
    let retry_input = |error: String, status: StatusCode| ListInput {
        chat_message: message.clone(),
        chat_error: Some(error),
        status,
        ..ListInput::new(Filters::default())
    };
    if message.is_empty() {
        return render_tasks(&v, retry_input("Type a message first.".into(), StatusCode::UNPROCESSABLE_ENTITY), None)
            .await;
    }
    let path = format!("/api/{}/chat", user.id);
    let mut body = json!({ "message": message });
    if let Some(c) = &user.conversation {
        body["conversation_id"] = json!(c);
    }
    let mut reply = v.call(Method::POST, &path, Some(&body)).await?;
    if reply.status == StatusCode::NOT_FOUND && user.conversation.is_some() {
        // The conversation is gone (deleted elsewhere): start a new one.
        body.as_object_mut().map(|o| o.remove("conversation_id"));
        reply = v.call(Method::POST, &path, Some(&body)).await?;
    }
    if !reply.ok() {
        let why = match reply.status.as_u16() {
            404 | 405 => "The assistant is not available on this server.".to_owned(),
            422 => format!("The assistant could not take this message: {}", reply.detail()),
            429 => "Too many messages. Wait a little and try again.".to_owned(),
            _ => "The assistant did not answer. Try again in a moment.".to_owned(),
        };
        let status = if reply.status.is_server_error() { StatusCode::BAD_GATEWAY } else { reply.status };
        return render_tasks(&v, retry_input(why, status), None).await;
    }
    v.set_conversation(reply.body["conversation_id"].as_str().map(str::to_owned));
    let turn = json!({
        "message": message,
        "response": reply.body["response"],
        "tool_calls": reply.body["tool_calls"],
    });
    if v.flash("", None, Some(turn.clone())) {
        return Ok(see_other("/tasks#chat"));
    }
    // A large answer: show it on this page rather than through a cookie.
    render_tasks(&v, ListInput::new(Filters::default()), Some(turn)).await
}

pub async fn chat_new(Extension(v): V) -> PageResult {
    v.require_user()?;
    v.set_conversation(None);
    Ok(see_other("/tasks#chat"))
}

// ---- activity, status ----

pub async fn activity_page(Extension(v): V, RawQuery(q): RawQuery) -> PageResult {
    let user = v.require_user()?;
    let pairs = query_pairs(&q);
    let cursor = field(&pairs, "cursor");
    let mut query = vec![("limit", "50")];
    if !cursor.is_empty() {
        query.push(("cursor", cursor));
    }
    let path = format!("/api/{}/activity?{}", user.id, serde_urlencoded::to_string(&query).unwrap_or_default());
    let reply = v.call(Method::GET, &path, None).await?;
    if !reply.ok() {
        return Err(WebError::from_reply(&reply));
    }
    let events = reply.body["events"].as_array().cloned().unwrap_or_default();
    let next = reply.body["next_cursor"].as_str();
    Ok(views::activity(&v, &events, next, cursor.is_empty(), now_ms()).into_response())
}

/// Public: the state of the services matters most when logging in does not work.
pub async fn status_page(Extension(v): V) -> Response {
    let health = v.public_call(Method::GET, "/health", None).await.ok().map(|r| r.body).filter(|b| b.is_object());
    views::status(&v, health.as_ref()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed() {
        assert_eq!(local_path("/tasks?q=a", "/x"), "/tasks?q=a");
        for bad in ["https://evil.example", "//evil.example", "/\\evil", "", "javascript:alert(1)", "/a\nb"] {
            assert_eq!(local_path(bad, "/x"), "/x", "{bad:?}");
        }
        let p = |b: &str| vec![("back".to_owned(), b.to_owned())];
        assert_eq!(back_to_list(&p("/tasks?status=pending")), "/tasks?status=pending");
        assert_eq!(back_to_list(&p("/activity")), "/tasks");
        assert_eq!(back_to_list(&p("/tasksX")), "/tasks");
    }
}
