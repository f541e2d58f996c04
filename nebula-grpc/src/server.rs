//! Exposes any `Plugin` as a `nebula.plugin.v1.PluginService`.

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use nebula_plugin_api::guard::{guarded, CallFailure};
use nebula_plugin_api::request_id::serving_request;
use nebula_plugin_api::token::tokens_match;
use nebula_plugin_api::{
    async_trait, DirectoryUser, ErrorKind, Host, IdentityRole, JsonObject, Plugin, PluginContext,
    PluginError, ScopeSet, SyncOutcome, SyncRequest, SyncUser,
};
use tokio::net::{TcpListener, UnixListener};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, Status};

use crate::convert::{json_is_large, json_to_struct, struct_is_large, struct_to_json};
use crate::endpoint::{EndpointError, GrpcEndpoint};
use crate::proto::plugin_service_server::{PluginService, PluginServiceServer};
use crate::remote_host::{RemoteHost, RemoteHostOptions};
use crate::{
    cpu_work, echo, HOST_ENDPOINT_ENV, HOST_ENDPOINT_METADATA, HOST_TOKEN_ENV, HOST_TOKEN_METADATA,
    MAX_ERROR_TEXT, TOKEN_METADATA,
};

/// Why serving failed.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The endpoint is malformed.
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    /// Binding or serving failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The plugin's `initialize` failed.
    #[error("plugin failed to initialise: {0}")]
    Initialize(PluginError),
    /// The gRPC server failed.
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Where the plugin's context sends its helpers (`sync_user`, `emit_event`, …).
#[derive(Clone)]
pub enum HostSource {
    /// The default (SPEC §8, §9): the core's host service, found
    /// 1. in `NEBULA_HOST_ENDPOINT` and `NEBULA_HOST_TOKEN` when both are set when serving
    ///    starts (a process plugin): the plugin is initialised before serving, its settings
    ///    fetched with `GetSettings`;
    /// 2. otherwise in the `x-nebula-host-endpoint` and `x-nebula-host-token` metadata of
    ///    the first PluginService call: the plugin is initialised **lazily**, on that first
    ///    call (whatever it is, `Health` included), before the call itself runs;
    /// 3. a first call without that metadata initialises the plugin over [`DetachedHost`]
    ///    (every helper `Unavailable`, `log` to `tracing`), and it stays detached.
    ///
    /// Once the context is remote, every later call's metadata re-targets it (the core mints
    /// a new token for every instance it builds: a restart, a rescan), so the context the
    /// plugin kept stays valid.
    Discover,
    /// A host of your own (tests: `RecordingHost`). The plugin is initialised
    /// before serving; host metadata is ignored.
    Fixed(Arc<dyn Host>),
    /// The host service at `endpoint` with `token`, as if they came from the environment.
    Remote {
        /// `unix:///path` or `http://127.0.0.1:PORT`.
        endpoint: String,
        /// The instance's host token.
        token: String,
    },
}

impl std::fmt::Debug for HostSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostSource::Discover => f.write_str("Discover"),
            HostSource::Fixed(_) => f.write_str("Fixed(..)"),
            HostSource::Remote { endpoint, .. } => f
                .debug_struct("Remote")
                .field("endpoint", endpoint)
                .finish_non_exhaustive(),
        }
    }
}

impl HostSource {
    /// [`HostSource::Remote`] when both values are present and non-empty, else `Discover`
    /// (what `serve` does with `NEBULA_HOST_ENDPOINT` and `NEBULA_HOST_TOKEN`).
    pub fn from_env_values(endpoint: Option<String>, token: Option<String>) -> Self {
        match (
            endpoint.filter(|e| !e.is_empty()),
            token.filter(|t| !t.is_empty()),
        ) {
            (Some(endpoint), Some(token)) => HostSource::Remote { endpoint, token },
            _ => HostSource::Discover,
        }
    }
}

/// Options of [`serve`].
pub struct ServeOptions {
    /// The plugin's name (the context's namespace for events and logs).
    pub name: String,
    /// When set and non-empty, calls must carry this `x-nebula-token`.
    pub token: Option<String>,
    /// What the plugin's context calls. Default: [`HostSource::Discover`].
    pub host: HostSource,
    /// Scopes of the plugin's context (default all). Over the host service the core checks
    /// the granted ones again: its check is the one that counts.
    pub scopes: ScopeSet,
    /// Largest message either way (the PluginService and the host service calls).
    pub max_message_bytes: usize,
    /// Bound on each plugin call, and the deadline of each host service call.
    pub call_timeout: Duration,
    /// Accept a host endpoint outside loopback (default false: loopback and unix sockets).
    pub allow_remote_host: bool,
}

impl ServeOptions {
    /// Defaults: no token, the host discovered ([`HostSource::Discover`]), all scopes, 8 MiB
    /// messages, 30 s calls, loopback host endpoints only.
    pub fn new(name: impl Into<String>) -> Self {
        ServeOptions {
            name: name.into(),
            token: None,
            host: HostSource::Discover,
            scopes: ScopeSet::all(),
            max_message_bytes: 8 * 1024 * 1024,
            call_timeout: Duration::from_secs(30),
            allow_remote_host: false,
        }
    }

    fn remote_host_options(&self) -> RemoteHostOptions {
        RemoteHostOptions {
            call_timeout: self.call_timeout,
            max_message_bytes: self.max_message_bytes,
            allow_remote: self.allow_remote_host,
            ..RemoteHostOptions::default()
        }
    }
}

/// A listener bound for [`serve_bound`].
#[derive(Debug)]
pub enum BoundListener {
    /// TCP.
    Tcp(TcpListener),
    /// Unix socket (the file is removed when serving ends).
    Unix(UnixListener, PathBuf),
}

/// The connections of a TCP listener, with Nagle's algorithm off. tonic sets `TCP_NODELAY`
/// only on listeners it binds itself; on ours, a small answer (a health check) waited for the
/// peer's delayed ACK, about 40 ms per call on loopback (found by `nebula-bench`).
pub(crate) fn tcp_incoming(
    listener: tokio::net::TcpListener,
) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}

impl BoundListener {
    /// Binds `endpoint` (`host:port`, `http://host:port`, `unix:///path`; port 0 picks one).
    pub async fn bind(endpoint: &str) -> Result<Self, ServeError> {
        match GrpcEndpoint::parse_listen(endpoint)? {
            GrpcEndpoint::Tcp { host, port } => Ok(BoundListener::Tcp(
                TcpListener::bind((host.as_str(), port)).await?,
            )),
            GrpcEndpoint::Unix(path) => {
                remove_stale_socket(&path).await?;
                Ok(BoundListener::Unix(UnixListener::bind(&path)?, path))
            }
        }
    }

    /// The endpoint as a client would write it (with the real port when 0 was asked).
    pub fn endpoint(&self) -> String {
        match self {
            BoundListener::Tcp(l) => l
                .local_addr()
                .map_or_else(|_| "unknown".into(), |a| format!("http://{a}")),
            BoundListener::Unix(_, path) => format!("unix://{}", path.display()),
        }
    }
}

/// Removes a socket file left by a process that died. A socket something still answers on
/// is another live server's (a second server on the same data directory): refused, never
/// taken over.
async fn remove_stale_socket(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    match tokio::fs::symlink_metadata(path).await {
        Ok(meta) if meta.file_type().is_socket() => {
            if tokio::net::UnixStream::connect(path).await.is_ok() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    format!("{} is in use by another process", path.display()),
                ));
            }
            tokio::fs::remove_file(path).await
        }
        Ok(_) => Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket", path.display()),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Binds `endpoint`, initialises `plugin` and serves until `shutdown` resolves; then calls the
/// plugin's `shutdown`. When the plugin is initialised depends on [`ServeOptions::host`].
pub async fn serve<F>(
    plugin: Box<dyn Plugin>,
    endpoint: &str,
    options: ServeOptions,
    shutdown: F,
) -> Result<(), ServeError>
where
    F: Future<Output = ()> + Send,
{
    let listener = BoundListener::bind(endpoint).await?;
    serve_bound(plugin, listener, options, shutdown).await
}

/// [`serve`] on an already bound listener (to learn the port before serving).
pub async fn serve_bound<F>(
    plugin: Box<dyn Plugin>,
    listener: BoundListener,
    options: ServeOptions,
    shutdown: F,
) -> Result<(), ServeError>
where
    F: Future<Output = ()> + Send,
{
    let plugin: Arc<dyn Plugin> = Arc::from(plugin);
    let source = match &options.host {
        HostSource::Discover => HostSource::from_env_values(
            std::env::var(HOST_ENDPOINT_ENV).ok(),
            std::env::var(HOST_TOKEN_ENV).ok(),
        ),
        other => other.clone(),
    };
    let init = Arc::new(Init {
        name: options.name.clone(),
        scopes: options.scopes.clone(),
        remote_options: options.remote_host_options(),
        call_timeout: options.call_timeout,
        lock: tokio::sync::Mutex::new(()),
        done: OnceLock::new(),
    });
    // Known hosts: initialise before serving (an error there is fatal, as before).
    match source {
        HostSource::Fixed(host) => {
            let ctx = PluginContext::new(options.name.as_str(), options.scopes.clone(), host);
            plugin
                .initialize(ctx)
                .await
                .map_err(ServeError::Initialize)?;
            let _ = init.done.set(Ok(None));
        }
        HostSource::Remote { endpoint, token } => {
            let remote = Arc::new(
                RemoteHost::new(&endpoint, &token, options.remote_host_options())
                    .map_err(|e| ServeError::Initialize(PluginError::invalid(e.to_string())))?,
            );
            let ctx = remote
                .context(&options.name, options.scopes.clone())
                .await
                .map_err(ServeError::Initialize)?;
            plugin
                .initialize(ctx)
                .await
                .map_err(ServeError::Initialize)?;
            let _ = init.done.set(Ok(Some(remote)));
        }
        HostSource::Discover => {}
    }
    let service = PluginServiceServer::new(Bridge {
        plugin: plugin.clone(),
        token: options.token.filter(|t| !t.is_empty()),
        call_timeout: options.call_timeout,
        init: init.clone(),
    })
    .max_decoding_message_size(options.max_message_bytes)
    .max_encoding_message_size(options.max_message_bytes);
    let router = tonic::transport::Server::builder().add_service(service);
    let served = match listener {
        BoundListener::Tcp(l) => {
            router
                .serve_with_incoming_shutdown(tcp_incoming(l), shutdown)
                .await
        }
        BoundListener::Unix(l, path) => {
            let result = router
                .serve_with_incoming_shutdown(UnixListenerStream::new(l), shutdown)
                .await;
            let _ = tokio::fs::remove_file(path).await;
            result
        }
    };
    // A plugin never initialised (no call came) or whose initialise failed is not shut down.
    if let Some(Ok(remote)) = init.done.get() {
        if let Err(e) = plugin.shutdown().await {
            tracing::warn!(plugin = %options.name, error = %e, "plugin shutdown failed");
        }
        if let Some(remote) = remote {
            remote.flush_logs().await;
        }
    }
    Ok(served?)
}

/// When and over which host the plugin is initialised (see [`HostSource::Discover`]).
struct Init {
    name: String,
    scopes: ScopeSet,
    remote_options: RemoteHostOptions,
    call_timeout: Duration,
    /// Serialises the lazy initialisation.
    lock: tokio::sync::Mutex<()>,
    /// Set once: `Ok(Some(host))` remote (re-targeted by later metadata), `Ok(None)` fixed or
    /// detached, `Err` when the plugin's `initialize` failed (answered to every call).
    done: OnceLock<Result<Option<Arc<RemoteHost>>, PluginError>>,
}

impl Init {
    /// Makes sure the plugin is initialised before a call runs; `host` is the call's host
    /// metadata (endpoint, token), when it has both.
    async fn ensure(
        &self,
        plugin: &Arc<dyn Plugin>,
        host: Option<(String, String)>,
    ) -> Result<(), Status> {
        if self.done.get().is_none() {
            let _guard = self.lock.lock().await;
            if self.done.get().is_none() {
                let outcome = self.initialize(plugin, host.clone()).await?;
                let _ = self.done.set(outcome);
            }
        }
        match self.done.get() {
            Some(Ok(Some(remote))) => {
                if let Some((endpoint, token)) = host {
                    remote.retarget(&endpoint, &token).map_err(|e| {
                        Status::failed_precondition(echo(&e.to_string(), MAX_ERROR_TEXT))
                    })?;
                }
                Ok(())
            }
            Some(Ok(None)) => Ok(()),
            Some(Err(e)) => Err(Status::failed_precondition(echo(
                &format!("plugin failed to initialise: {e}"),
                MAX_ERROR_TEXT,
            ))),
            None => Err(Status::internal("plugin not initialised")),
        }
    }

    /// The lazy initialisation. `Err(status)` (the host service unreachable, bad metadata)
    /// leaves the plugin uninitialised, to be tried again by the next call; the plugin's own
    /// `initialize` runs once, and its failure is kept.
    async fn initialize(
        &self,
        plugin: &Arc<dyn Plugin>,
        host: Option<(String, String)>,
    ) -> Result<Result<Option<Arc<RemoteHost>>, PluginError>, Status> {
        let (ctx, remote) = match host {
            Some((endpoint, token)) => {
                let remote = Arc::new(
                    RemoteHost::new(&endpoint, &token, self.remote_options.clone()).map_err(
                        |e| Status::failed_precondition(echo(&e.to_string(), MAX_ERROR_TEXT)),
                    )?,
                );
                let ctx = remote
                    .context(&self.name, self.scopes.clone())
                    .await
                    .map_err(|e| {
                        Status::unavailable(echo(
                            &format!("fetching the plugin's settings (GetSettings) failed: {e}"),
                            MAX_ERROR_TEXT,
                        ))
                    })?;
                (ctx, Some(remote))
            }
            None => {
                let host: Arc<dyn Host> = Arc::new(DetachedHost);
                (
                    PluginContext::new(self.name.as_str(), self.scopes.clone(), host),
                    None,
                )
            }
        };
        let plugin = plugin.clone();
        let initialized = guarded(
            async move { plugin.initialize(ctx).await },
            self.call_timeout,
        )
        .await;
        Ok(match initialized {
            Ok(()) => Ok(remote),
            Err(CallFailure::Error(e)) => Err(e),
            Err(CallFailure::Panicked(_)) => Err(PluginError::internal("initialize panicked")),
            Err(CallFailure::TimedOut(_)) => {
                Err(PluginError::Timeout("initialize timed out".into()))
            }
        })
    }
}

/// The `x-nebula-host-endpoint` and `x-nebula-host-token` of a call, when it has both.
fn host_metadata<T>(request: &Request<T>) -> Option<(String, String)> {
    let text = |key: &str| {
        request
            .metadata()
            .get(key)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    Some((text(HOST_ENDPOINT_METADATA)?, text(HOST_TOKEN_METADATA)?))
}

struct Bridge {
    plugin: Arc<dyn Plugin>,
    token: Option<String>,
    call_timeout: Duration,
    init: Arc<Init>,
}

impl Bridge {
    /// Checks the caller's token, then makes sure the plugin is initialised (and its host
    /// re-targeted) before the call runs.
    async fn admit<T>(&self, request: &Request<T>) -> Result<(), Status> {
        self.authorize(request)?;
        self.init.ensure(&self.plugin, host_metadata(request)).await
    }

    fn authorize<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let Some(expected) = &self.token else {
            return Ok(());
        };
        let presented = request
            .metadata()
            .get(TOKEN_METADATA)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if tokens_match(expected, presented) {
            Ok(())
        } else {
            Err(Status::unauthenticated("missing or wrong x-nebula-token"))
        }
    }

    /// Runs a plugin call through the call guard ([`guarded`]: its own task, the timeout, the
    /// abort grace); panics become `INTERNAL`. The answer is converted in that task too (a
    /// large one on the blocking pool), so the bound holds whatever the plugin answered.
    async fn run<F>(&self, call: F) -> Result<Response<prost_types::Struct>, Status>
    where
        F: Future<Output = Result<JsonObject, PluginError>> + Send + 'static,
    {
        let guarded_call = async move {
            let answer = call.await?;
            Ok(encode_answer(answer).await)
        };
        match guarded(guarded_call, self.call_timeout).await {
            Ok(encoded) => encoded.map(Response::new),
            Err(CallFailure::Error(e)) => Err(status_of(e)),
            Err(CallFailure::Panicked(_)) => Err(Status::internal("plugin panicked")),
            Err(CallFailure::TimedOut(_)) => {
                Err(Status::deadline_exceeded("plugin call timed out"))
            }
        }
    }
}

/// A plugin's answer as a Struct; a large one converted on the blocking pool.
async fn encode_answer(answer: JsonObject) -> Result<prost_types::Struct, Status> {
    cpu_work(json_is_large(&answer), move || json_to_struct(&answer))
        .await
        .map_err(|e| Status::internal(format!("converting the answer failed: {e}")))?
        .map_err(|e| {
            Status::internal(format!(
                "plugin answered a value protobuf cannot carry: {e}"
            ))
        })
}

/// A `SyncUsers` request, converted and validated (a large one on the blocking pool).
async fn decode_request(message: prost_types::Struct) -> Result<SyncRequest, PluginError> {
    cpu_work(struct_is_large(&message), move || {
        let body = struct_to_json(&message).map_err(|e| PluginError::invalid(e.to_string()))?;
        SyncRequest::from_value(serde_json::Value::Object(body))
    })
    .await
    .map_err(|e| PluginError::internal(format!("converting the request failed: {e}")))?
}

fn status_of(e: PluginError) -> Status {
    // Bounded: a status travels in HTTP/2 trailers, and an error that echoes a huge field name
    // (an unknown key of megabytes) would otherwise reach the caller as a protocol error.
    let text = echo(&e.to_string(), MAX_ERROR_TEXT);
    match e.kind() {
        ErrorKind::InvalidInput => Status::invalid_argument(text),
        ErrorKind::PermissionDenied => Status::permission_denied(text),
        ErrorKind::NotFound => Status::not_found(text),
        ErrorKind::Unavailable => Status::unavailable(text),
        ErrorKind::Timeout => Status::deadline_exceeded(text),
        ErrorKind::Internal => Status::internal(text),
    }
}

#[tonic::async_trait]
impl PluginService for Bridge {
    async fn health(&self, request: Request<()>) -> Result<Response<prost_types::Struct>, Status> {
        self.admit(&request).await?;
        let plugin = self.plugin.clone();
        // Serving the core's request: this process's lines name its id, and the plugin's
        // host-service calls (its log lines among them) send it back.
        let id = crate::received_request_id(request.metadata());
        serving_request(id, self.run(async move { plugin.health().await })).await
    }

    async fn sync_users(
        &self,
        request: Request<prost_types::Struct>,
    ) -> Result<Response<prost_types::Struct>, Status> {
        self.admit(&request).await?;
        let id = crate::received_request_id(request.metadata());
        let message = request.into_inner();
        let plugin = self.plugin.clone();
        // Converting and validating the request is part of the bounded call.
        let call = self.run(async move {
            let sync = decode_request(message).await?;
            plugin.sync_users(sync).await
        });
        serving_request(id, call).await
    }
}

/// The host of a plugin served without access to the core (no host endpoint known, see
/// [`HostSource::Discover`]): every helper answers `Unavailable`; `log` goes to `tracing`.
#[derive(Debug, Default, Clone, Copy)]
pub struct DetachedHost;

fn detached(helper: &str) -> PluginError {
    PluginError::Unavailable(format!(
        "{helper} is not available to this external plugin: no host service endpoint was given (x-nebula-host-endpoint / NEBULA_HOST_ENDPOINT)"
    ))
}

#[async_trait]
impl Host for DetachedHost {
    async fn sync_user(&self, _: &str, _: &SyncUser) -> Result<SyncOutcome, PluginError> {
        Err(detached("sync_user"))
    }
    async fn list_users(&self, _: &str, _: u32, _: u64) -> Result<Vec<DirectoryUser>, PluginError> {
        Err(detached("list_users"))
    }
    async fn set_identity_tag(
        &self,
        _: &str,
        _: &str,
        _: &str,
        _: &str,
    ) -> Result<(), PluginError> {
        Err(detached("set_identity_tag"))
    }
    async fn list_identity_roles(&self) -> Result<Vec<IdentityRole>, PluginError> {
        Err(detached("list_identity_roles"))
    }
    async fn upsert_identity_role(&self, _: &str, _: &IdentityRole) -> Result<(), PluginError> {
        Err(detached("upsert_identity_role"))
    }
    async fn emit_event(&self, _: &str, _: serde_json::Value) -> Result<(), PluginError> {
        Err(detached("emit_event"))
    }
}

#[cfg(test)]
mod tests {
    use super::HostSource;

    #[test]
    fn the_environment_names_a_host_only_with_both_values() {
        let some = |s: &str| Some(s.to_owned());
        assert!(matches!(
            HostSource::from_env_values(some("unix:///run/h.sock"), some("t")),
            HostSource::Remote { endpoint, token } if endpoint == "unix:///run/h.sock" && token == "t"
        ));
        for (endpoint, token) in [
            (None, some("t")),
            (some("unix:///run/h.sock"), None),
            (some(""), some("t")),
            (some("unix:///run/h.sock"), some("")),
        ] {
            assert!(matches!(
                HostSource::from_env_values(endpoint, token),
                HostSource::Discover
            ));
        }
    }
}
