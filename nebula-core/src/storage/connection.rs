//! One connection type over both backends, its pool manager and its transactions.
//!
//! diesel's `MultiConnection` would be the obvious tool, but its `MultiBackend` has neither
//! `ON CONFLICT` (every write of the engine is an upsert) nor SQLite's `BEGIN IMMEDIATE`. So
//! [`DbConnection`] is a plain enum and each query is written once inside [`on_backend!`],
//! which compiles it for each concrete connection: one source, type-checked per backend.

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::r2d2::R2D2Connection;
use diesel::sqlite::SqliteConnection;
use diesel::Connection;

#[cfg(feature = "postgres")]
use diesel::pg::PgConnection;

use super::{DatabaseLocation, StorageError, BUSY_TIMEOUT};

/// A connection to the configured database, whichever backend it is.
pub enum DbConnection {
    /// The embedded default.
    Sqlite(SqliteConnection),
    /// PostgreSQL (feature `postgres`).
    #[cfg(feature = "postgres")]
    Postgres(PgConnection),
}

impl std::fmt::Debug for DbConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DbConnection::Sqlite(_) => "DbConnection::Sqlite",
            #[cfg(feature = "postgres")]
            DbConnection::Postgres(_) => "DbConnection::Postgres",
        })
    }
}

/// Runs `$body` with `$c` bound to the concrete connection inside `$conn`: the body is
/// written once and compiled for each backend.
macro_rules! on_backend {
    ($conn:expr, $c:ident => $body:expr) => {
        match $conn {
            $crate::storage::DbConnection::Sqlite($c) => $body,
            #[cfg(feature = "postgres")]
            $crate::storage::DbConnection::Postgres($c) => $body,
        }
    };
}
pub(crate) use on_backend;

impl DbConnection {
    /// Opens a connection to `location`, with the per-connection settings of its backend.
    pub(super) fn establish(location: &DatabaseLocation) -> Result<Self, StorageError> {
        match location {
            DatabaseLocation::Sqlite(path) => {
                let path_str = path.to_str().ok_or_else(|| StorageError::BadUrl {
                    url: path.display().to_string(),
                    reason: "path is not valid UTF-8".into(),
                })?;
                let mut conn = SqliteConnection::establish(path_str)
                    .map_err(|e| StorageError::Unavailable(format!("{}: {e}", path.display())))?;
                // synchronous=NORMAL is durable against process kills in WAL mode (only an OS
                // crash can lose the last commits); foreign keys stay off: the schema has none.
                conn.batch_execute(&format!(
                    "PRAGMA busy_timeout = {}; PRAGMA synchronous = NORMAL;",
                    BUSY_TIMEOUT.as_millis()
                ))?;
                Ok(DbConnection::Sqlite(conn))
            }
            #[cfg(feature = "postgres")]
            DatabaseLocation::Postgres(url) => PgConnection::establish(url)
                .map(DbConnection::Postgres)
                .map_err(|e| StorageError::Unavailable(redact_error(url, &e.to_string()))),
        }
    }

    /// Runs `work` in one transaction: all of it commits or none. Nested calls are
    /// savepoints. The outermost transaction of a `write` takes SQLite's write lock up front
    /// (`BEGIN IMMEDIATE`), so two writers never deadlock upgrading a read lock; PostgreSQL
    /// runs it at its default `READ COMMITTED`, where every write of the engine is an upsert
    /// or a conditional update that is race-free at that level.
    pub fn transaction<T, F>(&mut self, work: F) -> Result<T, StorageError>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, StorageError>,
    {
        self.run_in_transaction(false, work)
    }

    /// [`transaction`](Self::transaction) for writes: the outermost one takes SQLite's write
    /// lock up front. What [`Database::write`](super::Database::write) runs its work in.
    pub(crate) fn write_transaction<T, F>(&mut self, work: F) -> Result<T, StorageError>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, StorageError>,
    {
        self.run_in_transaction(true, work)
    }

    fn run_in_transaction<T, F>(&mut self, immediate: bool, work: F) -> Result<T, StorageError>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, StorageError>,
    {
        self.begin(immediate)?;
        match work(self) {
            Ok(value) => {
                on_backend!(self, c => AnsiTransactionManager::commit_transaction(c))?;
                Ok(value)
            }
            Err(error) => {
                // A failed rollback leaves the connection marked broken; the pool drops it.
                let _ = on_backend!(self, c => AnsiTransactionManager::rollback_transaction(c));
                Err(error)
            }
        }
    }

    fn begin(&mut self, immediate: bool) -> Result<(), StorageError> {
        match self {
            DbConnection::Sqlite(c) => {
                let depth = AnsiTransactionManager::transaction_manager_status_mut(c)
                    .transaction_depth()?;
                if immediate && depth.is_none() {
                    AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")?;
                } else {
                    AnsiTransactionManager::begin_transaction(c)?;
                }
            }
            #[cfg(feature = "postgres")]
            DbConnection::Postgres(c) => AnsiTransactionManager::begin_transaction(c)?,
        }
        Ok(())
    }
}

/// Opens pooled connections (`r2d2`) for one [`DatabaseLocation`].
#[derive(Debug)]
pub(super) struct ConnectionManager {
    pub(super) location: DatabaseLocation,
}

impl r2d2::ManageConnection for ConnectionManager {
    type Connection = DbConnection;
    type Error = StorageError;

    fn connect(&self) -> Result<DbConnection, StorageError> {
        DbConnection::establish(&self.location)
    }

    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), StorageError> {
        Ok(on_backend!(conn, c => c.ping())?)
    }

    fn has_broken(&self, conn: &mut DbConnection) -> bool {
        // A connection given back inside a transaction (its work panicked) is not reused.
        on_backend!(conn, c => {
            c.is_broken()
                || !matches!(
                    AnsiTransactionManager::transaction_manager_status_mut(c).transaction_depth(),
                    Ok(None)
                )
        })
    }
}

/// libpq's error texts may quote the connection string; its secrets never reach a log.
#[cfg(feature = "postgres")]
fn redact_error(url: &str, message: &str) -> String {
    let mut message = message.to_owned();
    for secret in super::url_secrets(url) {
        message = message.replace(secret, "***");
    }
    message
}
