//! The HTTP handlers: authenticate, authorize, parse, query, shape the response.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use flotilla_events::consumer::get_dead_letter;
use flotilla_events::{DeadLetter, Handler, ReplayError, ReplayOutcome, list_dead_letters, replay_dead_letter};
use flotilla_runtime::auth::{Auth, AuthContext, require_auth};
use flotilla_runtime::time::format_ms;
use flotilla_runtime::{ApiPath, ApiQuery};
use serde::Serialize;
use serde_json::Value;

use crate::CONSUMER;
use crate::error::AuditError;
use crate::query::{parse_activity_query, parse_audit_query, parse_dead_letter_query};
use crate::store::{ActivityJson, AuditJson, Record, Store};

type Result<T, E = AuditError> = std::result::Result<T, E>;

#[derive(Clone)]
struct AppState {
    store: Store,
    /// Runs replayed dead letters (the audit handler).
    handler: Arc<dyn Handler>,
}

/// The API routes, behind token verification.
pub fn router(store: Store, handler: Arc<dyn Handler>, auth: &AuthContext) -> Router {
    Router::new()
        .route("/api/{user_id}/activity", get(activity))
        .route("/api/admin/audit", get(audit))
        .route("/api/admin/dead-letters/audit", get(dead_letters))
        .route("/api/admin/dead-letters/audit/{id}/replay", post(replay))
        .route_layer(axum::middleware::from_fn_with_state(auth.verifier.clone(), require_auth))
        .with_state(AppState { store, handler })
}

/// One page of a user's activity.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = ActivityPage)]
struct ActivityBody {
    events: Vec<ActivityJson>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    #[schema(required)]
    next_cursor: Option<String>,
}

/// One page of the audit log.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = AuditPage)]
struct AuditBody {
    events: Vec<AuditJson>,
    /// Pass as `cursor` for the next page (with the same filters); `null` on the last page.
    #[schema(required)]
    next_cursor: Option<String>,
}

/// An event the audit consumer could not record.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = AuditDeadLetter)]
struct DeadLetterJson {
    /// The dead letter's id (for replay).
    id: String,
    event_id: String,
    #[serde(rename = "type")]
    #[schema(rename = "type")]
    event_type: String,
    /// The last error.
    error: String,
    /// Handler attempts so far.
    attempts: i64,
    #[schema(format = DateTime)]
    created_at: String,
    /// When a replay recorded it; `null` while it is still pending.
    #[schema(format = DateTime, required)]
    replayed_at: Option<String>,
    /// The full event envelope (CloudEvents JSON).
    #[schema(value_type = Object)]
    event: Value,
}

impl DeadLetterJson {
    fn of(d: DeadLetter) -> Self {
        let event = serde_json::from_str(&d.payload).unwrap_or(Value::String(d.payload));
        Self {
            id: d.id,
            event_id: d.event_id,
            event_type: d.event_type,
            error: d.error,
            attempts: d.attempts,
            created_at: format_ms(d.created_at),
            replayed_at: d.replayed_at.map(format_ms),
            event,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = AuditDeadLetters)]
struct DeadLettersBody {
    /// Newest first.
    dead_letters: Vec<DeadLetterJson>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
enum ReplayResult {
    /// The event is recorded now.
    Processed,
    /// It had been recorded before (an earlier replay or a redelivery): nothing changed.
    AlreadyProcessed,
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = AuditReplay)]
struct ReplayBody {
    id: String,
    event_id: String,
    outcome: ReplayResult,
}

/// The signed-in user's activity
///
/// The events concerning the user, newest first; pages follow `next_cursor`.
#[utoipa::path(
    get,
    path = "/api/{user_id}/activity",
    operation_id = "list_activity",
    tag = "audit",
    params(("user_id" = String, Path, description = "The signed-in user's id (another user's is 403)."), crate::query::ActivityParams),
    responses(
        (status = 200, description = "One page of events.", body = ActivityBody),
        (status = 401, description = "Missing, invalid, expired or revoked access token."),
        (status = 403, description = "The path user is not the signed-in user."),
        (status = 422, description = "Invalid, unknown or repeated query parameters (or a cursor not from this API), each listed in `errors`."),
    ),
    security(("bearer" = []))
)]
async fn activity(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(user_id): ApiPath<String>,
    ApiQuery(pairs): ApiQuery<Vec<(String, String)>>,
) -> Result<axum::Json<ActivityBody>> {
    auth.require_user(&user_id)?;
    let filter = parse_activity_query(&user_id, &pairs).map_err(AuditError::Invalid)?;
    let page = state.store.list(&filter).await?;
    Ok(axum::Json(ActivityBody {
        events: page.records.iter().map(Record::to_activity_json).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Search the audit log
///
/// Every event of every user, newest first; the filters combine. Administrators only.
#[utoipa::path(
    get,
    path = "/api/admin/audit",
    operation_id = "search_audit_log",
    tag = "audit",
    params(crate::query::AuditParams),
    responses(
        (status = 200, description = "One page of events.", body = AuditBody),
        (status = 401, description = "Missing, invalid, expired or revoked access token."),
        (status = 403, description = "The caller is not an administrator."),
        (status = 422, description = "Invalid, unknown or repeated query parameters (or a cursor not from this API), each listed in `errors`."),
    ),
    security(("bearer" = []))
)]
async fn audit(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(pairs): ApiQuery<Vec<(String, String)>>,
) -> Result<axum::Json<AuditBody>> {
    auth.require_admin()?;
    let filter = parse_audit_query(&pairs).map_err(AuditError::Invalid)?;
    let page = state.store.list(&filter).await?;
    Ok(axum::Json(AuditBody {
        events: page.records.iter().map(Record::to_audit_json).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// List the audit consumer's dead letters
///
/// Events the audit consumer failed to record after its retries, newest first, including the
/// ones replayed since (`replayed_at` set). Administrators only.
#[utoipa::path(
    get,
    path = "/api/admin/dead-letters/audit",
    operation_id = "list_audit_dead_letters",
    tag = "audit",
    params(crate::query::DeadLetterParams),
    responses(
        (status = 200, description = "The dead letters.", body = DeadLettersBody),
        (status = 401, description = "Missing, invalid, expired or revoked access token."),
        (status = 403, description = "The caller is not an administrator."),
        (status = 422, description = "Invalid or unknown query parameters, each listed in `errors`."),
    ),
    security(("bearer" = []))
)]
async fn dead_letters(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(pairs): ApiQuery<Vec<(String, String)>>,
) -> Result<axum::Json<DeadLettersBody>> {
    auth.require_admin()?;
    let limit = parse_dead_letter_query(&pairs).map_err(AuditError::Invalid)?;
    let letters = list_dead_letters(state.store.db(), limit).await?;
    Ok(axum::Json(DeadLettersBody {
        dead_letters: letters.into_iter().filter(|d| d.consumer == CONSUMER).map(DeadLetterJson::of).collect(),
    }))
}

/// Replay a dead letter
///
/// Runs the audit handler on the event once more, through the consumer's inbox: an event that
/// was recorded meanwhile is not recorded twice. Administrators only.
#[utoipa::path(
    post,
    path = "/api/admin/dead-letters/audit/{id}/replay",
    operation_id = "replay_audit_dead_letter",
    tag = "audit",
    params(("id" = String, Path, description = "The dead letter's id.")),
    responses(
        (status = 200, description = "Replayed (or recorded already).", body = ReplayBody),
        (status = 401, description = "Missing, invalid, expired or revoked access token."),
        (status = 403, description = "The caller is not an administrator."),
        (status = 404, description = "No such dead letter."),
        (status = 409, description = "The dead letter's payload is not an event; it cannot be replayed."),
        (status = 500, description = "The handler failed again; the dead letter is kept with the new error."),
    ),
    security(("bearer" = []))
)]
async fn replay(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(id): ApiPath<String>,
) -> Result<axum::Json<ReplayBody>> {
    auth.require_admin()?;
    if !flotilla_runtime::ids::is_id(&id) {
        return Err(AuditError::DeadLetterNotFound);
    }
    let db = state.store.db();
    let letter = get_dead_letter(db, &id).await?.filter(|d| d.consumer == CONSUMER);
    let Some(letter) = letter else { return Err(AuditError::DeadLetterNotFound) };
    let outcome = match replay_dead_letter(db, state.handler.as_ref(), &id).await {
        Ok(ReplayOutcome::Processed) => ReplayResult::Processed,
        Ok(ReplayOutcome::AlreadyProcessed) => ReplayResult::AlreadyProcessed,
        Err(ReplayError::NotFound(_)) => return Err(AuditError::DeadLetterNotFound),
        Err(ReplayError::InvalidPayload(e)) => return Err(AuditError::Unreplayable(e)),
        Err(ReplayError::Handler(e)) => return Err(AuditError::ReplayFailed(e.to_string())),
        Err(ReplayError::Db(e)) => return Err(e.into()),
    };
    tracing::info!(dead_letter = %id, event_id = %letter.event_id, r#type = %letter.event_type, "audit dead letter replayed");
    Ok(axum::Json(ReplayBody { id, event_id: letter.event_id, outcome }))
}
