//! Storage: one diesel connection pool, used only from the blocking thread pool.
//!
//! Every query of the crate goes through [`Database::read`] or [`Database::write`], which move
//! the work onto tokio's blocking pool so an async worker thread never waits for the disk or a
//! lock. `write` runs its closure in one transaction that takes the write lock up front
//! (`BEGIN IMMEDIATE` on SQLite), so two writers never deadlock upgrading a read lock.
//!
//! Only SQLite is built today; the schema uses no SQLite-only feature and writes are upserts
//! (`ON CONFLICT`), so PostgreSQL is one more variant of [`DbConnection`] (a diesel
//! `MultiConnection`) plus its migrations directory, not a rewrite. See `docs/ARCHITECTURE.md`.

pub(crate) mod schema;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use diesel::connection::SimpleConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool};
use diesel::sqlite::SqliteConnection;
use diesel::Connection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

/// The connection type every query is written against.
pub type DbConnection = SqliteConnection;

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

/// How long a connection waits for another writer before failing with "database is locked".
const BUSY_TIMEOUT: Duration = Duration::from_secs(15);

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The database URL cannot be used.
    #[error("database.url '{url}': {reason}")]
    BadUrl {
        /// The URL as configured.
        url: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// No connection could be had (file not writable, pool exhausted past its timeout…).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Migrations failed.
    #[error("database migration failed: {0}")]
    Migration(String),
    /// A query failed.
    #[error("database query failed: {0}")]
    Query(#[from] diesel::result::Error),
    /// A row that must exist does not.
    #[error("{0}")]
    NotFound(String),
    /// The blocking task was cancelled or panicked.
    #[error("database task failed: {0}")]
    Task(String),
}

/// Where the database lives, parsed from `database.url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseLocation {
    /// A SQLite file.
    Sqlite(PathBuf),
}

impl DatabaseLocation {
    /// Parses `sqlite://RELATIVE/PATH`, `sqlite:///ABSOLUTE/PATH` (or a `postgres://` URL, which
    /// this build refuses with a clear reason).
    pub fn parse(url: &str) -> Result<Self, StorageError> {
        let bad = |reason: &str| StorageError::BadUrl {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() || path.ends_with('/') {
                return Err(bad(
                    "expected sqlite://RELATIVE/PATH or sqlite:///ABSOLUTE/PATH",
                ));
            }
            return Ok(DatabaseLocation::Sqlite(PathBuf::from(path)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Err(bad("PostgreSQL is not supported by this build yet"));
        }
        Err(bad("expected a sqlite:// URL"))
    }

    /// The directory that holds the database file; generated secrets are stored beside it.
    pub fn data_dir(&self) -> PathBuf {
        match self {
            DatabaseLocation::Sqlite(path) => match path.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
                _ => PathBuf::from("."),
            },
        }
    }
}

/// Per-connection settings applied when the pool opens a connection.
#[derive(Debug)]
struct SqlitePragmas;

impl CustomizeConnection<SqliteConnection, diesel::r2d2::Error> for SqlitePragmas {
    fn on_acquire(&self, conn: &mut SqliteConnection) -> Result<(), diesel::r2d2::Error> {
        // synchronous=NORMAL is durable against process kills in WAL mode (only an OS crash can
        // lose the last commits); foreign keys stay off because the schema has none.
        conn.batch_execute(&format!(
            "PRAGMA busy_timeout = {}; PRAGMA synchronous = NORMAL;",
            BUSY_TIMEOUT.as_millis()
        ))
        .map_err(diesel::r2d2::Error::QueryError)
    }
}

/// A pool of database connections.
#[derive(Clone)]
pub struct Database {
    pool: Pool<ConnectionManager<DbConnection>>,
    location: DatabaseLocation,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl Database {
    /// Opens (creating the file and its directory when missing) and migrates the database.
    /// Blocking: call it from a blocking context, or use [`Database::open_async`].
    pub fn open(url: &str, pool_size: u32) -> Result<Self, StorageError> {
        let location = DatabaseLocation::parse(url)?;
        let DatabaseLocation::Sqlite(path) = &location;
        prepare_sqlite_file(path)?;
        let path_str = path.to_str().ok_or_else(|| StorageError::BadUrl {
            url: url.to_owned(),
            reason: "path is not valid UTF-8".into(),
        })?;
        // WAL is a property of the file: set it once, before the pool opens connections.
        let mut first = SqliteConnection::establish(path_str)
            .map_err(|e| StorageError::Unavailable(format!("{}: {e}", path.display())))?;
        first
            .batch_execute(&format!(
                "PRAGMA busy_timeout = {}; PRAGMA journal_mode = WAL;",
                BUSY_TIMEOUT.as_millis()
            ))
            .map_err(StorageError::Query)?;
        first
            .run_pending_migrations(SQLITE_MIGRATIONS)
            .map_err(|e| StorageError::Migration(e.to_string()))?;
        drop(first);

        let pool = Pool::builder()
            .max_size(pool_size.max(1))
            .connection_timeout(Duration::from_secs(30))
            .connection_customizer(Box::new(SqlitePragmas))
            .build(ConnectionManager::<DbConnection>::new(path_str))
            .map_err(|e| StorageError::Unavailable(e.to_string()))?;
        Ok(Database { pool, location })
    }

    /// [`Database::open`] on the blocking pool.
    pub async fn open_async(url: &str, pool_size: u32) -> Result<Self, StorageError> {
        let url = url.to_owned();
        tokio::task::spawn_blocking(move || Database::open(&url, pool_size))
            .await
            .map_err(|e| StorageError::Task(e.to_string()))?
    }

    /// Where the database lives.
    pub fn location(&self) -> &DatabaseLocation {
        &self.location
    }

    /// Runs read-only work on the blocking pool.
    pub async fn read<T, F>(&self, work: F) -> Result<T, StorageError>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, StorageError> + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.pool.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = pool
                .get()
                .map_err(|e| StorageError::Unavailable(e.to_string()))?;
            work(&mut conn)
        })
        .await
        .map_err(|e| StorageError::Task(e.to_string()))?
    }

    /// Runs `work` in one write transaction on the blocking pool: all of it commits or none.
    pub async fn write<T, F>(&self, work: F) -> Result<T, StorageError>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, StorageError> + Send + 'static,
        T: Send + 'static,
    {
        self.read(move |conn| conn.immediate_transaction(work))
            .await
    }
}

fn prepare_sqlite_file(path: &Path) -> Result<(), StorageError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| {
            StorageError::Unavailable(format!("cannot create {}: {e}", dir.display()))
        })?;
    }
    Ok(())
}

/// Now, as float Unix seconds (the timestamp format of the whole API).
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
