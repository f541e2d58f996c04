//! `GET /metrics` (the Prometheus text exposition, `nebula_core::metrics`) and
//! `GET /openapi.json` (this API's document, `crate::openapi`).

use actix_web::{web, HttpRequest, HttpResponse};

use crate::auth::authenticate;
use crate::error::ApiError;
use crate::openapi::SystemErrors;
use crate::state::AppState;

/// The content type of the Prometheus text format, version 0.0.4.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every metric. Behind the same credentials as `/system/` (the same check, `authenticate`)
/// unless `server.metrics_public`; the series hold plugin names and counts, never secrets.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses(
        (status = 200, description = "Every series, Prometheus text format 0.0.4", body = String, content_type = "text/plain; version=0.0.4; charset=utf-8"),
        SystemErrors,
    ),
    security((), ("installer_token" = []), ("staff_session" = [])),
)]
pub(crate) async fn metrics(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    if !state.metrics_public {
        authenticate(&state, &req).await?;
    }
    let text = state.core.render_metrics().map_err(ApiError::Internal)?;
    Ok(HttpResponse::Ok().content_type(PROMETHEUS_TEXT).body(text))
}

/// This API's OpenAPI 3.1 document. No credentials: it describes the routes, it holds no
/// secret.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses((status = 200, description = "The document", body = Object)),
)]
pub(crate) async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type(actix_web::http::header::ContentType::json())
        .body(crate::openapi::document_json())
}
