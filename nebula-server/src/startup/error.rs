//! Every way start-up can fail, as one type that knows its exit code.

use std::process::ExitCode;

use nebula_core::auth::{AuthError, PasswordError, SecretError, MIN_PASSWORD_LEN};
use nebula_core::{ConfigError, CoreError, StorageError};
use nebula_grpc::server::ServeError;
use nebula_grpc::EndpointError;

/// Exit code for a configuration that cannot be used (the operator's to fix).
pub const EXIT_CONFIG: u8 = 2;
/// Exit code for every other failure.
pub const EXIT_FAILURE: u8 = 1;

/// Why `nebula-server` could not start (or stopped with an error). [`main_entry`] prints it
/// once, as `nebula-server: <message>` on standard error, and exits with
/// [`StartupError::exit_code`].
///
/// [`main_entry`]: super::main_entry
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The configuration file or an override is invalid (it names the key and the file).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// An external plugin's endpoint is malformed.
    #[error("invalid configuration (file {file}): {message}")]
    Endpoints {
        /// The configuration file, or "none (defaults)".
        file: String,
        /// What is wrong.
        message: String,
    },
    /// The log filter (`log.filter` or `RUST_LOG`) does not parse.
    #[error("invalid configuration (file {file}): {message}")]
    Log {
        /// The configuration file, or "none (defaults)".
        file: String,
        /// What is wrong, naming the key or the variable.
        message: String,
    },
    /// `database.url` cannot be used.
    #[error(transparent)]
    DatabaseUrl(StorageError),
    /// `server.public_origin` is invalid.
    #[error("invalid configuration: {0}")]
    PublicOrigin(String),
    /// The installer token or the session secret is too weak (a configuration problem), or its
    /// file cannot be read or created.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The engine runtime could not be started.
    #[error("cannot start the engine runtime: {0}")]
    Runtime(std::io::Error),
    /// The engine could not be built.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// The authenticator could not be built.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The process plugins' run directory (`<data dir>/run`) could not be made.
    #[error("cannot prepare the process plugins' directory: {0}")]
    RunDir(String),
    /// The host service could not be served (its socket or `plugins.host_service.bind`).
    #[error("cannot serve the host service: {0}")]
    HostService(String),
    /// The HTTP server could not bind, or failed while serving.
    #[error(transparent)]
    Http(std::io::Error),
    /// The database could not be opened or written (`create-user`, `serve-plugin`).
    #[error(transparent)]
    Database(StorageError),
    /// `create-user`: the username breaks the rule.
    #[error("username: expected 1 to 150 printable characters without spaces")]
    InvalidUsername,
    /// `create-user`: standard input could not be read.
    #[error("cannot read the password from standard input: {0}")]
    PasswordUnreadable(std::io::Error),
    /// `create-user`: the password is too short.
    #[error(
        "password: at least {} characters, read from standard input",
        MIN_PASSWORD_LEN
    )]
    PasswordTooShort,
    /// `create-user`: hashing the password failed.
    #[error(transparent)]
    Hashing(#[from] PasswordError),
    /// `create-user`: the hashing task failed.
    #[error(transparent)]
    HashingTask(#[from] tokio::task::JoinError),
    /// `serve-plugin`: `--listen` is malformed.
    #[error("--listen: {0}")]
    ListenEndpoint(EndpointError),
    /// `serve-plugin`: `--listen` breaks the listen policy (a token on TCP, loopback unless
    /// `--allow-remote`).
    #[error("--listen {listen}: {error}{}", listen_hint(.error))]
    ListenPolicy {
        /// The endpoint as given.
        listen: String,
        /// The rule it breaks.
        error: EndpointError,
    },
    /// `serve-plugin`: no linked plugin has this name.
    #[error(
        "no plugin named '{name}' is linked into this binary (linked: {})",
        .linked.join(", ")
    )]
    PluginNotLinked {
        /// The name asked for.
        name: String,
        /// The names of the linked plugins.
        linked: Vec<String>,
    },
    /// `serve-plugin`: `--token-env` names a variable that is unset or empty.
    #[error("--token-env {0}: the variable is unset or empty")]
    TokenEnvUnset(String),
    /// `serve-plugin`: the endpoint could not be bound.
    #[error("cannot listen on {listen}: {error}")]
    Listen {
        /// The endpoint as given.
        listen: String,
        /// Why.
        error: ServeError,
    },
    /// `serve-plugin`: serving failed.
    #[error(transparent)]
    Serve(ServeError),
}

impl StartupError {
    /// Whether the operator must fix the configuration (file, environment, secrets or
    /// arguments) before trying again.
    pub fn is_configuration(&self) -> bool {
        matches!(
            self,
            StartupError::Config(_)
                | StartupError::Endpoints { .. }
                | StartupError::Log { .. }
                | StartupError::DatabaseUrl(_)
                | StartupError::PublicOrigin(_)
                | StartupError::Secret(SecretError::TooShort { .. })
                | StartupError::ListenEndpoint(_)
                | StartupError::ListenPolicy { .. }
                | StartupError::PluginNotLinked { .. }
                | StartupError::TokenEnvUnset(_)
        )
    }

    /// [`EXIT_CONFIG`] (2) for a configuration problem, [`EXIT_FAILURE`] (1) otherwise.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(if self.is_configuration() {
            EXIT_CONFIG
        } else {
            EXIT_FAILURE
        })
    }
}

/// What to do about a broken listen policy.
fn listen_hint(error: &EndpointError) -> &'static str {
    match error {
        EndpointError::ListenTokenRequired(_) => {
            "; pass --token-env VAR (callers send $VAR as x-nebula-token) or listen on unix:///path"
        }
        EndpointError::ListenRemoteRefused(_) => {
            "; listen on a loopback address, or pass --allow-remote"
        }
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_problems_exit_with_2_the_rest_with_1() {
        let weak = StartupError::from(SecretError::TooShort {
            origin: "$NEBULA_INSTALLER_TOKEN".into(),
            len: 3,
        });
        assert!(weak.is_configuration());
        assert!(StartupError::PublicOrigin("no".into()).is_configuration());
        assert!(StartupError::TokenEnvUnset("T".into()).is_configuration());
        assert!(!StartupError::InvalidUsername.is_configuration());
        assert!(!StartupError::Runtime(std::io::Error::other("x")).is_configuration());
        assert_eq!(
            StartupError::PasswordTooShort.to_string(),
            format!("password: at least {MIN_PASSWORD_LEN} characters, read from standard input")
        );
    }

    #[test]
    fn a_broken_listen_policy_says_what_to_do() {
        let e = StartupError::ListenPolicy {
            listen: "127.0.0.1:1".into(),
            error: EndpointError::ListenTokenRequired("127.0.0.1:1".into()),
        };
        let text = e.to_string();
        assert!(
            text.starts_with("--listen 127.0.0.1:1: listening on TCP"),
            "{text}"
        );
        assert!(text.ends_with("or listen on unix:///path"), "{text}");
        assert!(e.is_configuration());
    }
}
