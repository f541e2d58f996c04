//! `/system/events`

use actix_web::{web, HttpResponse};
use nebula_core::events::MAX_EVENT_PAGE;
use serde_json::json;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::QueryParams;
use crate::state::AppState;

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
    Ok(HttpResponse::Ok().json(json!({ "events": found })))
}
