//! The plugin authors' test kit, on the sample plugin: what a plugin crate's tests look like.

use nebula_core::testing::{TestEngine, TestEngineError};
use nebula_plugin_api::{Scope, SyncUser};
use sample_sync as _;

fn user(name: &str, db_name: &str) -> SyncUser {
    SyncUser {
        db_name: db_name.into(),
        role_tag: "Dev Ops".into(),
        ..SyncUser::new(name)
    }
}

#[tokio::test]
async fn a_linked_plugin_runs_on_a_real_engine_and_its_writes_are_visible() {
    let engine = TestEngine::start("sample_sync").await.unwrap();
    assert_eq!(engine.health().await.unwrap()["status"], "ok");
    let preview = engine.dry_run(vec![user("ann", "acme")]).await.unwrap();
    assert_eq!(preview["status"], "dry_run");
    assert!(
        engine.users("acme").await.unwrap().is_empty(),
        "a dry run writes nothing"
    );

    let answer = engine
        .sync(vec![user("ann", "acme"), user("bob", "acme")])
        .await
        .unwrap();
    assert_eq!(
        (answer["created"].as_u64(), answer["failed"].as_u64()),
        (Some(2), Some(0))
    );
    let users = engine.users("acme.db").await.unwrap();
    let tags: Vec<(&str, &str)> = users
        .iter()
        .map(|u| (u.username.as_str(), u.role_tag.as_str()))
        .collect();
    assert_eq!(tags, [("ann", "dev_ops"), ("bob", "dev_ops")]);
    assert_eq!(engine.roles().await.unwrap()[0].name, "contractor");
    let counts = engine.event_counts().await.unwrap();
    assert_eq!(counts["plugin.sample_sync.sync.started"], 1);
    assert_eq!(counts["plugin.sample_sync.sync.finished"], 1);
    assert!(engine
        .logs()
        .iter()
        .any(|l| l.message == "sample_sync initialised"));
    assert_eq!(engine.record().unwrap().status.as_str(), "healthy");
    engine.shutdown().await;
}

#[tokio::test]
async fn grants_are_applied_as_the_server_applies_them() {
    // Without users.write the plugin's syncs fail item by item, and nothing is written.
    let engine = TestEngine::builder("sample_sync")
        .grant(&[Scope::UsersRead, Scope::EventsEmit])
        .start()
        .await
        .unwrap();
    let answer = engine.sync(vec![user("ann", "acme")]).await.unwrap();
    assert_eq!(answer["status"], "partial");
    let error = answer["items"][0]["error"].as_str().unwrap();
    assert!(error.contains("users.write"), "{error}");
    assert!(engine.users("acme").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_plugin_that_is_not_linked_is_named_in_the_error() {
    let err = TestEngine::start("not_linked_anywhere").await.unwrap_err();
    assert!(matches!(err, TestEngineError::NotLinked(_)));
    assert!(err.to_string().contains("'not_linked_anywhere'"), "{err}");
}
