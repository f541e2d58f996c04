//! Start, stop, restart, shutdown: the lifecycle of one plugin, under its lifecycle lock.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use nebula_plugin_api::{Plugin, PluginContext};

use super::slot::{CallTicket, PluginSlot};
use super::state::{Observation, NOT_INITIALIZED};
use super::stats::{Outcome, ProcessInfo};
use super::{
    guarded, HostAccess, InstanceSetup, InstanceWatch, ManagerError, Method, PluginManager,
    PluginRecord, PluginSource, PluginStats,
};
use crate::storage::unix_now;

/// Beyond a process plugin's grace: time for the SIGKILL and the reap.
const PROCESS_KILL_MARGIN: std::time::Duration = std::time::Duration::from_secs(2);

impl PluginManager {
    /// Builds and initialises a fresh instance (shutting the old one down first). The caller
    /// holds the slot's lifecycle lock.
    pub(super) async fn reinitialize_locked(&self, slot: &Arc<PluginSlot>) {
        self.retire(slot).await;
        if slot.removed.load(Ordering::SeqCst) || self.is_shutting_down() {
            return;
        }
        let (descriptor, scopes, next_generation) = {
            let st = slot.state.lock();
            (st.descriptor.clone(), st.scopes.clone(), st.generation + 1)
        };
        let Some(descriptor) = descriptor else {
            return;
        };
        let ctx = PluginContext::new(slot.name.as_str(), scopes, self.host.clone())
            .with_settings(self.settings.settings_of(&slot.name));
        let mut setup = self.instance_setup(&slot.name, descriptor.source, &ctx);
        setup.watch = InstanceWatch::bound(self.me.clone(), slot, next_generation);
        let constructor = descriptor.constructor.clone();
        let started = Instant::now();
        let result = guarded(
            async move {
                let plugin: Arc<dyn Plugin> = Arc::from(constructor(&setup));
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
                self.revoke_host_token(&slot.name);
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

    /// What a new instance of `plugin` gets besides its context: for a plugin out of process,
    /// when the host service is served, a fresh token (the previous instance's dies) bound
    /// to the very context an in-process instance would get.
    fn instance_setup(
        &self,
        plugin: &str,
        source: PluginSource,
        ctx: &PluginContext,
    ) -> InstanceSetup {
        let mut setup = InstanceSetup::default();
        if let Some(link) = self
            .host_service
            .as_ref()
            .filter(|_| source.is_out_of_process())
        {
            // A process plugin runs on this machine: the unix socket, never a TCP endpoint
            // meant for plugins elsewhere.
            let endpoint = match source {
                PluginSource::Process => &link.local_endpoint,
                PluginSource::InProcess | PluginSource::Grpc => &link.endpoint,
            };
            match link.tokens.mint(plugin, ctx.clone()) {
                Ok(token) => {
                    setup.host = Some(HostAccess {
                        endpoint: endpoint.clone(),
                        token,
                    })
                }
                // Only when the OS has no randomness: the plugin runs without its context.
                Err(e) => tracing::error!(%plugin, error = %e, "no host token could be made"),
            }
        }
        setup
    }

    /// Whether `shutdown` has begun.
    pub(super) fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Revokes the host token of `plugin`'s instance (it is going away).
    pub(super) fn revoke_host_token(&self, plugin: &str) {
        if let Some(link) = &self.host_service {
            link.tokens.revoke(plugin);
        }
    }

    /// Calls `shutdown` on an instance that is no longer reachable through the slot. Failures
    /// are logged, never propagated: a plugin cannot stop the host from moving on.
    pub(super) async fn shutdown_instance(&self, slot: &PluginSlot, instance: Arc<dyn Plugin>) {
        let started = Instant::now();
        // A process plugin gets its SIGTERM grace (and the SIGKILL after it) in full; when
        // even that runs out, dropping its shutdown kills the process.
        let bound = if slot.state.lock().identity.source == PluginSource::Process {
            self.settings
                .call_timeout
                .max(self.settings.process_shutdown_grace + PROCESS_KILL_MARGIN)
        } else {
            self.settings.call_timeout
        };
        let result = guarded(async move { instance.shutdown().await }, bound).await;
        slot.state.lock().stats.record(
            Method::Shutdown,
            started.elapsed(),
            Outcome::of(result.as_ref().err()),
        );
        if let Err(failure) = result {
            let error = failure.describe(Method::Shutdown);
            tracing::warn!(plugin = %slot.name, %error, "plugin shutdown failed");
            let mut st = slot.state.lock();
            st.state.error = error;
            st.state.updated_at = unix_now();
        }
    }

    /// Detaches the instance and shuts it down (bounded; failures are logged).
    pub(super) async fn retire(&self, slot: &PluginSlot) {
        self.revoke_host_token(&slot.name);
        if let Some(old) = slot.detach() {
            self.shutdown_instance(slot, old).await;
        }
    }

    /// Marks the plugin disabled with `message`, then retires its instance. The caller holds
    /// the lifecycle lock and has persisted the flag.
    pub(super) async fn disable(&self, slot: &PluginSlot, message: String) {
        self.revoke_host_token(&slot.name);
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
            self.recover_if_down(&slot);
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
        if !slot.state.lock().state.enabled {
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
        self.recover_if_down(&slot);
        Ok(slot.record())
    }

    /// Call statistics of one plugin.
    pub fn stats(&self, name: &str) -> Result<PluginStats, ManagerError> {
        let slot = self.slot(name)?;
        let st = slot.state.lock();
        let r = &st.state;
        Ok(PluginStats {
            plugin: slot.name.clone(),
            status: r.status,
            enabled: r.enabled,
            uptime_sec: st
                .instance
                .is_some()
                .then_some(r.initialized_at)
                .filter(|t| *t > NOT_INITIALIZED)
                .map(|t| (unix_now() - t).max(0.0)),
            counters: r.counters,
            last_call_ms: r.last_call_ms,
            methods: st.stats.snapshot(),
            process: (st.identity.source == PluginSource::Process)
                .then(|| ProcessInfo::of(st.pid.filter(|_| st.instance.is_some()))),
        })
    }

    /// Shuts every plugin down, in parallel, each bounded by the call timeout. Nothing is
    /// started or restarted after this begins (a restart scheduled after a backoff, a rescan
    /// or a recovery in flight finds the manager shutting down).
    pub async fn shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        let slots: Vec<Arc<PluginSlot>> = self.slots.read().values().cloned().collect();
        let all = slots.iter().map(|slot| async move {
            // After any lifecycle operation in flight: what it started is shut down too.
            let _life = slot.lifecycle.lock().await;
            self.retire(slot).await;
            let mut st = slot.state.lock();
            if st.state.enabled {
                st.state.message = "shut down".into();
                st.state.updated_at = unix_now();
            }
        });
        futures::future::join_all(all).await;
    }
}
