//! The hub's error type and its one mapping to HTTP status codes.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use common::ErrorKind;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database error while {context}: {source}")]
    Database { context: &'static str, source: sqlx::Error },
    #[error("database migration failed: {0}")]
    Migration(String),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Ingest(#[from] ingest::Error),
    #[error(transparent)]
    Inference(#[from] inference::Error),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    Conflict(String),
    #[error("the hub is shutting down")]
    ShuttingDown,
    #[error("not authenticated: {0}")]
    Unauthenticated(String),
    #[error("not allowed: {0}")]
    PermissionDenied(String),
    #[error("{message}")]
    TooManyRequests { message: String, retry_after_secs: u64 },
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    MethodNotAllowed(String),
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::InvalidArgument(_) | Error::Config(_) => ErrorKind::InvalidArgument,
            Error::Conflict(_) => ErrorKind::Conflict,
            // The database away or busy: the client may retry; nothing is wrong with it.
            Error::Database { .. }
                if crate::store::classify(self) == crate::store::Failure::Transient =>
            {
                ErrorKind::Unavailable
            }
            Error::Ingest(e) => e.kind(),
            Error::Inference(e) => e.kind(),
            Error::ShuttingDown => ErrorKind::Unavailable,
            Error::Unauthenticated(_) => ErrorKind::Unauthenticated,
            Error::PermissionDenied(_) => ErrorKind::PermissionDenied,
            Error::TooManyRequests { .. } => ErrorKind::TooManyRequests,
            Error::TooLarge(_) => ErrorKind::TooLarge,
            Error::UnsupportedMediaType(_) => ErrorKind::UnsupportedMediaType,
            Error::MethodNotAllowed(_) => ErrorKind::MethodNotAllowed,
            Error::Database { .. } | Error::Migration(_) | Error::Io { .. } => ErrorKind::Internal,
        }
    }
}

/// The one place an error kind becomes an HTTP status.
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::InvalidArgument => StatusCode::BAD_REQUEST,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::PermissionDenied => StatusCode::FORBIDDEN,
        ErrorKind::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = status_of(self.kind());
        // 4xx: the client's mistake, said to the client, not logged as an error.
        // 5xx: logged with detail, hidden from the client.
        let message = if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
            "internal error; see the hub's log".to_owned()
        } else {
            self.to_string()
        };
        let retry = match &self {
            Error::TooManyRequests { retry_after_secs, .. } => Some(*retry_after_secs),
            _ => None,
        };
        let body = ErrorBody { error: ErrorDetail { status: status.as_u16(), message } };
        let mut r = (status, axum::Json(body)).into_response();
        if let Some(secs) = retry {
            r.headers_mut().insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"hub\""),
            );
        }
        r
    }
}

/// The body of every error answer of the HTTP API (`Error` in the OpenAPI document).
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
#[schemars(rename = "Error")]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct ErrorDetail {
    /// The HTTP status, repeated.
    pub status: u16,
    /// What was wrong and, where it can be said, how to fix it (5xx: a pointer to the log).
    pub message: String,
}
