//! `ldap_sync` on the real engine (SQLite in a temporary directory) against a real OpenLDAP
//! server (`slapd`, started by each test on a loopback port: `ldap_sync::testing`).
//!
//! Without `slapd` installed these tests print why and pass, except under `CI`, where they
//! fail (`.ci/run` installs it).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ldap_sync::testing::{
    require_slapd, Group, Person, Slapd, SlapdOptions, GROUPS_DN, PEOPLE_DN, READER_DN,
    READER_PASSWORD, READER_SIZE_LIMIT,
};
use nebula_core::testing::{plugin_error, TestEngine};
use nebula_plugin_api::serde_json::{json, Value};
use nebula_plugin_api::{json_object, ErrorKind, JsonObject, SyncRequest, SyncUser};

/// The plugin's settings for `url`, reading people and groups of the test directory into
/// `acme.db`, with `extra` on top.
fn settings(url: &str, extra: Value) -> JsonObject {
    let mut table = json_object!({
        "url": url,
        "bind_dn": READER_DN,
        "bind_password": READER_PASSWORD,
        "timeout_sec": 20,
        "user_base_dn": PEOPLE_DN,
        "disabled_filter": "(employeeType=disabled)",
        "group_base_dn": GROUPS_DN,
        "role_map": [
            {"group": "admins", "role_tag": "admin"},
            {"group": "ops", "role_tag": "Operator"},
        ],
        "db_name": "acme",
    });
    if let Value::Object(extra) = extra {
        table.extend(extra);
    }
    table
}

async fn engine(settings: JsonObject) -> TestEngine {
    TestEngine::builder("ldap_sync")
        .settings(settings)
        .call_timeout_sec(120.0)
        .start()
        .await
        .unwrap()
}

/// `username action` of each item.
fn actions(answer: &JsonObject) -> Vec<String> {
    answer["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            format!(
                "{} {}",
                i["username"].as_str().unwrap(),
                i["action"].as_str().unwrap()
            )
        })
        .collect()
}

fn people(uids: &[&str]) -> Vec<Person> {
    uids.iter().map(|u| Person::new(u)).collect()
}

fn count(answer: &JsonObject, key: &str) -> u64 {
    answer[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} in {answer:?}"))
}

fn dry_run_request() -> SyncRequest {
    SyncRequest::default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_sync_then_a_second_with_changes_in_email_group_and_state() {
    if !require_slapd() {
        return;
    }
    let slapd = Slapd::start(
        &SlapdOptions::default(),
        &people(&["ann", "bob", "cid", "dee"]),
        &[
            Group::new("admins", &["ann"]),
            Group::new("ops", &["ann", "bob"]),
            Group::new("unmapped", &["cid"]),
        ],
    )
    .unwrap();
    let engine = engine(settings(&slapd.url(), json!({}))).await;
    let health = engine.health().await.unwrap();
    assert_eq!(health["status"], "ok", "{health:?}");

    let first = engine.sync(Vec::new()).await.unwrap();
    assert_eq!(first["status"], "ok", "{first:?}");
    assert_eq!(
        actions(&first),
        ["ann created", "bob created", "cid created", "dee created"]
    );
    let users = engine.users("acme").await.unwrap();
    let tags: Vec<(&str, &str, bool)> = users
        .iter()
        .map(|u| (u.username.as_str(), u.role_tag.as_str(), u.is_active))
        .collect();
    // ann is in admins and ops: admins comes first in role_map.
    assert_eq!(
        tags,
        [
            ("ann", "admin", true),
            ("bob", "operator", true),
            ("cid", "user", true),
            ("dee", "user", true)
        ]
    );
    assert_eq!(users[0].email.as_deref(), Some("ann@example.org"));
    assert!(users
        .iter()
        .all(|u| u.synced_by.as_deref() == Some("ldap_sync")));
    let roles: Vec<String> = engine
        .roles()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    for role in ["admin", "operator", "user"] {
        assert!(roles.contains(&role.to_owned()), "{role} in {roles:?}");
    }
    let events = engine.event_counts().await.unwrap();
    assert_eq!(events.get("plugin.ldap_sync.sync.started"), Some(&1));
    assert_eq!(events.get("plugin.ldap_sync.sync.finished"), Some(&1));

    // An e-mail changes, bob leaves ops for admins, cid is disabled.
    slapd
        .modify(&format!(
            "dn: uid=dee,{PEOPLE_DN}\nchangetype: modify\nreplace: mail\nmail: dee@new.example.org\n\n\
             dn: cn=ops,{GROUPS_DN}\nchangetype: modify\ndelete: member\nmember: uid=bob,{PEOPLE_DN}\n\n\
             dn: cn=admins,{GROUPS_DN}\nchangetype: modify\nadd: member\nmember: uid=bob,{PEOPLE_DN}\n\n\
             dn: uid=cid,{PEOPLE_DN}\nchangetype: modify\nadd: employeeType\nemployeeType: disabled\n"
        ))
        .unwrap();
    let second = engine.sync(Vec::new()).await.unwrap();
    assert_eq!(
        actions(&second),
        ["ann unchanged", "bob updated", "cid updated", "dee updated"]
    );
    let changed: Vec<&Value> = second["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| &i["changed"])
        .collect();
    assert_eq!(changed[1], &json!(["role_tag"]));
    assert_eq!(changed[2], &json!(["is_active"]));
    assert_eq!(changed[3], &json!(["email"]));
    assert_eq!(
        (count(&second, "updated"), count(&second, "unchanged")),
        (3, 1)
    );
    let users = engine.users("acme").await.unwrap();
    assert_eq!(
        (users[1].username.as_str(), users[1].role_tag.as_str()),
        ("bob", "admin")
    );
    assert!(!users[2].is_active, "cid is disabled");
    assert_eq!(users[3].email.as_deref(), Some("dee@new.example.org"));

    // A request naming users syncs only those.
    let request = SyncRequest {
        dry_run: false,
        users: Some(vec![SyncUser::new("ann"), SyncUser::new("nobody")]),
        limit: 0,
    };
    let only = engine.call(request).await.unwrap();
    assert_eq!(actions(&only), ["ann unchanged"]);
    assert_eq!(only["not_in_directory"], json!(["nobody"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_matches_the_real_run_item_for_item_and_writes_nothing() {
    if !require_slapd() {
        return;
    }
    let mut everyone = people(&["ann", "bob", "cid", "dee", "eve"]);
    everyone[4].disabled = true;
    let slapd = Slapd::start(
        &SlapdOptions::default(),
        &everyone,
        &[Group::new("ops", &["bob"])],
    )
    .unwrap();
    let engine = engine(settings(&slapd.url(), json!({"mode": "mirror"}))).await;
    engine.sync(Vec::new()).await.unwrap();
    slapd
        .modify(&format!(
            "dn: uid=ann,{PEOPLE_DN}\nchangetype: modify\nreplace: mail\nmail: ann@b.example.org\n\n\
             dn: uid=fay,{PEOPLE_DN}\nchangetype: add\nobjectClass: inetOrgPerson\nuid: fay\ncn: fay\nsn: fay\n\n\
             dn: uid=dee,{PEOPLE_DN}\nchangetype: delete\n"
        ))
        .unwrap();

    let before = engine.users("acme").await.unwrap();
    let events_before = engine.events().await.unwrap().len();
    let preview = engine.dry_run(Vec::new()).await.unwrap();
    assert_eq!(preview["status"], "dry_run");
    assert_eq!(
        engine.users("acme").await.unwrap(),
        before,
        "a dry run writes nothing"
    );
    assert_eq!(engine.events().await.unwrap().len(), events_before);

    let real = engine.sync(Vec::new()).await.unwrap();
    let expected = |action: &str| {
        match action {
            "would_create" => "created",
            "would_update" => "updated",
            "would_deactivate" => "deactivated",
            "would_fail" => "failed",
            other => other,
        }
        .to_owned()
    };
    let previewed: Vec<(String, String, Value)> = preview["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let action = expected(i["action"].as_str().unwrap());
            (
                i["username"].as_str().unwrap().to_owned(),
                action,
                i["changed"].clone(),
            )
        })
        .collect();
    let done: Vec<(String, String, Value)> = real["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let action = i["action"].as_str().unwrap().to_owned();
            (
                i["username"].as_str().unwrap().to_owned(),
                action,
                i["changed"].clone(),
            )
        })
        .collect();
    assert_eq!(previewed, done);
    assert_eq!(
        actions(&real),
        [
            "ann updated",
            "bob unchanged",
            "cid unchanged",
            "eve unchanged",
            "fay created",
            "dee deactivated"
        ]
    );
    for (preview_key, real_key) in [
        ("would_create", "created"),
        ("would_update", "updated"),
        ("unchanged", "unchanged"),
        ("would_deactivate", "deactivated"),
    ] {
        assert_eq!(
            count(&preview, preview_key),
            count(&real, real_key),
            "{real_key}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paged_results_read_more_than_2000_entries_past_the_servers_size_limit() {
    if !require_slapd() {
        return;
    }
    let everyone: Vec<Person> = (0..2500).map(Person::numbered).collect();
    let slapd = Slapd::start(&SlapdOptions::default(), &everyone, &[]).unwrap();
    // Without paging the server stops the reader at its size limit (ldapsearch exits 4,
    // sizeLimitExceeded): the plugin's paging is what reads them all.
    let unpaged = std::process::Command::new("ldapsearch")
        .args([
            "-x",
            "-LLL",
            "-H",
            &slapd.url(),
            "-D",
            READER_DN,
            "-w",
            READER_PASSWORD,
        ])
        .args(["-b", PEOPLE_DN, "(objectClass=inetOrgPerson)", "1.1"])
        .output()
        .unwrap();
    assert_eq!(unpaged.status.code(), Some(4), "{unpaged:?}");
    let returned = String::from_utf8_lossy(&unpaged.stdout)
        .matches("dn: ")
        .count();
    assert_eq!(returned, READER_SIZE_LIMIT);

    let engine = engine(settings(&slapd.url(), json!({"page_size": 300}))).await;
    let answer = engine.sync(Vec::new()).await.unwrap();
    assert_eq!(
        (answer["status"].as_str(), count(&answer, "created")),
        (Some("ok"), 2500)
    );
    // All stored: a second read finds every one unchanged.
    let again = engine.dry_run(Vec::new()).await.unwrap();
    assert_eq!(count(&again, "unchanged"), 2500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_fails_health_and_sync_cleanly_and_writes_nothing() {
    if !require_slapd() {
        return;
    }
    let slapd = Slapd::start(&SlapdOptions::default(), &people(&["ann"]), &[]).unwrap();
    let engine = engine(settings(
        &slapd.url(),
        json!({"bind_password": "not-the-password"}),
    ))
    .await;
    let health = engine.health().await.unwrap();
    assert_eq!(health["status"], "unavailable");
    let message = health["message"].as_str().unwrap();
    assert!(
        message.contains("bind as 'cn=reader") && message.contains("49"),
        "{message}"
    );
    assert!(!message.contains("not-the-password"), "{message}");

    for dry_run in [true, false] {
        let request = SyncRequest {
            dry_run,
            ..dry_run_request()
        };
        let err = plugin_error(engine.call(request).await.unwrap_err());
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
        assert!(
            err.to_string().contains("invalidCredentials") || err.to_string().contains("49"),
            "{err}"
        );
    }
    assert!(engine.users("acme").await.unwrap().is_empty());
    assert!(engine.roles().await.unwrap().is_empty());
    let events = engine.event_counts().await.unwrap();
    assert!(
        !events.keys().any(|k| k.starts_with("plugin.ldap_sync")),
        "{events:?}"
    );
    assert!(
        !engine
            .logs()
            .iter()
            .any(|l| l.message.contains("not-the-password")),
        "the password is in a log line"
    );
}

/// A TCP relay to `upstream` that closes both sides once it has relayed `cut_after` bytes
/// from the server: LDAP going away in the middle of a read, at a byte position that does
/// not depend on timing.
fn cutting_relay(upstream: String, cut_after: usize) -> (String, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ldap://{}", listener.local_addr().unwrap());
    let cut = Arc::new(AtomicBool::new(false));
    let cut_flag = Arc::clone(&cut);
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { return };
            let Ok(mut server) = TcpStream::connect(&upstream) else {
                return;
            };
            let (mut client_r, mut server_w) =
                (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut client_r, &mut server_w);
            });
            let cut_flag = Arc::clone(&cut_flag);
            std::thread::spawn(move || {
                let mut relayed = 0usize;
                let mut buf = [0u8; 4096];
                loop {
                    let n = match server.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let n = n.min(cut_after.saturating_sub(relayed));
                    if n == 0 || client.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    relayed += n;
                    if relayed >= cut_after {
                        cut_flag.store(true, Ordering::SeqCst);
                        break;
                    }
                }
                let _ = client.shutdown(std::net::Shutdown::Both);
                let _ = server.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    (url, cut)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldap_going_away_mid_read_or_stopped_deactivates_nobody_and_writes_nothing() {
    if !require_slapd() {
        return;
    }
    let everyone: Vec<Person> = (0..600).map(Person::numbered).collect();
    let mut slapd = Slapd::start(&SlapdOptions::default(), &everyone, &[]).unwrap();
    // Two engines on one database: one reaching slapd directly, one through a relay.
    let dir = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}", dir.path().join("nebula.db").display());
    let engine = TestEngine::builder("ldap_sync")
        .settings(settings(
            &slapd.url(),
            json!({"mode": "mirror", "page_size": 100}),
        ))
        .database_url(database_url.clone())
        .call_timeout_sec(120.0)
        .start()
        .await
        .unwrap();
    let first = engine.sync(Vec::new()).await.unwrap();
    assert_eq!(count(&first, "created"), 600);
    // One e-mail changes, so a sync that wrote anything would show it.
    slapd
        .modify(&format!(
            "dn: uid=u00000,{PEOPLE_DN}\nchangetype: modify\nreplace: mail\nmail: changed@example.org\n"
        ))
        .unwrap();
    let before = engine.users("acme").await.unwrap();
    let events_before = engine.events().await.unwrap().len();

    // Cut after about a third of the entries (each is ~100 bytes on the wire).
    let upstream = slapd.url().trim_start_matches("ldap://").to_owned();
    let (relay, cut) = cutting_relay(upstream, 20_000);
    let cut_engine = TestEngine::builder("ldap_sync")
        .settings(settings(
            &relay,
            json!({"mode": "mirror", "page_size": 100}),
        ))
        .database_url(database_url)
        .call_timeout_sec(120.0)
        .start()
        .await
        .unwrap();
    let err = plugin_error(cut_engine.sync(Vec::new()).await.unwrap_err());
    assert!(cut.load(Ordering::SeqCst), "the relay cut the connection");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains("reading users"), "{err}");
    cut_engine.shutdown().await;
    assert_eq!(
        engine.users("acme").await.unwrap(),
        before,
        "nothing written or deactivated"
    );
    assert_eq!(engine.events().await.unwrap().len(), events_before);

    // The server stopped: the same.
    slapd.stop();
    let err = plugin_error(engine.sync(Vec::new()).await.unwrap_err());
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains("cannot connect"), "{err}");
    let health = engine.health().await.unwrap();
    assert_eq!(health["status"], "unavailable");
    assert_eq!(engine.users("acme").await.unwrap(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_deactivates_one_removed_user_and_refuses_when_half_are_gone() {
    if !require_slapd() {
        return;
    }
    let everyone: Vec<Person> = (0..20).map(Person::numbered).collect();
    let slapd = Slapd::start(&SlapdOptions::default(), &everyone, &[]).unwrap();
    let engine = engine(settings(&slapd.url(), json!({"mode": "mirror"}))).await;
    assert_eq!(
        count(&engine.sync(Vec::new()).await.unwrap(), "created"),
        20
    );

    slapd
        .modify(&format!("dn: uid=u00007,{PEOPLE_DN}\nchangetype: delete\n"))
        .unwrap();
    let one = engine.sync(Vec::new()).await.unwrap();
    assert_eq!(count(&one, "deactivated"), 1, "{one:?}");
    assert_eq!(one["mirror"]["applied"], true);
    let users = engine.users("acme").await.unwrap();
    let inactive: Vec<&str> = users
        .iter()
        .filter(|u| !u.is_active)
        .map(|u| u.username.as_str())
        .collect();
    assert_eq!(inactive, ["u00007"], "deactivated, never deleted");
    assert_eq!(users.len(), 20);

    // Half of the rest go: a suspiciously small read.
    let deletions: String = (8..18)
        .map(|i| format!("dn: uid=u{i:05},{PEOPLE_DN}\nchangetype: delete\n\n"))
        .collect();
    slapd.modify(&deletions).unwrap();
    let preview = engine.dry_run(Vec::new()).await.unwrap();
    assert_eq!(count(&preview, "would_deactivate"), 0);
    let refused = engine.sync(Vec::new()).await.unwrap();
    assert_eq!(count(&refused, "deactivated"), 0);
    assert_eq!(refused["mirror"]["applied"], false);
    assert_eq!(refused["mirror"]["missing"], 10);
    let reason = refused["mirror"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("LDAP returned 9 users, fewer than 18"),
        "{reason}"
    );
    let active = engine
        .users("acme")
        .await
        .unwrap()
        .iter()
        .filter(|u| u.is_active)
        .count();
    assert_eq!(active, 19, "nobody deactivated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldaps_and_starttls_with_a_generated_ca_and_a_refused_unknown_ca() {
    if !require_slapd() {
        return;
    }
    let slapd = Slapd::start(&SlapdOptions { tls: true }, &people(&["ann", "bob"]), &[]).unwrap();
    let ca = slapd.ca_file();
    let ldaps = slapd.ldaps_url().unwrap();
    for (name, extra) in [
        ("ldaps", json!({"url": ldaps, "ca_file": ca})),
        ("starttls", json!({"starttls": true, "ca_file": ca})),
    ] {
        let engine = engine(settings(&slapd.url(), extra)).await;
        let health = engine.health().await.unwrap();
        assert_eq!(health["status"], "ok", "{name}: {health:?}");
        let answer = engine.dry_run(Vec::new()).await.unwrap();
        assert_eq!(count(&answer, "would_create"), 2, "{name}");
        engine.shutdown().await;
    }
    // Without the CA the system's roots do not trust the server: refused, not ignored.
    let engine = engine(settings(&slapd.url(), json!({"url": ldaps}))).await;
    let health = engine.health().await.unwrap();
    assert_eq!(health["status"], "unavailable");
    let message = health["message"].as_str().unwrap().to_lowercase();
    assert!(message.contains("certificate"), "{message}");
}
