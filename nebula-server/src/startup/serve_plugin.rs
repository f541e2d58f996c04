//! `serve-plugin NAME --listen ENDPOINT`: one linked plugin as an external gRPC plugin.

use nebula_core::manager::ManagerSettings;
use nebula_core::NebulaConfig;
use nebula_grpc::server::{serve_bound, BoundListener};
use nebula_grpc::{stop_signal, GrpcEndpoint, HostSource, ServeOptions};
use std::io::Write;

use super::StartupError;

/// Serves one linked plugin until SIGINT or SIGTERM. Its context is backed by the core's
/// host service, so the same crate behaves the same in process and out of process. The listen
/// policy (a token on TCP, loopback unless `--allow-remote`) is checked before anything is
/// bound.
pub(super) async fn serve_plugin(
    config: &NebulaConfig,
    name: &str,
    listen: &str,
    token_env: Option<String>,
    allow_remote: bool,
) -> Result<(), StartupError> {
    let endpoint = GrpcEndpoint::parse_listen(listen).map_err(StartupError::ListenEndpoint)?;
    endpoint
        .check_listen_policy(token_env.is_some(), allow_remote)
        .map_err(|error| StartupError::ListenPolicy {
            listen: listen.to_owned(),
            error,
        })?;
    if !endpoint.is_loopback() {
        tracing::warn!(
            listen,
            "serving beyond loopback (--allow-remote): the traffic, token included, is unencrypted"
        );
    }
    let Some((registration, manifest)) = nebula_plugin_api::registered_plugin(name) else {
        return Err(StartupError::PluginNotLinked {
            name: name.to_owned(),
            linked: nebula_plugin_api::registered_plugins()
                .filter_map(|r| r.manifest().ok().map(|m| m.name))
                .collect(),
        });
    };
    // The context is the core's host service (SPEC §8), found in NEBULA_HOST_ENDPOINT and
    // NEBULA_HOST_TOKEN or in the first call's metadata: this process never opens the
    // database, and the core checks every helper against the scopes it granted.
    let mut options = ServeOptions::new(name);
    options.host = HostSource::Discover;
    options.allow_remote_host = allow_remote;
    // Declared ∩ v1 ∩ plugins.grants, checked here first so a refused helper fails without a
    // round trip; the core's check is the one that counts.
    options.scopes = ManagerSettings::from_config(&config.plugins).effective_scopes(&manifest);
    options.max_message_bytes = config.server.max_body_bytes;
    options.call_timeout = config.plugins.max_timeout();
    if let Some(var) = token_env {
        match std::env::var(&var) {
            Ok(token) if !token.is_empty() => options.token = Some(token),
            // Asked for a token but none is set: refuse rather than serve unauthenticated.
            _ => return Err(StartupError::TokenEnvUnset(var)),
        }
    }
    let listener = BoundListener::bind(listen)
        .await
        .map_err(|error| StartupError::Listen {
            listen: listen.to_owned(),
            error,
        })?;
    println!(
        "nebula-server serving plugin '{name}' on {}",
        listener.endpoint()
    );
    let _ = std::io::stdout().flush();
    serve_bound((registration.factory())(), listener, options, stop_signal())
        .await
        .map_err(StartupError::Serve)
}
