//! Several engines on one database behave as one service (SPEC §4): a real sync of a plugin
//! is exclusive across them (a lease in the database, not a process mutex), and a stop or a
//! start through one is followed by the others at their next poll of the enabled flags.
//! Two `NebulaCore`s on one database stand for two servers, on each backend.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use nebula_core::testing::TestDatabase;
use nebula_core::{ManagerError, NebulaCore, PluginStatus};
use nebula_plugin_api::SyncRequest;
use nebula_tests::faults::{descriptor, Counters, Fault};

/// An engine on `db` with the plugin `shared` (its sync hangs until the 1 s call timeout),
/// and the plugin's call counters.
async fn instance_with_counters(db: &TestDatabase) -> (NebulaCore, Arc<Counters>) {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let (plugin, counters) = descriptor("shared", Fault::HangInSync);
    let core = NebulaCore::builder()
        .config(common::config_on(db))
        // Two servers in one test process: give each its own name.
        .instance_id(format!("test-{}", NEXT.fetch_add(1, Ordering::SeqCst)))
        .without_inventory()
        .without_health_monitor()
        .plugin(plugin)
        .build()
        .await
        .expect("engine builds");
    (core, counters)
}

async fn instance(db: &TestDatabase) -> NebulaCore {
    instance_with_counters(db).await.0
}

fn real_sync() -> SyncRequest {
    SyncRequest {
        dry_run: false,
        ..SyncRequest::default()
    }
}

nebula_core::each_backend! {
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_real_sync_per_plugin_across_instances(db) {
    let ((a, a_calls), b) = (instance_with_counters(db).await, instance(db).await);
    // A's sync hangs until its 1 s call timeout; once it is in the plugin, A holds the lease.
    let running = {
        let a = a.clone();
        tokio::spawn(async move { a.plugins().sync_users("shared", real_sync()).await })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while a_calls.syncs.load(Ordering::SeqCst) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "A's sync never started"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(matches!(
        b.plugins().sync_users("shared", real_sync()).await,
        Err(ManagerError::SyncInProgress(name)) if name == "shared"
    ));
    // Dry runs are never serialised.
    let dry = b
        .plugins()
        .sync_users("shared", SyncRequest::default())
        .await;
    assert!(
        !matches!(dry, Err(ManagerError::SyncInProgress(_))),
        "{dry:?}"
    );
    assert!(matches!(
        running.await.unwrap(),
        Err(ManagerError::Call { .. })
    ));
    // A's sync ended (timed out): its lease is released, B may sync (and times out in turn).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match b.plugins().sync_users("shared", real_sync()).await {
            Err(ManagerError::SyncInProgress(_)) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the lease was never released"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(ManagerError::Call { .. }) => break,
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn a_stop_or_start_through_one_instance_is_followed_by_the_other(db) {
    let (a, b) = (instance(db).await, instance(db).await);
    a.plugins().stop("shared").await.unwrap();
    assert_eq!(
        b.plugins().record("shared").unwrap().status,
        PluginStatus::Initialized,
        "not before its poll"
    );
    b.plugins().follow_shared_state().await;
    let record = b.plugins().record("shared").unwrap();
    assert_eq!(record.status, PluginStatus::Disabled);
    assert_eq!(record.message, "stopped by admin");
    assert!(matches!(
        b.plugins()
            .sync_users("shared", SyncRequest::default())
            .await,
        Err(ManagerError::Disabled(_))
    ));

    a.plugins().start("shared").await.unwrap();
    b.plugins().follow_shared_state().await;
    let record = b.plugins().record("shared").unwrap();
    assert_eq!(record.status, PluginStatus::Initialized, "{record:?}");
    assert!(b.plugins().health("shared").await.is_ok());
    // Nothing changed: a poll is a no-op.
    b.plugins().follow_shared_state().await;
    assert_eq!(
        b.plugins().record("shared").unwrap().counters.restart_count,
        0
    );
}

#[tokio::test]
async fn the_poll_runs_on_its_own_every_state_poll_sec(db) {
    let mut config = common::config_on(db);
    config.plugins.state_poll_sec = 0.2;
    let (plugin, _) = descriptor("shared", Fault::None);
    let b = NebulaCore::builder()
        .config(config)
        .instance_id("poller")
        .without_inventory()
        .plugin(plugin)
        .build()
        .await
        .unwrap();
    let a = instance(db).await;
    a.plugins().stop("shared").await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while b.plugins().record("shared").unwrap().status != PluginStatus::Disabled {
        assert!(std::time::Instant::now() < deadline, "never followed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    b.shutdown().await;
}
}
