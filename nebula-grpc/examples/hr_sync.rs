//! `hr_sync`: an external plugin in Rust that writes through the core's host service.
//!
//! Run it with `cargo run -p nebula-grpc --example hr_sync -- 127.0.0.1:50051` (the token the
//! core must send is `$HR_SYNC_TOKEN`), then list it in the core's configuration:
//!
//! ```toml
//! [[plugins.external]]
//! name = "hr_sync"
//! endpoint = "127.0.0.1:50051"
//! token_env = "HR_SYNC_TOKEN"
//! scopes = ["users.write", "identity_tags.write", "events.emit"]
//!
//! [plugins.settings.hr_sync]
//! default_tenant = "acme"
//! ```
//!
//! Quoted by docs/EXTERNAL_PLUGINS.md §11 (a test keeps the quote and this file in step).

use nebula_grpc::{serve, ServeOptions};
use nebula_plugin_api::serde_json::json;
use nebula_plugin_api::{
    async_trait, json_object, ContextCell, JsonObject, Plugin, PluginContext, PluginError,
    SyncRequest, SyncUser, SYSTEM_DB_NAME,
};

#[derive(Default)]
struct HrSync {
    // Set by `initialize`: a context backed by the core's host service.
    ctx: ContextCell,
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct Settings {
    default_tenant: String,
}

#[async_trait]
impl Plugin for HrSync {
    async fn initialize(&self, ctx: PluginContext) -> Result<(), PluginError> {
        self.ctx.set(ctx)
    }

    async fn health(&self) -> Result<JsonObject, PluginError> {
        Ok(json_object!({"status": "ok"}))
    }

    async fn sync_users(&self, request: SyncRequest) -> Result<JsonObject, PluginError> {
        let ctx = self.ctx.get()?;
        // [plugins.settings.hr_sync] of the core, through GetSettings.
        let settings: Settings = ctx.settings()?;
        let users: Vec<SyncUser> = request
            .limited_users()
            .iter()
            // Users sent without a tenant (the contract's default, `system.db`, which plugins
            // may not write) go to the configured one.
            .map(|u| SyncUser {
                db_name: if u.db_name == SYSTEM_DB_NAME {
                    settings.default_tenant.clone()
                } else {
                    u.db_name.clone()
                },
                ..u.clone()
            })
            .collect();
        if request.dry_run {
            return Ok(json_object!({"status": "dry_run", "count": users.len()}));
        }
        // One SyncUsers round trip per 10,000 users; a missing scope is PERMISSION_DENIED
        // from the core, here `PluginError::MissingScope`.
        let results = ctx.sync_users(&users).await?;
        let failed = results.iter().filter(|r| r.is_err()).count();
        ctx.emit_event("imported", json!({"count": users.len(), "failed": failed}))
            .await?;
        Ok(json_object!({"status": "ok", "count": users.len(), "failed": failed}))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listen = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:50051".into());
    let mut options = ServeOptions::new("hr_sync");
    // Required on TCP: whoever can call the plugin can make it write.
    options.token = Some(std::env::var("HR_SYNC_TOKEN")?);
    serve(Box::<HrSync>::default(), &listen, options, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
