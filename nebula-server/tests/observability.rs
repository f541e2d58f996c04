//! Issue 14: what an operator's tools read. `GET /metrics` (Prometheus text, behind the
//! `/system/` credentials unless `server.metrics_public`), the log as JSON lines with the
//! request id on every line of a request (the plugin's own included), the id returned as
//! `X-Request-Id`, and a text log without colour codes when it goes to a file.

mod support;

use serde_json::{json, Value};
use support::Server;

/// The value of the one series line `series` (name and labels exactly as exposed).
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        line.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|value| value.trim().parse().ok())
    })
}

#[test]
fn metrics_count_requests_calls_users_events_and_states_and_need_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let token = server.token();
    let auth = [("X-Nebula-Token", token.as_str())];

    // Refused without credentials, as /system/ is; a wrong token too.
    let refused = server.request("GET", "/metrics", &[], None);
    assert_eq!(refused.status, 403, "{}", refused.text);
    assert_eq!(refused.body, json!({"detail": "Forbidden"}));
    let wrong = server.request("GET", "/metrics", &[("X-Nebula-Token", "nope")], None);
    assert_eq!(wrong.status, 403);
    // Errors carry the request id too.
    assert!(wrong.request_id.is_some(), "no X-Request-Id on a 403");
    // Methods outside the standard ones are one label, whatever a client invents.
    for method in ["FOO", "BAR"] {
        let odd = server.request(method, "/healthz", &[], None);
        assert_eq!(odd.status, 405, "{method}: {}", odd.text);
    }

    // A few calls: health, a real sync of two users and one refused, an admin restart.
    assert_eq!(server.get("/system/plugins/sample_sync/health").status, 200);
    let sync = server.post(
        "/system/plugins/sample_sync/sync-users",
        &json!({"dry_run": false, "users": [
            {"username": "ann", "db_name": "acme"},
            {"username": "bob", "db_name": "acme"},
            {"username": "cat", "db_name": "../etc"},
        ]}),
    );
    assert_eq!(sync.status, 200, "{}", sync.body);
    assert_eq!(sync.body["result"]["created"], 2, "{}", sync.body);
    let restart = server.post(
        "/system/plugins/sample_sync/action",
        &json!({"action": "restart"}),
    );
    assert_eq!(restart.status, 200, "{}", restart.body);
    assert_eq!(server.get("/system/plugins/nope/health").status, 404);

    let scraped = server.request("GET", "/metrics", &auth, None);
    assert_eq!(scraped.status, 200, "{}", scraped.text);
    let m = &scraped.text;
    let at_least = |series: &str, floor: f64| {
        let value = sample(m, series).unwrap_or_else(|| panic!("no {series} in\n{m}"));
        assert!(value >= floor, "{series} = {value}, expected ≥ {floor}");
    };
    // HTTP, by route template (the unknown plugin's name is not a label) and status.
    at_least(
        r#"nebula_http_requests_total{method="GET",route="/system/plugins/{name}/health",status="200"}"#,
        1.0,
    );
    at_least(
        r#"nebula_http_requests_total{method="GET",route="/system/plugins/{name}/health",status="404"}"#,
        1.0,
    );
    at_least(
        r#"nebula_http_requests_total{method="GET",route="/metrics",status="403"}"#,
        2.0,
    );
    at_least(
        r#"nebula_http_request_duration_seconds_count{method="POST",route="/system/plugins/{name}/sync-users"}"#,
        1.0,
    );
    assert!(!m.contains("nope"), "a path segment became a label:\n{m}");
    at_least(
        r#"nebula_http_requests_total{method="other",route="/healthz",status="405"}"#,
        2.0,
    );
    assert!(
        !m.contains("FOO") && !m.contains("BAR"),
        "a method became a label:\n{m}"
    );
    // Plugin calls by plugin, method and outcome, with a latency histogram.
    at_least(
        r#"nebula_plugin_calls_total{method="health",outcome="ok",plugin="sample_sync"}"#,
        1.0,
    );
    at_least(
        r#"nebula_plugin_calls_total{method="sync_users",outcome="ok",plugin="sample_sync"}"#,
        1.0,
    );
    at_least(
        r#"nebula_plugin_call_duration_seconds_bucket{method="health",plugin="sample_sync",le="+Inf"}"#,
        1.0,
    );
    // State per plugin: one status at 1.
    let states: Vec<f64> = [
        "initialized",
        "healthy",
        "degraded",
        "unresponsive",
        "crashed",
        "disabled",
    ]
    .iter()
    .map(|status| {
        sample(
            m,
            &format!(r#"nebula_plugin_status{{plugin="sample_sync",status="{status}"}}"#),
        )
        .unwrap_or_else(|| panic!("no {status} series in\n{m}"))
    })
    .collect();
    assert_eq!(states.iter().sum::<f64>(), 1.0, "{states:?}");
    assert_eq!(
        sample(
            m,
            r#"nebula_plugin_status{plugin="sample_sync",status="disabled"}"#
        ),
        Some(0.0)
    );
    // Restarts, users by outcome, events, the pool.
    at_least(
        r#"nebula_plugin_restarts_total{plugin="sample_sync",trigger="admin"}"#,
        1.0,
    );
    assert_eq!(
        sample(
            m,
            r#"nebula_synced_users_total{outcome="created",plugin="sample_sync"}"#
        ),
        Some(2.0)
    );
    // sync.started, sync.finished, the role upsert's and the state events at least.
    at_least("nebula_events_written_total", 2.0);
    at_least(r#"nebula_db_pool_connections{state="idle"}"#, 0.0);
    at_least(r#"nebula_db_pool_connections{state="in_use"}"#, 0.0);

    // A stop shows at the next scrape.
    server.post(
        "/system/plugins/sample_sync/action",
        &json!({"action": "stop"}),
    );
    let after = server.request("GET", "/metrics", &auth, None).text;
    assert_eq!(
        sample(
            &after,
            r#"nebula_plugin_status{plugin="sample_sync",status="disabled"}"#
        ),
        Some(1.0),
        "{after}"
    );
}

#[test]
fn metrics_can_be_public_when_the_operator_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[("NEBULA__SERVER__METRICS_PUBLIC", "true")]);
    let answer = server.request("GET", "/metrics", &[], None);
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert!(
        answer.text.contains("nebula_plugin_status"),
        "{}",
        answer.text
    );
    // /system/ is as closed as ever.
    assert_eq!(
        server.request("GET", "/system/plugins", &[], None).status,
        403
    );
}

/// The log lines of `log`, parsed as JSON (every line must be one object).
fn json_lines(log: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"))
        })
        .collect()
}

#[test]
fn json_logs_carry_the_request_id_into_the_plugins_lines_and_the_answer() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    // Every request's access line, successes included (they are `DEBUG` by default).
    let server = Server::start_logging_to(
        dir.path(),
        &[
            ("NEBULA__LOG__FORMAT", "json"),
            ("NEBULA__LOG__FILTER", "info,nebula_server::access=debug"),
        ],
        &log,
    );
    let token = server.token();

    // A sane id is taken and returned; the plugin's warning about the refused user carries it.
    let answer = server.request(
        "POST",
        "/system/plugins/sample_sync/sync-users",
        &[
            ("X-Nebula-Token", &token),
            ("X-Request-Id", "sync-42.a:b_c"),
        ],
        Some(br#"{"dry_run": false, "users": [{"username": "cat", "db_name": "../etc"}]}"#),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.request_id.as_deref(), Some("sync-42.a:b_c"));

    // An insane one (too long, or with characters a log line or a header could be forged
    // with) is replaced by a generated id; so is a missing one.
    for insane in ["has space", "quote\"d", "semi;colon", "tab\tbed"] {
        let answer = server.request("GET", "/healthz", &[("X-Request-Id", insane)], None);
        let id = answer.request_id.expect("an id");
        assert_ne!(id, insane);
        assert_eq!(id.len(), 32, "{id}");
    }
    let long = "x".repeat(129);
    let replaced = server.request("GET", "/healthz", &[("X-Request-Id", &long)], None);
    let generated = replaced.request_id.expect("an id");
    assert_eq!(generated.len(), 32, "{generated}");
    assert!(
        generated.bytes().all(|b| b.is_ascii_hexdigit()),
        "{generated}"
    );
    let other = server
        .request("GET", "/healthz", &[], None)
        .request_id
        .unwrap();
    assert_ne!(other, generated);

    // Stopping writes the last lines; then every line is one JSON object.
    drop(server);
    let lines = json_lines(&log);
    let of_request = |id: &str| -> Vec<&Value> {
        lines
            .iter()
            .filter(|l| l["span"]["request_id"] == id)
            .collect()
    };
    let sync_lines = of_request("sync-42.a:b_c");
    let plugin_line = sync_lines
        .iter()
        .find(|l| l["plugin"] == "sample_sync" && l["level"] == "WARN")
        .unwrap_or_else(|| panic!("no plugin line with the request id in {sync_lines:#?}"));
    assert!(
        plugin_line["message"].as_str().unwrap().contains("cat"),
        "{plugin_line}"
    );
    let request_line = sync_lines
        .iter()
        .find(|l| l["message"] == "request")
        .unwrap_or_else(|| panic!("no request line in {sync_lines:#?}"));
    assert_eq!(request_line["status"], 200);
    assert_eq!(
        request_line["path"],
        "/system/plugins/sample_sync/sync-users"
    );
    assert!(request_line["timestamp"].is_string(), "{request_line}");
    assert_eq!(of_request(&generated).len(), 1, "the /healthz request line");
    // Never the token.
    assert!(
        !std::fs::read_to_string(&log).unwrap().contains(&token),
        "the token is in the log"
    );
}

#[test]
fn a_text_log_written_to_a_file_has_no_colour_codes_and_a_bad_filter_stops_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let server = Server::start_logging_to(dir.path(), &[], &log);
    assert_eq!(server.get("/system/plugins").status, 200);
    let refused = server.request("GET", "/system/plugins", &[], None);
    assert_eq!(refused.status, 403);
    drop(server);
    let text = std::fs::read_to_string(&log).unwrap();
    // By default a refused request has its access line and a served one has none.
    let access: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("nebula_server::access"))
        .collect();
    assert_eq!(access.len(), 1, "{text}");
    assert!(
        access[0].contains("INFO") && access[0].contains("status=403"),
        "{text}"
    );
    assert!(!text.contains('\u{1b}'), "colour codes in a file:\n{text}");

    let bad = support::run_until_exit(
        support::command(dir.path())
            .env("NEBULA__SERVER__BIND", "127.0.0.1:0")
            .env("NEBULA__LOG__FILTER", "nebula=loud"),
        std::time::Duration::from_secs(30),
    )
    .expect("exits");
    assert_eq!(bad.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("log.filter"), "{stderr}");
}

#[test]
fn a_process_plugins_own_lines_carry_the_request_id_too() {
    // sample_sync as a process plugin: its `ctx.log` travels through the host service.
    let dir = tempfile::tempdir().unwrap();
    let plugin_dir = dir.path().join("plugins/sample_twin");
    std::fs::create_dir_all(&plugin_dir).unwrap();
    let manifest_path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../sample-sync/plugin.json");
    let mut manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(manifest_path).unwrap()).unwrap();
    manifest["name"] = json!("sample_twin");
    manifest["runtime"] = json!({"command": [env!("CARGO_BIN_EXE_sample-sync-process")]});
    std::fs::write(plugin_dir.join("plugin.json"), manifest.to_string()).unwrap();
    let log = dir.path().join("server.log");
    let server = Server::start_logging_to(
        dir.path(),
        &[
            ("NEBULA__LOG__FORMAT", "json"),
            ("NEBULA__PLUGINS__DIR", "plugins"),
        ],
        &log,
    );
    let token = server.token();
    let answer = server.request(
        "POST",
        "/system/plugins/sample_twin/sync-users",
        &[("X-Nebula-Token", &token), ("X-Request-Id", "proc-7")],
        Some(br#"{"dry_run": false, "users": [{"username": "cat", "db_name": "../etc"}]}"#),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["result"]["failed"], 1, "{}", answer.body);
    assert_eq!(answer.request_id.as_deref(), Some("proc-7"));
    // The plugin's lines are sent by a task of its own: wait for the line, bounded.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let found = loop {
        let lines = json_lines(&log);
        let line = lines.into_iter().find(|l| {
            l["plugin"] == "sample_twin"
                && l["level"] == "WARN"
                && l["message"].as_str().is_some_and(|m| m.contains("cat"))
        });
        if line.is_some() || std::time::Instant::now() > deadline {
            break line;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let line = found.expect("the process plugin's warning about 'cat' reached the log");
    assert_eq!(line["span"]["request_id"], "proc-7", "{line}");
}
