//! The `Plugin` trait.

use crate::{PluginContext, PluginError, SyncRequest};

/// A JSON object: what `health` and `sync_users` answer, so that in-process and gRPC plugins
/// return the same shapes.
pub type JsonObject = serde_json::Map<String, serde_json::Value>;

/// A Nebula Core plugin.
///
/// Methods take `&self` because the host may call `health` while a `sync_users` is still
/// running; keep mutable state behind a lock or in a `OnceLock` (the usual home of the context).
/// Every call is bounded by a host timeout and runs in its own task: a panic or a hang marks the
/// plugin, never the host. Do not block the thread (no `std::thread::sleep`, no blocking I/O):
/// a timed-out call is cancelled at its next `.await`.
#[crate::async_trait]
pub trait Plugin: Send + Sync + 'static {
    /// Called once per instance before any other method, with the plugin's scoped context.
    async fn initialize(&self, ctx: PluginContext) -> Result<(), PluginError>;

    /// Reports health. `{"status": "ok"}` means healthy; any other status means degraded.
    async fn health(&self) -> Result<JsonObject, PluginError>;

    /// Synchronises users. The request is already validated.
    async fn sync_users(&self, request: SyncRequest) -> Result<JsonObject, PluginError>;

    /// Called when the plugin is stopped, restarted or the host shuts down.
    async fn shutdown(&self) -> Result<(), PluginError> {
        Ok(())
    }
}
