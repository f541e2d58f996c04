// The plugin every case registers (included with #[path]; not a case itself).

use nebula_plugin_api::{
    async_trait, json_object, JsonObject, Plugin, PluginContext, PluginError, SyncRequest,
};

#[derive(Default)]
pub struct Hello;

#[async_trait]
impl Plugin for Hello {
    async fn initialize(&self, _ctx: PluginContext) -> Result<(), PluginError> {
        Ok(())
    }
    async fn health(&self) -> Result<JsonObject, PluginError> {
        Ok(json_object!({"status": "ok"}))
    }
    async fn sync_users(&self, _request: SyncRequest) -> Result<JsonObject, PluginError> {
        Ok(json_object!({"status": "ok"}))
    }
}
