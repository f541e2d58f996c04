//! The health monitor: one pass checks every plugin, then carries out the policy.

use std::sync::Arc;

use super::slot::PluginSlot;
use super::state::{Observation, PolicyAction};
use super::{PluginManager, PluginStatus};

impl PluginManager {
    /// One pass of the health monitor: every enabled plugin is checked concurrently (each
    /// check bounded by the call timeout), then restarted or disabled as the thresholds say.
    pub async fn check_all(&self) {
        let slots: Vec<Arc<PluginSlot>> = self.slots.read().values().cloned().collect();
        futures::future::join_all(slots.iter().map(|slot| self.check_one(slot))).await;
    }

    pub(super) async fn check_one(&self, slot: &PluginSlot) {
        let (enabled, loadable, has_instance, crashed) = {
            let st = slot.state.lock();
            (
                st.state.enabled,
                st.descriptor.is_some(),
                st.instance.is_some(),
                st.state.status == PluginStatus::Crashed,
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
    pub(super) fn policy_of(&self, slot: &PluginSlot) -> PolicyAction {
        let st = slot.state.lock();
        st.state
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
}
