//! `/system/directory/…`

use actix_web::{web, HttpResponse};
use nebula_plugin_api::{normalize_db_name, SYSTEM_DB_NAME};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::QueryParams;
use crate::openapi::{ErrorBody, RolesAnswer, SystemErrors, UsersPage};
use crate::state::AppState;

const MAX_USERS_PAGE: u64 = 2000;

/// One page of a tenant's users, by username.
#[utoipa::path(
    get,
    path = "/system/directory/users",
    tag = "system",
    params(
        ("db_name" = Option<String>, Query, min_length = 1, max_length = 67, pattern = r"^[a-zA-Z0-9]([a-zA-Z0-9_-]|\.[a-zA-Z0-9_-]){0,31}$", description = "The tenant (default `system.db`; `acme` means `acme.db`): a letter or digit, then letters, digits, `_`, `.`, `-`, no `..`"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 2000, description = "Page size (default 100)"),
        ("offset" = Option<u64>, Query, minimum = 0, description = "Users to skip (default 0)"),
    ),
    responses(
        (status = 200, description = "The page", body = UsersPage),
        (status = 422, description = "An invalid tenant name, or a query parameter out of range or unknown", body = ErrorBody),
        SystemErrors,
    ),
    security(("installer_token" = []), ("staff_session" = [])),
)]
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
    Ok(HttpResponse::Ok().json(UsersPage {
        db_name,
        count: items.len(),
        items,
    }))
}

/// Every identity role.
#[utoipa::path(
    get,
    path = "/system/directory/roles",
    tag = "system",
    responses((status = 200, description = "The roles, by name", body = RolesAnswer), SystemErrors),
    security(("installer_token" = []), ("staff_session" = [])),
)]
pub(crate) async fn roles(
    state: web::Data<AppState>,
    _caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let roles = state
        .on_engine(|core| async move { core.directory().list_roles().await })
        .await?;
    Ok(HttpResponse::Ok().json(RolesAnswer { roles }))
}
