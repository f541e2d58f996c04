//! The plugin manager: discovery, lifecycle, bounded and isolated calls, state.
//!
//! Concurrency rules, which the tests hold it to:
//! - No lock is held across a plugin call. The slot map and each slot's state sit behind
//!   short synchronous locks; a call clones the instance's `Arc` and runs without them, so a
//!   hanging plugin never blocks another plugin, the list, or its own health checks.
//! - Every plugin call runs in its own tokio task under a timeout ([`guarded`]): a panic comes
//!   back as a `JoinError`, a hang as an elapsed timer (the task is then aborted).
//! - Lifecycle changes of one plugin (start, stop, restart, rescan) are serialised by that
//!   plugin's async lifecycle lock; rescans are serialised by the manager's.
//! - Outcomes carry the instance generation they ran against; a late outcome from an instance
//!   that was replaced meanwhile is dropped instead of overwriting the new state.

mod calls;
mod discovery;
mod error;
mod external;
mod host_tokens;
mod instance;
mod lifecycle;
mod monitor;
mod poll;
mod process;
mod record;
mod rescan;
mod settings;
mod slot;
mod state;
mod state_store;
mod stats;
mod watched;

use std::collections::BTreeMap;
use std::sync::Arc;

use nebula_plugin_api::Host;
use parking_lot::RwLock;

pub use discovery::{
    DiscoveryError, InventoryProvider, PluginConstructor, PluginDescriptor, PluginProvider,
    StaticProvider,
};
pub use error::ManagerError;
pub use external::{ExternalConnector, ExternalPluginsProvider};
pub use host_tokens::{HostAccess, HostServiceLink, HostTokenRegistry};
pub use instance::{InstanceSetup, InstanceWatch};
pub use process::{
    read_plugin_dir, ProcessConnector, ProcessPluginSpec, ProcessPluginsProvider, MANIFEST_FILE,
};
// The call guard is shared with the gRPC serve helper, so it lives in the plugin API (feature
// `host`); re-exported here, where the engine's callers have always found it.
pub use nebula_plugin_api::guard::{guarded, CallFailure, Method};
pub use record::{Counters, PluginRecord, PluginSource, PluginStatus};
pub use settings::ManagerSettings;
pub use stats::{MethodSnapshot, PluginStats, ProcessInfo};

use crate::events::EventBus;
use crate::metrics::Metrics;
use crate::storage::Database;
use slot::PluginSlot;
use state_store::PluginStateStore;

/// What the manager needs from the rest of the core.
pub struct ManagerParts {
    /// Settings from `[plugins]`.
    pub settings: ManagerSettings,
    /// What plugin contexts call.
    pub host: Arc<dyn Host>,
    /// Where enabled flags are persisted.
    pub database: Database,
    /// Where state changes are published.
    pub events: EventBus,
    /// Where plugins come from.
    pub providers: Vec<Arc<dyn PluginProvider>>,
    /// The host service the embedder serves, if any: out-of-process instances get a token
    /// from its registry and its endpoint (SPEC §8).
    pub host_service: Option<HostServiceLink>,
    /// This instance's name among those sharing the database (default: host and working
    /// directory).
    pub instance_id: Option<String>,
    /// Where plugin calls and restarts are counted.
    pub metrics: Metrics,
}

/// Discovers, runs and watches plugins. Safe to share between tasks (`Arc<PluginManager>`).
pub struct PluginManager {
    /// Itself, for the tasks it starts (a delayed restart) that must not keep it alive.
    me: std::sync::Weak<PluginManager>,
    settings: ManagerSettings,
    host: Arc<dyn Host>,
    store: PluginStateStore,
    providers: Vec<Arc<dyn PluginProvider>>,
    host_service: Option<HostServiceLink>,
    /// Names this instance's real-sync leases (several servers may share the database).
    instance_id: String,
    /// Set by `shutdown`: nothing is started or restarted any more.
    shutting_down: std::sync::atomic::AtomicBool,
    slots: RwLock<BTreeMap<String, Arc<PluginSlot>>>,
    metrics: Metrics,
    /// Counts changes to the slots and their states (`list_version`).
    changes: watched::ChangeCounter,
    rescan_lock: tokio::sync::Mutex<()>,
    /// State-change events, stored in order by one task.
    state_events: tokio::sync::mpsc::UnboundedSender<(String, serde_json::Value)>,
}

impl std::fmt::Debug for PluginManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginManager")
            .field("plugins", &self.slots.read().keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl PluginManager {
    /// A manager with no plugins loaded yet; call [`PluginManager::rescan`] to load them.
    /// Must be called inside a tokio runtime (it starts the task that stores state events).
    pub fn new(parts: ManagerParts) -> Arc<Self> {
        let (state_events, mut queue) =
            tokio::sync::mpsc::unbounded_channel::<(String, serde_json::Value)>();
        let events = parts.events.clone();
        tokio::spawn(async move {
            while let Some((name, payload)) = queue.recv().await {
                if let Err(e) = events.publish(&name, payload).await {
                    tracing::warn!(event = %name, error = %e, "could not store plugin state event");
                }
            }
        });
        Arc::new_cyclic(|me| PluginManager {
            me: me.clone(),
            state_events,
            settings: parts.settings,
            host: parts.host,
            store: PluginStateStore::new(parts.database),
            providers: parts.providers,
            host_service: parts.host_service,
            instance_id: parts.instance_id.unwrap_or_else(default_instance_id),
            shutting_down: std::sync::atomic::AtomicBool::new(false),
            slots: RwLock::new(BTreeMap::new()),
            changes: watched::ChangeCounter::default(),
            metrics: parts.metrics,
            rescan_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// The bound on `health`, `sync_users` and `shutdown` calls.
    pub fn call_timeout(&self) -> std::time::Duration {
        self.settings.call_timeout
    }

    /// Every plugin's record, sorted by (source, name).
    pub fn list(&self) -> Vec<PluginRecord> {
        let slots: Vec<Arc<PluginSlot>> = self.slots.read().values().cloned().collect();
        let mut records: Vec<PluginRecord> = slots.iter().map(|s| s.record()).collect();
        records.sort_by(|a, b| (a.source.as_str(), &a.name).cmp(&(b.source.as_str(), &b.name)));
        records
    }

    /// A number that changes whenever what [`PluginManager::list`] returns may have changed
    /// (a state, a counter, a plugin added or dropped). Two equal readings mean the list did
    /// not change between them, so a caller may keep what it made of the list (the server
    /// keeps the serialised answer of `GET /system/plugins`) until the number moves. Read it
    /// *before* calling `list`: a change made meanwhile then shows as a new number next time.
    pub fn list_version(&self) -> u64 {
        self.changes.load(std::sync::atomic::Ordering::Acquire)
    }

    /// One plugin's record.
    pub fn record(&self, name: &str) -> Result<PluginRecord, ManagerError> {
        Ok(self.slot(name)?.record())
    }

    fn slot(&self, name: &str) -> Result<Arc<PluginSlot>, ManagerError> {
        self.slots
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| ManagerError::NotFound(name.to_owned()))
    }
}

/// This server's name among the instances sharing a database: the host, the working
/// directory and a random number drawn at start. Readable in the lease table, and unique even
/// where host names and directories repeat (containers on the host network with the same
/// working directory): two processes with one id would each take the other's lease for its
/// own. A server killed during a real sync therefore waits, once restarted, for its old lease
/// to expire (the call timeout + 5 s) before that plugin's next real sync.
fn default_instance_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".to_owned());
    let dir = std::env::current_dir()
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    format!("{host}:{dir}#{:08x}", rand::random::<u32>())
}
