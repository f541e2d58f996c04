//! `GET /metrics`: the Prometheus text exposition (`nebula_core::metrics`).

use actix_web::{web, HttpRequest, HttpResponse};

use crate::auth::authenticate;
use crate::error::ApiError;
use crate::state::AppState;

/// The content type of the Prometheus text format, version 0.0.4.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every metric. Behind the same credentials as `/system/` (the same check, `authenticate`)
/// unless `server.metrics_public`; the series hold plugin names and counts, never secrets.
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
