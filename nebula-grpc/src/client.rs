//! A remote PluginService behind the `Plugin` trait.

use std::sync::OnceLock;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use nebula_plugin_api::{async_trait, JsonObject, Plugin, PluginContext, PluginError, SyncRequest};
use prost::bytes::{Buf, BufMut, Bytes};
use prost::Message;
use tonic::client::Grpc;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Code, Request, Status};

use crate::convert::{struct_to_json, value_to_struct};
use crate::endpoint::{EndpointError, GrpcEndpoint};
use crate::{
    cpu_work, echo, HOST_ENDPOINT_METADATA, HOST_TOKEN_METADATA, MAX_ERROR_TEXT, TOKEN_METADATA,
};

/// The gRPC paths of `nebula.plugin.v1.PluginService`.
const HEALTH_PATH: &str = "/nebula.plugin.v1.PluginService/Health";
const SYNC_USERS_PATH: &str = "/nebula.plugin.v1.PluginService/SyncUsers";
/// An answer longer than this (encoded) is decoded and converted on the blocking pool.
pub(crate) const LARGE_ANSWER_BYTES: usize = 64 * 1024;

/// A request with more users than this is encoded on the blocking pool.
const LARGE_REQUEST_USERS: usize = 256;
/// A request with more bytes of user text than this is encoded on the blocking pool.
const LARGE_REQUEST_TEXT: usize = 64 * 1024;

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
///
/// Messages cross the channel as bytes (`RawCodec`): protobuf encoding and decoding, and the
/// Struct ↔ JSON conversion, happen here, on the blocking pool for a large message, so no
/// async worker spends long on one and the manager's timeout answers at its deadline whatever
/// the peer sent.
pub struct GrpcPlugin {
    spec: RemotePluginSpec,
    client: OnceLock<Grpc<Channel>>,
    /// `x-nebula-host-endpoint` and `x-nebula-host-token`, sent with every call when set.
    host: Option<(MetadataValue<Ascii>, MetadataValue<Ascii>)>,
}

impl std::fmt::Debug for GrpcPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcPlugin")
            .field("spec", &self.spec)
            .field("host", &self.host.as_ref().map(|(e, _)| e))
            .finish_non_exhaustive()
    }
}

impl GrpcPlugin {
    /// A plugin for `spec`; nothing is contacted until `initialize`.
    pub fn new(spec: RemotePluginSpec) -> Self {
        GrpcPlugin {
            spec,
            client: OnceLock::new(),
            host: None,
        }
    }

    /// Applies the endpoint policy (on the literal text, before any lookup) and builds a lazy
    /// channel.
    fn connect(&self) -> Result<Grpc<Channel>, PluginError> {
        let endpoint = GrpcEndpoint::parse(&self.spec.endpoint)
            .map_err(|e| PluginError::invalid(e.to_string()))?;
        endpoint
            .check_policy(self.spec.allow_remote)
            .map_err(|e: EndpointError| PluginError::Forbidden(e.to_string()))?;
        let channel = lazy_channel(&endpoint, self.spec.connect_timeout)?;
        Ok(Grpc::new(channel)
            .max_decoding_message_size(self.spec.max_message_bytes)
            .max_encoding_message_size(self.spec.max_message_bytes))
    }

    /// Sends `x-nebula-host-endpoint: endpoint` and `x-nebula-host-token: token` with every
    /// call (SPEC §8 "Delivery"), so the peer's serve helper can reach the host service as this
    /// instance. The core mints the token per instance and passes it here when it builds the
    /// instance. A value that is not valid ASCII metadata is not sent, with a warning.
    pub fn with_host(mut self, endpoint: &str, token: &str) -> Self {
        match (
            MetadataValue::try_from(endpoint),
            MetadataValue::try_from(token),
        ) {
            (Ok(endpoint), Ok(token)) => self.host = Some((endpoint, token)),
            _ => tracing::warn!(
                plugin = %self.spec.name,
                "host endpoint or token is not valid metadata; not sent"
            ),
        }
        self
    }

    fn client(&self) -> Result<Grpc<Channel>, PluginError> {
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
        crate::send_request_id(request.metadata_mut());
        if let Some((endpoint, token)) = &self.host {
            let metadata = request.metadata_mut();
            metadata.insert(HOST_ENDPOINT_METADATA, endpoint.clone());
            metadata.insert(HOST_TOKEN_METADATA, token.clone());
        }
        request
    }

    fn status_error(&self, method: &str, status: Status) -> PluginError {
        let text = format!(
            "peer {} answered {method} with {:?}: {}",
            self.spec.endpoint,
            status.code(),
            echo(status.message(), MAX_ERROR_TEXT)
        );
        match status.code() {
            Code::InvalidArgument => PluginError::InvalidInput(text),
            Code::DeadlineExceeded => PluginError::Timeout(text),
            // Unreachable, refusing our token, or failing: 502 for the admin.
            _ => PluginError::Unavailable(text),
        }
    }

    /// One unary call with an encoded message; answers the encoded answer.
    async fn call(
        &self,
        method: &str,
        path: &'static str,
        message: Bytes,
    ) -> Result<Bytes, PluginError> {
        let mut grpc = self.client()?;
        grpc.ready().await.map_err(|e| {
            self.status_error(method, Status::unknown(format!("channel not ready: {e}")))
        })?;
        let answer = grpc
            .unary(
                self.request(message),
                PathAndQuery::from_static(path),
                RawCodec,
            )
            .await
            .map_err(|s| self.status_error(method, s))?;
        Ok(answer.into_inner())
    }

    /// Decodes and converts a peer's answer; a large one on the blocking pool.
    async fn answer(&self, method: &str, answer: Bytes) -> Result<JsonObject, PluginError> {
        let large = answer.len() > LARGE_ANSWER_BYTES;
        let converted = cpu_work(large, move || -> Result<JsonObject, String> {
            let message = prost_types::Struct::decode(answer)
                .map_err(|e| format!("a message that is not a google.protobuf.Struct: {e}"))?;
            struct_to_json(&message).map_err(|e| format!("an invalid value: {e}"))
        })
        .await
        .map_err(|e| {
            PluginError::internal(format!("converting the answer to {method} failed: {e}"))
        })?;
        converted.map_err(|e| {
            PluginError::Unavailable(format!(
                "peer {} answered {method} with {e}",
                self.spec.endpoint
            ))
        })
    }
}

/// A lazy channel to `endpoint` (the policy already applied): it connects on the first call,
/// again after a failure, and gives up connecting after `connect_timeout`.
pub(crate) fn lazy_channel(
    endpoint: &GrpcEndpoint,
    connect_timeout: Duration,
) -> Result<Channel, PluginError> {
    Ok(match endpoint {
        GrpcEndpoint::Tcp { .. } => {
            let uri = endpoint.http_uri().unwrap_or_default();
            Endpoint::from_shared(uri)
                .map_err(|e| PluginError::invalid(format!("endpoint: {e}")))?
                .connect_timeout(connect_timeout)
                .tcp_nodelay(true)
                .connect_lazy()
        }
        GrpcEndpoint::Unix(path) => {
            let path = path.clone();
            // The URI is required by the API but unused: the connector dials the socket.
            Endpoint::from_static("http://unix.socket")
                .connect_timeout(connect_timeout)
                .connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move {
                        let stream = tokio::net::UnixStream::connect(path).await?;
                        Ok::<_, std::io::Error>(TokioIo::new(stream))
                    }
                }))
        }
    })
}

/// Whether encoding `request` is worth moving off the async worker.
fn request_is_large(request: &SyncRequest) -> bool {
    let users = request.users.as_deref().unwrap_or_default();
    users.len() > LARGE_REQUEST_USERS
        || users
            .iter()
            .map(|u| {
                u.username.len()
                    + u.db_name.len()
                    + u.role_tag.len()
                    + u.email.as_ref().map_or(0, String::len)
            })
            .sum::<usize>()
            > LARGE_REQUEST_TEXT
}

/// The validated request as the encoded Struct a peer receives (every field present).
fn encode_request(request: &SyncRequest) -> Result<Bytes, PluginError> {
    let value = serde_json::to_value(request)
        .map_err(|e| PluginError::internal(format!("cannot encode the request: {e}")))?;
    let message = value_to_struct(&value).map_err(|e| PluginError::invalid(e.to_string()))?;
    Ok(Bytes::from(message.encode_to_vec()))
}

/// Passes already encoded messages through: encoding and decoding happen in [`GrpcPlugin`],
/// where a large message can be moved to the blocking pool. The channel still enforces the
/// message size limits.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
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
        // google.protobuf.Empty encodes to nothing.
        let answer = self.call("Health", HEALTH_PATH, Bytes::new()).await?;
        self.answer("Health", answer).await
    }

    async fn sync_users(&self, request: SyncRequest) -> Result<JsonObject, PluginError> {
        let message = cpu_work(request_is_large(&request), move || encode_request(&request))
            .await
            .map_err(|e| PluginError::internal(format!("encoding the request failed: {e}")))??;
        let answer = self.call("SyncUsers", SYNC_USERS_PATH, message).await?;
        self.answer("SyncUsers", answer).await
    }
}
