//! The core's side of `nebula.host.v1.HostService` (SPEC §8): the scoped context of a plugin
//! that runs out of process.
//!
//! Each call is authenticated by its `x-nebula-host-token` metadata through [`HostTokens`],
//! which the core implements (it mints one token per plugin instance and revokes it when the
//! instance goes away). The token yields that instance's [`PluginContext`], and every RPC is a
//! thin translation onto it: the scope check, the validation and the normalisation are the
//! context's, the very code an in-process plugin goes through. Errors become statuses through
//! [`status_of_error`] only.
//!
//! To serve: [`host_service`] gives a tonic service to add to a router of your own;
//! [`serve_host_service`] serves it on a [`BoundListener`] (TCP, or a unix socket bound with
//! [`bind_private_socket`], file mode 0600).

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use nebula_plugin_api::{
    normalize_db_name, IdentityRole, LogLevel, PluginContext, PluginError, SyncUser,
    MAX_USERS_PER_REQUEST,
};
use prost_types::Struct;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, Status};

use crate::convert::{json_is_large, json_to_struct, struct_is_large, struct_to_json};
use crate::endpoint::GrpcEndpoint;
use crate::host_proto::host_service_server::{HostService, HostServiceServer};
use crate::host_proto::{
    EmitEventRequest, ListIdentityRolesReply, ListUsersReply, ListUsersRequest, LogRequest, Role,
    SetIdentityTagRequest, SyncUserReply, SyncUserRequest, SyncUserResult, SyncUsersReply,
    SyncUsersRequest, User,
};
use crate::server::{BoundListener, ServeError};
use crate::status::{error_kind_name, status_of_error};
use crate::{cpu_work, echo, HOST_TOKEN_METADATA, MAX_ERROR_TEXT};

/// Users of a bulk `SyncUsers` handed to the context at a time; the handler yields to the
/// runtime between batches, so a call of 10,000 users never holds an async worker for long.
const BULK_BATCH: usize = 256;

/// The seam the core implements: from a host token to the context of the plugin instance it
/// was minted for.
///
/// The context carries the plugin's name, its granted scopes (declared ∩ v1 ∩ granted) and its
/// settings (`PluginContext::with_settings`), exactly as the core builds it for an in-process
/// plugin, over the core's `Host`. `None` (an unknown, revoked or expired token) is answered
/// `UNAUTHENTICATED`. Called once per RPC: keep it a map lookup. Tokens carry at least
/// 32 bytes of randomness (SPEC §8); compare them in constant time or look them up by a hash.
pub trait HostTokens: Send + Sync + 'static {
    /// The context of the instance `token` was minted for, if the token is live.
    fn context(&self, token: &str) -> Option<PluginContext>;
}

impl<F> HostTokens for F
where
    F: Fn(&str) -> Option<PluginContext> + Send + Sync + 'static,
{
    fn context(&self, token: &str) -> Option<PluginContext> {
        self(token)
    }
}

/// Options of the host service.
#[derive(Debug, Clone)]
pub struct HostServiceOptions {
    /// Largest message either way (default 8 MiB, like `ServeOptions::max_message_bytes`;
    /// the core passes `server.max_body_bytes`).
    pub max_message_bytes: usize,
    /// Bound on each call on the server's side, on top of the caller's own deadline (which
    /// tonic also enforces). Default 30 s.
    pub call_timeout: Duration,
}

impl Default for HostServiceOptions {
    fn default() -> Self {
        HostServiceOptions {
            max_message_bytes: 8 * 1024 * 1024,
            call_timeout: Duration::from_secs(30),
        }
    }
}

/// The `HostService` implementation: authenticates, then translates onto the context.
pub struct HostServiceImpl {
    tokens: Arc<dyn HostTokens>,
}

impl std::fmt::Debug for HostServiceImpl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostServiceImpl").finish_non_exhaustive()
    }
}

/// The host service as a tonic service (message limits applied), to add to a router.
pub fn host_service(
    tokens: Arc<dyn HostTokens>,
    options: &HostServiceOptions,
) -> HostServiceServer<HostServiceImpl> {
    HostServiceServer::new(HostServiceImpl { tokens })
        .max_decoding_message_size(options.max_message_bytes)
        .max_encoding_message_size(options.max_message_bytes)
}

/// Binds a unix socket at `path` for the host service, its file mode 0600 (only the core's
/// user may connect). The parent directory is used as given: the core passes its private data
/// directory (0700). A stale socket file is replaced; any other file there is an error.
pub async fn bind_private_socket(path: &Path) -> Result<BoundListener, ServeError> {
    use std::os::unix::fs::PermissionsExt;
    let endpoint = format!("unix://{}", path.display());
    let listener = BoundListener::bind(&endpoint).await?;
    tokio::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).await?;
    Ok(listener)
}

/// Binds the host service's listener for `endpoint`: a unix socket through
/// [`bind_private_socket`] (mode 0600), or a TCP address (`plugins.host_service.bind`), which
/// must be loopback unless `allow_remote` (the core passes `plugins.allow_remote_grpc`). The
/// rule is decided on the literal text, before anything is bound. Port 0 picks a free port;
/// [`BoundListener::endpoint`] then tells it (to send as `x-nebula-host-endpoint`).
pub async fn bind_host_listener(
    endpoint: &str,
    allow_remote: bool,
) -> Result<BoundListener, ServeError> {
    match GrpcEndpoint::parse_listen(endpoint)? {
        GrpcEndpoint::Unix(path) => bind_private_socket(&path).await,
        tcp => {
            // Every call carries a token, so only the address rule applies.
            tcp.check_listen_policy(true, allow_remote)?;
            BoundListener::bind(endpoint).await
        }
    }
}

/// Serves the host service on `listener` until `shutdown` resolves (a unix socket file is
/// removed at the end).
pub async fn serve_host_service<F>(
    tokens: Arc<dyn HostTokens>,
    listener: BoundListener,
    options: HostServiceOptions,
    shutdown: F,
) -> Result<(), ServeError>
where
    F: Future<Output = ()> + Send,
{
    let router = tonic::transport::Server::builder()
        .timeout(options.call_timeout)
        .add_service(host_service(tokens, &options));
    match listener {
        BoundListener::Tcp(l) => Ok(router
            .serve_with_incoming_shutdown(crate::server::tcp_incoming(l), shutdown)
            .await?),
        BoundListener::Unix(l, path) => {
            let result = router
                .serve_with_incoming_shutdown(UnixListenerStream::new(l), shutdown)
                .await;
            let _ = tokio::fs::remove_file(path).await;
            Ok(result?)
        }
    }
}

impl HostServiceImpl {
    /// The context named by the call's `x-nebula-host-token`, or `UNAUTHENTICATED`.
    fn context<T>(&self, request: &Request<T>) -> Result<PluginContext, Status> {
        request
            .metadata()
            .get(HOST_TOKEN_METADATA)
            .and_then(|v| v.to_str().ok())
            .filter(|t| !t.is_empty())
            .and_then(|token| self.tokens.context(token))
            .ok_or_else(|| Status::unauthenticated("missing or unknown x-nebula-host-token"))
    }
}

fn sync_user_of(request: SyncUserRequest) -> SyncUser {
    SyncUser {
        username: request.username,
        db_name: request.db_name,
        role_tag: request.role_tag,
        email: request.email,
        is_active: request.is_active,
    }
}

fn status(error: PluginError) -> Status {
    status_of_error(&error)
}

fn level_of(raw: &str) -> Result<LogLevel, Status> {
    match raw {
        "debug" => Ok(LogLevel::Debug),
        "info" => Ok(LogLevel::Info),
        "warn" => Ok(LogLevel::Warn),
        "error" => Ok(LogLevel::Error),
        other => Err(status(PluginError::invalid(format!(
            "level '{}': expected debug, info, warn or error",
            echo(other, 64)
        )))),
    }
}

#[tonic::async_trait]
impl HostService for HostServiceImpl {
    async fn sync_user(
        &self,
        request: Request<SyncUserRequest>,
    ) -> Result<Response<SyncUserReply>, Status> {
        let ctx = self.context(&request)?;
        let user = sync_user_of(request.into_inner());
        let outcome = ctx.sync_user(&user).await.map_err(status)?;
        Ok(Response::new(SyncUserReply {
            outcome: outcome.as_str().to_owned(),
        }))
    }

    async fn sync_users(
        &self,
        request: Request<SyncUsersRequest>,
    ) -> Result<Response<SyncUsersReply>, Status> {
        let ctx = self.context(&request)?;
        let requested = request.into_inner().users;
        if requested.len() > MAX_USERS_PER_REQUEST {
            return Err(status(PluginError::invalid(format!(
                "users: at most {MAX_USERS_PER_REQUEST} per call, got {}",
                requested.len()
            ))));
        }
        let mut results = Vec::with_capacity(requested.len());
        let mut requested = requested.into_iter().peekable();
        while requested.peek().is_some() {
            let batch: Vec<SyncUser> = requested
                .by_ref()
                .take(BULK_BATCH)
                .map(sync_user_of)
                .collect();
            // A missing scope refuses the whole call before anything is written.
            let outcomes = ctx.sync_users(&batch).await.map_err(status)?;
            for (user, outcome) in batch.into_iter().zip(outcomes) {
                results.push(match outcome {
                    Ok(outcome) => SyncUserResult {
                        username: user.username,
                        outcome: outcome.as_str().to_owned(),
                        error: String::new(),
                        code: String::new(),
                    },
                    Err(e) => SyncUserResult {
                        username: user.username,
                        outcome: String::new(),
                        error: echo(&e.to_string(), MAX_ERROR_TEXT),
                        code: error_kind_name(&e).to_owned(),
                    },
                });
            }
            tokio::task::yield_now().await;
        }
        Ok(Response::new(SyncUsersReply { results }))
    }

    async fn list_users(
        &self,
        request: Request<ListUsersRequest>,
    ) -> Result<Response<ListUsersReply>, Status> {
        let ctx = self.context(&request)?;
        let request = request.into_inner();
        let users = ctx
            .list_users(&request.db_name, request.limit, request.offset)
            .await
            .map_err(status)?;
        // The context accepted the name, so its canonical form exists.
        let db_name = normalize_db_name(&request.db_name).map_err(status)?;
        Ok(Response::new(ListUsersReply {
            users: users
                .into_iter()
                .map(|u| User {
                    username: u.username,
                    db_name: db_name.clone(),
                    role_tag: u.role_tag,
                    email: u.email,
                    is_active: u.is_active,
                    is_staff: u.is_staff,
                    synced_by: u.synced_by,
                })
                .collect(),
        }))
    }

    async fn set_identity_tag(
        &self,
        request: Request<SetIdentityTagRequest>,
    ) -> Result<Response<()>, Status> {
        let ctx = self.context(&request)?;
        let r = request.into_inner();
        ctx.set_identity_tag(&r.username, &r.db_name, &r.role_tag)
            .await
            .map_err(status)?;
        Ok(Response::new(()))
    }

    async fn list_identity_roles(
        &self,
        request: Request<()>,
    ) -> Result<Response<ListIdentityRolesReply>, Status> {
        let ctx = self.context(&request)?;
        let roles = ctx.list_identity_roles().await.map_err(status)?;
        Ok(Response::new(ListIdentityRolesReply {
            roles: roles
                .into_iter()
                .map(|r| Role {
                    name: r.name,
                    description: r.description,
                    is_staff: r.is_staff,
                })
                .collect(),
        }))
    }

    async fn upsert_identity_role(&self, request: Request<Role>) -> Result<Response<()>, Status> {
        let ctx = self.context(&request)?;
        let r = request.into_inner();
        let role = IdentityRole {
            name: r.name,
            description: r.description,
            is_staff: r.is_staff,
        };
        ctx.upsert_identity_role(&role).await.map_err(status)?;
        Ok(Response::new(()))
    }

    async fn emit_event(&self, request: Request<EmitEventRequest>) -> Result<Response<()>, Status> {
        let ctx = self.context(&request)?;
        let r = request.into_inner();
        let payload = match r.payload {
            None => serde_json::Value::Null,
            Some(payload) => {
                let object = cpu_work(struct_is_large(&payload), move || struct_to_json(&payload))
                    .await
                    .map_err(|e| status(PluginError::internal(format!("payload: {e}"))))?
                    .map_err(|e| status(PluginError::invalid(format!("payload: {e}"))))?;
                serde_json::Value::Object(object)
            }
        };
        ctx.emit_event(&r.name, payload).await.map_err(status)?;
        Ok(Response::new(()))
    }

    async fn log(&self, request: Request<LogRequest>) -> Result<Response<()>, Status> {
        let ctx = self.context(&request)?;
        let request_id = crate::received_request_id(request.metadata());
        let r = request.into_inner();
        let level = level_of(&r.level)?;
        // The line of an out-of-process plugin names the request its call served, as an
        // in-process plugin's does.
        match request_id {
            Some(id) => nebula_plugin_api::request_id::request_span(&id)
                .in_scope(|| ctx.log(level, &r.message)),
            None => ctx.log(level, &r.message),
        }
        Ok(Response::new(()))
    }

    async fn get_settings(&self, request: Request<()>) -> Result<Response<Struct>, Status> {
        let ctx = self.context(&request)?;
        let settings = ctx.settings_json().clone();
        let converted = cpu_work(json_is_large(&settings), move || json_to_struct(&settings))
            .await
            .map_err(|e| status(PluginError::internal(format!("settings: {e}"))))?
            .map_err(|e| status(PluginError::internal(format!("settings: {e}"))))?;
        Ok(Response::new(converted))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::EndpointError;

    #[tokio::test]
    async fn tcp_listeners_are_loopback_unless_allowed_and_sockets_private() {
        let local = bind_host_listener("127.0.0.1:0", false).await.unwrap();
        assert!(local.endpoint().starts_with("http://127.0.0.1:"));
        let refused = bind_host_listener("0.0.0.0:0", false).await.unwrap_err();
        assert!(matches!(
            refused,
            ServeError::Endpoint(EndpointError::ListenRemoteRefused(_))
        ));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.sock");
        let unix = bind_host_listener(&format!("unix://{}", path.display()), false)
            .await
            .unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(unix.endpoint(), format!("unix://{}", path.display()));
    }

    #[test]
    fn log_levels_are_the_four_names() {
        assert_eq!(level_of("warn").unwrap(), LogLevel::Warn);
        let status = level_of("WARNING").unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().starts_with("level 'WARNING'"));
    }
}
