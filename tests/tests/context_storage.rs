//! Context helpers against the real directory: refused calls write nothing.

mod common;

use std::sync::Arc;

use nebula_core::testing::TestDatabase;
use nebula_core::{CoreHost, NebulaCore};
use nebula_plugin_api::{ErrorKind, IdentityRole, PluginContext, Scope, ScopeSet, SyncUser};

async fn bare_engine(db: &TestDatabase) -> NebulaCore {
    NebulaCore::builder()
        .config(common::config_on(db))
        .without_inventory()
        .build()
        .await
        .unwrap()
}

fn context(core: &NebulaCore, scopes: &[Scope]) -> PluginContext {
    let host = Arc::new(CoreHost::new(
        core.directory().clone(),
        core.events().clone(),
    ));
    PluginContext::new("tester", scopes.iter().copied().collect(), host)
}

/// An active user as a test writes it.
fn user(username: &str, db_name: &str, role_tag: &str, email: Option<&str>) -> SyncUser {
    SyncUser {
        db_name: db_name.into(),
        role_tag: role_tag.into(),
        email: email.map(str::to_owned),
        ..SyncUser::new(username)
    }
}

fn role(name: &str, description: &str, is_staff: bool) -> IdentityRole {
    IdentityRole {
        name: name.into(),
        description: description.into(),
        is_staff,
    }
}

nebula_core::each_backend! {
    #[tokio::test]
    async fn helpers_write_with_their_scopes_and_nothing_without(db) {
        let core = bare_engine(db).await;
        assert!(core.plugins().list().is_empty());

        let none = context(&core, &[]);
        assert_eq!(
            none.sync_user(&user("ann", "acme", "dev", None))
                .await
                .unwrap_err()
                .kind(),
            ErrorKind::PermissionDenied
        );
        assert!(none.emit_event("x", serde_json::json!({})).await.is_err());
        assert!(none
            .upsert_identity_role(&role("r", "", false))
            .await
            .is_err());
        assert!(core
            .directory()
            .list_users("acme.db", 10, 0)
            .await
            .unwrap()
            .is_empty());
        assert!(core.events().list("", 10).await.unwrap().is_empty());
        assert!(core.directory().list_roles().await.unwrap().is_empty());

        let all = context(&core, &ScopeSet::all().iter().collect::<Vec<_>>());
        assert!(all
            .sync_user(&user("root", "system.db", "admin", None))
            .await
            .is_err());
        assert!(core
            .directory()
            .list_users("system.db", 10, 0)
            .await
            .unwrap()
            .is_empty());

        all.sync_user(&user("ann", "acme", "Dev Ops", Some("a@x")))
            .await
            .unwrap();
        all.set_identity_tag("ann", "acme", "lead").await.unwrap();
        let err = all
            .set_identity_tag("ghost", "acme", "lead")
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        let listed = all.list_users("acme", 0, 0).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].role_tag, "lead");
        all.upsert_identity_role(&role("Lead", "team lead", true))
            .await
            .unwrap();
        let roles = all.list_identity_roles().await.unwrap();
        assert_eq!((roles[0].name.as_str(), roles[0].is_staff), ("lead", true));
        all.emit_event("hello", serde_json::json!({"n": 1}))
            .await
            .unwrap();
        let events = core.events().list("plugin.tester.", 10).await.unwrap();
        assert_eq!(events[0].name, "plugin.tester.hello");
        assert_eq!(events[0].payload["n"], 1);
        // Prefix matching is literal: '_' and '%' are not wildcards.
        assert!(core
            .events()
            .list("plugin_tester", 10)
            .await
            .unwrap()
            .is_empty());
    }

    #[tokio::test]
    async fn concurrent_syncs_of_the_same_users_never_duplicate(db) {
        let core = bare_engine(db).await;
        let ctx = context(&core, &[Scope::UsersWrite, Scope::IdentityTagsWrite]);
        let mut tasks = Vec::new();
        for round in 0..8 {
            let ctx = ctx.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..25 {
                    ctx.sync_user(&user(
                        &format!("u{i}"),
                        "race.db",
                        &format!("t{round}"),
                        None,
                    ))
                    .await
                    .unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let users = core
            .directory()
            .list_users("race.db", 2000, 0)
            .await
            .unwrap();
        assert_eq!(users.len(), 25);
        assert!(users.iter().all(|u| u.role_tag.starts_with('t')));
    }
}
