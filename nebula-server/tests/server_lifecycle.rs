//! The binary as an operator runs it: defaults, bad config, signals, restarts, kill -9.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{command, Server};

/// Every user of `db_name`, through the API, in pages.
fn all_users(server: &Server, db_name: &str) -> Vec<Value> {
    let mut users = Vec::new();
    loop {
        let page = server.get(&format!(
            "/system/directory/users?db_name={db_name}&limit=2000&offset={}",
            users.len()
        ));
        assert_eq!(page.status, 200, "{}", page.body);
        let items = page.body["items"].as_array().unwrap().clone();
        let done = items.len() < 2000;
        users.extend(items);
        if done {
            return users;
        }
    }
}

fn users_body(n: usize, db: &str, tag: &str) -> Value {
    let users: Vec<Value> = (0..n)
        .map(|i| {
            json!({"username": format!("user{i:05}"), "db_name": db, "role_tag": tag,
            "email": format!("user{i}@example.com")})
        })
        .collect();
    json!({"dry_run": false, "users": users})
}

#[test]
fn no_config_and_no_environment_serves_the_seed_curl_examples_on_port_8000() {
    let dir = tempfile::tempdir().unwrap();
    // Exactly the README's situation: no file, no NEBULA_* variable, default bind.
    let server = Server::spawn(&mut command(dir.path()), dir.path());
    assert_eq!(server.base, "http://127.0.0.1:8000");
    assert!(dir.path().join("data/nebula.db").is_file());

    // The seed's two curl examples, verbatim, with the token read from the generated file.
    let script = r#"
set -e
NEBULA_INSTALLER_TOKEN=$(cat data/installer_token)
curl -s -H "X-Nebula-Token: $NEBULA_INSTALLER_TOKEN" \
  http://127.0.0.1:8000/system/plugins
echo
curl -s -X POST -H "Content-Type: application/json" \
  -H "X-Nebula-Token: $NEBULA_INSTALLER_TOKEN" \
  -d '{"dry_run":true}' \
  http://127.0.0.1:8000/system/plugins/sample_sync/sync-users
"#;
    let out = Command::new("bash")
        .arg("-c")
        .arg(script)
        .current_dir(dir.path())
        .output()
        .expect("bash and curl run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    let list: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    let names: Vec<&str> = list["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(names.contains(&"sample_sync"), "{names:?}");
    let dry: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(dry["result"]["status"], "dry_run");

    // The token is never logged: only the file that holds it.
    let status = server.signal_and_wait(libc::SIGINT, Duration::from_secs(30));
    assert!(status.success(), "SIGINT exits 0, got {status:?}");
}

#[test]
fn a_bad_config_exits_2_naming_the_key_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    for (text, key) in [
        ("[server]\nbindd = \"127.0.0.1:1\"\n", "bindd"),
        (
            "[plugins]\ncall_timeout_sec = \"soon\"\n",
            "call_timeout_sec",
        ),
        ("[database]\nurl = \"mysql://x\"\n", "database.url"),
    ] {
        std::fs::write(&file, text).unwrap();
        let out = command(dir.path())
            .arg("--config")
            .arg(&file)
            .stdout(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{text}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(key) && err.contains("bad.toml"), "{err}");
    }
    // The same through the environment.
    let out = command(dir.path())
        .env("NEBULA__PLUGINS__CALL_TIMEOUT_SEC", "-3")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("plugins.call_timeout_sec"));
}

#[test]
fn create_user_reads_the_password_from_stdin_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = command(dir.path())
        .args(["create-user", "ann", "--staff"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdin.take()); // empty stdin: no password
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("password"));
    // There is no flag that takes a password.
    let out = command(dir.path())
        .args(["create-user", "ann", "--password", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "clap refuses unknown flags");
}

#[test]
fn data_survives_a_graceful_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let answer = server.post(
        "/system/plugins/sample_sync/sync-users",
        &users_body(50, "acme.db", "ops"),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["result"]["created"], 50);
    let stop = server.post(
        "/system/plugins/sample_sync/action",
        &json!({"action": "stop"}),
    );
    assert_eq!(stop.status, 200);
    let status = server.signal_and_wait(libc::SIGTERM, Duration::from_secs(30));
    assert!(status.success(), "SIGTERM exits 0, got {status:?}");

    let server = Server::start(dir.path(), &[]);
    let users = all_users(&server, "acme.db");
    assert_eq!(users.len(), 50);
    assert!(users.iter().all(|u| u["role_tag"] == "ops"));
    let list = server.get("/system/plugins");
    let sample = list.body["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "sample_sync")
        .unwrap();
    assert_eq!(sample["status"], "disabled", "stop survives a restart");
    assert_eq!(sample["message"], "stopped by admin", "and so does why");
    let events = server.get("/system/events?prefix=plugin.sample_sync.");
    assert_eq!(events.body["events"].as_array().unwrap().len(), 2);
}

#[test]
fn kill_9_in_the_middle_of_a_10000_user_sync_leaves_no_half_written_user() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let base = server.base.clone();
    let token = server.token();
    let body = users_body(10_000, "big.db", "synced").to_string();
    // Fire the sync from another thread; its connection dies with the server.
    let request = std::thread::spawn(move || {
        ureq::post(&format!("{base}/system/plugins/sample_sync/sync-users"))
            .set("X-Nebula-Token", &token)
            .set("Content-Type", "application/json")
            .send_string(&body)
            .map(|r| r.status())
            .map_err(|e| e.to_string())
    });
    // Wait until the sync is visibly under way, then kill.
    let started = Instant::now();
    loop {
        let page = server.get("/system/directory/users?db_name=big.db&limit=1&offset=100");
        if page.body["count"] == 1 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "sync never started"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    server.kill9();
    let _ = request.join();

    let server = Server::start(dir.path(), &[]);
    let users = all_users(&server, "big.db");
    assert!(users.len() > 100, "the sync got under way: {}", users.len());
    assert!(
        users.len() < 10_000,
        "the kill landed mid-sync: {}",
        users.len()
    );
    // Every user that exists has its identity tag: user row and tag are one transaction.
    let untagged: Vec<&Value> = users.iter().filter(|u| u["role_tag"] != "synced").collect();
    assert!(
        untagged.is_empty(),
        "{} users lack their tag",
        untagged.len()
    );
    // And the survivors are a consistent prefix of the request.
    let names: Vec<&str> = users
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = (0..users.len()).map(|i| format!("user{i:05}")).collect();
    assert_eq!(names, expected);
    // A re-run completes what was missing, once the killed server's sync lease has expired
    // (the call timeout + 5 s; a restarted server is another instance): until then it is
    // refused as in progress, which is what every other instance would answer too.
    let restarted = std::time::Instant::now();
    let answer = loop {
        let answer = server.post(
            "/system/plugins/sample_sync/sync-users",
            &users_body(10_000, "big.db", "synced"),
        );
        if answer.status != 409 {
            break answer;
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(40),
            "the dead server's lease never expired: {}",
            answer.body
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["result"]["failed"], 0);
    assert_eq!(
        answer.body["result"]["created"].as_u64().unwrap()
            + answer.body["result"]["updated"].as_u64().unwrap(),
        10_000
    );
    assert_eq!(all_users(&server, "big.db").len(), 10_000);
}

#[test]
fn a_client_that_never_finishes_its_headers_is_cut_off_while_others_are_served() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut slow = std::net::TcpStream::connect(&addr).unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let started = Instant::now();
    // Others are answered meanwhile.
    assert_eq!(server.request("GET", "/healthz", &[], None).status, 200);
    let mut answer = Vec::new();
    let _ = slow.read_to_end(&mut answer);
    let waited = started.elapsed();
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
    assert!(waited < Duration::from_secs(15), "cut off after {waited:?}");
}

#[test]
fn a_body_trickled_in_too_slowly_gets_408_with_a_json_detail() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut slow = std::net::TcpStream::connect(&addr).unwrap();
    let head = format!(
        "POST /system/plugins/sample_sync/sync-users HTTP/1.1\r\nHost: x\r\n\
         X-Nebula-Token: {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"dry",
        server.token()
    );
    slow.write_all(head.as_bytes()).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let started = Instant::now();
    assert_eq!(server.request("GET", "/healthz", &[], None).status, 200);
    let mut answer = vec![0u8; 4096];
    let n = slow.read(&mut answer).unwrap();
    let text = String::from_utf8_lossy(&answer[..n]);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(
        text.contains(r#"{"detail":"body not received within 10 s"}"#),
        "{text}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn the_start_up_log_names_every_linked_plugin_with_its_version() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let server = Server::start_logging_to(dir.path(), &[], &log);
    // Logged before the listening line, which start_logging_to has already read.
    let text = std::fs::read_to_string(&log).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("linked plugins: "))
        .unwrap_or_else(|| panic!("no linked-plugins line in: {text}"));
    assert!(line.contains(" INFO "), "{line}");
    assert!(
        line.ends_with("linked plugins: csv_import 0.1.0, ldap_sync 0.1.0, sample_sync 0.1.0"),
        "{line}"
    );
    // It names what the server lists as in-process plugins.
    let listed = server.get("/system/plugins");
    assert_eq!(listed.status, 200, "{}", listed.body);
    let in_process: Vec<&str> = listed.body["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["source"] == "in_process")
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(in_process, ["csv_import", "ldap_sync", "sample_sync"]);
}
