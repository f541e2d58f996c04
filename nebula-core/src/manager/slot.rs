//! One plugin known to the manager: its descriptor, instance and state.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use nebula_plugin_api::{Plugin, ScopeSet};
use parking_lot::Mutex;

use super::record::NOT_INITIALIZED;
use super::stats::CallStats;
use super::{ManagerError, Method, PluginDescriptor, PluginRecord, PluginSource, PluginStatus};
use crate::storage::unix_now;

/// One plugin known to the manager.
pub(super) struct PluginSlot {
    pub(super) name: String,
    pub(super) state: Mutex<SlotState>,
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
    pub(super) instance: Option<Arc<dyn Plugin>>,
    pub(super) generation: u64,
    /// Failures recorded so far. A call notes the count when it starts; a success that
    /// finishes after a failure was recorded meanwhile is stale and changes no state.
    pub(super) failures_seen: u64,
    pub(super) record: PluginRecord,
    pub(super) stats: CallStats,
}

impl PluginSlot {
    pub(super) fn new(name: &str, descriptor: Option<PluginDescriptor>, scopes: ScopeSet) -> Self {
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
            initialized_at: NOT_INITIALIZED,
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
    pub(super) fn ready(&self) -> Result<(Arc<dyn Plugin>, u64, u64), ManagerError> {
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

    pub(super) fn record(&self) -> PluginRecord {
        self.state.lock().record.clone()
    }

    /// Refuses lifecycle operations on a plugin that cannot be loaded at all.
    pub(super) fn loadable(&self) -> Result<(), ManagerError> {
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
