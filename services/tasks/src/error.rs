//! The one error type of the tasks service and its problem+json mapping.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use flotilla_runtime::db::DbError;
use flotilla_runtime::{FieldError, Problem};

use crate::model::etag;

#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("invalid request: {0:?}")]
    Invalid(Vec<FieldError>),
    /// Missing, another user's, or not an id at all: the same answer, so nothing leaks.
    #[error("no such task")]
    NotFound,
    #[error("the task has changed since that version was read (it is now at version {current})")]
    PreconditionFailed { current: i64 },
    #[error("Idempotency-Key must be 1 to 255 visible ASCII characters")]
    BadIdempotencyKey,
    #[error("Idempotency-Key was already used with a different request")]
    IdempotencyKeyReused,
    #[error("the task created with this Idempotency-Key has since been deleted")]
    IdempotentTaskGone,
    #[error("the task is being changed by many requests at once; retry")]
    Contended,
    #[error(transparent)]
    Db(#[from] DbError),
    /// A rejection already shaped as a problem (body, query and path extractors).
    #[error("{}", .0.detail)]
    Request(Problem),
}

impl From<TaskError> for Problem {
    fn from(e: TaskError) -> Self {
        match e {
            TaskError::Invalid(errors) => Problem::invalid(errors),
            TaskError::NotFound => Problem::not_found("no such task"),
            e @ TaskError::PreconditionFailed { .. } => Problem::new(StatusCode::PRECONDITION_FAILED, e.to_string()),
            e @ (TaskError::BadIdempotencyKey | TaskError::IdempotencyKeyReused) => {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
            }
            e @ (TaskError::IdempotentTaskGone | TaskError::Contended) => Problem::conflict(e.to_string()),
            TaskError::Db(e) => e.into(),
            TaskError::Request(p) => p,
        }
    }
}

impl IntoResponse for TaskError {
    fn into_response(self) -> Response {
        // A 412 tells the client which version is current, so it can re-read and retry.
        let current = match &self {
            TaskError::PreconditionFailed { current } => Some(*current),
            _ => None,
        };
        let mut res = Problem::from(self).into_response();
        if let Some(v) = current.and_then(|v| HeaderValue::from_str(&etag(v)).ok()) {
            res.headers_mut().insert(header::ETAG, v);
        }
        res
    }
}

impl From<Problem> for TaskError {
    fn from(p: Problem) -> Self {
        TaskError::Request(p)
    }
}
