//! Several instances on one database (SPEC §4): each instance re-reads the enabled flags the
//! others may have changed, every `plugins.state_poll_sec`, and follows them.

use std::collections::HashMap;
use std::sync::Arc;

use super::slot::PluginSlot;
use super::state::Observation;
use super::PluginManager;

impl PluginManager {
    /// Follows the stored enabled flags: a plugin another instance stopped (or the policy of
    /// another instance disabled) is disabled here, with the stored reason; one another
    /// instance started is started here. Plugins whose flag matches are left alone, so this
    /// is one read when nothing changed.
    pub async fn follow_shared_state(&self) {
        if self.is_shutting_down() {
            return;
        }
        let stored: HashMap<String, (bool, String)> = match self.store.all().await {
            Ok(rows) => rows
                .into_iter()
                .map(|(name, enabled, reason)| (name, (enabled, reason)))
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the plugins' enabled flags");
                return;
            }
        };
        let slots: Vec<Arc<PluginSlot>> = self.slots.read().values().cloned().collect();
        for slot in slots {
            let Some((enabled, reason)) = stored.get(&slot.name).cloned() else {
                continue;
            };
            if slot.state.lock().state.enabled == enabled {
                continue;
            }
            let _life = slot.lifecycle.lock().await;
            // Again under the lock: a local stop or start may have just landed.
            let (here, loadable, running) = {
                let st = slot.state.lock();
                (
                    st.state.enabled,
                    st.descriptor.is_some(),
                    st.instance.is_some(),
                )
            };
            if here == enabled {
                continue;
            }
            if enabled {
                tracing::info!(plugin = %slot.name, "started by another instance");
                self.observe(&slot, None, Observation::Enabled);
                if loadable && !running {
                    self.reinitialize_locked(&slot).await;
                    self.recover_if_down(&slot);
                }
            } else {
                let reason = if reason.is_empty() {
                    "disabled".to_owned()
                } else {
                    reason
                };
                tracing::info!(plugin = %slot.name, %reason, "disabled by another instance");
                self.disable(&slot, reason).await;
            }
        }
    }

    /// Runs [`follow_shared_state`](Self::follow_shared_state) every `plugins.state_poll_sec`
    /// until the manager is dropped.
    pub fn spawn_state_poll(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        self.spawn_every(self.settings.state_poll_interval, |manager| async move {
            manager.follow_shared_state().await
        })
    }
}
