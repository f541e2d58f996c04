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
