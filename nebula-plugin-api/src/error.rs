//! The one error type plugins and hosts exchange.

use crate::Scope;

/// What went wrong, coarsely: enough for a server to choose a status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The caller's input was invalid (422).
    InvalidInput,
    /// The plugin lacks a scope, or asked for something plugins may never do (403 to the plugin).
    PermissionDenied,
    /// A named thing does not exist (404).
    NotFound,
    /// A dependency (a remote peer, the database) could not be reached (502/503).
    Unavailable,
    /// The operation did not finish in time (504).
    Timeout,
    /// Anything else (500).
    Internal,
}

/// The error a plugin or a host returns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginError {
    /// Input failed validation; the text names the field.
    #[error("{0}")]
    InvalidInput(String),
    /// The plugin called a helper without the scope it needs.
    #[error("plugin '{plugin}' lacks scope '{scope}'")]
    MissingScope {
        /// The calling plugin.
        plugin: String,
        /// The scope it needed.
        scope: Scope,
    },
    /// The plugin asked for something no plugin may do.
    #[error("{0}")]
    Forbidden(String),
    /// A named thing does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A dependency could not be reached.
    #[error("{0}")]
    Unavailable(String),
    /// The operation timed out.
    #[error("{0}")]
    Timeout(String),
    /// Anything else.
    #[error("{0}")]
    Internal(String),
}

impl PluginError {
    /// The coarse kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            PluginError::InvalidInput(_) => ErrorKind::InvalidInput,
            PluginError::MissingScope { .. } | PluginError::Forbidden(_) => {
                ErrorKind::PermissionDenied
            }
            PluginError::NotFound(_) => ErrorKind::NotFound,
            PluginError::Unavailable(_) => ErrorKind::Unavailable,
            PluginError::Timeout(_) => ErrorKind::Timeout,
            PluginError::Internal(_) => ErrorKind::Internal,
        }
    }

    /// Shorthand for [`PluginError::InvalidInput`].
    pub fn invalid(message: impl Into<String>) -> Self {
        PluginError::InvalidInput(message.into())
    }

    /// Shorthand for [`PluginError::Internal`].
    pub fn internal(message: impl Into<String>) -> Self {
        PluginError::Internal(message.into())
    }
}
