//! Large real syncs through the engine, on each backend: every user written with its tag, in
//! bounded time.

use std::time::Instant;

use nebula_core::testing::{TestDatabase, TestEngine};
use nebula_plugin_api::SyncUser;
use sample_sync as _;

/// `sample_sync` alone on `db` (the test kit's engine, on either backend).
async fn sample_sync_engine(db: &TestDatabase) -> TestEngine {
    TestEngine::builder("sample_sync")
        .database_url(db.url())
        .start()
        .await
        .expect("engine builds")
}

nebula_core::each_backend! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ten_thousand_users_are_written_with_their_tags_and_a_second_run_updates_them(db) {
        let engine = sample_sync_engine(db).await;
        let users: Vec<SyncUser> = (0..10_000)
            .map(|i| SyncUser {
                db_name: "bulk".into(),
                role_tag: format!("team{}", i % 7),
                ..SyncUser::new(format!("user{i:05}"))
            })
            .collect();
        let started = Instant::now();
        let answer = engine.sync(users.clone()).await.unwrap();
        let first = started.elapsed();
        assert_eq!(answer["created"], 10_000, "{}", answer["status"]);
        assert_eq!(answer["failed"], 0);
        let started = Instant::now();
        let again = engine.sync(users).await.unwrap();
        let second = started.elapsed();
        assert_eq!(again["updated"], 10_000);
        let stored = engine.users("bulk").await.unwrap();
        assert_eq!(stored.len(), 2000, "one page of the listing");
        assert_eq!(stored[0].username, "user00000");
        assert_eq!(stored[0].role_tag, "team0");
        eprintln!(
            "10,000 users on {}: first run {first:?}, second run {second:?}",
            db.backend()
        );
    }

    #[tokio::test]
    async fn one_bad_user_in_a_large_batch_fails_alone(db) {
        let engine = sample_sync_engine(db).await;
        let mut users: Vec<SyncUser> = (0..1_200)
            .map(|i| SyncUser {
                db_name: "mixed".into(),
                ..SyncUser::new(format!("u{i:04}"))
            })
            .collect();
        users[3].db_name = "../escape".into();
        users[700].db_name = "system.db".into();
        let answer = engine.sync(users).await.unwrap();
        assert_eq!(answer["status"], "partial");
        assert_eq!(
            (answer["created"].as_u64(), answer["failed"].as_u64()),
            (Some(1198), Some(2))
        );
        let items = answer["items"].as_array().unwrap();
        assert_eq!(items[3]["action"], "failed");
        assert!(items[3]["error"].as_str().unwrap().contains("db_name"));
        assert_eq!(items[700]["action"], "failed");
        assert!(items[700]["error"].as_str().unwrap().contains("system.db"));
        assert_eq!(items[4]["action"], "created");
        let page = engine.users("mixed").await.unwrap();
        assert_eq!(page.len(), 1198);
        assert!(page.iter().all(|u| u.role_tag == "user"));
    }
}
