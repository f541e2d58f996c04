//! `csv_import`: imports users from a CSV file named in its settings.
//!
//! The worked example of `docs/PLUGIN_AUTHOR_GUIDE.md`. Settings (`[plugins.settings.csv_import]`,
//! see [`Settings`]) name the file and the tenant. The file has a header row naming its
//! columns ([`COLUMNS`]: `username` required, `email`, `role_tag`, `is_active`, in any order).
//!
//! - `health`: `ok` when the file is readable, else `degraded` with the reason. Without any
//!   settings table the plugin is linked but not used: `ok` with `"configured": false`.
//! - A dry run previews every line: `would_create` or `would_update` (compared with the
//!   tenant's users), or `would_fail` with the reason. It writes nothing.
//! - A real run syncs each line on its own and reports it: `created`, `updated`, or `failed`
//!   with an error naming the line. A bad line never aborts the batch. It emits
//!   `sync.started` and `sync.finished`.
//! - The request's `users`, when given, restrict the import to those usernames (only their
//!   `username` is read); its `limit` applies to the lines selected.

#![warn(missing_docs)]

mod file;
mod settings;

use std::collections::HashSet;

use nebula_plugin_api::serde_json::{json, Value};
use nebula_plugin_api::{
    async_trait, json_object, normalize_role_tag, register_plugin, ContextCell, JsonObject,
    LogLevel, Plugin, PluginContext, PluginError, SyncOutcome, SyncRequest,
};

use file::Row;
pub use file::COLUMNS;
pub use settings::Settings;

/// The plugin. All it keeps is its context; the settings are read from it on each call.
#[derive(Debug, Default)]
pub struct CsvImport {
    ctx: ContextCell,
}

register_plugin!(CsvImport);

/// What `health` says when there is no settings table at all.
const NOT_CONFIGURED: &str =
    "not configured: add [plugins.settings.csv_import] with path and db_name";

#[async_trait]
impl Plugin for CsvImport {
    async fn initialize(&self, ctx: PluginContext) -> Result<(), PluginError> {
        // Bad settings do not fail initialisation: the plugin stays listed, and health and
        // sync answer with the error naming the key.
        match Settings::configured(&ctx) {
            Ok(Some(s)) => ctx.log(
                LogLevel::Info,
                format!("importing '{}' into {}", s.path.display(), s.db_name),
            ),
            Ok(None) => ctx.log(LogLevel::Info, NOT_CONFIGURED),
            Err(e) => ctx.log(LogLevel::Warn, e.to_string()),
        }
        self.ctx.set(ctx)
    }

    async fn health(&self) -> Result<JsonObject, PluginError> {
        let ctx = self.ctx.get()?;
        let readable = match Settings::configured(ctx) {
            Ok(Some(settings)) => file::check_readable(&settings.path).await,
            Ok(None) => {
                return Ok(json_object!({
                    "status": "ok", "configured": false, "message": NOT_CONFIGURED,
                }))
            }
            Err(e) => Err(e),
        };
        Ok(match readable {
            Ok(()) => json_object!({"status": "ok", "configured": true}),
            Err(e) => json_object!({"status": "degraded", "message": e.to_string()}),
        })
    }

    async fn sync_users(&self, request: SyncRequest) -> Result<JsonObject, PluginError> {
        let ctx = self.ctx.get()?;
        let settings = Settings::required(ctx)?;
        let rows = file::load(&settings).await?;
        let (selected, not_in_file) = select(&rows, &request);
        let rows = request.apply_limit(&selected);
        let mut answer = if request.dry_run {
            preview(ctx, &settings, rows).await?
        } else {
            import(ctx, &settings, rows).await
        };
        if request.users.is_some() {
            answer.insert("not_in_file".into(), json!(not_in_file));
        }
        Ok(answer)
    }
}

/// The rows the request asks for: those of its usernames, or every row when it names none;
/// and the usernames it names that the file does not have.
fn select<'a>(rows: &'a [Row], request: &SyncRequest) -> (Vec<&'a Row>, Vec<String>) {
    let Some(users) = &request.users else {
        return (rows.iter().collect(), Vec::new());
    };
    let wanted: HashSet<&str> = users.iter().map(|u| u.username.trim()).collect();
    let in_file: HashSet<&str> = rows.iter().map(|r| r.username.as_str()).collect();
    let selected = rows
        .iter()
        .filter(|r| wanted.contains(r.username.as_str()))
        .collect();
    let mut missing: Vec<String> = wanted
        .into_iter()
        .filter(|name| !in_file.contains(name))
        .map(str::to_owned)
        .collect();
    missing.sort();
    (selected, missing)
}

/// A dry run: what a real run would do with each row. Writes nothing.
async fn preview(
    ctx: &PluginContext,
    settings: &Settings,
    rows: &[&Row],
) -> Result<JsonObject, PluginError> {
    let mut known = existing_usernames(ctx, &settings.db_name).await?;
    let (mut create, mut update, mut fail) = (0u64, 0u64, 0u64);
    let items: Vec<Value> = rows
        .iter()
        .map(|row| match &row.user {
            // A name seen earlier in the file counts as existing, as it will on a real run.
            Ok(user) if !known.insert(user.username.clone()) => {
                update += 1;
                item(row, "would_update", None)
            }
            Ok(_) => {
                create += 1;
                item(row, "would_create", None)
            }
            Err(e) => {
                fail += 1;
                item(row, "would_fail", Some(e))
            }
        })
        .collect();
    Ok(json_object!({
        "status": "dry_run", "db_name": settings.db_name, "count": items.len(),
        "would_create": create, "would_update": update, "would_fail": fail, "items": items,
    }))
}

/// Every username of the tenant, a page at a time.
async fn existing_usernames(
    ctx: &PluginContext,
    db_name: &str,
) -> Result<HashSet<String>, PluginError> {
    const PAGE: u32 = 2000;
    let mut names = HashSet::new();
    loop {
        let offset = names.len() as u64;
        let page = ctx.list_users(db_name, PAGE, offset).await?;
        let full = page.len() == PAGE as usize;
        names.extend(page.into_iter().map(|u| u.username));
        if !full {
            return Ok(names);
        }
    }
}

/// A real run: each row synced on its own; a failure is reported and the batch goes on.
async fn import(ctx: &PluginContext, settings: &Settings, rows: &[&Row]) -> JsonObject {
    let started = json!({"db_name": settings.db_name, "count": rows.len()});
    logged(ctx, ctx.emit_event("sync.started", started)).await;
    let (mut created, mut updated, mut failed) = (0u64, 0u64, 0u64);
    let mut items = Vec::with_capacity(rows.len());
    for row in rows {
        let outcome = match &row.user {
            Ok(user) => ctx
                .sync_user(user)
                .await
                .map_err(|e| format!("line {}: {e}", row.line)),
            Err(e) => Err(e.clone()),
        };
        items.push(match outcome {
            Ok(SyncOutcome::Created) => {
                created += 1;
                item(row, "created", None)
            }
            Ok(SyncOutcome::Updated) => {
                updated += 1;
                item(row, "updated", None)
            }
            Err(e) => {
                failed += 1;
                item(row, "failed", Some(&e))
            }
        });
    }
    let status = if failed == 0 { "ok" } else { "partial" };
    let mut summary = json_object!({
        "status": status, "db_name": settings.db_name, "count": rows.len(),
        "created": created, "updated": updated, "failed": failed,
    });
    let finished = Value::Object(summary.clone());
    logged(ctx, ctx.emit_event("sync.finished", finished)).await;
    ctx.log(
        LogLevel::Info,
        format!(
            "imported {} lines: {created} created, {updated} updated, {failed} failed",
            rows.len()
        ),
    );
    summary.insert("items".into(), Value::Array(items));
    summary
}

/// One row of an answer: its line, username, role tag as it is stored, what happened.
fn item(row: &Row, action: &str, error: Option<&String>) -> Value {
    let mut item = json_object!({"line": row.line, "username": row.username, "action": action});
    if let Ok(user) = &row.user {
        item.insert("role_tag".into(), normalize_role_tag(&user.role_tag).into());
    }
    if let Some(error) = error {
        item.insert("error".into(), error.as_str().into());
    }
    Value::Object(item)
}

/// Runs a bookkeeping step (an event) whose failure, a missing `events.emit` grant say, is
/// logged and never fails the import.
async fn logged<F>(ctx: &PluginContext, step: F)
where
    F: std::future::Future<Output = Result<(), PluginError>>,
{
    if let Err(e) = step.await {
        ctx.log(LogLevel::Warn, e.to_string());
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::Arc;

    use nebula_plugin_api::testing::RecordingHost;
    use nebula_plugin_api::{Host, Scope, ScopeSet, SyncUser};

    use super::*;

    /// The plugin initialised over a recording host, with `path` as its file.
    async fn plugin(path: &std::path::Path, scopes: ScopeSet) -> (CsvImport, Arc<RecordingHost>) {
        let host = RecordingHost::new();
        let settings = json_object!({"path": path, "db_name": "acme"});
        let ctx = host.context("csv_import", scopes).with_settings(settings);
        let plugin = CsvImport::default();
        plugin.initialize(ctx).await.unwrap();
        (plugin, host)
    }

    fn csv_file(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(text.as_bytes()).unwrap();
        file
    }

    #[tokio::test]
    async fn a_dry_run_compares_with_the_tenant_and_writes_nothing() {
        let file = csv_file("username,role_tag\nann,Dev Ops\nbob,\n,x\nann,ops\n");
        let (plugin, host) = plugin(file.path(), ScopeSet::all()).await;
        // bob is already in acme.db.
        let bob = SyncUser {
            db_name: "acme.db".into(),
            ..SyncUser::new("bob")
        };
        host.sync_user("someone", &bob).await.unwrap();

        let answer = plugin.sync_users(SyncRequest::default()).await.unwrap();
        let actions: Vec<&str> = answer["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["action"].as_str().unwrap())
            .collect();
        assert_eq!(
            actions,
            ["would_create", "would_update", "would_fail", "would_update"]
        );
        assert_eq!(answer["items"][0]["role_tag"], "dev_ops");
        assert_eq!(answer["items"][2]["error"], "line 4: username is empty");
        assert_eq!(
            (
                answer["would_create"].as_u64(),
                answer["would_fail"].as_u64()
            ),
            (Some(1), Some(1))
        );
        assert_eq!(host.users().len(), 1, "a dry run writes nothing");
        assert!(host.events().is_empty());
    }

    #[tokio::test]
    async fn a_real_run_writes_each_row_and_names_what_it_did() {
        let file = csv_file("username,email,is_active\nann,ann@example.com,\nbob,,no\n");
        let (plugin, host) = plugin(file.path(), ScopeSet::all()).await;
        let request = SyncRequest {
            dry_run: false,
            ..SyncRequest::default()
        };
        let answer = plugin.sync_users(request).await.unwrap();
        assert_eq!(
            (answer["status"].as_str(), answer["created"].as_u64()),
            (Some("ok"), Some(2))
        );
        let users = host.users();
        assert_eq!(users[0].email.as_deref(), Some("ann@example.com"));
        assert_eq!(
            (users[1].username.as_str(), users[1].is_active),
            ("bob", false)
        );
        assert_eq!(users[1].role_tag, "user");
        let events: Vec<String> = host.events().into_iter().map(|(name, _)| name).collect();
        assert_eq!(
            events,
            [
                "plugin.csv_import.sync.started",
                "plugin.csv_import.sync.finished"
            ]
        );
    }

    #[tokio::test]
    async fn a_missing_scope_fails_each_row_and_a_missing_events_grant_only_logs() {
        let file = csv_file("username\nann\n");
        let scopes: ScopeSet = [Scope::UsersRead, Scope::IdentityTagsRead]
            .into_iter()
            .collect();
        let (plugin, host) = plugin(file.path(), scopes).await;
        let request = SyncRequest {
            dry_run: false,
            ..SyncRequest::default()
        };
        let answer = plugin.sync_users(request).await.unwrap();
        assert_eq!(answer["status"], "partial");
        let error = answer["items"][0]["error"].as_str().unwrap();
        assert!(
            error.starts_with("line 2: ") && error.contains("users.write"),
            "{error}"
        );
        assert!(host.users().is_empty() && host.events().is_empty());
        assert!(host
            .logs()
            .iter()
            .any(|(_, line)| line.contains("events.emit")));
    }
}
