//! `/system/plugins…`

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use nebula_plugin_api::SyncRequest;
use serde::Deserialize;
use serde_json::json;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{Body, PluginName, QueryParams};
use crate::state::AppState;

pub(crate) async fn list(state: web::Data<AppState>, _caller: Caller) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "plugins": state.core.plugins().list() }))
}

pub(crate) async fn rescan(
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    tracing::info!(caller = %caller.describe(), "rescan requested");
    let records = state
        .on_engine(|core| async move { core.plugins().rescan().await })
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "status": "ok", "plugins": records })))
}

pub(crate) async fn health(
    state: web::Data<AppState>,
    _caller: Caller,
    name: PluginName,
) -> Result<HttpResponse, ApiError> {
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
    Ok(HttpResponse::build(status).json(json!({ "plugin": name.0, "health": health })))
}

pub(crate) async fn sync_users(
    state: web::Data<AppState>,
    caller: Caller,
    name: PluginName,
    Body(body): Body,
) -> Result<HttpResponse, ApiError> {
    // An empty body means "all defaults": a dry run.
    let request = if body.iter().all(u8::is_ascii_whitespace) {
        SyncRequest::default()
    } else {
        SyncRequest::from_json_slice(&body)?
    };
    if !request.dry_run {
        tracing::info!(caller = %caller.describe(), plugin = %name.0, "real sync requested");
    }
    let plugin = name.0.clone();
    let result = state
        .on_engine(|core| async move { core.plugins().sync_users(&plugin, request).await })
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "plugin": name.0, "result": result })))
}

/// `{"action": "start" | "stop" | "restart"}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionBody {
    action: Action,
}

/// What an admin asks of a plugin.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Action {
    Start,
    Stop,
    Restart,
}

impl Action {
    /// The `result.status` of a done action.
    fn done(self) -> &'static str {
        match self {
            Action::Start => "started",
            Action::Stop => "stopped",
            Action::Restart => "restarted",
        }
    }
}

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
                Action::Start => plugins.start(&plugin).await,
                Action::Stop => plugins.stop(&plugin).await,
                Action::Restart => plugins.restart(&plugin).await,
            }
        })
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "plugin": name.0, "result": { "status": action.done() } })))
}

pub(crate) async fn stats(
    state: web::Data<AppState>,
    _caller: Caller,
    name: PluginName,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(state.core.plugins().stats(&name.0)?))
}

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
    Ok(HttpResponse::Ok().json(json!({ "plugin": name.0, "lines": lines })))
}
