//! Why a manager operation failed.

use super::{CallFailure, Method, PluginStatus};
use crate::storage::StorageError;

/// Why a manager operation failed. The server maps each variant to one status code.
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    /// No plugin has this name.
    #[error("plugin '{0}' not found")]
    NotFound(String),
    /// The plugin is disabled.
    #[error("plugin '{0}' is disabled")]
    Disabled(String),
    /// A real sync of this plugin is already running.
    #[error("sync already in progress")]
    SyncInProgress(String),
    /// The plugin has no working instance (it failed to load or initialise).
    #[error("plugin '{name}' is not available ({status}): {error}")]
    NotReady {
        /// The plugin.
        name: String,
        /// Its state.
        status: PluginStatus,
        /// Why.
        error: String,
    },
    /// The call failed, panicked or timed out: the one failure type of a plugin call.
    #[error("plugin '{name}' {}", failure.describe(*method))]
    Call {
        /// The plugin.
        name: String,
        /// The method.
        method: Method,
        /// What went wrong.
        failure: CallFailure,
    },
    /// The plugin-state table could not be read or written.
    #[error(transparent)]
    Storage(#[from] StorageError),
}
