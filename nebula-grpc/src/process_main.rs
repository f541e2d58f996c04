//! The plugin's side of the process runtime (SPEC §9): [`run_process_plugin`], the whole
//! `main` of a plugin crate's process binary.
//!
//! ```no_run
//! # mod my_crate {
//! #     pub fn create_plugin() -> Box<dyn nebula_plugin_api::Plugin> { unimplemented!() }
//! # }
//! use std::process::ExitCode;
//!
//! fn main() -> ExitCode {
//!     nebula_grpc::run_process_plugin(my_crate::create_plugin())
//! }
//! ```
//!
//! The core starts the binary with the variables below and talks to it over the unix socket
//! it names; the plugin's context is the core's host service (`NEBULA_HOST_ENDPOINT`,
//! `NEBULA_HOST_TOKEN`, read by the serve helper's [`HostSource::Discover`]).

use std::process::ExitCode;
use std::time::Duration;

use nebula_plugin_api::Plugin;

use crate::host_service::bind_private_socket;
use crate::server::{serve_bound, HostSource, ServeError, ServeOptions};

/// The plugin's name (required).
pub const PLUGIN_NAME_ENV: &str = "NEBULA_PLUGIN_NAME";
/// The absolute path of the unix socket to serve `nebula.plugin.v1.PluginService` on
/// (required).
pub const PLUGIN_SOCKET_ENV: &str = "NEBULA_PLUGIN_SOCKET";
/// The token every call must carry as `x-nebula-token` (required, non-empty).
pub const PLUGIN_TOKEN_ENV: &str = "NEBULA_PLUGIN_TOKEN";
/// The largest message either way, in bytes (optional; default 8 MiB). The core sends its
/// own limit (`server.max_body_bytes`) so both sides agree (SPEC §6).
pub const PLUGIN_MAX_MESSAGE_BYTES_ENV: &str = "NEBULA_PLUGIN_MAX_MESSAGE_BYTES";
/// The bound on each plugin call and host service call, in milliseconds (optional; default
/// 30 s). The core sends its call timeout.
pub const PLUGIN_CALL_TIMEOUT_MS_ENV: &str = "NEBULA_PLUGIN_CALL_TIMEOUT_MS";

/// Exit code of a process started without its required variables (or with bad ones).
const USAGE_EXIT: u8 = 2;

/// What the environment of a process plugin is missing or has wrong.
#[derive(Debug, thiserror::Error)]
pub enum ProcessEnvError {
    /// A required variable is unset or empty.
    #[error("{0} is not set: this program is a Nebula Core process plugin, started by the core")]
    Missing(&'static str),
    /// A variable is not valid.
    #[error("{var}={value:?}: {reason}")]
    Invalid {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
        /// What is wrong.
        reason: &'static str,
    },
}

/// The settings the core hands a process plugin through its environment. Its `Debug` never
/// shows the token.
#[derive(Clone)]
pub struct ProcessEnv {
    /// `NEBULA_PLUGIN_NAME`.
    pub name: String,
    /// `NEBULA_PLUGIN_SOCKET`.
    pub socket: std::path::PathBuf,
    /// `NEBULA_PLUGIN_TOKEN`.
    pub token: String,
    /// `NEBULA_PLUGIN_MAX_MESSAGE_BYTES`, when set.
    pub max_message_bytes: Option<usize>,
    /// `NEBULA_PLUGIN_CALL_TIMEOUT_MS`, when set.
    pub call_timeout: Option<Duration>,
}

impl std::fmt::Debug for ProcessEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessEnv")
            .field("name", &self.name)
            .field("socket", &self.socket)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("call_timeout", &self.call_timeout)
            .finish_non_exhaustive()
    }
}

impl ProcessEnv {
    /// Reads the variables of this process.
    pub fn from_env() -> Result<Self, ProcessEnvError> {
        Self::from_lookup(|var| std::env::var(var).ok())
    }

    /// Reads the variables through `lookup` (tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ProcessEnvError> {
        let required = |var: &'static str| {
            lookup(var)
                .filter(|v| !v.is_empty())
                .ok_or(ProcessEnvError::Missing(var))
        };
        let number = |var: &'static str| -> Result<Option<u64>, ProcessEnvError> {
            match lookup(var).filter(|v| !v.is_empty()) {
                None => Ok(None),
                Some(value) => match value.parse::<u64>() {
                    Ok(n) if n > 0 => Ok(Some(n)),
                    _ => Err(ProcessEnvError::Invalid {
                        var,
                        value,
                        reason: "expected a positive whole number",
                    }),
                },
            }
        };
        let name = required(PLUGIN_NAME_ENV)?;
        let socket = std::path::PathBuf::from(required(PLUGIN_SOCKET_ENV)?);
        if !socket.is_absolute() {
            return Err(ProcessEnvError::Invalid {
                var: PLUGIN_SOCKET_ENV,
                value: socket.display().to_string(),
                reason: "expected an absolute path",
            });
        }
        let token = required(PLUGIN_TOKEN_ENV)?;
        let max_message_bytes =
            number(PLUGIN_MAX_MESSAGE_BYTES_ENV)?.map(|n| usize::try_from(n).unwrap_or(usize::MAX));
        let call_timeout = number(PLUGIN_CALL_TIMEOUT_MS_ENV)?.map(Duration::from_millis);
        Ok(ProcessEnv {
            name,
            socket,
            token,
            max_message_bytes,
            call_timeout,
        })
    }

    /// The serve helper's options: the name, the token required, the host discovered (from
    /// `NEBULA_HOST_ENDPOINT`/`NEBULA_HOST_TOKEN`, else the calls' metadata), the limits.
    pub fn serve_options(&self) -> ServeOptions {
        let mut options = ServeOptions::new(self.name.as_str());
        options.token = Some(self.token.clone());
        options.host = HostSource::Discover;
        if let Some(bytes) = self.max_message_bytes {
            options.max_message_bytes = bytes;
        }
        if let Some(timeout) = self.call_timeout {
            options.call_timeout = timeout;
        }
        options
    }
}

/// Serves `plugin` as a process plugin: reads [`ProcessEnv`] (a missing variable: a message
/// on stderr and exit code 2), builds a tokio runtime, binds `NEBULA_PLUGIN_SOCKET` (mode
/// 0600; a stale socket is replaced), serves `nebula.plugin.v1.PluginService` requiring
/// `NEBULA_PLUGIN_TOKEN`, and stops on SIGTERM or SIGINT (then runs the plugin's
/// `shutdown`). Exit code 0 after a clean stop, 1 when serving failed (the reason on
/// stderr, where the core reads it).
///
/// The runtime has two worker threads: a plugin's calls are mostly waiting, and a process
/// limited by `RLIMIT_NPROC` must not spend its budget on idle workers. Heavy CPU work
/// belongs on `tokio::task::spawn_blocking`.
pub fn run_process_plugin(plugin: Box<dyn Plugin>) -> ExitCode {
    let env = match ProcessEnv::from_env() {
        Ok(env) => env,
        Err(e) => {
            eprintln!("{}: {e}", program_name());
            return ExitCode::from(USAGE_EXIT);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("plugin '{}': cannot start the tokio runtime: {e}", env.name);
            return ExitCode::FAILURE;
        }
    };
    let served = runtime.block_on(serve_process(plugin, &env, stop_signal()));
    // A blocking task the plugin left running must not keep the process alive.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("plugin '{}': {e}", env.name);
            ExitCode::FAILURE
        }
    }
}

/// Binds the socket in `env` and serves `plugin` on it until `shutdown` resolves.
pub async fn serve_process<F>(
    plugin: Box<dyn Plugin>,
    env: &ProcessEnv,
    shutdown: F,
) -> Result<(), ServeError>
where
    F: std::future::Future<Output = ()> + Send,
{
    let listener = bind_private_socket(&env.socket).await?;
    serve_bound(plugin, listener, env.serve_options(), shutdown).await
}

/// Resolves on SIGTERM (the core's stop, a service manager's) or SIGINT: the end of a served
/// plugin, in a process plugin and in `serve-plugin` alike.
pub async fn stop_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            // Without a SIGTERM handler the default action (exit) still stops the process.
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

fn program_name() -> String {
    std::env::args()
        .next()
        .and_then(|p| {
            std::path::Path::new(&p)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "plugin".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> Result<ProcessEnv, ProcessEnvError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ProcessEnv::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn the_three_variables_are_required() {
        let full = [
            (PLUGIN_NAME_ENV, "p"),
            (PLUGIN_SOCKET_ENV, "/run/p.sock"),
            (PLUGIN_TOKEN_ENV, "t"),
        ];
        let ok = env(&full).unwrap();
        assert_eq!(ok.name, "p");
        assert_eq!(ok.max_message_bytes, None);
        let options = ok.serve_options();
        assert_eq!(options.token.as_deref(), Some("t"));
        assert!(matches!(options.host, HostSource::Discover));
        for missing in 0..3 {
            let mut pairs = full.to_vec();
            pairs[missing].1 = "";
            assert!(
                matches!(env(&pairs), Err(ProcessEnvError::Missing(v)) if v == full[missing].0)
            );
        }
        let relative = [full[0], (PLUGIN_SOCKET_ENV, "p.sock"), full[2]];
        assert!(matches!(
            env(&relative),
            Err(ProcessEnvError::Invalid { .. })
        ));
    }

    #[test]
    fn the_core_limits_are_applied() {
        let pairs = [
            (PLUGIN_NAME_ENV, "p"),
            (PLUGIN_SOCKET_ENV, "/run/p.sock"),
            (PLUGIN_TOKEN_ENV, "t"),
            (PLUGIN_MAX_MESSAGE_BYTES_ENV, "20000000"),
            (PLUGIN_CALL_TIMEOUT_MS_ENV, "1500"),
        ];
        let options = env(&pairs).unwrap().serve_options();
        assert_eq!(options.max_message_bytes, 20_000_000);
        assert_eq!(options.call_timeout, Duration::from_millis(1500));
        let bad = [
            pairs[0],
            pairs[1],
            pairs[2],
            (PLUGIN_CALL_TIMEOUT_MS_ENV, "soon"),
        ];
        assert!(matches!(env(&bad), Err(ProcessEnvError::Invalid { .. })));
    }
}
