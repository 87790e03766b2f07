//! The HTTP handlers: authenticate, parse, call [`Tasks`], shape the response.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use flotilla_events::{ReplayError, ReplayOutcome};
use flotilla_runtime::auth::{Auth, AuthContext, require_auth};
use flotilla_runtime::db::DbError;
use flotilla_runtime::time::format_ms;
use flotilla_runtime::{ApiJson, ApiPath, ApiQuery, FieldError, Problem};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::TaskError;
use crate::events::TasksHandler;
use crate::model::{Task, TaskJson};
use crate::query::parse_list_query;
use crate::service::Tasks;
use crate::store::Store;
use crate::validate::validate_replace;
use crate::validate::{CompleteInput, CreateInput, UpdateInput, apply_patch, validate_create, validate_patch};

pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

type Result<T, E = TaskError> = std::result::Result<T, E>;

/// The API routes, behind token verification.
pub fn router(store: Store, auth: &AuthContext) -> Router {
    Router::new()
        .route("/api/{user_id}/tasks", get(list).post(create))
        .route("/api/{user_id}/tasks/{id}", get(read).put(replace).patch(update).delete(remove))
        .route("/api/{user_id}/tasks/{id}/complete", patch(complete))
        .route("/api/admin/dead-letters/tasks", get(dead_letters))
        .route("/api/admin/dead-letters/tasks/{id}/replay", post(replay_dead_letter))
        .route_layer(axum::middleware::from_fn_with_state(auth.verifier.clone(), require_auth))
        .with_state(Tasks::new(store))
}

/// One page of tasks.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = TaskList)]
struct ListBody {
    tasks: Vec<TaskJson>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    #[schema(required)]
    next_cursor: Option<String>,
}

/// List tasks
///
/// Filters combine (all must hold); pages follow `next_cursor`.
#[utoipa::path(
    get,
    path = "/api/{user_id}/tasks",
    operation_id = "list_tasks",
    tag = "tasks",
    params(("user_id" = String, Path, description = "The signed-in user's id (another user's is 403)."), crate::query::ListParams),
    responses(
        (status = 200, description = "One page of tasks.", body = ListBody),
        (status = 401, description = "Missing, invalid, expired or revoked access token."),
        (status = 403, description = "The path user is not the signed-in user."),
        (status = 422, description = "Invalid, unknown or repeated query parameters, each listed in `errors`."),
    ),
    security(("bearer" = []))
)]
async fn list(
    State(tasks): State<Tasks>,
    auth: Auth,
    ApiPath(user_id): ApiPath<String>,
    ApiQuery(pairs): ApiQuery<Vec<(String, String)>>,
) -> Result<Response> {
    auth.require_user(&user_id)?;
    let q = parse_list_query(&pairs).map_err(TaskError::Invalid)?;
    let page = tasks.list(&user_id, &q).await?;
    let body = ListBody { tasks: page.tasks.iter().map(Task::to_json).collect(), next_cursor: page.next_cursor };
    Ok(axum::Json(body).into_response())
}

/// Create a task
///
/// With `Idempotency-Key`, repeating the same request answers the task created first (with
/// `Idempotent-Replayed: true`) instead of creating another.
#[utoipa::path(
    post,
    path = "/api/{user_id}/tasks",
    operation_id = "create_task",
    tag = "tasks",
    params(
        ("user_id" = String, Path, description = "The signed-in user's id (another user's is 403)."),
        ("Idempotency-Key" = Option<String>, Header, max_length = 255,
            description = "1 to 255 visible ASCII characters; makes a retried create safe."),
    ),
    request_body = CreateInput,
    responses(
        (status = 201, description = "Created (or, with a reused `Idempotency-Key`, the task created first).", body = TaskJson,
            headers(
                ("Location" = String, description = "The task's URL."),
                ("ETag" = String, description = "The task's version, e.g. `\"3\"`."),
                ("Idempotent-Replayed" = String, description = "`true` when this answers an earlier request with the same key."),
            )),
        (status = 400, description = "The body is not valid JSON."),
        (status = 401, description = "Missing, invalid, expired or revoked access token."),
        (status = 403, description = "The path user is not the signed-in user."),
        (status = 409, description = "The task created with this `Idempotency-Key` has since been deleted."),
        (status = 413, description = "The body is too large."),
        (status = 415, description = "The body is not `application/json`."),
        (status = 422, description = "Invalid fields (each listed in `errors`), a malformed `Idempotency-Key`, or one already used with another body."),
    ),
    security(("bearer" = []))
)]
async fn create(
    State(tasks): State<Tasks>,
    auth: Auth,
    ApiPath(user_id): ApiPath<String>,
    req: Request,
) -> Result<Response> {
    auth.require_user(&user_id)?;
    let key = req.headers().get(IDEMPOTENCY_KEY).map(|v| v.as_bytes().to_vec());
    let (input, raw): (CreateInput, Bytes) = read_json(req).await?;
    let idem = key.map(|k| Tasks::idempotency_key(&k, &raw)).transpose()?;
    let content = validate_create(input).map_err(TaskError::Invalid)?;
    let created = tasks.create(&user_id, content, idem.as_ref()).await?;
    let mut res = task_response(StatusCode::CREATED, &created.task);
    let location = format!("/api/{user_id}/tasks/{}", created.task.id);
    if let Ok(v) = HeaderValue::from_str(&location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    if created.replayed {
        res.headers_mut().insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
    Ok(res)
}

/// Read a task
#[utoipa::path(
    get,
    path = "/api/{user_id}/tasks/{id}",
    operation_id = "get_task",
    tag = "tasks",
    params(("user_id" = String, Path, description = "The signed-in user's id (another user's is 403)."), ("id" = String, Path, description = "The task's id (another user's task is 404).")),
    responses(
        (status = 200, description = "The task.", body = TaskJson, headers(("ETag" = String, description = "The task's version, e.g. `\"3\"`."))),
        (status = 401, description = "Missing, invalid, expired or revoked access token."),
        (status = 403, description = "The path user is not the signed-in user."),
        (status = 404, description = "No such task."),
    ),
    security(("bearer" = []))
)]
async fn read(
    State(tasks): State<Tasks>,
    auth: Auth,
    ApiPath((user_id, id)): ApiPath<(String, String)>,
) -> Result<Response> {
    auth.require_user(&user_id)?;
    Ok(task_response(StatusCode::OK, &tasks.get(&user_id, &id).await?))
}

/// Replace a task
///
/// Sets every field: `title` is required, absent fields take their defaults.
#[utoipa::path(
    put,
    path = "/api/{user_id}/tasks/{id}",
    operation_id = "replace_task",
    tag = "tasks",
    params(("user_id" = String, Path, description = "The signed-in user's id (another user's is 403)."), ("id" = String, Path, description = "The task's id (another user's task is 404)."), ("If-Match" = Option<String>, Header, description = "Write only if the task is still at this `ETag` (`\"3\"`, `W/\"3\"`, a list, or `*`); otherwise 412.")),
    request_body = UpdateInput,
    responses(
        (status = 200, description = "The task as stored.", body = TaskJson, headers(("ETag" = String, description = "The task's version, e.g. `\"3\"`."))),
        (status = 400, description = "The body is not valid JSON."),
        (status = 401, description = "Missing, invalid, expired or revoked access token."),
        (status = 403, description = "The path user is not the signed-in user."),
        (status = 404, description = "No such task."),
        (status = 409, description = "Too many concurrent changes of the task; retry."),
        (status = 412, description = "`If-Match` does not match the task's version; the current one is in `ETag`.",
            headers(("ETag" = String, description = "The current version."))),
        (status = 413, description = "The body is too large."),
        (status = 415, description = "The body is not `application/json`."),
        (status = 422, description = "Invalid fields, each listed in `errors`."),
    ),
    security(("bearer" = []))
)]
async fn replace(
    State(tasks): State<Tasks>,
    auth: Auth,
    ApiPath((user_id, id)): ApiPath<(String, String)>,
    req: Request,
) -> Result<Response> {
    auth.require_user(&user_id)?;
    let headers = req.headers().clone();
    let (input, _): (UpdateInput, Bytes) = read_json(req).await?;
    let (content, completed) = validate_replace(input).map_err(TaskError::Invalid)?;
    let task = tasks
        .modify(&user_id, &id, if_match(&headers).as_deref(), |current, now| {
            let mut next = current.clone();
            next.set_content(content.clone());
            next.set_completed(completed, now);
            Ok(next)
        })
        .await?;
    Ok(task_response(StatusCode::OK, &task))
}

/// Change some fields of a task
///
/// Only the fields sent change; `null` clears an optional field.
#[utoipa::path(
    patch,
    path = "/api/{user_id}/tasks/{id}",
    operation_id = "update_task",
    tag = "tasks",
    params(("user_id" = String, Path, description = "The signed-in user's id (another user's is 403)."), ("id" = String, Path, description = "The task's id (another user's task is 404)."), ("If-Match" = Option<String>, Header, description = "Write only if the task is still at this `ETag` (`\"3\"`, `W/\"3\"`, a list, or `*`); otherwise 412.")),
    request_body = UpdateInput,
    responses(
        (status = 200, description = "The task as stored.", body = TaskJson, headers(("ETag" = String, description = "The task's version, e.g. `\"3\"`."))),
        (status = 400, description = "The body is not valid JSON."),
        (status = 401, description = "Missing, invalid, expired or revoked access token."),
        (status = 403, description = "The path user is not the signed-in user."),
        (status = 404, description = "No such task."),
        (status = 409, description = "Too many concurrent changes of the task; retry."),
        (status = 412, description = "`If-Match` does not match the task's version; the current one is in `ETag`.",
            headers(("ETag" = String, description = "The current version."))),
        (status = 413, description = "The body is too large."),
        (status = 415, description = "The body is not `application/json`."),
        (status = 422, description = "Invalid fields, each listed in `errors`."),
    ),
    security(("bearer" = []))
)]
async fn update(
    State(tasks): State<Tasks>,
    auth: Auth,
    ApiPath((user_id, id)): ApiPath<(String, String)>,
    req: Request,
) -> Result<Response> {
    auth.require_user(&user_id)?;
    let headers = req.headers().clone();
    let (input, _): (UpdateInput, Bytes) = read_json(req).await?;
    let patch = validate_patch(input).map_err(TaskError::Invalid)?;
    let task = tasks
        .modify(&user_id, &id, if_match(&headers).as_deref(), |current, now| apply_patch(current, &patch, now))
        .await?;
    Ok(task_response(StatusCode::OK, &task))
}

/// Delete a task
#[utoipa::path(
    delete,
    path = "/api/{user_id}/tasks/{id}",
    operation_id = "delete_task",
    tag = "tasks",
    params(("user_id" = String, Path, description = "The signed-in user's id (another user's is 403)."), ("id" = String, Path, description = "The task's id (another user's task is 404)."), ("If-Match" = Option<String>, Header, description = "Write only if the task is still at this `ETag` (`\"3\"`, `W/\"3\"`, a list, or `*`); otherwise 412.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 401, description = "Missing, invalid, expired or revoked access token."),
        (status = 403, description = "The path user is not the signed-in user."),
        (status = 404, description = "No such task."),
        (status = 409, description = "Too many concurrent changes of the task; retry."),
        (status = 412, description = "`If-Match` does not match the task's version; the current one is in `ETag`.",
            headers(("ETag" = String, description = "The current version."))),
    ),
    security(("bearer" = []))
)]
async fn remove(
    State(tasks): State<Tasks>,
    auth: Auth,
    ApiPath((user_id, id)): ApiPath<(String, String)>,
    headers: HeaderMap,
) -> Result<Response> {
    auth.require_user(&user_id)?;
    tasks.delete(&user_id, &id, if_match(&headers).as_deref()).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Complete or reopen a task
///
/// Without a body, toggles; with `{"completed": bool}`, sets.
#[utoipa::path(
    patch,
    path = "/api/{user_id}/tasks/{id}/complete",
    operation_id = "complete_task",
    tag = "tasks",
    params(("user_id" = String, Path, description = "The signed-in user's id (another user's is 403)."), ("id" = String, Path, description = "The task's id (another user's task is 404)."), ("If-Match" = Option<String>, Header, description = "Write only if the task is still at this `ETag` (`\"3\"`, `W/\"3\"`, a list, or `*`); otherwise 412.")),
    request_body(content = Option<CompleteInput>, description = "Optional: absent toggles."),
    responses(
        (status = 200, description = "The task as stored.", body = TaskJson, headers(("ETag" = String, description = "The task's version, e.g. `\"3\"`."))),
        (status = 400, description = "The body is not valid JSON."),
        (status = 401, description = "Missing, invalid, expired or revoked access token."),
        (status = 403, description = "The path user is not the signed-in user."),
        (status = 404, description = "No such task."),
        (status = 409, description = "Too many concurrent changes of the task; retry."),
        (status = 412, description = "`If-Match` does not match the task's version; the current one is in `ETag`.",
            headers(("ETag" = String, description = "The current version."))),
        (status = 413, description = "The body is too large."),
        (status = 415, description = "The body is not `application/json`."),
        (status = 422, description = "Invalid fields, each listed in `errors`."),
    ),
    security(("bearer" = []))
)]
async fn complete(
    State(tasks): State<Tasks>,
    auth: Auth,
    ApiPath((user_id, id)): ApiPath<(String, String)>,
    req: Request,
) -> Result<Response> {
    auth.require_user(&user_id)?;
    let if_match = if_match(req.headers());
    let (parts, body) = req.into_parts();
    let raw = read_bytes(Request::from_parts(parts.clone(), body)).await?;
    let wanted = if raw.trim_ascii().is_empty() {
        None
    } else {
        let ApiJson(CompleteInput { completed }) =
            ApiJson::<CompleteInput>::from_request(Request::from_parts(parts, Body::from(raw)), &()).await?;
        Some(completed)
    };
    let task = tasks
        .modify(&user_id, &id, if_match.as_deref(), |current, now| {
            let mut next = current.clone();
            next.set_completed(wanted.unwrap_or(!current.completed), now);
            Ok(next)
        })
        .await?;
    Ok(task_response(StatusCode::OK, &task))
}

/// The query parameters of the dead-letter listing, as the API document shows them.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // a description, never built
struct DeadLetterParams {
    /// How many dead letters, newest first.
    #[param(minimum = 1, maximum = 1000, default = 100)]
    limit: Option<i64>,
}

/// An event the tasks consumer could not process.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = TaskDeadLetter)]
struct DeadLetterJson {
    /// The dead letter's id (for replay).
    id: String,
    /// Always `tasks`.
    consumer: String,
    event_id: String,
    #[serde(rename = "type")]
    #[schema(rename = "type")]
    event_type: String,
    /// The full event envelope (CloudEvents JSON).
    #[schema(value_type = Object)]
    event: serde_json::Value,
    /// The last error.
    error: String,
    /// Handler attempts so far.
    attempts: i64,
    #[schema(format = DateTime)]
    created_at: String,
    /// When a replay processed it; `null` while it is still pending.
    #[schema(format = DateTime, required)]
    replayed_at: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = TaskDeadLetters)]
struct DeadLettersBody {
    /// Newest first.
    dead_letters: Vec<DeadLetterJson>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = TaskReplayOutcome)]
#[serde(rename_all = "snake_case")]
enum ReplayResult {
    /// The event is processed now.
    Processed,
    /// It had been processed before (an earlier replay or a redelivery): nothing changed.
    AlreadyProcessed,
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = TaskReplay)]
struct ReplayBody {
    id: String,
    outcome: ReplayResult,
}

/// List the tasks consumer's dead letters
///
/// Events the tasks consumer (recurrence, user deletion) failed to process after its retries,
/// newest first, including the ones replayed since (`replayed_at` set). Administrators only.
#[utoipa::path(
    get,
    path = "/api/admin/dead-letters/tasks",
    operation_id = "list_task_dead_letters",
    tag = "admin",
    params(DeadLetterParams),
    responses(
        (status = 200, description = "The dead letters.", body = DeadLettersBody),
        (status = 401, description = "Missing, invalid, expired or revoked access token."),
        (status = 403, description = "The caller is not an administrator."),
        (status = 422, description = "Invalid or unknown query parameters, each listed in `errors`."),
    ),
    security(("bearer" = []))
)]
async fn dead_letters(
    State(tasks): State<Tasks>,
    auth: Auth,
    ApiQuery(pairs): ApiQuery<Vec<(String, String)>>,
) -> Result<Response> {
    auth.require_admin()?;
    let mut limit = 100;
    for (k, v) in &pairs {
        match (k.as_str(), v.parse::<i64>()) {
            ("limit", Ok(n)) if (1..=1000).contains(&n) => limit = n,
            ("limit", _) => {
                return Err(TaskError::Invalid(vec![FieldError::new(
                    "limit",
                    "must be a whole number from 1 to 1000",
                )]));
            }
            _ => return Err(TaskError::Invalid(vec![FieldError::new(k, "is not a known parameter")])),
        }
    }
    let letters = flotilla_events::list_dead_letters(tasks.store().db(), limit).await.map_err(DbError::Query)?;
    let dead_letters = letters
        .into_iter()
        .filter(|l| l.consumer == crate::events::CONSUMER)
        .map(|l| DeadLetterJson {
            event: serde_json::from_str::<serde_json::Value>(&l.payload).unwrap_or_else(|_| l.payload.clone().into()),
            id: l.id,
            consumer: l.consumer,
            event_id: l.event_id,
            event_type: l.event_type,
            error: l.error,
            attempts: l.attempts,
            created_at: format_ms(l.created_at),
            replayed_at: l.replayed_at.map(format_ms),
        })
        .collect();
    Ok(axum::Json(DeadLettersBody { dead_letters }).into_response())
}

/// Replay a tasks dead letter
///
/// Runs the tasks consumer once more on the event, through its inbox: an event that was
/// processed meanwhile is not processed twice. Administrators only.
#[utoipa::path(
    post,
    path = "/api/admin/dead-letters/tasks/{id}/replay",
    operation_id = "replay_task_dead_letter",
    tag = "admin",
    params(("id" = String, Path, description = "The dead letter's id.")),
    responses(
        (status = 200, description = "Replayed (or processed already).", body = ReplayBody),
        (status = 401, description = "Missing, invalid, expired or revoked access token."),
        (status = 403, description = "The caller is not an administrator."),
        (status = 404, description = "No such dead letter."),
        (status = 409, description = "The handler failed again; the dead letter is kept with the new error."),
        (status = 422, description = "The dead letter's payload is not an event; it cannot be replayed."),
    ),
    security(("bearer" = []))
)]
async fn replay_dead_letter(State(tasks): State<Tasks>, auth: Auth, ApiPath(id): ApiPath<String>) -> Result<Response> {
    auth.require_admin()?;
    let handler = TasksHandler::new(tasks.store().notifier().clone());
    let outcome = match flotilla_events::replay_dead_letter(tasks.store().db(), &handler, &id).await {
        Ok(ReplayOutcome::Processed) => ReplayResult::Processed,
        Ok(ReplayOutcome::AlreadyProcessed) => ReplayResult::AlreadyProcessed,
        Err(ReplayError::NotFound(_)) => return Err(Problem::not_found("no such dead letter").into()),
        Err(e @ ReplayError::InvalidPayload(_)) => {
            return Err(Problem::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()).into());
        }
        Err(e @ ReplayError::Handler(_)) => return Err(Problem::conflict(e.to_string()).into()),
        Err(ReplayError::Db(e)) => return Err(DbError::Query(e).into()),
    };
    Ok(axum::Json(ReplayBody { id, outcome }).into_response())
}

/// The task as JSON with its `ETag`.
fn task_response(status: StatusCode, task: &Task) -> Response {
    let mut res = (status, axum::Json(task.to_json())).into_response();
    if let Ok(v) = HeaderValue::from_str(&task.etag()) {
        res.headers_mut().insert(header::ETAG, v);
    }
    res
}

/// The `If-Match` header; a value that is not text never matches (it becomes "").
fn if_match(headers: &HeaderMap) -> Option<String> {
    headers.get(header::IF_MATCH).map(|v| v.to_str().unwrap_or_default().to_owned())
}

/// The raw body within the service's body limit (413 beyond it).
async fn read_bytes(req: Request) -> Result<Bytes, Problem> {
    Bytes::from_request(req, &()).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "request body is too large")
        } else {
            Problem::bad_request("the request body could not be read")
        }
    })
}

/// A JSON body with the usual problem+json rejections, plus its raw bytes.
async fn read_json<T: DeserializeOwned>(req: Request) -> Result<(T, Bytes), Problem> {
    let (parts, body) = req.into_parts();
    let raw = read_bytes(Request::from_parts(parts.clone(), body)).await?;
    let ApiJson(v) = ApiJson::<T>::from_request(Request::from_parts(parts, Body::from(raw.clone())), &()).await?;
    Ok((v, raw))
}
