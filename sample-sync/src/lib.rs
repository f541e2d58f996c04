//! `sample_sync`: the sample user sync plugin of plugin_api_v1.
//!
//! A dry run previews what would be synced, in exactly the seed's shape. A real run upserts the
//! role `contractor`, then syncs each user on its own: one bad user is reported as `failed` and
//! never aborts the batch. When the request carries no users, two demo users (tenant `demo.db`)
//! are used, so a bare call shows something useful.

#![warn(missing_docs)]

use std::sync::OnceLock;

use nebula_plugin_api::serde_json::{json, Value};
use nebula_plugin_api::{
    async_trait, json_object, plugin_manifest, register_plugin, JsonObject, LogLevel, Plugin,
    PluginContext, PluginError, SyncRequest, SyncUser,
};

/// The embedded manifest, `plugin.json`, checked when the crate compiles.
pub const MANIFEST: &str = plugin_manifest!("plugin.json");

/// The role every real run makes sure exists.
const CONTRACTOR_ROLE: &str = "contractor";

/// The sample plugin. Holds its context once initialised.
#[derive(Debug, Default)]
pub struct SampleSync {
    ctx: OnceLock<PluginContext>,
}

/// The factory the host calls (also usable to run the plugin out of process).
pub fn create_plugin() -> Box<dyn Plugin> {
    Box::new(SampleSync::default())
}

register_plugin!(MANIFEST, create_plugin);

fn demo_users() -> Vec<SyncUser> {
    vec![
        SyncUser {
            email: Some("alice@example.com".into()),
            role_tag: "developer".into(),
            db_name: "demo.db".into(),
            ..SyncUser::new("demo.alice")
        },
        SyncUser {
            email: Some("bob@example.com".into()),
            role_tag: CONTRACTOR_ROLE.into(),
            db_name: "demo.db".into(),
            ..SyncUser::new("demo.bob")
        },
    ]
}

impl SampleSync {
    fn ctx(&self) -> Result<&PluginContext, PluginError> {
        self.ctx
            .get()
            .ok_or_else(|| PluginError::internal("sample_sync is not initialised"))
    }

    async fn real_run(&self, users: &[SyncUser]) -> Result<JsonObject, PluginError> {
        let ctx = self.ctx()?;
        // Events and the role are bookkeeping: if they fail (or the scope is not granted),
        // say so in the log and still sync and report every user.
        if let Err(e) = ctx
            .emit_event("sync.started", json!({"count": users.len()}))
            .await
        {
            ctx.log(LogLevel::Warn, format!("sync.started not emitted: {e}"));
        }
        if let Err(e) = ctx
            .upsert_identity_role(CONTRACTOR_ROLE, "External contractor", false)
            .await
        {
            ctx.log(
                LogLevel::Warn,
                format!("role '{CONTRACTOR_ROLE}' not upserted: {e}"),
            );
        }
        let (mut created, mut updated, mut failed) = (0u64, 0u64, 0u64);
        let mut items = Vec::with_capacity(users.len());
        for user in users {
            let result = ctx
                .sync_user(
                    &user.username,
                    &user.db_name,
                    &user.role_tag,
                    user.email.as_deref(),
                    user.is_active,
                )
                .await;
            let mut item = json_object!({
                "username": user.username,
                "db_name": user.db_name,
                "role_tag": user.role_tag,
            });
            match result {
                Ok(outcome) => {
                    match outcome {
                        nebula_plugin_api::SyncOutcome::Created => created += 1,
                        nebula_plugin_api::SyncOutcome::Updated => updated += 1,
                    }
                    item.insert("action".into(), outcome.as_str().into());
                }
                Err(e) => {
                    failed += 1;
                    ctx.log(
                        LogLevel::Warn,
                        format!("user '{}' failed: {e}", user.username),
                    );
                    item.insert("action".into(), "failed".into());
                    item.insert("error".into(), e.to_string().into());
                }
            }
            items.push(Value::Object(item));
        }
        let status = if failed == 0 { "ok" } else { "partial" };
        let summary = json!({
            "status": status, "count": users.len(),
            "created": created, "updated": updated, "failed": failed,
        });
        if let Err(e) = ctx.emit_event("sync.finished", summary.clone()).await {
            ctx.log(LogLevel::Warn, format!("sync.finished not emitted: {e}"));
        }
        let mut answer = match summary {
            Value::Object(map) => map,
            _ => JsonObject::new(),
        };
        answer.insert("items".into(), Value::Array(items));
        Ok(answer)
    }
}

#[async_trait]
impl Plugin for SampleSync {
    async fn initialize(&self, ctx: PluginContext) -> Result<(), PluginError> {
        ctx.log(LogLevel::Info, "sample_sync initialised");
        self.ctx
            .set(ctx)
            .map_err(|_| PluginError::internal("sample_sync initialised twice"))
    }

    async fn health(&self) -> Result<JsonObject, PluginError> {
        self.ctx()?;
        Ok(json_object!({"status": "ok"}))
    }

    async fn sync_users(&self, request: SyncRequest) -> Result<JsonObject, PluginError> {
        let demo;
        let users = match &request.users {
            Some(_) => request.limited_users(),
            None => {
                demo = demo_users();
                request.apply_limit(&demo)
            }
        };
        if request.dry_run {
            let items: Vec<Value> = users
                .iter()
                .map(|u| {
                    json!({
                        "action": "would_sync",
                        "username": u.username,
                        "db_name": u.db_name,
                        "role_tag": u.role_tag,
                    })
                })
                .collect();
            return Ok(json_object!({"status": "dry_run", "count": items.len(), "items": items}));
        }
        self.real_run(users).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn dry_run_matches_the_seed_exactly() {
        let plugin = SampleSync::default();
        let request = SyncRequest::from_json_slice(
            br#"{"dry_run":true,"users":[{"username":"john.doe","db_name":"system.db",
                "role_tag":"developer","email":"john@example.com","is_active":true}],"limit":0}"#,
        )
        .unwrap();
        let answer = plugin.sync_users(request).await.unwrap();
        assert_eq!(
            Value::Object(answer),
            json!({"status": "dry_run", "count": 1, "items": [{"action": "would_sync",
                "username": "john.doe", "db_name": "system.db", "role_tag": "developer"}]})
        );
    }

    #[tokio::test]
    async fn dry_run_without_users_previews_two_demo_users_and_honours_limit() {
        let plugin = SampleSync::default();
        let answer = plugin.sync_users(SyncRequest::default()).await.unwrap();
        assert_eq!(answer["count"], 2);
        let limited = SyncRequest {
            limit: 1,
            ..SyncRequest::default()
        };
        let answer = plugin.sync_users(limited).await.unwrap();
        assert_eq!(answer["count"], 1);
        assert_eq!(answer["items"][0]["username"], "demo.alice");
    }

    #[test]
    fn manifest_is_the_contracts() {
        let m = nebula_plugin_api::PluginManifest::from_json(MANIFEST).unwrap();
        assert_eq!(m.name, "sample_sync");
        assert_eq!(m.version, "0.1.0");
        assert_eq!(m.description, "Sample user sync plugin for plugin_api_v1");
        assert_eq!(m.declared_scopes().len(), 7);
    }
}
