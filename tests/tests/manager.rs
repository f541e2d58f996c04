//! The plugin manager against misbehaving plugins (registered in `nebula_tests`).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use nebula_core::manager::CallFailure;
use nebula_core::{ManagerError, NebulaCore, PluginDescriptor, PluginStatus};
use nebula_plugin_api::SyncRequest;
use nebula_tests as _;

fn real_sync() -> SyncRequest {
    SyncRequest {
        dry_run: false,
        ..SyncRequest::default()
    }
}

nebula_core::each_backend! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bad_plugins_end_in_the_right_states_and_the_good_one_keeps_answering(db) {
        let core = common::engine_on(db).await;
        let plugins = core.plugins();

        // A panic in initialize: crashed, with the panic text; the process lives on.
        let rec = plugins.record("panics_in_init").unwrap();
        assert_eq!(rec.status, PluginStatus::Crashed);
        assert!(rec.error.contains("boom in initialize"), "{}", rec.error);
        // Never null (SPEC §5): 0 until an instance has initialised, as in the original.
        assert_eq!(rec.initialized_at, 0.0);
        assert_eq!(
            serde_json::to_value(&rec).unwrap()["initialized_at"],
            serde_json::json!(0.0)
        );
        match plugins.health("panics_in_init").await {
            Err(ManagerError::NotReady { status, error, .. }) => {
                assert_eq!(status, PluginStatus::Crashed);
                assert!(error.contains("boom in initialize"));
            }
            other => panic!("expected NotReady, got {other:?}"),
        }

        // An error from health: degraded with the error text.
        let err = plugins.health("fails_health").await.unwrap_err();
        assert!(
            matches!(
                err,
                ManagerError::Call {
                    failure: CallFailure::Error(_),
                    ..
                }
            ),
            "expected a plugin error, got {err:?}"
        );
        let rec = plugins.record("fails_health").unwrap();
        assert_eq!(rec.status, PluginStatus::Degraded);
        assert!(
            rec.error.contains("upstream directory unreachable"),
            "{}",
            rec.error
        );
        assert_eq!(rec.counters.consecutive_health_failures, 1);

        // A panic in sync_users: crashed, the caller gets the message.
        let err = plugins
            .sync_users("fails_health", real_sync())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("sync exploded"), "{err}");
        let rec = plugins.record("fails_health").unwrap();
        assert_eq!(rec.status, PluginStatus::Crashed);
        assert_eq!(rec.counters.consecutive_crashes, 1);

        // The good plugin is healthy.
        plugins.health("well_behaved").await.unwrap();
        assert_eq!(
            plugins.record("well_behaved").unwrap().status,
            PluginStatus::Healthy
        );
        core.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hanging_call_times_out_on_time_while_others_keep_answering(db) {
        let core = common::engine_on(db).await;
        let timeout = common::config_on(db).plugins.call_timeout();
        assert_eq!(timeout, Duration::from_secs(1));

        let manager = Arc::clone(core.plugins());
        let hanging = tokio::spawn(async move {
            let started = Instant::now();
            let result = manager.sync_users("hangs_in_sync", real_sync()).await;
            (started.elapsed(), result)
        });

        // While the hanging call is in flight, the good plugin and the list answer promptly, and so
        // does the hanging plugin's own health. Rounds start only in the first 80 % of the
        // timeout: the state asserted below is then exact, because a health call still running
        // when the timeout is recorded cannot clear it (PluginManager::observe, "which outcome
        // wins"), and no health call starts after it.
        let loop_started = Instant::now();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut answered = 0;
        let mut slowest = Duration::ZERO;
        while !hanging.is_finished() && loop_started.elapsed() < timeout.mul_f64(0.8) {
            let t = Instant::now();
            core.plugins().health("well_behaved").await.unwrap();
            core.plugins()
                .sync_users("well_behaved", SyncRequest::default())
                .await
                .unwrap();
            assert!(core.plugins().list().len() >= 4);
            core.plugins().health("hangs_in_sync").await.unwrap();
            slowest = slowest.max(t.elapsed());
            answered += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            answered >= 10,
            "only {answered} rounds answered during the hang"
        );
        assert!(
            slowest < Duration::from_millis(200),
            "slowest round {slowest:?}"
        );

        let (elapsed, result) = hanging.await.unwrap();
        match result {
            Err(ManagerError::Call {
                failure: CallFailure::TimedOut(after),
                ..
            }) => assert_eq!(after, timeout),
            other => panic!("expected a timeout, got {other:?}"),
        }
        assert!(
            elapsed >= timeout,
            "answered before the timeout: {elapsed:?}"
        );
        assert!(
            elapsed <= timeout.mul_f64(1.2),
            "timeout took {elapsed:?}, more than 120% of {timeout:?}"
        );
        let rec = core.plugins().record("hangs_in_sync").unwrap();
        assert_eq!(rec.status, PluginStatus::Degraded);
        assert_eq!(rec.counters.consecutive_timeouts, 1);
        assert!(
            rec.error.contains("timed out after 1.000s"),
            "{}",
            rec.error
        );
        core.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_second_real_sync_is_refused_while_one_runs_but_dry_runs_are_not(db) {
        let core = common::engine_on(db).await;
        let manager = Arc::clone(core.plugins());
        let first = tokio::spawn(async move { manager.sync_users("hangs_in_sync", real_sync()).await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let t = Instant::now();
        let err = core
            .plugins()
            .sync_users("hangs_in_sync", real_sync())
            .await
            .unwrap_err();
        assert!(matches!(err, ManagerError::SyncInProgress(_)), "{err:?}");
        assert_eq!(err.to_string(), "sync already in progress");
        assert!(t.elapsed() < Duration::from_millis(100));
        // Dry runs are not serialised: this one waits for its own timeout instead.
        let err = core
            .plugins()
            .sync_users("hangs_in_sync", SyncRequest::default())
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                ManagerError::Call {
                    failure: CallFailure::TimedOut(_),
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(matches!(
            first.await.unwrap(),
            Err(ManagerError::Call {
                failure: CallFailure::TimedOut(_),
                ..
            })
        ));
        core.shutdown().await;
    }

    #[tokio::test]
    async fn stop_persists_across_engine_rebuilds_and_start_brings_it_back(db) {
        {
            let core = common::engine_on(db).await;
            let rec = core.plugins().stop("well_behaved").await.unwrap();
            assert_eq!(rec.status, PluginStatus::Disabled);
            assert!(!rec.enabled);
            let err = core.plugins().health("well_behaved").await.unwrap_err();
            assert!(matches!(err, ManagerError::Disabled(_)), "{err:?}");
            core.shutdown().await;
        }
        let core = common::engine_on(db).await;
        let rec = core.plugins().record("well_behaved").unwrap();
        assert_eq!(rec.status, PluginStatus::Disabled, "disabled flag survives");
        let rec = core.plugins().start("well_behaved").await.unwrap();
        assert_eq!(rec.status, PluginStatus::Initialized);
        core.plugins().health("well_behaved").await.unwrap();
        let rec = core.plugins().restart("well_behaved").await.unwrap();
        assert_eq!(rec.counters.restart_count, 1);
        assert_eq!(rec.status, PluginStatus::Initialized);
        core.shutdown().await;

        let core = common::engine_on(db).await;
        assert_eq!(
            core.plugins().record("well_behaved").unwrap().status,
            PluginStatus::Initialized
        );
        core.shutdown().await;
    }

    #[tokio::test]
    async fn duplicate_names_are_refused_naming_both_origins(db) {
        let dup = PluginDescriptor::in_process(
            nebula_tests::test_manifest("well_behaved"),
            || Box::new(nebula_tests::WellBehaved),
            "embedder::second_copy",
        );
        let core = NebulaCore::builder()
            .config(common::config_on(db))
            .plugin(dup)
            .build()
            .await
            .unwrap();
        let rec = core.plugins().record("well_behaved").unwrap();
        assert_eq!(rec.status, PluginStatus::Degraded);
        assert!(
            rec.error.contains("duplicate plugin name 'well_behaved'"),
            "{}",
            rec.error
        );
        assert!(rec.error.contains("embedder::second_copy"), "{}", rec.error);
        assert!(rec.error.contains("nebula_tests"), "{}", rec.error);
        assert!(core.plugins().health("well_behaved").await.is_err());
        // The others are unaffected.
        core.plugins().health("hangs_in_sync").await.unwrap();
        core.shutdown().await;
    }

    #[tokio::test]
    async fn list_is_sorted_and_has_every_contract_field(db) {
        let core = common::engine_on(db).await;
        let records = core.plugins().list();
        let names: Vec<&str> = records.iter().map(|r| r.name.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        let json = serde_json::to_value(&records[0]).unwrap();
        for field in [
            "name",
            "source",
            "api_version",
            "version",
            "description",
            "scopes",
            "status",
            "message",
            "error",
            "initialized_at",
            "updated_at",
        ] {
            assert!(json.get(field).is_some(), "missing {field}: {json}");
        }
        assert!(core.plugins().record("nope").is_err());
        core.shutdown().await;
    }

    #[tokio::test]
    async fn rescan_reinitialises_plugins_and_keeps_disabled_ones_off(db) {
        let core = common::engine_on(db).await;
        core.plugins().stop("hangs_in_sync").await.unwrap();
        let before = core.plugins().record("well_behaved").unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        let records = core.plugins().rescan().await.unwrap();
        let after = records.iter().find(|r| r.name == "well_behaved").unwrap();
        assert!(after.initialized_at > before.initialized_at);
        let hanging = records.iter().find(|r| r.name == "hangs_in_sync").unwrap();
        assert_eq!(hanging.status, PluginStatus::Disabled);
        core.shutdown().await;
    }
}

// A linked plugin whose manifest cannot be read: registered here, in this test binary, the way
// `register_plugin!` does it, but with a manifest no parser accepts.
nebula_plugin_api::inventory::submit! {
    nebula_plugin_api::PluginRegistration::new(
        "{\"name\": \"unreadable\", \"version\": ",
        || Box::new(nebula_tests::WellBehaved),
        "broken_manifest_crate::registration",
    )
}

nebula_core::each_backend! {
    #[tokio::test]
    async fn a_linked_plugin_with_an_unreadable_manifest_is_listed_with_its_error(db) {
        let core = common::engine_on(db).await;
        // Listed under its crate's name, in process, with the parse error; not silently dropped.
        let rec = core.plugins().record("broken_manifest_crate").unwrap();
        assert_eq!(rec.source.as_str(), "in_process");
        assert_eq!(rec.status, PluginStatus::Degraded);
        assert!(
            rec.error
                .contains("broken_manifest_crate::registration cannot be read"),
            "{}",
            rec.error
        );
        assert!(matches!(
            core.plugins().start("broken_manifest_crate").await,
            Err(ManagerError::NotReady { .. })
        ));
        // Every other plugin keeps working, and a rescan keeps it listed.
        core.plugins().health("well_behaved").await.unwrap();
        let listed = core.plugins().rescan().await.unwrap();
        assert!(listed.iter().any(|r| r.name == "broken_manifest_crate"));
        core.plugins().health("well_behaved").await.unwrap();
        core.shutdown().await;
    }
}

/// Answers health with a megabyte-long, multi-line message.
struct LoudHealth;

#[nebula_plugin_api::async_trait]
impl nebula_plugin_api::Plugin for LoudHealth {
    async fn initialize(
        &self,
        _ctx: nebula_plugin_api::PluginContext,
    ) -> Result<(), nebula_plugin_api::PluginError> {
        Ok(())
    }
    async fn health(
        &self,
    ) -> Result<nebula_plugin_api::JsonObject, nebula_plugin_api::PluginError> {
        Ok(nebula_plugin_api::json_object!({
            "status": "degraded",
            "message": "line\nINFO forged\n".repeat(70_000),
        }))
    }
    async fn sync_users(
        &self,
        _request: SyncRequest,
    ) -> Result<nebula_plugin_api::JsonObject, nebula_plugin_api::PluginError> {
        Ok(nebula_plugin_api::JsonObject::new())
    }
}

nebula_core::each_backend! {
    #[tokio::test]
    async fn a_health_message_is_kept_as_one_bounded_line_in_the_record(db) {
        let core = NebulaCore::builder()
            .config(common::config_on(db))
            .without_inventory()
            .plugin(PluginDescriptor::in_process(
                nebula_tests::test_manifest("loud_health"),
                || Box::new(LoudHealth),
                "manager_test",
            ))
            .build()
            .await
            .unwrap();
        // The caller gets the plugin's answer as it is...
        let answer = core.plugins().health("loud_health").await.unwrap();
        assert!(answer["message"].as_str().unwrap().len() > 1_000_000);
        // ...but every record the list shows keeps one short line of it.
        let rec = core.plugins().record("loud_health").unwrap();
        assert_eq!(rec.status, PluginStatus::Degraded);
        assert!(rec.message.chars().count() <= 1100, "{}", rec.message.len());
        assert!(rec.message.ends_with('…'), "{}", &rec.message[..40]);
        assert!(!rec.message.contains('\n') && !rec.error.contains('\n'));
        assert!(rec.error.len() < 1200, "{}", rec.error.len());
        core.shutdown().await;
    }
}

nebula_core::each_backend! {
    #[tokio::test]
    async fn the_list_version_moves_with_every_change_and_only_then(db) {
        let core = NebulaCore::builder()
            .config(common::config_on(db))
            .without_inventory()
            .plugin(PluginDescriptor::in_process(
                nebula_tests::test_manifest("steady"),
                || Box::new(nebula_tests::WellBehaved),
                "manager_test",
            ))
            .build()
            .await
            .unwrap();
        let plugins = core.plugins();
        // Reading changes nothing (the health monitor's first round is 30 s away).
        let before = plugins.list_version();
        let listed = plugins.list();
        plugins.record("steady").unwrap();
        assert_eq!(plugins.list_version(), before);
        assert_eq!(plugins.list(), listed);

        // A call moves the counters, so the version.
        plugins.health("steady").await.unwrap();
        let after_call = plugins.list_version();
        assert_ne!(after_call, before);
        assert_ne!(plugins.list(), listed);
        assert!(plugins.list()[0].last_call_ms.is_some());

        // So do a stop, a start and a rescan.
        plugins.stop("steady").await.unwrap();
        let after_stop = plugins.list_version();
        assert_ne!(after_stop, after_call);
        assert!(!plugins.list()[0].enabled);
        plugins.start("steady").await.unwrap();
        assert_ne!(plugins.list_version(), after_stop);
        let after_start = plugins.list_version();
        plugins.rescan().await.unwrap();
        assert_ne!(plugins.list_version(), after_start);
        core.shutdown().await;
    }
}

/// The request id the last health call of `SeesRequestId` ran under (a factory is a plain
/// function, so the plugin reports through a static).
static SEEN_REQUEST_ID: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Remembers the request id its health calls run under.
struct SeesRequestId;

#[nebula_plugin_api::async_trait]
impl nebula_plugin_api::Plugin for SeesRequestId {
    async fn initialize(
        &self,
        _ctx: nebula_plugin_api::PluginContext,
    ) -> Result<(), nebula_plugin_api::PluginError> {
        Ok(())
    }
    async fn health(
        &self,
    ) -> Result<nebula_plugin_api::JsonObject, nebula_plugin_api::PluginError> {
        *SEEN_REQUEST_ID.lock().unwrap() =
            nebula_plugin_api::request_id::current_request_id().map(|id| id.to_string());
        Ok(nebula_plugin_api::json_object!({"status": "ok"}))
    }
    async fn sync_users(
        &self,
        _request: SyncRequest,
    ) -> Result<nebula_plugin_api::JsonObject, nebula_plugin_api::PluginError> {
        Ok(nebula_plugin_api::JsonObject::new())
    }
}

#[tokio::test]
async fn every_plugin_call_runs_under_a_request_id_its_callers_or_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let core = NebulaCore::builder()
        .config(common::config_in(dir.path()))
        .without_inventory()
        .without_health_monitor()
        .plugin(PluginDescriptor::in_process(
            nebula_tests::test_manifest("sees_ids"),
            || Box::new(SeesRequestId),
            "manager_test",
        ))
        .build()
        .await
        .unwrap();
    // The caller's id (an HTTP request's) reaches the plugin, across the guard's task.
    nebula_plugin_api::request_id::with_request_id(
        Some("req-9".into()),
        core.plugins().health("sees_ids"),
    )
    .await
    .unwrap();
    assert_eq!(SEEN_REQUEST_ID.lock().unwrap().as_deref(), Some("req-9"));
    // A call no request made (as the health monitor's) gets one of its own.
    core.plugins().health("sees_ids").await.unwrap();
    let own = SEEN_REQUEST_ID.lock().unwrap().clone().expect("an id");
    assert!(
        nebula_plugin_api::request_id::is_sane_request_id(&own) && own.len() == 32,
        "{own}"
    );
    core.shutdown().await;
}
