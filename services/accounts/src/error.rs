//! The one error type of the accounts service, and how each variant is answered (problem+json).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use flotilla_runtime::db::DbError;
use flotilla_runtime::{FieldError, Problem};

/// Message of every failed login, whether the email is unknown or the password wrong.
pub const INVALID_CREDENTIALS: &str = "invalid email or password";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 422: the listed fields are invalid.
    #[error("invalid input: {}", describe(.0))]
    Invalid(Vec<FieldError>),
    /// 409: another user has this email.
    #[error("a user with this email already exists")]
    EmailTaken,
    /// 401: unknown email or wrong password (one message for both).
    #[error("{INVALID_CREDENTIALS}")]
    InvalidCredentials,
    /// 403: correct password, but an administrator disabled the account.
    #[error("account is disabled")]
    AccountDisabled,
    /// 429: too many failed logins for this account or client.
    #[error("too many failed logins; retry later")]
    TooManyAttempts { retry_after: u64 },
    /// 401: unknown, expired, revoked or reused refresh token.
    #[error("invalid refresh token")]
    InvalidRefreshToken,
    /// 403: the `current_password` of a password change is wrong.
    #[error("current password is incorrect")]
    WrongCurrentPassword,
    /// 403: the caller is not an administrator.
    #[error("administrator role required")]
    AdminRequired,
    /// 401: the token is valid but its user no longer exists or is disabled.
    #[error("the signed-in user no longer exists")]
    UserGone,
    /// 404: no such user.
    #[error("no such user")]
    NotFound,
    /// 409: the change would leave no active administrator.
    #[error("the change would leave no active administrator")]
    LastAdmin,
    /// 500: password hashing failed or its worker thread died.
    #[error("password hashing failed: {0}")]
    Hashing(String),
    /// 500: a stored signing key cannot be decoded.
    #[error("signing key {kid} is corrupt: {reason}")]
    CorruptKey { kid: String, reason: String },
    #[error(transparent)]
    Db(#[from] DbError),
}

fn describe(errors: &[FieldError]) -> String {
    let parts: Vec<String> =
        errors.iter().map(|e| format!("{} {}", e.pointer.trim_start_matches("#/"), e.detail)).collect();
    parts.join("; ")
}

impl Error {
    /// 422 with a single field error.
    pub fn field(field: &str, detail: impl Into<String>) -> Self {
        Error::Invalid(vec![FieldError::new(field, detail)])
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Error::Db(DbError::Query(e))
    }
}

impl From<Error> for Problem {
    fn from(e: Error) -> Self {
        match e {
            Error::Invalid(errors) => Problem::invalid(errors),
            Error::EmailTaken | Error::LastAdmin => Problem::conflict(e.to_string()),
            Error::InvalidCredentials | Error::InvalidRefreshToken | Error::UserGone => {
                Problem::unauthorized(e.to_string())
            }
            Error::AccountDisabled | Error::WrongCurrentPassword | Error::AdminRequired => {
                Problem::forbidden(e.to_string())
            }
            Error::TooManyAttempts { retry_after } => {
                Problem::new(StatusCode::TOO_MANY_REQUESTS, e.to_string()).retry_after(retry_after)
            }
            Error::NotFound => Problem::not_found(e.to_string()),
            Error::Hashing(_) | Error::CorruptKey { .. } => {
                tracing::error!(error = %e, "accounts internal error");
                Problem::internal()
            }
            Error::Db(db) => db.into(),
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        Problem::from(self).into_response()
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
