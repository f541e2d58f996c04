//! `ldap_sync` in the real server, through HTTP, against a real OpenLDAP server
//! (`ldap_sync::testing`): 10,000 entries synced, the bind password from the environment and
//! never shown, a wrong password as a 503 health and a clean sync failure.
//!
//! Without `slapd` installed these tests print why and pass, except under `CI`.

mod support;

use std::time::Instant;

use ldap_sync::testing::{
    require_slapd, Group, Person, Slapd, SlapdOptions, GROUPS_DN, PEOPLE_DN, READER_DN,
    READER_PASSWORD,
};
use serde_json::json;
use support::Server;

/// `nebula.toml` for `ldap_sync` reading `url`; the password is not in it.
fn config(url: &str) -> String {
    format!(
        r#"[plugins.settings.ldap_sync]
url = "{url}"
bind_dn = "{READER_DN}"
user_base_dn = "{PEOPLE_DN}"
disabled_filter = "(employeeType=disabled)"
group_base_dn = "{GROUPS_DN}"
role_map = [{{ group = "admins", role_tag = "admin" }}]
db_name = "acme"
mode = "mirror"
"#
    )
}

const PASSWORD_ENV: &str = "NEBULA__PLUGINS__SETTINGS__LDAP_SYNC__BIND_PASSWORD";

#[test]
fn ten_thousand_ldap_entries_sync_through_http_with_the_password_from_the_environment() {
    if !require_slapd() {
        return;
    }
    let mut people: Vec<Person> = (0..10_000).map(Person::numbered).collect();
    people[42].disabled = true;
    let admins: Vec<String> = (0..50).map(|n| format!("u{n:05}")).collect();
    let admins: Vec<&str> = admins.iter().map(String::as_str).collect();
    let slapd = Slapd::start(
        &SlapdOptions::default(),
        &people,
        &[Group::new("admins", &admins)],
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("nebula.toml"), config(&slapd.url())).unwrap();
    let log = dir.path().join("server.log");
    let server = Server::start_logging_to(dir.path(), &[(PASSWORD_ENV, READER_PASSWORD)], &log);

    let health = server.get("/system/plugins/ldap_sync/health");
    assert_eq!(health.status, 200, "{}", health.body);

    let started = Instant::now();
    let preview = server.post(
        "/system/plugins/ldap_sync/sync-users",
        &json!({"dry_run": true}),
    );
    let preview_time = started.elapsed();
    assert_eq!(preview.status, 200, "{}", preview.body);
    assert_eq!(preview.body["result"]["would_create"], 10_000);

    let started = Instant::now();
    let answer = server.post(
        "/system/plugins/ldap_sync/sync-users",
        &json!({"dry_run": false}),
    );
    let sync_time = started.elapsed();
    assert_eq!(answer.status, 200, "{}", answer.body);
    let result = &answer.body["result"];
    assert_eq!(result["status"], "ok");
    assert_eq!(
        (result["created"].as_u64(), result["failed"].as_u64()),
        (Some(10_000), Some(0))
    );
    let items = result["items"].as_array().unwrap();
    assert_eq!(items[0]["role_tag"], "admin");
    assert_eq!(items[42]["username"], "u00042");
    eprintln!(
        "ldap_sync over HTTP, 10,000 entries: dry run {:.2} s, real run {:.2} s",
        preview_time.as_secs_f64(),
        sync_time.as_secs_f64()
    );

    let started = Instant::now();
    let again = server.post(
        "/system/plugins/ldap_sync/sync-users",
        &json!({"dry_run": false, "users": []}),
    );
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body["result"]["unchanged"], 10_000);
    eprintln!(
        "ldap_sync over HTTP, 10,000 entries unchanged: {:.2} s",
        started.elapsed().as_secs_f64()
    );

    // The password is in no answer and no log line.
    let listed = server.get("/system/plugins");
    assert!(!listed.text.contains(READER_PASSWORD));
    drop(server);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(!logged.contains(READER_PASSWORD), "the password was logged");
    assert!(logged.contains("synced 10000 users from LDAP"), "{logged}");
}

#[test]
fn a_wrong_password_is_a_503_health_and_a_sync_that_writes_nothing() {
    if !require_slapd() {
        return;
    }
    let slapd = Slapd::start(&SlapdOptions::default(), &[Person::new("ann")], &[]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("nebula.toml"), config(&slapd.url())).unwrap();
    let server = Server::start(dir.path(), &[(PASSWORD_ENV, "wrong-password-xyz")]);
    let health = server.get("/system/plugins/ldap_sync/health");
    assert_eq!(health.status, 503, "{}", health.body);
    let message = health.body["health"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(message.contains("bind as 'cn=reader"), "{}", health.body);
    assert!(!health.text.contains("wrong-password-xyz"));

    let answer = server.post(
        "/system/plugins/ldap_sync/sync-users",
        &json!({"dry_run": false}),
    );
    // A plugin whose upstream failed: 502, as for every plugin error of that kind (HTTP_API.md).
    assert_eq!(answer.status, 502, "{}", answer.body);
    assert!(!answer.text.contains("wrong-password-xyz"));
    let users = server.get("/system/directory/users?db_name=acme");
    assert_eq!(users.status, 200, "{}", users.body);
    assert_eq!(users.body["items"], json!([]), "nothing written");
}

/// `ldap_sync` as a process plugin (`ldap-sync-process`) under another name: its settings,
/// the password from the environment included, reach it through the host service, and its
/// mirror mode reads `synced_by` back through it.
#[test]
fn ldap_sync_runs_as_a_process_plugin_with_its_settings_and_secret() {
    if !require_slapd() {
        return;
    }
    let people: Vec<Person> = (0..30).map(Person::numbered).collect();
    let slapd = Slapd::start(&SlapdOptions::default(), &people, &[]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let plugin_dir = dir.path().join("plugins/ldap_proc");
    std::fs::create_dir_all(&plugin_dir).unwrap();
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../ldap-sync/plugin.json"),
    )
    .unwrap();
    let mut manifest: serde_json::Value = serde_json::from_str(&text).unwrap();
    manifest["name"] = json!("ldap_proc");
    manifest["runtime"] = json!({"command": [env!("CARGO_BIN_EXE_ldap-sync-process")]});
    std::fs::write(plugin_dir.join("plugin.json"), manifest.to_string()).unwrap();
    let settings = config(&slapd.url()).replace(
        "[plugins.settings.ldap_sync]",
        "[plugins.settings.ldap_proc]",
    );
    std::fs::write(
        dir.path().join("nebula.toml"),
        format!(
            "[plugins]\ndir = \"{}\"\ninit_timeout_sec = 30\ncall_timeout_sec = 30\n\n{settings}",
            dir.path().join("plugins").display()
        ),
    )
    .unwrap();
    let server = Server::start(
        dir.path(),
        &[(
            "NEBULA__PLUGINS__SETTINGS__LDAP_PROC__BIND_PASSWORD",
            READER_PASSWORD,
        )],
    );
    let health = server.get("/system/plugins/ldap_proc/health");
    assert_eq!(health.status, 200, "{}", health.body);
    let first = server.post(
        "/system/plugins/ldap_proc/sync-users",
        &json!({"dry_run": false}),
    );
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.body["result"]["created"], 30, "{}", first.body);

    slapd
        .modify(&format!("dn: uid=u00003,{PEOPLE_DN}\nchangetype: delete\n"))
        .unwrap();
    let second = server.post(
        "/system/plugins/ldap_proc/sync-users",
        &json!({"dry_run": false}),
    );
    assert_eq!(second.status, 200, "{}", second.body);
    let result = &second.body["result"];
    assert_eq!(result["deactivated"], 1, "{result}");
    assert_eq!(result["mirror"]["previously_synced"], 30, "{result}");
    let users = server.get("/system/directory/users?db_name=acme&limit=100");
    let gone: Vec<&serde_json::Value> = users.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["is_active"] == false)
        .collect();
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0]["username"], "u00003");
    assert_eq!(gone[0]["synced_by"], "ldap_proc");
}
