//! The actix application: middleware order, limits and the route table mounted.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use actix_web::middleware::{from_fn, ErrorHandlerResponse, ErrorHandlers, Next};
use actix_web::{web, App, Resource};
use nebula_plugin_api::request_id::{is_sane_request_id, new_request_id, serving_request};

use crate::auth::require_staff;
use crate::error::ApiError;
use crate::extract::BodyLimit;
use crate::routes::{public_routes, system_routes, RouteEntry};
use crate::state::AppState;

/// Builds the application for one worker.
pub fn app(
    state: AppState,
    max_body_bytes: usize,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let mut system = web::scope("/system").wrap(from_fn(require_staff));
    for resource in resources(system_routes()) {
        system = system.service(resource);
    }
    system = system.default_service(web::to(not_found));

    let mut app = App::new()
        .app_data(web::Data::new(state))
        .app_data(BodyLimit::server(max_body_bytes))
        .service(system)
        // The admin page: static files, no credentials (it is the login form); not API, so
        // not in the route table nor the OpenAPI document.
        .service(crate::routes::ui::scope());
    for resource in resources(public_routes()) {
        app = app.service(resource);
    }
    app.default_service(web::to(not_found))
        // Outermost last: the log sees the final status, after errors became JSON.
        .wrap(ErrorHandlers::new().default_handler(json_error_body))
        .wrap(from_fn(observe_request))
}

/// One resource per path, so a known path with the wrong method answers 405 (actix's
/// `Scope::route` would turn the method into a resource guard and answer 404). A route's own
/// body limit is set on its resource, where it overrides the app's.
fn resources(routes: Vec<RouteEntry>) -> Vec<Resource> {
    let mut by_path: Vec<(&'static str, Resource)> = Vec::new();
    for entry in routes {
        let index = match by_path.iter().position(|(path, _)| *path == entry.path) {
            Some(index) => index,
            None => {
                by_path.push((entry.path, web::resource(entry.path)));
                by_path.len() - 1
            }
        };
        let resource = &mut by_path[index].1;
        let mut taken = std::mem::replace(resource, web::resource(entry.path)).route(entry.route);
        if let Some(limit) = entry.body_limit {
            taken = taken.app_data(limit);
        }
        *resource = taken;
    }
    by_path.into_iter().map(|(_, resource)| resource).collect()
}

async fn not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::NotFound("Not Found".into()))
}

/// Makes every error response JSON `{"detail": …}`, including actix's own (extractor errors,
/// 405 for a wrong method, 413 for a large body).
fn json_error_body<B>(res: ServiceResponse<B>) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let is_json = res
        .response()
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if is_json {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status();
    let detail = res
        .response()
        .error()
        .map(|e| e.to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("Error").to_owned());
    let (req, old) = res.into_parts();
    let mut response = ApiError::detail_response(status, &detail);
    // Keep headers such as `Allow` on a 405.
    for (name, value) in old.headers() {
        if name != CONTENT_TYPE && name != actix_web::http::header::CONTENT_LENGTH {
            response.headers_mut().insert(name.clone(), value.clone());
        }
    }
    Ok(ErrorHandlerResponse::Response(
        ServiceResponse::new(req, response).map_into_right_body(),
    ))
}

/// The method as a metrics label: the standard ones, and `other` for any other token a client
/// sends (actix accepts any), so a client cannot create series without end.
fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The header a request id is read from and returned in.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The request's id: the caller's `X-Request-Id` when it is sane (`is_sane_request_id`: 1 to
/// 128 characters among letters, digits and `-_.:`, so it cannot forge a log line or a
/// header), else a new random one (32 hex digits).
fn request_id(req: &ServiceRequest) -> String {
    req.headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|id| is_sane_request_id(id))
        .map_or_else(|| new_request_id().to_string(), str::to_owned)
}

/// The target of the access log: one line per request, under its own name so a filter can
/// choose it (`nebula_server::access=debug` logs every request).
pub const ACCESS_LOG_TARGET: &str = "nebula_server::access";

/// The request's access-log line: `WARN` for a server error, `INFO` for a refused request,
/// `DEBUG` for the rest. Why not `INFO` for all: formatting and writing a line costs more
/// than serving a health check (the HTTP throughput at 64 connections fell by a third with it,
/// docs/PERFORMANCE.md), and a panel polling the list every few seconds would fill the log
/// with lines nobody reads; what went wrong is still logged by default, as Grafana does with
/// `router_logging` off. Never headers, so never the token or the cookie.
fn log_access(method: &actix_web::http::Method, path: &str, status: u16, ms: f64) {
    match status {
        500.. => tracing::warn!(target: ACCESS_LOG_TARGET, %method, %path, status, ms, "request"),
        400..=499 => {
            tracing::info!(target: ACCESS_LOG_TARGET, %method, %path, status, ms, "request")
        }
        _ => tracing::debug!(target: ACCESS_LOG_TARGET, %method, %path, status, ms, "request"),
    }
}

/// Around every request, serving it (`nebula_plugin_api::request_id::serving_request`: its
/// span and its task-local id, so every line logged for it names the id, the engine's and the
/// plugin's included, out of process too): the id returned as `X-Request-Id`, the HTTP
/// metrics by route template, and its access-log line ([`log_access`]).
async fn observe_request(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = request_id(&req);
    let header = HeaderValue::from_str(&id).ok();
    serving_request(Some(id.into()), async move {
        let method = req.method().clone();
        let path = req.path().to_owned();
        let started = Instant::now();
        let mut res = next.call(req).await?;
        let elapsed = started.elapsed();
        let status = res.status().as_u16();
        // The template (`/system/plugins/{name}/health`), never the raw path: the series stay
        // as few as the routes.
        let route = res
            .request()
            .match_pattern()
            .unwrap_or_else(|| "unmatched".to_owned());
        if let Some(state) = res.request().app_data::<web::Data<AppState>>() {
            state
                .core
                .metrics()
                .http_request(method_label(&method), &route, status, elapsed);
        }
        if let Some(header) = header {
            res.headers_mut()
                .insert(HeaderName::from_static(REQUEST_ID_HEADER), header);
        }
        log_access(&method, &path, status, elapsed.as_secs_f64() * 1000.0);
        Ok(res)
    })
    .await
}
