//! The identity directory: users, identity roles and identity tags.
//!
//! Plain storage operations, no scope checks: those belong to the plugin context. Arguments are
//! expected normalised (see `nebula_plugin_api::normalize_db_name`); the directory only stores.

use diesel::prelude::*;
use nebula_plugin_api::{DirectoryUser, IdentityRole, SyncOutcome, SyncUser};

use crate::storage::schema::{identity_roles, user_identity_tags, users};
use crate::storage::user_rows::{upsert_plugin_users, upsert_user, PluginUserRow, UserUpsert};
use crate::storage::{on_backend, unix_now, Database, DbConnection, StorageError};

/// Users written in one transaction by [`IdentityDirectory::sync_users`]: large enough that a
/// 10,000-user sync is 20 commits, small enough that a writer holds the lock briefly.
pub const SYNC_CHUNK: usize = 500;

/// The role tag reported for a user that has none.
const DEFAULT_ROLE_TAG: &str = "user";

/// How a plugin is named in the `updated_by` columns: `plugin:<name>` (other writers, such
/// as an admin, are named otherwise).
const PLUGIN_WRITER_PREFIX: &str = "plugin:";

/// The `updated_by` value of what `plugin` writes.
pub(crate) fn plugin_writer(plugin: &str) -> String {
    format!("{PLUGIN_WRITER_PREFIX}{plugin}")
}

/// The plugin named by an `updated_by` value, if a plugin wrote it.
fn plugin_of_writer(writer: &str) -> Option<&str> {
    writer.strip_prefix(PLUGIN_WRITER_PREFIX)
}

/// A row of [`IdentityDirectory::list_users`]: username, email, active, staff, the tag and
/// who wrote it (both absent when the user has no tag row).
type ListedUser = (
    String,
    Option<String>,
    bool,
    bool,
    Option<String>,
    Option<String>,
);

/// Access to users, identity roles and identity tags.
#[derive(Debug, Clone)]
pub struct IdentityDirectory {
    db: Database,
}

impl IdentityDirectory {
    /// A directory over `db`.
    pub fn new(db: Database) -> Self {
        IdentityDirectory { db }
    }

    /// Creates or updates `user` and sets its identity tag, in one transaction: a kill at any
    /// point leaves either both or neither. `updated_by` is recorded on the tag
    /// (`plugin:<name>` for plugin writes). New users get an unusable password.
    pub async fn sync_user(
        &self,
        updated_by: &str,
        user: &SyncUser,
    ) -> Result<SyncOutcome, StorageError> {
        let user = user.clone();
        let updated_by = updated_by.to_owned();
        self.db
            .write(move |conn| write_user_and_tag(conn, &updated_by, &user))
            .await
    }

    /// [`sync_user`](Self::sync_user) for many users: one transaction per chunk of
    /// [`SYNC_CHUNK`] users instead of one per user, and in it a few multi-row statements for
    /// the whole chunk (users, then tags) instead of a few statements per user: on PostgreSQL
    /// each statement is a network round trip. If the chunk cannot be written that way (one
    /// of its users is refused by the database, or it names a user twice), that transaction is
    /// rolled back and the chunk written again user by user, each inside its own savepoint,
    /// so a user that fails rolls back alone and every other user of the chunk is written
    /// with its tag. Results are in the order of `users`; a chunk that could not be written at
    /// all (the database unavailable) gives each of its users that error.
    pub async fn sync_users(
        &self,
        updated_by: &str,
        users: &[SyncUser],
    ) -> Vec<Result<SyncOutcome, StorageError>> {
        let mut results = Vec::with_capacity(users.len());
        for chunk in users.chunks(SYNC_CHUNK) {
            let chunk = chunk.to_vec();
            let updated_by = updated_by.to_owned();
            let count = chunk.len();
            let written = self
                .db
                .read(move |conn| {
                    // A chunk that names a user twice goes user by user at once.
                    let straight = (!names_a_user_twice(&chunk)).then(|| {
                        conn.write_transaction(|conn| write_chunk(conn, &updated_by, &chunk))
                    });
                    match straight {
                        Some(Ok(outcomes)) => Ok(outcomes.into_iter().map(Ok).collect()),
                        Some(Err(e)) if e.is_unavailable() => Err(e),
                        _ => conn.write_transaction(|conn| {
                            Ok(chunk
                                .iter()
                                .map(|user| {
                                    conn.transaction(|conn| {
                                        write_user_and_tag(conn, &updated_by, user)
                                    })
                                })
                                .collect::<Vec<_>>())
                        }),
                    }
                })
                .await;
            match written {
                Ok(chunk_results) => results.extend(chunk_results),
                Err(e) => {
                    let text = e.to_string();
                    results
                        .extend((0..count).map(|_| Err(StorageError::Unavailable(text.clone()))));
                }
            }
        }
        results
    }

    /// Users of `db_name` ordered by username, with their identity tags and who wrote them.
    pub async fn list_users(
        &self,
        db_name: &str,
        limit: u32,
        offset: u64,
    ) -> Result<Vec<DirectoryUser>, StorageError> {
        let db_name = db_name.to_owned();
        self.db
            .read(move |conn| {
                let rows = on_backend!(conn, conn => users::table
                    .left_join(
                        user_identity_tags::table.on(user_identity_tags::db_name
                            .eq(users::db_name)
                            .and(user_identity_tags::username.eq(users::username))),
                    )
                    .filter(users::db_name.eq(&db_name))
                    .order(users::username.asc())
                    .limit(i64::from(limit))
                    .offset(i64::try_from(offset).unwrap_or(i64::MAX))
                    .select((
                        users::username,
                        users::email,
                        users::is_active,
                        users::is_staff,
                        user_identity_tags::role_tag.nullable(),
                        user_identity_tags::updated_by.nullable(),
                    ))
                    .load::<ListedUser>(conn))?;
                Ok(rows
                    .into_iter()
                    .map(
                        |(username, email, is_active, is_staff, tag, synced_by)| DirectoryUser {
                            username,
                            email,
                            is_active,
                            is_staff,
                            role_tag: tag.unwrap_or_else(|| DEFAULT_ROLE_TAG.to_owned()),
                            synced_by: synced_by
                                .as_deref()
                                .and_then(plugin_of_writer)
                                .map(str::to_owned),
                        },
                    )
                    .collect())
            })
            .await
    }

    /// Sets the identity tag of an existing user; [`StorageError::NotFound`] when there is none.
    pub async fn set_identity_tag(
        &self,
        updated_by: &str,
        db_name: &str,
        username: &str,
        role_tag: &str,
    ) -> Result<(), StorageError> {
        let (db_name, username, role_tag, updated_by) = (
            db_name.to_owned(),
            username.to_owned(),
            role_tag.to_owned(),
            updated_by.to_owned(),
        );
        self.db
            .write(move |conn| {
                let exists: i64 = on_backend!(conn, conn => users::table
                    .filter(users::db_name.eq(&db_name))
                    .filter(users::username.eq(&username))
                    .count()
                    .get_result(conn))?;
                if exists == 0 {
                    return Err(StorageError::NotFound(format!(
                        "user '{username}' not found in '{db_name}'"
                    )));
                }
                upsert_tag(conn, &db_name, &username, &role_tag, &updated_by)
            })
            .await
    }

    /// Identity roles ordered by name.
    pub async fn list_roles(&self) -> Result<Vec<IdentityRole>, StorageError> {
        self.db
            .read(|conn| {
                let rows = on_backend!(conn, conn => identity_roles::table
                    .order(identity_roles::name.asc())
                    .select((
                        identity_roles::name,
                        identity_roles::description,
                        identity_roles::is_staff,
                    ))
                    .load::<(String, String, bool)>(conn))?;
                Ok(rows
                    .into_iter()
                    .map(|(name, description, is_staff)| IdentityRole {
                        name,
                        description,
                        is_staff,
                    })
                    .collect())
            })
            .await
    }

    /// Creates or updates an identity role.
    pub async fn upsert_role(
        &self,
        updated_by: &str,
        role: &IdentityRole,
    ) -> Result<(), StorageError> {
        let role = role.clone();
        let updated_by = updated_by.to_owned();
        self.db
            .write(move |conn| {
                let now = unix_now();
                on_backend!(conn, conn => diesel::insert_into(identity_roles::table)
                    .values((
                        identity_roles::name.eq(&role.name),
                        identity_roles::description.eq(&role.description),
                        identity_roles::is_staff.eq(role.is_staff),
                        identity_roles::updated_by.eq(&updated_by),
                        identity_roles::updated_at.eq(now),
                    ))
                    .on_conflict(identity_roles::name)
                    .do_update()
                    .set((
                        identity_roles::description.eq(&role.description),
                        identity_roles::is_staff.eq(role.is_staff),
                        identity_roles::updated_by.eq(&updated_by),
                        identity_roles::updated_at.eq(now),
                    ))
                    .execute(conn))?;
                Ok(())
            })
            .await
    }
}

/// Whether `users` names one `(db_name, username)` more than once.
fn names_a_user_twice(users: &[SyncUser]) -> bool {
    let mut seen = std::collections::HashSet::with_capacity(users.len());
    !users
        .iter()
        .all(|user| seen.insert((user.db_name.as_str(), user.username.as_str())))
}

/// Users and their identity tags, a statement or two for all of them (the caller holds the
/// transaction, and names no user twice).
fn write_chunk(
    conn: &mut DbConnection,
    updated_by: &str,
    users: &[SyncUser],
) -> Result<Vec<SyncOutcome>, StorageError> {
    use diesel::upsert::excluded;

    let rows: Vec<PluginUserRow<'_>> = users
        .iter()
        .map(|user| PluginUserRow {
            db_name: &user.db_name,
            username: &user.username,
            email: user.email.as_deref(),
            is_active: user.is_active,
        })
        .collect();
    let outcomes = upsert_plugin_users(conn, &rows)?;
    let now = unix_now();
    // In key order, as the users: see `upsert_plugin_users`.
    let mut sorted: Vec<&SyncUser> = users.iter().collect();
    sorted.sort_unstable_by_key(|user| (user.db_name.as_str(), user.username.as_str()));
    let tags: Vec<_> = sorted
        .iter()
        .map(|user| {
            (
                user_identity_tags::db_name.eq(&user.db_name),
                user_identity_tags::username.eq(&user.username),
                user_identity_tags::role_tag.eq(&user.role_tag),
                user_identity_tags::updated_by.eq(updated_by),
                user_identity_tags::updated_at.eq(now),
            )
        })
        .collect();
    on_backend!(conn, conn => diesel::insert_into(user_identity_tags::table)
        .values(&tags)
        .on_conflict((user_identity_tags::db_name, user_identity_tags::username))
        .do_update()
        .set((
            user_identity_tags::role_tag.eq(excluded(user_identity_tags::role_tag)),
            user_identity_tags::updated_by.eq(excluded(user_identity_tags::updated_by)),
            user_identity_tags::updated_at.eq(excluded(user_identity_tags::updated_at)),
        ))
        .execute(conn))?;
    Ok(outcomes)
}

/// A user and its identity tag (the caller holds the transaction).
fn write_user_and_tag(
    conn: &mut DbConnection,
    updated_by: &str,
    user: &SyncUser,
) -> Result<SyncOutcome, StorageError> {
    let outcome = upsert_user(
        conn,
        &UserUpsert {
            db_name: &user.db_name,
            username: &user.username,
            email: user.email.as_deref(),
            is_active: user.is_active,
            is_staff: None,
            password_hash: None,
        },
    )?;
    upsert_tag(
        conn,
        &user.db_name,
        &user.username,
        &user.role_tag,
        updated_by,
    )?;
    Ok(outcome)
}

fn upsert_tag(
    conn: &mut DbConnection,
    db_name: &str,
    username: &str,
    role_tag: &str,
    updated_by: &str,
) -> Result<(), StorageError> {
    let now = unix_now();
    on_backend!(conn, conn => diesel::insert_into(user_identity_tags::table)
        .values((
            user_identity_tags::db_name.eq(db_name),
            user_identity_tags::username.eq(username),
            user_identity_tags::role_tag.eq(role_tag),
            user_identity_tags::updated_by.eq(updated_by),
            user_identity_tags::updated_at.eq(now),
        ))
        .on_conflict((user_identity_tags::db_name, user_identity_tags::username))
        .do_update()
        .set((
            user_identity_tags::role_tag.eq(role_tag),
            user_identity_tags::updated_by.eq(updated_by),
            user_identity_tags::updated_at.eq(now),
        ))
        .execute(conn))?;
    Ok(())
}
