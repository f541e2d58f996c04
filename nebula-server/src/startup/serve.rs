//! `serve`: secrets, the engine, the HTTP server, and shutdown on a stop signal.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use actix_web::HttpServer;
use nebula_core::accounts::AccountStore;
use nebula_core::auth::{
    load_or_generate_secret, Authenticator, RateLimits, Secret, SecretError, SecretOrigin,
    INSTALLER_TOKEN_ENV, SESSION_SECRET_ENV,
};
use nebula_core::storage::DatabaseLocation;
use nebula_core::{LoadedConfig, NebulaConfig, NebulaCore};

use super::{describe_config, StartupError};
use crate::app::app;
use crate::external::GrpcConnector;
use crate::process::ProcessRuntime;
use crate::state::AppState;

/// How long requests in flight may take to finish after a stop signal.
const GRACEFUL_STOP: Duration = Duration::from_secs(15);

/// Runs the server until SIGINT or SIGTERM, then shuts the plugins down.
pub(super) fn serve(
    loaded: LoadedConfig,
    runtime: &tokio::runtime::Runtime,
) -> Result<(), StartupError> {
    let LoadedConfig { config, file } = loaded;
    crate::linked::log_linked_plugins();
    let data_dir = DatabaseLocation::parse(&config.database.url)
        .map_err(StartupError::DatabaseUrl)?
        .data_dir();
    // Already checked when the configuration was loaded; parsed once more to keep its value.
    let public_origin = config
        .server
        .public_origin()
        .map_err(StartupError::PublicOrigin)?;
    // A weak secret is the operator's to fix, like a bad configuration (exit code 2).
    let token = load_secret(INSTALLER_TOKEN_ENV, &data_dir.join("installer_token"))?;
    let session_key = load_secret(SESSION_SECRET_ENV, &data_dir.join("session_secret"))?;
    // This server's own files (several servers may share the data directory's database and
    // secrets): the host service's socket and the process plugins' run directory.
    let runtime_dir = config
        .server
        .runtime_dir
        .clone()
        .unwrap_or_else(|| data_dir.clone());
    // Served before the engine is built: plugins may call back while they start.
    let host_service = runtime.block_on(super::host_service::start(&config, &runtime_dir))?;
    let run_dir = process_run_dir(&runtime_dir)?;
    let builder = NebulaCore::builder()
        .config(config.clone())
        .config_file(file.clone())
        .external_connector(Arc::new(GrpcConnector))
        .process_connector(Arc::new(ProcessRuntime::new(run_dir)))
        .host_service(host_service.link.clone());
    let core = runtime.block_on(builder.build())?;
    let auth = Authenticator::new(
        Some(token),
        session_key,
        Duration::from_secs(config.auth.session_ttl_sec),
        AccountStore::new(core.database().clone()),
        RateLimits::default(),
    )?;
    let state = AppState::new(
        core.clone(),
        auth,
        runtime.handle().clone(),
        config.server.cookie_secure,
    )
    .with_public_origin(public_origin)
    .with_metrics_public(config.server.metrics_public);
    let served = actix_rt::System::new().block_on(run_http(state, &config, file.as_deref()));
    tracing::info!("stopping plugins");
    runtime.block_on(async {
        core.shutdown().await;
        host_service.stop().await;
    });
    served.map_err(StartupError::Http)?;
    tracing::info!("stopped");
    Ok(())
}

/// `<runtime dir>/run` (0700): the process plugins' sockets and pid files. Process groups a
/// previous server left there (it was killed before it could stop them) are ended first.
fn process_run_dir(runtime_dir: &Path) -> Result<std::path::PathBuf, StartupError> {
    let run_dir = runtime_dir.join("run");
    nebula_core::storage::create_private_dir(&run_dir)
        .map_err(|e| StartupError::RunDir(format!("{}: {e}", run_dir.display())))?;
    for done in nebula_process::reap_leftovers(&run_dir) {
        tracing::warn!("{done}");
    }
    Ok(run_dir)
}

fn load_secret(env_name: &str, file: &Path) -> Result<Secret, SecretError> {
    let (secret, origin) = load_or_generate_secret(env_name, std::env::var(env_name).ok(), file)?;
    match origin {
        SecretOrigin::Environment(name) => tracing::info!("{env_name} taken from ${name}"),
        SecretOrigin::File(path) => {
            tracing::info!(
                "{env_name} unset: using the one stored in {}",
                path.display()
            )
        }
        SecretOrigin::Generated(path) => tracing::info!(
            "{env_name} unset: generated one and stored it in {} (mode 0600)",
            path.display()
        ),
    }
    Ok(secret)
}

async fn run_http(
    state: AppState,
    config: &NebulaConfig,
    file: Option<&Path>,
) -> std::io::Result<()> {
    let max_body = config.server.max_body_bytes;
    let server = HttpServer::new(move || app(state.clone(), max_body))
        .workers(2)
        .shutdown_timeout(GRACEFUL_STOP.as_secs())
        .client_request_timeout(Duration::from_secs(10))
        .client_disconnect_timeout(Duration::from_secs(5))
        .keep_alive(Duration::from_secs(30))
        .bind(&config.server.bind)
        .map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot bind {}: {e}", config.server.bind))
        })?;
    let addr = server
        .addrs()
        .first()
        .map_or_else(|| config.server.bind.clone(), |a| a.to_string());
    // The one start-up line, on stdout, so scripts (and the tests) can read the address.
    println!(
        "nebula-server listening on http://{addr} (config: {})",
        describe_config(file)
    );
    let _ = std::io::stdout().flush();
    server.run().await
}
