//! `/system/plugins…`

use std::time::{Duration, Instant};

use actix_web::http::header::ContentType;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use nebula_plugin_api::{JsonObject, SyncRequest};
use serde::Deserialize;
use serde_json::json;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{Body, PluginName, QueryParams};
use crate::state::AppState;

pub(crate) async fn list(
    state: web::Data<AppState>,
    _caller: Caller,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(state.plugin_list_body()?))
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
    answer_off_worker(deadline, status, name.0, "health", health).await
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
    drop(body);
    if !request.dry_run {
        tracing::info!(caller = %caller.describe(), plugin = %name.0, "real sync requested");
    }
    let deadline = answer_deadline(&state);
    let plugin = name.0.clone();
    let result = state
        .on_engine(|core| async move { core.plugins().sync_users(&plugin, request).await })
        .await?;
    answer_off_worker(deadline, StatusCode::OK, name.0, "result", result).await
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

/// `{"plugin": plugin, key: answer}` as the response. A large answer (the one rule of
/// `nebula_grpc::convert::json_is_large`: over a thousand values or 64 KiB of text) is
/// serialised (and dropped) on actix's blocking pool: it may be megabytes of JSON, and the two
/// HTTP workers must stay free for other requests meanwhile; not ready by `deadline`: 504 (the
/// serialisation is then left to finish on its thread and dropped). A small one, which is
/// most answers (health, a dry run of a few users), is serialised here: microseconds, less
/// than the two thread hops the pool would cost. The answer is moved into the body, not
/// copied (`json!` would copy it through `to_value`).
async fn answer_off_worker(
    deadline: Instant,
    status: StatusCode,
    plugin: String,
    key: &'static str,
    answer: JsonObject,
) -> Result<HttpResponse, ApiError> {
    let name = plugin.clone();
    let large = nebula_grpc::convert::json_is_large(&answer);
    let serialise = move || {
        let mut body = JsonObject::new();
        body.insert("plugin".to_owned(), plugin.into());
        body.insert(key.to_owned(), answer.into());
        serde_json::to_vec(&body)
    };
    let serialised = if large {
        let serialise_and_trim = move || {
            let serialised = serialise();
            // The request and the answer are gone by now (the plugin consumed one, `serialise`
            // dropped the other): a large call is the moment memory can go back.
            crate::memory::release_free_memory();
            serialised
        };
        tokio::time::timeout_at(deadline.into(), web::block(serialise_and_trim))
            .await
            .map_err(|_| {
                ApiError::Timeout(format!(
                    "plugin '{name}': the answer was too large to be sent within the call timeout"
                ))
            })?
            .map_err(|e| ApiError::Internal(format!("cannot serialise the answer: {e}")))?
    } else {
        serialise()
    };
    let bytes =
        serialised.map_err(|e| ApiError::Internal(format!("cannot serialise the answer: {e}")))?;
    Ok(HttpResponse::build(status)
        .content_type(ContentType::json())
        .body(bytes))
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
