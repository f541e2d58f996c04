//! Why a manager operation failed.

use std::time::Duration;

use nebula_plugin_api::PluginError;

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
    /// The call did not finish in time.
    #[error("plugin '{name}' {method} timed out after {:.3}s", after.as_secs_f64())]
    Timeout {
        /// The plugin.
        name: String,
        /// The method.
        method: Method,
        /// The bound that elapsed.
        after: Duration,
    },
    /// The plugin panicked.
    #[error("plugin '{name}' panicked in {method}: {message}")]
    Panicked {
        /// The plugin.
        name: String,
        /// The method.
        method: Method,
        /// The panic message.
        message: String,
    },
    /// The plugin returned an error.
    #[error("plugin '{name}' {method} failed: {source}")]
    Plugin {
        /// The plugin.
        name: String,
        /// The method.
        method: Method,
        /// What it returned.
        source: PluginError,
    },
    /// The plugin-state table could not be read or written.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl ManagerError {
    pub(super) fn from_failure(name: &str, method: Method, failure: CallFailure) -> Self {
        let name = name.to_owned();
        match failure {
            CallFailure::Error(source) => ManagerError::Plugin {
                name,
                method,
                source,
            },
            CallFailure::Panicked(message) => ManagerError::Panicked {
                name,
                method,
                message,
            },
            CallFailure::TimedOut(after) => ManagerError::Timeout {
                name,
                method,
                after,
            },
        }
    }
}
