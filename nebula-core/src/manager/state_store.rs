//! What every instance on one database shares about plugins (SPEC §4): the persisted
//! enabled/disabled flag of each plugin, and the lease that makes a real sync exclusive
//! across instances.

use std::time::Duration;

use diesel::prelude::*;
use diesel::sql_types::{Double, Text};

use crate::storage::schema::{plugin_state, plugin_sync_leases};
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

    /// Every stored flag: (name, enabled, reason). Plugins never switched have no row.
    pub async fn all(&self) -> Result<Vec<(String, bool, String)>, StorageError> {
        self.db
            .read(|conn| {
                Ok(plugin_state::table
                    .select((
                        plugin_state::name,
                        plugin_state::enabled,
                        plugin_state::reason,
                    ))
                    .load(conn)?)
            })
            .await
    }

    /// Takes the real-sync lease of `name` for `holder` until `ttl` from now, unless another
    /// holder's lease has not expired: one conditional upsert, so two instances racing for it
    /// cannot both win. `false`: a sync of this plugin runs elsewhere. The same holder may
    /// take its own lease again (its instance's gate already makes its syncs exclusive, and a
    /// release still on its way must not refuse the next sync).
    pub async fn take_sync_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StorageError> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.db
            .write(move |conn| {
                let now = unix_now();
                let expires_at = now + ttl.as_secs_f64();
                // diesel's DSL has no `DO UPDATE … WHERE` for SQLite; the statement is
                // standard (SQLite 3.24+, PostgreSQL 9.5+).
                let taken = diesel::sql_query(
                    "INSERT INTO plugin_sync_leases (name, holder, expires_at) VALUES (?, ?, ?) \
                     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
                     expires_at = excluded.expires_at \
                     WHERE plugin_sync_leases.expires_at < ? \
                     OR plugin_sync_leases.holder = excluded.holder",
                )
                .bind::<Text, _>(&name)
                .bind::<Text, _>(&holder)
                .bind::<Double, _>(expires_at)
                .bind::<Double, _>(now)
                .execute(conn)?;
                Ok(taken == 1)
            })
            .await
    }

    /// Gives the lease back, if `holder` still holds it.
    pub async fn release_sync_lease(&self, name: &str, holder: &str) -> Result<(), StorageError> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.db
            .write(move |conn| {
                diesel::delete(
                    plugin_sync_leases::table
                        .filter(plugin_sync_leases::name.eq(&name))
                        .filter(plugin_sync_leases::holder.eq(&holder)),
                )
                .execute(conn)?;
                Ok(())
            })
            .await
    }
}

/// A real-sync lease held for the life of one sync: [`release`](Self::release)d when the
/// sync ends; dropped unreleased (the sync task was aborted at its timeout), released on the
/// runtime without waiting.
pub(crate) struct SyncLease {
    store: PluginStateStore,
    name: String,
    holder: String,
    released: bool,
}

impl SyncLease {
    /// The lease of `name` for `holder`, or `None` when another instance holds it.
    pub async fn take(
        store: &PluginStateStore,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<SyncLease>, StorageError> {
        Ok(store
            .take_sync_lease(name, holder, ttl)
            .await?
            .then(|| SyncLease {
                store: store.clone(),
                name: name.to_owned(),
                holder: holder.to_owned(),
                released: false,
            }))
    }

    /// Gives the lease back now (a failure is logged: the lease then expires on its own).
    pub async fn release(mut self) {
        self.released = true;
        if let Err(e) = self
            .store
            .release_sync_lease(&self.name, &self.holder)
            .await
        {
            tracing::warn!(plugin = %self.name, error = %e, "could not release the sync lease");
        }
    }
}

impl Drop for SyncLease {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let (store, name, holder) = (
            self.store.clone(),
            std::mem::take(&mut self.name),
            std::mem::take(&mut self.holder),
        );
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(e) = store.release_sync_lease(&name, &holder).await {
                        // It expires on its own (the call timeout plus 5 s).
                        tracing::warn!(plugin = %name, error = %e, "could not release the sync lease");
                    }
                });
            }
            Err(_) => {
                tracing::warn!(plugin = %name, "no runtime to release the sync lease; it will expire")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store() -> (PluginStateStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("nebula.db").display());
        let db = Database::open_async(&url, 2).await.unwrap();
        (PluginStateStore::new(db), dir)
    }

    #[tokio::test]
    async fn a_lease_is_exclusive_until_released_or_expired() {
        let (store, _dir) = store().await;
        let ttl = Duration::from_secs(60);
        assert!(store.take_sync_lease("p", "a", ttl).await.unwrap());
        assert!(
            !store.take_sync_lease("p", "b", ttl).await.unwrap(),
            "held by a"
        );
        assert!(
            store.take_sync_lease("q", "b", ttl).await.unwrap(),
            "per plugin"
        );
        store.release_sync_lease("p", "b").await.unwrap();
        assert!(
            !store.take_sync_lease("p", "b", ttl).await.unwrap(),
            "only its holder releases it"
        );
        store.release_sync_lease("p", "a").await.unwrap();
        assert!(
            store.take_sync_lease("p", "b", ttl).await.unwrap(),
            "released"
        );
        // A holder that died: its lease (here already expired) is taken over.
        assert!(store
            .take_sync_lease("r", "dead", Duration::ZERO)
            .await
            .unwrap());
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(
            store.take_sync_lease("r", "alive", ttl).await.unwrap(),
            "expired"
        );
    }

    #[tokio::test]
    async fn dropping_a_lease_releases_it() {
        let (store, _dir) = store().await;
        let lease = SyncLease::take(&store, "p", "a", Duration::from_secs(60))
            .await
            .unwrap()
            .expect("free");
        assert!(SyncLease::take(&store, "p", "b", Duration::from_secs(60))
            .await
            .unwrap()
            .is_none());
        drop(lease);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if SyncLease::take(&store, "p", "b", Duration::from_secs(60))
                .await
                .unwrap()
                .is_some()
            {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "never released");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
