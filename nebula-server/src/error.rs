//! The one mapping from failures to HTTP status codes; every error body is `{"detail": …}`.

use std::time::Duration;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use nebula_core::auth::AuthError;
use nebula_core::manager::{CallFailure, Method};
use nebula_core::{ManagerError, StorageError};
use nebula_plugin_api::{ErrorKind, PluginError};
use serde_json::json;

/// An error answered to an HTTP client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No valid credentials (403, also for routes that do not exist under `/system/`).
    #[error("Forbidden")]
    Forbidden,
    /// A cookie-authenticated request refused by the browser-safety rule (403, SPEC §11: a
    /// state change must be JSON and come from the server's own origin); the text says why.
    #[error("{0}")]
    CrossSite(String),
    /// Login failed (401).
    #[error("{0}")]
    Unauthorized(String),
    /// Unknown plugin or route (404).
    #[error("{0}")]
    NotFound(String),
    /// The body was not received in time (408).
    #[error("{0}")]
    RequestTimeout(String),
    /// The body is over `server.max_body_bytes` (413).
    #[error("{0}")]
    PayloadTooLarge(String),
    /// Invalid body, query or path (422); the text names the field.
    #[error("{0}")]
    Invalid(String),
    /// Plugin disabled, or a real sync already running (409).
    #[error("{0}")]
    Conflict(String),
    /// Too many failed logins or token attempts (429 with `Retry-After`).
    #[error("{message}")]
    RateLimited {
        /// The detail.
        message: String,
        /// For the `Retry-After` header.
        retry_after: Duration,
    },
    /// The plugin failed or panicked (500).
    #[error("{0}")]
    PluginFailed(String),
    /// A remote plugin is unreachable or answered an error (502).
    #[error("{0}")]
    BadGateway(String),
    /// Not available now: plugin not loaded, database unreachable (503).
    #[error("{0}")]
    Unavailable(String),
    /// A plugin call timed out (504).
    #[error("{0}")]
    Timeout(String),
    /// A bug or an unexpected failure of the server itself (500).
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// The `{"detail": …}` response for any status. Control characters in the detail are
    /// escaped: it often quotes the caller's input.
    pub fn detail_response(status: StatusCode, detail: &str) -> HttpResponse {
        let detail = nebula_plugin_api::escape_control(detail);
        HttpResponse::build(status).json(json!({ "detail": detail }))
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Forbidden | ApiError::CrossSite(_) => StatusCode::FORBIDDEN,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::PluginFailed(_) | ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = ApiError::detail_response(self.status_code(), &self.to_string());
        if let ApiError::RateLimited { retry_after, .. } = self {
            let secs = retry_after.as_secs().max(1).to_string();
            if let Ok(value) = HeaderValue::from_str(&secs) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        response
    }
}

impl From<ManagerError> for ApiError {
    fn from(e: ManagerError) -> Self {
        let text = e.to_string();
        match e {
            ManagerError::NotFound(_) => ApiError::NotFound(text),
            ManagerError::Disabled(_) | ManagerError::SyncInProgress(_) => ApiError::Conflict(text),
            ManagerError::NotReady { .. } => ApiError::Unavailable(text),
            ManagerError::Call {
                failure, method, ..
            } => match failure {
                CallFailure::TimedOut(_) => ApiError::Timeout(text),
                CallFailure::Panicked(_) => ApiError::PluginFailed(text),
                // Only a sync has caller input; any other method's "invalid input" is the
                // plugin's own failure.
                CallFailure::Error(source) => match source.kind() {
                    ErrorKind::InvalidInput if method == Method::SyncUsers => {
                        ApiError::Invalid(text)
                    }
                    ErrorKind::Unavailable => ApiError::BadGateway(text),
                    ErrorKind::Timeout => ApiError::Timeout(text),
                    _ => ApiError::PluginFailed(text),
                },
            },
            ManagerError::Storage(s) => s.into(),
        }
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::NotFound(m) => ApiError::NotFound(m),
            other => {
                tracing::error!(error = %other, "storage failure");
                ApiError::Unavailable(other.to_string())
            }
        }
    }
}

impl From<PluginError> for ApiError {
    /// Validation errors of request bodies (they come from the plugin API's parsers).
    fn from(e: PluginError) -> Self {
        match e.kind() {
            ErrorKind::InvalidInput => ApiError::Invalid(e.to_string()),
            ErrorKind::NotFound => ApiError::NotFound(e.to_string()),
            _ => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::InvalidCredentials => ApiError::Unauthorized(e.to_string()),
            AuthError::RateLimited { retry_after }
            | AuthError::TooManyTokenAttempts { retry_after } => ApiError::RateLimited {
                message: e.to_string(),
                retry_after,
            },
            AuthError::InvalidSession | AuthError::InvalidToken => ApiError::Forbidden,
            AuthError::Storage(s) => s.into(),
            AuthError::Hashing(m) => ApiError::Internal(m),
        }
    }
}
