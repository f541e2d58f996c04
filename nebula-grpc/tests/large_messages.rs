//! Large and hostile messages through real gRPC channels: the conversion is linear, runs off
//! the async workers, and reports the right path when it refuses a value.

use std::sync::Arc;
use std::time::{Duration, Instant};

use nebula_grpc::proto::plugin_service_client::PluginServiceClient;
use nebula_grpc::proto::plugin_service_server::{PluginService, PluginServiceServer};
use nebula_grpc::server::{serve_bound, BoundListener};
use nebula_grpc::{DetachedHost, GrpcPlugin, RemotePluginSpec, ServeOptions};
use nebula_plugin_api::{
    async_trait, json_object, JsonObject, Plugin, PluginContext, PluginError, ScopeSet, SyncRequest,
};
use prost_types::value::Kind;
use prost_types::{ListValue, Struct, Value};
use tonic::{Request, Response, Status};

const MAX_MESSAGE: usize = 16 * 1024 * 1024;

fn value(kind: Kind) -> Value {
    Value { kind: Some(kind) }
}

/// `{"status": "ok", key: [null, null, …, last]}`: a long key holding a long list, the shape
/// that cost key length × list length when the path was built for every value.
fn long_key_long_list(key: &str, items: usize, last: Value) -> Struct {
    let mut values = vec![value(Kind::NullValue(0)); items - 1];
    values.push(last);
    Struct {
        fields: [
            ("status".to_owned(), value(Kind::StringValue("ok".into()))),
            (key.to_owned(), value(Kind::ListValue(ListValue { values }))),
        ]
        .into_iter()
        .collect(),
    }
}

/// A peer that answers both calls with one fixed message.
struct FixedPeer(Struct);

#[tonic::async_trait]
impl PluginService for FixedPeer {
    async fn health(&self, _: Request<()>) -> Result<Response<Struct>, Status> {
        Ok(Response::new(self.0.clone()))
    }

    async fn sync_users(&self, _: Request<Struct>) -> Result<Response<Struct>, Status> {
        Ok(Response::new(self.0.clone()))
    }
}

/// Serves `answer` on a free loopback port, on a runtime of its own (so the peer's encoding
/// does not run on the runtime under test). Answers the endpoint.
fn fixed_peer(answer: Struct) -> String {
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let endpoint = format!("http://{}", std_listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
            let service = PluginServiceServer::new(FixedPeer(answer))
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE);
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await
                .unwrap();
        });
    });
    endpoint
}

async fn client_of(endpoint: &str, call_timeout: Duration) -> GrpcPlugin {
    let plugin = GrpcPlugin::new(RemotePluginSpec {
        name: "big".into(),
        endpoint: endpoint.into(),
        token: None,
        call_timeout,
        connect_timeout: Duration::from_secs(2),
        allow_remote: false,
        max_message_bytes: MAX_MESSAGE,
    });
    plugin
        .initialize(PluginContext::new(
            "big",
            ScopeSet::all(),
            Arc::new(DetachedHost),
        ))
        .await
        .unwrap();
    plugin
}

/// A 12 MiB answer (a 4 MiB key holding two million values) is decoded and converted on the
/// blocking pool: on a single-threaded runtime, a ticking task keeps ticking meanwhile. Done
/// inline, decoding and converting it holds the thread for about 0.6 s in a debug build (and
/// the previous, quadratic conversion for hours).
#[tokio::test(flavor = "current_thread")]
async fn a_large_answer_is_converted_off_the_async_thread() {
    let key = "k".repeat(4 * 1024 * 1024);
    let endpoint = fixed_peer(long_key_long_list(
        &key,
        2_000_000,
        value(Kind::BoolValue(true)),
    ));
    let plugin = client_of(&endpoint, Duration::from_secs(60)).await;
    // A first call connects, so the measured one is only the answer.
    let _ = tokio::time::timeout(Duration::from_secs(60), plugin.health()).await;

    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let ticker = tokio::spawn(async move {
        let mut longest = Duration::ZERO;
        let mut last = Instant::now();
        loop {
            tokio::select! {
                _ = &mut stop_rx => return longest.max(last.elapsed()),
                () = tokio::time::sleep(Duration::from_millis(5)) => {}
            }
            longest = longest.max(last.elapsed());
            last = Instant::now();
        }
    });
    let started = Instant::now();
    let answer = tokio::time::timeout(Duration::from_secs(60), plugin.health())
        .await
        .expect("answered")
        .expect("converted");
    let elapsed = started.elapsed();
    let _ = stop_tx.send(());
    let longest = ticker.await.unwrap();
    let list = answer[&key].as_array().unwrap();
    assert_eq!(list.len(), 2_000_000);
    assert!(list[0].is_null() && list[1_999_999] == serde_json::json!(true));
    eprintln!("12 MiB answer in {elapsed:?}; longest gap between 5 ms ticks: {longest:?}");
    assert!(
        longest < Duration::from_millis(250),
        "the async thread was held for {longest:?}"
    );
}

/// The error of a refused value under a 1 MiB key names its exact place, through the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_value_under_a_long_key_is_reported_with_its_path() {
    let key = "k".repeat(1024 * 1024);
    let endpoint = fixed_peer(long_key_long_list(
        &key,
        100_000,
        value(Kind::NumberValue(f64::NAN)),
    ));
    let plugin = client_of(&endpoint, Duration::from_secs(60)).await;
    let started = Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(30), plugin.health())
        .await
        .expect("answered in time")
        .unwrap_err();
    assert!(matches!(err, PluginError::Unavailable(_)), "{err:?}");
    let text = err.to_string();
    let expected = format!(
        "answered Health with an invalid value: $.{}…[1048512 bytes cut]…{}[99999]: NaN is not a JSON number",
        &key[..32], &key[..32]
    );
    assert!(
        text.ends_with(&expected),
        "{}",
        &text[..200.min(text.len())]
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

/// A plugin that reports how many users it got.
struct Counter;

#[async_trait]
impl Plugin for Counter {
    async fn initialize(&self, _: PluginContext) -> Result<(), PluginError> {
        Ok(())
    }

    async fn health(&self) -> Result<JsonObject, PluginError> {
        Ok(json_object!({"status": "ok"}))
    }

    async fn sync_users(&self, request: SyncRequest) -> Result<JsonObject, PluginError> {
        Ok(json_object!({"count": request.users.map_or(0, |u| u.len())}))
    }
}

/// The serve helper converts an 8 MiB request (a user carrying a 4 MiB key over a million
/// values, which the validation then ignores) in linear time, inside the bounded call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_serve_helper_converts_a_large_request_in_linear_time() {
    let listener = BoundListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = listener.endpoint();
    let mut options = ServeOptions::new("counter");
    options.max_message_bytes = MAX_MESSAGE;
    options.call_timeout = Duration::from_secs(20);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(serve_bound(Box::new(Counter), listener, options, async {
        let _ = stop_rx.await;
    }));

    let key = "k".repeat(4 * 1024 * 1024);
    let mut user = long_key_long_list(&key, 1_000_000, value(Kind::NullValue(0)));
    user.fields.remove("status");
    user.fields
        .insert("username".into(), value(Kind::StringValue("ann".into())));
    let request = Struct {
        fields: [
            ("dry_run".to_owned(), value(Kind::BoolValue(true))),
            (
                "users".to_owned(),
                value(Kind::ListValue(ListValue {
                    values: vec![value(Kind::StructValue(user))],
                })),
            ),
        ]
        .into_iter()
        .collect(),
    };
    let mut client = PluginServiceClient::connect(endpoint)
        .await
        .unwrap()
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    let started = Instant::now();
    let answer = tokio::time::timeout(Duration::from_secs(30), client.sync_users(request))
        .await
        .expect("answered in time")
        .unwrap()
        .into_inner();
    let elapsed = started.elapsed();
    assert_eq!(
        answer.fields["count"].kind,
        Some(Kind::NumberValue(1.0)),
        "{answer:?}"
    );
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");

    // The same key at the top level is an unknown field: INVALID_ARGUMENT, with the echoed
    // name cut so that the status still fits in the trailers (it used to reach the caller as
    // an HTTP/2 protocol error).
    let unknown = Struct {
        fields: [(key.clone(), value(Kind::NullValue(0)))]
            .into_iter()
            .collect(),
    };
    let refused = client.sync_users(unknown).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert!(
        refused.message().len() < 2048
            && refused.message().contains("bytes cut]")
            && refused.message().contains("expected one of"),
        "{}",
        refused.message()
    );
    let _ = stop_tx.send(());
    served.await.unwrap().unwrap();
}
