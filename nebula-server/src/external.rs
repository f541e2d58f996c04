//! Glue between the engine's `[[plugins.external]]` entries and `nebula-grpc`.

use std::sync::Arc;
use std::time::Duration;

use nebula_core::config::ExternalPluginConfig;
use nebula_core::manager::PluginConstructor;
use nebula_core::{ExternalConnector, InstanceSetup, NebulaConfig};
use nebula_grpc::{GrpcEndpoint, GrpcPlugin, RemotePluginSpec};

/// Longest wait for a TCP connection to an external plugin: a dead peer fails fast.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Builds [`GrpcPlugin`]s from configured entries.
#[derive(Debug, Default, Clone, Copy)]
pub struct GrpcConnector;

impl ExternalConnector for GrpcConnector {
    fn constructor(
        &self,
        entry: &ExternalPluginConfig,
        config: &NebulaConfig,
    ) -> PluginConstructor {
        let call_timeout = config.plugins.call_timeout();
        // The token is read from the environment at each rescan, never stored in the config.
        let token = entry
            .token_env
            .as_deref()
            .and_then(|name| std::env::var(name).ok())
            .filter(|t| !t.is_empty());
        let spec = RemotePluginSpec {
            name: entry.name.clone(),
            endpoint: entry.endpoint.clone(),
            token,
            call_timeout,
            connect_timeout: call_timeout.min(MAX_CONNECT_TIMEOUT),
            allow_remote: config.plugins.allow_remote_grpc,
            max_message_bytes: config.server.max_body_bytes,
        };
        Arc::new(move |setup: &InstanceSetup| {
            let plugin = GrpcPlugin::new(spec.clone());
            // SPEC §8: every call carries the host service's endpoint and this instance's token.
            Box::new(match &setup.host {
                Some(host) => plugin.with_host(&host.endpoint, &host.token),
                None => plugin,
            })
        })
    }
}

/// Checks the syntax of every configured endpoint (the policy is applied per plugin later, so
/// a remote endpoint is listed as refused rather than stopping start-up).
pub fn validate_endpoints(config: &NebulaConfig) -> Result<(), String> {
    for (i, entry) in config.plugins.external.iter().enumerate() {
        GrpcEndpoint::parse(&entry.endpoint)
            .map_err(|e| format!("plugins.external[{i}].endpoint: {e}"))?;
    }
    Ok(())
}
