//! Host tokens (SPEC §8) through the engine: one per out-of-process instance, bound to the
//! very context an in-process instance would get, dead once that instance is stopped,
//! replaced, disabled by policy, removed by a rescan or fails to start.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use nebula_core::manager::{DiscoveryError, PluginProvider};
use nebula_core::testing::TestDatabase;
use nebula_core::{
    HostAccess, HostServiceLink, HostTokenRegistry, InstanceSetup, NebulaCore, PluginDescriptor,
    PluginSource, PluginStatus,
};
use nebula_plugin_api::{
    async_trait, json_object, JsonObject, Plugin, PluginContext, PluginError, Scope, SyncRequest,
};
use parking_lot::Mutex;

/// What one descriptor's instances were given, and a switch that makes `health` fail.
#[derive(Default)]
struct Seen {
    setups: Mutex<Vec<Option<HostAccess>>>,
    fail_health: AtomicBool,
    fail_init: AtomicBool,
}

impl Seen {
    fn last_token(&self) -> String {
        self.setups
            .lock()
            .last()
            .cloned()
            .flatten()
            .expect("the last instance got host access")
            .token
    }
}

struct Remote(Arc<Seen>);

#[async_trait]
impl Plugin for Remote {
    async fn initialize(&self, _ctx: PluginContext) -> Result<(), PluginError> {
        if self.0.fail_init.load(Ordering::SeqCst) {
            return Err(PluginError::Unavailable("peer unreachable".into()));
        }
        Ok(())
    }
    async fn health(&self) -> Result<JsonObject, PluginError> {
        if self.0.fail_health.load(Ordering::SeqCst) {
            return Err(PluginError::Unavailable("scripted".into()));
        }
        Ok(json_object!({"status": "ok"}))
    }
    async fn sync_users(&self, _request: SyncRequest) -> Result<JsonObject, PluginError> {
        Ok(json_object!({}))
    }
}

fn descriptor(name: &str, source: PluginSource, seen: Arc<Seen>) -> PluginDescriptor {
    let mut manifest = nebula_tests::test_manifest(name);
    manifest.scopes = vec!["users.read".into(), "users.write".into()];
    PluginDescriptor {
        manifest,
        source,
        origin: format!("test:{name}"),
        constructor: Arc::new(move |setup: &InstanceSetup| {
            seen.setups.lock().push(setup.host.clone());
            Box::new(Remote(seen.clone()))
        }),
        fingerprint: None,
    }
}

/// A provider whose list the test edits between rescans.
#[derive(Default)]
struct Editable(Mutex<Vec<PluginDescriptor>>);

impl PluginProvider for Editable {
    fn discover(&self) -> Vec<Result<PluginDescriptor, DiscoveryError>> {
        self.0.lock().iter().cloned().map(Ok).collect()
    }
}

struct Fixture {
    core: NebulaCore,
    tokens: Arc<HostTokenRegistry>,
    remote: Arc<Seen>,
    local: Arc<Seen>,
}

async fn fixture(db: &TestDatabase, provider: Option<Arc<Editable>>) -> Fixture {
    let mut config = common::config_on(db);
    config.plugins.max_restarts = 1;
    config.plugins.health_restart_threshold = 1;
    // Granted less than declared: the token's context must hold the granted scopes only.
    config
        .plugins
        .grants
        .insert("remote_one".into(), vec!["users.read".into()]);
    let tokens = Arc::new(HostTokenRegistry::default());
    let remote = Arc::new(Seen::default());
    let local = Arc::new(Seen::default());
    let mut builder = NebulaCore::builder()
        .config(config)
        .without_inventory()
        .without_health_monitor()
        .host_service(HostServiceLink {
            tokens: tokens.clone(),
            endpoint: "unix:///run/nebula/host.sock".into(),
            local_endpoint: "unix:///run/nebula/host.sock".into(),
        })
        .plugin(descriptor(
            "local_one",
            PluginSource::InProcess,
            local.clone(),
        ));
    match provider {
        Some(provider) => {
            provider
                .0
                .lock()
                .push(descriptor("remote_one", PluginSource::Grpc, remote.clone()));
            builder = builder.provider(provider);
        }
        None => {
            builder = builder.plugin(descriptor("remote_one", PluginSource::Grpc, remote.clone()))
        }
    }
    let core = builder.build().await.expect("engine builds");
    Fixture {
        core,
        tokens,
        remote,
        local,
    }
}

nebula_core::each_backend! {
    #[tokio::test]
    async fn an_out_of_process_instance_gets_a_token_for_its_own_granted_context(db) {
        let f = fixture(db, None).await;
        // The linked plugin gets its context directly: no token.
        assert_eq!(*f.local.setups.lock(), vec![None]);
        let access = f.remote.setups.lock()[0].clone().expect("host access");
        assert_eq!(access.endpoint, "unix:///run/nebula/host.sock");
        assert!(
            access.token.len() >= 43,
            "32 random bytes: {}",
            access.token
        );
        let ctx = f.tokens.context(&access.token).expect("the token is live");
        assert_eq!(ctx.plugin_name(), "remote_one");
        assert!(ctx.scopes().contains(Scope::UsersRead));
        assert!(
            !ctx.scopes().contains(Scope::UsersWrite),
            "declared but not granted"
        );
        assert_eq!(f.tokens.live(), 1);
        f.core.shutdown().await;
        assert!(
            f.tokens.context(&access.token).is_none(),
            "shutdown kills it"
        );
    }

    #[tokio::test]
    async fn restart_stop_and_start_replace_the_token(db) {
        let f = fixture(db, None).await;
        let plugins = f.core.plugins();
        let first = f.remote.last_token();
        plugins.restart("remote_one").await.unwrap();
        let second = f.remote.last_token();
        assert_ne!(first, second);
        assert!(
            f.tokens.context(&first).is_none(),
            "restart kills the old one"
        );
        assert!(f.tokens.context(&second).is_some());

        plugins.stop("remote_one").await.unwrap();
        assert!(f.tokens.context(&second).is_none(), "stop kills it");
        assert_eq!(f.tokens.live(), 0);

        plugins.start("remote_one").await.unwrap();
        let third = f.remote.last_token();
        assert!(f.tokens.context(&third).is_some());
        assert_eq!(f.tokens.live(), 1);
        assert_eq!(
            f.remote.setups.lock().len(),
            3,
            "one token per instance built"
        );
    }

    #[tokio::test]
    async fn a_plugin_disabled_by_policy_or_failing_to_start_holds_no_token(db) {
        let f = fixture(db, None).await;
        let plugins = f.core.plugins();
        let token = f.remote.last_token();
        f.remote.fail_health.store(true, Ordering::SeqCst);
        f.remote.fail_init.store(true, Ordering::SeqCst);
        // Failing checks: restarted (the new instance fails to start), then disabled by policy.
        for _ in 0..6 {
            plugins.check_all().await;
            if plugins.record("remote_one").unwrap().status == PluginStatus::Disabled {
                break;
            }
        }
        assert_eq!(
            plugins.record("remote_one").unwrap().status,
            PluginStatus::Disabled
        );
        assert!(f.tokens.context(&token).is_none());
        for access in f.remote.setups.lock().iter().flatten() {
            assert!(
                f.tokens.context(&access.token).is_none(),
                "no instance's token survives"
            );
        }
        assert_eq!(f.tokens.live(), 0);
    }

    #[tokio::test]
    async fn a_rescan_that_removes_the_plugin_kills_its_token(db) {
        let provider = Arc::new(Editable::default());
        let f = fixture(db, Some(provider.clone())).await;
        let token = f.remote.last_token();
        // A rescan that keeps it re-initialises it (an external plugin has no fingerprint): a new
        // instance, a new token, the old one dead.
        f.core.plugins().rescan().await.unwrap();
        let kept = f.remote.last_token();
        assert_ne!(kept, token);
        assert!(f.tokens.context(&token).is_none());
        assert!(f.tokens.context(&kept).is_some());
        provider.0.lock().clear();
        f.core.plugins().rescan().await.unwrap();
        assert!(f.core.plugins().record("remote_one").is_err(), "unlisted");
        assert!(f.tokens.context(&token).is_none());
        assert!(f.tokens.context(&kept).is_none());
        assert_eq!(f.tokens.live(), 0);
    }
}
