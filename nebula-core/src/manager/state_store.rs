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

    /// Whether an admin or policy disabled `name`.
    pub async fn is_disabled(&self, name: &str) -> Result<bool, StorageError> {
        let name = name.to_owned();
        self.db
            .read(move |conn| {
                let enabled = plugin_state::table
                    .filter(plugin_state::name.eq(&name))
                    .select(plugin_state::enabled)
                    .first::<bool>(conn)
                    .optional()?;
                Ok(enabled == Some(false))
            })
            .await
    }

    /// Persists the flag.
    pub async fn set_enabled(&self, name: &str, enabled: bool) -> Result<(), StorageError> {
        let name = name.to_owned();
        self.db
            .write(move |conn| {
                let now = unix_now();
                diesel::insert_into(plugin_state::table)
                    .values((
                        plugin_state::name.eq(&name),
                        plugin_state::enabled.eq(enabled),
                        plugin_state::updated_at.eq(now),
                    ))
                    .on_conflict(plugin_state::name)
                    .do_update()
                    .set((
                        plugin_state::enabled.eq(enabled),
                        plugin_state::updated_at.eq(now),
                    ))
                    .execute(conn)?;
                Ok(())
            })
            .await
    }
}
