//! The release binary against what an outside review found (issue 8): private files, weak
//! secrets, secrets handed to peers, forged log lines, `initialized_at`, the monitor's timer.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use support::{command, run_until_exit, Server};

/// How long a server that must refuse to start gets before the test calls it a failure.
const REFUSAL_LIMIT: Duration = Duration::from_secs(20);

/// The record of `name` in `GET /system/plugins`.
fn listed(server: &Server, name: &str) -> serde_json::Value {
    let list = server.get("/system/plugins");
    list.body["plugins"]
        .as_array()
        .and_then(|plugins| plugins.iter().find(|p| p["name"] == name))
        .cloned()
        .unwrap_or_else(|| panic!("{name} not listed: {}", list.body))
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn the_data_directory_is_0700_and_the_database_and_secrets_0600() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    // A real sync, so the write-ahead log holds data while we look.
    let answer = server.post(
        "/system/plugins/sample_sync/sync-users",
        &json!({"dry_run": false, "users": [{"username": "ann", "db_name": "acme"}]}),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    let data = dir.path().join("data");
    assert_eq!(mode(&data), 0o700, "data/");
    for file in [
        "nebula.db",
        "nebula.db-wal",
        "nebula.db-shm",
        "installer_token",
        "session_secret",
    ] {
        assert_eq!(mode(&data.join(file)), 0o600, "data/{file}");
    }
}

#[test]
fn weak_secrets_stop_start_up_with_exit_2_naming_the_variable_and_the_rule() {
    for var in ["NEBULA_INSTALLER_TOKEN", "NEBULA_SESSION_SECRET"] {
        for weak in ["x".to_owned(), "y".repeat(31)] {
            let dir = tempfile::tempdir().unwrap();
            let out = run_until_exit(
                command(dir.path())
                    .env("NEBULA__SERVER__BIND", "127.0.0.1:0")
                    .env(var, &weak),
                REFUSAL_LIMIT,
            )
            .unwrap_or_else(|| panic!("{var} of {} characters: the server started", weak.len()));
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{var}: {stderr}");
            assert!(
                stderr.contains(&format!("${var} is {} characters long", weak.len())),
                "{stderr}"
            );
            assert!(stderr.contains("at least 32 characters"), "{stderr}");
            assert!(
                !stderr.contains(&weak) || weak.len() == 1,
                "the secret was printed: {stderr}"
            );
        }
    }
    // 32 characters are enough, and that token is the one the server checks.
    let dir = tempfile::tempdir().unwrap();
    let token = "t".repeat(32);
    let key = "k".repeat(32);
    let server = Server::start(
        dir.path(),
        &[
            ("NEBULA_INSTALLER_TOKEN", token.as_str()),
            ("NEBULA_SESSION_SECRET", key.as_str()),
        ],
    );
    let answer = server.request(
        "GET",
        "/system/plugins",
        &[("X-Nebula-Token", &token)],
        None,
    );
    assert_eq!(answer.status, 200);
}

#[test]
fn a_token_env_naming_a_core_secret_is_refused_at_start_up() {
    for var in ["NEBULA_INSTALLER_TOKEN", "NEBULA_SESSION_SECRET"] {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("nebula.toml");
        std::fs::write(
            &config,
            format!(
                "[[plugins.external]]\nname = \"peer\"\nendpoint = \"127.0.0.1:50051\"\n\
                 token_env = \"{var}\"\n"
            ),
        )
        .unwrap();
        let out = run_until_exit(
            command(dir.path())
                .env("NEBULA__SERVER__BIND", "127.0.0.1:0")
                .env(var, "s".repeat(40))
                .arg("--config")
                .arg(&config),
            REFUSAL_LIMIT,
        )
        .unwrap_or_else(|| panic!("token_env = {var}: the server started"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(&format!(
                "plugins.external[0].token_env: '{var}' is one of the core's own secrets"
            )),
            "{stderr}"
        );
        assert!(stderr.contains(&config.display().to_string()), "{stderr}");
    }
}

#[test]
fn echoed_input_cannot_forge_a_log_line_or_break_an_error_detail() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let server = Server::start_logging_to(dir.path(), &[], &log);
    let forged = "evil\nINFO nebula_core: forged line\r";
    let answer = server.post(
        "/system/plugins/sample_sync/sync-users",
        &json!({"dry_run": false, "users": [{"username": "ann", "db_name": forged}]}),
    );
    // However the request is refused (422) or reported (a failed item), the text that echoes
    // the input carries no raw control character.
    let echoed = answer.body.to_string();
    let text = match answer.status {
        200 => answer.body["result"]["items"][0]["error"]
            .as_str()
            .unwrap()
            .to_owned(),
        422 => answer.body["detail"].as_str().unwrap().to_owned(),
        other => panic!("unexpected {other}: {echoed}"),
    };
    assert!(
        text.contains("evil\\nINFO nebula_core: forged line\\r"),
        "{text}"
    );
    assert!(!text.chars().any(char::is_control), "{text:?}");

    // A plugin name with a newline in the path: 404 with an escaped detail.
    let answer = server.get("/system/plugins/a%0Ab/health");
    assert_eq!(answer.status, 404);
    let detail = answer.body["detail"].as_str().unwrap();
    assert!(!detail.chars().any(char::is_control), "{detail:?}");

    let status = server.signal_and_wait(libc::SIGTERM, Duration::from_secs(30));
    assert!(status.success());
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("forged line"), "the attempt is logged: {log}");
    for line in log.lines() {
        assert!(
            !line
                .trim_start()
                .starts_with("INFO nebula_core: forged line"),
            "a forged line: {line:?}\n{log}"
        );
        assert!(!line.contains('\r'), "a carriage return: {line:?}");
    }
}

#[test]
fn initialized_at_is_0_not_null_for_a_plugin_that_never_initialised() {
    let dir = tempfile::tempdir().unwrap();
    // A remote endpoint is refused by policy before any connection: the plugin never
    // initialises, and no packet leaves the machine.
    std::fs::write(
        dir.path().join("nebula.toml"),
        "[[plugins.external]]\nname = \"remote_one\"\nendpoint = \"10.9.8.7:50051\"\n",
    )
    .unwrap();
    let server = Server::start(dir.path(), &[]);
    let remote = listed(&server, "remote_one");
    assert_eq!(remote["status"], "degraded", "{remote}");
    assert!(remote["initialized_at"].is_number(), "{remote}");
    assert_eq!(remote["initialized_at"].as_f64(), Some(0.0), "{remote}");
    let sample = listed(&server, "sample_sync");
    assert!(
        sample["initialized_at"].as_f64().unwrap() > 1.7e9,
        "{sample}"
    );
}

#[test]
fn the_health_monitor_checks_every_plugin_on_its_own_timer() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &[("NEBULA__PLUGINS__HEALTH_INTERVAL_SEC", "0.3")],
    );
    // Nobody asks for health here: the calls the stats count are the monitor's.
    let started = Instant::now();
    let calls = loop {
        let stats = server.get("/system/plugins/sample_sync/stats");
        assert_eq!(stats.status, 200, "{}", stats.body);
        let calls = stats.body["methods"]["health"]["calls"]
            .as_u64()
            .unwrap_or(0);
        if calls >= 3 || started.elapsed() > Duration::from_secs(20) {
            break calls;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        calls >= 3,
        "only {calls} monitor checks in 20 s at a 0.3 s interval"
    );
    let sample = listed(&server, "sample_sync");
    assert_eq!(sample["status"], "healthy", "{sample}");
}
