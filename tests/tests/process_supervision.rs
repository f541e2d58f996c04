//! The engine's side of the process runtime (SPEC §9), without processes: a plugin of source
//! `process` reports its pid and its death through its `InstanceWatch`, and the one policy
//! restarts it after the backoff (1 s, doubling) or disables it with the reason; a rescan
//! leaves an unchanged process plugin running and restarts a changed one. Runs on tokio's
//! paused clock, so the backoff is exact and instant; on SQLite only, for the reason
//! `lifecycle.rs` gives (a paused clock jumps ahead during a PostgreSQL round trip).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nebula_core::manager::{DiscoveryError, PluginProvider};
use nebula_core::{
    InstanceSetup, InstanceWatch, ManagerError, NebulaCore, PluginDescriptor, PluginSource,
    PluginStatus,
};
use nebula_plugin_api::{
    async_trait, json_object, JsonObject, Plugin, PluginContext, PluginError, SyncRequest,
};
use parking_lot::Mutex;

/// The watches every instance was given, and switches that make `initialize` fail, or report
/// the process dead while `initialize` is still running (after it was "ready").
#[derive(Default)]
struct Instances {
    watches: Mutex<Vec<InstanceWatch>>,
    fail_init: AtomicBool,
    die_while_starting: AtomicBool,
}

impl Instances {
    fn count(&self) -> usize {
        self.watches.lock().len()
    }
    fn last(&self) -> InstanceWatch {
        self.watches.lock().last().cloned().expect("an instance")
    }
}

struct FakeProcess(Arc<Instances>, InstanceWatch);

#[async_trait]
impl Plugin for FakeProcess {
    async fn initialize(&self, _ctx: PluginContext) -> Result<(), PluginError> {
        if self.0.die_while_starting.swap(false, Ordering::SeqCst) {
            self.1.exited("killed by signal 9 (SIGKILL)".into());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if self.0.fail_init.load(Ordering::SeqCst) {
            return Err(PluginError::Unavailable(
                "process exited with code 3 before it was ready".into(),
            ));
        }
        Ok(())
    }
    async fn health(&self) -> Result<JsonObject, PluginError> {
        Ok(json_object!({"status": "ok"}))
    }
    async fn sync_users(&self, _request: SyncRequest) -> Result<JsonObject, PluginError> {
        Ok(json_object!({}))
    }
}

fn descriptor(instances: &Arc<Instances>, fingerprint: &str) -> PluginDescriptor {
    let instances = instances.clone();
    PluginDescriptor {
        manifest: nebula_tests::test_manifest("proc_one"),
        source: PluginSource::Process,
        origin: "/plugins/proc_one".into(),
        constructor: Arc::new(move |setup: &InstanceSetup| {
            instances.watches.lock().push(setup.watch.clone());
            Box::new(FakeProcess(instances.clone(), setup.watch.clone()))
        }),
        fingerprint: Some(fingerprint.into()),
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

async fn engine(
    max_restarts: u32,
) -> (NebulaCore, Arc<Instances>, Arc<Editable>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config_in(dir.path());
    config.plugins.max_restarts = max_restarts;
    config.plugins.max_crashes = 10;
    let instances = Arc::new(Instances::default());
    let provider = Arc::new(Editable::default());
    provider.0.lock().push(descriptor(&instances, "v1"));
    let core = NebulaCore::builder()
        .config(config)
        .without_inventory()
        .without_health_monitor()
        .provider(provider.clone())
        .build()
        .await
        .expect("engine builds");
    (core, instances, provider, dir)
}

/// Lets spawned tasks run and the paused clock advance by `by`.
async fn advance(by: Duration) {
    tokio::time::sleep(by).await;
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

fn status(core: &NebulaCore) -> (PluginStatus, String, String) {
    let r = core.plugins().record("proc_one").unwrap();
    (r.status, r.message, r.error)
}

#[tokio::test(start_paused = true)]
async fn a_dead_process_is_restarted_after_the_backoff_then_disabled_with_its_reason() {
    let (core, instances, _provider, _dir) = engine(2).await;
    assert_eq!(instances.count(), 1);
    instances.last().set_pid(Some(4242));
    let stats = core.plugins().stats("proc_one").unwrap();
    assert_eq!(stats.process.as_ref().unwrap().pid, Some(4242));

    // Killed: crashed at once, with the reason; restarted 1 s later, not before.
    instances
        .last()
        .exited("killed by signal 9 (SIGKILL)".into());
    advance(Duration::from_millis(10)).await;
    let (s, message, error) = status(&core);
    assert_eq!(s, PluginStatus::Crashed);
    assert_eq!(message, "process exited");
    assert_eq!(error, "process killed by signal 9 (SIGKILL)");
    // The dead instance is detached: calls do not reach it, and a failure cannot turn the
    // crash into a mere `degraded`.
    assert!(matches!(
        core.plugins()
            .sync_users("proc_one", SyncRequest::default())
            .await,
        Err(ManagerError::NotReady { .. })
    ));
    // Nor does the monitor's pass restart it before the backoff.
    core.plugins().check_all().await;
    assert_eq!(
        instances.count(),
        1,
        "the monitor waits for the scheduled restart"
    );
    advance(Duration::from_millis(900)).await;
    assert_eq!(instances.count(), 1, "not before the backoff");
    advance(Duration::from_millis(200)).await;
    assert_eq!(instances.count(), 2, "restarted after 1 s");
    let record = core.plugins().record("proc_one").unwrap();
    assert_eq!(record.status, PluginStatus::Initialized);
    assert_eq!(record.counters.auto_restarts, 1);

    // The second death waits 2 s.
    instances.last().exited("exited with code 1".into());
    advance(Duration::from_millis(1500)).await;
    assert_eq!(instances.count(), 2, "the backoff doubled");
    advance(Duration::from_millis(600)).await;
    assert_eq!(instances.count(), 3);

    // The budget (max_restarts = 2) is spent: disabled, saying why.
    instances.last().exited("exited with code 1".into());
    advance(Duration::from_secs(5)).await;
    assert_eq!(instances.count(), 3, "no third restart");
    let (s, message, _) = status(&core);
    assert_eq!(s, PluginStatus::Disabled);
    assert!(
        message.contains("disabled by policy")
            && message.contains("process exited with code 1")
            && message.contains("after 2 automatic restarts"),
        "{message}"
    );
    assert_eq!(
        core.plugins()
            .stats("proc_one")
            .unwrap()
            .process
            .unwrap()
            .pid,
        None,
        "no pid without an instance"
    );
}

#[tokio::test(start_paused = true)]
async fn a_report_from_a_replaced_instance_changes_nothing() {
    let (core, instances, _provider, _dir) = engine(3).await;
    let old = instances.last();
    core.plugins().restart("proc_one").await.unwrap();
    old.exited("killed by signal 15 (SIGTERM)".into());
    advance(Duration::from_secs(3)).await;
    assert_eq!(status(&core).0, PluginStatus::Initialized);
    assert_eq!(
        instances.count(),
        2,
        "no restart for the old instance's death"
    );
}

#[tokio::test(start_paused = true)]
async fn a_process_that_dies_at_every_start_is_retried_with_backoff_then_disabled() {
    let (core, instances, _provider, _dir) = engine(2).await;
    instances.fail_init.store(true, Ordering::SeqCst);
    core.plugins().restart("proc_one").await.unwrap();
    assert_eq!(instances.count(), 2);
    // No monitor runs: the backoff alone retries it, 1 s then 2 s later (not 1 s twice).
    advance(Duration::from_millis(900)).await;
    assert_eq!(instances.count(), 2, "not before 1 s");
    advance(Duration::from_millis(200)).await;
    assert_eq!(instances.count(), 3);
    advance(Duration::from_millis(1700)).await;
    assert_eq!(instances.count(), 3, "not before 2 s");
    advance(Duration::from_millis(400)).await;
    assert_eq!(instances.count(), 4);
    advance(Duration::from_secs(10)).await;
    assert_eq!(instances.count(), 4, "the budget is spent");
    let (s, message, _) = status(&core);
    assert_eq!(s, PluginStatus::Disabled);
    assert!(
        message.contains("code 3") && message.contains("automatic restarts"),
        "{message}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_rescan_restarts_a_process_plugin_only_when_it_changed() {
    let (core, instances, provider, _dir) = engine(3).await;
    core.plugins().rescan().await.unwrap();
    assert_eq!(instances.count(), 1, "unchanged: left running");
    *provider.0.lock() = vec![descriptor(&instances, "v2")];
    core.plugins().rescan().await.unwrap();
    assert_eq!(
        instances.count(),
        2,
        "changed manifest or executable: restarted"
    );
    core.plugins().rescan().await.unwrap();
    assert_eq!(instances.count(), 2);
    // A stopped plugin is not started by a rescan, changed or not.
    core.plugins().stop("proc_one").await.unwrap();
    *provider.0.lock() = vec![descriptor(&instances, "v3")];
    core.plugins().rescan().await.unwrap();
    assert_eq!(instances.count(), 2);
    assert_eq!(status(&core).0, PluginStatus::Disabled);
}

#[tokio::test(start_paused = true)]
async fn a_death_reported_while_the_instance_is_still_being_installed_is_not_lost() {
    let (core, instances, _provider, _dir) = engine(3).await;
    instances.die_while_starting.store(true, Ordering::SeqCst);
    core.plugins().restart("proc_one").await.unwrap();
    advance(Duration::from_millis(10)).await;
    let (s, _, error) = status(&core);
    assert_eq!(s, PluginStatus::Crashed, "{error}");
    advance(Duration::from_millis(1100)).await;
    assert_eq!(instances.count(), 3, "restarted after the backoff");
    assert_eq!(status(&core).0, PluginStatus::Initialized);
}

#[tokio::test(start_paused = true)]
async fn nothing_is_restarted_once_the_engine_shuts_down() {
    let (core, instances, _provider, _dir) = engine(3).await;
    instances.last().exited("exited with code 1".into());
    advance(Duration::from_millis(10)).await;
    assert_eq!(status(&core).0, PluginStatus::Crashed);
    core.shutdown().await;
    advance(Duration::from_secs(5)).await;
    assert_eq!(
        instances.count(),
        1,
        "the scheduled restart found the engine shutting down"
    );
    core.plugins().rescan().await.unwrap();
    assert_eq!(instances.count(), 1, "nor does a rescan start anything");
}

#[tokio::test(start_paused = true)]
async fn a_plugin_directory_never_takes_the_name_of_a_linked_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let instances = Arc::new(Instances::default());
    let provider = Arc::new(Editable::default());
    provider.0.lock().push(descriptor(&instances, "v1"));
    let (linked, _) =
        nebula_tests::faults::descriptor("proc_one", nebula_tests::faults::Fault::None);
    let core = NebulaCore::builder()
        .config(common::config_in(dir.path()))
        .without_inventory()
        .without_health_monitor()
        .plugin(linked)
        .provider(provider.clone())
        .build()
        .await
        .unwrap();
    let kept = core.plugins().record("proc_one").unwrap();
    assert_eq!(kept.source, PluginSource::InProcess);
    assert_eq!(kept.status, PluginStatus::Initialized, "{kept:?}");
    assert_eq!(instances.count(), 0, "the directory's plugin never started");
    let shadowed = core.plugins().record("proc_one-2").unwrap();
    assert!(shadowed.error.contains("already taken"), "{shadowed:?}");
    assert_eq!(shadowed.origin, "/plugins/proc_one");
}
