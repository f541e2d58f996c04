//! The persisted enabled/disabled flag of each plugin.

use diesel::prelude::*;

use crate::storage::schema::plugin_state;
use crate::storage::{unix_now, Database, StorageError};

/// Reads and writes `plugin_state`.
#[derive(Debug, Clone)]
pub(crate) struct PluginStateStore {
    db: Database,
}

impl PluginStateStore {
    /// A store over `db`.
    pub fn new(db: Database) -> Self {
        PluginStateStore { db }
    }

    /// Why `name` is disabled, or `None` when it is enabled (or was never switched).
    pub async fn disabled_reason(&self, name: &str) -> Result<Option<String>, StorageError> {
        let name = name.to_owned();
        self.db
            .read(move |conn| {
                let row = plugin_state::table
                    .filter(plugin_state::name.eq(&name))
                    .select((plugin_state::enabled, plugin_state::reason))
                    .first::<(bool, String)>(conn)
                    .optional()?;
                Ok(match row {
                    Some((false, reason)) if reason.is_empty() => Some("disabled".to_owned()),
                    Some((false, reason)) => Some(reason),
                    _ => None,
                })
            })
            .await
    }

    /// Persists the flag and why (empty when enabling).
    pub async fn set_enabled(
        &self,
        name: &str,
        enabled: bool,
        reason: &str,
    ) -> Result<(), StorageError> {
        let (name, reason) = (name.to_owned(), reason.to_owned());
        self.db
            .write(move |conn| {
                let now = unix_now();
                diesel::insert_into(plugin_state::table)
                    .values((
                        plugin_state::name.eq(&name),
                        plugin_state::enabled.eq(enabled),
                        plugin_state::updated_at.eq(now),
                        plugin_state::reason.eq(&reason),
                    ))
                    .on_conflict(plugin_state::name)
                    .do_update()
                    .set((
                        plugin_state::enabled.eq(enabled),
                        plugin_state::updated_at.eq(now),
                        plugin_state::reason.eq(&reason),
                    ))
                    .execute(conn)?;
                Ok(())
            })
            .await
    }
}
