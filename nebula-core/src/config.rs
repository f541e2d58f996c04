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
        }
    }
}

/// `[database]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://RELATIVE/PATH`, `sqlite:///ABSOLUTE/PATH`.
    pub url: String,
    /// Connections in the pool.
    pub pool_size: u32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: "sqlite://data/nebula.db".into(),
            pool_size: 8,
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
    /// Consecutive timeouts that make a plugin unresponsive.
    pub timeout_restart_threshold: u32,
    /// Consecutive failed health checks that trigger a restart.
    pub health_restart_threshold: u32,
    /// Restarts before the plugin is disabled.
    pub max_restarts: u32,
    /// Consecutive crashes before the plugin is disabled.
    pub max_crashes: u32,
    /// Allow gRPC endpoints outside loopback.
    pub allow_remote_grpc: bool,
    /// External gRPC plugins (`[[plugins.external]]`).
    pub external: Vec<ExternalPluginConfig>,
    /// Plugin name → scopes the operator grants it; a plugin not named keeps its declared scopes.
    pub grants: BTreeMap<String, Vec<String>>,
    /// Plugin name → its settings table (`[plugins.settings.<name>]`, SPEC §10), handed to that
    /// plugin only, through its context. Secrets come from the environment
    /// (`NEBULA__PLUGINS__SETTINGS__<NAME>__<KEY>`); nothing lists or logs these values.
    pub settings: BTreeMap<String, PluginSettings>,
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
            timeout_restart_threshold: 3,
            health_restart_threshold: 2,
            max_restarts: 3,
            max_crashes: 3,
            allow_remote_grpc: false,
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

    /// Checks what the types cannot: positive timeouts, a usable bind address, sane sizes.
    pub fn validate(&self) -> Result<(), String> {
        let p = &self.plugins;
        for (key, value) in [
            ("plugins.init_timeout_sec", p.init_timeout_sec),
            ("plugins.call_timeout_sec", p.call_timeout_sec),
            ("plugins.max_timeout_sec", p.max_timeout_sec),
            ("plugins.health_interval_sec", p.health_interval_sec),
        ] {
            if !(value.is_finite() && (0.001..=86_400.0).contains(&value)) {
                return Err(format!(
                    "{key}: must be a number of seconds from 0.001 to 86400, got {value}"
                ));
            }
        }
        for (key, value) in [
            (
                "plugins.timeout_restart_threshold",
                p.timeout_restart_threshold,
            ),
            (
                "plugins.health_restart_threshold",
                p.health_restart_threshold,
            ),
            ("plugins.max_crashes", p.max_crashes),
        ] {
            if value == 0 {
                return Err(format!("{key}: must be at least 1, got 0"));
            }
        }
        if self.server.bind.parse::<std::net::SocketAddr>().is_err() {
            return Err(format!(
                "server.bind: expected IP:PORT (for example 127.0.0.1:8000), got '{}'",
                self.server.bind
            ));
        }
        self.server.public_origin()?;
        if self.server.max_body_bytes < 1024 {
            return Err("server.max_body_bytes: must be at least 1024".into());
        }
        if self.database.pool_size == 0 || self.database.pool_size > 256 {
            return Err("database.pool_size: must be between 1 and 256".into());
        }
        crate::storage::DatabaseLocation::parse(&self.database.url).map_err(|e| e.to_string())?;
        if self.auth.session_ttl_sec == 0 {
            return Err("auth.session_ttl_sec: must be above 0".into());
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, ext) in p.external.iter().enumerate() {
            nebula_plugin_api::validate_plugin_name(&ext.name)
                .map_err(|e| format!("plugins.external[{i}].name: {e}"))?;
            if !names.insert(ext.name.as_str()) {
                return Err(format!(
                    "plugins.external[{i}].name: '{}' is configured twice",
                    ext.name
                ));
            }
            if ext.endpoint.trim().is_empty() {
                return Err(format!("plugins.external[{i}].endpoint: must not be empty"));
            }
            if let Some(var) = &ext.token_env {
                check_token_env(var)
                    .map_err(|e| format!("plugins.external[{i}].token_env: {e}"))?;
            }
        }
        Ok(())
    }
}

/// An external plugin's `token_env` names the variable whose value is sent to that peer: it
/// must never name one of the core's own secrets, nor a `NEBULA__…` override (which may hold
/// another plugin's settings secrets, SPEC §10).
fn check_token_env(var: &str) -> Result<(), String> {
    if crate::auth::CORE_SECRET_ENVS.contains(&var) {
        return Err(format!(
            "'{var}' is one of the core's own secrets; it would be sent to the plugin. \
             Give the plugin its own variable"
        ));
    }
    if var.starts_with(&format!("{ENV_PREFIX}__")) {
        return Err(format!(
            "'{var}' is a configuration override ({ENV_PREFIX}__…); give the plugin its own variable"
        ));
    }
    let valid = var
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!(
            "'{}' is not an environment variable name (letters, digits and '_')",
            nebula_plugin_api::escape_control(var)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    fn no_env() -> Vec<(String, String)> {
        Vec::new()
    }

    #[test]
    fn defaults_need_no_file() {
        let c = NebulaConfig::load_from(None, no_env()).unwrap();
        assert_eq!(c.server.bind, "127.0.0.1:8000");
        assert_eq!(c.server.max_body_bytes, 8 * 1024 * 1024);
        assert_eq!(c.database.url, "sqlite://data/nebula.db");
        assert_eq!(c.plugins.init_timeout(), Duration::from_secs(5));
        assert_eq!(c.plugins.call_timeout(), Duration::from_secs(10));
        assert_eq!(c.plugins.timeout_restart_threshold, 3);
        assert_eq!(c.auth.session_ttl_sec, 3600);
    }

    #[test]
    fn file_and_env_overrides_apply() {
        let f = file(
            "[server]\nbind = \"127.0.0.1:9000\"\n[plugins]\ncall_timeout_sec = 0.5\n\
             [plugins.grants]\nsample_sync = [\"users.read\"]\n\
             [[plugins.external]]\nname = \"ext1\"\nendpoint = \"127.0.0.1:50051\"\n",
        );
        let env = vec![
            (
                "NEBULA__SERVER__BIND".to_owned(),
                "127.0.0.1:9100".to_owned(),
            ),
            (
                "NEBULA__PLUGINS__MAX_TIMEOUT_SEC".to_owned(),
                "60".to_owned(),
            ),
            ("NEBULA_CONFIG".to_owned(), "ignored".to_owned()),
        ];
        let c = NebulaConfig::load_from(Some(f.path()), env).unwrap();
        assert_eq!(c.server.bind, "127.0.0.1:9100");
        assert_eq!(c.plugins.call_timeout(), Duration::from_millis(500));
        assert_eq!(c.plugins.max_timeout_sec, 60.0);
        assert_eq!(c.plugins.grants["sample_sync"], vec!["users.read"]);
        assert_eq!(c.plugins.external[0].name, "ext1");
    }

    #[test]
    fn public_origin_is_an_origin_normalised_once() {
        let c = NebulaConfig::load_from(None, no_env()).unwrap();
        assert_eq!(c.server.public_origin(), Ok(None));
        let f = file("[server]\npublic_origin = \"HTTPS://Nebula.Example.com:443\"\n");
        let c = NebulaConfig::load_from(Some(f.path()), no_env()).unwrap();
        let origin = c.server.public_origin().unwrap().unwrap();
        assert_eq!(origin.to_string(), "https://nebula.example.com");
        let env = vec![(
            "NEBULA__SERVER__PUBLIC_ORIGIN".to_owned(),
            "http://10.0.0.5:8000/admin".to_owned(),
        )];
        let err = NebulaConfig::load_from(None, env).unwrap_err().to_string();
        assert!(err.contains("server.public_origin"), "{err}");
        assert!(err.contains("http://10.0.0.5:8000/admin"), "{err}");
    }

    #[test]
    fn plugin_settings_come_from_the_file_and_the_environment_and_never_show_their_values() {
        let f = file(
            "[plugins.settings.csv_import]\npath = \"/srv/users.csv\"\ndelimiter = \";\"\n\
             [plugins.settings.csv_import.columns]\nemail = \"mail\"\n",
        );
        let env = vec![(
            "NEBULA__PLUGINS__SETTINGS__CSV_IMPORT__BIND_PASSWORD".to_owned(),
            "s3cret-from-env".to_owned(),
        )];
        let c = NebulaConfig::load_from(Some(f.path()), env).unwrap();
        let settings = &c.plugins.settings["csv_import"].0;
        assert_eq!(settings["path"], "/srv/users.csv");
        assert_eq!(settings["columns"]["email"], "mail");
        assert_eq!(settings["bind_password"], "s3cret-from-env");
        let shown = format!("{c:?}");
        assert!(shown.contains("bind_password"), "{shown}");
        assert!(!shown.contains("s3cret-from-env"), "{shown}");
        assert!(!shown.contains("/srv/users.csv"), "{shown}");
    }

    #[test]
    fn call_timeout_is_clamped_to_the_maximum() {
        let f = file("[plugins]\ncall_timeout_sec = 100\nmax_timeout_sec = 30\n");
        let c = NebulaConfig::load_from(Some(f.path()), no_env()).unwrap();
        assert_eq!(c.plugins.call_timeout(), Duration::from_secs(30));
    }

    #[test]
    fn errors_name_the_key_and_the_file() {
        let cases = [
            ("[server]\nbindd = \"x\"\n", "bindd"),
            (
                "[plugins]\ncall_timeout_sec = \"soon\"\n",
                "call_timeout_sec",
            ),
            (
                "[plugins]\ncall_timeout_sec = -1\n",
                "plugins.call_timeout_sec",
            ),
            (
                "[plugins]\nhealth_interval_sec = 1e-10\n",
                "plugins.health_interval_sec",
            ),
            ("[server]\nbind = \"nowhere\"\n", "server.bind"),
            (
                "[plugins]\ntimeout_restart_threshold = 0\n",
                "plugins.timeout_restart_threshold: must be at least 1, got 0",
            ),
            (
                "[plugins]\nhealth_restart_threshold = 0\n",
                "plugins.health_restart_threshold: must be at least 1",
            ),
            ("[plugins]\nmax_crashes = 0\n", "plugins.max_crashes: must be at least 1"),
            (
                "[server]\npublic_origin = \"https://nebula.example.com/\"\n",
                "server.public_origin",
            ),
            (
                "[server]\npublic_origin = \"nebula.example.com\"\n",
                "server.public_origin",
            ),
            ("[database]\nurl = \"mysql://x\"\n", "database.url"),
            ("[bogus]\nx = 1\n", "bogus"),
            ("[[plugins.external]]\nname = \"x\"\n", "endpoint"),
            (
                "[[plugins.external]]\nname = \"peer\"\nendpoint = \"127.0.0.1:1\"\ntoken_env = \"NEBULA_INSTALLER_TOKEN\"\n",
                "plugins.external[0].token_env: 'NEBULA_INSTALLER_TOKEN' is one of the core's own secrets",
            ),
            (
                "[[plugins.external]]\nname = \"peer\"\nendpoint = \"127.0.0.1:1\"\ntoken_env = \"NEBULA_SESSION_SECRET\"\n",
                "plugins.external[0].token_env: 'NEBULA_SESSION_SECRET'",
            ),
            (
                "[[plugins.external]]\nname = \"peer\"\nendpoint = \"127.0.0.1:1\"\ntoken_env = \"NEBULA__PLUGINS__SETTINGS__LDAP__PW\"\n",
                "token_env: 'NEBULA__PLUGINS__SETTINGS__LDAP__PW' is a configuration override",
            ),
            (
                "[[plugins.external]]\nname = \"peer\"\nendpoint = \"127.0.0.1:1\"\ntoken_env = \"A B\"\n",
                "plugins.external[0].token_env",
            ),
            ("not toml at all [", "TOML"),
        ];
        for (text, key) in cases {
            let f = file(text);
            let err = NebulaConfig::load_from(Some(f.path()), no_env())
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{text:?}: {err}");
            assert!(
                err.contains(&f.path().display().to_string()),
                "{text:?}: {err}"
            );
        }
        let err = NebulaConfig::load_from(
            None,
            vec![("NEBULA__PLUGINS__CALL_TIMEOUT_SEC".into(), "abc".into())],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("call_timeout_sec"), "{err}");
        assert!(NebulaConfig::load_from(Some(Path::new("/nonexistent/x.toml")), no_env()).is_err());
    }
}
