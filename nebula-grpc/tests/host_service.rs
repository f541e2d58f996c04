//! The host service end to end, in process: a fake core (`HostTokens` over `RecordingHost`)
//! serves `nebula.host.v1.HostService` on a temporary unix socket; a plugin served by the serve
//! helper calls back through `RemoteHost`, reached by the core's side (`GrpcPlugin`) with the
//! host endpoint and token as metadata, exactly as the core will.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use nebula_grpc::host_proto::host_service_client::HostServiceClient;
use nebula_grpc::host_proto::{SyncUserRequest, SyncUsersRequest};
use nebula_grpc::host_service::{bind_private_socket, serve_host_service};
use nebula_grpc::server::{serve_bound, BoundListener};
use nebula_grpc::{
    GrpcPlugin, HostServiceOptions, HostTokens, RemoteHost, RemoteHostOptions, RemotePluginSpec,
    ServeOptions,
};
use nebula_plugin_api::testing::RecordingHost;
use nebula_plugin_api::{
    async_trait, json_object, ContextCell, ErrorKind, Host, IdentityRole, JsonObject, LogLevel,
    Plugin, PluginContext, PluginError, Scope, ScopeSet, SyncOutcome, SyncRequest, SyncUser,
};
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Code, Request};

const PLUGIN: &str = "remote_p";

/// The fake core: live tokens → contexts over recording hosts.
#[derive(Default)]
struct Tokens(Mutex<HashMap<String, PluginContext>>);

impl Tokens {
    fn mint(&self, token: &str, ctx: PluginContext) {
        self.0.lock().unwrap().insert(token.into(), ctx);
    }
}

impl HostTokens for Tokens {
    fn context(&self, token: &str) -> Option<PluginContext> {
        self.0.lock().unwrap().get(token).cloned()
    }
}

/// A fake core serving the host service on a unix socket in `dir`.
struct Core {
    tokens: Arc<Tokens>,
    endpoint: String,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn core(dir: &Path) -> Core {
    let tokens = Arc::new(Tokens::default());
    let path = dir.join("host.sock");
    let listener = bind_private_socket(&path).await.unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the host socket is private");
    let endpoint = listener.endpoint();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served: Arc<dyn HostTokens> = tokens.clone();
    tokio::spawn(serve_host_service(
        served,
        listener,
        HostServiceOptions::default(),
        async {
            let _ = stopped.await;
        },
    ));
    Core {
        tokens,
        endpoint,
        _stop: stop,
    }
}

/// A plugin whose sync calls every helper back through its context.
#[derive(Default)]
struct CallsBack {
    ctx: ContextCell,
}

#[async_trait]
impl Plugin for CallsBack {
    async fn initialize(&self, ctx: PluginContext) -> Result<(), PluginError> {
        self.ctx.set(ctx)
    }

    async fn health(&self) -> Result<JsonObject, PluginError> {
        Ok(json_object!({"status": "ok"}))
    }

    async fn sync_users(&self, request: SyncRequest) -> Result<JsonObject, PluginError> {
        let ctx = self.ctx.get()?;
        let users = request.users.unwrap_or_default();
        let Some((first, rest)) = users.split_first() else {
            return Ok(json_object!({"status": "nothing"}));
        };
        let started = Instant::now();
        let first = ctx.sync_user(first).await?;
        let bulk = ctx.sync_users(rest).await?;
        let bulk_ms = started.elapsed().as_millis() as u64;
        let failed: Vec<String> = bulk
            .iter()
            .filter_map(|r| r.as_ref().err().map(ToString::to_string))
            .collect();
        ctx.upsert_identity_role(&IdentityRole {
            name: "Contractor".into(),
            description: "from afar".into(),
            is_staff: false,
        })
        .await?;
        ctx.emit_event("synced", serde_json::json!({"count": users.len()}))
            .await?;
        ctx.log(LogLevel::Info, format!("synced {} users", users.len()));
        Ok(json_object!({
            "first": first.as_str(),
            "bulk_ok": bulk.iter().filter(|r| r.is_ok()).count(),
            "bulk_failed": failed,
            "bulk_ms": bulk_ms,
            "settings": ctx.settings_json().clone(),
        }))
    }
}

/// Serves `CallsBack` with the serve helper's defaults on a loopback port.
async fn served_plugin() -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = BoundListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = listener.endpoint();
    let mut options = ServeOptions::new(PLUGIN);
    options.call_timeout = Duration::from_secs(20);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve_bound(
        Box::new(CallsBack::default()),
        listener,
        options,
        async {
            let _ = stopped.await;
        },
    ));
    (endpoint, stop)
}

/// The core's side of an external plugin, sending the host endpoint and `token`.
async fn grpc_plugin(endpoint: &str, host_endpoint: &str, token: &str) -> GrpcPlugin {
    let plugin = GrpcPlugin::new(RemotePluginSpec {
        name: PLUGIN.into(),
        endpoint: endpoint.into(),
        token: None,
        call_timeout: Duration::from_secs(20),
        connect_timeout: Duration::from_secs(2),
        allow_remote: false,
        max_message_bytes: 8 * 1024 * 1024,
    })
    .with_host(host_endpoint, token);
    let unused = RecordingHost::new().context(PLUGIN, ScopeSet::empty());
    plugin.initialize(unused).await.unwrap();
    plugin
}

fn user(name: &str, db: &str) -> SyncUser {
    SyncUser {
        db_name: db.into(),
        role_tag: "Dev".into(),
        ..SyncUser::new(name)
    }
}

fn sync(users: Vec<SyncUser>) -> SyncRequest {
    SyncRequest {
        dry_run: false,
        users: Some(users),
        limit: 0,
    }
}

fn without(scope: Scope) -> ScopeSet {
    Scope::ALL.into_iter().filter(|s| *s != scope).collect()
}

/// A raw HostService client over the unix socket (what a peer in another language does).
async fn raw_client(endpoint: &str) -> HostServiceClient<Channel> {
    let path = endpoint.strip_prefix("unix://").unwrap().to_owned();
    let channel = Endpoint::from_static("http://unix.socket")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        }))
        .await
        .unwrap();
    HostServiceClient::new(channel)
}

fn with_token<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("x-nebula-host-token", token.parse().unwrap());
    request
}

async fn wait_for_logs(host: &RecordingHost) -> Vec<(LogLevel, String)> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while host.logs().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    host.logs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_served_plugin_calls_every_helper_back_through_the_host_service() {
    let dir = tempfile::tempdir().unwrap();
    let core = core(dir.path()).await;
    let host = RecordingHost::new();
    core.tokens.mint(
        "token-a",
        host.context(PLUGIN, ScopeSet::all())
            .with_settings(json_object!({"greeting": "hi", "batch": 3})),
    );
    let (endpoint, _stop) = served_plugin().await;
    let plugin = grpc_plugin(&endpoint, &core.endpoint, "token-a").await;

    let answer = plugin
        .sync_users(sync(vec![
            user(" Ann ", "acme"),
            user("bob", "acme.db"),
            user("root", "system.db"),
            user("carl", "../etc"),
            user("dora", "beta"),
        ]))
        .await
        .unwrap();
    assert_eq!(answer["first"], "created");
    assert_eq!(answer["bulk_ok"], 2);
    let failed = answer["bulk_failed"].as_array().unwrap();
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert!(failed[0].as_str().unwrap().contains("system.db"));
    assert!(failed[1].as_str().unwrap().contains("db_name"));
    // GetSettings: the plugin's context holds the core's settings for it.
    assert_eq!(
        answer["settings"],
        serde_json::json!({"greeting": "hi", "batch": 3})
    );

    let written: Vec<(String, String, String)> = host
        .users()
        .into_iter()
        .map(|u| (u.db_name, u.username, u.role_tag))
        .collect();
    assert_eq!(
        written,
        vec![
            ("acme.db".into(), "Ann".into(), "dev".into()),
            ("acme.db".into(), "bob".into(), "dev".into()),
            ("beta.db".into(), "dora".into(), "dev".into()),
        ]
    );
    assert_eq!(host.roles()[0].name, "contractor");
    assert_eq!(
        host.events(),
        vec![(
            "plugin.remote_p.synced".to_owned(),
            serde_json::json!({"count": 5})
        )]
    );
    assert_eq!(
        wait_for_logs(&host).await,
        vec![(LogLevel::Info, "synced 5 users".to_owned())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_scope_is_permission_denied_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let core = core(dir.path()).await;
    let granted = RecordingHost::new();
    let refused = RecordingHost::new();
    core.tokens
        .mint("token-a", granted.context(PLUGIN, ScopeSet::all()));
    core.tokens.mint(
        "token-b",
        refused.context(PLUGIN, without(Scope::UsersWrite)),
    );
    let (endpoint, _stop) = served_plugin().await;

    // The first call initialises the plugin remotely; a later instance's token re-targets it.
    let first = grpc_plugin(&endpoint, &core.endpoint, "token-a").await;
    first
        .sync_users(sync(vec![user("ann", "acme")]))
        .await
        .unwrap();
    let second = grpc_plugin(&endpoint, &core.endpoint, "token-b").await;
    let err = second
        .sync_users(sync(vec![user("bob", "acme")]))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("PermissionDenied"), "{text}");
    assert!(text.contains("users.write"), "{text}");
    assert!(refused.calls().is_empty(), "nothing written");
    assert_eq!(granted.users().len(), 1);

    // Straight through RemoteHost: the very error the core's context returned.
    let remote =
        Arc::new(RemoteHost::new(&core.endpoint, "token-b", RemoteHostOptions::default()).unwrap());
    let ctx = remote.context(PLUGIN, ScopeSet::all()).await.unwrap();
    let err = ctx.sync_user(&user("bob", "acme")).await.unwrap_err();
    assert_eq!(
        err,
        PluginError::MissingScope {
            plugin: PLUGIN.into(),
            scope: Scope::UsersWrite
        }
    );
    let err = ctx.sync_users(&[user("bob", "acme")]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    assert!(refused.calls().is_empty());

    let mut raw = raw_client(&core.endpoint).await;
    let status = raw
        .sync_user(with_token(
            SyncUserRequest {
                username: "bob".into(),
                db_name: "acme".into(),
                ..Default::default()
            },
            "token-b",
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(
        status.message(),
        "plugin 'remote_p' lacks scope 'users.write'"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_or_unknown_token_is_unauthenticated() {
    let dir = tempfile::tempdir().unwrap();
    let core = core(dir.path()).await;
    let host = RecordingHost::new();
    core.tokens
        .mint("live", host.context(PLUGIN, ScopeSet::all()));
    let mut raw = raw_client(&core.endpoint).await;
    let status = raw.get_settings(Request::new(())).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let status = raw.get_settings(with_token((), "stale")).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(raw.get_settings(with_token((), "live")).await.is_ok());

    let stale = RemoteHost::new(&core.endpoint, "stale", RemoteHostOptions::default()).unwrap();
    let err = stale.settings().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(err.to_string().contains("UNAUTHENTICATED"), "{err}");
    assert!(host.calls().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_db_is_invalid_argument_naming_the_field_and_bulk_items_fail_alone() {
    let dir = tempfile::tempdir().unwrap();
    let core = core(dir.path()).await;
    let host = RecordingHost::new();
    core.tokens.mint("t", host.context(PLUGIN, ScopeSet::all()));
    let mut raw = raw_client(&core.endpoint).await;
    let status = raw
        .sync_user(with_token(
            SyncUserRequest {
                username: "root".into(),
                db_name: "system.db".into(),
                role_tag: "admin".into(),
                email: None,
                is_active: true,
            },
            "t",
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("db_name 'system.db'"),
        "{status:?}"
    );

    // Through RemoteHost the plugin gets back exactly what an in-process one gets.
    let remote =
        Arc::new(RemoteHost::new(&core.endpoint, "t", RemoteHostOptions::default()).unwrap());
    let err = remote
        .sync_user(PLUGIN, &user("root", "system.db"))
        .await
        .unwrap_err();
    let in_process = host
        .context(PLUGIN, ScopeSet::all())
        .sync_user(&user("root", "system.db"))
        .await
        .unwrap_err();
    assert_eq!(err, in_process);

    let item = |name: &str, db: &str| SyncUserRequest {
        username: name.into(),
        db_name: db.into(),
        role_tag: String::new(),
        email: Some("x@example.com".into()),
        is_active: true,
    };
    let reply = raw
        .sync_users(with_token(
            SyncUsersRequest {
                users: vec![
                    item("ann", "acme"),
                    item("root", "system.db"),
                    item("", "acme"),
                    item("bob", "acme"),
                ],
            },
            "t",
        ))
        .await
        .unwrap()
        .into_inner();
    let results: Vec<(&str, &str, &str)> = reply
        .results
        .iter()
        .map(|r| (r.username.as_str(), r.outcome.as_str(), r.code.as_str()))
        .collect();
    assert_eq!(
        results,
        vec![
            ("ann", "created", ""),
            ("root", "", "forbidden"),
            ("", "", "invalid_input"),
            ("bob", "created", ""),
        ]
    );
    assert!(reply.results[1].error.contains("db_name"));
    assert!(reply.results[2].error.contains("username"));
    assert_eq!(host.users().len(), 2);

    // The bulk call through RemoteHost: per-item errors come back with their kind.
    let results = remote
        .sync_users(PLUGIN, &[user("ann", "acme.db"), user("root", "system.db")])
        .await
        .unwrap();
    assert_eq!(results[0], Ok(SyncOutcome::Updated));
    assert_eq!(results[1], Err(in_process));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_users_round_trip_in_one_bulk_call() {
    let dir = tempfile::tempdir().unwrap();
    let core = core(dir.path()).await;
    let host = RecordingHost::new();
    core.tokens.mint("t", host.context(PLUGIN, ScopeSet::all()));
    let (endpoint, _stop) = served_plugin().await;
    let plugin = grpc_plugin(&endpoint, &core.endpoint, "t").await;
    let users: Vec<SyncUser> = (0..10_000)
        .map(|i| SyncUser {
            email: Some(format!("user{i}@example.com")),
            ..user(&format!("user{i:05}"), "acme")
        })
        .collect();
    let started = Instant::now();
    let answer = plugin.sync_users(sync(users)).await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(answer["bulk_ok"], 9_999);
    assert_eq!(host.users().len(), 10_000);
    println!(
        "10,000 users: whole sync {} ms (the plugin's bulk call back through the host service: {} ms)",
        elapsed.as_millis(),
        answer["bulk_ms"]
    );
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_host_metadata_the_context_is_detached() {
    let (endpoint, _stop) = served_plugin().await;
    let plugin = GrpcPlugin::new(RemotePluginSpec {
        name: PLUGIN.into(),
        endpoint,
        token: None,
        call_timeout: Duration::from_secs(20),
        connect_timeout: Duration::from_secs(2),
        allow_remote: false,
        max_message_bytes: 8 * 1024 * 1024,
    });
    plugin
        .initialize(RecordingHost::new().context(PLUGIN, ScopeSet::empty()))
        .await
        .unwrap();
    assert_eq!(plugin.health().await.unwrap()["status"], "ok");
    let err = plugin
        .sync_users(sync(vec![user("ann", "acme")]))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("no host service endpoint"),
        "{err}"
    );
}
