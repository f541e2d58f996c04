//! `nebula-server`: runs Nebula Core. The HTTP API arrives with its own issue; for now the
//! binary loads the configuration, opens the database, starts the plugins and waits for a
//! signal.

// Plugin crates register through `inventory` and are linked only when referenced.
use sample_sync as _;

use std::process::ExitCode;

use nebula_core::{NebulaConfig, NebulaCore};

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let loaded = match NebulaConfig::load(None) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("nebula-server: {e}");
            return ExitCode::from(2);
        }
    };
    let core = match NebulaCore::builder().config(loaded.config).build().await {
        Ok(core) => core,
        Err(e) => {
            eprintln!("nebula-server: {e}");
            return ExitCode::FAILURE;
        }
    };
    for plugin in core.plugins().list() {
        tracing::info!(plugin = %plugin.name, status = %plugin.status, "plugin loaded");
    }
    if let Err(e) = tokio::signal::ctrl_c().await {
        tracing::error!(error = %e, "cannot wait for a signal");
    }
    core.shutdown().await;
    ExitCode::SUCCESS
}
