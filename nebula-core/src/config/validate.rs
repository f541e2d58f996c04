//! What the types cannot say: ranges, addresses, names, and secrets never handed to peers.

use super::{NebulaConfig, ENV_PREFIX};

impl NebulaConfig {
    /// Checks what the types cannot: positive timeouts, a usable bind address, sane sizes.
    pub fn validate(&self) -> Result<(), String> {
        let p = &self.plugins;
        for (key, value) in [
            ("plugins.init_timeout_sec", p.init_timeout_sec),
            ("plugins.call_timeout_sec", p.call_timeout_sec),
            ("plugins.max_timeout_sec", p.max_timeout_sec),
            ("plugins.health_interval_sec", p.health_interval_sec),
            ("plugins.state_poll_sec", p.state_poll_sec),
            (
                "database.connect_timeout_sec",
                self.database.connect_timeout_sec,
            ),
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
        let grace = p.process.shutdown_grace_sec;
        if !(grace.is_finite() && (0.0..=3600.0).contains(&grace)) {
            return Err(format!(
                "plugins.process.shutdown_grace_sec: must be a number of seconds from 0 to 3600, got {grace}"
            ));
        }
        if let Some(bind) = &p.host_service.bind {
            let addr: std::net::SocketAddr = bind.parse().map_err(|_| {
                format!("plugins.host_service.bind: expected IP:PORT, got '{bind}'")
            })?;
            if !addr.ip().is_loopback() && !p.allow_remote_grpc {
                return Err(format!(
                    "plugins.host_service.bind: '{bind}' is not a loopback address; \
                     set plugins.allow_remote_grpc = true to serve the host service beyond \
                     this machine (unencrypted: put it on a private network)"
                ));
            }
        }
        if let Some(advertise) = &p.host_service.advertise {
            if p.host_service.bind.is_none() {
                return Err(
                    "plugins.host_service.advertise: needs plugins.host_service.bind".into(),
                );
            }
            let rest = advertise.strip_prefix("http://").unwrap_or_default();
            if rest.is_empty() || rest.contains('/') {
                return Err(format!(
                    "plugins.host_service.advertise: expected http://HOST:PORT, got '{advertise}'"
                ));
            }
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
