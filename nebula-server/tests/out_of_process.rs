//! Issue 10: `sample_sync` runs unchanged out of process. One server holds the linked
//! `sample_sync` and the same crate served by `serve-plugin` as the external `sample_remote`;
//! both get the same requests (each into its own tenant) and must give the same answers,
//! write the same rows, roles and events and log the same lines. The served plugin reaches
//! its context only through the core's host service: it never opens a database.

mod support;

use serde_json::{json, Value};
use support::{command, Peer, Server};

const SCOPES: &str = r#"["users.read", "users.write", "roles.read", "roles.write",
    "identity_tags.read", "identity_tags.write", "events.emit"]"#;

/// The same users for tenant `db`: new ones, one whose role tag needs normalising, and two
/// refused by the context (the reserved tenant, a tenant name that is a path).
fn users(db: &str) -> Value {
    json!([
        {"username": "ann", "db_name": db, "role_tag": "developer", "email": "ann@example.com", "is_active": true},
        {"username": "bob", "db_name": db, "role_tag": "Dev Ops!", "is_active": false},
        {"username": "cat", "db_name": "system.db", "role_tag": "user", "is_active": true},
        {"username": "dan", "db_name": "../etc", "role_tag": "user", "is_active": true},
    ])
}

/// An answer or a row with the tenant and plugin names made neutral.
fn neutral(value: &Value, db: &str, plugin: &str) -> Value {
    let text = value
        .to_string()
        .replace(&format!("{db}.db"), "TENANT.db")
        .replace(db, "TENANT")
        .replace(plugin, "PLUGIN");
    serde_json::from_str(&text).unwrap()
}

fn sync(server: &Server, plugin: &str, db: &str, dry_run: bool) -> Value {
    let answer = server.post(
        &format!("/system/plugins/{plugin}/sync-users"),
        &json!({"dry_run": dry_run, "users": users(db)}),
    );
    assert_eq!(answer.status, 200, "{plugin}: {}", answer.body);
    neutral(&answer.body, db, plugin)
}

fn rows(server: &Server, db: &str) -> Value {
    let answer = server.get(&format!("/system/directory/users?db_name={db}"));
    assert_eq!(answer.status, 200, "{}", answer.body);
    let mut items = answer.body["items"].clone();
    for item in items.as_array_mut().unwrap() {
        // Times differ between the two writes; everything else must not.
        item.as_object_mut().unwrap().retain(|k, _| {
            [
                "username",
                "db_name",
                "role_tag",
                "email",
                "is_active",
                "is_staff",
            ]
            .contains(&k.as_str())
        });
    }
    neutral(&items, db, "-")
}

fn events_of(server: &Server, plugin: &str) -> Vec<Value> {
    let answer = server.get("/system/events?limit=500");
    assert_eq!(answer.status, 200, "{}", answer.body);
    let prefix = format!("plugin.{plugin}.");
    let mut events: Vec<Value> = answer.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["name"].as_str().unwrap().starts_with(&prefix))
        .map(|e| json!({"name": e["name"].as_str().unwrap().replace(plugin, "PLUGIN"), "payload": e["payload"]}))
        .collect();
    events.sort_by_key(|e| e.to_string());
    events
}

fn log_lines(server: &Server, plugin: &str) -> Vec<String> {
    let answer = server.get(&format!("/system/plugins/{plugin}/logs"));
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.body["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| format!("{} {}", l["level"], l["message"].as_str().unwrap()))
        .collect()
}

/// `serve-plugin sample_sync` on a unix socket, and a server (its `[plugins]` table given)
/// that lists it as the external plugin `sample_remote`. The directories live as long as
/// the returned guard.
struct Setup {
    server: Server,
    peer: Peer,
    peer_dir: tempfile::TempDir,
    _dir: tempfile::TempDir,
}

fn setup(plugins_table: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let peer_dir = tempfile::tempdir().unwrap();
    let socket = peer_dir.path().join("sample.sock");
    let peer = Peer::rust(
        peer_dir.path(),
        &format!("unix://{}", socket.display()),
        None,
    );
    let config = dir.path().join("nebula.toml");
    std::fs::write(
        &config,
        format!(
            "[plugins]\n{plugins_table}\n\
             [[plugins.external]]\nname = \"sample_remote\"\nendpoint = \"{}\"\nscopes = {SCOPES}\n",
            peer.endpoint
        ),
    )
    .unwrap();
    let server = Server::spawn(
        command(dir.path())
            .arg("--config")
            .arg(&config)
            .env("NEBULA__SERVER__BIND", "127.0.0.1:0"),
        dir.path(),
    );
    Setup {
        server,
        peer,
        peer_dir,
        _dir: dir,
    }
}

#[test]
fn sample_sync_out_of_process_answers_and_writes_like_the_linked_one() {
    let Setup {
        server,
        peer,
        peer_dir,
        _dir,
    } = setup("call_timeout_sec = 10\nhealth_interval_sec = 3600");
    let health = |plugin: &str| server.get(&format!("/system/plugins/{plugin}/health")).body;
    assert_eq!(
        neutral(&health("sample_sync"), "-", "sample_sync"),
        neutral(&health("sample_remote"), "-", "sample_remote")
    );
    for dry_run in [true, false, false] {
        let linked = sync(&server, "sample_sync", "linked_t", dry_run);
        let remote = sync(&server, "sample_remote", "remote_t", dry_run);
        assert_eq!(linked, remote, "dry_run = {dry_run}");
        if !dry_run {
            assert_eq!(linked["result"]["failed"], 2, "{linked}");
        }
    }
    // The second real run updated what the first created.
    let again = sync(&server, "sample_remote", "remote_t", false);
    assert_eq!(again["result"]["updated"], 2, "{again}");

    let linked_rows = rows(&server, "linked_t");
    assert_eq!(linked_rows.as_array().unwrap().len(), 2, "{linked_rows}");
    assert_eq!(linked_rows[1]["role_tag"], "dev_ops", "normalised");
    assert_eq!(linked_rows, rows(&server, "remote_t"));
    let roles = server.get("/system/directory/roles").body;
    assert!(roles.to_string().contains("contractor"), "{roles}");
    let linked_events = events_of(&server, "sample_sync");
    assert!(!linked_events.is_empty());
    let mut remote_events = events_of(&server, "sample_remote");
    // The remote plugin ran once more (`again`): every linked event is there, plus one pair.
    assert_eq!(
        remote_events.len(),
        linked_events.len() + 2,
        "{remote_events:?}"
    );
    for event in &linked_events {
        let at = remote_events
            .iter()
            .position(|e| e == event)
            .unwrap_or_else(|| panic!("{event} missing from {remote_events:?}"));
        remote_events.remove(at);
    }
    // The same log lines (the initialisation line, each failed user's line), through the
    // host service's `Log` for the remote one.
    let mut remote_lines = log_lines(&server, "sample_remote");
    let linked_lines = log_lines(&server, "sample_sync");
    assert!(
        linked_lines.iter().any(|l| l.contains("failed")),
        "{linked_lines:?}"
    );
    for line in &linked_lines {
        let at = remote_lines
            .iter()
            .position(|l| l == line)
            .unwrap_or_else(|| panic!("{line:?} missing from {remote_lines:?}"));
        remote_lines.remove(at);
    }

    // The served plugin never opened a database of its own.
    assert!(
        !peer_dir.path().join("data").exists(),
        "serve-plugin created {:?}",
        std::fs::read_dir(peer_dir.path().join("data")).map(|d| d.count())
    );
    drop(server);
    peer.terminate();
}

/// Issue 10: 10,000 users through an external Rust plugin, written back through the host
/// service's bulk `SyncUsers`, within the default call timeout (10 s; a slower run is a 504).
#[test]
fn ten_thousand_users_through_an_external_plugin_fit_in_the_default_call_timeout() {
    // The default call timeout: nothing set in [plugins].
    let Setup {
        server,
        peer,
        peer_dir: _peer_dir,
        _dir,
    } = setup("");
    let users: Vec<Value> = (0..10_000)
        .map(|i| {
            json!({"username": format!("user{i:05}"), "db_name": "bulk", "role_tag": "staff",
                   "email": format!("user{i}@example.com"), "is_active": true})
        })
        .collect();
    for (round, outcome) in [(1, "created"), (2, "updated")] {
        let started = std::time::Instant::now();
        let answer = server.post(
            "/system/plugins/sample_remote/sync-users",
            &json!({"dry_run": false, "users": users}),
        );
        let took = started.elapsed();
        assert_eq!(
            answer.status, 200,
            "round {round} after {took:?}: {}",
            answer.body
        );
        assert_eq!(answer.body["result"][outcome], 10_000, "round {round}");
        assert_eq!(answer.body["result"]["failed"], 0);
        eprintln!("10,000 users {outcome} through the external plugin in {took:?}");
    }
    let last = server.get("/system/directory/users?db_name=bulk&offset=9999&limit=10");
    assert_eq!(last.body["count"], 1, "{}", last.body);
    assert_eq!(last.body["items"][0]["username"], "user09999");
    drop(server);
    peer.terminate();
}

/// The host service's socket: in the data directory, mode 0600, removed on a clean stop,
/// replaced when a killed server left it behind, never taken from a server still running.
#[test]
fn the_host_socket_is_private_replaced_when_stale_and_never_stolen() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("data/host.sock");
    let server = Server::start(dir.path(), &[]);
    let meta = std::fs::symlink_metadata(&socket).expect("the socket exists");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    // A second server on the same data directory must not take the socket over.
    let out = support::run_until_exit(
        command(dir.path()).env("NEBULA__SERVER__BIND", "127.0.0.1:0"),
        std::time::Duration::from_secs(30),
    )
    .expect("the second server exits");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("host.sock is in use by another process"),
        "{stderr}"
    );
    assert_eq!(
        server.get("/healthz").status,
        200,
        "the first one still serves"
    );

    server.kill9();
    assert!(socket.exists(), "a killed server leaves its socket behind");
    let server = Server::start(dir.path(), &[]);
    assert_eq!(
        server.get("/healthz").status,
        200,
        "the stale socket was replaced"
    );
    let status = server.signal_and_wait(libc::SIGTERM, std::time::Duration::from_secs(20));
    assert!(status.success(), "{status:?}");
    assert!(!socket.exists(), "removed on a clean stop");
}

/// A data directory whose path is too long for a unix socket: the host service's socket goes
/// to the user's private socket directory, named after the data directory, so a second
/// server on the same directory still finds it in use (and never reaps the first one's
/// plugins).
#[test]
fn a_long_data_directory_path_still_serves_the_host_service_and_guards_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d".repeat(120));
    let url = format!("sqlite://{}/nebula.db", data.display());
    let env = [("NEBULA__DATABASE__URL", url.as_str())];
    let server = Server::start(dir.path(), &env);
    assert_eq!(server.request("GET", "/healthz", &[], None).status, 200);
    assert!(!data.join("host.sock").exists());
    let out = support::run_until_exit(
        command(dir.path())
            .env("NEBULA__SERVER__BIND", "127.0.0.1:0")
            .env("NEBULA__DATABASE__URL", &url),
        std::time::Duration::from_secs(30),
    )
    .expect("the second server exits");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("is in use by another process"), "{stderr}");
    let status = server.signal_and_wait(libc::SIGTERM, std::time::Duration::from_secs(20));
    assert!(status.success(), "{status:?}");
}
