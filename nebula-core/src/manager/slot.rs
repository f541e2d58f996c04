//! One plugin known to the manager: its descriptor, instance and state.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use super::state::PluginState;
use super::stats::CallStats;
use super::watched::{ChangeCounter, WatchedMutex};
use super::{ManagerError, Method, PluginDescriptor, PluginRecord, PluginSource};
use crate::storage::unix_now;
use nebula_plugin_api::{Plugin, ScopeSet};

/// One plugin known to the manager.
pub(super) struct PluginSlot {
    pub(super) name: String,
    /// Every mutable access counts as a change of the plugin list (`PluginManager::list_version`).
    pub(super) state: WatchedMutex<SlotState>,
    /// Serialises start/stop/restart/rescan of this plugin.
    pub(super) lifecycle: tokio::sync::Mutex<()>,
    /// Held for the whole of a real (non-dry-run) sync, by the task running it: a timed-out
    /// call releases it only when its task has really ended.
    pub(super) real_sync: Arc<tokio::sync::Mutex<()>>,
    /// Set when a rescan dropped the plugin: nothing may start it again.
    pub(super) removed: AtomicBool,
}

pub(super) struct SlotState {
    /// `None` when the plugin cannot be loaded (bad manifest, duplicate).
    pub(super) descriptor: Option<PluginDescriptor>,
    pub(super) scopes: ScopeSet,
    /// What the record shows of where the plugin comes from.
    pub(super) identity: PluginIdentity,
    pub(super) instance: Option<Arc<dyn Plugin>>,
    pub(super) generation: u64,
    /// Failures recorded so far. A call notes the count when it starts; a success that
    /// finishes after a failure was recorded meanwhile is stale and changes no state.
    pub(super) failures_seen: u64,
    pub(super) state: PluginState,
    pub(super) stats: CallStats,
    /// The process of the current instance, for a process plugin (its `InstanceWatch`).
    pub(super) pid: Option<u32>,
    /// A restart scheduled after a backoff (`PluginManager::schedule_recovery`): until it
    /// runs, the monitor does not restart the plugin on its own, and no second one is
    /// scheduled.
    pub(super) recovery_due: Option<std::time::Instant>,
}

/// Where a plugin comes from, as its record shows it. Kept from the last descriptor when a
/// rescan finds the plugin unloadable, so a broken external plugin still says `grpc`.
#[derive(Debug, Clone)]
pub(super) struct PluginIdentity {
    pub(super) source: PluginSource,
    pub(super) api_version: String,
    pub(super) version: String,
    pub(super) description: String,
    pub(super) origin: String,
}

impl PluginIdentity {
    pub(super) fn of(descriptor: Option<&PluginDescriptor>) -> Self {
        match descriptor {
            Some(d) => PluginIdentity {
                source: d.source,
                api_version: d.manifest.api_version.clone(),
                version: d.manifest.version.clone(),
                description: d.manifest.description.clone(),
                origin: d.origin.clone(),
            },
            None => PluginIdentity {
                source: PluginSource::InProcess,
                api_version: nebula_plugin_api::PLUGIN_API_VERSION.to_owned(),
                version: String::new(),
                description: String::new(),
                origin: String::new(),
            },
        }
    }
}

impl SlotState {
    /// The admin's view of this state.
    pub(super) fn view(&self, name: &str) -> PluginRecord {
        let (id, st) = (&self.identity, &self.state);
        PluginRecord {
            name: name.to_owned(),
            source: id.source,
            api_version: id.api_version.clone(),
            version: id.version.clone(),
            description: id.description.clone(),
            scopes: self.scopes.names(),
            status: st.status,
            message: st.message.clone(),
            error: st.error.clone(),
            initialized_at: st.initialized_at,
            updated_at: st.updated_at,
            enabled: st.enabled,
            origin: id.origin.clone(),
            counters: st.counters,
            last_call_ms: st.last_call_ms,
        }
    }
}

impl PluginSlot {
    pub(super) fn new(
        name: &str,
        descriptor: Option<PluginDescriptor>,
        scopes: ScopeSet,
        changes: ChangeCounter,
    ) -> Self {
        PluginSlot {
            name: name.to_owned(),
            state: WatchedMutex::new(
                SlotState {
                    identity: PluginIdentity::of(descriptor.as_ref()),
                    descriptor,
                    scopes,
                    instance: None,
                    generation: 0,
                    failures_seen: 0,
                    state: PluginState::discovered(unix_now()),
                    stats: CallStats::default(),
                    pid: None,
                    recovery_due: None,
                },
                changes,
            ),
            lifecycle: tokio::sync::Mutex::new(()),
            real_sync: Arc::new(tokio::sync::Mutex::new(())),
            removed: AtomicBool::new(false),
        }
    }

    /// The instance to call, with its generation and the failures recorded so far; refuses
    /// disabled and unloaded plugins.
    pub(super) fn ready(&self) -> Result<(Arc<dyn Plugin>, u64, u64), ManagerError> {
        let st = self.state.lock();
        if !st.state.enabled {
            return Err(ManagerError::Disabled(self.name.clone()));
        }
        match &st.instance {
            Some(instance) => Ok((instance.clone(), st.generation, st.failures_seen)),
            None => Err(ManagerError::NotReady {
                name: self.name.clone(),
                status: st.state.status,
                error: st.state.error.clone(),
            }),
        }
    }

    pub(super) fn record(&self) -> PluginRecord {
        let st = self.state.lock();
        st.view(&self.name)
    }

    /// Refuses lifecycle operations on a plugin that cannot be loaded at all.
    pub(super) fn loadable(&self) -> Result<(), ManagerError> {
        let st = self.state.lock();
        if st.descriptor.is_some() {
            Ok(())
        } else {
            Err(ManagerError::NotReady {
                name: self.name.clone(),
                status: st.state.status,
                error: st.state.error.clone(),
            })
        }
    }

    /// Takes the current instance out of the slot; outcomes of its calls still in flight are
    /// ignored from now on (their generation is stale).
    pub(super) fn detach(&self) -> Option<Arc<dyn Plugin>> {
        let mut st = self.state.lock();
        st.generation += 1;
        st.instance.take()
    }
}

/// Which instance a call ran against, which method, and how long it took.
#[derive(Debug, Clone, Copy)]
pub(super) struct CallTicket {
    pub(super) generation: u64,
    /// `failures_seen` of the slot when the call started.
    pub(super) failures_before: u64,
    pub(super) method: Method,
    pub(super) elapsed: Duration,
}
