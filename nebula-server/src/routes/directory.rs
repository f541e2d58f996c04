//! `/system/directory/…`

use actix_web::{web, HttpResponse};
use nebula_plugin_api::{normalize_db_name, SYSTEM_DB_NAME};
use serde_json::json;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::QueryParams;
use crate::state::AppState;

const MAX_USERS_PAGE: u64 = 2000;

pub(crate) async fn users(
    state: web::Data<AppState>,
    _caller: Caller,
    mut query: QueryParams,
) -> Result<HttpResponse, ApiError> {
    let db_name = normalize_db_name(&query.text("db_name", SYSTEM_DB_NAME))?;
    let limit = query.integer("limit", 100, 1, MAX_USERS_PAGE)?;
    let offset = query.integer("offset", 0, 0, i64::MAX as u64)?;
    query.finish()?;
    let db = db_name.clone();
    let limit = u32::try_from(limit).unwrap_or(2000);
    let items = state
        .on_engine(|core| async move { core.directory().list_users(&db, limit, offset).await })
        .await?;
    Ok(HttpResponse::Ok().json(json!({
        "db_name": db_name,
        "count": items.len(),
        "items": items,
    })))
}

pub(crate) async fn roles(
    state: web::Data<AppState>,
    _caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let roles = state
        .on_engine(|core| async move { core.directory().list_roles().await })
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "roles": roles })))
}
