//! Authentication of the admin API: one middleware on `/system`, one extractor for handlers.
//!
//! The middleware runs before any extractor of the handler, so an unauthenticated caller gets
//! 403 before the body is read or validated, and learns nothing about body rules. It decides
//! once, in this order:
//!
//! 1. a non-empty `X-Nebula-Token` is an installer-token attempt, limited per client address:
//!    a locked address is answered `429` (even with the right token); the right token admits
//!    the request; a wrong one is counted and the cookie is tried next;
//! 2. a valid staff session cookie admits the request;
//! 3. anything else is `403 Forbidden`.

use std::future::{ready, Ready};
use std::net::IpAddr;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest, ResponseError};
use nebula_core::auth::{AuthError, Principal, StaffUser};

use crate::error::ApiError;
use crate::state::AppState;

/// The installer token header.
pub const TOKEN_HEADER: &str = "X-Nebula-Token";
/// The staff session cookie.
pub const SESSION_COOKIE: &str = "nebula_session";

/// The address a request came from: the TCP peer (behind a reverse proxy, the proxy).
pub fn client_address(req: &HttpRequest) -> Option<IpAddr> {
    req.peer_addr().map(|a| a.ip())
}

/// Who is calling, when it is allowed to (see the [module documentation](self)).
async fn authenticate(state: &AppState, req: &HttpRequest) -> Result<Principal, ApiError> {
    if let Some(token) = req.headers().get(TOKEN_HEADER).filter(|v| !v.is_empty()) {
        // A value that is not visible ASCII is a wrong token, and counts as one.
        let presented = token.to_str().unwrap_or("");
        match state.auth.check_token(presented, client_address(req)) {
            Ok(()) => return Ok(Principal::InstallerToken),
            Err(AuthError::InvalidToken) => {}
            Err(e) => {
                tracing::warn!(client = ?client_address(req), error = %e, "token attempt refused");
                return Err(e.into());
            }
        }
    }
    let user = staff_session(state, req).await.ok_or(ApiError::Forbidden)?;
    Ok(Principal::Staff(user))
}

/// The staff user of a valid session cookie.
async fn staff_session(state: &AppState, req: &HttpRequest) -> Option<StaffUser> {
    let cookie = req.cookie(SESSION_COOKIE)?;
    let auth = state.auth.clone();
    let value = cookie.value().to_owned();
    match state
        .on_core(async move { auth.verify_session(&value).await })
        .await
    {
        Ok(Ok(user)) => Some(user),
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

/// Middleware for `/system`: admits the installer token or a staff session, else 403 (or 429
/// for an address that has used its token attempts).
pub async fn require_staff(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let admitted = match req.app_data::<web::Data<AppState>>() {
        Some(state) => authenticate(state, req.request()).await,
        None => Err(ApiError::Forbidden),
    };
    match admitted {
        Ok(principal) => {
            req.extensions_mut().insert(principal);
            Ok(next.call(req).await?.map_into_left_body())
        }
        Err(e) => {
            let response = e.error_response();
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
