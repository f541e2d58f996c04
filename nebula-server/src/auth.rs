//! Authentication of the admin API: one middleware on `/system`, one extractor for handlers,
//! and the browser-safety rule of cookie sessions (SPEC §11).
//!
//! The middleware runs before any extractor of the handler, so an unauthenticated caller gets
//! 403 before the body is read or validated, and learns nothing about body rules. It decides
//! once, in this order:
//!
//! 1. a non-empty `X-Nebula-Token` is an installer-token attempt, limited per client address:
//!    a locked address is answered `429` (even with the right token); the right token admits
//!    the request; a wrong one is counted and the cookie is tried next;
//! 2. a valid staff session cookie admits the request — if it does not change state (GET,
//!    HEAD), or it is JSON and comes from the server's own origin ([`check_same_origin`]);
//!    otherwise `403` with a detail saying why;
//! 3. anything else is `403 Forbidden`.

use std::future::{ready, Ready};
use std::net::IpAddr;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{CONTENT_TYPE, HOST, ORIGIN, REFERER};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest, ResponseError};
use nebula_core::auth::{AuthError, Principal, StaffUser, WebOrigin};

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
pub(crate) async fn authenticate(
    state: &AppState,
    req: &HttpRequest,
) -> Result<Principal, ApiError> {
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
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        check_json(req)?;
        check_same_origin(state, req)?;
    }
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

/// A cookie-authenticated state change must be `Content-Type: application/json` (a type an
/// HTML form cannot send; a script on another origin cannot send it without a CORS preflight,
/// which this server never grants).
fn check_json(req: &HttpRequest) -> Result<(), ApiError> {
    let essence = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim);
    if essence.is_some_and(|e| e.eq_ignore_ascii_case("application/json")) {
        Ok(())
    } else {
        Err(ApiError::CrossSite(
            "a request authenticated by the session cookie that changes state must have \
             Content-Type: application/json"
                .into(),
        ))
    }
}

/// When the request names the page it comes from (`Origin`, else `Referer`), that origin must
/// be the server's own: `server.public_origin`, else `http://` plus the `Host` the request
/// was sent to. A request that names none (not a browser, or one told not to send them) is
/// not refused here. Used by the middleware for cookie-authenticated state changes and, through
/// [`SameOrigin`], by login and logout.
pub fn check_same_origin(state: &AppState, req: &HttpRequest) -> Result<(), ApiError> {
    let headers = req.headers();
    let (header, claimed) = match (headers.get(ORIGIN), headers.get(REFERER)) {
        (Some(origin), _) => (
            "Origin",
            origin.to_str().ok().and_then(|v| WebOrigin::parse(v).ok()),
        ),
        (None, Some(referer)) => (
            "Referer",
            referer
                .to_str()
                .ok()
                .and_then(|v| WebOrigin::of_url(v).ok()),
        ),
        (None, None) => return Ok(()),
    };
    let own = match &state.public_origin {
        Some(origin) => Some(origin.clone()),
        None => host_origin(req),
    };
    match (claimed, own) {
        (Some(claimed), Some(own)) if claimed == own => Ok(()),
        (claimed, own) => {
            let claimed =
                claimed.map_or_else(|| "an unreadable origin".to_owned(), |o| format!("'{o}'"));
            let own = own.map_or_else(
                || "unknown (no Host header; set server.public_origin)".to_owned(),
                |o| format!("'{o}'"),
            );
            Err(ApiError::CrossSite(format!(
                "cross-origin request refused: the {header} header names {claimed}, \
                 not this server's origin {own}"
            )))
        }
    }
}

/// `http(s)://` plus the `Host` the request was sent to.
fn host_origin(req: &HttpRequest) -> Option<WebOrigin> {
    let scheme = if req.app_config().secure() {
        "https"
    } else {
        "http"
    };
    let host = match req.headers().get(HOST) {
        Some(value) => value.to_str().ok()?.to_owned(),
        None => req.uri().authority()?.to_string(),
    };
    WebOrigin::of_host(scheme, &host).ok()
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
            if let ApiError::CrossSite(reason) = &e {
                tracing::warn!(method = %req.method(), path = req.path(), %reason, "cookie request refused");
            }
            let response = e.error_response();
            Ok(req.into_response(response).map_into_right_body())
        }
    }
}

/// Refuses a request whose `Origin` (or `Referer`) is another origin ([`check_same_origin`]).
/// For the public routes that change the session — login and logout — placed before the body
/// extractor so a foreign page is refused before its body is read.
#[derive(Debug, Clone, Copy)]
pub struct SameOrigin;

impl FromRequest for SameOrigin {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let checked = match req.app_data::<web::Data<AppState>>() {
            Some(state) => check_same_origin(state, req).map(|()| SameOrigin),
            None => Err(ApiError::Internal("application state missing".into())),
        };
        ready(checked)
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
