//! `sample_sync` through the whole engine, on each backend.

mod common;

use nebula_core::PluginStatus;
use nebula_plugin_api::{SyncRequest, SyncUser};
// Linking the crate is all it takes: the plugin registers itself through `inventory`.
use sample_sync as _;

fn user(name: &str, db: &str, tag: &str) -> SyncUser {
    SyncUser {
        db_name: db.into(),
        role_tag: tag.into(),
        email: Some(format!("{name}@example.com")),
        ..SyncUser::new(name)
    }
}

nebula_core::each_backend! {
    #[tokio::test]
    async fn sample_sync_is_discovered_through_inventory(db) {
        let registered: Vec<_> = nebula_plugin_api::registered_plugins()
            .filter_map(|r| r.manifest().ok())
            .map(|m| m.name)
            .collect();
        assert!(
            registered.contains(&"sample_sync".to_owned()),
            "{registered:?}"
        );

        let core = common::engine_on(db).await;
        let rec = core.plugins().record("sample_sync").unwrap();
        assert_eq!(rec.status, PluginStatus::Initialized);
        assert_eq!(rec.version, "0.1.0");
        assert_eq!(rec.description, "Sample user sync plugin for plugin_api_v1");
        assert_eq!(rec.scopes.len(), 7);
        assert!(rec.origin.starts_with("sample_sync"), "{}", rec.origin);
        let health = core.plugins().health("sample_sync").await.unwrap();
        assert_eq!(health["status"], "ok");
        core.shutdown().await;
    }

    #[tokio::test]
    async fn real_runs_create_update_fail_per_item_emit_events_and_persist(db) {
        let users = vec![
            user("ann", "acme", "Developer"),
            user("bob", "acme.db", "ops"),
            user("cid", "beta.db", ""),
        ];
        {
            let core = common::engine_on(db).await;
            let first = core
                .plugins()
                .sync_users(
                    "sample_sync",
                    SyncRequest {
                        dry_run: false,
                        users: Some(users.clone()),
                        limit: 0,
                    },
                )
                .await
                .unwrap();
            assert_eq!(first["status"], "ok");
            assert_eq!(
                (first["count"].as_u64(), first["created"].as_u64()),
                (Some(3), Some(3))
            );
            assert_eq!(first["failed"], 0);

            // Re-run: updates; one system.db user fails, the others still succeed.
            let mut again = users.clone();
            again.insert(1, user("root", "system.db", "admin"));
            let second = core
                .plugins()
                .sync_users(
                    "sample_sync",
                    SyncRequest {
                        dry_run: false,
                        users: Some(again),
                        limit: 0,
                    },
                )
                .await
                .unwrap();
            assert_eq!(second["status"], "partial");
            assert_eq!(second["updated"], 3);
            assert_eq!(second["failed"], 1);
            assert_eq!(second["items"][1]["action"], "failed");
            assert!(second["items"][1]["error"]
                .as_str()
                .unwrap()
                .contains("system.db"));
            assert_eq!(second["items"][2]["action"], "updated");

            // A limit processes at most that many users.
            let limited = core
                .plugins()
                .sync_users(
                    "sample_sync",
                    SyncRequest {
                        dry_run: false,
                        users: Some(users.clone()),
                        limit: 1,
                    },
                )
                .await
                .unwrap();
            assert_eq!(limited["count"], 1);

            let events = core
                .events()
                .list("plugin.sample_sync.", 100)
                .await
                .unwrap();
            let names: Vec<&str> = events.iter().map(|e| e.name.as_str()).collect();
            assert_eq!(names.len(), 6, "{names:?}");
            assert!(names
                .iter()
                .all(|n| n.starts_with("plugin.sample_sync.sync.")));
            assert_eq!(names[0], "plugin.sample_sync.sync.finished");
            assert_eq!(events[2].payload["status"], "partial");
            core.shutdown().await;
        }

        // A new engine on the same database sees everything.
        let core = common::engine_on(db).await;
        let acme = core
            .directory()
            .list_users("acme.db", 100, 0)
            .await
            .unwrap();
        let summary: Vec<(String, String)> = acme
            .iter()
            .map(|u| (u.username.clone(), u.role_tag.clone()))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("ann".into(), "developer".into()),
                ("bob".into(), "ops".into())
            ]
        );
        assert_eq!(acme[0].email.as_deref(), Some("ann@example.com"));
        assert!(!acme[0].is_staff);
        let beta = core
            .directory()
            .list_users("beta.db", 100, 0)
            .await
            .unwrap();
        assert_eq!(beta[0].role_tag, "user");
        assert!(core
            .directory()
            .list_users("system.db", 100, 0)
            .await
            .unwrap()
            .is_empty());
        let roles = core.directory().list_roles().await.unwrap();
        assert_eq!(roles[0].name, "contractor");
        assert_eq!(
            core.events()
                .list("plugin.sample_sync.", 100)
                .await
                .unwrap()
                .len(),
            6
        );
        core.shutdown().await;
    }

    #[tokio::test]
    async fn without_events_emit_granted_a_real_run_still_syncs_and_reports_every_user(db) {
        let mut config = common::config_on(db);
        config.plugins.grants.insert(
            "sample_sync".into(),
            vec!["users.write".into(), "identity_tags.write".into()],
        );
        let core = nebula_core::NebulaCore::builder()
            .config(config)
            .build()
            .await
            .unwrap();
        let rec = core.plugins().record("sample_sync").unwrap();
        assert_eq!(rec.scopes, vec!["users.write", "identity_tags.write"]);
        let answer = core
            .plugins()
            .sync_users(
                "sample_sync",
                SyncRequest {
                    dry_run: false,
                    users: Some(vec![user("ann", "acme", "dev")]),
                    limit: 0,
                },
            )
            .await
            .unwrap();
        assert_eq!(
            (answer["status"].as_str(), answer["created"].as_u64()),
            (Some("ok"), Some(1))
        );
        assert!(core
            .events()
            .list("plugin.sample_sync.", 10)
            .await
            .unwrap()
            .is_empty());
        assert!(core.directory().list_roles().await.unwrap().is_empty());
        let logs = core.logs().tail("sample_sync", 10);
        assert!(
            logs.iter()
                .any(|l| l.message.contains("sync.started not emitted")),
            "{logs:?}"
        );
        core.shutdown().await;
    }
}
