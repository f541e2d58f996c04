//! What the manager hands each new instance beyond its context: how to reach the host service
//! and a way to say that it died on its own.

use std::sync::{Arc, Weak};

use super::host_tokens::HostAccess;
use super::slot::PluginSlot;
use super::PluginManager;

/// What the manager hands a [`PluginConstructor`](super::PluginConstructor) for one instance.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct InstanceSetup {
    /// The host service and this instance's token, for a plugin that runs out of process when
    /// the embedder serves the host service; `None` otherwise (a linked plugin gets its
    /// context directly).
    pub host: Option<HostAccess>,
    /// How the instance reports its own death and its process (a process plugin). Inert
    /// when the manager did not build the instance (tests, `InstanceSetup::default()`).
    pub watch: InstanceWatch,
}

/// An instance's line back to the manager: a process plugin reports its pid and, when its
/// process exits on its own, the reason. Bound to one instance (its generation): reports of
/// an instance that was replaced meanwhile change nothing.
#[derive(Clone, Default)]
pub struct InstanceWatch {
    bound: Option<Bound>,
}

#[derive(Clone)]
struct Bound {
    manager: Weak<PluginManager>,
    slot: Weak<PluginSlot>,
    generation: u64,
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for InstanceWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstanceWatch")
            .field("generation", &self.bound.as_ref().map(|b| b.generation))
            .finish()
    }
}

impl InstanceWatch {
    /// A watch for the instance of `generation` of `slot`; reports run on the current runtime.
    pub(super) fn bound(
        manager: Weak<PluginManager>,
        slot: &Arc<PluginSlot>,
        generation: u64,
    ) -> Self {
        let runtime = match tokio::runtime::Handle::try_current() {
            Ok(runtime) => runtime,
            // The manager always builds instances on its runtime: no runtime, no reports.
            Err(_) => return InstanceWatch::default(),
        };
        InstanceWatch {
            bound: Some(Bound {
                manager,
                slot: Arc::downgrade(slot),
                generation,
                runtime,
            }),
        }
    }

    /// The instance's process is `pid` now (`None`: it has none any more). Shown by
    /// `PluginManager::stats`. Callable from any thread.
    pub fn set_pid(&self, pid: Option<u32>) {
        let Some(bound) = &self.bound else { return };
        let Some(slot) = bound.slot.upgrade() else {
            return;
        };
        let mut st = slot.state.lock();
        // The next generation may already be starting: only the newest process counts.
        if st.generation + 1 == bound.generation || st.generation == bound.generation {
            st.pid = pid;
        }
    }

    /// The instance died on its own (`reason`: "exited with code 3", "killed by signal 9",
    /// "memory limit 256 MiB exceeded"): it is marked `crashed`, and the policy restarts it
    /// after a backoff or disables it. Callable from any thread; returns at once.
    pub fn exited(&self, reason: String) {
        let Some(bound) = self.bound.clone() else {
            return;
        };
        bound.runtime.spawn(async move {
            let (Some(manager), Some(slot)) = (bound.manager.upgrade(), bound.slot.upgrade())
            else {
                return;
            };
            manager.instance_died(&slot, bound.generation, reason).await;
        });
    }
}
