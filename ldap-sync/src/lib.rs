//! `ldap_sync`: syncs users, their identity roles and their state from an LDAP directory
//! (OpenLDAP, Active Directory), as `docs/PLUGINS/ldap_sync.md` describes.
//!
//! - `health`: connects, binds and reads the user base entry: `ok`, or `unavailable` with the
//!   LDAP error (the server answers 503).
//! - A sync reads the whole directory first (paged), then plans against the tenant
//!   ([`plan`]): each entry `create`, `update` (with the changed fields), `unchanged` or
//!   `fail`, and in mirror mode the users this plugin synced before that LDAP no longer has,
//!   `deactivate`. A dry run answers the plan (`would_create`, …); a real run upserts the
//!   mapped roles, then writes the plan through the bulk path and answers what happened
//!   (`created`, `updated`, `unchanged`, `deactivated`, `failed`), item for item in the same
//!   order, between `sync.started` and `sync.finished` events.
//! - A read that fails writes nothing. Mirror mode deactivates nobody after a limited read or
//!   one that returns fewer than `mirror_min_fraction` of the users it synced before, and the
//!   answer says why.
//!
//! Settings: [`Settings`] (`[plugins.settings.ldap_sync]`).

#![warn(missing_docs)]

mod directory;
mod plan;
mod settings;

#[cfg(feature = "testing")]
pub mod testing;

use std::collections::HashMap;
use std::sync::Arc;

use nebula_plugin_api::serde_json::{json, Value};
use nebula_plugin_api::{
    async_trait, json_object, register_plugin, ContextCell, DirectoryUser, IdentityRole,
    JsonObject, LogLevel, Plugin, PluginContext, PluginError, SyncOutcome, SyncRequest,
};

pub use directory::{normalize_dn, LdapFailure, LdapUser};
pub use plan::{plan, Action, Item, MirrorDecision, Plan};
pub use settings::{Mode, RoleMapping, Settings};

/// The plugin. All it keeps is its context; the settings are read from it on each call.
#[derive(Debug, Default)]
pub struct LdapSync {
    ctx: ContextCell,
}

register_plugin!(LdapSync);

/// What `health` says when there is no settings table at all.
const NOT_CONFIGURED: &str =
    "not configured: add [plugins.settings.ldap_sync] with url, user_base_dn and db_name";

/// Users written per bulk call: one host-service round trip out of process, well under the
/// message limit.
const WRITE_CHUNK: usize = 2000;

/// Users of the tenant read per `list_users` call (the context's largest page).
const LIST_PAGE: u32 = 2000;

impl From<LdapFailure> for PluginError {
    fn from(e: LdapFailure) -> Self {
        match e {
            LdapFailure::Tls(_) => PluginError::invalid(e.to_string()),
            other => PluginError::Unavailable(format!("LDAP: {other}")),
        }
    }
}

#[async_trait]
impl Plugin for LdapSync {
    async fn initialize(&self, ctx: PluginContext) -> Result<(), PluginError> {
        // Bad settings do not fail initialisation: the plugin stays listed, and health and
        // sync answer with the error naming the key.
        match Settings::configured(&ctx) {
            Ok(Some(s)) => ctx.log(
                LogLevel::Info,
                format!(
                    "syncing {} ({}) into {} in {:?} mode",
                    s.url, s.user_base_dn, s.db_name, s.mode
                ),
            ),
            Ok(None) => ctx.log(LogLevel::Info, NOT_CONFIGURED),
            Err(e) => ctx.log(LogLevel::Warn, e.to_string()),
        }
        self.ctx.set(ctx)
    }

    async fn health(&self) -> Result<JsonObject, PluginError> {
        let ctx = self.ctx.get()?;
        let settings = match Settings::configured(ctx) {
            Ok(Some(settings)) => Arc::new(settings),
            Ok(None) => {
                return Ok(json_object!({
                    "status": "ok", "configured": false, "message": NOT_CONFIGURED,
                }))
            }
            Err(e) => return Ok(json_object!({"status": "unavailable", "message": e.to_string()})),
        };
        let checked = async {
            let mut conn = directory::Connection::open(Arc::clone(&settings)).await?;
            let read = conn.read_base().await;
            conn.close().await;
            read
        }
        .await;
        Ok(match checked {
            Ok(()) => json_object!({
                "status": "ok", "configured": true, "url": settings.url,
                "user_base_dn": settings.user_base_dn,
            }),
            Err(e) => json_object!({"status": "unavailable", "message": e.to_string()}),
        })
    }

    async fn sync_users(&self, request: SyncRequest) -> Result<JsonObject, PluginError> {
        let ctx = self.ctx.get()?;
        let settings = Arc::new(Settings::required(ctx)?);
        // Read everything before writing anything: a failed read writes nothing.
        let entries = {
            let mut conn = directory::Connection::open(Arc::clone(&settings)).await?;
            let read = conn.read_users().await;
            conn.close().await;
            read?
        };
        let existing = tenant_users(ctx, &settings.db_name).await?;
        let plan = plan::plan(&settings, ctx.plugin_name(), &entries, &existing, &request);
        let mut answer = if request.dry_run {
            preview(ctx, &settings, &plan).await?
        } else {
            run(ctx, &settings, &plan).await?
        };
        if let Some(mirror) = &plan.mirror {
            answer.insert("mirror".into(), mirror.to_json());
            if let Some(reason) = &mirror.reason {
                if !request.dry_run && mirror.missing > 0 {
                    ctx.log(LogLevel::Warn, format!("mirror: {reason}"));
                }
            }
        }
        if let Some(missing) = plan.not_in_directory {
            answer.insert("not_in_directory".into(), json!(missing));
        }
        Ok(answer)
    }
}

/// Every user of the tenant, by username, a page at a time.
async fn tenant_users(
    ctx: &PluginContext,
    db_name: &str,
) -> Result<HashMap<String, DirectoryUser>, PluginError> {
    let mut users = HashMap::new();
    let mut offset = 0u64;
    loop {
        let page = ctx.list_users(db_name, LIST_PAGE, offset).await?;
        let full = page.len() == LIST_PAGE as usize;
        offset += page.len() as u64;
        users.extend(page.into_iter().map(|u| (u.username.clone(), u)));
        if !full {
            return Ok(users);
        }
    }
}

/// The identity roles `role_map` names (and the default tag), each with whether it exists.
async fn mapped_roles(
    ctx: &PluginContext,
    settings: &Settings,
) -> Result<Vec<(IdentityRole, bool)>, PluginError> {
    let existing: std::collections::HashSet<String> = ctx
        .list_identity_roles()
        .await?
        .into_iter()
        .map(|r| r.name)
        .collect();
    let mut roles: Vec<(IdentityRole, bool)> = Vec::new();
    let mut add = |name: &str, description: String| {
        if !roles.iter().any(|(r, _)| r.name == name) {
            let role = IdentityRole {
                name: name.to_owned(),
                description,
                is_staff: false,
            };
            let exists = existing.contains(name);
            roles.push((role, exists));
        }
    };
    for mapping in &settings.role_map {
        add(
            &mapping.role_tag,
            format!("Members of the LDAP group '{}' (ldap_sync)", mapping.group),
        );
    }
    add(
        &settings.default_role_tag,
        "Users of no mapped LDAP group (ldap_sync)".into(),
    );
    Ok(roles)
}

/// A dry run: the plan as it stands. Writes nothing.
async fn preview(
    ctx: &PluginContext,
    settings: &Settings,
    plan: &Plan,
) -> Result<JsonObject, PluginError> {
    let roles: Vec<Value> = mapped_roles(ctx, settings)
        .await?
        .into_iter()
        .map(|(role, exists)| {
            json!({"name": role.name, "action": if exists { "unchanged" } else { "would_create" }})
        })
        .collect();
    let mut counts: HashMap<&str, u64> = HashMap::new();
    let items: Vec<Value> = plan
        .items
        .iter()
        .map(|item| {
            *counts.entry(item.action.preview()).or_default() += 1;
            item_json(item, item.action.preview(), None)
        })
        .collect();
    let count = |name: &str| counts.get(name).copied().unwrap_or(0);
    Ok(json_object!({
        "status": "dry_run", "db_name": settings.db_name, "mode": mode_name(settings),
        "count": items.len(),
        "would_create": count("would_create"), "would_update": count("would_update"),
        "unchanged": count("unchanged"), "would_deactivate": count("would_deactivate"),
        "would_fail": count("would_fail"),
        "roles": roles, "items": items,
    }))
}

/// A real run: the mapped roles first, then the plan's writes through the bulk path.
async fn run(
    ctx: &PluginContext,
    settings: &Settings,
    plan: &Plan,
) -> Result<JsonObject, PluginError> {
    // Roles before users are tagged; a role that exists is left as its admin wrote it.
    let mut roles = Vec::new();
    for (role, exists) in mapped_roles(ctx, settings).await? {
        let action = if exists {
            "unchanged"
        } else {
            ctx.upsert_identity_role(&role).await?;
            "created"
        };
        roles.push(json!({"name": role.name, "action": action}));
    }

    let started = json!({
        "db_name": settings.db_name, "mode": mode_name(settings), "count": plan.items.len(),
    });
    logged(ctx, ctx.emit_event("sync.started", started)).await;

    // Each write's outcome, by the item's position.
    let mut outcomes: HashMap<usize, Result<SyncOutcome, PluginError>> = HashMap::new();
    let writes: Vec<(usize, &nebula_plugin_api::SyncUser)> = plan
        .items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| item.write.as_ref().map(|w| (i, w)))
        .collect();
    for chunk in writes.chunks(WRITE_CHUNK) {
        let users: Vec<nebula_plugin_api::SyncUser> =
            chunk.iter().map(|(_, user)| (*user).clone()).collect();
        let results = ctx.sync_users(&users).await?;
        outcomes.extend(chunk.iter().map(|(i, _)| *i).zip(results));
    }

    let mut counts: HashMap<&str, u64> = HashMap::new();
    let items: Vec<Value> = plan
        .items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let (action, error) = match (&item.action, outcomes.remove(&i)) {
                (Action::Fail(why), _) => ("failed", Some(why.clone())),
                (Action::Unchanged, _) => ("unchanged", None),
                (_, Some(Err(e))) => ("failed", Some(e.to_string())),
                (Action::Deactivate, Some(Ok(_))) => ("deactivated", None),
                (_, Some(Ok(outcome))) => (outcome.as_str(), None),
                (_, None) => ("failed", Some("not written".to_owned())),
            };
            *counts.entry(action).or_default() += 1;
            item_json(item, action, error.as_deref())
        })
        .collect();
    let count = |name: &str| counts.get(name).copied().unwrap_or(0);
    let failed = count("failed");
    let mut summary = json_object!({
        "status": if failed == 0 { "ok" } else { "partial" },
        "db_name": settings.db_name, "mode": mode_name(settings), "count": items.len(),
        "created": count("created"), "updated": count("updated"),
        "unchanged": count("unchanged"), "deactivated": count("deactivated"),
        "failed": failed,
    });
    logged(
        ctx,
        ctx.emit_event("sync.finished", Value::Object(summary.clone())),
    )
    .await;
    ctx.log(
        LogLevel::Info,
        format!(
            "synced {} users from LDAP: {} created, {} updated, {} unchanged, {} deactivated, \
             {failed} failed",
            items.len(),
            count("created"),
            count("updated"),
            count("unchanged"),
            count("deactivated"),
        ),
    );
    summary.insert("roles".into(), Value::Array(roles));
    summary.insert("items".into(), Value::Array(items));
    Ok(summary)
}

/// One item of an answer.
fn item_json(item: &Item, action: &str, error: Option<&str>) -> Value {
    let mut value = json_object!({"username": item.username, "action": action});
    if let Some(dn) = &item.dn {
        value.insert("dn".into(), dn.as_str().into());
    }
    if let Some(write) = &item.write {
        value.insert("role_tag".into(), write.role_tag.as_str().into());
    }
    if let Action::Update(changed) = &item.action {
        value.insert("changed".into(), json!(changed));
    }
    match (error, &item.action) {
        (Some(error), _) => {
            value.insert("error".into(), error.into());
        }
        (None, Action::Fail(why)) => {
            value.insert("error".into(), why.as_str().into());
        }
        _ => {}
    }
    Value::Object(value)
}

fn mode_name(settings: &Settings) -> &'static str {
    match settings.mode {
        Mode::Upsert => "upsert",
        Mode::Mirror => "mirror",
    }
}

/// Runs a bookkeeping step (an event) whose failure is logged and never fails the sync.
async fn logged<F>(ctx: &PluginContext, step: F)
where
    F: std::future::Future<Output = Result<(), PluginError>>,
{
    if let Err(e) = step.await {
        ctx.log(LogLevel::Warn, e.to_string());
    }
}
