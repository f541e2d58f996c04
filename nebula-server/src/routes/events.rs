//! `/system/events`

use actix_web::{web, HttpResponse};
use nebula_core::events::MAX_EVENT_PAGE;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::QueryParams;
use crate::openapi::{ErrorBody, EventsAnswer, SystemErrors};
use crate::state::AppState;

/// The stored events, newest first.
#[utoipa::path(
    get,
    path = "/system/events",
    tag = "system",
    params(
        ("prefix" = Option<String>, Query, description = "Only events whose name starts with this"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "At most this many (default 100)"),
        ("before" = Option<i64>, Query, minimum = 1, description = "Only events with a smaller id: the next page"),
    ),
    responses(
        (status = 200, description = "The events", body = EventsAnswer),
        (status = 422, description = "A query parameter out of range or unknown", body = ErrorBody),
        SystemErrors,
    ),
    security(("installer_token" = []), ("staff_session" = [])),
)]
pub(crate) async fn list(
    state: web::Data<AppState>,
    _caller: Caller,
    mut query: QueryParams,
) -> Result<HttpResponse, ApiError> {
    let prefix = query.text("prefix", "");
    let limit = query.integer("limit", 100, 1, u64::from(MAX_EVENT_PAGE))?;
    let before = query.optional_integer("before", 1, i64::MAX as u64)?;
    query.finish()?;
    let before = before.and_then(|b| i64::try_from(b).ok());
    let limit = u32::try_from(limit).unwrap_or(MAX_EVENT_PAGE);
    let found = state
        .on_engine(|core| async move { core.events().list_before(&prefix, limit, before).await })
        .await?;
    Ok(HttpResponse::Ok().json(EventsAnswer { events: found }))
}
