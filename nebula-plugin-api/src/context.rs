//! The scoped context a plugin receives, and the host interface behind it.

use std::fmt;
use std::sync::{Arc, OnceLock};

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{
    normalize_db_name, normalize_email, normalize_role_tag, validate_username, DirectoryUser,
    IdentityRole, JsonObject, PluginError, Scope, ScopeSet, SyncOutcome, SyncUser, SYSTEM_DB_NAME,
};

/// Largest page `list_users` returns.
const MAX_LIST_LIMIT: u32 = 2000;

/// Severity of a [`PluginContext::log`] line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    /// Fine detail.
    Debug,
    /// Normal operation.
    Info,
    /// Something odd that did not fail.
    Warn,
    /// A failure.
    Error,
}

impl LogLevel {
    /// `debug`, `info`, `warn` or `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the host offers plugins. Implemented by the core's identity directory (and by test
/// doubles); plugins never call it directly but through [`PluginContext`], which has already
/// checked scopes and normalised every argument when a method here is called.
#[crate::async_trait]
pub trait Host: Send + Sync + 'static {
    /// Creates or updates a user and its identity tag in one transaction. `user` is normalised
    /// and never in `system.db`. `plugin` is recorded as `updated_by = plugin:<name>`.
    async fn sync_user(&self, plugin: &str, user: &SyncUser) -> Result<SyncOutcome, PluginError>;

    /// Many [`sync_user`](Self::sync_user) calls at once (the host service's bulk
    /// `SyncUsers`): one result per user, in order, and one user's failure never fails the
    /// others. Every user is already normalised. `Err` is a failure of the whole call (a remote
    /// host unreachable, a deadline): which users were written is then unknown.
    ///
    /// The default calls `sync_user` for each user in turn; a host that can write a batch
    /// faster (fewer transactions, one round trip) overrides it.
    async fn sync_users(
        &self,
        plugin: &str,
        users: &[SyncUser],
    ) -> Result<Vec<Result<SyncOutcome, PluginError>>, PluginError> {
        let mut results = Vec::with_capacity(users.len());
        for user in users {
            results.push(self.sync_user(plugin, user).await);
        }
        Ok(results)
    }

    /// Lists users of a tenant, ordered by username. `limit` is within 1..=2000.
    async fn list_users(
        &self,
        db_name: &str,
        limit: u32,
        offset: u64,
    ) -> Result<Vec<DirectoryUser>, PluginError>;

    /// Sets the identity tag of an existing user.
    async fn set_identity_tag(
        &self,
        plugin: &str,
        db_name: &str,
        username: &str,
        role_tag: &str,
    ) -> Result<(), PluginError>;

    /// Lists identity roles, ordered by name.
    async fn list_identity_roles(&self) -> Result<Vec<IdentityRole>, PluginError>;

    /// Creates or updates an identity role.
    async fn upsert_identity_role(
        &self,
        plugin: &str,
        role: &IdentityRole,
    ) -> Result<(), PluginError>;

    /// Stores and publishes an event; `name` is already namespaced `plugin.<plugin>.<name>`.
    async fn emit_event(&self, name: &str, payload: Value) -> Result<(), PluginError>;

    /// Records a log line of a plugin. The default sends it to `tracing`.
    fn log(&self, plugin: &str, level: LogLevel, message: &str) {
        trace_plugin_log(plugin, level, message);
    }
}

/// Sends a plugin's log line to `tracing`, with the plugin's name as a field. Hosts that keep
/// lines elsewhere too call this so every line also reaches the process log. Control
/// characters are escaped: a plugin's text (often quoting its input) cannot forge lines.
pub fn trace_plugin_log(plugin: &str, level: LogLevel, message: &str) {
    let message = crate::escape_control(message);
    match level {
        LogLevel::Debug => tracing::debug!(plugin, "{message}"),
        LogLevel::Info => tracing::info!(plugin, "{message}"),
        LogLevel::Warn => tracing::warn!(plugin, "{message}"),
        LogLevel::Error => tracing::error!(plugin, "{message}"),
    }
}

/// A plugin's handle to the host, limited to the scopes it was granted.
///
/// Cheap to clone. Every helper checks its scopes first; a refused call writes nothing and
/// answers [`PluginError::MissingScope`] naming the plugin and the scope.
#[derive(Clone)]
pub struct PluginContext {
    plugin: Arc<str>,
    scopes: ScopeSet,
    host: Arc<dyn Host>,
    /// Never shown by `Debug`: settings may hold secrets (SPEC §10).
    settings: Arc<JsonObject>,
}

impl fmt::Debug for PluginContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginContext")
            .field("plugin", &self.plugin)
            .field("scopes", &self.scopes.names())
            .finish_non_exhaustive()
    }
}

impl PluginContext {
    /// A context for `plugin` holding `scopes` (already declared ∩ allowed ∩ granted), with
    /// no settings ([`with_settings`](Self::with_settings) adds them).
    pub fn new(plugin: impl Into<Arc<str>>, scopes: ScopeSet, host: Arc<dyn Host>) -> Self {
        PluginContext {
            plugin: plugin.into(),
            scopes,
            host,
            settings: Arc::new(JsonObject::new()),
        }
    }

    /// The plugin's name.
    pub fn plugin_name(&self) -> &str {
        &self.plugin
    }

    /// The scopes this context holds.
    pub fn scopes(&self) -> &ScopeSet {
        &self.scopes
    }

    /// The one scope check.
    fn require(&self, scopes: &[Scope]) -> Result<(), PluginError> {
        match scopes.iter().find(|s| !self.scopes.contains(**s)) {
            Some(missing) => Err(PluginError::MissingScope {
                plugin: self.plugin.to_string(),
                scope: *missing,
            }),
            None => Ok(()),
        }
    }

    /// Creates or updates a user of a client tenant and sets its identity tag, atomically:
    /// SPEC's `sync_user(username, db_name, role_tag, email, is_active)`, the five fields of
    /// a [`SyncUser`] (so an item of a sync request goes in as it is).
    ///
    /// Requires `users.write` and `identity_tags.write`. `system.db` is refused: plugins never
    /// create or modify system users. The name, tenant and tag are normalised first.
    pub async fn sync_user(&self, user: &SyncUser) -> Result<SyncOutcome, PluginError> {
        self.require(&[Scope::UsersWrite, Scope::IdentityTagsWrite])?;
        let user = normalize_sync_user(user)?;
        self.host.sync_user(&self.plugin, &user).await
    }

    /// [`sync_user`](Self::sync_user) for many users at once: the scopes are checked once
    /// (a missing one refuses the whole call and writes nothing), then each user is normalised
    /// and written on its own. Answers one result per user, in order; a user that fails
    /// (invalid, `system.db`, refused by the host) never fails the others. `Err` is a failure
    /// of the whole call (missing scope, the host unreachable).
    ///
    /// Out of process this is one round trip (the host service's bulk `SyncUsers`) instead of
    /// one per user.
    pub async fn sync_users(
        &self,
        users: &[SyncUser],
    ) -> Result<Vec<Result<SyncOutcome, PluginError>>, PluginError> {
        self.require(&[Scope::UsersWrite, Scope::IdentityTagsWrite])?;
        let mut results: Vec<Option<Result<SyncOutcome, PluginError>>> =
            Vec::with_capacity(users.len());
        let mut valid = Vec::with_capacity(users.len());
        let mut positions = Vec::with_capacity(users.len());
        for (i, user) in users.iter().enumerate() {
            match normalize_sync_user(user) {
                Ok(user) => {
                    valid.push(user);
                    positions.push(i);
                    results.push(None);
                }
                Err(e) => results.push(Some(Err(e))),
            }
        }
        let written = self.host.sync_users(&self.plugin, &valid).await?;
        if written.len() != valid.len() {
            return Err(PluginError::internal(format!(
                "the host answered {} results for {} users",
                written.len(),
                valid.len()
            )));
        }
        for (position, result) in positions.into_iter().zip(written) {
            results[position] = Some(result);
        }
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(PluginError::internal("no result"))))
            .collect())
    }

    /// Lists users of a tenant with their identity tags. Requires `users.read` and
    /// `identity_tags.read`; `limit` is clamped to 1..=2000.
    pub async fn list_users(
        &self,
        db_name: &str,
        limit: u32,
        offset: u64,
    ) -> Result<Vec<DirectoryUser>, PluginError> {
        self.require(&[Scope::UsersRead, Scope::IdentityTagsRead])?;
        let db_name = normalize_db_name(db_name)?;
        let limit = limit.clamp(1, MAX_LIST_LIMIT);
        self.host.list_users(&db_name, limit, offset).await
    }

    /// Sets the identity tag of an existing client user. Requires `identity_tags.write`;
    /// `system.db` is refused like in [`sync_user`](Self::sync_user).
    pub async fn set_identity_tag(
        &self,
        username: &str,
        db_name: &str,
        role_tag: &str,
    ) -> Result<(), PluginError> {
        self.require(&[Scope::IdentityTagsWrite])?;
        let db_name = client_db_name(db_name)?;
        let username = validate_username(username)?;
        let role_tag = normalize_role_tag(role_tag);
        self.host
            .set_identity_tag(&self.plugin, &db_name, &username, &role_tag)
            .await
    }

    /// Lists identity roles. Requires `roles.read`.
    pub async fn list_identity_roles(&self) -> Result<Vec<IdentityRole>, PluginError> {
        self.require(&[Scope::RolesRead])?;
        self.host.list_identity_roles().await
    }

    /// Creates or updates an identity role (name normalised like a role tag; description
    /// trimmed, at most 1,024 characters, no control characters but newlines and tabs).
    /// Requires `roles.write`.
    pub async fn upsert_identity_role(&self, role: &IdentityRole) -> Result<(), PluginError> {
        self.require(&[Scope::RolesWrite])?;
        if !role.name.chars().any(|c| c.is_ascii_alphanumeric()) {
            return Err(PluginError::invalid(
                "role name: needs at least one letter or digit",
            ));
        }
        let description = role.description.trim();
        if description.chars().count() > MAX_ROLE_DESCRIPTION_CHARS
            || description
                .chars()
                .any(|c| c.is_control() && !matches!(c, '\n' | '\t'))
        {
            return Err(PluginError::invalid(format!(
                "role description: expected at most {MAX_ROLE_DESCRIPTION_CHARS} characters, \
                 no control characters but newlines and tabs, got '{}'",
                crate::escape_control(description)
            )));
        }
        let role = IdentityRole {
            name: normalize_role_tag(&role.name),
            description: description.to_owned(),
            is_staff: role.is_staff,
        };
        self.host.upsert_identity_role(&self.plugin, &role).await
    }

    /// Emits an event, stored and published as `plugin.<plugin_name>.<name>`. Requires
    /// `events.emit`; `name` is 1 to 128 characters of `[a-zA-Z0-9_.-]`.
    pub async fn emit_event(&self, name: &str, payload: Value) -> Result<(), PluginError> {
        self.require(&[Scope::EventsEmit])?;
        let valid = !name.is_empty()
            && name.len() <= 128
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !valid {
            return Err(PluginError::invalid(format!(
                "event name '{}': expected 1 to 128 characters of [a-zA-Z0-9_.-]",
                crate::escape_control(name)
            )));
        }
        let full = format!("plugin.{}.{name}", self.plugin);
        self.host.emit_event(&full, payload).await
    }

    /// Writes a log line attributed to the plugin. Needs no scope.
    pub fn log(&self, level: LogLevel, message: impl AsRef<str>) {
        self.host.log(&self.plugin, level, message.as_ref());
    }

    /// The plugin's settings (`[plugins.settings.<name>]`, SPEC §10), typed: define a struct
    /// with `#[derive(Deserialize)]` (and `#[serde(default)]`, `deny_unknown_fields` as you
    /// like). Needs no scope. An error names the key: `plugins.settings.csv_import.path:
    /// missing field …`.
    pub fn settings<T: DeserializeOwned>(&self) -> Result<T, PluginError> {
        let owner = format!("plugins.settings.{}", self.plugin);
        serde_path_to_error::deserialize(Value::Object((*self.settings).clone())).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if path == "." || path.is_empty() {
                PluginError::invalid(format!("{owner}: {inner}"))
            } else {
                PluginError::invalid(format!("{owner}.{path}: {inner}"))
            }
        })
    }

    /// The plugin's settings as they were configured (an empty object when there are none).
    pub fn settings_json(&self) -> &JsonObject {
        &self.settings
    }

    /// This context with `settings` (the host passes the plugin's configured table).
    pub fn with_settings(mut self, settings: JsonObject) -> Self {
        self.settings = Arc::new(settings);
        self
    }
}

/// Holds a plugin's context from `initialize` on: the "not initialised" and "initialised
/// twice" rules in one place, so a plugin is a struct with one field and no `OnceLock`.
///
/// ```
/// use nebula_plugin_api::{async_trait, json_object, ContextCell, JsonObject, Plugin,
///     PluginContext, PluginError, SyncRequest};
///
/// #[derive(Default)]
/// struct MyPlugin {
///     ctx: ContextCell,
/// }
///
/// #[async_trait]
/// impl Plugin for MyPlugin {
///     async fn initialize(&self, ctx: PluginContext) -> Result<(), PluginError> {
///         self.ctx.set(ctx)
///     }
///     async fn health(&self) -> Result<JsonObject, PluginError> {
///         self.ctx.get()?;
///         Ok(json_object!({"status": "ok"}))
///     }
///     async fn sync_users(&self, _request: SyncRequest) -> Result<JsonObject, PluginError> {
///         let ctx = self.ctx.get()?;
///         ctx.log(nebula_plugin_api::LogLevel::Info, "syncing");
///         Ok(json_object!({"status": "ok"}))
///     }
/// }
/// ```
#[derive(Debug, Default)]
pub struct ContextCell(OnceLock<PluginContext>);

impl ContextCell {
    /// An empty cell.
    pub const fn new() -> Self {
        ContextCell(OnceLock::new())
    }

    /// Keeps the context `initialize` received. A second call is refused: the host builds a
    /// fresh instance for every (re)start, so a second `initialize` on one is a bug.
    pub fn set(&self, ctx: PluginContext) -> Result<(), PluginError> {
        let plugin = ctx.plugin_name().to_owned();
        self.0
            .set(ctx)
            .map_err(|_| PluginError::internal(format!("plugin '{plugin}' initialised twice")))
    }

    /// The context, or an error when `initialize` has not run (yet).
    pub fn get(&self) -> Result<&PluginContext, PluginError> {
        self.0
            .get()
            .ok_or_else(|| PluginError::internal("the plugin is not initialised"))
    }
}

/// Longest identity role description, in characters.
const MAX_ROLE_DESCRIPTION_CHARS: usize = 1024;

/// A user as a plugin may write it: the one normalisation of `sync_user` and `sync_users`.
fn normalize_sync_user(user: &SyncUser) -> Result<SyncUser, PluginError> {
    Ok(SyncUser {
        username: validate_username(&user.username)?,
        db_name: client_db_name(&user.db_name)?,
        role_tag: normalize_role_tag(&user.role_tag),
        email: normalize_email(user.email.as_deref())?,
        is_active: user.is_active,
    })
}

/// A tenant name a plugin may write to: valid and not `system.db`.
fn client_db_name(raw: &str) -> Result<String, PluginError> {
    let db_name = normalize_db_name(raw)?;
    if db_name == SYSTEM_DB_NAME {
        return Err(PluginError::Forbidden(format!(
            "db_name '{SYSTEM_DB_NAME}': plugins never create or modify system users"
        )));
    }
    Ok(db_name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::RecordingHost;
    use crate::ErrorKind;

    fn context(scopes: &[Scope]) -> (PluginContext, Arc<RecordingHost>) {
        let host = RecordingHost::new();
        let ctx = host.context("p1", scopes.iter().copied().collect());
        (ctx, host)
    }

    /// A user as a test writes it: (username, db_name, role_tag, email, is_active).
    fn user(
        username: &str,
        db_name: &str,
        role_tag: &str,
        email: Option<&str>,
        active: bool,
    ) -> SyncUser {
        SyncUser {
            username: username.into(),
            db_name: db_name.into(),
            role_tag: role_tag.into(),
            email: email.map(str::to_owned),
            is_active: active,
        }
    }

    fn role(name: &str, description: &str, is_staff: bool) -> IdentityRole {
        IdentityRole {
            name: name.into(),
            description: description.into(),
            is_staff,
        }
    }

    fn assert_missing(err: PluginError, scope: Scope) {
        assert_eq!(
            err,
            PluginError::MissingScope {
                plugin: "p1".into(),
                scope
            }
        );
        assert_eq!(err.kind(), ErrorKind::PermissionDenied);
        assert!(err.to_string().contains("p1") && err.to_string().contains(scope.as_str()));
    }

    #[tokio::test]
    async fn sync_user_needs_both_write_scopes_and_normalises() {
        let (ctx, host) = context(&[Scope::UsersWrite, Scope::IdentityTagsWrite]);
        let outcome = ctx
            .sync_user(&user(" ann ", "acme", "Senior Dev", Some("a@x"), false))
            .await
            .unwrap();
        assert_eq!(outcome, SyncOutcome::Created);
        assert_eq!(
            host.calls(),
            vec![r#"sync_user p1 ann acme.db senior_dev Some("a@x") false"#]
        );

        for scopes in [
            &[Scope::UsersWrite][..],
            &[Scope::IdentityTagsWrite][..],
            &[][..],
        ] {
            let (ctx, host) = context(scopes);
            let err = ctx
                .sync_user(&user("ann", "acme", "x", None, true))
                .await
                .unwrap_err();
            let missing = if scopes.contains(&Scope::UsersWrite) {
                Scope::IdentityTagsWrite
            } else {
                Scope::UsersWrite
            };
            assert_missing(err, missing);
            assert!(host.calls().is_empty(), "nothing may reach the host");
        }
    }

    #[tokio::test]
    async fn sync_user_refuses_system_db_and_bad_names() {
        let (ctx, host) = context(&Scope::ALL);
        let err = ctx
            .sync_user(&user("root", "system.db", "admin", None, true))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PermissionDenied);
        assert!(err.to_string().contains("system.db"), "{err}");
        for bad_db in ["../x", "a/b", "", &"a".repeat(70)] {
            let err = ctx
                .sync_user(&user("u", bad_db, "x", None, true))
                .await
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad_db}");
        }
        let err = ctx
            .sync_user(&user("  ", "acme", "x", None, true))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(host.calls().is_empty());
    }

    #[tokio::test]
    async fn bulk_sync_checks_scopes_once_and_fails_items_alone() {
        let (ctx, host) = context(&[Scope::UsersWrite, Scope::IdentityTagsWrite]);
        let results = ctx
            .sync_users(&[
                user("ann", "acme", "Dev", None, true),
                user("root", "system.db", "admin", None, true),
                user(" ", "acme", "x", None, true),
                user("bob", "acme.db", "", Some(" "), false),
            ])
            .await
            .unwrap();
        assert_eq!(results[0], Ok(SyncOutcome::Created));
        assert_eq!(
            results[1].as_ref().unwrap_err().kind(),
            ErrorKind::PermissionDenied
        );
        assert_eq!(
            results[2].as_ref().unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        assert_eq!(results[3], Ok(SyncOutcome::Created));
        assert_eq!(
            host.calls(),
            vec![
                "sync_user p1 ann acme.db dev None true",
                "sync_user p1 bob acme.db user None false"
            ]
        );
        let (ctx, host) = context(&[Scope::UsersWrite]);
        assert_missing(
            ctx.sync_users(&[user("ann", "acme", "x", None, true)])
                .await
                .unwrap_err(),
            Scope::IdentityTagsWrite,
        );
        assert!(host.calls().is_empty());
    }

    #[tokio::test]
    async fn list_users_needs_read_scopes_and_clamps_limit() {
        let (ctx, host) = context(&[Scope::UsersRead, Scope::IdentityTagsRead]);
        ctx.list_users("acme", 0, 0).await.unwrap();
        ctx.list_users("system.db", 5000, 7).await.unwrap();
        assert_eq!(
            host.calls(),
            vec!["list_users acme.db 1 0", "list_users system.db 2000 7"]
        );
        let (ctx, host) = context(&[Scope::UsersRead]);
        assert_missing(
            ctx.list_users("acme", 10, 0).await.unwrap_err(),
            Scope::IdentityTagsRead,
        );
        assert!(ctx.list_users("../x", 10, 0).await.is_err());
        assert!(host.calls().is_empty());
    }

    #[tokio::test]
    async fn set_identity_tag_needs_its_scope() {
        let (ctx, host) = context(&[Scope::IdentityTagsWrite]);
        // The user exists (written straight into the host, as another sync would have).
        host.sync_user("p1", &user("ann", "acme.db", "user", None, true))
            .await
            .unwrap();
        ctx.set_identity_tag("ann", "acme.db", "OPS").await.unwrap();
        assert_eq!(host.calls()[1..], ["set_identity_tag p1 acme.db ann ops"]);
        assert_eq!(host.users()[0].role_tag, "ops");
        let err = ctx
            .set_identity_tag("root", "system.db", "x")
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PermissionDenied);

        let (ctx, host) = context(&[Scope::UsersWrite]);
        assert_missing(
            ctx.set_identity_tag("ann", "acme", "ops")
                .await
                .unwrap_err(),
            Scope::IdentityTagsWrite,
        );
        assert!(host.calls().is_empty());
    }

    #[tokio::test]
    async fn role_helpers_need_their_scopes() {
        let (ctx, host) = context(&[Scope::RolesRead, Scope::RolesWrite]);
        ctx.list_identity_roles().await.unwrap();
        ctx.upsert_identity_role(&role("Contractor", "d", false))
            .await
            .unwrap();
        ctx.upsert_identity_role(&role("multi", " line one\n\tline two ", false))
            .await
            .unwrap();
        assert!(ctx
            .upsert_identity_role(&role(" ", "d", false))
            .await
            .is_err());
        assert!(ctx
            .upsert_identity_role(&role("!!!", "d", false))
            .await
            .is_err());
        // Descriptions: newlines and tabs are text, other control characters (a NUL byte,
        // which PostgreSQL refuses) and very long ones are not.
        for bad in ["nul\0byte", "bell\u{7}", &"x".repeat(1025)] {
            let error = ctx
                .upsert_identity_role(&role("ops", bad, false))
                .await
                .unwrap_err();
            assert_eq!(error.kind(), crate::ErrorKind::InvalidInput, "{error}");
        }
        assert_eq!(
            host.calls(),
            vec![
                "list_identity_roles",
                "upsert_identity_role p1 contractor false",
                "upsert_identity_role p1 multi false",
            ]
        );

        let (ctx, host) = context(&[Scope::RolesWrite]);
        assert_missing(
            ctx.list_identity_roles().await.unwrap_err(),
            Scope::RolesRead,
        );
        let (ctx2, host2) = context(&[Scope::RolesRead]);
        assert_missing(
            ctx2.upsert_identity_role(&role("x", "", true))
                .await
                .unwrap_err(),
            Scope::RolesWrite,
        );
        assert!(host.calls().is_empty() && host2.calls().is_empty());
    }

    #[tokio::test]
    async fn events_are_namespaced_and_need_their_scope() {
        let (ctx, host) = context(&[Scope::EventsEmit]);
        ctx.emit_event("sync.started", serde_json::json!({"n": 1}))
            .await
            .unwrap();
        assert_eq!(
            host.calls(),
            vec![r#"emit_event plugin.p1.sync.started {"n":1}"#]
        );
        assert!(ctx.emit_event("", Value::Null).await.is_err());
        assert!(ctx.emit_event("a b", Value::Null).await.is_err());

        let (ctx, host) = context(&[]);
        assert_missing(
            ctx.emit_event("x", Value::Null).await.unwrap_err(),
            Scope::EventsEmit,
        );
        assert!(host.calls().is_empty());
    }

    #[test]
    fn log_needs_no_scope() {
        let (ctx, _host) = context(&[]);
        ctx.log(LogLevel::Info, "hello");
        assert_eq!(ctx.plugin_name(), "p1");
    }

    #[test]
    fn settings_are_typed_and_errors_name_the_key() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        #[serde(deny_unknown_fields)]
        struct Settings {
            path: String,
            #[serde(default)]
            delimiter: Option<char>,
        }
        let (ctx, _) = context(&[]);
        let ctx = ctx.with_settings(crate::json_object!({"path": "/srv/users.csv"}));
        assert_eq!(
            ctx.settings::<Settings>().unwrap(),
            Settings {
                path: "/srv/users.csv".into(),
                delimiter: None
            }
        );
        let bad = ctx.with_settings(crate::json_object!({"path": 7}));
        let err = bad.settings::<Settings>().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(
            err.to_string()
                .starts_with("plugins.settings.p1.path: invalid type"),
            "{err}"
        );
        let (empty, _) = context(&[]);
        let err = empty.settings::<Settings>().unwrap_err();
        assert!(
            err.to_string()
                .contains("plugins.settings.p1: missing field `path`"),
            "{err}"
        );
        // Settings may hold secrets: Debug never shows them.
        let secret = empty.with_settings(crate::json_object!({"password": "hunter2"}));
        assert!(!format!("{secret:?}").contains("hunter2"));
    }

    #[test]
    fn the_context_cell_owns_the_initialisation_rules() {
        let cell = ContextCell::new();
        assert_eq!(
            cell.get().unwrap_err().to_string(),
            "the plugin is not initialised"
        );
        let (ctx, _) = context(&[]);
        cell.set(ctx.clone()).unwrap();
        assert_eq!(cell.get().unwrap().plugin_name(), "p1");
        let err = cell.set(ctx).unwrap_err();
        assert!(
            err.to_string().contains("plugin 'p1' initialised twice"),
            "{err}"
        );
    }
}
