//! Start-up and shutdown: configuration, engine runtime, secrets, listener, signals.

use std::io::{BufRead, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use actix_web::HttpServer;
use clap::Parser;
use nebula_core::accounts::AccountStore;
use nebula_core::auth::{
    hash_password, load_or_generate_secret, Authenticator, RateLimits, Secret, SecretError,
    SecretOrigin, INSTALLER_TOKEN_ENV, MIN_PASSWORD_LEN, SESSION_SECRET_ENV,
};
use nebula_core::manager::ManagerSettings;
use nebula_core::storage::DatabaseLocation;
use nebula_core::{
    CoreHost, Database, EventBus, IdentityDirectory, LoadedConfig, NebulaConfig, NebulaCore,
};
use nebula_grpc::server::{serve_bound, BoundListener};
use nebula_grpc::{EndpointError, GrpcEndpoint, ServeOptions};

use crate::app::app;
use crate::cli::{Cli, Command};
use crate::external::{validate_endpoints, GrpcConnector};
use crate::state::AppState;

/// Exit code for a configuration that cannot be used.
const EXIT_CONFIG: u8 = 2;
/// How long requests in flight may take to finish after a stop signal.
const GRACEFUL_STOP: Duration = Duration::from_secs(15);

/// Parses the command line and runs it.
pub fn main_entry() -> ExitCode {
    let cli = Cli::parse();
    crate::logging::init_tracing();
    let loaded = match NebulaConfig::load(cli.config.as_deref()) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("nebula-server: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if let Err(message) = validate_endpoints(&loaded.config) {
        eprintln!(
            "nebula-server: invalid configuration (file {}): {message}",
            describe_config(loaded.file.as_deref())
        );
        return ExitCode::from(EXIT_CONFIG);
    }
    let runtime = match engine_runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("nebula-server: cannot start the engine runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match cli.command.unwrap_or(Command::Serve) {
        Command::CreateUser { username, staff } => match read_new_account(&username) {
            Ok((username, password)) => {
                runtime.block_on(create_user(&loaded.config, username, password, staff))
            }
            Err(message) => {
                eprintln!("nebula-server: {message}");
                ExitCode::FAILURE
            }
        },
        Command::Serve => serve(loaded, &runtime),
        Command::ServePlugin {
            name,
            listen,
            token_env,
            allow_remote,
        } => runtime.block_on(serve_plugin(
            &loaded.config,
            &name,
            &listen,
            token_env,
            allow_remote,
        )),
    };
    runtime.shutdown_timeout(Duration::from_secs(2));
    code
}

/// The engine (and every plugin call) runs on its own multi-threaded runtime, apart from the
/// single-threaded actix workers.
fn engine_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    // At least 4 workers: a plugin that wrongly blocks its thread holds a worker until it
    // returns, and the others must keep timers, the monitor and the other plugins going.
    let threads = std::thread::available_parallelism().map_or(4, |n| n.get().max(4));
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("nebula-engine")
        .enable_all()
        .build()
}

fn describe_config(file: Option<&Path>) -> String {
    match file {
        Some(path) => path.display().to_string(),
        None => "none (defaults)".to_owned(),
    }
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

fn serve(loaded: LoadedConfig, runtime: &tokio::runtime::Runtime) -> ExitCode {
    let LoadedConfig { config, file } = loaded;
    let data_dir = match DatabaseLocation::parse(&config.database.url) {
        Ok(location) => location.data_dir(),
        Err(e) => {
            eprintln!("nebula-server: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    // Already checked when the configuration was loaded; parsed once more to keep its value.
    let public_origin = match config.server.public_origin() {
        Ok(origin) => origin,
        Err(message) => {
            eprintln!("nebula-server: invalid configuration: {message}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let secrets =
        load_secret(INSTALLER_TOKEN_ENV, &data_dir.join("installer_token")).and_then(|token| {
            load_secret(SESSION_SECRET_ENV, &data_dir.join("session_secret"))
                .map(|key| (token, key))
        });
    let (token, session_key) = match secrets {
        Ok(s) => s,
        Err(e) => {
            eprintln!("nebula-server: {e}");
            // A weak secret is the operator's to fix, like a bad configuration.
            return match e {
                SecretError::TooShort { .. } => ExitCode::from(EXIT_CONFIG),
                SecretError::Io { .. } => ExitCode::FAILURE,
            };
        }
    };
    let builder = NebulaCore::builder()
        .config(config.clone())
        .config_file(file.clone())
        .external_connector(Arc::new(GrpcConnector));
    let core = match runtime.block_on(builder.build()) {
        Ok(core) => core,
        Err(e) => {
            eprintln!("nebula-server: {e}");
            return ExitCode::FAILURE;
        }
    };
    let auth = match Authenticator::new(
        Some(token),
        session_key,
        Duration::from_secs(config.auth.session_ttl_sec),
        AccountStore::new(core.database().clone()),
        RateLimits::default(),
    ) {
        Ok(auth) => auth,
        Err(e) => {
            eprintln!("nebula-server: {e}");
            return ExitCode::FAILURE;
        }
    };
    let state = AppState::new(
        core.clone(),
        auth,
        runtime.handle().clone(),
        config.server.cookie_secure,
    )
    .with_public_origin(public_origin);
    let served = actix_rt::System::new().block_on(run_http(state, &config, file.as_deref()));
    tracing::info!("stopping plugins");
    runtime.block_on(core.shutdown());
    match served {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("nebula-server: {e}");
            ExitCode::FAILURE
        }
    }
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

/// Reads and checks `create-user`'s input before any async work: the username (the shared
/// username rule, and no spaces in a login name) and the password, the first line of standard
/// input (blocking I/O, so never on a runtime worker).
fn read_new_account(username: &str) -> Result<(String, String), String> {
    let username = nebula_plugin_api::validate_username(username)
        .ok()
        .filter(|u| !u.chars().any(char::is_whitespace))
        .ok_or("username: expected 1 to 150 printable characters without spaces")?;
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("cannot read the password from standard input: {e}"))?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(format!(
            "password: at least {MIN_PASSWORD_LEN} characters, read from standard input"
        ));
    }
    Ok((username, password))
}

/// `create-user USERNAME [--staff]`: creates the account or sets its password.
async fn create_user(
    config: &NebulaConfig,
    username: String,
    password: String,
    staff: bool,
) -> ExitCode {
    let username = username.as_str();
    let db = match Database::open_async(&config.database.url, 1).await {
        Ok(db) => db,
        Err(e) => {
            eprintln!("nebula-server: {e}");
            return ExitCode::FAILURE;
        }
    };
    let hash = match tokio::task::spawn_blocking(move || hash_password(&password)).await {
        Ok(Ok(hash)) => hash,
        Ok(Err(e)) => {
            eprintln!("nebula-server: {e}");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("nebula-server: {e}");
            return ExitCode::FAILURE;
        }
    };
    match AccountStore::new(db).upsert(username, &hash, staff).await {
        Ok(outcome) => {
            println!(
                "{} {}user '{username}' in system.db",
                outcome.as_str(),
                if staff { "staff " } else { "" }
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("nebula-server: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `serve-plugin NAME --listen ENDPOINT`: one linked plugin as an external gRPC plugin. Its
/// context is backed by the configured database, so the same crate behaves the same in
/// process and out of process. The listen policy (a token on TCP, loopback unless
/// `--allow-remote`) is checked before anything is opened.
async fn serve_plugin(
    config: &NebulaConfig,
    name: &str,
    listen: &str,
    token_env: Option<String>,
    allow_remote: bool,
) -> ExitCode {
    let endpoint = match GrpcEndpoint::parse_listen(listen) {
        Ok(endpoint) => endpoint,
        Err(e) => {
            eprintln!("nebula-server: --listen: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if let Err(e) = endpoint.check_listen_policy(token_env.is_some(), allow_remote) {
        let hint = match e {
            EndpointError::ListenTokenRequired(_) => {
                "; pass --token-env VAR (callers send $VAR as x-nebula-token) or listen on unix:///path"
            }
            EndpointError::ListenRemoteRefused(_) => {
                "; listen on a loopback address, or pass --allow-remote"
            }
            _ => "",
        };
        eprintln!("nebula-server: --listen {listen}: {e}{hint}");
        return ExitCode::from(EXIT_CONFIG);
    }
    if !endpoint.is_loopback() {
        tracing::warn!(
            listen,
            "serving beyond loopback (--allow-remote): the traffic, token included, is unencrypted"
        );
    }
    let Some(registration) = nebula_plugin_api::registered_plugins()
        .find(|r| r.manifest().is_ok_and(|m| m.name == name))
    else {
        let linked: Vec<String> = nebula_plugin_api::registered_plugins()
            .filter_map(|r| r.manifest().ok().map(|m| m.name))
            .collect();
        eprintln!(
            "nebula-server: no plugin named '{name}' is linked into this binary (linked: {})",
            linked.join(", ")
        );
        return ExitCode::from(EXIT_CONFIG);
    };
    let manifest = match registration.manifest() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("nebula-server: {e}");
            return ExitCode::FAILURE;
        }
    };
    let db = match Database::open_async(&config.database.url, config.database.pool_size).await {
        Ok(db) => db,
        Err(e) => {
            eprintln!("nebula-server: {e}");
            return ExitCode::FAILURE;
        }
    };
    let host = CoreHost::new(IdentityDirectory::new(db.clone()), EventBus::new(db));
    let mut options = ServeOptions::new(name);
    options.host = Arc::new(host);
    // The same grants as in process: declared ∩ v1 ∩ plugins.grants.
    options.scopes = ManagerSettings::from_config(&config.plugins).effective_scopes(&manifest);
    options.max_message_bytes = config.server.max_body_bytes;
    options.call_timeout = Duration::from_secs_f64(config.plugins.max_timeout_sec);
    if let Some(var) = token_env {
        match std::env::var(&var) {
            Ok(token) if !token.is_empty() => options.token = Some(token),
            // Asked for a token but none is set: refuse rather than serve unauthenticated.
            _ => {
                eprintln!("nebula-server: --token-env {var}: the variable is unset or empty");
                return ExitCode::from(EXIT_CONFIG);
            }
        }
    }
    let listener = match BoundListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("nebula-server: cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "nebula-server serving plugin '{name}' on {}",
        listener.endpoint()
    );
    let _ = std::io::stdout().flush();
    match serve_bound((registration.factory())(), listener, options, stop_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nebula-server: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn stop_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}
