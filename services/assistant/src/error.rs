//! The one error type of the assistant and its problem+json mapping.

use axum::response::{IntoResponse, Response};
use flotilla_runtime::db::DbError;
use flotilla_runtime::{FieldError, Problem};

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("invalid request: {0:?}")]
    Invalid(Vec<FieldError>),
    /// Missing, another user's, or not an id at all: the same answer, so nothing leaks.
    #[error("no such conversation")]
    NotFound,
    #[error(transparent)]
    Db(#[from] DbError),
    /// A turn's task ended without an answer (it panicked); the user's message is stored.
    #[error("the turn failed: {0}")]
    Turn(String),
    /// A rejection already shaped as a problem (auth, body, query and path extractors).
    #[error("{}", .0.detail)]
    Request(Problem),
}

impl From<ChatError> for Problem {
    fn from(e: ChatError) -> Self {
        match e {
            ChatError::Invalid(errors) => Problem::invalid(errors),
            ChatError::NotFound => Problem::not_found("no such conversation"),
            ChatError::Db(e) => e.into(),
            ChatError::Turn(why) => {
                tracing::error!(error = %why, "chat turn failed");
                Problem::internal()
            }
            ChatError::Request(p) => p,
        }
    }
}

impl IntoResponse for ChatError {
    fn into_response(self) -> Response {
        Problem::from(self).into_response()
    }
}

impl From<Problem> for ChatError {
    fn from(p: Problem) -> Self {
        ChatError::Request(p)
    }
}
