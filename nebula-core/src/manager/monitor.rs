//! The health monitor: one pass checks every plugin, then carries out the policy.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::slot::PluginSlot;
use super::state::{Observation, PolicyAction};
use super::{PluginManager, PluginSource, PluginStatus};

/// Who asked for a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    /// The health monitor's pass.
    Monitor,
    /// A restart scheduled after a backoff.
    Recovery,
}

impl PluginManager {
    /// One pass of the health monitor: every enabled plugin is checked concurrently (each
    /// check bounded by the call timeout), then restarted or disabled as the thresholds say.
    pub async fn check_all(&self) {
        let slots: Vec<Arc<PluginSlot>> = self.slots.read().values().cloned().collect();
        futures::future::join_all(slots.iter().map(|slot| self.check_one(slot))).await;
    }

    pub(super) async fn check_one(&self, slot: &Arc<PluginSlot>) {
        self.check(slot, Trigger::Monitor).await;
    }

    /// One check of `slot`: health, then the policy. A restart scheduled after a backoff is
    /// the only one allowed while it is pending: the monitor's pass then only checks health.
    async fn check(&self, slot: &Arc<PluginSlot>, trigger: Trigger) {
        if self.is_shutting_down() {
            return;
        }
        let (enabled, loadable, has_instance, crashed, recovery_pending) = {
            let st = slot.state.lock();
            (
                st.state.enabled,
                st.descriptor.is_some(),
                st.instance.is_some(),
                st.state.status == PluginStatus::Crashed,
                st.recovery_due.is_some(),
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
        if recovery_pending && trigger == Trigger::Monitor {
            return;
        }
        if self.policy_of(slot) == PolicyAction::Keep {
            return;
        }
        let _life = slot.lifecycle.lock().await;
        if self.is_shutting_down() {
            return;
        }
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
                self.recover_if_down(slot);
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

    /// Checks `slot` again after the backoff its automatic restarts so far call for (1 s,
    /// doubling to 60 s): after a process plugin's process died, or it failed to start. The
    /// check carries out the one policy: restart, or disable once the budget is spent. One
    /// recovery at a time per plugin; none once the manager is shutting down.
    pub(super) fn schedule_recovery(&self, slot: Arc<PluginSlot>) {
        if self.is_shutting_down() {
            return;
        }
        let delay = {
            let mut st = slot.state.lock();
            if st.recovery_due.is_some() {
                return;
            }
            let delay = restart_backoff(st.state.counters.auto_restarts);
            st.recovery_due = Some(std::time::Instant::now() + delay);
            delay
        };
        let manager = self.me.clone();
        tracing::info!(plugin = %slot.name, delay_sec = delay.as_secs(), "restart after the backoff");
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            slot.state.lock().recovery_due = None;
            let Some(manager) = manager.upgrade() else {
                return;
            };
            if !slot.removed.load(Ordering::SeqCst) {
                manager.check(&slot, Trigger::Recovery).await;
            }
        });
    }

    /// After a start or restart of a process plugin that left it without a working instance
    /// (its process exited before it was ready): try again after the backoff, not at the
    /// monitor's next pass.
    pub(super) fn recover_if_down(&self, slot: &Arc<PluginSlot>) {
        let down = {
            let st = slot.state.lock();
            st.identity.source == PluginSource::Process
                && st.state.enabled
                && st.descriptor.is_some()
                && st.instance.is_none()
        };
        if down {
            self.schedule_recovery(slot.clone());
        }
    }

    /// A process plugin's instance of `generation` died on its own (`InstanceWatch::exited`).
    /// Under the plugin's lifecycle lock, so a death reported while that instance was still
    /// being installed is applied once it is: if it is the current instance, it is detached
    /// (calls answer "not ready" instead of reaching a dead process, its host token dies),
    /// the plugin becomes `crashed` with the reason, and a restart is scheduled after the
    /// backoff. A report about an instance already replaced changes nothing.
    pub(super) async fn instance_died(
        &self,
        slot: &Arc<PluginSlot>,
        generation: u64,
        reason: String,
    ) {
        let _life = slot.lifecycle.lock().await;
        let dead = {
            let mut st = slot.state.lock();
            if st.generation != generation || st.instance.is_none() {
                return;
            }
            st.generation += 1;
            st.instance.take()
        };
        tracing::warn!(plugin = %slot.name, %reason, "plugin process died");
        self.revoke_host_token(&slot.name);
        self.observe(slot, None, Observation::Exited { reason });
        if let Some(dead) = dead {
            // Its process is gone; this removes what it left (socket, pid file).
            self.shutdown_instance(slot, dead).await;
        }
        if self.policy_of(slot) != PolicyAction::Keep {
            self.schedule_recovery(slot.clone());
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
        self.spawn_every(self.settings.health_interval, |manager| async move {
            manager.check_all().await
        })
    }

    /// Runs `pass` every `period` (the first after one period) until the manager is dropped;
    /// the task holds only a weak reference between passes. A pass that overruns delays the
    /// next one instead of stacking up.
    pub(super) fn spawn_every<F, Fut>(
        self: &Arc<Self>,
        period: Duration,
        pass: F,
    ) -> tokio::task::JoinHandle<()>
    where
        F: Fn(Arc<Self>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(period);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                let Some(manager) = weak.upgrade() else {
                    return;
                };
                pass(manager).await;
            }
        })
    }
}

/// First wait before an automatic restart of a plugin whose process died (SPEC §9).
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Longest wait between automatic restarts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The wait before the next automatic restart, after `auto_restarts` of them: 1 s, 2 s, 4 s,
/// … up to 60 s.
pub(super) fn restart_backoff(auto_restarts: u32) -> Duration {
    FIRST_BACKOFF
        .saturating_mul(1u32 << auto_restarts.min(6))
        .min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_from_one_second_to_a_minute() {
        let waits: Vec<u64> = (0..9).map(|n| restart_backoff(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }
}
