//! The manager's settings, taken from `[plugins]`.

use std::collections::BTreeMap;
use std::time::Duration;

use nebula_plugin_api::{JsonObject, ScopeSet};

use super::state::Thresholds;
use crate::config::{PluginSettings, PluginsConfig};

/// Timeouts, thresholds and grants, taken from `[plugins]`.
#[derive(Debug, Clone)]
pub struct ManagerSettings {
    /// Bound on `initialize` (factory included).
    pub init_timeout: Duration,
    /// Bound on `health`, `sync_users` and `shutdown`.
    pub call_timeout: Duration,
    /// Consecutive timeouts that make a plugin unresponsive (and restart it).
    pub timeout_restart_threshold: u32,
    /// Consecutive failed health checks that restart a plugin.
    pub health_restart_threshold: u32,
    /// Automatic restarts before a plugin is disabled.
    pub max_restarts: u32,
    /// Consecutive crashes before a plugin is disabled.
    pub max_crashes: u32,
    /// Period of the health monitor.
    pub health_interval: Duration,
    /// Period of the enabled-flag poll (other instances' stops and starts).
    pub state_poll_interval: Duration,
    /// SIGTERM-to-SIGKILL grace of a process plugin: its `shutdown` is given this much more
    /// than the call timeout when longer.
    pub process_shutdown_grace: Duration,
    /// Operator grants: plugin name → scopes; absent names keep their declared scopes.
    pub grants: BTreeMap<String, ScopeSet>,
    /// Plugin name → its `[plugins.settings.<name>]` table, handed to it through its context.
    pub plugin_settings: BTreeMap<String, PluginSettings>,
}

impl ManagerSettings {
    /// Settings from the `[plugins]` section.
    pub fn from_config(config: &PluginsConfig) -> Self {
        let grants = config
            .grants
            .iter()
            .map(|(name, scopes)| {
                let owner = format!("plugins.grants.{name}");
                (name.clone(), ScopeSet::parse_lossy(&owner, scopes).0)
            })
            .collect();
        ManagerSettings {
            init_timeout: config.init_timeout(),
            call_timeout: config.call_timeout(),
            timeout_restart_threshold: config.timeout_restart_threshold,
            health_restart_threshold: config.health_restart_threshold,
            max_restarts: config.max_restarts,
            max_crashes: config.max_crashes,
            health_interval: config.health_interval(),
            state_poll_interval: config.state_poll_interval(),
            process_shutdown_grace: config.process.shutdown_grace(),
            grants,
            plugin_settings: config.settings.clone(),
        }
    }

    pub(super) fn thresholds(&self) -> Thresholds {
        Thresholds {
            timeout_restart_threshold: self.timeout_restart_threshold,
            health_restart_threshold: self.health_restart_threshold,
            max_restarts: self.max_restarts,
            max_crashes: self.max_crashes,
        }
    }

    /// The settings of plugin `name` (an empty object when none are configured).
    pub fn settings_of(&self, name: &str) -> JsonObject {
        self.plugin_settings
            .get(name)
            .map(|s| s.0.clone())
            .unwrap_or_default()
    }

    /// The scopes a plugin gets: declared ∩ v1 ∩ granted (`plugins.grants`; a plugin not
    /// named there keeps what it declares).
    pub fn effective_scopes(&self, manifest: &nebula_plugin_api::PluginManifest) -> ScopeSet {
        let declared = manifest.declared_scopes();
        match self.grants.get(&manifest.name) {
            Some(granted) => declared.intersection(granted),
            None => declared,
        }
    }
}
