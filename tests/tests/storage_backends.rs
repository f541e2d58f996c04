//! The storage suite, on each backend (`each_backend!`: SQLite always, PostgreSQL when
//! `NEBULA_TEST_POSTGRES_URL` is set): the same tests, the same expected answers.

use std::collections::BTreeSet;
use std::path::Path;

use nebula_core::accounts::AccountStore;
use nebula_core::directory::IdentityDirectory;
use nebula_core::events::EventBus;
use nebula_core::{Database, StorageError};
use nebula_plugin_api::{IdentityRole, SyncOutcome, SyncUser};
use serde_json::json;

async fn open(url: &str) -> Database {
    Database::open_async(url, 4).await.expect("database opens")
}

/// The outcomes of a bulk sync, each expected to succeed.
async fn sync_all(directory: &IdentityDirectory, users: &[SyncUser]) -> Vec<SyncOutcome> {
    let results = directory.sync_users("plugin:t", users).await;
    results.into_iter().map(Result::unwrap).collect()
}

fn user(username: &str, email: Option<&str>, role_tag: &str) -> SyncUser {
    SyncUser {
        db_name: "acme.db".into(),
        email: email.map(str::to_owned),
        role_tag: role_tag.into(),
        ..SyncUser::new(username)
    }
}

/// Each backend has its own migrations directory; they hold the same versions and create the
/// same tables, so neither backend can run ahead of the other.
#[test]
fn the_migrations_of_both_backends_are_kept_in_step() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../nebula-core/migrations");
    let versions = |backend: &str| -> BTreeSet<String> {
        std::fs::read_dir(root.join(backend))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    let (sqlite, postgres) = (versions("sqlite"), versions("postgres"));
    assert!(!sqlite.is_empty());
    assert_eq!(sqlite, postgres, "the same migration versions");
    let tables = |backend: &str, version: &str| -> BTreeSet<String> {
        let sql = std::fs::read_to_string(root.join(backend).join(version).join("up.sql")).unwrap();
        sql.split("CREATE TABLE ")
            .skip(1)
            .map(|rest| rest.split_whitespace().next().unwrap().to_owned())
            .chain(
                sql.split("ADD COLUMN ")
                    .skip(1)
                    .map(|rest| format!("column {}", rest.split_whitespace().next().unwrap())),
            )
            .collect()
    };
    for version in &sqlite {
        assert_eq!(
            tables("sqlite", version),
            tables("postgres", version),
            "{version}: the same tables and columns"
        );
    }
}

nebula_core::each_backend! {
    #[tokio::test]
    async fn users_are_created_updated_and_listed_in_byte_order(db) {
        let directory = IdentityDirectory::new(open(db.url()).await);
        let by = "plugin:test";
        assert_eq!(
            directory.sync_user(by, &user("bob", Some("bob@x.org"), "dev")).await.unwrap(),
            SyncOutcome::Created
        );
        assert_eq!(
            directory.sync_user(by, &user("Zed", None, "ops")).await.unwrap(),
            SyncOutcome::Created
        );
        // An update without an e-mail keeps the stored one; the tag follows.
        assert_eq!(
            directory.sync_user(by, &user("bob", None, "admin")).await.unwrap(),
            SyncOutcome::Updated
        );
        let users = directory.list_users("acme.db", 100, 0).await.unwrap();
        let listed: Vec<_> = users
            .iter()
            .map(|u| (u.username.as_str(), u.email.as_deref(), u.role_tag.as_str()))
            .collect();
        // Byte order ("Z" < "b") on both backends, whatever PostgreSQL's locale.
        assert_eq!(
            listed,
            [("Zed", None, "ops"), ("bob", Some("bob@x.org"), "admin")]
        );
        assert_eq!(directory.list_users("acme.db", 1, 1).await.unwrap()[0].username, "bob");
        assert!(directory.list_users("other.db", 100, 0).await.unwrap().is_empty());

        directory.set_identity_tag(by, "acme.db", "Zed", "dev").await.unwrap();
        let missing = directory
            .set_identity_tag(by, "acme.db", "nobody", "dev")
            .await
            .unwrap_err();
        assert!(matches!(missing, StorageError::NotFound(_)), "{missing}");
    }

    #[tokio::test]
    async fn roles_are_upserted_and_listed_by_name(db) {
        let directory = IdentityDirectory::new(open(db.url()).await);
        let role = |name: &str, description: &str, is_staff| IdentityRole {
            name: name.into(),
            description: description.into(),
            is_staff,
        };
        directory.upsert_role("plugin:t", &role("dev", "Developers", false)).await.unwrap();
        directory.upsert_role("plugin:t", &role("admin", "", true)).await.unwrap();
        directory.upsert_role("plugin:t", &role("dev", "Engineers", true)).await.unwrap();
        assert_eq!(
            directory.list_roles().await.unwrap(),
            [role("admin", "", true), role("dev", "Engineers", true)]
        );
    }

    #[tokio::test]
    async fn events_keep_one_order_and_match_prefixes_exactly(db) {
        let events = EventBus::new(open(db.url()).await);
        let mut ids = Vec::new();
        for name in ["plugin.a.sync.started", "plugin.A.other", "plugin.a.sync.finished", "plugin.ä.x"] {
            ids.push(events.publish(name, json!({"name": name, "n": [1, 2]})).await.unwrap().id);
        }
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        let names = |list: Vec<nebula_core::Event>| -> Vec<String> {
            list.into_iter().map(|e| e.name).collect()
        };
        // Case-sensitive, newest first.
        assert_eq!(
            names(events.list("plugin.a.", 10).await.unwrap()),
            ["plugin.a.sync.finished", "plugin.a.sync.started"]
        );
        assert_eq!(names(events.list("plugin.ä", 10).await.unwrap()), ["plugin.ä.x"]);
        assert_eq!(events.list("", 10).await.unwrap().len(), 4);
        let page = events.list_before("plugin.", 2, Some(ids[2])).await.unwrap();
        assert_eq!(names(page), ["plugin.A.other", "plugin.a.sync.started"]);
        let first = &events.list("plugin.a.sync.started", 1).await.unwrap()[0];
        assert_eq!(first.payload, json!({"name": "plugin.a.sync.started", "n": [1, 2]}));
    }

    #[tokio::test]
    async fn accounts_are_upserted_found_and_switched_off(db) {
        let accounts = AccountStore::new(open(db.url()).await);
        assert_eq!(accounts.upsert("root", "hash-1", true).await.unwrap(), SyncOutcome::Created);
        assert_eq!(accounts.upsert("root", "hash-2", true).await.unwrap(), SyncOutcome::Updated);
        let root = accounts.by_username("root").await.unwrap().expect("stored");
        assert_eq!(accounts.by_id(root.id).await.unwrap().unwrap().username, "root");
        accounts.set_flags("root", false, true).await.unwrap();
        assert!(!accounts.by_username("root").await.unwrap().unwrap().is_active);
        assert!(accounts.by_username("nobody").await.unwrap().is_none());
        assert!(matches!(
            accounts.set_flags("nobody", true, true).await.unwrap_err(),
            StorageError::NotFound(_)
        ));
    }

    /// The bulk path (multi-row statements per chunk) answers as the one-user path does:
    /// created, then updated; an update without an e-mail keeps the stored one, with one
    /// it replaces it; `is_active` and the tag follow; a user named twice in one request is
    /// created, then updated.
    #[tokio::test]
    async fn the_bulk_path_answers_and_writes_like_the_one_user_path(db) {
        let directory = IdentityDirectory::new(open(db.url()).await);
        let first = vec![
            user("ann", Some("ann@x.org"), "dev"),
            user("bob", None, "dev"),
            user("cid", Some("cid@x.org"), "dev"),
        ];
        let outcomes = sync_all(&directory, &first).await;
        assert_eq!(outcomes, [SyncOutcome::Created; 3]);
        let mut second = vec![
            user("ann", None, "ops"),
            user("bob", Some("bob@x.org"), "ops"),
            user("dan", None, "ops"),
        ];
        second[0].is_active = false;
        let outcomes = sync_all(&directory, &second).await;
        assert_eq!(
            outcomes,
            [SyncOutcome::Updated, SyncOutcome::Updated, SyncOutcome::Created]
        );
        let stored = directory.list_users("acme.db", 100, 0).await.unwrap();
        let view: Vec<_> = stored
            .iter()
            .map(|u| {
                let email = u.email.as_deref();
                (u.username.as_str(), email, u.is_active, u.role_tag.as_str())
            })
            .collect();
        assert_eq!(
            view,
            [
                ("ann", Some("ann@x.org"), false, "ops"),
                ("bob", Some("bob@x.org"), true, "ops"),
                ("cid", Some("cid@x.org"), true, "dev"),
                ("dan", None, true, "ops"),
            ]
        );
        let twice = [
            user("eve", None, "dev"),
            user("fay", None, "dev"),
            user("eve", Some("eve@x.org"), "ops"),
        ];
        let outcomes = sync_all(&directory, &twice).await;
        assert_eq!(
            outcomes,
            [SyncOutcome::Created, SyncOutcome::Created, SyncOutcome::Updated]
        );
        let eve = directory.list_users("acme.db", 100, 0).await.unwrap();
        let eve = eve.iter().find(|u| u.username == "eve").unwrap();
        let eve_now = (eve.email.as_deref(), eve.role_tag.as_str());
        assert_eq!(eve_now, (Some("eve@x.org"), "ops"));
    }

    /// The bulk path writes a chunk in a few statements, and only when one of its users fails
    /// writes it again user by user (a savepoint each), so that user fails alone. The directory stores
    /// what it gets (the plugin context validates before it): a NUL byte in an e-mail is
    /// refused by PostgreSQL, and stored by SQLite.
    #[tokio::test]
    async fn a_user_the_database_refuses_fails_alone_in_its_chunk(db) {
        let directory = IdentityDirectory::new(open(db.url()).await);
        let mut users: Vec<SyncUser> = (0..600)
            .map(|i| user(&format!("user{i:04}"), None, "dev"))
            .collect();
        users[10].email = Some("bad\0@x.org".into());
        let results = directory.sync_users("plugin:t", &users).await;
        assert_eq!(results.len(), 600);
        let failed: Vec<usize> = (0..600).filter(|i| results[*i].is_err()).collect();
        let stored = directory.list_users("acme.db", 1000, 0).await.unwrap();
        if db.backend() == "postgres" {
            assert_eq!(failed, [10], "only the refused user fails");
            assert_eq!(stored.len(), 599);
            assert!(stored.iter().all(|u| u.username != "user0010" && u.role_tag == "dev"));
        } else {
            assert!(failed.is_empty());
            assert_eq!(stored.len(), 600);
        }
    }

    /// Two pools on one database stand for two instances: syncing the same 1,000 users
    /// through both at once ends with one row and one tag per user (upserts on the unique
    /// keys, no read-then-write), and every user reported once as created overall.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_instances_syncing_the_same_users_at_once_end_with_one_row_each(db) {
        let users: Vec<SyncUser> = (0..1000)
            .map(|i| user(&format!("user{i:04}"), Some(&format!("u{i}@x.org")), "dev"))
            .collect();
        let (a, b) = (
            IdentityDirectory::new(open(db.url()).await),
            IdentityDirectory::new(open(db.url()).await),
        );
        let (through_a, through_b) = {
            let (ua, ub) = (users.clone(), users.clone());
            // One instance per user, the other in chunks, both at once.
            let single = tokio::spawn(async move {
                let mut outcomes = Vec::new();
                for user in &ua {
                    outcomes.push(a.sync_user("plugin:a", user).await.unwrap());
                }
                outcomes
            });
            let bulk = tokio::spawn(async move {
                b.sync_users("plugin:b", &ub)
                    .await
                    .into_iter()
                    .map(Result::unwrap)
                    .collect::<Vec<_>>()
            });
            (single.await.unwrap(), bulk.await.unwrap())
        };
        let created = through_a
            .iter()
            .chain(&through_b)
            .filter(|o| **o == SyncOutcome::Created)
            .count();
        assert_eq!(created, 1000, "each user created exactly once");
        let directory = IdentityDirectory::new(open(db.url()).await);
        let stored = directory.list_users("acme.db", 2000, 0).await.unwrap();
        assert_eq!(stored.len(), 1000);
        assert!(stored.iter().all(|u| u.role_tag == "dev" && u.email.is_some()));
    }
}
