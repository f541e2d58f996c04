//! `/healthz`, `/auth/login`, `/auth/logout`.

use actix_web::cookie::{time, Cookie, SameSite};
use actix_web::{web, HttpRequest, HttpResponse};

use crate::auth::{client_address, SameOrigin, SESSION_COOKIE};
use crate::error::ApiError;
use crate::extract::{Body, BodyLimit};
use crate::openapi::{
    BodyErrors, DatabaseState, ErrorBody, LoginAnswer, LoginBody, OkAnswer, OkStatus, Readiness,
    ReadyAnswer,
};
use crate::state::AppState;

/// The login body limit: a username and a password fit in far less, and nobody without
/// credentials gets the server to buffer `server.max_body_bytes`.
pub(crate) const LOGIN_BODY_LIMIT: BodyLimit = BodyLimit {
    bytes: 4096,
    name: "the login body limit",
};

/// Liveness: the process answers. No credentials.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "session",
    responses((status = 200, description = "Alive", body = OkAnswer)),
)]
pub(crate) async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(OkAnswer {
        status: OkStatus::Ok,
    })
}

/// Readiness: the process lives (`/healthz`) *and* the database answers. `503` while it does
/// not (a load balancer then sends requests elsewhere); the server itself keeps running and
/// is ready again as soon as the database answers.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "session",
    responses(
        (status = 200, description = "Ready: the database answers", body = ReadyAnswer),
        (status = 503, description = "Not ready: the database does not answer", body = ReadyAnswer),
    ),
)]
pub(crate) async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    match state
        .on_engine(|core| async move { core.database().ping().await })
        .await
    {
        Ok(()) => HttpResponse::Ok().json(ReadyAnswer {
            status: Readiness::Ready,
            database: DatabaseState::Ok,
        }),
        // A route without authentication: the reason (host names, user names in libpq's
        // texts) goes to the log, the answer says only what is down.
        Err(e) => {
            tracing::warn!(error = %e, "not ready: the database does not answer");
            HttpResponse::ServiceUnavailable().json(ReadyAnswer {
                status: Readiness::NotReady,
                database: DatabaseState::Unavailable,
            })
        }
    }
}

/// Logs a staff user of `system.db` in: the `nebula_session` cookie (`HttpOnly`,
/// `SameSite=Lax`, `Path=/`, `Secure` when configured).
#[utoipa::path(
    post,
    path = "/auth/login",
    tag = "session",
    request_body(content = LoginBody),
    responses(
        (status = 200, description = "Logged in; the cookie is set", body = LoginAnswer),
        (status = 401, description = "Wrong name or password, or not staff (one answer for all)", body = ErrorBody),
        (status = 403, description = "Posted from another origin", body = ErrorBody),
        (status = 429, description = "Too many failed logins; `Retry-After` says when to try again", body = ErrorBody),
        (status = 503, description = "The database does not answer", body = ErrorBody),
        BodyErrors,
    ),
)]
pub(crate) async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    // Before `Body`: a login posted by another origin's page (login CSRF) is refused before
    // its body is read.
    _: SameOrigin,
    Body(body): Body,
) -> Result<HttpResponse, ApiError> {
    let LoginBody { username, password } = nebula_plugin_api::parse_json_object(&body)?;
    // Behind a reverse proxy this is the proxy's address; see docs/HTTP_API.md.
    let client = client_address(&req);
    let auth = state.auth.clone();
    let who = username.clone();
    let session = state
        .on_core(async move { auth.login(&who, &password, client).await })
        .await?
        // Refused names are often mistyped passwords: log only a short, escaped prefix.
        .inspect_err(
            |e| tracing::warn!(username = %log_safe(&username), error = %e, "login refused"),
        )?;
    tracing::info!(username = %log_safe(&username), "staff login");
    let max_age = i64::try_from(session.max_age.as_secs()).unwrap_or(i64::MAX);
    let cookie = Cookie::build(SESSION_COOKIE, session.value)
        .http_only(true)
        .same_site(SameSite::Lax)
        .path("/")
        .secure(state.cookie_secure)
        .max_age(time::Duration::seconds(max_age))
        .finish();
    Ok(HttpResponse::Ok().cookie(cookie).json(LoginAnswer {
        status: OkStatus::Ok,
        username,
        expires_in: max_age,
    }))
}

/// Clears the session cookie. Another origin's page cannot log the browser out either
/// (`SameOrigin`).
#[utoipa::path(
    post,
    path = "/auth/logout",
    tag = "session",
    responses(
        (status = 200, description = "The cookie is cleared", body = OkAnswer),
        (status = 403, description = "Posted from another origin", body = ErrorBody),
    ),
)]
pub(crate) async fn logout(state: web::Data<AppState>, _: SameOrigin) -> HttpResponse {
    let mut cookie = Cookie::build(SESSION_COOKIE, "")
        .http_only(true)
        .same_site(SameSite::Lax)
        .path("/")
        .secure(state.cookie_secure)
        .finish();
    cookie.make_removal();
    HttpResponse::Ok().cookie(cookie).json(OkAnswer {
        status: OkStatus::Ok,
    })
}

/// A username as it may appear in logs: at most 32 characters, control characters escaped.
fn log_safe(username: &str) -> String {
    let short: String = username.chars().take(32).collect();
    let suffix = if username.chars().count() > 32 {
        "…"
    } else {
        ""
    };
    format!("{}{suffix}", short.escape_default())
}
