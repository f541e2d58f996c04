//! One database per test, on either backend: the backend matrix of the storage and engine
//! suites (`each_backend!`). Re-exported as `nebula_core::testing::TestDatabase`.
//!
//! SQLite always runs. PostgreSQL runs when `NEBULA_TEST_POSTGRES_URL` names a server on
//! which the role may create databases (`.ci/postgres.sh` starts one and prints the line to
//! export); each test then gets a database of its own, dropped when the test ends. Unset, the
//! PostgreSQL half of each test prints that it was skipped and passes; set but unreachable, it
//! fails: CI sets it, so CI really runs them.

use std::path::Path;

use crate::NebulaConfig;

/// The variable that enables the PostgreSQL half of the backend matrix.
pub const POSTGRES_URL_ENV: &str = "NEBULA_TEST_POSTGRES_URL";

/// A database made for one test: a SQLite file in a temporary directory, or a PostgreSQL
/// database created for it and dropped with it.
#[derive(Debug)]
pub struct TestDatabase {
    url: String,
    backend: &'static str,
    dir: tempfile::TempDir,
    /// Held for its `Drop`.
    #[cfg(feature = "postgres")]
    _dropper: Option<PostgresDropper>,
}

impl TestDatabase {
    /// A fresh SQLite database (`nebula.db` in a temporary directory).
    pub fn sqlite() -> std::io::Result<TestDatabase> {
        let dir = tempfile::tempdir()?;
        Ok(TestDatabase {
            url: format!("sqlite://{}", dir.path().join("nebula.db").display()),
            backend: "sqlite",
            dir,
            #[cfg(feature = "postgres")]
            _dropper: None,
        })
    }

    /// A fresh PostgreSQL database on the server `NEBULA_TEST_POSTGRES_URL` names; `Ok(None)`,
    /// with a note on stderr, when it is unset or this build has no PostgreSQL support.
    pub fn postgres() -> Result<Option<TestDatabase>, String> {
        let Ok(admin_url) = std::env::var(POSTGRES_URL_ENV) else {
            skipped(&format!(
                "{POSTGRES_URL_ENV} is not set \
                 (eval \"$(.ci/postgres.sh)\" starts a server and sets it)"
            ));
            return Ok(None);
        };
        Self::postgres_at(&admin_url)
    }

    #[cfg(not(feature = "postgres"))]
    fn postgres_at(_admin_url: &str) -> Result<Option<TestDatabase>, String> {
        Err(format!(
            "{POSTGRES_URL_ENV} is set but this build has no PostgreSQL support: build with \
             the `postgres` feature of nebula-core (cargo test --workspace enables it)"
        ))
    }

    #[cfg(feature = "postgres")]
    fn postgres_at(admin_url: &str) -> Result<Option<TestDatabase>, String> {
        use std::sync::atomic::{AtomicU32, Ordering};
        use std::time::Duration;

        use diesel::connection::SimpleConnection;
        use diesel::Connection;

        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "nebula_test_{}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            rand::random::<u32>()
        );
        // Bounded, so a wrong address fails each test in seconds, not after TCP's minutes.
        let admin_url = crate::storage::with_connect_timeout(admin_url, Duration::from_secs(5));
        let admin_url = admin_url.as_str();
        let mut admin = diesel::pg::PgConnection::establish(admin_url).map_err(|e| {
            format!("{POSTGRES_URL_ENV} is set but PostgreSQL cannot be reached: {e}")
        })?;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .map_err(|e| format!("CREATE DATABASE {name}: {e}"))?;
        Ok(Some(TestDatabase {
            url: with_database(admin_url, &name),
            backend: "postgres",
            dir: tempfile::tempdir().map_err(|e| e.to_string())?,
            _dropper: Some(PostgresDropper {
                admin_url: admin_url.to_owned(),
                name,
            }),
        }))
    }

    /// Its `database.url`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend(&self) -> &'static str {
        self.backend
    }

    /// For a PostgreSQL database: the server's URL as `NEBULA_TEST_POSTGRES_URL` gave it and
    /// this database's name (for a test that acts on the server, such as cutting the
    /// database's connections).
    pub fn postgres_admin(&self) -> Option<(&str, &str)> {
        #[cfg(feature = "postgres")]
        if let Some(dropper) = &self._dropper {
            return Some((&dropper.admin_url, &dropper.name));
        }
        None
    }

    /// A temporary directory that lives as long as the database, for the test's other files
    /// (and the SQLite file itself).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The default configuration on this database.
    pub fn config(&self) -> NebulaConfig {
        let mut config = NebulaConfig::default();
        config.database.url = self.url.clone();
        config
    }
}

/// Says once per test binary, on the terminal (not into the test's captured output, which
/// `cargo test` shows only for failures), that the PostgreSQL half of its tests was skipped.
fn skipped(why: &str) {
    use std::io::Write;
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = writeln!(
            std::io::stderr(),
            "note: PostgreSQL tests skipped (they pass without running): {why}"
        );
    });
}

/// Drops a test's PostgreSQL database when the test ends.
#[cfg(feature = "postgres")]
#[derive(Debug)]
struct PostgresDropper {
    admin_url: String,
    name: String,
}

#[cfg(feature = "postgres")]
impl Drop for PostgresDropper {
    fn drop(&mut self) {
        use diesel::connection::SimpleConnection;
        use diesel::Connection;
        // FORCE: pools of engines the test dropped may still hold connections.
        let dropped = diesel::pg::PgConnection::establish(&self.admin_url)
            .map_err(|e| e.to_string())
            .and_then(|mut admin| {
                admin
                    .batch_execute(&format!(
                        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                        self.name
                    ))
                    .map_err(|e| e.to_string())
            });
        if let Err(e) = dropped {
            eprintln!("could not drop the test database {}: {e}", self.name);
        }
    }
}

/// `url` with its database name replaced by `name`.
#[cfg(feature = "postgres")]
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_part = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{host_part}/{name}?{query}"),
        None => format!("{host_part}/{name}"),
    }
}

impl TestDatabase {
    /// [`TestDatabase::sqlite`] for `each_backend!`: panics (failing the test) on error.
    #[doc(hidden)]
    pub fn sqlite_for_test() -> TestDatabase {
        TestDatabase::sqlite().unwrap_or_else(|e| panic!("a temporary directory for SQLite: {e}"))
    }

    /// [`TestDatabase::postgres`] for `each_backend!`: panics (failing the test) when
    /// PostgreSQL was asked for and cannot be had.
    #[doc(hidden)]
    pub fn postgres_for_test() -> Option<TestDatabase> {
        TestDatabase::postgres().unwrap_or_else(|e| panic!("{e}"))
    }
}

/// Writes a test once and runs it on each backend: a module named after the test with one
/// test per backend, `sqlite` and `postgres` (the latter skipped, with a note, unless
/// `NEBULA_TEST_POSTGRES_URL` is set). The attributes (such as `#[tokio::test]` or
/// `#[test]`) apply to both; the function may be `async` or not.
///
/// ```ignore
/// nebula_core::each_backend! {
///     #[tokio::test]
///     async fn users_are_upserted(db) {
///         let core = NebulaCore::builder().config(db.config()).build().await.unwrap();
///         // …
///     }
/// }
/// ```
#[macro_export]
macro_rules! each_backend {
    () => {};
    ($(#[$meta:meta])* async fn $name:ident($db:ident) $body:block $($rest:tt)*) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run($db: &$crate::test_database::TestDatabase) $body

            $(#[$meta])*
            async fn sqlite() {
                run(&$crate::test_database::TestDatabase::sqlite_for_test()).await;
            }

            $(#[$meta])*
            async fn postgres() {
                if let Some(db) = $crate::test_database::TestDatabase::postgres_for_test() {
                    run(&db).await;
                }
            }
        }
        $crate::each_backend! { $($rest)* }
    };
    ($(#[$meta:meta])* fn $name:ident($db:ident) $body:block $($rest:tt)*) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn run($db: &$crate::test_database::TestDatabase) $body

            $(#[$meta])*
            fn sqlite() {
                run(&$crate::test_database::TestDatabase::sqlite_for_test());
            }

            $(#[$meta])*
            fn postgres() {
                if let Some(db) = $crate::test_database::TestDatabase::postgres_for_test() {
                    run(&db);
                }
            }
        }
        $crate::each_backend! { $($rest)* }
    };
}

#[cfg(all(test, feature = "postgres"))]
mod tests {
    use super::with_database;

    #[test]
    fn the_database_name_is_replaced_and_the_parameters_kept() {
        assert_eq!(
            with_database("postgres://u@h:1/postgres", "t1"),
            "postgres://u@h:1/t1"
        );
        assert_eq!(
            with_database("postgres://u:p@h/postgres?sslmode=disable", "t1"),
            "postgres://u:p@h/t1?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "t1"), "postgres://h/t1");
    }
}
