//! Staff accounts of `system.db`: what login and sessions read, what `create-user` writes.
//!
//! Kept apart from the identity directory on purpose: plugins reach the directory through
//! their context and can never touch this module.

use diesel::prelude::*;
use nebula_plugin_api::{SyncOutcome, SYSTEM_DB_NAME};

use crate::storage::schema::users;
use crate::storage::user_rows::{upsert_user, UserUpsert};
use crate::storage::{on_backend, unix_now, Database, StorageError};

/// A `system.db` user as authentication sees it. Its `Debug` hides the password hash.
#[derive(Clone, PartialEq, Eq)]
pub struct Account {
    /// Row id (sessions are bound to it).
    pub id: i64,
    /// Login name.
    pub username: String,
    /// PHC-format password hash (`!` = no usable password).
    pub password_hash: String,
    /// Whether the account may be used.
    pub is_active: bool,
    /// Whether the account may call the admin API.
    pub is_staff: bool,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("password_hash", &"<redacted>")
            .field("is_active", &self.is_active)
            .field("is_staff", &self.is_staff)
            .finish()
    }
}

type AccountRow = (i64, String, String, bool, bool);

/// The columns of an [`Account`], in [`AccountRow`] order.
const ACCOUNT_COLUMNS: (
    users::id,
    users::username,
    users::password_hash,
    users::is_active,
    users::is_staff,
) = (
    users::id,
    users::username,
    users::password_hash,
    users::is_active,
    users::is_staff,
);

fn account((id, username, password_hash, is_active, is_staff): AccountRow) -> Account {
    Account {
        id,
        username,
        password_hash,
        is_active,
        is_staff,
    }
}

/// Reads and writes staff accounts.
#[derive(Debug, Clone)]
pub struct AccountStore {
    db: Database,
}

impl AccountStore {
    /// Accounts stored in `db`.
    pub fn new(db: Database) -> Self {
        AccountStore { db }
    }

    /// The `system.db` account with this username.
    pub async fn by_username(&self, username: &str) -> Result<Option<Account>, StorageError> {
        let username = username.to_owned();
        self.db
            .read(move |conn| {
                Ok(on_backend!(conn, conn => users::table
                    .filter(users::db_name.eq(SYSTEM_DB_NAME))
                    .filter(users::username.eq(&username))
                    .select(ACCOUNT_COLUMNS)
                    .first::<AccountRow>(conn)
                    .optional())?
                .map(account))
            })
            .await
    }

    /// The `system.db` account with this id.
    pub async fn by_id(&self, id: i64) -> Result<Option<Account>, StorageError> {
        self.db
            .read(move |conn| {
                Ok(on_backend!(conn, conn => users::table
                    .filter(users::db_name.eq(SYSTEM_DB_NAME))
                    .filter(users::id.eq(id))
                    .select(ACCOUNT_COLUMNS)
                    .first::<AccountRow>(conn)
                    .optional())?
                .map(account))
            })
            .await
    }

    /// Creates the account, or sets the password and staff flag of an existing one (and
    /// re-activates it). Changing the password invalidates the account's sessions.
    pub async fn upsert(
        &self,
        username: &str,
        password_hash: &str,
        is_staff: bool,
    ) -> Result<SyncOutcome, StorageError> {
        let (username, hash) = (username.to_owned(), password_hash.to_owned());
        self.db
            .write(move |conn| {
                upsert_user(
                    conn,
                    &UserUpsert {
                        db_name: SYSTEM_DB_NAME,
                        username: &username,
                        email: None,
                        is_active: true,
                        is_staff: Some(is_staff),
                        password_hash: Some(&hash),
                    },
                )
            })
            .await
    }

    /// Sets the active and staff flags (for admins and tests).
    pub async fn set_flags(
        &self,
        username: &str,
        is_active: bool,
        is_staff: bool,
    ) -> Result<(), StorageError> {
        let username = username.to_owned();
        self.db
            .write(move |conn| {
                let n = on_backend!(conn, conn => diesel::update(
                    users::table
                        .filter(users::db_name.eq(SYSTEM_DB_NAME))
                        .filter(users::username.eq(&username)),
                )
                .set((
                    users::is_active.eq(is_active),
                    users::is_staff.eq(is_staff),
                    users::updated_at.eq(unix_now()),
                ))
                .execute(conn))?;
                if n == 0 {
                    return Err(StorageError::NotFound(format!(
                        "user '{username}' not found in '{SYSTEM_DB_NAME}'"
                    )));
                }
                Ok(())
            })
            .await
    }
}
