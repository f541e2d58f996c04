//! Shared set-up for the engine tests: a temporary SQLite file and a fast-timeout config.

#![allow(dead_code)]

use std::path::Path;

use nebula_core::{NebulaConfig, NebulaCore};

/// A config on a SQLite file inside `dir`, with a 1 s call timeout.
pub fn config_in(dir: &Path) -> NebulaConfig {
    let mut config = NebulaConfig::default();
    config.database.url = format!("sqlite://{}", dir.join("nebula.db").display());
    config.plugins.init_timeout_sec = 1.0;
    config.plugins.call_timeout_sec = 1.0;
    config
}

/// An engine on `dir` with every linked plugin.
pub async fn engine(dir: &Path) -> NebulaCore {
    NebulaCore::builder()
        .config(config_in(dir))
        .build()
        .await
        .expect("engine builds")
}
