//! The host side of the plugin context: what a `PluginContext` call lands on.

use std::sync::Arc;

use nebula_plugin_api::{
    async_trait, trace_plugin_log, DirectoryUser, Host, IdentityRole, LogLevel, PluginError,
    SyncOutcome, SyncUser,
};
use serde_json::Value;

use crate::directory::IdentityDirectory;
use crate::events::EventBus;
use crate::logs::PluginLogs;
use crate::metrics::Metrics;
use crate::storage::StorageError;

/// The one mapping from storage errors to what a plugin sees.
impl From<StorageError> for PluginError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::NotFound(m) => PluginError::NotFound(m),
            e if e.is_unavailable() || matches!(e, StorageError::Task(_)) => {
                PluginError::Unavailable(e.to_string())
            }
            other => PluginError::Internal(other.to_string()),
        }
    }
}

/// Implements [`Host`] over the identity directory and the event bus.
#[derive(Debug, Clone)]
pub struct CoreHost {
    directory: IdentityDirectory,
    events: EventBus,
    logs: Arc<PluginLogs>,
    metrics: Option<Metrics>,
}

impl CoreHost {
    /// A host over these services, with its own log rings.
    pub fn new(directory: IdentityDirectory, events: EventBus) -> Self {
        Self::with_logs(directory, events, Arc::default())
    }

    /// A host writing plugin log lines into `logs` (and to `tracing`).
    pub fn with_logs(
        directory: IdentityDirectory,
        events: EventBus,
        logs: Arc<PluginLogs>,
    ) -> Self {
        CoreHost {
            directory,
            events,
            logs,
            metrics: None,
        }
    }

    /// The same host, counting the users plugins write in `metrics`
    /// (`nebula_synced_users_total`).
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Counts what one write of users ended in.
    fn count<'a>(
        &self,
        plugin: &str,
        written: impl IntoIterator<Item = &'a Result<SyncOutcome, PluginError>>,
    ) {
        let Some(metrics) = &self.metrics else { return };
        let (mut created, mut updated, mut failed) = (0, 0, 0);
        for result in written {
            match result {
                Ok(SyncOutcome::Created) => created += 1,
                Ok(SyncOutcome::Updated) => updated += 1,
                Err(_) => failed += 1,
            }
        }
        metrics.synced_users(plugin, "created", created);
        metrics.synced_users(plugin, "updated", updated);
        metrics.synced_users(plugin, "failed", failed);
    }
}

fn updated_by(plugin: &str) -> String {
    crate::directory::plugin_writer(plugin)
}

#[async_trait]
impl Host for CoreHost {
    async fn sync_user(&self, plugin: &str, user: &SyncUser) -> Result<SyncOutcome, PluginError> {
        let written = self
            .directory
            .sync_user(&updated_by(plugin), user)
            .await
            .map_err(PluginError::from);
        self.count(plugin, [&written]);
        written
    }

    /// One transaction per chunk of users, not one per user (`IdentityDirectory::sync_users`).
    async fn sync_users(
        &self,
        plugin: &str,
        users: &[SyncUser],
    ) -> Result<Vec<Result<SyncOutcome, PluginError>>, PluginError> {
        let written: Vec<_> = self
            .directory
            .sync_users(&updated_by(plugin), users)
            .await
            .into_iter()
            .map(|r| r.map_err(PluginError::from))
            .collect();
        self.count(plugin, &written);
        Ok(written)
    }

    async fn list_users(
        &self,
        db_name: &str,
        limit: u32,
        offset: u64,
    ) -> Result<Vec<DirectoryUser>, PluginError> {
        Ok(self.directory.list_users(db_name, limit, offset).await?)
    }

    async fn set_identity_tag(
        &self,
        plugin: &str,
        db_name: &str,
        username: &str,
        role_tag: &str,
    ) -> Result<(), PluginError> {
        Ok(self
            .directory
            .set_identity_tag(&updated_by(plugin), db_name, username, role_tag)
            .await?)
    }

    async fn list_identity_roles(&self) -> Result<Vec<IdentityRole>, PluginError> {
        Ok(self.directory.list_roles().await?)
    }

    async fn upsert_identity_role(
        &self,
        plugin: &str,
        role: &IdentityRole,
    ) -> Result<(), PluginError> {
        Ok(self
            .directory
            .upsert_role(&updated_by(plugin), role)
            .await?)
    }

    async fn emit_event(&self, name: &str, payload: Value) -> Result<(), PluginError> {
        self.events.publish(name, payload).await?;
        Ok(())
    }

    fn log(&self, plugin: &str, level: LogLevel, message: &str) {
        trace_plugin_log(plugin, level, message);
        self.logs.push(plugin, level, message);
    }
}
