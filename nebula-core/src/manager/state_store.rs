//! What every instance on one database shares about plugins (SPEC §4): the persisted
//! enabled/disabled flag of each plugin, and the lease that makes a real sync exclusive
//! across instances.

use std::time::Duration;

use diesel::prelude::*;

use crate::storage::schema::{plugin_state, plugin_sync_leases};
use crate::storage::{on_backend, unix_now, Database, StorageError};

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
                let row = on_backend!(conn, conn => plugin_state::table
                    .filter(plugin_state::name.eq(&name))
                    .select((plugin_state::enabled, plugin_state::reason))
                    .first::<(bool, String)>(conn)
                    .optional())?;
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
        // A reason may quote a plugin's error text: stored escaped, so any text is storable
        // on every backend (PostgreSQL refuses a NUL byte).
        let (name, reason) = (
            name.to_owned(),
            nebula_plugin_api::escape_control(reason).into_owned(),
        );
        self.db
            .write(move |conn| {
                let now = unix_now();
                on_backend!(conn, conn => diesel::insert_into(plugin_state::table)
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
                    .execute(conn))?;
                Ok(())
            })
            .await
    }

    /// Every stored flag: (name, enabled, reason). Plugins never switched have no row.
    pub async fn all(&self) -> Result<Vec<(String, bool, String)>, StorageError> {
        self.db
            .read(|conn| {
                Ok(on_backend!(conn, conn => plugin_state::table
                    .select((
                        plugin_state::name,
                        plugin_state::enabled,
                        plugin_state::reason,
                    ))
                    .load(conn))?)
            })
            .await
    }

    /// Takes the real-sync lease of `name` for `holder` until `ttl` from now, unless another
    /// holder's lease has not expired: an insert or a conditional update, so two instances
    /// racing for it cannot both win. `None`: a sync of this plugin runs elsewhere. The same
    /// holder may take its own lease again (its instance's gate already makes its syncs
    /// exclusive, and a release still on its way must not refuse the next sync).
    ///
    /// `Some(token)`: the expiry this take wrote, which names it. A release deletes the row
    /// only while it still carries that token, so the late release of an aborted sync never
    /// deletes the lease its own instance took again since.
    pub async fn take_sync_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<f64>, StorageError> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.db
            .write(move |conn| {
                let now = unix_now();
                let expires_at = now + ttl.as_secs_f64();
                // Two statements in the write transaction, each race-free on its own: a new
                // row, or the one row updated only where the lease is free or already ours.
                // On PostgreSQL a concurrent update of the row waits for the other to commit
                // and then re-checks the condition against the new row, so only one wins; on
                // SQLite the write transaction already runs alone.
                let taken = on_backend!(conn, conn => {
                    let inserted = diesel::insert_into(plugin_sync_leases::table)
                        .values((
                            plugin_sync_leases::name.eq(&name),
                            plugin_sync_leases::holder.eq(&holder),
                            plugin_sync_leases::expires_at.eq(expires_at),
                        ))
                        .on_conflict(plugin_sync_leases::name)
                        .do_nothing()
                        .execute(conn)?;
                    if inserted == 1 {
                        1
                    } else {
                        diesel::update(
                            plugin_sync_leases::table
                                .filter(plugin_sync_leases::name.eq(&name))
                                .filter(
                                    plugin_sync_leases::expires_at
                                        .lt(now)
                                        .or(plugin_sync_leases::holder.eq(&holder)),
                                ),
                        )
                        .set((
                            plugin_sync_leases::holder.eq(&holder),
                            plugin_sync_leases::expires_at.eq(expires_at),
                        ))
                        .execute(conn)?
                    }
                });
                Ok((taken == 1).then_some(expires_at))
            })
            .await
    }

    /// Gives the lease back, if `holder` still holds it from the take that returned `token`.
    pub async fn release_sync_lease(
        &self,
        name: &str,
        holder: &str,
        token: f64,
    ) -> Result<(), StorageError> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.db
            .write(move |conn| {
                on_backend!(conn, conn => diesel::delete(
                    plugin_sync_leases::table
                        .filter(plugin_sync_leases::name.eq(&name))
                        .filter(plugin_sync_leases::holder.eq(&holder))
                        .filter(plugin_sync_leases::expires_at.eq(token)),
                )
                .execute(conn))?;
                Ok(())
            })
            .await
    }
}

/// A real-sync lease held for the life of one sync: [`release`](Self::release)d when the
/// sync ends; dropped unreleased (the sync task was aborted at its timeout), released on the
/// runtime without waiting (by its token, so only this take's row is deleted).
pub(crate) struct SyncLease {
    store: PluginStateStore,
    name: String,
    holder: String,
    token: f64,
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
            .map(|token| SyncLease {
                store: store.clone(),
                name: name.to_owned(),
                holder: holder.to_owned(),
                token,
                released: false,
            }))
    }

    /// Gives the lease back now (a failure is logged: the lease then expires on its own).
    pub async fn release(mut self) {
        self.released = true;
        if let Err(e) = self
            .store
            .release_sync_lease(&self.name, &self.holder, self.token)
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
        let (store, name, holder, token) = (
            self.store.clone(),
            std::mem::take(&mut self.name),
            std::mem::take(&mut self.holder),
            self.token,
        );
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(e) = store.release_sync_lease(&name, &holder, token).await {
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

    use crate::test_database::TestDatabase;

    async fn store(db: &TestDatabase) -> PluginStateStore {
        PluginStateStore::new(Database::open_async(db.url(), 8).await.unwrap())
    }

    crate::each_backend! {
    #[tokio::test]
    async fn a_lease_is_exclusive_until_released_or_expired(db) {
        let store = store(db).await;
        let ttl = Duration::from_secs(60);
        let taken = |holder: &'static str, plugin: &'static str| {
            let store = store.clone();
            async move { store.take_sync_lease(plugin, holder, ttl).await.unwrap() }
        };
        let a = taken("a", "p").await.expect("free");
        assert!(taken("b", "p").await.is_none(), "held by a");
        let b = taken("b", "q").await.expect("per plugin");
        store.release_sync_lease("p", "b", b).await.unwrap();
        assert!(taken("b", "p").await.is_none(), "only its holder releases it");
        store.release_sync_lease("p", "a", a).await.unwrap();
        assert!(taken("b", "p").await.is_some(), "released");
        // A holder that died: its lease (here already expired) is taken over.
        assert!(store
            .take_sync_lease("r", "dead", Duration::ZERO)
            .await
            .unwrap()
            .is_some());
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(taken("alive", "r").await.is_some(), "expired");
    }

    /// An aborted sync's release arrives late, after its instance took the lease again for
    /// the next sync: it deletes nothing, so another instance still cannot sync.
    #[tokio::test]
    async fn a_late_release_never_deletes_the_lease_taken_again_since(db) {
        let store = store(db).await;
        let ttl = Duration::from_secs(60);
        let first = store.take_sync_lease("p", "a", ttl).await.unwrap().expect("free");
        tokio::time::sleep(Duration::from_millis(2)).await;
        let second = store.take_sync_lease("p", "a", ttl).await.unwrap().expect("its own");
        assert_ne!(first, second, "each take has its own token");
        store.release_sync_lease("p", "a", first).await.unwrap();
        assert!(
            store.take_sync_lease("p", "b", ttl).await.unwrap().is_none(),
            "the second take still holds it"
        );
        store.release_sync_lease("p", "a", second).await.unwrap();
        assert!(store.take_sync_lease("p", "b", ttl).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn dropping_a_lease_releases_it(db) {
        let store = store(db).await;
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

    /// A reason quoting a plugin's error text is stored escaped: any text is storable on
    /// every backend (PostgreSQL refuses a NUL byte).
    #[tokio::test]
    async fn a_reason_with_control_characters_is_stored_escaped(db) {
        let store = store(db).await;
        store.set_enabled("p", false, "disabled by policy: boom\0\nforged").await.unwrap();
        assert_eq!(
            store.disabled_reason("p").await.unwrap().as_deref(),
            Some(r"disabled by policy: boom\u{0}\nforged")
        );
    }

    /// Many takers at once, as instances racing for one plugin's sync: exactly one wins,
    /// both for a new lease and for an expired one taken over.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn racing_takers_get_one_lease(db) {
        let store = store(db).await;
        for (plugin, previous) in [("fresh", None), ("expired", Some("dead"))] {
            if let Some(dead) = previous {
                assert!(store.take_sync_lease(plugin, dead, Duration::ZERO).await.unwrap().is_some());
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let racers: Vec<_> = (0..8)
                .map(|i| {
                    let store = store.clone();
                    tokio::spawn(async move {
                        store
                            .take_sync_lease(plugin, &format!("holder-{i}"), Duration::from_secs(60))
                            .await
                            .unwrap()
                            .is_some()
                    })
                })
                .collect();
            let mut winners = 0;
            for racer in racers {
                winners += usize::from(racer.await.unwrap());
            }
            assert_eq!(winners, 1, "{plugin}: one lease, one winner");
        }
    }
    }
}
