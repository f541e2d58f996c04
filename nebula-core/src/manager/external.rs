//! `[[plugins.external]]`: plugins reached over the network, re-read on every rescan.
//!
//! The engine does not speak gRPC itself; an [`ExternalConnector`] (the server wires in
//! `nebula-grpc`) turns a configured entry into a plugin constructor.

use std::path::PathBuf;
use std::sync::Arc;

use nebula_plugin_api::{PluginManifest, PLUGIN_API_VERSION};
use parking_lot::Mutex;

use super::discovery::{DiscoveryError, PluginConstructor, PluginDescriptor, PluginProvider};
use super::PluginSource;
use crate::config::{ExternalPluginConfig, NebulaConfig};

/// Turns a configured external plugin into a constructor of plugin instances.
pub trait ExternalConnector: Send + Sync {
    /// A constructor for `entry`; `config` is the configuration it was read from (timeouts,
    /// `allow_remote_grpc`, message limits).
    fn constructor(&self, entry: &ExternalPluginConfig, config: &NebulaConfig)
        -> PluginConstructor;
}

/// Lists the configured external plugins, re-reading the configuration file on each discovery
/// so that a rescan picks up added, removed and changed entries without a restart.
pub struct ExternalPluginsProvider {
    file: Option<PathBuf>,
    last_good: Mutex<NebulaConfig>,
    connector: Option<Arc<dyn ExternalConnector>>,
}

impl ExternalPluginsProvider {
    /// A provider starting from `config`, re-reading `file` (if any) on every discovery.
    pub fn new(
        config: NebulaConfig,
        file: Option<PathBuf>,
        connector: Option<Arc<dyn ExternalConnector>>,
    ) -> Self {
        ExternalPluginsProvider {
            file,
            last_good: Mutex::new(config),
            connector,
        }
    }

    /// The configuration to use now: the start-up configuration with the external list
    /// re-read from the file (or the last good list if the file became invalid: a broken edit
    /// must not unload every external plugin). Only the list changes on a rescan; timeouts and
    /// `allow_remote_grpc` stay as the manager started with, so a plugin's gRPC deadline always
    /// matches the manager's own.
    fn current(&self) -> NebulaConfig {
        let mut config = self.last_good.lock().clone();
        if let Some(file) = &self.file {
            match NebulaConfig::load_from(Some(file), std::env::vars()) {
                Ok(fresh) => {
                    config.plugins.external = fresh.plugins.external;
                    *self.last_good.lock() = config.clone();
                }
                Err(e) => tracing::error!(
                    error = %e,
                    "configuration not re-read; keeping the previous external plugin list"
                ),
            }
        }
        config
    }
}

impl PluginProvider for ExternalPluginsProvider {
    fn discover(&self) -> Vec<Result<PluginDescriptor, DiscoveryError>> {
        let config = self.current();
        config
            .plugins
            .external
            .iter()
            .map(|entry| {
                let Some(connector) = &self.connector else {
                    return Err(DiscoveryError {
                        name: Some(entry.name.clone()),
                        origin: entry.endpoint.clone(),
                        message: "external plugins need a gRPC connector; this build has none"
                            .into(),
                    });
                };
                Ok(PluginDescriptor {
                    manifest: PluginManifest {
                        name: entry.name.clone(),
                        version: entry.version.clone().unwrap_or_else(|| "unknown".into()),
                        description: entry
                            .description
                            .clone()
                            .unwrap_or_else(|| format!("external plugin at {}", entry.endpoint)),
                        api_version: PLUGIN_API_VERSION.into(),
                        scopes: entry.scopes.clone(),
                    },
                    source: PluginSource::Grpc,
                    origin: entry.endpoint.clone(),
                    constructor: connector.constructor(entry, &config),
                    fingerprint: None,
                })
            })
            .collect()
    }
}
