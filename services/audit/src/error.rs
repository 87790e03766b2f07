//! The one error type of the audit service and its problem+json mapping.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use flotilla_runtime::db::DbError;
use flotilla_runtime::{FieldError, Problem};

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("invalid request: {0:?}")]
    Invalid(Vec<FieldError>),
    #[error("no such dead letter")]
    DeadLetterNotFound,
    /// The dead letter's stored payload is not an event: replaying cannot help.
    #[error("the dead letter cannot be replayed: {0}")]
    Unreplayable(String),
    /// The handler failed again; the dead letter stays with the new error.
    #[error("replay failed, the dead letter is kept with the new error: {0}")]
    ReplayFailed(String),
    #[error(transparent)]
    Db(#[from] DbError),
    /// A rejection already shaped as a problem (auth, query and path extractors).
    #[error("{}", .0.detail)]
    Request(Problem),
}

impl From<AuditError> for Problem {
    fn from(e: AuditError) -> Self {
        match e {
            AuditError::Invalid(errors) => Problem::invalid(errors),
            e @ AuditError::DeadLetterNotFound => Problem::not_found(e.to_string()),
            e @ AuditError::Unreplayable(_) => Problem::conflict(e.to_string()),
            e @ AuditError::ReplayFailed(_) => Problem::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            AuditError::Db(e) => e.into(),
            AuditError::Request(p) => p,
        }
    }
}

impl From<sqlx::Error> for AuditError {
    fn from(e: sqlx::Error) -> Self {
        AuditError::Db(DbError::Query(e))
    }
}

impl From<Problem> for AuditError {
    fn from(p: Problem) -> Self {
        AuditError::Request(p)
    }
}

impl IntoResponse for AuditError {
    fn into_response(self) -> Response {
        Problem::from(self).into_response()
    }
}
