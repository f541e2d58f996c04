//! The persisted enabled/disabled flag of each plugin.

use std::collections::BTreeSet;

use diesel::prelude::*;

use crate::storage::schema::plugin_state;
use crate::storage::{unix_now, Database, StorageError};

/// Reads and writes `plugin_state`.
#[derive(Debug, Clone)]
pub(crate) struct PluginStateStore {
    db: Database,
}

impl PluginStateStore {
    pub fn new(db: Database) -> Self {
        PluginStateStore { db }
    }

    /// Names of plugins an admin or policy disabled.
    pub async fn disabled(&self) -> Result<BTreeSet<String>, StorageError> {
        self.db
            .read(|conn| {
                let names = plugin_state::table
                    .filter(plugin_state::enabled.eq(false))
                    .select(plugin_state::name)
                    .load::<String>(conn)?;
                Ok(names.into_iter().collect())
            })
            .await
    }

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
