//! Start-up and shutdown: configuration, engine runtime, then one command, each in its own
//! file: `serve` (`serve.rs`), `create-user` (`create_user.rs`) or `serve-plugin`
//! (`serve_plugin.rs`).
//! Every way they fail is a [`StartupError`], printed once by [`main_entry`], which exits with
//! the error's code (2 for a configuration the operator must fix, 1 otherwise).

mod create_user;
mod error;
mod host_service;
mod serve;
mod serve_plugin;

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use nebula_core::NebulaConfig;

pub use error::{StartupError, EXIT_CONFIG, EXIT_FAILURE};

use crate::cli::{Cli, Command};
use crate::external::validate_endpoints;

/// Parses the command line and runs it; a failure is printed once, as
/// `nebula-server: <message>` on standard error, and becomes the exit code.
pub fn main_entry() -> ExitCode {
    crate::memory::tune_allocator();
    let cli = Cli::parse();
    // Needs no configuration, no database and no log.
    if matches!(cli.command, Some(Command::Openapi)) {
        print!("{}", crate::openapi::document_json());
        return ExitCode::SUCCESS;
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nebula-server: {e}");
            e.exit_code()
        }
    }
}

/// Loads and checks the configuration, starts the engine runtime and runs the command.
fn run(cli: Cli) -> Result<(), StartupError> {
    let loaded = NebulaConfig::load(cli.config.as_deref())?;
    crate::logging::init_tracing(&loaded.config.log).map_err(|message| StartupError::Log {
        file: describe_config(loaded.file.as_deref()),
        message,
    })?;
    validate_endpoints(&loaded.config).map_err(|message| StartupError::Endpoints {
        file: describe_config(loaded.file.as_deref()),
        message,
    })?;
    let runtime = engine_runtime().map_err(StartupError::Runtime)?;
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::CreateUser { username, staff } => create_user::read_new_account(&username)
            .and_then(|(username, password)| {
                runtime.block_on(create_user::create_user(
                    &loaded.config,
                    username,
                    password,
                    staff,
                ))
            }),
        Command::Serve => serve::serve(loaded, &runtime),
        Command::Openapi => {
            print!("{}", crate::openapi::document_json());
            Ok(())
        }
        Command::ServePlugin {
            name,
            listen,
            token_env,
            allow_remote,
        } => runtime.block_on(serve_plugin::serve_plugin(
            &loaded.config,
            &name,
            &listen,
            token_env,
            allow_remote,
        )),
    };
    runtime.shutdown_timeout(Duration::from_secs(2));
    result
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

/// The configuration file for messages: its path, or "none (defaults)".
fn describe_config(file: Option<&Path>) -> String {
    match file {
        Some(path) => path.display().to_string(),
        None => "none (defaults)".to_owned(),
    }
}
