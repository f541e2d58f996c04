//! `/healthz`, `/auth/login`, `/auth/logout`.

use actix_web::cookie::{time, Cookie, SameSite};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use crate::auth::{client_address, SameOrigin, SESSION_COOKIE};
use crate::error::ApiError;
use crate::extract::{Body, BodyLimit};
use crate::state::AppState;

/// The login body limit: a username and a password fit in far less, and nobody without
/// credentials gets the server to buffer `server.max_body_bytes`.
pub(crate) const LOGIN_BODY_LIMIT: BodyLimit = BodyLimit {
    bytes: 4096,
    name: "the login body limit",
};

pub(crate) async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// Readiness: the process lives (`/healthz`) *and* the database answers. `503` while it does
/// not (a load balancer then sends requests elsewhere); the server itself keeps running and
/// is ready again as soon as the database answers.
pub(crate) async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    match state
        .on_engine(|core| async move { core.database().ping().await })
        .await
    {
        Ok(()) => HttpResponse::Ok().json(json!({ "status": "ready", "database": "ok" })),
        // A route without authentication: the reason (host names, user names in libpq's
        // texts) goes to the log, the answer says only what is down.
        Err(e) => {
            tracing::warn!(error = %e, "not ready: the database does not answer");
            HttpResponse::ServiceUnavailable().json(json!({
                "status": "not ready",
                "database": "unavailable",
            }))
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    username: String,
    password: String,
}

/// `SameOrigin` comes before `Body`: a login posted by another origin's page (login CSRF) is
/// refused before its body is read.
pub(crate) async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
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
    Ok(HttpResponse::Ok()
        .cookie(cookie)
        .json(json!({ "status": "ok", "username": username, "expires_in": max_age })))
}

/// Another origin's page cannot log the browser out either (`SameOrigin`).
pub(crate) async fn logout(state: web::Data<AppState>, _: SameOrigin) -> HttpResponse {
    let mut cookie = Cookie::build(SESSION_COOKIE, "")
        .http_only(true)
        .same_site(SameSite::Lax)
        .path("/")
        .secure(state.cookie_secure)
        .finish();
    cookie.make_removal();
    HttpResponse::Ok()
        .cookie(cookie)
        .json(json!({ "status": "ok" }))
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
