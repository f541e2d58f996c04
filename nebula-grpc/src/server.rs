//! Exposes any `Plugin` as a `nebula.plugin.v1.PluginService`.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nebula_plugin_api::guard::{guarded, CallFailure};
use nebula_plugin_api::token::tokens_match;
use nebula_plugin_api::{
    async_trait, DirectoryUser, ErrorKind, Host, IdentityRole, JsonObject, Plugin, PluginContext,
    PluginError, ScopeSet, SyncOutcome, SyncRequest, SyncUser,
};
use tokio::net::{TcpListener, UnixListener};
use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};
use tonic::{Request, Response, Status};

use crate::convert::{json_is_large, json_to_struct, struct_is_large, struct_to_json};
use crate::endpoint::{EndpointError, GrpcEndpoint};
use crate::proto::plugin_service_server::{PluginService, PluginServiceServer};
use crate::{cpu_work, echo, MAX_ERROR_TEXT, TOKEN_METADATA};

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

/// Options of [`serve`].
pub struct ServeOptions {
    /// The plugin's name (the context's namespace for events and logs).
    pub name: String,
    /// When set and non-empty, calls must carry this `x-nebula-token`.
    pub token: Option<String>,
    /// What the plugin's context calls. Default: [`DetachedHost`], which refuses every helper
    /// because v1 has no callback channel to the core.
    pub host: Arc<dyn Host>,
    /// Scopes of the plugin's context.
    pub scopes: ScopeSet,
    /// Largest message either way.
    pub max_message_bytes: usize,
    /// Bound on each plugin call.
    pub call_timeout: Duration,
}

impl ServeOptions {
    /// Defaults: no token, detached host, all scopes, 8 MiB messages, 30 s calls.
    pub fn new(name: impl Into<String>) -> Self {
        ServeOptions {
            name: name.into(),
            token: None,
            host: Arc::new(DetachedHost),
            scopes: ScopeSet::all(),
            max_message_bytes: 8 * 1024 * 1024,
            call_timeout: Duration::from_secs(30),
        }
    }
}

/// A listener bound for [`serve_bound`].
pub enum BoundListener {
    /// TCP.
    Tcp(TcpListener),
    /// Unix socket (the file is removed when serving ends).
    Unix(UnixListener, PathBuf),
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

async fn remove_stale_socket(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    match tokio::fs::symlink_metadata(path).await {
        Ok(meta) if meta.file_type().is_socket() => tokio::fs::remove_file(path).await,
        Ok(_) => Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket", path.display()),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Binds `endpoint`, initialises `plugin` and serves until `shutdown` resolves; then calls the
/// plugin's `shutdown`.
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
    let ctx = PluginContext::new(
        options.name.as_str(),
        options.scopes.clone(),
        options.host.clone(),
    );
    plugin
        .initialize(ctx)
        .await
        .map_err(ServeError::Initialize)?;
    let service = PluginServiceServer::new(Bridge {
        plugin: plugin.clone(),
        token: options.token.filter(|t| !t.is_empty()),
        call_timeout: options.call_timeout,
    })
    .max_decoding_message_size(options.max_message_bytes)
    .max_encoding_message_size(options.max_message_bytes);
    let router = tonic::transport::Server::builder().add_service(service);
    let served = match listener {
        BoundListener::Tcp(l) => {
            router
                .serve_with_incoming_shutdown(TcpListenerStream::new(l), shutdown)
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
    if let Err(e) = plugin.shutdown().await {
        tracing::warn!(plugin = %options.name, error = %e, "plugin shutdown failed");
    }
    Ok(served?)
}

struct Bridge {
    plugin: Arc<dyn Plugin>,
    token: Option<String>,
    call_timeout: Duration,
}

impl Bridge {
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
        self.authorize(&request)?;
        let plugin = self.plugin.clone();
        self.run(async move { plugin.health().await }).await
    }

    async fn sync_users(
        &self,
        request: Request<prost_types::Struct>,
    ) -> Result<Response<prost_types::Struct>, Status> {
        self.authorize(&request)?;
        let message = request.into_inner();
        let plugin = self.plugin.clone();
        // Converting and validating the request is part of the bounded call.
        self.run(async move {
            let sync = decode_request(message).await?;
            plugin.sync_users(sync).await
        })
        .await
    }
}

/// The host of a plugin served without access to the core: plugin_api_v1 has no callback
/// channel, so every helper answers `Unavailable`; `log` goes to `tracing`.
#[derive(Debug, Default, Clone, Copy)]
pub struct DetachedHost;

fn detached(helper: &str) -> PluginError {
    PluginError::Unavailable(format!(
        "{helper} is not available to an external plugin: plugin_api_v1 has no callback channel to the core"
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
