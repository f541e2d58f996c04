//! The scoped context a plugin receives, and the host interface behind it.

use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use crate::{
    normalize_db_name, normalize_role_tag, validate_username, DirectoryUser, IdentityRole,
    PluginError, Scope, ScopeSet, SyncOutcome, SyncUser, SYSTEM_DB_NAME,
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
    /// A context for `plugin` holding `scopes` (already declared ∩ allowed ∩ granted).
    pub fn new(plugin: impl Into<Arc<str>>, scopes: ScopeSet, host: Arc<dyn Host>) -> Self {
        PluginContext {
            plugin: plugin.into(),
            scopes,
            host,
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

    /// Creates or updates a user of a client tenant and sets its identity tag, atomically.
    ///
    /// Requires `users.write` and `identity_tags.write`. `system.db` is refused: plugins never
    /// create or modify system users.
    pub async fn sync_user(
        &self,
        username: &str,
        db_name: &str,
        role_tag: &str,
        email: Option<&str>,
        is_active: bool,
    ) -> Result<SyncOutcome, PluginError> {
        self.require(&[Scope::UsersWrite, Scope::IdentityTagsWrite])?;
        let db_name = client_db_name(db_name)?;
        let username = validate_username(username)?;
        let user = SyncUser {
            username,
            db_name,
            role_tag: normalize_role_tag(role_tag),
            email: email
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .map(str::to_owned),
            is_active,
        };
        self.host.sync_user(&self.plugin, &user).await
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

    /// Creates or updates an identity role (name normalised like a role tag). Requires
    /// `roles.write`.
    pub async fn upsert_identity_role(
        &self,
        name: &str,
        description: &str,
        is_staff: bool,
    ) -> Result<(), PluginError> {
        self.require(&[Scope::RolesWrite])?;
        if !name.chars().any(|c| c.is_ascii_alphanumeric()) {
            return Err(PluginError::invalid(
                "role name: needs at least one letter or digit",
            ));
        }
        let role = IdentityRole {
            name: normalize_role_tag(name),
            description: description.to_owned(),
            is_staff,
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
    use std::sync::Mutex;

    use super::*;
    use crate::ErrorKind;

    /// Records every call that reaches the host.
    #[derive(Default)]
    struct RecordingHost {
        calls: Mutex<Vec<String>>,
    }

    impl RecordingHost {
        fn calls(&self) -> Vec<String> {
            self.calls.lock().unwrap().clone()
        }
        fn record(&self, call: String) {
            self.calls.lock().unwrap().push(call);
        }
    }

    #[crate::async_trait]
    impl Host for RecordingHost {
        async fn sync_user(&self, plugin: &str, u: &SyncUser) -> Result<SyncOutcome, PluginError> {
            self.record(format!(
                "sync_user {plugin} {} {} {} {:?} {}",
                u.username, u.db_name, u.role_tag, u.email, u.is_active
            ));
            Ok(SyncOutcome::Created)
        }
        async fn list_users(
            &self,
            db: &str,
            limit: u32,
            offset: u64,
        ) -> Result<Vec<DirectoryUser>, PluginError> {
            self.record(format!("list_users {db} {limit} {offset}"));
            Ok(vec![])
        }
        async fn set_identity_tag(
            &self,
            plugin: &str,
            db: &str,
            user: &str,
            tag: &str,
        ) -> Result<(), PluginError> {
            self.record(format!("set_identity_tag {plugin} {db} {user} {tag}"));
            Ok(())
        }
        async fn list_identity_roles(&self) -> Result<Vec<IdentityRole>, PluginError> {
            self.record("list_identity_roles".into());
            Ok(vec![])
        }
        async fn upsert_identity_role(
            &self,
            plugin: &str,
            role: &IdentityRole,
        ) -> Result<(), PluginError> {
            self.record(format!(
                "upsert_identity_role {plugin} {} {}",
                role.name, role.is_staff
            ));
            Ok(())
        }
        async fn emit_event(&self, name: &str, payload: Value) -> Result<(), PluginError> {
            self.record(format!("emit_event {name} {payload}"));
            Ok(())
        }
    }

    fn context(scopes: &[Scope]) -> (PluginContext, Arc<RecordingHost>) {
        let host = Arc::new(RecordingHost::default());
        let ctx = PluginContext::new("p1", scopes.iter().copied().collect(), host.clone());
        (ctx, host)
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
            .sync_user(" ann ", "acme", "Senior Dev", Some("a@x"), false)
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
                .sync_user("ann", "acme", "x", None, true)
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
            .sync_user("root", "system.db", "admin", None, true)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PermissionDenied);
        assert!(err.to_string().contains("system.db"), "{err}");
        for bad_db in ["../x", "a/b", "", &"a".repeat(70)] {
            let err = ctx
                .sync_user("u", bad_db, "x", None, true)
                .await
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad_db}");
        }
        let err = ctx
            .sync_user("  ", "acme", "x", None, true)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
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
        ctx.set_identity_tag("ann", "acme.db", "OPS").await.unwrap();
        assert_eq!(host.calls(), vec!["set_identity_tag p1 acme.db ann ops"]);
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
        ctx.upsert_identity_role("Contractor", "d", false)
            .await
            .unwrap();
        assert!(ctx.upsert_identity_role(" ", "d", false).await.is_err());
        assert!(ctx.upsert_identity_role("!!!", "d", false).await.is_err());
        assert_eq!(
            host.calls(),
            vec![
                "list_identity_roles",
                "upsert_identity_role p1 contractor false"
            ]
        );

        let (ctx, host) = context(&[Scope::RolesWrite]);
        assert_missing(
            ctx.list_identity_roles().await.unwrap_err(),
            Scope::RolesRead,
        );
        let (ctx2, host2) = context(&[Scope::RolesRead]);
        assert_missing(
            ctx2.upsert_identity_role("x", "", true).await.unwrap_err(),
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
}
