//! `sample_sync`: the sample user sync plugin of plugin_api_v1.
//!
//! A dry run previews what would be synced, in exactly the seed's shape. A real run upserts the
//! role `contractor`, then syncs each user on its own: one bad user is reported as `failed` and
//! never aborts the batch. When the request carries no users, two demo users (tenant `demo.db`)
//! are used, so a bare call shows something useful.

#![warn(missing_docs)]

use nebula_plugin_api::serde_json::{json, Value};
use nebula_plugin_api::{
    async_trait, json_object, plugin_manifest, register_plugin, ContextCell, IdentityRole,
    JsonObject, LogLevel, Plugin, PluginContext, PluginError, SyncOutcome, SyncRequest, SyncUser,
};

/// The embedded manifest, `plugin.json`, checked when the crate compiles.
pub const MANIFEST: &str = plugin_manifest!("plugin.json");

/// The role every real run makes sure exists.
const CONTRACTOR_ROLE: &str = "contractor";

/// The sample plugin. Holds its context once initialised.
#[derive(Debug, Default)]
pub struct SampleSync {
    ctx: ContextCell,
}

/// The factory the host calls (also usable to run the plugin out of process).
pub fn create_plugin() -> Box<dyn Plugin> {
    Box::new(SampleSync::default())
}

register_plugin!(SampleSync);

fn demo_users() -> Vec<SyncUser> {
    let demo = |name: &str, email: &str, role_tag: &str| SyncUser {
        email: Some(email.into()),
        role_tag: role_tag.into(),
        db_name: "demo.db".into(),
        ..SyncUser::new(name)
    };
    vec![
        demo("demo.alice", "alice@example.com", "developer"),
        demo("demo.bob", "bob@example.com", CONTRACTOR_ROLE),
    ]
}

/// Runs a bookkeeping step whose failure (or missing scope) is logged, never fatal: the users
/// are synced and reported either way.
async fn logged<F>(ctx: &PluginContext, what: &str, step: F)
where
    F: std::future::Future<Output = Result<(), PluginError>>,
{
    if let Err(e) = step.await {
        ctx.log(LogLevel::Warn, format!("{what}: {e}"));
    }
}

impl SampleSync {
    async fn real_run(&self, users: &[SyncUser]) -> Result<JsonObject, PluginError> {
        let ctx = self.ctx.get()?;
        let started = json!({"count": users.len()});
        logged(
            ctx,
            "sync.started not emitted",
            ctx.emit_event("sync.started", started),
        )
        .await;
        let contractor = IdentityRole {
            name: CONTRACTOR_ROLE.into(),
            description: "External contractor".into(),
            is_staff: false,
        };
        let upsert = ctx.upsert_identity_role(&contractor);
        logged(
            ctx,
            &format!("role '{CONTRACTOR_ROLE}' not upserted"),
            upsert,
        )
        .await;
        // One bulk call (one transaction per chunk in the core, one round trip out of
        // process); a failure of the whole call (a missing scope) is every user's failure.
        let written: Vec<Result<SyncOutcome, PluginError>> = match ctx.sync_users(users).await {
            Ok(results) => results,
            Err(e) => users.iter().map(|_| Err(e.clone())).collect(),
        };
        let (mut created, mut updated, mut failed) = (0u64, 0u64, 0u64);
        let mut items = Vec::with_capacity(users.len());
        for (user, result) in users.iter().zip(written) {
            let mut item = json_object!({
                "username": user.username,
                "db_name": user.db_name,
                "role_tag": user.role_tag,
            });
            match result {
                Ok(outcome) => {
                    match outcome {
                        SyncOutcome::Created => created += 1,
                        SyncOutcome::Updated => updated += 1,
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
        let mut summary = json_object!({
            "status": status, "count": users.len(),
            "created": created, "updated": updated, "failed": failed,
        });
        let finished = ctx.emit_event("sync.finished", Value::Object(summary.clone()));
        logged(ctx, "sync.finished not emitted", finished).await;
        summary.insert("items".into(), Value::Array(items));
        Ok(summary)
    }
}

#[async_trait]
impl Plugin for SampleSync {
    async fn initialize(&self, ctx: PluginContext) -> Result<(), PluginError> {
        ctx.log(LogLevel::Info, "sample_sync initialised");
        self.ctx.set(ctx)
    }

    async fn health(&self) -> Result<JsonObject, PluginError> {
        self.ctx.get()?;
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
