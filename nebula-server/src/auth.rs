//! Authentication of the admin API: one middleware on `/system`, one extractor for handlers.
//!
//! The middleware runs before any extractor of the handler, so an unauthenticated caller gets
//! 403 before the body is read or validated, and learns nothing about body rules.

use std::future::{ready, Ready};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest, ResponseError};
use nebula_core::auth::Principal;

use crate::error::ApiError;
use crate::state::AppState;

/// The installer token header.
pub const TOKEN_HEADER: &str = "X-Nebula-Token";
/// The staff session cookie.
pub const SESSION_COOKIE: &str = "nebula_session";

/// Who is calling, when it is allowed to: the token first, then the session cookie.
async fn authenticate(state: &AppState, req: &HttpRequest) -> Option<Principal> {
    if let Some(token) = req.headers().get(TOKEN_HEADER) {
        if state.auth.token_matches(token.to_str().unwrap_or("")) {
            return Some(Principal::InstallerToken);
        }
    }
    let cookie = req.cookie(SESSION_COOKIE)?;
    let auth = state.auth.clone();
    let value = cookie.value().to_owned();
    match state
        .on_core(async move { auth.verify_session(&value).await })
        .await
    {
        Ok(Ok(user)) => Some(Principal::Staff(user)),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "session refused");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "session check failed");
            None
        }
    }
}

/// Middleware for `/system`: admits the installer token or a staff session, else 403.
pub async fn require_staff(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let principal = match req.app_data::<web::Data<AppState>>() {
        Some(state) => authenticate(state, req.request()).await,
        None => None,
    };
    match principal {
        Some(principal) => {
            req.extensions_mut().insert(principal);
            Ok(next.call(req).await?.map_into_left_body())
        }
        None => {
            let response = ApiError::Forbidden.error_response();
            Ok(req.into_response(response).map_into_right_body())
        }
    }
}

/// The caller of a `/system` handler, as admitted by [`require_staff`].
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl Caller {
    /// A short name for logs: `installer-token` or `staff:<username>`.
    pub fn describe(&self) -> String {
        match &self.0 {
            Principal::InstallerToken => "installer-token".into(),
            Principal::Staff(user) => format!("staff:{}", user.username),
        }
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        // Present whenever the route sits behind `require_staff`; refusing otherwise keeps a
        // handler mounted outside `/system` by mistake from running unauthenticated.
        ready(
            req.extensions()
                .get::<Principal>()
                .cloned()
                .map(Caller)
                .ok_or(ApiError::Forbidden),
        )
    }
}
