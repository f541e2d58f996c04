//! Rescan: discover again, plan under the lock, carry the plan out after.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use nebula_plugin_api::ScopeSet;

use super::discovery::{discover_all, Discovery};
use super::slot::{PluginIdentity, PluginSlot};
use super::state::Observation;
use super::{ManagerError, PluginManager, PluginRecord};
use crate::storage::StorageError;

/// What one rescan will do, decided under the slot map's lock and carried out after it.
#[derive(Default)]
struct RescanPlan {
    /// Loadable plugins, new or changed: (re)initialised unless disabled. A plugin whose
    /// descriptor has the same fingerprint as the running one's is left alone.
    start: Vec<Arc<PluginSlot>>,
    /// Plugins no provider offers any more: shut down, and never started again.
    remove: Vec<Arc<PluginSlot>>,
    /// Plugins that cannot be loaded (bad manifest, duplicate name): listed with the reason,
    /// any running instance shut down.
    broken: Vec<(Arc<PluginSlot>, String)>,
}

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
        let plan = self.plan(discovery);
        self.carry_out(plan).await;
        Ok(self.list())
    }

    /// Brings the slot map in line with `discovery`, under its lock, and says what is left to
    /// do. Nothing here waits: no plugin call, no lifecycle lock, no database.
    fn plan(&self, discovery: Discovery) -> RescanPlan {
        let mut plan = RescanPlan::default();
        let mut slots = self.slots.write();
        let wanted: BTreeSet<&String> = discovery
            .plugins
            .keys()
            .chain(discovery.refused.iter().filter_map(|r| r.name.as_ref()))
            .collect();
        let stale: Vec<String> = slots
            .keys()
            .filter(|name| !wanted.contains(name))
            .cloned()
            .collect();
        for name in stale {
            plan.remove.extend(slots.remove(&name));
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
                        self.changes.clone(),
                    ))
                })
                .clone();
            let unchanged = {
                let mut st = slot.state.lock();
                // Same manifest and executable, same grants, running: leave it running.
                let unchanged = descriptor.fingerprint.is_some()
                    && st.descriptor.as_ref().map(|d| &d.fingerprint)
                        == Some(&descriptor.fingerprint)
                    && st.scopes == scopes
                    && st.instance.is_some();
                st.descriptor = Some(descriptor.clone());
                st.identity = PluginIdentity::of(Some(descriptor));
                st.scopes = scopes;
                unchanged
            };
            if !unchanged {
                plan.start.push(slot);
            }
        }
        for refused in discovery.refused {
            let Some(name) = refused.name else { continue };
            let slot = slots
                .entry(name.clone())
                .or_insert_with(|| {
                    Arc::new(PluginSlot::new(
                        &name,
                        None,
                        ScopeSet::empty(),
                        self.changes.clone(),
                    ))
                })
                .clone();
            {
                let mut st = slot.state.lock();
                st.descriptor = None;
                // Where the refused declaration is, so an admin can find it.
                st.identity.origin = refused.origin.clone();
            }
            plan.broken.push((slot, refused.message));
        }
        // Slots added or dropped change the list; counted while the map is still locked.
        self.changes
            .fetch_add(1, std::sync::atomic::Ordering::Release);
        plan
    }

    /// Carries a plan out: removed and broken plugins are shut down, the others started,
    /// each under its own lifecycle lock, all in parallel.
    async fn carry_out(&self, plan: RescanPlan) {
        for (slot, error) in &plan.broken {
            self.observe(
                slot,
                None,
                Observation::Broken {
                    error: error.clone(),
                },
            );
        }
        let removed = plan.remove.iter().map(|slot| (slot, true));
        let broken = plan.broken.iter().map(|(slot, _)| (slot, false));
        let shutdowns = removed.chain(broken).map(|(slot, gone)| async move {
            let _life = slot.lifecycle.lock().await;
            if gone {
                slot.removed.store(true, Ordering::SeqCst);
            }
            self.retire(slot).await;
        });
        futures::future::join_all(shutdowns).await;

        let starts = plan.start.iter().map(|slot| async move {
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
                self.recover_if_down(slot);
            }
        });
        futures::future::join_all(starts).await;
    }
}
