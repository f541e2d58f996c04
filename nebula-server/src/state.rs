//! What every handler shares, and the bridge to the engine's runtime.

use std::future::Future;
use std::sync::Arc;

use actix_web::web::Bytes;

use nebula_core::auth::{Authenticator, WebOrigin};
use nebula_core::NebulaCore;
use tracing::Instrument;

use crate::error::ApiError;

/// Shared by all workers (`web::Data<AppState>`).
#[derive(Clone)]
pub struct AppState {
    /// The engine.
    pub core: NebulaCore,
    /// Token and session checks.
    pub auth: Authenticator,
    /// The engine's own multi-threaded runtime.
    runtime: tokio::runtime::Handle,
    /// Mark the session cookie `Secure`.
    pub cookie_secure: bool,
    /// `server.public_origin`: the origin cookie-authenticated state changes must come from;
    /// `None`: the one of the `Host` each request was sent to.
    pub public_origin: Option<WebOrigin>,
    /// `server.metrics_public`: `GET /metrics` without credentials.
    pub metrics_public: bool,
    /// The last answer of `GET /system/plugins` and the `list_version` it was made at.
    plugin_list: Arc<parking_lot::Mutex<Option<(u64, Bytes)>>>,
}

impl AppState {
    /// State over an engine that runs on `runtime`.
    pub fn new(
        core: NebulaCore,
        auth: Authenticator,
        runtime: tokio::runtime::Handle,
        cookie_secure: bool,
    ) -> Self {
        AppState {
            core,
            auth,
            runtime,
            cookie_secure,
            public_origin: None,
            metrics_public: false,
            plugin_list: Arc::default(),
        }
    }

    /// The body of `GET /system/plugins`, from a snapshot while the list has not changed
    /// (`PluginManager::list_version`): the list is asked for far more often (panels poll
    /// it) than it changes, and rebuilding it takes every plugin's lock and a serialisation.
    pub fn plugin_list_body(&self) -> Result<Bytes, ApiError> {
        let plugins = self.core.plugins();
        let version = plugins.list_version();
        if let Some((made_at, body)) = &*self.plugin_list.lock() {
            if *made_at == version {
                return Ok(body.clone());
            }
        }
        let body = serde_json::to_vec(&crate::openapi::PluginList {
            plugins: plugins.list(),
        })
        .map(Bytes::from)
        .map_err(|e| ApiError::Internal(format!("could not serialise the plugin list: {e}")))?;
        // A slower rebuild from an older version must not replace a newer one.
        let mut cached = self.plugin_list.lock();
        if cached
            .as_ref()
            .is_none_or(|(made_at, _)| *made_at <= version)
        {
            *cached = Some((version, body.clone()));
        }
        Ok(body)
    }

    /// The same state with `server.public_origin` set.
    pub fn with_public_origin(mut self, origin: Option<WebOrigin>) -> Self {
        self.public_origin = origin;
        self
    }

    /// The same state with `server.metrics_public` set.
    pub fn with_metrics_public(mut self, public: bool) -> Self {
        self.metrics_public = public;
        self
    }

    /// Runs engine work on the engine's runtime, not on the HTTP worker.
    ///
    /// actix workers are single-threaded; plugin code runs on the engine runtime instead, so a
    /// plugin that misbehaves (even one that blocks its thread) cannot stall HTTP handling.
    pub async fn on_core<F>(&self, work: F) -> Result<F::Output, ApiError>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        // In the request's span and with its id: the engine's log lines, the plugin's own
        // among them, carry it, and calls to out-of-process plugins send it on.
        let request_id = nebula_plugin_api::request_id::current_request_id();
        self.runtime
            .spawn(
                nebula_plugin_api::request_id::with_request_id(request_id, work).in_current_span(),
            )
            .await
            .map_err(|e| ApiError::Internal(format!("engine task failed: {e}")))
    }

    /// Runs `work` with the engine on the engine's runtime ([`AppState::on_core`]), its error
    /// mapped through [`ApiError`]: the one shape of a handler's engine call.
    pub async fn on_engine<T, E, F, Fut>(&self, work: F) -> Result<T, ApiError>
    where
        F: FnOnce(NebulaCore) -> Fut,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Into<ApiError> + Send + 'static,
    {
        self.on_core(work(self.core.clone()))
            .await?
            .map_err(Into::into)
    }
}
