//! `csv_import` on the real engine (SQLite in a temporary directory), through the test kit.

use std::path::{Path, PathBuf};

use csv_import as _; // linking the crate registers the plugin
use nebula_core::testing::{plugin_error, TestEngine};
use nebula_plugin_api::{json_object, ErrorKind, Scope, SyncRequest, SyncUser};

/// A CSV file in its own temporary directory (removed when dropped).
struct CsvFile {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl CsvFile {
    fn new(text: &str) -> CsvFile {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.csv");
        std::fs::write(&path, text).unwrap();
        CsvFile { _dir: dir, path }
    }

    fn rewrite(&self, text: &str) {
        std::fs::write(&self.path, text).unwrap();
    }
}

/// The plugin on a fresh engine, importing `path` into `acme.db`.
async fn engine(path: &Path) -> TestEngine {
    TestEngine::builder("csv_import")
        .settings(json_object!({"path": path, "db_name": "acme"}))
        .start()
        .await
        .unwrap()
}

fn actions(answer: &nebula_plugin_api::JsonObject) -> Vec<String> {
    answer["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| format!("{} {}", i["line"], i["action"].as_str().unwrap()))
        .collect()
}

const FIRST: &str = "username,email,role_tag,is_active\n\
                     ann,ann@example.com,Dev Ops,true\n\
                     bob,,,\n\
                     cid,cid@example.com,ops,false\n";

#[tokio::test]
async fn the_first_import_creates_every_user_and_emits_its_events() {
    let file = CsvFile::new(FIRST);
    let engine = engine(&file.path).await;
    assert_eq!(
        engine.health().await.unwrap(),
        json_object!({"status": "ok", "configured": true})
    );

    let answer = engine.sync(Vec::new()).await.unwrap();
    assert_eq!(answer["status"], "ok");
    assert_eq!(answer["db_name"], "acme.db");
    assert_eq!(
        (answer["count"].as_u64(), answer["created"].as_u64()),
        (Some(3), Some(3))
    );
    assert_eq!(actions(&answer), ["2 created", "3 created", "4 created"]);

    let users = engine.users("acme").await.unwrap();
    let rows: Vec<(&str, Option<&str>, &str, bool)> = users
        .iter()
        .map(|u| {
            let email = u.email.as_deref();
            (u.username.as_str(), email, u.role_tag.as_str(), u.is_active)
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("ann", Some("ann@example.com"), "dev_ops", true),
            ("bob", None, "user", true),
            ("cid", Some("cid@example.com"), "ops", false),
        ]
    );
    let events = engine.events().await.unwrap();
    let names: Vec<&str> = events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "plugin.csv_import.sync.started",
            "plugin.csv_import.sync.finished"
        ]
    );
    assert_eq!(events[1].payload["created"], 3);
    assert!(engine
        .logs()
        .iter()
        .any(|l| l.message == "imported 3 lines: 3 created, 0 updated, 0 failed"));
    engine.shutdown().await;
}

#[tokio::test]
async fn a_second_import_updates_what_changed_and_creates_what_is_new() {
    let file = CsvFile::new(FIRST);
    let engine = engine(&file.path).await;
    engine.sync(Vec::new()).await.unwrap();

    // Columns in another order; ann changes role and address, cid comes back, dan is new.
    file.rewrite(
        "is_active,username,role_tag,email\n\
         yes,ann,lead,ann@corp.example\n\
         1,cid,ops,cid@example.com\n\
         no,dan,,\n",
    );
    let preview = engine.dry_run(Vec::new()).await.unwrap();
    assert_eq!(
        actions(&preview),
        ["2 would_update", "3 would_update", "4 would_create"]
    );
    let answer = engine.sync(Vec::new()).await.unwrap();
    assert_eq!(actions(&answer), ["2 updated", "3 updated", "4 created"]);
    assert_eq!(
        (answer["updated"].as_u64(), answer["created"].as_u64()),
        (Some(2), Some(1))
    );
    let users = engine.users("acme").await.unwrap();
    let ann = &users[0];
    assert_eq!(
        (ann.email.as_deref(), ann.role_tag.as_str()),
        (Some("ann@corp.example"), "lead")
    );
    assert!(users[2].is_active, "cid is active again");
    assert_eq!(
        (users[3].username.as_str(), users[3].is_active),
        ("dan", false)
    );
    // bob is not in the file any more: an import never deletes.
    assert_eq!(users.len(), 4);
}

#[tokio::test]
async fn bad_rows_are_failed_items_naming_their_line_and_the_rest_is_imported() {
    let file = CsvFile::new(
        "username,is_active\n\
         ann,true\n\
         ,true\n\
         bob,maybe\n\
         \n\
         cid,false,extra\n\
         dan,no\n",
    );
    let engine = engine(&file.path).await;
    assert_eq!(engine.health().await.unwrap()["status"], "ok");
    let answer = engine.sync(Vec::new()).await.unwrap();
    assert_eq!(answer["status"], "partial");
    assert_eq!(
        (answer["created"].as_u64(), answer["failed"].as_u64()),
        (Some(2), Some(3))
    );
    let errors: Vec<&str> = answer["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["error"].as_str())
        .collect();
    assert_eq!(
        errors,
        [
            "line 3: username is empty",
            "line 4: is_active: expected true or false (or yes/no, 1/0), got 'maybe'",
            "line 6: 3 fields, the header has 2",
        ]
    );
    assert_eq!(answer["items"][2]["username"], "bob");
    let names: Vec<String> = engine
        .users("acme")
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.username)
        .collect();
    assert_eq!(names, ["ann", "dan"]);
    // Bad rows are the file's fault, not the plugin's: it stays healthy.
    let record = engine.record().unwrap();
    assert_eq!(
        (record.status.as_str(), record.error.as_str()),
        ("healthy", "")
    );
}

#[tokio::test]
async fn a_missing_file_degrades_health_and_the_sync_fails_cleanly_writing_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere.csv");
    let engine = engine(&missing).await;

    let health = engine.health().await.unwrap();
    assert_eq!(health["status"], "degraded");
    let message = health["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!(
            "cannot read '{}' (plugins.settings.csv_import.path): No such file",
            missing.display()
        )),
        "{message}"
    );
    assert_eq!(engine.record().unwrap().status.as_str(), "degraded");

    for dry_run in [true, false] {
        let request = SyncRequest {
            dry_run,
            ..SyncRequest::default()
        };
        let err = plugin_error(engine.call(request).await.unwrap_err());
        assert_eq!(err.kind(), ErrorKind::Unavailable);
        assert!(err.to_string().contains("cannot read"), "{err}");
    }
    assert!(engine.users("acme").await.unwrap().is_empty());
    assert!(
        engine.events().await.unwrap().is_empty(),
        "not even sync.started"
    );

    // The file appears: the next check is healthy again, without a restart.
    std::fs::write(&missing, "username\nann\n").unwrap();
    assert_eq!(engine.health().await.unwrap()["status"], "ok");
    assert_eq!(engine.sync(Vec::new()).await.unwrap()["created"], 1);
}

#[tokio::test]
async fn settings_errors_name_the_key() {
    let file = CsvFile::new(FIRST);
    let path = file.path.display().to_string();
    let cases = [
        (
            json_object!({"db_name": "acme"}),
            "plugins.settings.csv_import: missing field `path`",
        ),
        (
            json_object!({"path": path}),
            "plugins.settings.csv_import: missing field `db_name`",
        ),
        (
            json_object!({"path": path, "db_name": "acme", "delimeter": ";"}),
            "plugins.settings.csv_import.delimeter: unknown field `delimeter`, expected one of",
        ),
        (
            json_object!({"path": path, "db_name": "acme", "delimiter": ";;"}),
            "plugins.settings.csv_import.delimiter: invalid value",
        ),
        (
            json_object!({"path": path, "db_name": "acme", "delimiter": "é"}),
            "plugins.settings.csv_import.delimiter: expected one ASCII character",
        ),
        (
            json_object!({"path": path, "db_name": "system.db"}),
            "plugins.settings.csv_import.db_name: plugins never write system.db",
        ),
        (
            json_object!({"path": path, "db_name": "../etc"}),
            "plugins.settings.csv_import.db_name: ",
        ),
    ];
    for (settings, expected) in cases {
        let engine = TestEngine::builder("csv_import")
            .settings(settings)
            .start()
            .await
            .unwrap();
        // It initialises (listed, nothing else affected) and says what is wrong.
        assert_eq!(engine.record().unwrap().status.as_str(), "initialized");
        let health = engine.health().await.unwrap();
        assert_eq!(health["status"], "degraded", "{expected}");
        let message = health["message"].as_str().unwrap();
        assert!(message.starts_with(expected), "{message}");

        let err = plugin_error(engine.sync(Vec::new()).await.unwrap_err());
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.to_string().starts_with(expected), "{err}");
        assert!(engine.users("acme").await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn without_any_settings_it_is_listed_healthy_but_unconfigured_and_never_disabled() {
    let engine = TestEngine::start("csv_import").await.unwrap();
    let health = engine.health().await.unwrap();
    assert_eq!(
        (health["status"].as_str(), health["configured"].as_bool()),
        (Some("ok"), Some(false))
    );
    let err = plugin_error(engine.sync(Vec::new()).await.unwrap_err());
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert_eq!(
        err.to_string(),
        "plugins.settings.csv_import: missing field `path`"
    );
    // Many monitor passes later it is still there: an unused plugin is not an alarm.
    for _ in 0..10 {
        engine.core().plugins().check_all().await;
    }
    let record = engine.record().unwrap();
    assert_eq!(record.status.as_str(), "healthy");
    assert!(engine.logs().iter().any(|l| l
        .message
        .starts_with("not configured: add [plugins.settings.csv_import]")));
}

#[tokio::test]
async fn without_users_write_nothing_is_written() {
    let file = CsvFile::new(FIRST);
    let engine = TestEngine::builder("csv_import")
        .settings(json_object!({"path": file.path, "db_name": "acme"}))
        .grant(&[
            Scope::UsersRead,
            Scope::IdentityTagsRead,
            Scope::IdentityTagsWrite,
        ])
        .start()
        .await
        .unwrap();
    let answer = engine.sync(Vec::new()).await.unwrap();
    assert_eq!(answer["status"], "partial");
    assert_eq!(answer["failed"], 3);
    let error = answer["items"][0]["error"].as_str().unwrap();
    assert_eq!(
        error,
        "line 2: plugin 'csv_import' lacks scope 'users.write'"
    );
    assert!(engine.users("acme").await.unwrap().is_empty());
    // Without events.emit, the events are skipped (and logged), not the import's failure.
    assert!(engine.events().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_dry_run_writes_nothing() {
    let file = CsvFile::new(FIRST);
    let engine = engine(&file.path).await;
    let answer = engine.dry_run(Vec::new()).await.unwrap();
    assert_eq!(answer["status"], "dry_run");
    assert_eq!(
        (answer["count"].as_u64(), answer["would_create"].as_u64()),
        (Some(3), Some(3))
    );
    assert_eq!(answer["items"][0]["role_tag"], "dev_ops");
    assert!(engine.users("acme").await.unwrap().is_empty());
    assert!(engine.events().await.unwrap().is_empty());
}

#[tokio::test]
async fn the_requests_users_and_limit_select_the_rows() {
    let file = CsvFile::new(FIRST);
    let engine = engine(&file.path).await;
    // Only the usernames count: their other fields come from the file.
    let wanted = |name: &str| SyncUser {
        role_tag: "ignored".into(),
        ..SyncUser::new(name)
    };
    let answer = engine
        .sync(vec![wanted("cid"), wanted("ann"), wanted("zoe")])
        .await
        .unwrap();
    assert_eq!(actions(&answer), ["2 created", "4 created"]);
    assert_eq!(
        answer["not_in_file"],
        nebula_plugin_api::serde_json::json!(["zoe"])
    );
    assert_eq!(engine.users("acme").await.unwrap()[0].role_tag, "dev_ops");

    let limited = SyncRequest {
        dry_run: false,
        limit: 2,
        ..SyncRequest::default()
    };
    let answer = engine.call(limited).await.unwrap();
    assert_eq!(actions(&answer), ["2 updated", "3 created"]);
    assert!(answer.get("not_in_file").is_none());
    assert_eq!(engine.users("acme").await.unwrap().len(), 3);
}

#[tokio::test]
async fn a_file_missing_for_long_gets_the_plugin_disabled_until_an_admin_starts_it() {
    // The host's health policy, as it applies to this plugin (docs/PLUGIN_AUTHOR_GUIDE.md):
    // degraded health → restarts → disabled once the restart budget is spent.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("later.csv");
    let engine = engine(&path).await;
    let mut passes = 0;
    while engine.record().unwrap().status.as_str() != "disabled" {
        engine.core().plugins().check_all().await;
        passes += 1;
        assert!(passes <= 20, "never disabled");
    }
    // health_restart_threshold (2) failed checks per restart, max_restarts (3) restarts.
    assert_eq!(passes, 8);
    std::fs::write(&path, "username\nann\n").unwrap();
    engine.core().plugins().start("csv_import").await.unwrap();
    assert_eq!(engine.health().await.unwrap()["status"], "ok");
}
