//! The host service (SPEC §8) as `serve` runs it: a unix socket in the runtime directory, and a
//! TCP listener when `plugins.host_service.bind` is set, both looking tokens up in the one
//! registry the plugin manager mints into.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use nebula_core::{HostServiceLink, HostTokenRegistry, NebulaConfig};
use nebula_grpc::host_service::{bind_host_listener, bind_private_socket, serve_host_service};
use nebula_grpc::{HostServiceOptions, HostTokens};
use nebula_process::{fallback_socket_dir, MAX_SOCKET_PATH};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use super::StartupError;

/// The running host service: dropping it (or [`stop`](Self::stop)) ends its listeners.
#[derive(Debug)]
pub(super) struct RunningHostService {
    /// What the plugin manager needs: the registry and the endpoint to send.
    pub link: HostServiceLink,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningHostService {
    /// Stops the listeners and waits for them to close (the socket file is removed).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Binds and serves the host service; called on the engine runtime before the engine is
/// built, since plugins may call back while they start.
pub(super) async fn start(
    config: &NebulaConfig,
    runtime_dir: &Path,
) -> Result<RunningHostService, StartupError> {
    let registry = Arc::new(HostTokenRegistry::default());
    let socket_path = socket_path(runtime_dir)?;
    let socket = bind_private_socket(&socket_path)
        .await
        .map_err(|e| StartupError::HostService(format!("{}: {e}", socket_path.display())))?;
    let local_endpoint = socket.endpoint();
    let mut endpoint = local_endpoint.clone();
    let mut listeners = vec![socket];
    let section = &config.plugins.host_service;
    if let Some(bind) = &section.bind {
        let tcp = bind_host_listener(bind, config.plugins.allow_remote_grpc)
            .await
            .map_err(|e| {
                StartupError::HostService(format!("plugins.host_service.bind {bind}: {e}"))
            })?;
        endpoint = section.advertise.clone().unwrap_or_else(|| tcp.endpoint());
        listeners.push(tcp);
    }
    for listener in &listeners {
        tracing::info!(endpoint = %listener.endpoint(), "host service listening");
    }
    let options = HostServiceOptions {
        max_message_bytes: config.server.max_body_bytes,
        call_timeout: config.plugins.max_timeout(),
    };
    let lookup = registry.clone();
    let tokens: Arc<dyn HostTokens> = Arc::new(move |token: &str| lookup.context(token));
    let (stop, stopped) = watch::channel(false);
    let tasks = listeners
        .into_iter()
        .map(|listener| {
            let mut stopped = stopped.clone();
            let served =
                serve_host_service(tokens.clone(), listener, options.clone(), async move {
                    let _ = stopped.wait_for(|s| *s).await;
                });
            tokio::spawn(async move {
                if let Err(e) = served.await {
                    tracing::error!(error = %e, "host service stopped");
                }
            })
        })
        .collect();
    Ok(RunningHostService {
        link: HostServiceLink {
            tokens: registry,
            endpoint,
            local_endpoint,
        },
        stop,
        tasks,
    })
}

/// `<runtime dir>/host.sock` (`server.runtime_dir`, by default the data directory), or, when
/// that path is too long for a unix socket,
/// `host-<hash of the runtime directory>.sock` in this user's private socket directory (the one
/// the process runtime uses): named after the runtime directory, so a second server on the same
/// directory still finds the first one's socket in use.
fn socket_path(runtime_dir: &Path) -> Result<PathBuf, StartupError> {
    // The database creates it too, later; the socket needs it first.
    nebula_core::storage::create_private_dir(runtime_dir)
        .map_err(|e| StartupError::HostService(format!("{}: {e}", runtime_dir.display())))?;
    let path = std::path::absolute(runtime_dir.join("host.sock"))
        .map_err(|e| StartupError::HostService(format!("{}: {e}", runtime_dir.display())))?;
    if path.as_os_str().len() <= MAX_SOCKET_PATH {
        return Ok(path);
    }
    let dir = fallback_socket_dir()
        .map_err(|e| StartupError::HostService(format!("private socket directory: {e}")))?;
    let digest = Sha256::digest(path.as_os_str().as_encoded_bytes());
    let name: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let socket = dir.join(format!("host-{name}.sock"));
    tracing::info!(
        runtime_dir = %runtime_dir.display(),
        "the runtime directory's path is too long for a unix socket; the host service's socket is {}",
        socket.display()
    );
    Ok(socket)
}
