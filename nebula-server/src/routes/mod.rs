//! The route table: every route of the API is declared here, once.
//!
//! `system_routes` is used both to mount the `/system` scope (behind [`crate::auth::require_staff`])
//! and by the tests that prove no route under `/system` answers without credentials.
//!
//! The admin page's files ([`ui`], under `/ui/`) are not API: they are mounted beside this
//! table, and neither it nor the OpenAPI document lists them.

pub(crate) mod directory;
pub(crate) mod events;
pub(crate) mod metrics;
pub(crate) mod plugins;
pub(crate) mod session;
pub mod ui;

use actix_web::{web, Route};

use crate::extract::BodyLimit;

/// One route: method, path (relative to its scope) and the actix route.
pub struct RouteEntry {
    /// HTTP method.
    pub method: &'static str,
    /// Path relative to the scope.
    pub path: &'static str,
    /// The handler.
    pub route: Route,
    /// A body limit of its own, smaller than `server.max_body_bytes`.
    pub body_limit: Option<BodyLimit>,
}

fn entry(method: &'static str, path: &'static str, route: Route) -> RouteEntry {
    RouteEntry {
        method,
        path,
        route,
        body_limit: None,
    }
}

/// Everything under `/system` (every one of them requires credentials).
pub fn system_routes() -> Vec<RouteEntry> {
    vec![
        entry("GET", "/plugins", web::get().to(plugins::list)),
        entry("POST", "/plugins/rescan", web::post().to(plugins::rescan)),
        entry(
            "GET",
            "/plugins/{name}/health",
            web::get().to(plugins::health),
        ),
        entry(
            "POST",
            "/plugins/{name}/sync-users",
            web::post().to(plugins::sync_users),
        ),
        entry(
            "POST",
            "/plugins/{name}/action",
            web::post().to(plugins::action),
        ),
        entry(
            "GET",
            "/plugins/{name}/stats",
            web::get().to(plugins::stats),
        ),
        entry("GET", "/plugins/{name}/logs", web::get().to(plugins::logs)),
        entry("GET", "/events", web::get().to(events::list)),
        entry("GET", "/directory/users", web::get().to(directory::users)),
        entry("GET", "/directory/roles", web::get().to(directory::roles)),
    ]
}

/// Routes outside `/system`: liveness, readiness, the login/logout pair, and the metrics
/// (which check credentials themselves unless `server.metrics_public`).
pub fn public_routes() -> Vec<RouteEntry> {
    vec![
        entry("GET", "/healthz", web::get().to(session::healthz)),
        entry("GET", "/readyz", web::get().to(session::readyz)),
        RouteEntry {
            body_limit: Some(session::LOGIN_BODY_LIMIT),
            ..entry("POST", "/auth/login", web::post().to(session::login))
        },
        entry("POST", "/auth/logout", web::post().to(session::logout)),
        entry("GET", "/metrics", web::get().to(metrics::metrics)),
        entry("GET", "/openapi.json", web::get().to(metrics::openapi)),
    ]
}

/// `(method, full path)` of every `/system` route, for tests and docs.
pub fn system_route_list() -> Vec<(&'static str, String)> {
    system_routes()
        .into_iter()
        .map(|r| (r.method, format!("/system{}", r.path)))
        .collect()
}
