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

mod discovery;
mod external;
mod record;
mod state_store;
mod stats;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nebula_plugin_api::{
    Host, JsonObject, Plugin, PluginContext, PluginError, ScopeSet, SyncRequest,
};
use parking_lot::{Mutex, RwLock};
use serde_json::json;

pub use discovery::{
    DiscoveryError, InventoryProvider, PluginConstructor, PluginDescriptor, PluginProvider,
    StaticProvider,
};
pub use external::{ExternalConnector, ExternalPluginsProvider};
pub use record::{CallFailure, Method, PluginRecord, PluginSource, PluginStatus};
pub use stats::{MethodSnapshot, PluginStats};

use crate::config::PluginsConfig;
use crate::events::EventBus;
use crate::storage::{unix_now, Database, StorageError};
use discovery::discover_all;
use record::{Observation, PolicyAction, Thresholds};
use state_store::PluginStateStore;
use stats::{CallStats, Outcome};

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
    fn from_failure(name: &str, method: Method, failure: CallFailure) -> Self {
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
    /// Operator grants: plugin name → scopes; absent names keep their declared scopes.
    pub grants: BTreeMap<String, ScopeSet>,
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
            timeout_restart_threshold: config.timeout_restart_threshold.max(1),
            health_restart_threshold: config.health_restart_threshold.max(1),
            max_restarts: config.max_restarts,
            max_crashes: config.max_crashes.max(1),
            health_interval: Duration::try_from_secs_f64(config.health_interval_sec)
                .unwrap_or(Duration::from_secs(30)),
            grants,
        }
    }

    fn thresholds(&self) -> Thresholds {
        Thresholds {
            timeout_restart_threshold: self.timeout_restart_threshold,
            health_restart_threshold: self.health_restart_threshold,
            max_restarts: self.max_restarts,
            max_crashes: self.max_crashes,
        }
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

/// One plugin known to the manager.
struct PluginSlot {
    name: String,
    state: Mutex<SlotState>,
    /// Serialises start/stop/restart/rescan of this plugin.
    lifecycle: tokio::sync::Mutex<()>,
    /// Held for the whole of a real (non-dry-run) sync, by the task running it: a timed-out
    /// call releases it only when its task has really ended.
    real_sync: Arc<tokio::sync::Mutex<()>>,
    /// Set when a rescan dropped the plugin: nothing may start it again.
    removed: AtomicBool,
}

struct SlotState {
    /// `None` when the plugin cannot be loaded (bad manifest, duplicate).
    descriptor: Option<PluginDescriptor>,
    scopes: ScopeSet,
    instance: Option<Arc<dyn Plugin>>,
    generation: u64,
    /// Failures recorded so far. A call notes the count when it starts; a success that
    /// finishes after a failure was recorded meanwhile is stale and changes no state.
    failures_seen: u64,
    record: PluginRecord,
    stats: CallStats,
}

impl PluginSlot {
    fn new(name: &str, descriptor: Option<PluginDescriptor>, scopes: ScopeSet) -> Self {
        let now = unix_now();
        let (source, version, description, api_version, origin) = match &descriptor {
            Some(d) => (
                d.source,
                d.manifest.version.clone(),
                d.manifest.description.clone(),
                d.manifest.api_version.clone(),
                d.origin.clone(),
            ),
            None => (
                PluginSource::InProcess,
                String::new(),
                String::new(),
                nebula_plugin_api::PLUGIN_API_VERSION.to_owned(),
                String::new(),
            ),
        };
        let record = PluginRecord {
            name: name.to_owned(),
            source,
            api_version,
            version,
            description,
            scopes: scopes.names(),
            status: PluginStatus::Initialized,
            message: "discovered".into(),
            error: String::new(),
            initialized_at: record::NOT_INITIALIZED,
            updated_at: now,
            enabled: true,
            origin,
            consecutive_timeouts: 0,
            consecutive_health_failures: 0,
            consecutive_crashes: 0,
            restart_count: 0,
            auto_restarts: 0,
            last_call_ms: None,
            last_auto_restart_at: None,
            retry_is_useless: false,
        };
        PluginSlot {
            name: name.to_owned(),
            state: Mutex::new(SlotState {
                descriptor,
                scopes,
                instance: None,
                generation: 0,
                failures_seen: 0,
                record,
                stats: CallStats::default(),
            }),
            lifecycle: tokio::sync::Mutex::new(()),
            real_sync: Arc::new(tokio::sync::Mutex::new(())),
            removed: AtomicBool::new(false),
        }
    }

    /// The instance to call, with its generation and the failures recorded so far; refuses
    /// disabled and unloaded plugins.
    fn ready(&self) -> Result<(Arc<dyn Plugin>, u64, u64), ManagerError> {
        let st = self.state.lock();
        if !st.record.enabled {
            return Err(ManagerError::Disabled(self.name.clone()));
        }
        match &st.instance {
            Some(instance) => Ok((instance.clone(), st.generation, st.failures_seen)),
            None => Err(ManagerError::NotReady {
                name: self.name.clone(),
                status: st.record.status,
                error: st.record.error.clone(),
            }),
        }
    }

    fn record(&self) -> PluginRecord {
        self.state.lock().record.clone()
    }

    /// Refuses lifecycle operations on a plugin that cannot be loaded at all.
    fn loadable(&self) -> Result<(), ManagerError> {
        let st = self.state.lock();
        if st.descriptor.is_some() {
            Ok(())
        } else {
            Err(ManagerError::NotReady {
                name: self.name.clone(),
                status: st.record.status,
                error: st.record.error.clone(),
            })
        }
    }

    /// Takes the current instance out of the slot; outcomes of its calls still in flight are
    /// ignored from now on (their generation is stale).
    fn detach(&self) -> Option<Arc<dyn Plugin>> {
        let mut st = self.state.lock();
        st.generation += 1;
        st.instance.take()
    }
}

/// Runs one plugin call in its own task, bounded by `limit`: the one place where plugin
/// panics are caught and hangs are cut off.
pub async fn guarded<T, F>(call: F, limit: Duration) -> Result<T, CallFailure>
where
    F: Future<Output = Result<T, PluginError>> + Send + 'static,
    T: Send + 'static,
{
    let mut handle = tokio::spawn(call);
    match tokio::time::timeout(limit, &mut handle).await {
        Ok(Ok(Ok(value))) => Ok(value),
        Ok(Ok(Err(error))) => Err(CallFailure::Error(error)),
        Ok(Err(join)) if join.is_panic() => {
            Err(CallFailure::Panicked(panic_message(join.into_panic())))
        }
        Ok(Err(_)) => Err(CallFailure::Error(PluginError::internal(
            "call was cancelled",
        ))),
        Err(_) => {
            handle.abort();
            // Give the cancelled task a moment to be dropped, so what it holds (the real-sync
            // gate) is released before we answer. A plugin that blocks its thread cannot be
            // cancelled: its task keeps what it holds until it really ends.
            let _ = tokio::time::timeout(ABORT_GRACE, handle).await;
            Err(CallFailure::TimedOut(limit))
        }
    }
}

/// How long a timed-out call waits for its cancelled task to be dropped.
const ABORT_GRACE: Duration = Duration::from_millis(100);

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

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
}

/// Discovers, runs and watches plugins. Safe to share between tasks (`Arc<PluginManager>`).
pub struct PluginManager {
    settings: ManagerSettings,
    host: Arc<dyn Host>,
    store: PluginStateStore,
    providers: Vec<Arc<dyn PluginProvider>>,
    slots: RwLock<BTreeMap<String, Arc<PluginSlot>>>,
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
    pub fn new(parts: ManagerParts) -> Self {
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
        PluginManager {
            state_events,
            settings: parts.settings,
            host: parts.host,
            store: PluginStateStore::new(parts.database),
            providers: parts.providers,
            slots: RwLock::new(BTreeMap::new()),
            rescan_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> &ManagerSettings {
        &self.settings
    }

    /// Every plugin's record, sorted by (source, name).
    pub fn list(&self) -> Vec<PluginRecord> {
        let slots: Vec<Arc<PluginSlot>> = self.slots.read().values().cloned().collect();
        let mut records: Vec<PluginRecord> = slots.iter().map(|s| s.record()).collect();
        records.sort_by(|a, b| (a.source.as_str(), &a.name).cmp(&(b.source.as_str(), &b.name)));
        records
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

    /// Asks the plugin for its health. An answer whose `status` is not `"ok"` is returned as
    /// is (and marks the plugin degraded); failures, panics and timeouts are errors.
    pub async fn health(&self, name: &str) -> Result<JsonObject, ManagerError> {
        let slot = self.slot(name)?;
        self.health_of(&slot).await
    }

    async fn health_of(&self, slot: &PluginSlot) -> Result<JsonObject, ManagerError> {
        let (result, ticket) = self
            .call(slot, Method::Health, |p| async move { p.health().await })
            .await?;
        match result {
            Ok(health) => {
                let status = health.get("status").and_then(|s| s.as_str()).unwrap_or("");
                let ok = status == "ok";
                let message = health
                    .get("message")
                    .and_then(|m| m.as_str())
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("health status '{status}'"));
                self.observe(
                    slot,
                    Some(ticket),
                    Observation::HealthAnswered { ok, message },
                );
                Ok(health)
            }
            Err(failure) => Err(self.fail(slot, ticket, failure)),
        }
    }

    /// Runs a sync. Real runs of one plugin are exclusive: a second one is refused at once
    /// with [`ManagerError::SyncInProgress`]; dry runs are never serialised.
    pub async fn sync_users(
        &self,
        name: &str,
        request: SyncRequest,
    ) -> Result<JsonObject, ManagerError> {
        let slot = self.slot(name)?;
        slot.ready()?;
        let exclusive = if request.dry_run {
            None
        } else {
            Some(
                slot.real_sync
                    .clone()
                    .try_lock_owned()
                    .map_err(|_| ManagerError::SyncInProgress(name.to_owned()))?,
            )
        };
        let (result, ticket) = self
            .call(&slot, Method::SyncUsers, move |p| async move {
                let _exclusive = exclusive;
                p.sync_users(request).await
            })
            .await?;
        match result {
            Ok(answer) => {
                self.observe(&slot, Some(ticket), Observation::CallSucceeded);
                Ok(answer)
            }
            Err(failure) => Err(self.fail(&slot, ticket, failure)),
        }
    }

    /// Calls the slot's current instance under the call timeout.
    async fn call<T, F, Fut>(
        &self,
        slot: &PluginSlot,
        method: Method,
        call: F,
    ) -> Result<(Result<T, CallFailure>, CallTicket), ManagerError>
    where
        F: FnOnce(Arc<dyn Plugin>) -> Fut,
        Fut: Future<Output = Result<T, PluginError>> + Send + 'static,
        T: Send + 'static,
    {
        let (instance, generation, failures_before) = slot.ready()?;
        let started = Instant::now();
        let result = guarded(call(instance), self.settings.call_timeout).await;
        Ok((
            result,
            CallTicket {
                generation,
                failures_before,
                method,
                elapsed: started.elapsed(),
            },
        ))
    }

    fn fail(&self, slot: &PluginSlot, ticket: CallTicket, failure: CallFailure) -> ManagerError {
        self.observe(
            slot,
            Some(ticket),
            Observation::Failed {
                method: ticket.method,
                failure: &failure,
            },
        );
        ManagerError::from_failure(&slot.name, ticket.method, failure)
    }

    /// Applies an observation to the slot's record and publishes a state change as the event
    /// `system.plugin.<name>.<state>`.
    ///
    /// Which outcome wins, when calls overlap: outcomes apply in the order they finish, with
    /// two exceptions, both decided here. An outcome from a replaced instance (stale
    /// generation) changes nothing. A success from a call that was already running when a
    /// failure was recorded changes nothing either: it says nothing about the plugin after
    /// that failure, and must not hide it (nor reset the counters the policy reads).
    fn observe(&self, slot: &PluginSlot, ticket: Option<CallTicket>, observation: Observation<'_>) {
        let failed = observation.is_plugin_failure();
        let changed = {
            let mut st = slot.state.lock();
            if let Some(ticket) = ticket {
                let failure = match &observation {
                    Observation::Failed { failure, .. } => Some(*failure),
                    _ => None,
                };
                st.stats
                    .record(ticket.method, ticket.elapsed, Outcome::of(failure));
                if ticket.generation != st.generation {
                    return;
                }
                st.record.last_call_ms = Some(ticket.elapsed.as_secs_f64() * 1000.0);
                if observation.is_success() && ticket.failures_before != st.failures_seen {
                    return;
                }
            }
            if failed {
                st.failures_seen += 1;
            }
            let before = st.record.status;
            st.record
                .observe(observation, unix_now(), self.settings.thresholds());
            (before != st.record.status).then(|| {
                (
                    st.record.status,
                    json!({"message": st.record.message, "error": st.record.error}),
                )
            })
        };
        if let Some((status, payload)) = changed {
            tracing::info!(plugin = %slot.name, %status, "plugin state changed");
            let name = format!("system.plugin.{}.{}", slot.name, status);
            // One queue, drained by one task: the stored history keeps the order of changes.
            if self.state_events.send((name, payload)).is_err() {
                tracing::warn!(plugin = %slot.name, "state event queue closed; event not stored");
            }
        }
    }

    /// Builds and initialises a fresh instance (shutting the old one down first). The caller
    /// holds the slot's lifecycle lock.
    async fn reinitialize_locked(&self, slot: &PluginSlot) {
        self.retire(slot).await;
        if slot.removed.load(Ordering::SeqCst) {
            return;
        }
        let (descriptor, scopes) = {
            let st = slot.state.lock();
            (st.descriptor.clone(), st.scopes.clone())
        };
        let Some(descriptor) = descriptor else {
            return;
        };
        let ctx = PluginContext::new(slot.name.as_str(), scopes, self.host.clone());
        let constructor = descriptor.constructor.clone();
        let started = Instant::now();
        let result = guarded(
            async move {
                let plugin: Arc<dyn Plugin> = Arc::from(constructor());
                plugin.initialize(ctx).await?;
                Ok(plugin)
            },
            self.settings.init_timeout,
        )
        .await;
        let (generation, failures_before) = {
            let mut st = slot.state.lock();
            st.generation += 1;
            if let Ok(plugin) = &result {
                st.instance = Some(plugin.clone());
            }
            (st.generation, st.failures_seen)
        };
        let ticket = CallTicket {
            generation,
            failures_before,
            method: Method::Initialize,
            elapsed: started.elapsed(),
        };
        match result {
            Ok(_) => self.observe(slot, Some(ticket), Observation::Initialized),
            Err(failure) => {
                tracing::warn!(plugin = %slot.name, error = %failure.describe(Method::Initialize), "plugin failed to initialise");
                self.observe(
                    slot,
                    Some(ticket),
                    Observation::Failed {
                        method: Method::Initialize,
                        failure: &failure,
                    },
                );
            }
        }
    }

    /// Calls `shutdown` on an instance that is no longer reachable through the slot. Failures
    /// are logged, never propagated: a plugin cannot stop the host from moving on.
    async fn shutdown_instance(&self, slot: &PluginSlot, instance: Arc<dyn Plugin>) {
        let started = Instant::now();
        let result = guarded(
            async move { instance.shutdown().await },
            self.settings.call_timeout,
        )
        .await;
        slot.state.lock().stats.record(
            Method::Shutdown,
            started.elapsed(),
            Outcome::of(result.as_ref().err()),
        );
        if let Err(failure) = result {
            let error = failure.describe(Method::Shutdown);
            tracing::warn!(plugin = %slot.name, %error, "plugin shutdown failed");
            let mut st = slot.state.lock();
            st.record.error = error;
            st.record.updated_at = unix_now();
        }
    }

    /// Detaches the instance and shuts it down (bounded; failures are logged).
    async fn retire(&self, slot: &PluginSlot) {
        if let Some(old) = slot.detach() {
            self.shutdown_instance(slot, old).await;
        }
    }

    /// Marks the plugin disabled with `message`, then retires its instance. The caller holds
    /// the lifecycle lock and has persisted the flag.
    async fn disable(&self, slot: &PluginSlot, message: String) {
        let old = slot.detach();
        self.observe(slot, None, Observation::Disabled { message });
        if let Some(old) = old {
            self.shutdown_instance(slot, old).await;
        }
    }

    /// Enables the plugin (persisted) and initialises it if it is not running.
    pub async fn start(&self, name: &str) -> Result<PluginRecord, ManagerError> {
        let slot = self.slot(name)?;
        let _life = slot.lifecycle.lock().await;
        slot.loadable()?;
        self.store.set_enabled(name, true, "").await?;
        self.observe(&slot, None, Observation::Enabled);
        let running = slot.state.lock().instance.is_some();
        if !running {
            self.reinitialize_locked(&slot).await;
        }
        Ok(slot.record())
    }

    /// Disables the plugin (persisted across restarts) and shuts its instance down.
    pub async fn stop(&self, name: &str) -> Result<PluginRecord, ManagerError> {
        let slot = self.slot(name)?;
        let _life = slot.lifecycle.lock().await;
        let reason = "stopped by admin";
        self.store.set_enabled(name, false, reason).await?;
        self.disable(&slot, reason.into()).await;
        Ok(slot.record())
    }

    /// Replaces the instance with a fresh one from its factory.
    pub async fn restart(&self, name: &str) -> Result<PluginRecord, ManagerError> {
        let slot = self.slot(name)?;
        let _life = slot.lifecycle.lock().await;
        slot.loadable()?;
        if !slot.state.lock().record.enabled {
            return Err(ManagerError::Disabled(name.to_owned()));
        }
        self.reinitialize_locked(&slot).await;
        self.observe(
            &slot,
            None,
            Observation::Restarted {
                automatic: false,
                reason: "admin".into(),
            },
        );
        Ok(slot.record())
    }

    /// Call statistics of one plugin.
    pub fn stats(&self, name: &str) -> Result<PluginStats, ManagerError> {
        let slot = self.slot(name)?;
        let st = slot.state.lock();
        let r = &st.record;
        Ok(PluginStats {
            plugin: r.name.clone(),
            status: r.status,
            enabled: r.enabled,
            uptime_sec: st
                .instance
                .is_some()
                .then_some(r.initialized_at)
                .filter(|t| *t > record::NOT_INITIALIZED)
                .map(|t| (unix_now() - t).max(0.0)),
            consecutive_timeouts: r.consecutive_timeouts,
            consecutive_health_failures: r.consecutive_health_failures,
            consecutive_crashes: r.consecutive_crashes,
            restart_count: r.restart_count,
            auto_restarts: r.auto_restarts,
            last_call_ms: r.last_call_ms,
            methods: st.stats.snapshot(),
        })
    }

    /// One pass of the health monitor: every enabled plugin is checked concurrently (each
    /// check bounded by the call timeout), then restarted or disabled as the thresholds say.
    pub async fn check_all(&self) {
        let slots: Vec<Arc<PluginSlot>> = self.slots.read().values().cloned().collect();
        futures::future::join_all(slots.iter().map(|slot| self.check_one(slot))).await;
    }

    async fn check_one(&self, slot: &PluginSlot) {
        let (enabled, loadable, has_instance, crashed) = {
            let st = slot.state.lock();
            (
                st.record.enabled,
                st.descriptor.is_some(),
                st.instance.is_some(),
                st.record.status == PluginStatus::Crashed,
            )
        };
        if !enabled || !loadable {
            return;
        }
        // A plugin that panicked is replaced, not merely health-checked: the panic may have
        // left its state half-updated even if it still answers health.
        if has_instance && !crashed {
            // The outcome is recorded by `health_of`; the monitor only reads the record.
            let _ = self.health_of(slot).await;
        }
        if self.policy_of(slot) == PolicyAction::Keep {
            return;
        }
        let _life = slot.lifecycle.lock().await;
        // Decide again under the lock: an admin may have stopped, started or restarted the
        // plugin while we waited, and the answer must be about what is there now.
        match self.policy_of(slot) {
            PolicyAction::Keep => {}
            PolicyAction::Restart(reason) => {
                tracing::warn!(plugin = %slot.name, %reason, "restarting plugin");
                self.reinitialize_locked(slot).await;
                self.observe(
                    slot,
                    None,
                    Observation::Restarted {
                        automatic: true,
                        reason,
                    },
                );
            }
            PolicyAction::Disable(reason) => {
                tracing::error!(plugin = %slot.name, %reason, "disabling plugin");
                let message = format!("disabled by policy: {reason}");
                if let Err(e) = self.store.set_enabled(&slot.name, false, &message).await {
                    tracing::error!(plugin = %slot.name, error = %e, "could not persist the disabled flag");
                }
                self.disable(slot, message).await;
            }
        }
    }

    /// What the policy says about the slot as it is now.
    fn policy_of(&self, slot: &PluginSlot) -> PolicyAction {
        let st = slot.state.lock();
        st.record
            .policy(st.instance.is_some(), self.settings.thresholds())
    }

    /// Runs [`check_all`](Self::check_all) every `health_interval` until the manager is
    /// dropped. A pass that overruns delays the next one instead of stacking up.
    pub fn spawn_health_monitor(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        let period = self.settings.health_interval;
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(period);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                let Some(manager) = weak.upgrade() else {
                    return;
                };
                manager.check_all().await;
            }
        })
    }

    /// Discovers plugins again: new ones are loaded, removed ones shut down, the others
    /// re-initialised unless disabled. Concurrent rescans run one after the other; calls in
    /// flight finish on the instance they started with.
    pub async fn rescan(&self) -> Result<Vec<PluginRecord>, ManagerError> {
        let _rescan = self.rescan_lock.lock().await;
        let providers = self.providers.clone();
        let discovery = tokio::task::spawn_blocking(move || discover_all(&providers))
            .await
            .map_err(|e| StorageError::Task(e.to_string()))?;
        for refused in &discovery.refused {
            tracing::error!(origin = %refused.origin, error = %refused.message, "plugin refused");
        }

        // Work out the new map under the lock, act on it after.
        let mut to_start = Vec::new();
        let mut removed = Vec::new();
        {
            let mut slots = self.slots.write();
            let wanted: Vec<String> = discovery
                .plugins
                .keys()
                .chain(discovery.refused.iter().filter_map(|r| r.name.as_ref()))
                .cloned()
                .collect();
            let stale: Vec<String> = slots
                .keys()
                .filter(|name| !wanted.contains(name))
                .cloned()
                .collect();
            for name in stale {
                if let Some(slot) = slots.remove(&name) {
                    removed.push((slot, true));
                }
            }
            for (name, descriptor) in &discovery.plugins {
                let scopes = self.settings.effective_scopes(&descriptor.manifest);
                let slot = slots
                    .entry(name.clone())
                    .or_insert_with(|| {
                        Arc::new(PluginSlot::new(
                            name,
                            Some(descriptor.clone()),
                            scopes.clone(),
                        ))
                    })
                    .clone();
                {
                    let mut st = slot.state.lock();
                    st.descriptor = Some(descriptor.clone());
                    st.record.source = descriptor.source;
                    st.record.version = descriptor.manifest.version.clone();
                    st.record.description = descriptor.manifest.description.clone();
                    st.record.api_version = descriptor.manifest.api_version.clone();
                    st.record.origin = descriptor.origin.clone();
                    st.record.scopes = scopes.names();
                    st.scopes = scopes;
                }
                to_start.push(slot);
            }
            for refused in &discovery.refused {
                let Some(name) = &refused.name else { continue };
                let slot = slots
                    .entry(name.clone())
                    .or_insert_with(|| Arc::new(PluginSlot::new(name, None, ScopeSet::empty())))
                    .clone();
                slot.state.lock().descriptor = None;
                removed.push((slot.clone(), false));
                self.observe(
                    &slot,
                    None,
                    Observation::Broken {
                        error: refused.message.clone(),
                    },
                );
            }
        }

        let shutdowns = removed.iter().map(|(slot, gone)| async move {
            let _life = slot.lifecycle.lock().await;
            if *gone {
                slot.removed.store(true, Ordering::SeqCst);
            }
            self.retire(slot).await;
        });
        futures::future::join_all(shutdowns).await;

        let starts = to_start.iter().map(|slot| async move {
            let _life = slot.lifecycle.lock().await;
            // Read under the lock: a stop or start that landed during the rescan wins.
            let disabled = match self.store.disabled_reason(&slot.name).await {
                Ok(disabled) => disabled,
                Err(e) => {
                    tracing::error!(plugin = %slot.name, error = %e, "cannot read the enabled flag; leaving the plugin as it is");
                    return;
                }
            };
            if let Some(reason) = disabled {
                // The stored reason, so "disabled by policy: …" survives a server restart.
                self.disable(slot, reason).await;
            } else {
                self.reinitialize_locked(slot).await;
            }
        });
        futures::future::join_all(starts).await;
        Ok(self.list())
    }

    /// Shuts every plugin down, in parallel, each bounded by the call timeout.
    pub async fn shutdown(&self) {
        let slots: Vec<Arc<PluginSlot>> = self.slots.read().values().cloned().collect();
        let all = slots.iter().map(|slot| async move {
            self.retire(slot).await;
            let mut st = slot.state.lock();
            if st.record.enabled {
                st.record.message = "shut down".into();
                st.record.updated_at = unix_now();
            }
        });
        futures::future::join_all(all).await;
    }
}

/// Which instance a call ran against, which method, and how long it took.
#[derive(Debug, Clone, Copy)]
struct CallTicket {
    generation: u64,
    /// `failures_seen` of the slot when the call started.
    failures_before: u64,
    method: Method,
    elapsed: Duration,
}
