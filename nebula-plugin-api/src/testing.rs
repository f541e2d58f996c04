//! A host for plugin unit tests (feature `testing`): no database, no engine.
//!
//! [`RecordingHost`] keeps what a plugin writes in memory and records every call that reaches
//! it, so a test builds a [`PluginContext`] with exactly the scopes and settings it wants,
//! calls the plugin, and asserts on the users, tags, roles, events and log lines it wrote:
//!
//! ```
//! # tokio_test_block_on(async {
//! use nebula_plugin_api::testing::RecordingHost;
//! use nebula_plugin_api::{ScopeSet, SyncUser};
//!
//! let host = RecordingHost::new();
//! let ctx = host.context("my_plugin", ScopeSet::all());
//! ctx.sync_user(&SyncUser { db_name: "acme".into(), ..SyncUser::new("ann") }).await?;
//! assert_eq!(host.users()[0].username, "ann");
//! assert_eq!(host.users()[0].db_name, "acme.db");
//! # Ok::<(), nebula_plugin_api::PluginError>(())
//! # });
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
//! # }
//! ```
//!
//! For a run against the real engine (SQLite, the manager's timeouts and scope grants), use
//! `nebula_core::testing` instead.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;

use crate::{
    DirectoryUser, Host, IdentityRole, LogLevel, PluginContext, PluginError, ScopeSet, SyncOutcome,
    SyncUser,
};

/// What the host holds, in memory.
#[derive(Debug, Default)]
struct Recorded {
    calls: Vec<String>,
    /// (db_name, username) → the user as written (normalised by the context).
    users: BTreeMap<(String, String), SyncUser>,
    /// (db_name, username) → the plugin that last wrote the user's tag.
    tag_writers: BTreeMap<(String, String), String>,
    roles: BTreeMap<String, IdentityRole>,
    events: Vec<(String, Value)>,
    logs: Vec<(LogLevel, String)>,
}

/// An in-memory [`Host`] that records every call (see the [module](self) docs).
#[derive(Debug, Default)]
pub struct RecordingHost {
    recorded: Mutex<Recorded>,
}

impl RecordingHost {
    /// An empty host, shared (contexts hold it as `Arc<dyn Host>`).
    pub fn new() -> Arc<Self> {
        Arc::new(RecordingHost::default())
    }

    /// A context for `plugin` with `scopes` over this host.
    pub fn context(self: &Arc<Self>, plugin: &str, scopes: ScopeSet) -> PluginContext {
        PluginContext::new(plugin, scopes, self.clone())
    }

    /// Every call that reached the host, one line each (`sync_user p1 ann acme.db dev …`).
    /// A call a scope check refused never reaches it.
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    /// The users written, as the context normalised them, ordered by (db_name, username).
    pub fn users(&self) -> Vec<SyncUser> {
        self.lock().users.values().cloned().collect()
    }

    /// The identity roles written, ordered by name.
    pub fn roles(&self) -> Vec<IdentityRole> {
        self.lock().roles.values().cloned().collect()
    }

    /// The events emitted, in order, with their full names (`plugin.<name>.<event>`).
    pub fn events(&self) -> Vec<(String, Value)> {
        self.lock().events.clone()
    }

    /// The log lines written, in order.
    pub fn logs(&self) -> Vec<(LogLevel, String)> {
        self.lock().logs.clone()
    }

    fn lock(&self) -> MutexGuard<'_, Recorded> {
        // A panicking test thread must not hide what was recorded before it.
        self.recorded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn record(&self, call: String) -> MutexGuard<'_, Recorded> {
        let mut recorded = self.lock();
        recorded.calls.push(call);
        recorded
    }
}

#[crate::async_trait]
impl Host for RecordingHost {
    async fn sync_user(&self, plugin: &str, u: &SyncUser) -> Result<SyncOutcome, PluginError> {
        let mut recorded = self.record(format!(
            "sync_user {plugin} {} {} {} {:?} {}",
            u.username, u.db_name, u.role_tag, u.email, u.is_active
        ));
        let key = (u.db_name.clone(), u.username.clone());
        recorded.tag_writers.insert(key.clone(), plugin.to_owned());
        Ok(match recorded.users.insert(key, u.clone()) {
            None => SyncOutcome::Created,
            Some(_) => SyncOutcome::Updated,
        })
    }

    async fn list_users(
        &self,
        db_name: &str,
        limit: u32,
        offset: u64,
    ) -> Result<Vec<DirectoryUser>, PluginError> {
        let recorded = self.record(format!("list_users {db_name} {limit} {offset}"));
        Ok(recorded
            .users
            .values()
            .filter(|u| u.db_name == db_name)
            .skip(usize::try_from(offset).unwrap_or(usize::MAX))
            .take(limit as usize)
            .map(|u| DirectoryUser {
                username: u.username.clone(),
                email: u.email.clone(),
                is_active: u.is_active,
                is_staff: false,
                role_tag: u.role_tag.clone(),
                synced_by: recorded
                    .tag_writers
                    .get(&(u.db_name.clone(), u.username.clone()))
                    .cloned(),
            })
            .collect())
    }

    async fn set_identity_tag(
        &self,
        plugin: &str,
        db_name: &str,
        username: &str,
        role_tag: &str,
    ) -> Result<(), PluginError> {
        let mut recorded = self.record(format!(
            "set_identity_tag {plugin} {db_name} {username} {role_tag}"
        ));
        let recorded = &mut *recorded;
        let key = (db_name.to_owned(), username.to_owned());
        match recorded.users.get_mut(&key) {
            Some(user) => {
                user.role_tag = role_tag.to_owned();
                recorded.tag_writers.insert(key, plugin.to_owned());
                Ok(())
            }
            None => Err(PluginError::NotFound(format!(
                "user '{username}' not found in '{db_name}'"
            ))),
        }
    }

    async fn list_identity_roles(&self) -> Result<Vec<IdentityRole>, PluginError> {
        let recorded = self.record("list_identity_roles".into());
        Ok(recorded.roles.values().cloned().collect())
    }

    async fn upsert_identity_role(
        &self,
        plugin: &str,
        role: &IdentityRole,
    ) -> Result<(), PluginError> {
        let mut recorded = self.record(format!(
            "upsert_identity_role {plugin} {} {}",
            role.name, role.is_staff
        ));
        recorded.roles.insert(role.name.clone(), role.clone());
        Ok(())
    }

    async fn emit_event(&self, name: &str, payload: Value) -> Result<(), PluginError> {
        let mut recorded = self.record(format!("emit_event {name} {payload}"));
        recorded.events.push((name.to_owned(), payload));
        Ok(())
    }

    fn log(&self, _plugin: &str, level: LogLevel, message: &str) {
        self.lock().logs.push((level, message.to_owned()));
    }
}
