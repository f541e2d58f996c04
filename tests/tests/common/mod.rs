//! Shared set-up for the engine tests: a fast-timeout config on a test database (each backend
//! through `nebula_core::each_backend!`, or a SQLite file in a directory).

#![allow(dead_code)]

use std::path::Path;

use nebula_core::testing::TestDatabase;
use nebula_core::{NebulaConfig, NebulaCore};

/// A config on `db`, with a 1 s call timeout.
pub fn config_on(db: &TestDatabase) -> NebulaConfig {
    fast(db.config())
}

/// An engine on `db` with every linked plugin.
pub async fn engine_on(db: &TestDatabase) -> NebulaCore {
    NebulaCore::builder()
        .config(config_on(db))
        .build()
        .await
        .expect("engine builds")
}

/// A config on a SQLite file inside `dir`, with a 1 s call timeout (for the tests that run on
/// SQLite only: see each file's header).
pub fn config_in(dir: &Path) -> NebulaConfig {
    let mut config = NebulaConfig::default();
    config.database.url = format!("sqlite://{}", dir.join("nebula.db").display());
    fast(config)
}

fn fast(mut config: NebulaConfig) -> NebulaConfig {
    config.plugins.init_timeout_sec = 1.0;
    config.plugins.call_timeout_sec = 1.0;
    config
}
