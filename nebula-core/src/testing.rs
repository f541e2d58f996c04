//! A test kit for plugin authors (feature `testing`): run a plugin against the real engine —
//! SQLite in a temporary directory, the manager's timeouts, scope grants and settings — call
//! it the way the server does, and assert on what it wrote.
//!
//! In a plugin crate's `Cargo.toml`:
//!
//! ```toml
//! [dev-dependencies]
//! nebula-core = { workspace = true, features = ["testing"] }
//! tokio = { workspace = true }
//! ```
//!
//! and a test (the plugin crate's own registration makes it findable by name):
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use nebula_core::testing::TestEngine;
//! use nebula_plugin_api::{json_object, SyncUser};
//!
//! let engine = TestEngine::builder("csv_import")
//!     .settings(json_object!({"path": "tests/users.csv", "db_name": "acme"}))
//!     .start()
//!     .await?;
//! let answer = engine.sync(Vec::new()).await?;
//! assert_eq!(answer["created"], 2);
//! assert_eq!(engine.users("acme").await?.len(), 2);
//! assert_eq!(engine.events().await?[0].name, "plugin.csv_import.sync.started");
//! # Ok(()) }
//! ```
//!
//! For unit tests without any engine, see `nebula_plugin_api::testing::RecordingHost`.

use std::collections::BTreeMap;

use nebula_plugin_api::{DirectoryUser, IdentityRole, JsonObject, Scope, SyncRequest, SyncUser};

pub use crate::test_database::{TestDatabase, POSTGRES_URL_ENV};

use crate::config::PluginSettings;
use crate::events::MAX_EVENT_PAGE;
use crate::{
    CoreError, Event, LogLine, ManagerError, NebulaConfig, NebulaCore, PluginDescriptor,
    PluginRecord, StorageError,
};

/// Why a test engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum TestEngineError {
    /// No plugin of that name is linked into the test binary.
    #[error(
        "no plugin named '{0}' is linked into this test binary \
         (is the plugin crate a dependency, and registered with register_plugin!?)"
    )]
    NotLinked(String),
    /// The temporary directory could not be made.
    #[error("cannot create a temporary directory: {0}")]
    TempDir(#[from] std::io::Error),
    /// The engine did not build.
    #[error(transparent)]
    Core(#[from] CoreError),
}

/// How to start a [`TestEngine`].
#[derive(Debug)]
pub struct TestEngineBuilder {
    plugin: String,
    descriptor: Option<PluginDescriptor>,
    config: NebulaConfig,
    database_url: Option<String>,
}

impl TestEngineBuilder {
    /// The plugin's `[plugins.settings.<name>]` table.
    pub fn settings(mut self, settings: JsonObject) -> Self {
        self.config
            .plugins
            .settings
            .insert(self.plugin.clone(), PluginSettings(settings));
        self
    }

    /// Grants only these scopes (`plugins.grants`); by default the plugin holds what it
    /// declares.
    pub fn grant(mut self, scopes: &[Scope]) -> Self {
        let names = scopes.iter().map(|s| s.as_str().to_owned()).collect();
        self.config
            .plugins
            .grants
            .insert(self.plugin.clone(), names);
        self
    }

    /// The call timeout, seconds (default 10, as in the server).
    pub fn call_timeout_sec(mut self, seconds: f64) -> Self {
        self.config.plugins.call_timeout_sec = seconds;
        self
    }

    /// Runs on this database (for example a [`TestDatabase`]'s `url()`, to run a test on
    /// each backend with `nebula_core::each_backend!`) instead of a fresh SQLite file. The
    /// caller keeps the database alive for as long as the engine.
    pub fn database_url(mut self, url: impl Into<String>) -> Self {
        self.database_url = Some(url.into());
        self
    }

    /// Runs this plugin instead of the linked one of the same name (for a plugin built by
    /// hand, for example with a fake upstream).
    pub fn descriptor(mut self, descriptor: PluginDescriptor) -> Self {
        self.plugin = descriptor.manifest.name.clone();
        self.descriptor = Some(descriptor);
        self
    }

    /// Opens a fresh SQLite database in a temporary directory (or the one given to
    /// [`database_url`](Self::database_url)) and loads the plugin alone (no other linked
    /// plugin, no health monitor: a test calls [`TestEngine::health`] itself).
    pub async fn start(self) -> Result<TestEngine, TestEngineError> {
        let descriptor = match self.descriptor {
            Some(d) => d,
            None => linked(&self.plugin).ok_or(TestEngineError::NotLinked(self.plugin.clone()))?,
        };
        let dir = tempfile::tempdir()?;
        let mut config = self.config;
        config.database.url = self
            .database_url
            .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("nebula.db").display()));
        let core = NebulaCore::builder()
            .config(config)
            .without_inventory()
            .without_health_monitor()
            .plugin(descriptor)
            .build()
            .await?;
        Ok(TestEngine {
            core,
            plugin: self.plugin,
            _dir: dir,
        })
    }
}

/// The plugin registered under `name` in the running binary.
fn linked(name: &str) -> Option<PluginDescriptor> {
    let (registration, manifest) = nebula_plugin_api::registered_plugin(name)?;
    Some(PluginDescriptor::in_process(
        manifest,
        registration.factory(),
        registration.origin(),
    ))
}

/// One plugin on a real engine with a temporary database. Dropping it removes the database.
#[derive(Debug)]
pub struct TestEngine {
    core: NebulaCore,
    plugin: String,
    _dir: tempfile::TempDir,
}

impl TestEngine {
    /// A builder for the linked plugin `name`.
    pub fn builder(name: &str) -> TestEngineBuilder {
        TestEngineBuilder {
            plugin: name.to_owned(),
            descriptor: None,
            config: NebulaConfig::default(),
            database_url: None,
        }
    }

    /// The linked plugin `name` with no settings and its declared scopes.
    pub async fn start(name: &str) -> Result<TestEngine, TestEngineError> {
        Self::builder(name).start().await
    }

    /// The engine, for anything the kit does not wrap.
    pub fn core(&self) -> &NebulaCore {
        &self.core
    }

    /// The plugin's record, as `GET /system/plugins` shows it.
    pub fn record(&self) -> Result<PluginRecord, ManagerError> {
        self.core.plugins().record(&self.plugin)
    }

    /// `health`, as `GET …/health` calls it.
    pub async fn health(&self) -> Result<JsonObject, ManagerError> {
        self.core.plugins().health(&self.plugin).await
    }

    /// A sync with exactly this request, as `POST …/sync-users` makes it.
    pub async fn call(&self, request: SyncRequest) -> Result<JsonObject, ManagerError> {
        self.core.plugins().sync_users(&self.plugin, request).await
    }

    /// A dry run of `users` (an empty list sends no `users`, for plugins that read their own).
    pub async fn dry_run(&self, users: Vec<SyncUser>) -> Result<JsonObject, ManagerError> {
        self.call(request(true, users)).await
    }

    /// A real run of `users` (an empty list sends no `users`, for plugins that read their own).
    pub async fn sync(&self, users: Vec<SyncUser>) -> Result<JsonObject, ManagerError> {
        self.call(request(false, users)).await
    }

    /// The users of a tenant (`acme` or `acme.db`), ordered by username.
    pub async fn users(&self, db_name: &str) -> Result<Vec<DirectoryUser>, StorageError> {
        let db_name = nebula_plugin_api::normalize_db_name(db_name)
            .map_err(|e| StorageError::NotFound(e.to_string()))?;
        self.core.directory().list_users(&db_name, 2000, 0).await
    }

    /// Identity roles, ordered by name.
    pub async fn roles(&self) -> Result<Vec<IdentityRole>, StorageError> {
        self.core.directory().list_roles().await
    }

    /// The plugin's own events (`plugin.<name>.…`), oldest first.
    pub async fn events(&self) -> Result<Vec<Event>, StorageError> {
        let prefix = format!("plugin.{}.", self.plugin);
        let mut events = self.core.events().list(&prefix, MAX_EVENT_PAGE).await?;
        events.reverse();
        Ok(events)
    }

    /// The plugin's log lines, oldest first.
    pub fn logs(&self) -> Vec<LogLine> {
        self.core
            .logs()
            .tail(&self.plugin, crate::logs::MAX_LOG_LINES)
    }

    /// Shuts the plugin down (bounded), as the server does when it stops.
    pub async fn shutdown(self) {
        self.core.shutdown().await;
    }

    /// Event counts by name, for quick assertions (`{"plugin.x.sync.finished": 1}`).
    pub async fn event_counts(&self) -> Result<BTreeMap<String, usize>, StorageError> {
        let mut counts = BTreeMap::new();
        for event in self.events().await? {
            *counts.entry(event.name).or_insert(0) += 1;
        }
        Ok(counts)
    }
}

fn request(dry_run: bool, users: Vec<SyncUser>) -> SyncRequest {
    SyncRequest {
        dry_run,
        users: (!users.is_empty()).then_some(users),
        ..SyncRequest::default()
    }
}

/// The plugin's own error inside a failed call (`ManagerError::Call` with
/// `CallFailure::Error`), for a test that expects the plugin to refuse. Panics, naming what
/// came back, on any other failure (a timeout, a panic, an unknown plugin).
pub fn plugin_error(err: ManagerError) -> nebula_plugin_api::PluginError {
    match err {
        ManagerError::Call {
            failure: crate::manager::CallFailure::Error(e),
            ..
        } => e,
        other => panic!("expected the plugin's error, got {other}"),
    }
}
