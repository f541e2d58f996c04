//! The one user upsert: plugin syncs (`IdentityDirectory::sync_user`) and `create-user`
//! (`AccountStore::upsert`) both write user rows through [`upsert_user`].

use diesel::prelude::*;
use nebula_plugin_api::SyncOutcome;

use super::schema::users;
use super::{on_backend, unix_now, DbConnection, StorageError};

/// The password hash of a user that cannot log in (the column's default).
pub(crate) const UNUSABLE_PASSWORD: &str = "!";

/// One user row to create or update. A `None` field is set to its default on insert and left
/// as stored on update.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UserUpsert<'a> {
    pub db_name: &'a str,
    pub username: &'a str,
    /// A source that does not know the e-mail must not erase it.
    pub email: Option<&'a str>,
    pub is_active: bool,
    /// Plugins never change it (`None`); `create-user` sets it.
    pub is_staff: Option<bool>,
    /// Plugins never set one (`None`: unusable on insert, kept on update).
    pub password_hash: Option<&'a str>,
}

/// What an update changes: `None` fields are skipped (diesel's default).
#[derive(AsChangeset)]
#[diesel(table_name = users)]
struct UserChanges<'a> {
    email: Option<&'a str>,
    is_active: bool,
    is_staff: Option<bool>,
    password_hash: Option<&'a str>,
    updated_at: f64,
}

/// Inserts the user, or updates it when `(db_name, username)` exists. Race-free without a
/// read-then-write: the insert's row count says which happened.
pub(crate) fn upsert_user(
    conn: &mut DbConnection,
    user: &UserUpsert<'_>,
) -> Result<SyncOutcome, StorageError> {
    let now = unix_now();
    on_backend!(conn, conn => {
        let inserted = diesel::insert_into(users::table)
            .values((
                users::db_name.eq(user.db_name),
                users::username.eq(user.username),
                users::email.eq(user.email),
                users::is_active.eq(user.is_active),
                users::is_staff.eq(user.is_staff.unwrap_or(false)),
                users::password_hash.eq(user.password_hash.unwrap_or(UNUSABLE_PASSWORD)),
                users::created_at.eq(now),
                users::updated_at.eq(now),
            ))
            .on_conflict((users::db_name, users::username))
            .do_nothing()
            .execute(conn)?;
        if inserted == 1 {
            return Ok(SyncOutcome::Created);
        }
        diesel::update(
            users::table
                .filter(users::db_name.eq(user.db_name))
                .filter(users::username.eq(user.username)),
        )
        .set(UserChanges {
            email: user.email,
            is_active: user.is_active,
            is_staff: user.is_staff,
            password_hash: user.password_hash,
            updated_at: now,
        })
        .execute(conn)?;
    });
    Ok(SyncOutcome::Updated)
}

/// One user of a plugin sync, as [`upsert_plugin_users`] writes it (plugins never set the
/// staff flag nor a password).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PluginUserRow<'a> {
    pub db_name: &'a str,
    pub username: &'a str,
    /// A source that does not know the e-mail must not erase it.
    pub email: Option<&'a str>,
    pub is_active: bool,
}

/// [`upsert_user`] for many plugin users at once: at most two statements (the users with an
/// e-mail, those without, which keep the stored one), whatever their number, instead of up to
/// two per user; a round trip saved per user is what makes large syncs fast on PostgreSQL.
/// The outcomes are in the order of `rows`. The caller holds the transaction, and passes no
/// `(db_name, username)` twice (a second row would update the first within one statement,
/// which PostgreSQL refuses and SQLite would report as created twice).
///
/// Which rows were created is read back from `RETURNING`: a row created by this statement
/// has `created_at` equal to the statement's own timestamp; an updated row keeps the
/// `created_at` of its creation, an earlier instant. Race-free like [`upsert_user`]: one
/// `INSERT … ON CONFLICT DO UPDATE` per group, no read before the write.
pub(crate) fn upsert_plugin_users(
    conn: &mut DbConnection,
    rows: &[PluginUserRow<'_>],
) -> Result<Vec<SyncOutcome>, StorageError> {
    use diesel::upsert::excluded;
    use std::collections::HashMap;

    let now = unix_now();
    // Rows in key order: two transactions writing overlapping users then lock them in the
    // same order, so on PostgreSQL one waits for the other instead of deadlocking.
    let mut sorted: Vec<&PluginUserRow<'_>> = rows.iter().collect();
    sorted.sort_unstable_by_key(|row| (row.db_name, row.username));
    let values = |with_email: bool| -> Vec<_> {
        sorted
            .iter()
            .filter(|row| row.email.is_some() == with_email)
            .map(|row| {
                (
                    users::db_name.eq(row.db_name),
                    users::username.eq(row.username),
                    users::email.eq(row.email),
                    users::is_active.eq(row.is_active),
                    users::is_staff.eq(false),
                    users::password_hash.eq(UNUSABLE_PASSWORD),
                    users::created_at.eq(now),
                    users::updated_at.eq(now),
                )
            })
            .collect()
    };
    let (with_email, without_email) = (values(true), values(false));
    let mut written: Vec<(String, String, f64)> = Vec::with_capacity(rows.len());
    on_backend!(conn, conn => {
        if !with_email.is_empty() {
            written.extend(
                diesel::insert_into(users::table)
                    .values(&with_email)
                    .on_conflict((users::db_name, users::username))
                    .do_update()
                    .set((
                        users::email.eq(excluded(users::email)),
                        users::is_active.eq(excluded(users::is_active)),
                        users::updated_at.eq(excluded(users::updated_at)),
                    ))
                    .returning((users::db_name, users::username, users::created_at))
                    .get_results::<(String, String, f64)>(conn)?,
            );
        }
        if !without_email.is_empty() {
            written.extend(
                diesel::insert_into(users::table)
                    .values(&without_email)
                    .on_conflict((users::db_name, users::username))
                    .do_update()
                    .set((
                        users::is_active.eq(excluded(users::is_active)),
                        users::updated_at.eq(excluded(users::updated_at)),
                    ))
                    .returning((users::db_name, users::username, users::created_at))
                    .get_results::<(String, String, f64)>(conn)?,
            );
        }
    });
    let created: HashMap<(&str, &str), bool> = written
        .iter()
        .map(|(db_name, username, created_at)| {
            ((db_name.as_str(), username.as_str()), *created_at == now)
        })
        .collect();
    rows.iter()
        .map(|row| match created.get(&(row.db_name, row.username)) {
            Some(true) => Ok(SyncOutcome::Created),
            Some(false) => Ok(SyncOutcome::Updated),
            None => Err(StorageError::NotFound(format!(
                "user '{}' in '{}' was not written",
                row.username, row.db_name
            ))),
        })
        .collect()
}
