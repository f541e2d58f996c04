//! `/system/plugins…`

use std::time::{Duration, Instant};

use actix_web::http::header::ContentType;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use nebula_core::manager::PluginStats;
use nebula_plugin_api::SyncRequest;
use serde::Serialize;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{Body, PluginName, QueryParams};
use crate::openapi::{
    ActionAnswer, ActionBody, ActionResult, BodyErrors, HealthAnswer, HealthUnavailable,
    LogsAnswer, OkStatus, PluginCallErrors, PluginList, RescanAnswer, SyncAnswer, SystemErrors,
};
use crate::state::AppState;

/// Every plugin's record.
#[utoipa::path(
    get,
    path = "/system/plugins",
    tag = "plugins",
    responses((status = 200, description = "Every plugin, sorted by (source, name)", body = PluginList), SystemErrors),
    security(("installer_token" = []), ("staff_session" = [])),
)]
pub(crate) async fn list(
    state: web::Data<AppState>,
    _caller: Caller,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(state.plugin_list_body()?))
}

/// Discovers the plugins again: added ones are loaded, removed ones dropped, changed ones
/// rebuilt.
#[utoipa::path(
    post,
    path = "/system/plugins/rescan",
    tag = "plugins",
    responses((status = 200, description = "The plugins after the rescan", body = RescanAnswer), SystemErrors),
    security(("installer_token" = []), ("staff_session" = [])),
)]
pub(crate) async fn rescan(
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    tracing::info!(caller = %caller.describe(), "rescan requested");
    let records = state
        .on_engine(|core| async move { core.plugins().rescan().await })
        .await?;
    Ok(HttpResponse::Ok().json(RescanAnswer {
        status: OkStatus::Ok,
        plugins: records,
    }))
}

/// Asks the plugin for its health: 200 when it answers `"status": "ok"`, 503 otherwise.
#[utoipa::path(
    get,
    path = "/system/plugins/{name}/health",
    tag = "plugins",
    params(("name" = String, Path, description = "The plugin's name")),
    responses(
        (status = 200, description = "The plugin is healthy", body = HealthAnswer),
        (status = 503, description = "The plugin answered another status (its answer), is not loaded, or the database is down", body = HealthUnavailable),
        PluginCallErrors,
        SystemErrors,
    ),
    security(("installer_token" = []), ("staff_session" = [])),
)]
pub(crate) async fn health(
    state: web::Data<AppState>,
    _caller: Caller,
    name: PluginName,
) -> Result<HttpResponse, ApiError> {
    let deadline = answer_deadline(&state);
    let plugin = name.0.clone();
    let health = state
        .on_engine(|core| async move { core.plugins().health(&plugin).await })
        .await?;
    // 503 when the plugin reports anything but ok, so `curl -f` and load balancers notice.
    let status = if health.get("status").and_then(|s| s.as_str()) == Some("ok") {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let large = nebula_grpc::convert::json_is_large(&health);
    let plugin = name.0.clone();
    answer_off_worker(
        deadline,
        status,
        name.0,
        large,
        HealthAnswer { plugin, health },
    )
    .await
}

/// Runs the plugin's sync: a dry run unless `"dry_run": false` (an empty body is a dry run).
#[utoipa::path(
    post,
    path = "/system/plugins/{name}/sync-users",
    tag = "plugins",
    params(("name" = String, Path, description = "The plugin's name")),
    request_body(content = Option<SyncRequest>, description = "Unknown fields are refused; at most 10,000 users. No body: a dry run"),
    responses(
        (status = 200, description = "The plugin's report", body = SyncAnswer),
        PluginCallErrors,
        BodyErrors,
        SystemErrors,
    ),
    security(("installer_token" = []), ("staff_session" = [])),
)]
pub(crate) async fn sync_users(
    state: web::Data<AppState>,
    caller: Caller,
    name: PluginName,
    Body(body): Body,
) -> Result<HttpResponse, ApiError> {
    // An empty body (or JSON `null`) means "all defaults": a dry run.
    let request = if body.iter().all(u8::is_ascii_whitespace) || body.trim_ascii() == b"null" {
        SyncRequest::default()
    } else {
        SyncRequest::from_json_slice(&body)?
    };
    drop(body);
    if !request.dry_run {
        tracing::info!(caller = %caller.describe(), plugin = %name.0, "real sync requested");
    }
    let deadline = answer_deadline(&state);
    let plugin = name.0.clone();
    let result = state
        .on_engine(|core| async move { core.plugins().sync_users(&plugin, request).await })
        .await?;
    let large = nebula_grpc::convert::json_is_large(&result);
    let plugin = name.0.clone();
    answer_off_worker(
        deadline,
        StatusCode::OK,
        name.0,
        large,
        SyncAnswer { plugin, result },
    )
    .await
}

/// When a plugin route must have answered: the manager bounds the plugin call by the call
/// timeout, and this bounds the rest, turning a large answer into the response body, so that
/// the route answers at its deadline whatever the plugin answered.
fn answer_deadline(state: &AppState) -> Instant {
    Instant::now() + state.core.plugins().call_timeout() + ANSWER_GRACE
}

/// Beyond the call timeout, for the manager to cut a late call off and for the answer to be
/// written.
const ANSWER_GRACE: Duration = Duration::from_millis(100);

/// A plugin's answer (`{"plugin": …, "health" | "result": …}`) as the response. A large one
/// (the one rule of `nebula_grpc::convert::json_is_large`: over a thousand values or 64 KiB of
/// text) is serialised (and dropped) on actix's blocking pool: it may be megabytes of JSON, and
/// the two HTTP workers must stay free for other requests meanwhile; not ready by `deadline`:
/// 504 (the serialisation is then left to finish on its thread and dropped). A small one,
/// which is most answers (health, a dry run of a few users), is serialised here: microseconds,
/// less than the two thread hops the pool would cost. The answer is moved, not copied.
async fn answer_off_worker<T: Serialize + Send + 'static>(
    deadline: Instant,
    status: StatusCode,
    plugin: String,
    large: bool,
    answer: T,
) -> Result<HttpResponse, ApiError> {
    let serialise = move || serde_json::to_vec(&answer);
    let serialised = if large {
        tokio::time::timeout_at(deadline.into(), web::block(serialise))
            .await
            .map_err(|_| {
                ApiError::Timeout(format!(
                    "plugin '{plugin}': the answer was too large to be sent within the call timeout"
                ))
            })?
            .map_err(|e| ApiError::Internal(format!("cannot serialise the answer: {e}")))?
    } else {
        serialise()
    };
    let bytes =
        serialised.map_err(|e| ApiError::Internal(format!("cannot serialise the answer: {e}")))?;
    if large {
        // The request and the answer are gone by now (the plugin consumed one, the
        // serialisation dropped the other): memory can go back, off the answer's path.
        crate::memory::release_free_memory_soon();
    }
    Ok(HttpResponse::build(status)
        .content_type(ContentType::json())
        .body(bytes))
}

/// Starts, stops or restarts a plugin; a stop is persisted (the plugin stays disabled across
/// restarts, and on every instance sharing the database).
#[utoipa::path(
    post,
    path = "/system/plugins/{name}/action",
    tag = "plugins",
    params(("name" = String, Path, description = "The plugin's name")),
    request_body(content = ActionBody),
    responses(
        (status = 200, description = "Done", body = ActionAnswer),
        PluginCallErrors,
        BodyErrors,
        SystemErrors,
    ),
    security(("installer_token" = []), ("staff_session" = [])),
)]
pub(crate) async fn action(
    state: web::Data<AppState>,
    caller: Caller,
    name: PluginName,
    Body(body): Body,
) -> Result<HttpResponse, ApiError> {
    let ActionBody { action } = nebula_plugin_api::parse_json_object(&body)?;
    tracing::info!(caller = %caller.describe(), plugin = %name.0, ?action, "plugin action");
    let plugin = name.0.clone();
    state
        .on_engine(move |core| async move {
            let plugins = core.plugins();
            match action {
                crate::openapi::Action::Start => plugins.start(&plugin).await,
                crate::openapi::Action::Stop => plugins.stop(&plugin).await,
                crate::openapi::Action::Restart => plugins.restart(&plugin).await,
            }
        })
        .await?;
    Ok(HttpResponse::Ok().json(ActionAnswer {
        plugin: name.0,
        result: ActionResult {
            status: action.done(),
        },
    }))
}

/// A plugin's call statistics: counts and latency percentiles per method, the lifecycle
/// counters, and a process plugin's pid and memory.
#[utoipa::path(
    get,
    path = "/system/plugins/{name}/stats",
    tag = "plugins",
    params(("name" = String, Path, description = "The plugin's name")),
    responses(
        (status = 200, description = "The statistics", body = PluginStats),
        (status = 404, description = "No plugin of that name", body = crate::openapi::ErrorBody),
        SystemErrors,
    ),
    security(("installer_token" = []), ("staff_session" = [])),
)]
pub(crate) async fn stats(
    state: web::Data<AppState>,
    _caller: Caller,
    name: PluginName,
) -> Result<HttpResponse, ApiError> {
    let stats: PluginStats = state.core.plugins().stats(&name.0)?;
    Ok(HttpResponse::Ok().json(stats))
}

/// The most recent lines a plugin logged (`ctx.log`).
#[utoipa::path(
    get,
    path = "/system/plugins/{name}/logs",
    tag = "plugins",
    params(
        ("name" = String, Path, description = "The plugin's name"),
        ("tail" = Option<u32>, Query, minimum = 1, maximum = 2000, description = "How many lines (default 100)"),
    ),
    responses(
        (status = 200, description = "The lines, oldest first", body = LogsAnswer),
        (status = 404, description = "No plugin of that name", body = crate::openapi::ErrorBody),
        (status = 422, description = "A query parameter out of range or unknown", body = crate::openapi::ErrorBody),
        SystemErrors,
    ),
    security(("installer_token" = []), ("staff_session" = [])),
)]
pub(crate) async fn logs(
    state: web::Data<AppState>,
    _caller: Caller,
    name: PluginName,
    mut query: QueryParams,
) -> Result<HttpResponse, ApiError> {
    let max = nebula_core::logs::MAX_LOG_LINES as u64;
    let tail = query.integer("tail", 100, 1, max)?;
    query.finish()?;
    state.core.plugins().record(&name.0)?;
    let lines = state
        .core
        .logs()
        .tail(&name.0, usize::try_from(tail).unwrap_or(usize::MAX));
    Ok(HttpResponse::Ok().json(LogsAnswer {
        plugin: name.0,
        lines,
    }))
}
