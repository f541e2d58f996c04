//! The plugin's side of the host service: [`RemoteHost`], a [`Host`] over a
//! `nebula.host.v1.HostService` client, so a plugin out of process has the same
//! [`PluginContext`] as a linked one.
//!
//! Every call carries the host token (`x-nebula-host-token`) and a deadline, and is bounded
//! by the message size limit. Statuses come back as the very `PluginError` the core's context
//! returned ([`error_of_status`]). The plugin's own context checks its scopes first (the serve
//! helper gives it all of them), then the core checks the granted ones: the core's check is the
//! one that counts.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use nebula_plugin_api::{
    async_trait, trace_plugin_log, DirectoryUser, Host, IdentityRole, JsonObject, LogLevel,
    PluginContext, PluginError, ScopeSet, SyncOutcome, SyncUser, MAX_USERS_PER_REQUEST,
};
use prost::bytes::Bytes;
use prost::Message;
use tokio::sync::{mpsc, oneshot};
use tonic::client::Grpc;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;
use tonic::Request;

use crate::client::{lazy_channel, RawCodec, LARGE_ANSWER_BYTES};
use crate::convert::{json_is_large, json_to_struct, struct_is_large, struct_to_json};
use crate::endpoint::{EndpointError, GrpcEndpoint};
use crate::host_proto::{
    EmitEventRequest, ListIdentityRolesReply, ListUsersReply, ListUsersRequest, LogRequest, Role,
    SetIdentityTagRequest, SyncUserReply, SyncUserRequest, SyncUsersReply, SyncUsersRequest,
};
use crate::status::{error_of_kind, error_of_status};
use crate::{cpu_work, HOST_TOKEN_METADATA};

const SERVICE: &str = "/nebula.host.v1.HostService/";
/// A bulk call with more users than this is encoded on the blocking pool.
const LARGE_BULK: usize = 256;
/// Log lines waiting to be sent; beyond this a line goes to the local `tracing` only.
const LOG_QUEUE: usize = 1024;

/// Options of a [`RemoteHost`].
#[derive(Debug, Clone)]
pub struct RemoteHostOptions {
    /// The deadline of each call (sent as `grpc-timeout` and enforced by the channel).
    /// Default 10 s; the serve helper uses its `call_timeout`.
    pub call_timeout: Duration,
    /// Bound on establishing a connection. Default 2 s.
    pub connect_timeout: Duration,
    /// Largest message either way. Default 8 MiB; a bulk `sync_users` is split to fit.
    pub max_message_bytes: usize,
    /// Allow a host endpoint outside loopback (default false: loopback and unix sockets only,
    /// the same rule as the core's `plugins.allow_remote_grpc`).
    pub allow_remote: bool,
}

impl Default for RemoteHostOptions {
    fn default() -> Self {
        RemoteHostOptions {
            call_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(2),
            max_message_bytes: 8 * 1024 * 1024,
            allow_remote: false,
        }
    }
}

/// Why a [`RemoteHost`] cannot be built or re-targeted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteHostError {
    /// The endpoint is malformed or refused by the loopback policy.
    #[error("host endpoint: {0}")]
    Endpoint(#[from] EndpointError),
    /// The token is empty or not valid ASCII metadata.
    #[error("host token: empty or not valid gRPC metadata")]
    Token,
    /// The channel could not be built.
    #[error("host endpoint: {0}")]
    Channel(String),
}

/// Where calls go: the endpoint, its channel and the token.
struct Target {
    endpoint: String,
    token_text: String,
    token: MetadataValue<Ascii>,
    grpc: Grpc<Channel>,
}

/// What the host and its log task share.
struct Shared {
    options: RemoteHostOptions,
    target: RwLock<Arc<Target>>,
}

enum LogItem {
    /// Plugin, level, message, and the request id of the call that logged it.
    Line(String, LogLevel, String, Option<Arc<str>>),
    Flush(oneshot::Sender<()>),
}

/// A [`Host`] over the core's host service (see the [module](self) docs).
///
/// The channel is lazy (nothing is contacted until the first call) and reconnects by itself.
/// [`retarget`](Self::retarget) swaps the endpoint or token in place (the core mints a new
/// token for every instance it builds), so a context handed to the plugin stays valid.
///
/// `Host::log` cannot wait: lines are queued (in order, up to 1024) and sent by a task of
/// their own; a line that cannot be queued or sent goes to the process's `tracing` instead.
pub struct RemoteHost {
    shared: Arc<Shared>,
    logs: Option<mpsc::Sender<LogItem>>,
}

impl std::fmt::Debug for RemoteHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteHost")
            .field("endpoint", &self.endpoint())
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn current(&self) -> Arc<Target> {
        self.target
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// One unary call: `request` encoded (on the blocking pool when `large`), sent with the
    /// token and the deadline, the answer decoded (on the blocking pool when large).
    async fn call<Q, A>(
        &self,
        method: &'static str,
        request: Q,
        large: bool,
    ) -> Result<A, PluginError>
    where
        Q: Message + Send + 'static,
        A: Message + Default + Send + 'static,
    {
        let target = self.current();
        let encoded = cpu_work(large, move || Bytes::from(request.encode_to_vec()))
            .await
            .map_err(|e| PluginError::internal(format!("encoding {method} failed: {e}")))?;
        let mut grpc = target.grpc.clone();
        grpc.ready().await.map_err(|e| {
            PluginError::Unavailable(format!(
                "host service at {} not reachable: {e}",
                target.endpoint
            ))
        })?;
        let mut call = Request::new(encoded);
        call.set_timeout(self.options.call_timeout);
        call.metadata_mut()
            .insert(HOST_TOKEN_METADATA, target.token.clone());
        crate::send_request_id(call.metadata_mut());
        let path = PathAndQuery::try_from(format!("{SERVICE}{method}"))
            .map_err(|e| PluginError::internal(format!("{method}: {e}")))?;
        let answer = grpc
            .unary(call, path, RawCodec)
            .await
            .map_err(|s| error_of_status(&s))?
            .into_inner();
        cpu_work(answer.len() > LARGE_ANSWER_BYTES, move || A::decode(answer))
            .await
            .map_err(|e| PluginError::internal(format!("decoding {method} failed: {e}")))?
            .map_err(|e| {
                PluginError::Unavailable(format!(
                    "host service at {} answered {method} with an invalid message: {e}",
                    target.endpoint
                ))
            })
    }
}

fn target(
    endpoint: &str,
    token: &str,
    options: &RemoteHostOptions,
) -> Result<Target, RemoteHostError> {
    let parsed = GrpcEndpoint::parse(endpoint)?;
    parsed.check_policy(options.allow_remote)?;
    let token_value = MetadataValue::try_from(token)
        .ok()
        .filter(|_| !token.is_empty())
        .ok_or(RemoteHostError::Token)?;
    let channel = lazy_channel(&parsed, options.connect_timeout)
        .map_err(|e| RemoteHostError::Channel(e.to_string()))?;
    Ok(Target {
        endpoint: parsed.to_string(),
        token_text: token.to_owned(),
        token: token_value,
        grpc: Grpc::new(channel)
            .max_decoding_message_size(options.max_message_bytes)
            .max_encoding_message_size(options.max_message_bytes),
    })
}

impl RemoteHost {
    /// A host for the service at `endpoint` (`unix:///path`, `http://127.0.0.1:PORT`, …),
    /// calling with `token`. Nothing is contacted yet. Inside a tokio runtime, the log task is
    /// started; outside one, log lines go to `tracing` only.
    pub fn new(
        endpoint: &str,
        token: &str,
        options: RemoteHostOptions,
    ) -> Result<Self, RemoteHostError> {
        let target = target(endpoint, token, &options)?;
        let shared = Arc::new(Shared {
            options,
            target: RwLock::new(Arc::new(target)),
        });
        let logs = tokio::runtime::Handle::try_current().ok().map(|runtime| {
            let (tx, rx) = mpsc::channel(LOG_QUEUE);
            runtime.spawn(send_logs(shared.clone(), rx));
            tx
        });
        Ok(RemoteHost { shared, logs })
    }

    /// The endpoint calls go to, as a client writes it.
    pub fn endpoint(&self) -> String {
        self.shared.current().endpoint.clone()
    }

    /// Sends later calls to `endpoint` with `token`. Answers whether anything changed; the
    /// channel is kept when only the token changed.
    pub fn retarget(&self, endpoint: &str, token: &str) -> Result<bool, RemoteHostError> {
        let current = self.shared.current();
        let parsed = GrpcEndpoint::parse(endpoint)?.to_string();
        if parsed == current.endpoint && token == current.token_text {
            return Ok(false);
        }
        let next = if parsed == current.endpoint {
            let token_value = MetadataValue::try_from(token)
                .ok()
                .filter(|_| !token.is_empty())
                .ok_or(RemoteHostError::Token)?;
            Target {
                endpoint: current.endpoint.clone(),
                token_text: token.to_owned(),
                token: token_value,
                grpc: current.grpc.clone(),
            }
        } else {
            target(endpoint, token, &self.shared.options)?
        };
        *self
            .shared
            .target
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(next);
        Ok(true)
    }

    /// The plugin's settings (`GetSettings`: its `[plugins.settings.<name>]` table).
    pub async fn settings(&self) -> Result<JsonObject, PluginError> {
        let answer: prost_types::Struct = self.shared.call("GetSettings", (), false).await?;
        cpu_work(struct_is_large(&answer), move || struct_to_json(&answer))
            .await
            .map_err(|e| PluginError::internal(format!("settings: {e}")))?
            .map_err(|e| PluginError::Unavailable(format!("settings: {e}")))
    }

    /// A context for `plugin` with `scopes` over this host and the settings fetched from it:
    /// `PluginContext::new(plugin, scopes, host).with_settings(host.settings())`.
    pub async fn context(
        self: &Arc<Self>,
        plugin: &str,
        scopes: ScopeSet,
    ) -> Result<PluginContext, PluginError> {
        let settings = self.settings().await?;
        Ok(PluginContext::new(plugin, scopes, self.clone()).with_settings(settings))
    }

    /// Waits until every log line queued so far has been sent (or given up).
    pub async fn flush_logs(&self) {
        if let Some(logs) = &self.logs {
            let (tx, rx) = oneshot::channel();
            if logs.send(LogItem::Flush(tx)).await.is_ok() {
                let _ = rx.await;
            }
        }
    }
}

/// The log task: sends queued lines one after the other, so they arrive in order.
async fn send_logs(shared: Arc<Shared>, mut rx: mpsc::Receiver<LogItem>) {
    while let Some(item) = rx.recv().await {
        match item {
            LogItem::Line(plugin, level, message, request_id) => {
                let request = LogRequest {
                    level: level.as_str().to_owned(),
                    message,
                };
                // Sent under the id of the call that logged it, not of whatever runs now.
                let sent: Result<(), PluginError> = nebula_plugin_api::request_id::with_request_id(
                    request_id,
                    shared.call("Log", request.clone(), false),
                )
                .await;
                if let Err(e) = sent {
                    tracing::warn!(plugin = %plugin, error = %e, "log line not sent to the host");
                    trace_plugin_log(&plugin, level, &request.message);
                }
            }
            LogItem::Flush(done) => {
                let _ = done.send(());
            }
        }
    }
}

fn sync_user_request(user: &SyncUser) -> SyncUserRequest {
    SyncUserRequest {
        username: user.username.clone(),
        db_name: user.db_name.clone(),
        role_tag: user.role_tag.clone(),
        email: user.email.clone(),
        is_active: user.is_active,
    }
}

fn outcome_of(outcome: &str) -> Result<SyncOutcome, PluginError> {
    match outcome {
        "created" => Ok(SyncOutcome::Created),
        "updated" => Ok(SyncOutcome::Updated),
        other => Err(PluginError::Unavailable(format!(
            "the host service answered an unknown outcome '{}'",
            crate::echo(other, 64)
        ))),
    }
}

/// Bytes a user takes in a bulk request, roughly (its text plus framing).
fn user_size(user: &SyncUser) -> usize {
    user.username.len()
        + user.db_name.len()
        + user.role_tag.len()
        + user.email.as_ref().map_or(0, String::len)
        + 16
}

/// `users` split into bulk calls: at most 10,000 users and about half the message limit each.
fn batches(users: &[SyncUser], max_bytes: usize) -> Vec<&[SyncUser]> {
    let budget = (max_bytes / 2).max(1);
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, user) in users.iter().enumerate() {
        let size = user_size(user);
        if i > start && (i - start >= MAX_USERS_PER_REQUEST || bytes + size > budget) {
            out.push(&users[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < users.len() {
        out.push(&users[start..]);
    }
    out
}

#[async_trait]
impl Host for RemoteHost {
    /// The core's context applies the plugin named by the token; `_plugin` is not sent.
    async fn sync_user(&self, _plugin: &str, user: &SyncUser) -> Result<SyncOutcome, PluginError> {
        let reply: SyncUserReply = self
            .shared
            .call("SyncUser", sync_user_request(user), false)
            .await?;
        outcome_of(&reply.outcome)
    }

    /// One `SyncUsers` call per batch (10,000 users or half the message limit), not one call
    /// per user.
    async fn sync_users(
        &self,
        _plugin: &str,
        users: &[SyncUser],
    ) -> Result<Vec<Result<SyncOutcome, PluginError>>, PluginError> {
        let mut results = Vec::with_capacity(users.len());
        for batch in batches(users, self.shared.options.max_message_bytes) {
            let request = SyncUsersRequest {
                users: batch.iter().map(sync_user_request).collect(),
            };
            let reply: SyncUsersReply = self
                .shared
                .call("SyncUsers", request, batch.len() > LARGE_BULK)
                .await?;
            if reply.results.len() != batch.len() {
                return Err(PluginError::Unavailable(format!(
                    "the host service answered {} results for {} users",
                    reply.results.len(),
                    batch.len()
                )));
            }
            results.extend(reply.results.into_iter().map(|r| {
                if r.error.is_empty() && r.code.is_empty() {
                    outcome_of(&r.outcome)
                } else {
                    Err(error_of_kind(&r.code, r.error.clone())
                        .unwrap_or(PluginError::Internal(r.error)))
                }
            }));
        }
        Ok(results)
    }

    async fn list_users(
        &self,
        db_name: &str,
        limit: u32,
        offset: u64,
    ) -> Result<Vec<DirectoryUser>, PluginError> {
        let request = ListUsersRequest {
            db_name: db_name.to_owned(),
            limit,
            offset,
        };
        let reply: ListUsersReply = self.shared.call("ListUsers", request, false).await?;
        Ok(reply
            .users
            .into_iter()
            .map(|u| DirectoryUser {
                username: u.username,
                email: u.email,
                is_active: u.is_active,
                is_staff: u.is_staff,
                role_tag: u.role_tag,
                synced_by: u.synced_by,
            })
            .collect())
    }

    async fn set_identity_tag(
        &self,
        _plugin: &str,
        db_name: &str,
        username: &str,
        role_tag: &str,
    ) -> Result<(), PluginError> {
        let request = SetIdentityTagRequest {
            username: username.to_owned(),
            db_name: db_name.to_owned(),
            role_tag: role_tag.to_owned(),
        };
        self.shared.call("SetIdentityTag", request, false).await
    }

    async fn list_identity_roles(&self) -> Result<Vec<IdentityRole>, PluginError> {
        let reply: ListIdentityRolesReply =
            self.shared.call("ListIdentityRoles", (), false).await?;
        Ok(reply
            .roles
            .into_iter()
            .map(|r| IdentityRole {
                name: r.name,
                description: r.description,
                is_staff: r.is_staff,
            })
            .collect())
    }

    async fn upsert_identity_role(
        &self,
        _plugin: &str,
        role: &IdentityRole,
    ) -> Result<(), PluginError> {
        let request = Role {
            name: role.name.clone(),
            description: role.description.clone(),
            is_staff: role.is_staff,
        };
        self.shared.call("UpsertIdentityRole", request, false).await
    }

    /// `name` arrives namespaced by the plugin's context (`plugin.<plugin>.<event>`); the
    /// core namespaces again with the plugin its token names, so only `<event>` is sent.
    /// The payload travels as a `google.protobuf.Struct`: a JSON object, or null (no payload);
    /// any other value is refused.
    async fn emit_event(&self, name: &str, payload: serde_json::Value) -> Result<(), PluginError> {
        // Plugin names have no dots, so the event is what follows the second one.
        let event = name
            .strip_prefix("plugin.")
            .and_then(|rest| rest.split_once('.'))
            .map_or(name, |(_, event)| event)
            .to_owned();
        let payload = match payload {
            serde_json::Value::Null => None,
            serde_json::Value::Object(object) => Some(
                cpu_work(json_is_large(&object), move || json_to_struct(&object))
                    .await
                    .map_err(|e| PluginError::internal(format!("payload: {e}")))?
                    .map_err(|e| PluginError::invalid(format!("payload: {e}")))?,
            ),
            _ => {
                return Err(PluginError::invalid(
                    "payload: out of process an event payload is a JSON object or null",
                ))
            }
        };
        let request = EmitEventRequest {
            name: event,
            payload,
        };
        self.shared.call("EmitEvent", request, false).await
    }

    fn log(&self, plugin: &str, level: LogLevel, message: &str) {
        let queued = self.logs.as_ref().is_some_and(|logs| {
            logs.try_send(LogItem::Line(
                plugin.to_owned(),
                level,
                message.to_owned(),
                nebula_plugin_api::request_id::current_request_id(),
            ))
            .is_ok()
        });
        if !queued {
            trace_plugin_log(plugin, level, message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_calls_are_split_by_count_and_size() {
        let users: Vec<SyncUser> = (0..25_000)
            .map(|i| SyncUser::new(format!("u{i}")))
            .collect();
        let sizes: Vec<usize> = batches(&users, 8 * 1024 * 1024)
            .iter()
            .map(|b| b.len())
            .collect();
        assert_eq!(sizes, vec![10_000, 10_000, 5_000]);
        let small: Vec<usize> = batches(&users[..100], 1000)
            .iter()
            .map(|b| b.len())
            .collect();
        assert!(small.iter().all(|n| *n < 100) && small.iter().sum::<usize>() == 100);
        assert!(batches(&[], 1000).is_empty());
    }

    #[tokio::test]
    async fn endpoints_follow_the_policy_and_tokens_must_be_metadata() {
        let options = RemoteHostOptions::default;
        assert!(RemoteHost::new("unix:///tmp/h.sock", "t", options()).is_ok());
        assert!(RemoteHost::new("http://127.0.0.1:1", "t", options()).is_ok());
        assert!(matches!(
            RemoteHost::new("http://10.0.0.1:1", "t", options()),
            Err(RemoteHostError::Endpoint(EndpointError::RemoteRefused(_)))
        ));
        assert_eq!(
            RemoteHost::new("unix:///tmp/h.sock", "", options()).unwrap_err(),
            RemoteHostError::Token
        );
        assert_eq!(
            RemoteHost::new("unix:///tmp/h.sock", "a\nb", options()).unwrap_err(),
            RemoteHostError::Token
        );
        let host = RemoteHost::new("unix:///tmp/h.sock", "t", options()).unwrap();
        assert!(!host.retarget("unix:///tmp/h.sock", "t").unwrap());
        assert!(host.retarget("unix:///tmp/h.sock", "t2").unwrap());
        assert!(host.retarget("http://127.0.0.1:2", "t2").unwrap());
        assert_eq!(host.endpoint(), "http://127.0.0.1:2");
        assert!(host.retarget("http://10.0.0.1:1", "t2").is_err());
    }
}
