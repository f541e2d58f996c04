//! What every handler shares, and the bridge to the engine's runtime.

use std::future::Future;

use nebula_core::auth::{Authenticator, WebOrigin};
use nebula_core::NebulaCore;

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
        }
    }

    /// The same state with `server.public_origin` set.
    pub fn with_public_origin(mut self, origin: Option<WebOrigin>) -> Self {
        self.public_origin = origin;
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
        self.runtime
            .spawn(work)
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
