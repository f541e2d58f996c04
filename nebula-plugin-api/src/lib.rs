//! The plugin API of Nebula Core (`plugin_api_v1`).
//!
//! This crate is everything a plugin author depends on, and nothing more: no database, web or
//! gRPC crate is reachable from here. A whole in-process plugin is a manifest, a struct, an
//! `impl Plugin` and one [`register_plugin!`] line:
//!
//! ```
//! use nebula_plugin_api::{async_trait, json_object, register_plugin, JsonObject, Plugin,
//!     PluginContext, PluginError, SyncRequest};
//!
//! #[derive(Default)]
//! struct Hello;
//!
//! #[async_trait]
//! impl Plugin for Hello {
//!     async fn initialize(&self, _ctx: PluginContext) -> Result<(), PluginError> {
//!         Ok(())
//!     }
//!     async fn health(&self) -> Result<JsonObject, PluginError> {
//!         Ok(json_object!({"status": "ok"}))
//!     }
//!     async fn sync_users(&self, request: SyncRequest) -> Result<JsonObject, PluginError> {
//!         Ok(json_object!({"status": "ok", "count": request.users.map_or(0, |u| u.len())}))
//!     }
//! }
//!
//! register_plugin!(
//!     r#"{"name": "hello", "version": "0.1.0", "description": "Says hello",
//!         "api_version": "v1", "scopes": ["users.read"]}"#,
//!     || Box::new(Hello)
//! );
//! # fn main() {}
//! ```
//!
//! A plugin crate usually keeps its manifest as `plugin.json` beside its `Cargo.toml` and
//! registers with `register_plugin!(Hello, manifest = "plugin.json")` (or just
//! `register_plugin!(Hello)`, for a type that implements `Default`). The manifest is then read
//! and checked when the crate compiles ([`plugin_manifest!`]): a misspelled scope, a bad name, a
//! wrong `api_version` or malformed JSON is a compile error naming the file and the problem. An
//! inline manifest, as above, is checked at run time only.
//!
//! The host (the core engine, or a gRPC bridge) gives each plugin a [`PluginContext`] on
//! `initialize`. The context checks the plugin's granted scopes and validates its arguments, then
//! forwards to a [`Host`] trait object, so the same plugin runs against any host.
//!
//! Feature `host` (for hosts, not plugin authors; it pulls in tokio) adds what every host
//! shares: the call guard (`guard::guarded`) and the constant-time token check
//! (`token::tokens_match`).

#![warn(missing_docs)]

mod context;
mod error;
mod identity;
mod manifest;
mod manifest_rules;
mod plugin;
mod registration;
mod request;
mod scope;
mod text;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

// For hosts (the engine, the gRPC serve helper), not plugin authors: pulls in tokio.
#[cfg(feature = "host")]
pub mod guard;
#[cfg(feature = "host")]
pub mod request_id;
#[cfg(feature = "host")]
pub mod token;

pub use context::{trace_plugin_log, ContextCell, Host, LogLevel, PluginContext};
pub use error::{ErrorKind, PluginError};
pub use identity::{
    normalize_db_name, normalize_email, normalize_role_tag, validate_username, DirectoryUser,
    IdentityRole, SyncOutcome, MAX_USERNAME_CHARS, SYSTEM_DB_NAME,
};
pub use manifest::{validate_plugin_name, PluginManifest};
pub use manifest_rules::PLUGIN_API_VERSION;
pub use plugin::{JsonObject, Plugin};
pub use registration::{registered_plugin, registered_plugins, PluginFactory, PluginRegistration};
pub use request::{
    parse_json_object, SyncRequest, SyncUser, MAX_SYNC_LIMIT, MAX_USERS_PER_REQUEST,
};
pub use scope::{Scope, ScopeSet};
pub use text::escape_control;

// Re-exported so a plugin crate needs this crate alone.
pub use async_trait::async_trait;
#[doc(hidden)]
pub use inventory;
pub use nebula_plugin_macros::plugin_manifest;
pub use serde_json;

/// Builds a [`JsonObject`] from a `serde_json::json!` object literal.
///
/// A literal that is not an object yields an empty map; use it for object literals only.
#[macro_export]
macro_rules! json_object {
    ($($tt:tt)+) => {
        match $crate::serde_json::json!($($tt)+) {
            $crate::serde_json::Value::Object(map) => map,
            _ => $crate::JsonObject::new(),
        }
    };
}
