//! The plugin lifecycle under scripted faults, on tokio's paused clock: no real waiting, the
//! exact sequence of states and counters, recovery or disabling, and the healthy plugin
//! answering at once throughout.
//!
//! SQLite only, unlike the other engine suites: a paused clock jumps to its next timer
//! whenever the runtime waits for a blocking task, and a PostgreSQL round trip (the real-sync
//! lease, the state poll) is long enough for that to fire call timeouts that never happened.
//! What these tests check is the state machine, the same on either backend; what the
//! database adds (the lease, the stored flags) runs on both in `shared_database.rs` and
//! `manager.rs`.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use nebula_core::testing::TestDatabase;
use nebula_core::{NebulaCore, PluginRecord, PluginStatus};
use nebula_plugin_api::SyncRequest;
use nebula_tests::faults::{descriptor, Counters, Fault};

use PluginStatus::{Crashed, Degraded, Disabled, Healthy, Initialized, Unresponsive};

const FAULTY: &str = "faulty";
const GOOD: &str = "good";

async fn engine(db: &TestDatabase, fault: Fault) -> (NebulaCore, Arc<Counters>) {
    let (faulty, counters) = descriptor(FAULTY, fault);
    let (good, _) = descriptor(GOOD, Fault::None);
    let core = NebulaCore::builder()
        .config(common::config_on(db))
        .without_inventory()
        .without_health_monitor()
        .plugin(faulty)
        .plugin(good)
        .build()
        .await
        .unwrap();
    (core, counters)
}

fn rec(core: &NebulaCore) -> PluginRecord {
    core.plugins().record(FAULTY).unwrap()
}

/// One monitor pass, with the good plugin called at the same time: it must answer at once
/// (virtual time does not move for it) however the faulty one behaves.
async fn check(core: &NebulaCore) -> PluginRecord {
    let plugins = core.plugins().clone();
    let good = async {
        let started = tokio::time::Instant::now();
        plugins.health(GOOD).await.unwrap();
        started.elapsed()
    };
    let (_, good_took) = tokio::join!(core.plugins().check_all(), good);
    assert!(
        good_took < Duration::from_millis(1),
        "good plugin took {good_took:?}"
    );
    assert_eq!(core.plugins().record(GOOD).unwrap().status, Healthy);
    rec(core)
}

fn real_sync() -> SyncRequest {
    SyncRequest {
        dry_run: false,
        ..SyncRequest::default()
    }
}

/// (status, consecutive timeouts, consecutive health failures, consecutive crashes, restarts)
fn counters(r: &PluginRecord) -> (PluginStatus, u32, u32, u32, u32) {
    (
        r.status,
        r.counters.consecutive_timeouts,
        r.counters.consecutive_health_failures,
        r.counters.consecutive_crashes,
        r.counters.restart_count,
    )
}

#[tokio::test(start_paused = true)]
async fn a_panic_on_the_second_call_crashes_then_the_monitor_restarts_it() {
    let db = &TestDatabase::sqlite_for_test();
    let (core, calls) = engine(db, Fault::PanicOnSyncCall(2)).await;
    let p = core.plugins();
    assert_eq!(counters(&rec(&core)), (Initialized, 0, 0, 0, 0));
    p.sync_users(FAULTY, real_sync()).await.unwrap();
    let err = p.sync_users(FAULTY, real_sync()).await.unwrap_err();
    assert!(
        err.to_string().contains("scripted panic on sync call 2"),
        "{err}"
    );
    assert_eq!(counters(&rec(&core)), (Crashed, 0, 0, 1, 0));
    // The monitor replaces a crashed instance with a fresh one from the factory.
    assert_eq!(counters(&check(&core).await), (Initialized, 0, 0, 1, 1));
    assert_eq!(calls.inits.load(Ordering::SeqCst), 2);
    assert_eq!(calls.shutdowns.load(Ordering::SeqCst), 1);
    p.sync_users(FAULTY, real_sync()).await.unwrap();
    assert_eq!(counters(&rec(&core)), (Initialized, 0, 0, 0, 1));
    assert_eq!(counters(&check(&core).await), (Healthy, 0, 0, 0, 1));
    let stats = p.stats(FAULTY).unwrap();
    assert_eq!(stats.methods["sync_users"].calls, 3);
    assert_eq!(stats.methods["sync_users"].panics, 1);
    assert_eq!(stats.methods["initialize"].calls, 2);
    core.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_plugin_that_hangs_forever_goes_unresponsive_is_restarted_then_disabled_for_good() {
    let db = &TestDatabase::sqlite_for_test();
    let (core, calls) = engine(db, Fault::HangForever).await;
    let p = core.plugins();
    // Three timed-out syncs: degraded, degraded, unresponsive.
    let mut seen = Vec::new();
    for _ in 0..3 {
        let started = tokio::time::Instant::now();
        let err = p.sync_users(FAULTY, real_sync()).await.unwrap_err();
        assert!(err.to_string().contains("timed out after 1.000s"), "{err}");
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(1),
            "bounded by call_timeout"
        );
        seen.push(counters(&rec(&core)));
    }
    assert_eq!(
        seen,
        [
            (Degraded, 1, 0, 0, 0),
            (Degraded, 2, 0, 0, 0),
            (Unresponsive, 3, 0, 0, 0)
        ]
    );

    // Each monitor pass: a timed-out health check, then the policy.
    let mut passes = Vec::new();
    for _ in 0..7 {
        passes.push(counters(&check(&core).await));
    }
    assert_eq!(
        passes,
        [
            (Initialized, 0, 0, 0, 1), // 4 timeouts in a row -> restart 1
            (Degraded, 1, 1, 0, 1),
            (Initialized, 0, 0, 0, 2), // 2 failed checks -> restart 2
            (Degraded, 1, 1, 0, 2),
            (Initialized, 0, 0, 0, 3), // restart 3: the budget (max_restarts = 3) is spent
            (Degraded, 1, 1, 0, 3),
            (Disabled, 2, 2, 0, 3), // the next restart would exceed it: disabled
        ]
    );
    let r = rec(&core);
    assert!(!r.enabled);
    assert!(r.message.contains("disabled by policy"), "{}", r.message);
    assert!(r.message.contains("max_restarts"), "{}", r.message);
    assert_eq!(calls.inits.load(Ordering::SeqCst), 4);
    // Disabled plugins are not called by the monitor any more.
    let health_calls = calls.health.load(Ordering::SeqCst);
    check(&core).await;
    assert_eq!(calls.health.load(Ordering::SeqCst), health_calls);

    // The state history is in the events.
    // The queue is drained in the background: wait until the newest stored event is the last
    // change (disabled), then look at the whole history.
    let names = wait_for_events(&core, "system.plugin.faulty.", |names| {
        names.first().map(String::as_str) == Some("system.plugin.faulty.disabled")
    })
    .await;
    assert!(
        names.contains(&"system.plugin.faulty.unresponsive".to_owned()),
        "{names:?}"
    );
    assert_eq!(
        names.first().map(String::as_str),
        Some("system.plugin.faulty.disabled")
    );
    core.shutdown().await;
    drop(core);

    // The disabled flag survives a restart of the engine; an admin start resets the budget.
    let (core, _) = engine(db, Fault::HangForever).await;
    assert_eq!(rec(&core).status, Disabled);
    assert!(
        rec(&core).message.starts_with("disabled by policy:"),
        "the reason survives: {}",
        rec(&core).message
    );
    let r = core.plugins().start(FAULTY).await.unwrap();
    assert_eq!(
        (r.status, r.counters.auto_restarts, r.enabled),
        (Initialized, 0, true)
    );
    core.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_sync_that_hangs_while_health_answers_is_not_hidden_by_health() {
    let db = &TestDatabase::sqlite_for_test();
    let (core, calls) = engine(db, Fault::HangInSync).await;
    for _ in 0..3 {
        core.plugins()
            .sync_users(FAULTY, real_sync())
            .await
            .unwrap_err();
    }
    assert_eq!(counters(&rec(&core)), (Unresponsive, 3, 0, 0, 0));
    // Health answers ok, but three timeouts in a row still restart the plugin.
    assert_eq!(counters(&check(&core).await), (Initialized, 0, 0, 0, 1));
    assert_eq!(counters(&check(&core).await), (Healthy, 0, 0, 0, 1));
    assert_eq!(calls.health.load(Ordering::SeqCst), 2);
    core.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_health_answer_already_in_flight_does_not_hide_a_timeout_recorded_meanwhile() {
    let db = &TestDatabase::sqlite_for_test();
    // The call timeout is 1 s. A sync starts at 0 s and times out at 1 s; a health check
    // starts at 0.5 s and answers ok at 1.4 s, after the timeout was recorded.
    let (core, calls) = engine(db, Fault::SlowHealthAndHangInSync(900)).await;
    let plugins = core.plugins().clone();
    let (sync, health) = tokio::join!(plugins.sync_users(FAULTY, real_sync()), async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        plugins.health(FAULTY).await
    });
    health.unwrap();
    assert!(sync.is_err());
    // The ok came last, but it started before the timeout was recorded: the timeout stands.
    let r = rec(&core);
    assert_eq!(counters(&r), (Degraded, 1, 0, 0, 0));
    assert!(r.error.contains("timed out"), "{}", r.error);
    // A health check that starts after the timeout is news about the plugin: it counts.
    plugins.health(FAULTY).await.unwrap();
    assert_eq!(counters(&rec(&core)), (Healthy, 1, 0, 0, 0));
    assert_eq!(calls.health.load(Ordering::SeqCst), 2);
    core.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn the_health_monitor_runs_on_its_own_timer_every_interval() {
    let db = &TestDatabase::sqlite_for_test();
    let (faulty, calls) = descriptor(FAULTY, Fault::FailHealthTimes(1));
    let mut config = common::config_on(db);
    config.plugins.health_interval_sec = 30.0;
    // The monitor is on: nobody calls check_all here.
    let core = NebulaCore::builder()
        .config(config)
        .without_inventory()
        .plugin(faulty)
        .build()
        .await
        .unwrap();
    let health_calls = || calls.health.load(Ordering::SeqCst);
    // Nothing before the first interval has passed.
    tokio::time::sleep(Duration::from_secs(29)).await;
    assert_eq!(health_calls(), 0);
    // One pass per interval: the first fails (degraded), the next recovers.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(health_calls(), 1);
    assert_eq!(counters(&rec(&core)), (Degraded, 0, 1, 0, 0));
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(health_calls(), 2);
    assert_eq!(counters(&rec(&core)), (Healthy, 0, 0, 0, 0));
    tokio::time::sleep(Duration::from_secs(30 * 10)).await;
    assert_eq!(health_calls(), 12);
    // Shutting the engine down stops the timer.
    core.shutdown().await;
    tokio::time::sleep(Duration::from_secs(300)).await;
    assert_eq!(health_calls(), 12);
}

#[tokio::test(start_paused = true)]
async fn failing_health_twice_restarts_once_then_recovers() {
    let db = &TestDatabase::sqlite_for_test();
    let (core, calls) = engine(db, Fault::FailHealthTimes(2)).await;
    let passes = [
        check(&core).await,
        check(&core).await,
        check(&core).await,
        check(&core).await,
    ];
    assert_eq!(
        passes.iter().map(counters).collect::<Vec<_>>(),
        [
            (Degraded, 0, 1, 0, 0),
            (Initialized, 0, 0, 0, 1), // health_restart_threshold = 2
            (Healthy, 0, 0, 0, 1),
            (Healthy, 0, 0, 0, 1),
        ]
    );
    assert!(
        passes[0].error.contains("scripted health failure 1/2"),
        "{}",
        passes[0].error
    );
    assert!(passes[2].error.is_empty());
    assert_eq!(calls.inits.load(Ordering::SeqCst), 2);
    core.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_plugin_that_always_fails_uses_its_restart_budget_then_is_disabled() {
    let db = &TestDatabase::sqlite_for_test();
    let (core, calls) = engine(db, Fault::AlwaysFail).await;
    let err = core
        .plugins()
        .sync_users(FAULTY, real_sync())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("scripted sync failure"));
    assert_eq!(counters(&rec(&core)), (Degraded, 0, 0, 0, 0));
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(check(&core).await.status);
    }
    assert_eq!(
        statuses,
        [
            Degraded,
            Initialized,
            Degraded,
            Initialized,
            Degraded,
            Initialized,
            Degraded,
            Disabled
        ]
    );
    assert_eq!(calls.inits.load(Ordering::SeqCst), 4);
    assert_eq!(rec(&core).counters.restart_count, 3);
    core.shutdown().await;
    drop(core);
    let (core, _) = engine(db, Fault::AlwaysFail).await;
    assert_eq!(
        rec(&core).status,
        Disabled,
        "still disabled after an engine restart"
    );
    core.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_plugin_that_panics_in_initialize_is_retried_then_disabled_by_max_crashes() {
    let db = &TestDatabase::sqlite_for_test();
    let (core, calls) = engine(db, Fault::PanicInInit).await;
    assert_eq!(counters(&rec(&core)), (Crashed, 0, 0, 1, 0));
    assert!(rec(&core).error.contains("scripted panic in initialize"));
    let passes = [check(&core).await, check(&core).await, check(&core).await];
    assert_eq!(
        passes.iter().map(counters).collect::<Vec<_>>(),
        [
            (Crashed, 0, 0, 2, 1),
            (Crashed, 0, 0, 3, 2),
            (Disabled, 0, 0, 3, 2)
        ]
    );
    assert!(
        passes[2].message.contains("max_crashes"),
        "{}",
        passes[2].message
    );
    assert_eq!(calls.inits.load(Ordering::SeqCst), 3);
    core.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_panic_in_shutdown_is_contained_on_restart_stop_and_engine_shutdown() {
    let db = &TestDatabase::sqlite_for_test();
    let (core, calls) = engine(db, Fault::PanicInShutdown).await;
    let r = core.plugins().restart(FAULTY).await.unwrap();
    assert_eq!((r.status, r.counters.restart_count), (Initialized, 1));
    // The old instance's panic is counted; the fresh instance starts with a clean record.
    assert!(r.error.is_empty(), "{}", r.error);
    assert_eq!(
        core.plugins().stats(FAULTY).unwrap().methods["shutdown"].panics,
        1
    );
    core.plugins().health(FAULTY).await.unwrap();
    let r = core.plugins().stop(FAULTY).await.unwrap();
    assert_eq!(r.status, Disabled);
    core.plugins().start(FAULTY).await.unwrap();
    core.shutdown().await;
    assert_eq!(calls.shutdowns.load(Ordering::SeqCst), 3);
    assert_eq!(
        core.plugins().stats(FAULTY).unwrap().methods["shutdown"].panics,
        3
    );
    // The good plugin was never disturbed.
    assert_eq!(
        core.plugins().record(GOOD).unwrap().counters.restart_count,
        0
    );
}

/// Events are stored by a background task; wait (virtually) until the stored names (newest
/// first) satisfy `done`.
async fn wait_for_events(
    core: &NebulaCore,
    prefix: &str,
    done: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let mut names = Vec::new();
    for _ in 0..1000 {
        let events = core.events().list(prefix, 100).await.unwrap();
        names = events.into_iter().map(|e| e.name).collect();
        if done(&names) {
            return names;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("events with prefix {prefix} never got there: {names:?}");
}
