//! A remote PluginService behind the `Plugin` trait.

use std::sync::OnceLock;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use nebula_plugin_api::{async_trait, JsonObject, Plugin, PluginContext, PluginError, SyncRequest};
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Code, Request, Status};

use crate::convert::{struct_to_json, value_to_struct};
use crate::endpoint::{EndpointError, GrpcEndpoint};
use crate::proto::plugin_service_client::PluginServiceClient;
use crate::TOKEN_METADATA;

/// How to reach one external plugin.
#[derive(Clone)]
pub struct RemotePluginSpec {
    /// The plugin's name (for messages).
    pub name: String,
    /// `host:port`, `http://host:port` or `unix:///path`.
    pub endpoint: String,
    /// Sent as `x-nebula-token` metadata on every call when set and non-empty.
    pub token: Option<String>,
    /// The manager's call timeout; each call's gRPC deadline is set a little above it so the
    /// manager's own timer decides (504), not tonic's.
    pub call_timeout: Duration,
    /// Bound on establishing a connection, so a dead peer fails fast.
    pub connect_timeout: Duration,
    /// Allow endpoints outside loopback.
    pub allow_remote: bool,
    /// Largest message either way (the server's body limit).
    pub max_message_bytes: usize,
}

impl std::fmt::Debug for RemotePluginSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemotePluginSpec")
            .field("name", &self.name)
            .field("endpoint", &self.endpoint)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("call_timeout", &self.call_timeout)
            .finish_non_exhaustive()
    }
}

/// An external plugin. Connects lazily on the first call and reconnects by itself after the
/// peer restarts; a peer that is down fails the call at once (connection refused) or within
/// `connect_timeout`, never the full call timeout.
#[derive(Debug)]
pub struct GrpcPlugin {
    spec: RemotePluginSpec,
    client: OnceLock<PluginServiceClient<Channel>>,
}

impl GrpcPlugin {
    /// A plugin for `spec`; nothing is contacted until `initialize`.
    pub fn new(spec: RemotePluginSpec) -> Self {
        GrpcPlugin {
            spec,
            client: OnceLock::new(),
        }
    }

    /// Applies the endpoint policy (on the literal text, before any lookup) and builds a lazy
    /// channel.
    fn connect(&self) -> Result<PluginServiceClient<Channel>, PluginError> {
        let endpoint = GrpcEndpoint::parse(&self.spec.endpoint)
            .map_err(|e| PluginError::invalid(e.to_string()))?;
        endpoint
            .check_policy(self.spec.allow_remote)
            .map_err(|e: EndpointError| PluginError::Forbidden(e.to_string()))?;
        let channel = match &endpoint {
            GrpcEndpoint::Tcp { .. } => {
                let uri = endpoint.http_uri().unwrap_or_default();
                Endpoint::from_shared(uri)
                    .map_err(|e| PluginError::invalid(format!("endpoint: {e}")))?
                    .connect_timeout(self.spec.connect_timeout)
                    .tcp_nodelay(true)
                    .connect_lazy()
            }
            GrpcEndpoint::Unix(path) => {
                let path = path.clone();
                // The URI is required by the API but unused: the connector dials the socket.
                Endpoint::from_static("http://unix.socket")
                    .connect_timeout(self.spec.connect_timeout)
                    .connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
                        let path = path.clone();
                        async move {
                            let stream = tokio::net::UnixStream::connect(path).await?;
                            Ok::<_, std::io::Error>(TokioIo::new(stream))
                        }
                    }))
            }
        };
        Ok(PluginServiceClient::new(channel)
            .max_decoding_message_size(self.spec.max_message_bytes)
            .max_encoding_message_size(self.spec.max_message_bytes))
    }

    fn client(&self) -> Result<PluginServiceClient<Channel>, PluginError> {
        self.client.get().cloned().ok_or_else(|| {
            PluginError::internal(format!("plugin '{}' is not initialised", self.spec.name))
        })
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        // A little longer than the manager's own bound, so that on a slow peer the manager's
        // timer fires first and the admin sees 504 (tonic's own would surface as CANCELLED).
        request.set_timeout(self.spec.call_timeout.mul_f64(1.1) + Duration::from_millis(100));
        if let Some(token) = self.spec.token.as_deref().filter(|t| !t.is_empty()) {
            match MetadataValue::try_from(token) {
                Ok(value) => {
                    request.metadata_mut().insert(TOKEN_METADATA, value);
                }
                Err(_) => {
                    tracing::warn!(plugin = %self.spec.name, "token is not valid metadata; not sent")
                }
            }
        }
        request
    }

    fn status_error(&self, method: &str, status: Status) -> PluginError {
        let text = format!(
            "peer {} answered {method} with {:?}: {}",
            self.spec.endpoint,
            status.code(),
            status.message()
        );
        match status.code() {
            Code::InvalidArgument => PluginError::InvalidInput(text),
            Code::DeadlineExceeded => PluginError::Timeout(text),
            // Unreachable, refusing our token, or failing: 502 for the admin.
            _ => PluginError::Unavailable(text),
        }
    }

    fn answer(&self, method: &str, answer: prost_types::Struct) -> Result<JsonObject, PluginError> {
        struct_to_json(&answer).map_err(|e| {
            PluginError::Unavailable(format!(
                "peer {} answered {method} with an invalid value: {e}",
                self.spec.endpoint
            ))
        })
    }
}

#[async_trait]
impl Plugin for GrpcPlugin {
    /// v1 has no callback channel, so the context is not forwarded: an external plugin works
    /// with what its request carries (see docs/EXTERNAL_PLUGINS.md).
    async fn initialize(&self, _ctx: PluginContext) -> Result<(), PluginError> {
        let client = self.connect()?;
        let _ = self.client.set(client);
        Ok(())
    }

    async fn health(&self) -> Result<JsonObject, PluginError> {
        let mut client = self.client()?;
        let answer = client
            .health(self.request(()))
            .await
            .map_err(|s| self.status_error("Health", s))?;
        self.answer("Health", answer.into_inner())
    }

    async fn sync_users(&self, request: SyncRequest) -> Result<JsonObject, PluginError> {
        let mut client = self.client()?;
        let value = serde_json::to_value(&request)
            .map_err(|e| PluginError::internal(format!("cannot encode the request: {e}")))?;
        let message = value_to_struct(&value).map_err(|e| PluginError::invalid(e.to_string()))?;
        let answer = client
            .sync_users(self.request(message))
            .await
            .map_err(|s| self.status_error("SyncUsers", s))?;
        self.answer("SyncUsers", answer.into_inner())
    }
}
