//! Rescan: discover again, plan under the lock, carry the plan out after.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use nebula_plugin_api::ScopeSet;

use super::discovery::discover_all;
use super::slot::PluginIdentity;
use super::slot::PluginSlot;
use super::state::Observation;
use super::{ManagerError, PluginManager, PluginRecord};
use crate::storage::StorageError;

impl PluginManager {
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
                    st.identity = PluginIdentity::of(Some(descriptor));
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
}
