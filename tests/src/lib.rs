//! Fault-injecting plugins for the workspace tests.
//!
//! They register through `inventory` like any plugin, but live in this crate, which only test
//! binaries and the `nebula-server-faults` load-test binary (feature `fault-plugins`) link: the
//! shipped `nebula-server` never sees them. Each is named for what it does wrong.

#![warn(missing_docs)]

use nebula_plugin_api::{
    async_trait, json_object, register_plugin, JsonObject, Plugin, PluginContext, PluginError,
    SyncRequest,
};

fn manifest_for(name: &str) -> String {
    format!(
        r#"{{"name":"{name}","version":"0.0.1","description":"test plugin","api_version":"v1","scopes":["users.read"]}}"#
    )
}

macro_rules! fault_plugin {
    ($ty:ident, $name:literal, $manifest:ident) => {
        const $manifest: &str = concat!(
            r#"{"name":""#,
            $name,
            r#"","version":"0.0.1","description":"test plugin: "#,
            stringify!($ty),
            r#"","api_version":"v1","scopes":["users.read"]}"#
        );
        register_plugin!($manifest, || Box::new($ty));
    };
}

/// Answers everything correctly and at once.
pub struct WellBehaved;
fault_plugin!(WellBehaved, "well_behaved", WELL_BEHAVED);

#[async_trait]
impl Plugin for WellBehaved {
    async fn initialize(&self, _ctx: PluginContext) -> Result<(), PluginError> {
        Ok(())
    }
    async fn health(&self) -> Result<JsonObject, PluginError> {
        Ok(json_object!({"status": "ok"}))
    }
    async fn sync_users(&self, request: SyncRequest) -> Result<JsonObject, PluginError> {
        Ok(json_object!({"status": "ok", "count": request.limited_users().len()}))
    }
}

/// Panics in `initialize`.
pub struct PanicsInInit;
fault_plugin!(PanicsInInit, "panics_in_init", PANICS_IN_INIT);

#[async_trait]
impl Plugin for PanicsInInit {
    async fn initialize(&self, _ctx: PluginContext) -> Result<(), PluginError> {
        panic!("boom in initialize");
    }
    async fn health(&self) -> Result<JsonObject, PluginError> {
        Ok(json_object!({"status": "ok"}))
    }
    async fn sync_users(&self, _request: SyncRequest) -> Result<JsonObject, PluginError> {
        Ok(JsonObject::new())
    }
}

/// Healthy, but `sync_users` never returns.
pub struct HangsInSync;
fault_plugin!(HangsInSync, "hangs_in_sync", HANGS_IN_SYNC);

#[async_trait]
impl Plugin for HangsInSync {
    async fn initialize(&self, _ctx: PluginContext) -> Result<(), PluginError> {
        Ok(())
    }
    async fn health(&self) -> Result<JsonObject, PluginError> {
        Ok(json_object!({"status": "ok"}))
    }
    async fn sync_users(&self, _request: SyncRequest) -> Result<JsonObject, PluginError> {
        std::future::pending().await
    }
}

/// `health` returns an error; `sync_users` panics.
pub struct FailsHealth;
fault_plugin!(FailsHealth, "fails_health", FAILS_HEALTH);

#[async_trait]
impl Plugin for FailsHealth {
    async fn initialize(&self, _ctx: PluginContext) -> Result<(), PluginError> {
        Ok(())
    }
    async fn health(&self) -> Result<JsonObject, PluginError> {
        Err(PluginError::Unavailable(
            "upstream directory unreachable".into(),
        ))
    }
    async fn sync_users(&self, _request: SyncRequest) -> Result<JsonObject, PluginError> {
        panic!("sync exploded");
    }
}

/// `manifest_for` is kept for tests that build descriptors by hand.
pub fn test_manifest(name: &str) -> nebula_plugin_api::PluginManifest {
    nebula_plugin_api::PluginManifest::from_json(&manifest_for(name))
        .unwrap_or_else(|e| panic!("test manifest for {name}: {e}"))
}

/// Scripted faults with counters shared by every instance a descriptor builds, so behaviour
/// carries across restarts ("fail twice, then recover") and tests can see what was called.
pub mod faults {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    use nebula_core::{InstanceSetup, PluginDescriptor};
    use nebula_plugin_api::{
        async_trait, json_object, JsonObject, Plugin, PluginContext, PluginError, SyncRequest,
    };

    /// What goes wrong.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Fault {
        /// Nothing: answers at once.
        None,
        /// The n-th `sync_users` call (counted across instances, from 1) panics.
        PanicOnSyncCall(u32),
        /// `health` and `sync_users` never return.
        HangForever,
        /// `health` answers at once; `sync_users` never returns.
        HangInSync,
        /// `health` answers `{"status": "degraded", …}`: a working call reporting a problem.
        HealthNotOk,
        /// `health` answers `ok` after this many milliseconds; `sync_users` never returns.
        SlowHealthAndHangInSync(u64),
        /// The first k `health` calls (across instances) fail, then it recovers.
        FailHealthTimes(u32),
        /// `health` and `sync_users` always fail.
        AlwaysFail,
        /// `shutdown` panics.
        PanicInShutdown,
        /// `initialize` panics.
        PanicInInit,
    }

    /// Calls seen, across every instance.
    #[derive(Debug, Default)]
    pub struct Counters {
        /// `initialize` calls.
        pub inits: AtomicU32,
        /// `health` calls.
        pub health: AtomicU32,
        /// `sync_users` calls.
        pub syncs: AtomicU32,
        /// `shutdown` calls.
        pub shutdowns: AtomicU32,
    }

    struct FaultPlugin {
        fault: Fault,
        counters: Arc<Counters>,
    }

    #[async_trait]
    impl Plugin for FaultPlugin {
        async fn initialize(&self, _ctx: PluginContext) -> Result<(), PluginError> {
            self.counters.inits.fetch_add(1, Ordering::SeqCst);
            if self.fault == Fault::PanicInInit {
                panic!("scripted panic in initialize");
            }
            Ok(())
        }

        async fn health(&self) -> Result<JsonObject, PluginError> {
            let n = self.counters.health.fetch_add(1, Ordering::SeqCst) + 1;
            match self.fault {
                Fault::HangForever => std::future::pending().await,
                Fault::SlowHealthAndHangInSync(ms) => {
                    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                    Ok(json_object!({"status": "ok"}))
                }
                Fault::HealthNotOk => Ok(json_object!({
                    "status": "degraded",
                    "message": "upstream directory is read-only",
                })),
                Fault::AlwaysFail => {
                    Err(PluginError::Unavailable("scripted health failure".into()))
                }
                Fault::FailHealthTimes(k) if n <= k => Err(PluginError::Unavailable(format!(
                    "scripted health failure {n}/{k}"
                ))),
                _ => Ok(json_object!({"status": "ok"})),
            }
        }

        async fn sync_users(&self, request: SyncRequest) -> Result<JsonObject, PluginError> {
            let n = self.counters.syncs.fetch_add(1, Ordering::SeqCst) + 1;
            match self.fault {
                Fault::HangForever | Fault::HangInSync | Fault::SlowHealthAndHangInSync(_) => {
                    std::future::pending().await
                }
                Fault::AlwaysFail => Err(PluginError::internal("scripted sync failure")),
                Fault::PanicOnSyncCall(k) if n == k => panic!("scripted panic on sync call {n}"),
                _ => Ok(json_object!({"status": "ok", "count": request.limited_users().len()})),
            }
        }

        async fn shutdown(&self) -> Result<(), PluginError> {
            self.counters.shutdowns.fetch_add(1, Ordering::SeqCst);
            if self.fault == Fault::PanicInShutdown {
                panic!("scripted panic in shutdown");
            }
            Ok(())
        }
    }

    /// A descriptor for a plugin named `name` with `fault`, and its shared counters.
    pub fn descriptor(name: &str, fault: Fault) -> (PluginDescriptor, Arc<Counters>) {
        let counters = Arc::new(Counters::default());
        let shared = counters.clone();
        let mut d = PluginDescriptor::in_process(
            super::test_manifest(name),
            || Box::new(super::WellBehaved),
            format!("nebula_tests::faults::{name}"),
        );
        d.constructor = Arc::new(move |_: &InstanceSetup| {
            Box::new(FaultPlugin {
                fault,
                counters: shared.clone(),
            })
        });
        (d, counters)
    }
}
