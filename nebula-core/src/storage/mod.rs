//! Storage: one pool of database connections, used only from the blocking thread pool.
//!
//! Every query of the crate goes through [`Database::read`] or [`Database::write`], which move
//! the work onto tokio's blocking pool so an async worker thread never waits for the disk, the
//! network or a lock. `write` runs its closure in one transaction (on SQLite one that takes
//! the write lock up front, `BEGIN IMMEDIATE`, so two writers never deadlock upgrading a read
//! lock).
//!
//! Two backends (SPEC §4): SQLite, the embedded default, and PostgreSQL (feature `postgres`),
//! chosen at run time by `database.url`. One code path for queries: [`DbConnection`] is either
//! connection and each query is written once inside `on_backend!` (`connection.rs`). Each
//! backend has its migrations directory (`migrations/sqlite`, `migrations/postgres`), kept in
//! step (same versions, same tables; checked by the tests).

mod connection;
pub mod schema;
pub(crate) mod user_rows;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use diesel::connection::SimpleConnection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use r2d2::Pool;

pub(crate) use connection::on_backend;
use connection::ConnectionManager;
pub use connection::DbConnection;

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
#[cfg(feature = "postgres")]
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// How long work waits for a connection by default (`database.connect_timeout_sec`).
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a connection waits for another writer before failing with "database is locked".
const BUSY_TIMEOUT: Duration = Duration::from_secs(15);

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The database URL cannot be used.
    #[error("database.url '{url}': {reason}")]
    BadUrl {
        /// The URL as configured (its password, if any, replaced by `***`).
        url: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// No connection could be had (file not writable, server down, pool exhausted past its
    /// timeout…).
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

impl StorageError {
    /// Whether the database could not be reached (as opposed to a query it refused): what
    /// answers `503` rather than `500`. A PostgreSQL connection that dies mid-query surfaces as
    /// a query error whose text says so.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StorageError::Unavailable(_) => true,
            StorageError::Query(diesel::result::Error::DatabaseError(kind, info)) => {
                matches!(kind, diesel::result::DatabaseErrorKind::ClosedConnection)
                    || connection_lost(info.message())
            }
            _ => false,
        }
    }
}

/// libpq's words for a connection that went away under a query.
fn connection_lost(message: &str) -> bool {
    const LOST: [&str; 5] = [
        "server closed the connection",
        "terminating connection",
        "connection to server",
        "no connection to the server",
        "could not receive data from server",
    ];
    LOST.iter().any(|words| message.contains(words))
}

/// Where the database lives, parsed from `database.url`.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseLocation {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL server: the URL as libpq takes it (feature `postgres`).
    #[cfg(feature = "postgres")]
    Postgres(String),
}

impl std::fmt::Debug for DatabaseLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DatabaseLocation::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
            #[cfg(feature = "postgres")]
            DatabaseLocation::Postgres(url) => {
                f.debug_tuple("Postgres").field(&redact_url(url)).finish()
            }
        }
    }
}

impl DatabaseLocation {
    /// Parses `sqlite://RELATIVE/PATH`, `sqlite:///ABSOLUTE/PATH` or `postgres://…` /
    /// `postgresql://…` (the latter only in a build with the `postgres` feature; otherwise a
    /// clear error naming the feature).
    pub fn parse(url: &str) -> Result<Self, StorageError> {
        let bad = |reason: &str| StorageError::BadUrl {
            url: redact_url(url),
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
            #[cfg(feature = "postgres")]
            return Ok(DatabaseLocation::Postgres(url.to_owned()));
            #[cfg(not(feature = "postgres"))]
            return Err(bad(
                "this build has no PostgreSQL support; build nebula-server with the cargo \
                 feature `postgres` (on by default)",
            ));
        }
        Err(bad("expected a sqlite:// or postgres:// URL"))
    }

    /// The directory that holds generated secrets: beside the SQLite file, or `data` (under the
    /// working directory) with PostgreSQL, where several instances should rather share their
    /// secrets through the environment (`docs/SCALING.md`).
    pub fn data_dir(&self) -> PathBuf {
        match self {
            DatabaseLocation::Sqlite(path) => match path.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
                _ => PathBuf::from("."),
            },
            #[cfg(feature = "postgres")]
            DatabaseLocation::Postgres(_) => PathBuf::from("data"),
        }
    }
}

/// The password of a `postgres://user:password@host/…` URL, if it has one.
fn url_password(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next()?;
    let userinfo = authority.rsplit_once('@')?.0;
    Some(userinfo.split_once(':')?.1)
}

/// Every secret `url` holds, as written in it (for scrubbing texts that may quote it).
#[cfg(feature = "postgres")]
fn url_secrets(url: &str) -> Vec<&str> {
    let query = url.split_once('?').map_or("", |(_, query)| query);
    url_password(url.split('?').next().unwrap_or(url))
        .into_iter()
        .chain(query.split('&').filter_map(|parameter| {
            let (key, value) = parameter.split_once('=')?;
            SECRET_PARAMETERS.contains(&key).then_some(value)
        }))
        .filter(|secret| !secret.is_empty())
        .collect()
}

/// Query parameters of a libpq URL that hold secrets.
const SECRET_PARAMETERS: [&str; 2] = ["password", "sslpassword"];

/// `url` with its secrets (the password of the authority, `password=` and `sslpassword=`
/// parameters) replaced by `***`: what logs, errors and `Debug` may show.
pub fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let mut redacted = match url_password(base) {
        Some(password) if !password.is_empty() => {
            base.replacen(&format!(":{password}@"), ":***@", 1)
        }
        _ => base.to_owned(),
    };
    if let Some(query) = query {
        let parameters: Vec<String> = query
            .split('&')
            .map(|parameter| match parameter.split_once('=') {
                Some((key, _)) if SECRET_PARAMETERS.contains(&key) => format!("{key}=***"),
                _ => parameter.to_owned(),
            })
            .collect();
        redacted.push('?');
        redacted.push_str(&parameters.join("&"));
    }
    redacted
}

/// A pool of database connections.
#[derive(Clone)]
pub struct Database {
    pool: Pool<ConnectionManager>,
    location: DatabaseLocation,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

/// The pool's connections at one moment ([`Database::pool_state`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolState {
    /// Checked out by some work.
    pub in_use: u32,
    /// Open and waiting in the pool.
    pub idle: u32,
}

impl Database {
    /// Opens (creating a SQLite file and its directory when missing) and migrates the
    /// database. Blocking: call it from a blocking context, or use [`Database::open_async`].
    pub fn open(url: &str, pool_size: u32) -> Result<Self, StorageError> {
        Self::open_with(url, pool_size, DEFAULT_CONNECT_TIMEOUT)
    }

    /// [`Database::open`], waiting at most `connect_timeout` for a connection on every use
    /// (`database.connect_timeout_sec`): past it, the work fails as unavailable (`503`).
    pub fn open_with(
        url: &str,
        pool_size: u32,
        connect_timeout: Duration,
    ) -> Result<Self, StorageError> {
        let location = match DatabaseLocation::parse(url)? {
            DatabaseLocation::Sqlite(path) => {
                prepare_sqlite_file(&path)?;
                DatabaseLocation::Sqlite(path)
            }
            #[cfg(feature = "postgres")]
            DatabaseLocation::Postgres(url) => {
                DatabaseLocation::Postgres(with_connect_timeout(&url, connect_timeout))
            }
        };
        let mut first = DbConnection::establish(&location)?;
        migrate(&mut first)?;
        drop(first);

        let pool = Pool::builder()
            .max_size(pool_size.max(1))
            .connection_timeout(connect_timeout)
            // Connections are opened when needed (the first one, for the migrations, just
            // succeeded): a database that goes away later makes work fail as unavailable
            // until it is back, and the pool reconnects by itself.
            .min_idle(Some(0))
            .build_unchecked(ConnectionManager {
                location: location.clone(),
            });
        Ok(Database { pool, location })
    }

    /// [`Database::open`] on the blocking pool.
    pub async fn open_async(url: &str, pool_size: u32) -> Result<Self, StorageError> {
        Self::open_async_with(url, pool_size, DEFAULT_CONNECT_TIMEOUT).await
    }

    /// [`Database::open_with`] on the blocking pool.
    pub async fn open_async_with(
        url: &str,
        pool_size: u32,
        connect_timeout: Duration,
    ) -> Result<Self, StorageError> {
        let url = url.to_owned();
        tokio::task::spawn_blocking(move || Database::open_with(&url, pool_size, connect_timeout))
            .await
            .map_err(|e| StorageError::Task(e.to_string()))?
    }

    /// The pool's connections now: in use and idle (for `nebula_db_pool_connections`).
    pub fn pool_state(&self) -> PoolState {
        let state = self.pool.state();
        PoolState {
            in_use: state.connections.saturating_sub(state.idle_connections),
            idle: state.idle_connections,
        }
    }

    /// Whether the database answers now: one trivial query, failing as
    /// [`StorageError::Unavailable`] when no connection can be had within the connect
    /// timeout. What `GET /readyz` asks.
    pub async fn ping(&self) -> Result<(), StorageError> {
        self.read(|conn| {
            on_backend!(conn, c => c.batch_execute("SELECT 1"))?;
            Ok(())
        })
        .await
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
        self.read(move |conn| conn.write_transaction(work)).await
    }
}

/// Brings the schema up to date. On SQLite it also switches the file to WAL (a property of
/// the file, set once before the pool opens connections). On PostgreSQL several instances may
/// start at once: a session advisory lock lets one migrate while the others wait.
fn migrate(conn: &mut DbConnection) -> Result<(), StorageError> {
    let failed =
        |e: Box<dyn std::error::Error + Send + Sync>| StorageError::Migration(e.to_string());
    match conn {
        DbConnection::Sqlite(c) => {
            c.batch_execute("PRAGMA journal_mode = WAL;")?;
            c.run_pending_migrations(SQLITE_MIGRATIONS)
                .map_err(failed)?;
        }
        #[cfg(feature = "postgres")]
        DbConnection::Postgres(c) => {
            /// Any constant shared by every instance: "Nebula migrations".
            const MIGRATION_LOCK: i64 = 0x4e45_4255_4c41;
            c.batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))?;
            let result = c.run_pending_migrations(POSTGRES_MIGRATIONS).map(|_| ());
            // The lock is the session's: it also ends when this connection is dropped.
            let _ = c.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"));
            result.map_err(failed)?;
        }
    }
    Ok(())
}

/// libpq waits for an unreachable server as long as TCP does (minutes) unless told: bound
/// each connection attempt by the connect timeout, unless the URL says otherwise.
#[cfg(feature = "postgres")]
pub(crate) fn with_connect_timeout(url: &str, timeout: Duration) -> String {
    if url.contains("connect_timeout=") {
        return url.to_owned();
    }
    let separator = match url.find('?') {
        None => "?",
        Some(at) if at + 1 == url.len() || url.ends_with('&') => "",
        Some(_) => "&",
    };
    // libpq's minimum is 2 s; it counts whole seconds.
    let seconds = timeout.as_secs().max(2);
    format!("{url}{separator}connect_timeout={seconds}")
}

/// Creates the data directory (0700) and the database file (0600) before SQLite opens it:
/// they hold password hashes and emails (SPEC §4). SQLite gives the `-wal` and `-shm` files
/// the mode of the database file, so they are 0600 too. Files an older release left readable
/// by others are tightened; a directory that already existed is left as it is (it may be the
/// working directory) but a loose one is reported.
fn prepare_sqlite_file(path: &Path) -> Result<(), StorageError> {
    let unavailable = |what: &Path, e: std::io::Error| {
        StorageError::Unavailable(format!("{}: {e}", what.display()))
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if dir.exists() {
            warn_if_open_to_others(dir);
        } else {
            create_private_dir(dir).map_err(|e| unavailable(dir, e))?;
        }
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(PRIVATE_FILE_MODE);
    }
    options.open(path).map_err(|e| unavailable(path, e))?;
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let file = PathBuf::from(format!("{}{suffix}", path.display()));
        make_private(&file).map_err(|e| unavailable(&file, e))?;
    }
    Ok(())
}

/// Mode of the database files.
const PRIVATE_FILE_MODE: u32 = 0o600;
/// Mode of a data directory the core creates.
const PRIVATE_DIR_MODE: u32 = 0o700;

/// Creates `dir` (and its parents) with mode 0700: the one rule for directories that hold
/// the core's data or secrets.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(PRIVATE_DIR_MODE);
    }
    builder.create(dir)?;
    // The mode above is filtered by the umask and only applies to the last component.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(PRIVATE_DIR_MODE))?;
    }
    Ok(())
}

/// Takes group and other permissions away from `file`, if it exists: the one rule for the
/// files that hold the core's data or secrets.
pub(crate) fn make_private(file: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        match std::fs::metadata(file) {
            Ok(meta) if meta.permissions().mode() & 0o077 != 0 => {
                let mode = meta.permissions().mode() & PRIVATE_FILE_MODE;
                tracing::warn!(file = %file.display(), "file was readable by other users; made it private");
                std::fs::set_permissions(file, std::fs::Permissions::from_mode(mode))?;
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn warn_if_open_to_others(dir: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(dir) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    dir = %dir.display(),
                    mode = format!("{mode:o}"),
                    "the data directory is open to other users; run chmod 700 on it"
                );
            }
        }
    }
}

/// Now, as float Unix seconds (the timestamp format of the whole API).
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use diesel::RunQueryDsl;

    use super::*;

    #[cfg(not(feature = "postgres"))]
    #[test]
    fn a_postgres_url_without_the_feature_is_refused_naming_the_feature() {
        let error = DatabaseLocation::parse("postgres://nebula:s3cret@db/nebula").unwrap_err();
        let text = error.to_string();
        assert!(text.contains("cargo feature `postgres`"), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
    }

    #[cfg(feature = "postgres")]
    #[test]
    fn a_postgres_url_is_taken_and_its_password_never_shown() {
        let url = "postgresql://nebula:s3cret@db:5432/nebula?sslmode=require";
        let location = DatabaseLocation::parse(url).unwrap();
        assert_eq!(location, DatabaseLocation::Postgres(url.to_owned()));
        assert!(!format!("{location:?}").contains("s3cret"));
        assert_eq!(
            redact_url(url),
            "postgresql://nebula:***@db:5432/nebula?sslmode=require"
        );
        assert_eq!(redact_url("postgres://db/nebula"), "postgres://db/nebula");
        assert_eq!(
            redact_url("postgres://u@db/n?sslmode=require&password=p4ss&sslpassword=k3y"),
            "postgres://u@db/n?sslmode=require&password=***&sslpassword=***"
        );
        assert_eq!(
            with_connect_timeout("postgres://db/n?", Duration::from_secs(5)),
            "postgres://db/n?connect_timeout=5"
        );
        assert_eq!(
            with_connect_timeout("postgres://db/n?a=b&", Duration::from_secs(5)),
            "postgres://db/n?a=b&connect_timeout=5"
        );
        assert_eq!(
            with_connect_timeout(url, Duration::from_millis(500)),
            format!("{url}&connect_timeout=2")
        );
        assert_eq!(
            with_connect_timeout("postgres://db/n?connect_timeout=9", Duration::from_secs(30)),
            "postgres://db/n?connect_timeout=9"
        );
        assert_eq!(
            with_connect_timeout("postgres://db/n", Duration::from_secs(30)),
            "postgres://db/n?connect_timeout=30"
        );
    }

    /// An unreachable server is "unavailable" within the connect timeout, naming no password.
    #[cfg(feature = "postgres")]
    #[test]
    fn an_unreachable_postgres_server_is_unavailable_quickly() {
        let started = std::time::Instant::now();
        let error = Database::open_with(
            "postgres://nebula:s3cret@127.0.0.1:9/nebula",
            1,
            Duration::from_secs(2),
        )
        .unwrap_err();
        assert!(error.is_unavailable(), "{error}");
        assert!(!error.to_string().contains("s3cret"), "{error}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    /// No connection within the connect timeout (here: the one connection is busy) is
    /// "unavailable" (503), reported by `ping` (`GET /readyz`), and ends when it frees up.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_connection_within_the_connect_timeout_is_unavailable_and_ping_says_so() {
        let tmp = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", tmp.path().join("nebula.db").display());
        let db = Database::open_async_with(&url, 1, Duration::from_millis(200))
            .await
            .unwrap();
        db.ping().await.unwrap();
        let (holding, held) = std::sync::mpsc::channel();
        let busy = {
            let db = db.clone();
            tokio::spawn(async move {
                db.read(move |_conn| {
                    let _ = holding.send(());
                    std::thread::sleep(Duration::from_millis(1500));
                    Ok(())
                })
                .await
            })
        };
        tokio::task::spawn_blocking(move || held.recv())
            .await
            .unwrap()
            .unwrap();
        let started = std::time::Instant::now();
        let error = db.ping().await.unwrap_err();
        assert!(matches!(error, StorageError::Unavailable(_)), "{error}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        busy.await.unwrap().unwrap();
        db.ping().await.unwrap();
    }

    #[test]
    fn the_data_directory_is_0700_and_every_database_file_0600() {
        let tmp = tempfile::tempdir().unwrap();
        let db_path = tmp.path().join("deep/data/nebula.db");
        let url = format!("sqlite://{}", db_path.display());
        let db = Database::open(&url, 2).unwrap();
        // A write, so that SQLite has created its -wal and -shm files.
        let mut conn = db.pool.get().unwrap();
        on_backend!(&mut *conn, c => diesel::sql_query("CREATE TABLE probe (x INTEGER)").execute(c))
            .unwrap();
        let dir = db_path.parent().unwrap();
        assert_eq!(mode(dir), 0o700, "{}", dir.display());
        for suffix in ["", "-wal", "-shm"] {
            let file = PathBuf::from(format!("{}{suffix}", db_path.display()));
            assert!(file.exists(), "{} missing", file.display());
            assert_eq!(mode(&file), 0o600, "{}", file.display());
        }
    }

    #[test]
    fn database_files_an_older_release_left_readable_are_made_private() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let db_path = tmp.path().join("nebula.db");
        let url = format!("sqlite://{}", db_path.display());
        let db = Database::open(&url, 1).unwrap();
        let mut conn = db.pool.get().unwrap();
        on_backend!(&mut *conn, c => diesel::sql_query("CREATE TABLE probe (x INTEGER)").execute(c))
            .unwrap();
        let wal = tmp.path().join("nebula.db-wal");
        // As an older release left them (and as the issue found them): 0644.
        for file in [&db_path, &wal] {
            std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        // A second open (the first still holds the -wal file open), as a restart would.
        Database::open(&url, 1).unwrap();
        assert_eq!(mode(&db_path), 0o600);
        assert_eq!(mode(&wal), 0o600);
        // The directory existed before (it may be the working directory): left as it was.
        assert_eq!(mode(tmp.path()), 0o755);
    }
}
