//! The Nebula Core engine, usable as a library without HTTP.
//!
//! ```no_run
//! # async fn run() -> Result<(), nebula_core::CoreError> {
//! use nebula_core::{NebulaConfig, NebulaCore};
//!
//! let config = NebulaConfig::load(None)?.config;
//! let core = NebulaCore::builder().config(config).build().await?;
//! for plugin in core.plugins().list() {
//!     println!("{} {}", plugin.name, plugin.status);
//! }
//! let health = core.plugins().health("sample_sync").await?;
//! core.shutdown().await;
//! # let _ = health; Ok(()) }
//! ```
//!
//! [`NebulaCore`] owns the storage pool, the [`IdentityDirectory`], the [`EventBus`] and the
//! [`PluginManager`]; each is cheap to clone or share and safe to use from many tasks.

#![warn(missing_docs)]

pub mod accounts;
pub mod auth;
pub mod config;
pub mod directory;
pub mod events;
pub mod host;
pub mod logs;
pub mod manager;
pub mod metrics;
pub mod storage;
#[cfg(feature = "testing")]
pub mod testing;
// Public (hidden) for `each_backend!`; its users see it as `testing::TestDatabase`.
#[cfg(any(test, feature = "testing"))]
#[doc(hidden)]
pub mod test_database;

use std::path::PathBuf;
use std::sync::Arc;

pub use config::{ConfigError, LoadedConfig, NebulaConfig};
pub use directory::IdentityDirectory;
pub use events::{Event, EventBus};
pub use host::CoreHost;
pub use logs::{LogLine, PluginLogs};
pub use manager::{
    ExternalConnector, HostAccess, HostServiceLink, HostTokenRegistry, InstanceSetup,
    InstanceWatch, ManagerError, PluginDescriptor, PluginManager, PluginProvider, PluginRecord,
    PluginSource, PluginStatus, ProcessConnector, ProcessPluginSpec,
};
pub use metrics::Metrics;
pub use storage::{Database, StorageError};

use manager::{
    ExternalPluginsProvider, InventoryProvider, ManagerParts, ManagerSettings,
    ProcessPluginsProvider, StaticProvider,
};

/// Why the engine could not be built.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The database could not be opened or migrated.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A plugin operation failed.
    #[error(transparent)]
    Manager(#[from] ManagerError),
}

/// The running engine.
#[derive(Debug, Clone)]
pub struct NebulaCore {
    database: Database,
    directory: IdentityDirectory,
    events: EventBus,
    plugins: Arc<PluginManager>,
    logs: Arc<PluginLogs>,
    metrics: Metrics,
    monitor: Option<Arc<MonitorHandle>>,
}

/// Aborts the background tasks (health monitor, state poll) when the last engine clone goes
/// away.
#[derive(Debug)]
struct MonitorHandle(Vec<tokio::task::JoinHandle<()>>);

impl MonitorHandle {
    fn abort(&self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

impl Drop for MonitorHandle {
    fn drop(&mut self) {
        self.abort();
    }
}

impl NebulaCore {
    /// Starts building an engine.
    pub fn builder() -> NebulaCoreBuilder {
        NebulaCoreBuilder::default()
    }

    /// The storage pool.
    pub fn database(&self) -> &Database {
        &self.database
    }

    /// Users, identity roles and identity tags.
    pub fn directory(&self) -> &IdentityDirectory {
        &self.directory
    }

    /// Stored events: publish and list.
    pub fn events(&self) -> &EventBus {
        &self.events
    }

    /// The plugin manager.
    pub fn plugins(&self) -> &Arc<PluginManager> {
        &self.plugins
    }

    /// The last lines each plugin wrote through `ctx.log`.
    pub fn logs(&self) -> &Arc<PluginLogs> {
        &self.logs
    }

    /// The service's metrics (`metrics` module).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Every metric in the Prometheus text format, the plugin states and the pool read now.
    pub fn render_metrics(&self) -> Result<String, String> {
        self.metrics
            .render(&self.plugins.list(), self.database.pool_state())
    }

    /// Stops the health monitor and shuts every plugin down (bounded, in parallel). The storage
    /// closes when the last clone of the engine is dropped.
    pub async fn shutdown(&self) {
        if let Some(monitor) = &self.monitor {
            monitor.abort();
        }
        self.plugins.shutdown().await;
    }
}

/// Builds a [`NebulaCore`].
#[derive(Default)]
pub struct NebulaCoreBuilder {
    config: Option<NebulaConfig>,
    extra: Vec<PluginDescriptor>,
    skip_inventory: bool,
    without_monitor: bool,
    config_file: Option<PathBuf>,
    connector: Option<Arc<dyn ExternalConnector>>,
    host_service: Option<HostServiceLink>,
    providers: Vec<Arc<dyn PluginProvider>>,
    process_connector: Option<Arc<dyn ProcessConnector>>,
    instance_id: Option<String>,
}

impl NebulaCoreBuilder {
    /// Uses this configuration (default: [`NebulaConfig::default`]).
    pub fn config(mut self, config: NebulaConfig) -> Self {
        self.config = Some(config);
        self
    }

    /// The file the configuration came from; rescans re-read its `[[plugins.external]]` list.
    pub fn config_file(mut self, file: Option<PathBuf>) -> Self {
        self.config_file = file;
        self
    }

    /// How to reach `[[plugins.external]]` entries (the server passes the gRPC connector).
    /// Without one, configured external plugins are listed as not loadable.
    pub fn external_connector(mut self, connector: Arc<dyn ExternalConnector>) -> Self {
        self.connector = Some(connector);
        self
    }

    /// How to run the process plugins of `plugins.dir` (the server passes `nebula-process`).
    /// Without one, they are listed as not loadable.
    pub fn process_connector(mut self, connector: Arc<dyn ProcessConnector>) -> Self {
        self.process_connector = Some(connector);
        self
    }

    /// The host service the embedder serves (SPEC §8): each instance of an out-of-process
    /// plugin gets a token minted in `link.tokens` and `link.endpoint` to reach it. Serve the
    /// service (`nebula_grpc::host_service`, looking tokens up with
    /// [`HostTokenRegistry::context`]) before `build`, since plugins may call it while they
    /// start. Without it, out-of-process plugins run without a context (their helpers fail
    /// as unavailable).
    pub fn host_service(mut self, link: HostServiceLink) -> Self {
        self.host_service = Some(link);
        self
    }

    /// Adds a plugin built by the embedder, besides those registered through `inventory`.
    pub fn plugin(mut self, descriptor: PluginDescriptor) -> Self {
        self.extra.push(descriptor);
        self
    }

    /// This engine's name among the instances sharing its database (it names the real-sync
    /// leases it holds). Default: the host and the working directory, stable across restarts.
    /// Give each engine its own when several run from one directory.
    pub fn instance_id(mut self, id: impl Into<String>) -> Self {
        self.instance_id = Some(id.into());
        self
    }

    /// Adds a source of plugins of the embedder's own, asked again on every rescan (unlike
    /// [`plugin`](Self::plugin), whose list is fixed).
    pub fn provider(mut self, provider: Arc<dyn PluginProvider>) -> Self {
        self.providers.push(provider);
        self
    }

    /// Ignores plugins registered through `inventory` (only explicit ones are loaded).
    pub fn without_inventory(mut self) -> Self {
        self.skip_inventory = true;
        self
    }

    /// Does not start the background health monitor nor the poll of the shared enabled flags
    /// (tests drive [`PluginManager::check_all`] and
    /// [`PluginManager::follow_shared_state`] themselves).
    pub fn without_health_monitor(mut self) -> Self {
        self.without_monitor = true;
        self
    }

    /// Opens and migrates the database, then discovers and initialises the plugins.
    pub async fn build(self) -> Result<NebulaCore, CoreError> {
        let config = self.config.unwrap_or_default();
        config.validate().map_err(|message| ConfigError::Invalid {
            origin: "builder".into(),
            message,
        })?;
        let database = Database::open_async_with(
            &config.database.url,
            config.database.pool_size,
            config.database.connect_timeout(),
        )
        .await?;
        let metrics = Metrics::new();
        let directory = IdentityDirectory::new(database.clone());
        let events = EventBus::new(database.clone()).with_metrics(metrics.clone());
        let logs = Arc::new(PluginLogs::default());
        let host = Arc::new(
            CoreHost::with_logs(directory.clone(), events.clone(), logs.clone())
                .with_metrics(metrics.clone()),
        );

        let mut providers: Vec<Arc<dyn PluginProvider>> = Vec::new();
        if config.plugins.enabled {
            if !self.skip_inventory {
                providers.push(Arc::new(InventoryProvider));
            }
            if !self.extra.is_empty() {
                providers.push(Arc::new(StaticProvider(self.extra)));
            }
            providers.extend(self.providers);
            if config.plugins.dir.is_some() {
                providers.push(Arc::new(ProcessPluginsProvider::new(
                    config.clone(),
                    self.process_connector,
                )));
            }
            if self.connector.is_some()
                || self.config_file.is_some()
                || !config.plugins.external.is_empty()
            {
                providers.push(Arc::new(ExternalPluginsProvider::new(
                    config.clone(),
                    self.config_file,
                    self.connector,
                )));
            }
        }
        let plugins = PluginManager::new(ManagerParts {
            settings: ManagerSettings::from_config(&config.plugins),
            host,
            database: database.clone(),
            events: events.clone(),
            providers,
            host_service: self.host_service,
            instance_id: self.instance_id,
            metrics: metrics.clone(),
        });
        plugins.rescan().await?;
        // The background tasks: the health monitor, and the poll of the enabled flags other
        // instances on the same database may change.
        let monitor = (!self.without_monitor).then(|| {
            Arc::new(MonitorHandle(vec![
                plugins.spawn_health_monitor(),
                plugins.spawn_state_poll(),
            ]))
        });
        Ok(NebulaCore {
            database,
            directory,
            events,
            plugins,
            logs,
            metrics,
            monitor,
        })
    }
}
