//! The HTTP API of the real binary: seed examples, auth on every route, bad input.

mod support;

use std::time::Duration;

use nebula_core::accounts::AccountStore;
use nebula_core::auth::{Secret, SessionCodec};
use nebula_core::Database;
use serde_json::{json, Value};
use support::{create_user, session_cookie, Server};

const STAFF_PASSWORD: &str = "staff-password-1";

/// A server with a staff user `admin` and a non-staff user `viewer`.
fn server_with_users(dir: &std::path::Path, env: &[(&str, &str)]) -> Server {
    create_user(dir, env, "admin", STAFF_PASSWORD, true);
    create_user(dir, env, "viewer", "viewer-password-1", false);
    Server::start(dir, env)
}

fn body_for(path: &str) -> Option<Value> {
    if path.ends_with("/sync-users") {
        Some(json!({"dry_run": true}))
    } else if path.ends_with("/action") {
        Some(json!({"action": "restart"}))
    } else if path.ends_with("/rescan") {
        Some(json!({}))
    } else {
        None
    }
}

fn call(server: &Server, method: &str, path: &str, headers: &[(&str, &str)]) -> support::Answer {
    let body = body_for(path).map(|b| b.to_string());
    server.request(method, path, headers, body.as_deref().map(str::as_bytes))
}

/// A correctly signed session for `username`, made with the server's own secret.
fn signed_session(dir: &std::path::Path, username: &str, ttl: Duration) -> String {
    let secret = std::fs::read_to_string(dir.join("data/session_secret")).unwrap();
    let codec = SessionCodec::new(Secret::new(secret.trim()), ttl);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let url = format!("sqlite://{}", dir.join("data/nebula.db").display());
    let account = rt.block_on(async {
        let db = Database::open_async(&url, 1).await.unwrap();
        AccountStore::new(db)
            .by_username(username)
            .await
            .unwrap()
            .unwrap()
    });
    codec.issue(&account).value
}

#[test]
fn seed_curl_examples_answer_the_seed_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);

    let list = server.get("/system/plugins");
    assert_eq!(list.status, 200);
    let plugins = list.body["plugins"].as_array().unwrap();
    let sample = plugins.iter().find(|p| p["name"] == "sample_sync").unwrap();
    for (field, expected) in [
        ("source", json!("in_process")),
        ("api_version", json!("v1")),
        ("version", json!("0.1.0")),
        (
            "description",
            json!("Sample user sync plugin for plugin_api_v1"),
        ),
        ("status", json!("initialized")),
        ("message", json!("initialized")),
        ("error", json!("")),
    ] {
        assert_eq!(sample[field], expected, "{field}");
    }
    assert!(sample["initialized_at"].is_f64() && sample["updated_at"].is_f64());
    assert_eq!(sample["scopes"].as_array().unwrap().len(), 7);

    let dry = server.post(
        "/system/plugins/sample_sync/sync-users",
        &json!({"dry_run": true}),
    );
    assert_eq!(dry.status, 200);
    assert_eq!(dry.body["plugin"], "sample_sync");
    assert_eq!(dry.body["result"]["status"], "dry_run");
    assert_eq!(dry.body["result"]["count"], 2);

    // The seed's full sync body answers exactly the seed's response.
    let seed_body = json!({"dry_run": true, "users": [{"username": "john.doe", "db_name": "system.db",
        "role_tag": "developer", "email": "john@example.com", "is_active": true}], "limit": 0});
    let answer = server.post("/system/plugins/sample_sync/sync-users", &seed_body);
    assert_eq!(
        answer.body,
        json!({"plugin": "sample_sync", "result": {"status": "dry_run", "count": 1, "items": [
            {"action": "would_sync", "username": "john.doe", "db_name": "system.db", "role_tag": "developer"}]}})
    );

    let health = server.get("/system/plugins/sample_sync/health");
    assert_eq!(health.status, 200);
    assert_eq!(
        health.body,
        json!({"plugin": "sample_sync", "health": {"status": "ok"}})
    );

    let rescan = server.post("/system/plugins/rescan", &json!({}));
    assert_eq!(rescan.status, 200);
    assert_eq!(rescan.body["status"], "ok");
    assert!(rescan.body["plugins"].as_array().unwrap().len() == plugins.len());

    // Stats count the calls just made; logs hold what the plugin wrote through ctx.log.
    let stats = server.get("/system/plugins/sample_sync/stats");
    assert_eq!(stats.status, 200, "{}", stats.body);
    let sync_stats = &stats.body["methods"]["sync_users"];
    assert_eq!(sync_stats["calls"], 2);
    assert_eq!(sync_stats["ok"], 2);
    assert!(sync_stats["p50_ms"].is_f64() && sync_stats["p99_ms"].is_f64());
    assert!(stats.body["uptime_sec"].as_f64().unwrap() >= 0.0);
    let logs = server.get("/system/plugins/sample_sync/logs?tail=5");
    assert_eq!(logs.status, 200, "{}", logs.body);
    let lines = logs.body["lines"].as_array().unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "sample_sync initialised"),
        "{lines:?}"
    );
    assert_eq!(lines[0]["level"], "info");

    let live = server.request("GET", "/healthz", &[], None);
    assert_eq!(
        (live.status, live.body.clone()),
        (200, json!({"status": "ok"}))
    );
    // Readiness asks the database too; no credentials, no secrets.
    let ready = server.request("GET", "/readyz", &[], None);
    assert_eq!(
        (ready.status, ready.body.clone()),
        (200, json!({"status": "ready", "database": "ok"}))
    );
}

#[test]
fn every_system_route_requires_a_valid_credential() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_with_users(dir.path(), &[]);
    let token = server.token();

    // Credentials that work.
    let login = server.login("admin", STAFF_PASSWORD);
    assert_eq!(login.status, 200, "{:?}", login.body);
    let cookie_header = login
        .set_cookie
        .iter()
        .find(|c| c.starts_with("nebula_session="))
        .unwrap()
        .clone();
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie_header.contains(attr), "{cookie_header}");
    }
    let staff_cookie = format!("nebula_session={}", session_cookie(&login));

    // Credentials that must not.
    let viewer_login = server.login("viewer", "viewer-password-1");
    assert_eq!(viewer_login.status, 401, "non-staff users cannot log in");
    let non_staff = format!(
        "nebula_session={}",
        signed_session(dir.path(), "viewer", Duration::from_secs(600))
    );
    let expired = format!(
        "nebula_session={}",
        signed_session(dir.path(), "admin", Duration::ZERO)
    );
    let mut forged_value = session_cookie(&login);
    let last = forged_value.pop().unwrap();
    forged_value.push(if last == 'A' { 'B' } else { 'A' });
    let forged = format!("nebula_session={forged_value}");
    let wrong_token = format!("{token}x");

    let refused: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("missing", vec![]),
        ("empty token", vec![("X-Nebula-Token", "")]),
        (
            "wrong token",
            vec![("X-Nebula-Token", wrong_token.as_str())],
        ),
        ("non-staff cookie", vec![("Cookie", non_staff.as_str())]),
        ("expired cookie", vec![("Cookie", expired.as_str())]),
        ("forged cookie", vec![("Cookie", forged.as_str())]),
        (
            "garbage cookie",
            vec![("Cookie", "nebula_session=v1.1.9999999999.x.y")],
        ),
    ];
    let accepted: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("token", vec![("X-Nebula-Token", token.as_str())]),
        ("staff cookie", vec![("Cookie", staff_cookie.as_str())]),
    ];

    let routes = nebula_server::routes::system_route_list();
    assert!(routes.len() >= 8, "{routes:?}");
    for (method, path) in &routes {
        let path = path.replace("{name}", "sample_sync");
        for (what, headers) in &refused {
            let answer = call(&server, method, &path, headers);
            assert_eq!(answer.status, 403, "{method} {path} with {what}");
            assert_eq!(
                answer.body,
                json!({"detail": "Forbidden"}),
                "{method} {path}"
            );
        }
        for (what, headers) in &accepted {
            let answer = call(&server, method, &path, headers);
            assert!(
                (200..300).contains(&answer.status),
                "{method} {path} with {what}: {} {}",
                answer.status,
                answer.body
            );
        }
    }

    // Unknown routes under /system are 403 without credentials too (nothing leaks).
    let answer = server.request("GET", "/system/secret-route", &[], None);
    assert_eq!(answer.status, 403);

    // A session dies when its user stops being staff.
    let store_url = format!("sqlite://{}", dir.path().join("data/nebula.db").display());
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let db = Database::open_async(&store_url, 1).await.unwrap();
        AccountStore::new(db)
            .set_flags("admin", true, false)
            .await
            .unwrap();
    });
    let answer = server.request("GET", "/system/plugins", &[("Cookie", &staff_cookie)], None);
    assert_eq!(answer.status, 403, "demoted staff keeps no access");

    // Logout clears the cookie.
    let out = server.request("POST", "/auth/logout", &[], None);
    assert_eq!(out.status, 200);
    assert!(
        out.set_cookie
            .iter()
            .any(|c| c.starts_with("nebula_session=;") || c.contains("Max-Age=0")),
        "{:?}",
        out.set_cookie
    );
}

#[test]
fn logins_fail_alike_and_are_rate_limited() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_with_users(dir.path(), &[]);
    let unknown = server.login("nobody", "whatever-password");
    let wrong = server.login("admin", "wrong-password");
    assert_eq!(unknown.status, 401);
    assert_eq!((unknown.status, &unknown.body), (wrong.status, &wrong.body));
    // Five failures per username per window (the unknown name counts for itself).
    for _ in 0..4 {
        assert_eq!(server.login("admin", "wrong-password").status, 401);
    }
    let limited = server.login("admin", STAFF_PASSWORD);
    assert_eq!(limited.status, 429, "{}", limited.body);
    assert!(limited.body["detail"]
        .as_str()
        .unwrap()
        .contains("too many"));
    assert!(limited.retry_after.is_some());
    // A burst of simultaneous attempts cannot get past the limit: counted before the check.
    let burst: Vec<_> = (0..20)
        .map(|i| {
            let base = server.base.clone();
            std::thread::spawn(move || {
                let body = json!({"username": "burst", "password": format!("guess-{i}")});
                match ureq::post(&format!("{base}/auth/login")).send_json(body) {
                    Ok(r) => r.status(),
                    Err(ureq::Error::Status(code, _)) => code,
                    Err(e) => panic!("{e}"),
                }
            })
        })
        .collect();
    let statuses: Vec<u16> = burst.into_iter().map(|t| t.join().unwrap()).collect();
    let tried = statuses.iter().filter(|s| **s == 401).count();
    assert_eq!(tried, 5, "exactly the allowance is tried: {statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 15);
    // Bad bodies are 422, never 5xx.
    let bad = server.request("POST", "/auth/login", &[], Some(b"{\"username\":1}"));
    assert_eq!(bad.status, 422);
}

#[test]
fn bad_input_gets_its_status_and_a_json_detail_never_a_5xx() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let token = server.token();
    let auth = [("X-Nebula-Token", token.as_str())];
    let sync = "/system/plugins/sample_sync/sync-users";

    let too_many: Vec<Value> = (0..10_001)
        .map(|i| json!({"username": format!("u{i}")}))
        .collect();
    let too_many = json!({"dry_run": true, "users": too_many}).to_string();
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let cases: Vec<(&str, &str, String, u16, &str)> = vec![
        ("POST", sync, "{".into(), 422, "invalid body"),
        ("POST", sync, "[]".into(), 422, "expected a JSON object"),
        ("POST", sync, r#"{"dry_run":"yes"}"#.into(), 422, "dry_run"),
        ("POST", sync, r#"{"limit":-1}"#.into(), 422, "limit"),
        ("POST", sync, r#"{"limit":10001}"#.into(), 422, "limit"),
        ("POST", sync, r#"{"limit":"x"}"#.into(), 422, "limit"),
        ("POST", sync, r#"{"bogus":true}"#.into(), 422, "bogus"),
        ("POST", sync, r#"{"users":{}}"#.into(), 422, "users"),
        (
            "POST",
            sync,
            r#"{"users":[{"username":""}]}"#.into(),
            422,
            "users[0].username",
        ),
        (
            "POST",
            sync,
            r#"{"users":[{"db_name":"x"}]}"#.into(),
            422,
            "users[0]",
        ),
        ("POST", sync, too_many, 422, "at most 10000 users"),
        ("POST", sync, deep, 422, "invalid body"),
        (
            "POST",
            "/system/plugins/nope_plugin/sync-users",
            "{}".into(),
            404,
            "plugin 'nope_plugin' not found",
        ),
        (
            "POST",
            "/system/plugins/a/sync-users",
            "{}".into(),
            404,
            "plugin 'a' not found",
        ),
        (
            "POST",
            "/system/plugins/sample_sync/action",
            r#"{"action":"explode"}"#.into(),
            422,
            "action",
        ),
        (
            "POST",
            "/system/plugins/sample_sync/action",
            "{}".into(),
            422,
            "action",
        ),
        (
            "GET",
            "/system/plugins/nope_plugin/health",
            String::new(),
            404,
            "not found",
        ),
        ("GET", "/system/events?limit=0", String::new(), 422, "limit"),
        (
            "GET",
            "/system/plugins/sample_sync/logs?tail=0",
            String::new(),
            422,
            "tail",
        ),
        (
            "GET",
            "/system/plugins/sample_sync/logs?tail=2001",
            String::new(),
            422,
            "tail",
        ),
        (
            "GET",
            "/system/plugins/nope_plugin/logs",
            String::new(),
            404,
            "not found",
        ),
        (
            "GET",
            "/system/plugins/nope_plugin/stats",
            String::new(),
            404,
            "not found",
        ),
        (
            "GET",
            "/system/events?limit=1001",
            String::new(),
            422,
            "limit",
        ),
        (
            "GET",
            "/system/events?limit=abc",
            String::new(),
            422,
            "limit",
        ),
        ("GET", "/system/events?limt=5", String::new(), 422, "limt"),
        (
            "GET",
            "/system/directory/users?db_name=../x",
            String::new(),
            422,
            "db_name",
        ),
        (
            "GET",
            "/system/directory/users?limit=2001",
            String::new(),
            422,
            "limit",
        ),
        (
            "GET",
            "/system/directory/users?offset=-1",
            String::new(),
            422,
            "offset",
        ),
        (
            "DELETE",
            "/system/plugins",
            String::new(),
            405,
            "Method Not Allowed",
        ),
        (
            "GET",
            "/system/plugins/rescan",
            String::new(),
            405,
            "Method Not Allowed",
        ),
        (
            "GET",
            "/system/no-such-thing",
            String::new(),
            404,
            "Not Found",
        ),
        ("GET", "/no-such-thing", String::new(), 404, "Not Found"),
    ];
    for (method, path, body, status, detail) in &cases {
        let body = (!body.is_empty()).then_some(body.as_bytes());
        let answer = server.request(method, path, &auth, body);
        assert_eq!(answer.status, *status, "{method} {path}: {}", answer.body);
        let text = answer.body["detail"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {path}: no JSON detail in {}", answer.body));
        assert!(
            text.contains(detail),
            "{method} {path}: {text:?} lacks {detail:?}"
        );
    }

    // Over the body limit: 413 with a JSON detail.
    let big = vec![b' '; 8 * 1024 * 1024 + 10];
    let answer = server.request("POST", sync, &auth, Some(&big));
    assert_eq!(answer.status, 413);
    assert!(answer.body["detail"].is_string());

    // Disabled plugin: 409; started again: works. The list (answered from a snapshot while
    // nothing changes) shows each change at once.
    let listed_status = |server: &Server| {
        let list = server.get("/system/plugins");
        let plugins = list.body["plugins"].as_array().unwrap().clone();
        let rec = plugins.iter().find(|p| p["name"] == "sample_sync").unwrap();
        (rec["status"].clone(), rec["enabled"].clone())
    };
    assert_eq!(listed_status(&server), listed_status(&server));
    assert_eq!(listed_status(&server).1, json!(true));
    let stop = server.post(
        "/system/plugins/sample_sync/action",
        &json!({"action": "stop"}),
    );
    assert_eq!(
        stop.body,
        json!({"plugin": "sample_sync", "result": {"status": "stopped"}})
    );
    let answer = server.post(sync, &json!({}));
    assert_eq!(answer.status, 409);
    assert!(answer.body["detail"].as_str().unwrap().contains("disabled"));
    assert_eq!(listed_status(&server), (json!("disabled"), json!(false)));
    let start = server.post(
        "/system/plugins/sample_sync/action",
        &json!({"action": "start"}),
    );
    assert_eq!(start.body["result"]["status"], "started");
    assert_eq!(listed_status(&server).1, json!(true));
    assert_eq!(server.post(sync, &json!({})).status, 200);

    // An empty body is a default (dry) run.
    let answer = server.request("POST", sync, &auth, Some(b""));
    assert_eq!(
        (answer.status, &answer.body["result"]["status"]),
        (200, &json!("dry_run"))
    );
}
