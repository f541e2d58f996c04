//! The external-plugin case: the same calls made by a plain tonic client straight to the
//! peer (`nebula-server serve-plugin sample_sync`), by the gRPC adapter alone
//! (`nebula_grpc::GrpcPlugin` in this process, no HTTP) and through the server's HTTP API.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nebula_grpc::proto::plugin_service_client::PluginServiceClient;
use nebula_grpc::{GrpcPlugin, RemotePluginSpec};
use nebula_plugin_api::{Plugin, ScopeSet, SyncRequest};
use tonic::metadata::MetadataValue;

use crate::load::Outcome;

/// Which call is repeated.
#[derive(Debug, Clone, Copy)]
pub enum Call {
    /// `Health(Empty)`.
    Health,
    /// `SyncUsers({"dry_run": true})`, the seed's dry run.
    DryRun,
}

/// The plain tonic client: `call` on one channel, one call at a time; the answer is decoded
/// (into a `prost_types::Struct`), as the adapter's is.
pub fn run_direct(
    endpoint: &str,
    token: &str,
    call: Call,
    warmup: Duration,
    measure: Duration,
) -> Result<Outcome, String> {
    let runtime = runtime()?;
    runtime.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(endpoint.to_owned())
            .map_err(|e| format!("{endpoint}: {e}"))?
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|e| format!("{endpoint}: {e}"))?;
        let client = PluginServiceClient::new(channel);
        let token: MetadataValue<_> = token.parse().map_err(|_| "token is not metadata")?;
        let dry_run = nebula_grpc::convert::value_to_struct(&serde_json::json!({"dry_run": true}))
            .map_err(|e| e.to_string())?;
        Ok(repeat(warmup, measure, || {
            let (mut client, token, dry_run) = (client.clone(), token.clone(), dry_run.clone());
            async move {
                match call {
                    Call::Health => {
                        let mut request = tonic::Request::new(());
                        request
                            .metadata_mut()
                            .insert(nebula_grpc::TOKEN_METADATA, token);
                        client.health(request).await.is_ok()
                    }
                    Call::DryRun => {
                        let mut request = tonic::Request::new(dry_run);
                        request
                            .metadata_mut()
                            .insert(nebula_grpc::TOKEN_METADATA, token);
                        client.sync_users(request).await.is_ok()
                    }
                }
            }
        })
        .await)
    })
}

/// The adapter alone: a [`GrpcPlugin`] to the same peer, called as the manager calls it (the
/// request encoded, the answer converted to JSON), one call at a time.
pub fn run_adapter(
    endpoint: &str,
    token: &str,
    call: Call,
    warmup: Duration,
    measure: Duration,
) -> Result<Outcome, String> {
    let runtime = runtime()?;
    runtime.block_on(async {
        let plugin = Arc::new(GrpcPlugin::new(RemotePluginSpec {
            name: "sample_remote".into(),
            endpoint: endpoint.to_owned(),
            token: Some(token.to_owned()),
            call_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(2),
            allow_remote: false,
            max_message_bytes: 8 << 20,
        }));
        let host = nebula_plugin_api::testing::RecordingHost::new();
        plugin
            .initialize(host.context("sample_remote", ScopeSet::empty()))
            .await
            .map_err(|e| e.to_string())?;
        Ok(repeat(warmup, measure, || {
            let plugin = plugin.clone();
            async move {
                match call {
                    Call::Health => plugin.health().await.is_ok(),
                    Call::DryRun => plugin.sync_users(SyncRequest::default()).await.is_ok(),
                }
            }
        })
        .await)
    })
}

/// What `#[tokio::main]` gives a plain client: a worker per core.
fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
}

/// Awaits `call()` one at a time for `warmup`, then for `measure`, timing each.
async fn repeat<F, Fut>(warmup: Duration, measure: Duration, mut call: F) -> Outcome
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    let (measured_from, until) = (start + warmup, start + warmup + measure);
    let (mut latencies, mut errors) = (Vec::with_capacity(1 << 16), 0u64);
    while Instant::now() < until {
        let sent = Instant::now();
        let ok = call().await;
        let took = sent.elapsed();
        if !ok {
            errors += 1;
        } else if sent >= measured_from {
            latencies.push(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
        }
    }
    Outcome::of(latencies, errors, measure)
}
