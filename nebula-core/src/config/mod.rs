//! Configuration: a TOML file plus `NEBULA__<SECTION>__<KEY>` environment overrides.
//!
//! Every key has a default, so no file and no environment is a working configuration (SQLite
//! under `data/`). Unknown keys and wrong types are errors that name the key and the file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The file read when no `--config` or `NEBULA_CONFIG` is given, if it exists.
pub const DEFAULT_CONFIG_FILE: &str = "nebula.toml";
/// Prefix of environment overrides (`NEBULA__SERVER__BIND`).
pub const ENV_PREFIX: &str = "NEBULA";

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file (or an override) could not be read or does not fit the schema.
    #[error("invalid configuration ({origin}): {message}")]
    Invalid {
        /// The file, or "defaults and environment".
        origin: String,
        /// What is wrong, naming the key.
        message: String,
    },
}

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NebulaConfig {
    /// `[server]`.
    pub server: ServerConfig,
    /// `[database]`.
    pub database: DatabaseConfig,
    /// `[plugins]`.
    pub plugins: PluginsConfig,
    /// `[auth]`.
    pub auth: AuthConfig,
    /// `[log]`.
    pub log: LogConfig,
}

/// `[log]`: the process log (standard error).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (one readable line per event) or `json` (one JSON object per line).
    pub format: LogFormat,
    /// Which events to write, in `RUST_LOG`'s syntax (`info`, `nebula_core=debug,info`); the
    /// `RUST_LOG` environment variable, when set, wins.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            filter: "info".into(),
        }
    }
}

/// `log.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines; coloured only when standard error is a terminal.
    #[default]
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

/// `[server]`: the HTTP listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on.
    pub bind: String,
    /// Largest accepted request body; also the gRPC message limit.
    pub max_body_bytes: usize,
    /// Mark the session cookie `Secure` (behind HTTPS).
    pub cookie_secure: bool,
    /// The origin browsers use to reach the server (`scheme://host[:port]`), against which
    /// cookie-authenticated state changes are checked; `None`: `http://` + the `Host` each
    /// request was sent to. See [`ServerConfig::public_origin`].
    pub public_origin: Option<String>,
    /// Where this server keeps its own files: the host service's socket and the process
    /// plugins' `run/` directory. Default: the data directory. Several servers on one
    /// database each need their own (the secrets stay shared, beside the database file).
    pub runtime_dir: Option<std::path::PathBuf>,
    /// Serve `GET /metrics` without credentials (for a Prometheus that cannot send the
    /// installer token). Default: the same credentials as `/system/`.
    pub metrics_public: bool,
}

impl ServerConfig {
    /// `public_origin` parsed and normalised; the error names the key.
    pub fn public_origin(&self) -> Result<Option<crate::auth::WebOrigin>, String> {
        self.public_origin
            .as_deref()
            .map(crate::auth::WebOrigin::parse)
            .transpose()
            .map_err(|e| format!("server.public_origin: {e}"))
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind: "127.0.0.1:8000".into(),
            max_body_bytes: 8 * 1024 * 1024,
            cookie_secure: false,
            public_origin: None,
            runtime_dir: None,
            metrics_public: false,
        }
    }
}

/// `[database]`.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://RELATIVE/PATH`, `sqlite:///ABSOLUTE/PATH`, or `postgres://…` (feature
    /// `postgres`).
    pub url: String,
    /// Connections in the pool.
    pub pool_size: u32,
    /// How long a request waits for a connection (the pool is busy, or the database is
    /// unreachable) before it fails with `503`, seconds.
    pub connect_timeout_sec: f64,
}

/// The URL's password, if any, never shows.
impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &crate::storage::redact_url(&self.url))
            .field("pool_size", &self.pool_size)
            .field("connect_timeout_sec", &self.connect_timeout_sec)
            .finish()
    }
}

impl DatabaseConfig {
    /// The bound on waiting for a connection.
    pub fn connect_timeout(&self) -> Duration {
        secs(self.connect_timeout_sec)
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: "sqlite://data/nebula.db".into(),
            pool_size: 8,
            connect_timeout_sec: 30.0,
        }
    }
}

/// `[plugins]`: discovery, timeouts and the lifecycle thresholds.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginsConfig {
    /// When false, no plugin is loaded (the API still answers, with an empty list).
    pub enabled: bool,
    /// Bound on `initialize`, seconds (fractions allowed).
    pub init_timeout_sec: f64,
    /// Bound on `health`, `sync_users` and `shutdown`, seconds; clamped to `max_timeout_sec`.
    pub call_timeout_sec: f64,
    /// Upper bound for every plugin timeout, seconds.
    pub max_timeout_sec: f64,
    /// Period of the health monitor, seconds.
    pub health_interval_sec: f64,
    /// How often each instance re-reads the enabled flags other instances may have changed
    /// (several servers on one database, SPEC §4), seconds.
    pub state_poll_sec: f64,
    /// Consecutive timeouts that make a plugin unresponsive.
    pub timeout_restart_threshold: u32,
    /// Consecutive failed health checks that trigger a restart.
    pub health_restart_threshold: u32,
    /// Restarts before the plugin is disabled.
    pub max_restarts: u32,
    /// Consecutive crashes before the plugin is disabled.
    pub max_crashes: u32,
    /// Allow gRPC endpoints outside loopback (and a host service bound beyond it).
    pub allow_remote_grpc: bool,
    /// Where the host service (SPEC §8) listens besides its unix socket in the data directory.
    pub host_service: HostServiceConfig,
    /// The plugins directory (SPEC §9): each `<dir>/<name>/plugin.json` with a `runtime`
    /// section is a process plugin. None (the default): no process plugins.
    pub dir: Option<std::path::PathBuf>,
    /// `[plugins.process]`: how process plugins are stopped and limited.
    pub process: ProcessConfig,
    /// External gRPC plugins (`[[plugins.external]]`).
    pub external: Vec<ExternalPluginConfig>,
    /// Plugin name → scopes the operator grants it; a plugin not named keeps its declared scopes.
    pub grants: BTreeMap<String, Vec<String>>,
    /// Plugin name → its settings table (`[plugins.settings.<name>]`, SPEC §10), handed to that
    /// plugin only, through its context. Secrets come from the environment
    /// (`NEBULA__PLUGINS__SETTINGS__<NAME>__<KEY>`); nothing lists or logs these values.
    pub settings: BTreeMap<String, PluginSettings>,
}

/// `[plugins.host_service]`: the host service's TCP listener, for external plugins on
/// other hosts (or in containers) that cannot reach the unix socket in the data directory.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HostServiceConfig {
    /// `IP:PORT` to listen on (port 0 picks one); loopback unless `allow_remote_grpc`.
    /// When set, external gRPC plugins are sent this endpoint instead of the unix socket.
    pub bind: Option<String>,
    /// The endpoint sent to plugins when it differs from `bind` (NAT, a container network),
    /// `http://HOST:PORT`. Default: `http://` + the bound address.
    pub advertise: Option<String>,
}

/// `[plugins.process]`: limits and stop grace of process plugins (SPEC §9). A limit of 0 means
/// none.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProcessConfig {
    /// SIGTERM, then SIGKILL after this many seconds.
    pub shutdown_grace_sec: f64,
    /// Resident memory, MiB (polled from `/proc` without a writable cgroup v2).
    pub memory_limit_mb: u64,
    /// CPU time over the process's life, seconds (`RLIMIT_CPU`). Default 0: a plugin that
    /// runs for months accumulates CPU time, so set it only for plugins that restart often.
    pub cpu_time_limit_sec: u64,
    /// Open file descriptors (`RLIMIT_NOFILE`).
    pub max_open_files: u64,
    /// Processes and threads (`RLIMIT_NPROC`). Linux counts every process and thread of the
    /// core's user against it, not only the plugin's, so the default is 0 (none).
    pub max_processes: u64,
}

impl Default for ProcessConfig {
    fn default() -> Self {
        ProcessConfig {
            shutdown_grace_sec: 5.0,
            memory_limit_mb: 1024,
            cpu_time_limit_sec: 0,
            max_open_files: 1024,
            max_processes: 0,
        }
    }
}

impl ProcessConfig {
    /// How long a stopped process plugin gets between SIGTERM and SIGKILL.
    pub fn shutdown_grace(&self) -> Duration {
        secs(self.shutdown_grace_sec)
    }
}

/// One plugin's settings: a JSON object whose `Debug` shows only its keys, since values may
/// be secrets.
#[derive(Clone, Default, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct PluginSettings(pub serde_json::Map<String, serde_json::Value>);

impl std::fmt::Debug for PluginSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl Default for PluginsConfig {
    fn default() -> Self {
        PluginsConfig {
            enabled: true,
            init_timeout_sec: 5.0,
            call_timeout_sec: 10.0,
            max_timeout_sec: 30.0,
            health_interval_sec: 30.0,
            state_poll_sec: 2.0,
            timeout_restart_threshold: 3,
            health_restart_threshold: 2,
            max_restarts: 3,
            max_crashes: 3,
            allow_remote_grpc: false,
            host_service: HostServiceConfig::default(),
            dir: None,
            process: ProcessConfig::default(),
            external: Vec::new(),
            grants: BTreeMap::new(),
            settings: BTreeMap::new(),
        }
    }
}

impl PluginsConfig {
    /// The bound on `initialize`.
    pub fn init_timeout(&self) -> Duration {
        secs(self.init_timeout_sec.min(self.max_timeout_sec))
    }

    /// The bound on every other call (`call_timeout_sec` clamped to `max_timeout_sec`).
    pub fn call_timeout(&self) -> Duration {
        secs(self.call_timeout_sec.min(self.max_timeout_sec))
    }

    /// The upper bound of every plugin timeout.
    pub fn max_timeout(&self) -> Duration {
        secs(self.max_timeout_sec)
    }

    /// The period of the health monitor.
    pub fn health_interval(&self) -> Duration {
        secs(self.health_interval_sec)
    }

    /// The period of the enabled-flag poll.
    pub fn state_poll_interval(&self) -> Duration {
        secs(self.state_poll_sec)
    }
}

/// One `[[plugins.external]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalPluginConfig {
    /// Plugin name.
    pub name: String,
    /// `host:port`, `http://host:port` or `unix:///path`.
    pub endpoint: String,
    /// Environment variable holding the token sent as `x-nebula-token`.
    #[serde(default)]
    pub token_env: Option<String>,
    /// Scopes the plugin is given.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Version shown in the list.
    #[serde(default)]
    pub version: Option<String>,
    /// Description shown in the list.
    #[serde(default)]
    pub description: Option<String>,
}

/// `[auth]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Lifetime of a staff session, seconds.
    pub session_ttl_sec: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            session_ttl_sec: 3600,
        }
    }
}

/// Seconds from the configuration → `Duration`: the one rule. `validate` has already refused
/// anything that is not a finite number from 0.001 to 86400.
fn secs(value: f64) -> Duration {
    Duration::try_from_secs_f64(value).unwrap_or(Duration::ZERO)
}

/// A loaded configuration and the file it came from.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The configuration.
    pub config: NebulaConfig,
    /// The file read, if any.
    pub file: Option<PathBuf>,
}

impl NebulaConfig {
    /// Loads the configuration the way the server does: `explicit` (from `--config`), else the
    /// `NEBULA_CONFIG` variable, else `./nebula.toml` when it exists, else defaults; then
    /// `NEBULA__…` overrides from the process environment.
    pub fn load(explicit: Option<&Path>) -> Result<LoadedConfig, ConfigError> {
        let file = match explicit {
            Some(path) => Some(path.to_path_buf()),
            None => match std::env::var_os("NEBULA_CONFIG") {
                Some(path) if !path.is_empty() => Some(PathBuf::from(path)),
                _ => Some(PathBuf::from(DEFAULT_CONFIG_FILE)).filter(|p| p.is_file()),
            },
        };
        let env: Vec<(String, String)> = std::env::vars().collect();
        let config = Self::load_from(file.as_deref(), env)?;
        Ok(LoadedConfig { config, file })
    }

    /// Loads `file` (if any) with overrides taken from `env` (name, value) pairs instead of the
    /// process environment, so tests and embedders control both.
    pub fn load_from(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<NebulaConfig, ConfigError> {
        let origin = match file {
            Some(path) => format!("file {}", path.display()),
            None => "defaults and environment".to_owned(),
        };
        let invalid = |message: String| ConfigError::Invalid {
            origin: origin.clone(),
            message,
        };
        let mut builder = config::Config::builder();
        if let Some(path) = file {
            if !path.is_file() {
                return Err(invalid("the file does not exist".into()));
            }
            builder = builder.add_source(
                config::File::from(path.to_path_buf()).format(config::FileFormat::Toml),
            );
        }
        let overrides: config::Map<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}__")))
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .source(Some(overrides)),
        );
        let config: NebulaConfig = builder
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| invalid(e.to_string()))?;
        config.validate().map_err(invalid)?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests;
mod validate;
