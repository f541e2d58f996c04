//! Fault-injecting plugins for the workspace tests.
//!
//! They register through `inventory` like any plugin, but live in this crate, which only test
//! binaries link: the server never sees them. Each is named for what it does wrong.

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
