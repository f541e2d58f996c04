//! Issue 10, end to end: an external plugin in Python (grpcio), built from its own copies of
//! both protos, calls the core's host service (SPEC §8) back from its `SyncUsers` with the
//! token the core sent it, through the real server binary. It writes users, identity tags, a
//! role, an event and log lines; gets its settings (SPEC §10); is refused what its grants do not
//! allow; and a token from a previous instance is refused after a restart.
//!
//! The plugin is `tests/grpc_peers/python/host_plugin.py`; its answer reports, per host call,
//! the gRPC status code (`OK`, `PERMISSION_DENIED`, `UNAUTHENTICATED`, …) and details.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use support::{python_command, spawn_peer, Peer, Server};

const PLUGIN: &str = "pyhost";
/// The secret setting, given through the environment only.
const SECRET: &str = "sk-pyhost-5f0c2d9e81a7";
const SECRET_ENV: &str = "NEBULA__PLUGINS__SETTINGS__PYHOST__API_KEY";
/// The PluginService token (`token_env`), checked by the plugin.
const PLUGIN_TOKEN_ENV: &str = "PYHOST_PLUGIN_TOKEN";
const PLUGIN_TOKEN: &str = "tok-pyhost-plugin-service";
const SCOPES: [&str; 7] = [
    "users.read",
    "users.write",
    "identity_tags.read",
    "identity_tags.write",
    "roles.read",
    "roles.write",
    "events.emit",
];
/// The Log call the plugin makes with the first host token it ever saw.
const FIRST_TOKEN_LINE: &str = "python plugin: a call with the first host token it saw";

/// A server with the Python plugin configured as `pyhost`, and what it needs to stay alive.
struct Setup {
    server: Server,
    _peer: Peer,
    log: PathBuf,
    dir: tempfile::TempDir,
}

/// Starts the plugin (requiring `PLUGIN_TOKEN` as `x-nebula-token`) and a server configured
/// with it; `extra` is appended to the configuration file.
fn start(extra: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = python_command("host_plugin.py");
    cmd.args(["--port", "0", "--token-env", PLUGIN_TOKEN_ENV])
        .env(PLUGIN_TOKEN_ENV, PLUGIN_TOKEN);
    let peer = spawn_peer(&mut cmd);
    let scopes = SCOPES.map(|s| format!("\"{s}\"")).join(", ");
    let config = format!(
        "[plugins]\ncall_timeout_sec = 20\nhealth_interval_sec = 3600\n\n\
         [[plugins.external]]\nname = \"{PLUGIN}\"\nendpoint = \"{endpoint}\"\n\
         token_env = \"{PLUGIN_TOKEN_ENV}\"\nscopes = [{scopes}]\n\n\
         [plugins.settings.{PLUGIN}]\ngreeting = \"hello\"\n\n{extra}",
        endpoint = peer.endpoint,
    );
    let config_path = dir.path().join("nebula.toml");
    std::fs::write(&config_path, config).unwrap();
    let log = dir.path().join("server.log");
    let config_path = config_path.to_str().unwrap().to_owned();
    let server = Server::start_logging_to(
        dir.path(),
        &[
            ("NEBULA_CONFIG", config_path.as_str()),
            (SECRET_ENV, SECRET),
            (PLUGIN_TOKEN_ENV, PLUGIN_TOKEN),
        ],
        &log,
    );
    Setup {
        server,
        _peer: peer,
        log,
        dir,
    }
}

fn users() -> Value {
    json!([
        {"username": "ann", "db_name": "acme", "role_tag": "Engineer", "email": "ann@example.com"},
        {"username": "bob", "db_name": "acme", "role_tag": "sales_lead", "email": "bob@example.com"},
        {"username": "cid", "db_name": "acme", "is_active": false},
    ])
}

/// A real sync of `users()` through the admin API; the plugin's answer.
fn sync(server: &Server) -> Value {
    let answer = server.post(
        &format!("/system/plugins/{PLUGIN}/sync-users"),
        &json!({"dry_run": false, "users": users()}),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["plugin"], PLUGIN);
    let result = answer.body["result"].clone();
    assert_eq!(result["status"], "ok", "{result}");
    assert_eq!(result["count"], 3, "{result}");
    result
}

/// Call name → status code name, for messages and whole-map comparisons.
fn codes(result: &Value) -> BTreeMap<String, String> {
    result["calls"]
        .as_object()
        .unwrap_or_else(|| panic!("no calls in {result}"))
        .iter()
        .map(|(k, v)| (k.clone(), v["code"].as_str().unwrap_or("?").to_owned()))
        .collect()
}

fn expected(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Every call of a full sync, OK, except the two made without a live token.
fn all_ok_but_no_token(log_with_first_token: &str) -> BTreeMap<String, String> {
    expected(&[
        ("GetSettings", "OK"),
        ("SyncUser", "OK"),
        ("SyncUsers", "OK"),
        ("UpsertIdentityRole", "OK"),
        ("EmitEvent", "OK"),
        ("Log", "OK"),
        ("LogWithFirstToken", log_with_first_token),
        ("NoToken", "UNAUTHENTICATED"),
        ("WrongToken", "UNAUTHENTICATED"),
    ])
}

/// The host endpoint the core sent: the unix socket `<data dir>/host.sock`, private.
fn assert_unix_host_endpoint(result: &Value, dir: &Path) {
    let endpoint = result["host_endpoint"].as_str().unwrap_or_default();
    let path = endpoint
        .strip_prefix("unix://")
        .unwrap_or_else(|| panic!("host endpoint {endpoint:?} is not unix://"));
    assert!(
        path.starts_with('/') && path.ends_with("/data/host.sock"),
        "{endpoint}"
    );
    assert_eq!(
        std::fs::canonicalize(path).unwrap(),
        std::fs::canonicalize(dir.join("data/host.sock")).unwrap(),
        "the socket is in the data directory"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "host.sock mode {mode:o}");
    let length = result["host_token_length"].as_u64().unwrap();
    assert!(length >= 43, "a host token of {length} characters");
}

/// The plugin's entry in `GET /system/plugins`.
fn plugin_record(server: &Server) -> Value {
    let listed = server.get("/system/plugins").body;
    listed["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == PLUGIN)
        .unwrap_or_else(|| panic!("{listed}"))
        .clone()
}

fn directory_users(server: &Server) -> Value {
    let answer = server.get("/system/directory/users?db_name=acme");
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.body
}

fn log_lines(server: &Server) -> Vec<Value> {
    let answer = server.get(&format!("/system/plugins/{PLUGIN}/logs?tail=2000"));
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.body["lines"].as_array().unwrap().clone()
}

fn count_lines(lines: &[Value], message: &str) -> usize {
    lines.iter().filter(|l| l["message"] == message).count()
}

fn plugin_events(server: &Server) -> Vec<Value> {
    let answer = server.get(&format!("/system/events?prefix=plugin.{PLUGIN}."));
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.body["events"].as_array().unwrap().clone()
}

fn has_py_role(server: &Server) -> Option<Value> {
    let answer = server.get("/system/directory/roles");
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.body["roles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "py_role")
        .cloned()
}

#[test]
fn the_python_plugin_uses_an_identical_copy_of_the_host_proto() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let ours = std::fs::read_to_string(root.join("proto/host_api_v1.proto")).unwrap();
    let theirs =
        std::fs::read_to_string(root.join("tests/grpc_peers/python/host_api_v1.proto")).unwrap();
    assert_eq!(ours, theirs);
}

/// (a) A real sync: every host call answered OK, the writes are in the directory, the event
/// and the log line are stored, the settings reach the plugin and nothing lists them.
#[test]
fn a_python_plugin_syncs_users_through_the_host_service() {
    let setup = start("");
    let server = &setup.server;
    let health = server.get(&format!("/system/plugins/{PLUGIN}/health"));
    assert_eq!(health.status, 200, "{}", health.body);
    assert_eq!(health.body["health"], json!({"status": "ok"}));

    let result = sync(server);
    assert_eq!(codes(&result), all_ok_but_no_token("OK"), "{result}");
    assert_eq!(result["synced"], 3, "{result}");
    assert_eq!(result["token_same_as_first"], true);
    assert_unix_host_endpoint(&result, setup.dir.path());
    let calls = &result["calls"];
    assert_eq!(
        calls["GetSettings"]["settings"],
        json!({"greeting": "hello", "api_key": SECRET}),
        "both settings, the secret one from the environment"
    );
    assert_eq!(
        calls["SyncUser"],
        json!({"code": "OK", "username": "ann", "outcome": "created"})
    );
    assert_eq!(
        calls["SyncUsers"],
        json!({"code": "OK", "results": [
            {"username": "bob", "outcome": "created", "error": "", "code": ""},
            {"username": "cid", "outcome": "created", "error": "", "code": ""},
        ]})
    );
    for unauthenticated in ["NoToken", "WrongToken"] {
        let details = calls[unauthenticated]["details"].as_str().unwrap();
        assert!(details.contains("x-nebula-host-token"), "{details}");
    }

    // The users and their identity tags, normalised, in the tenant acme.db.
    let listed = directory_users(server);
    assert_eq!(listed["db_name"], "acme.db");
    assert_eq!(
        listed["items"],
        json!([
            {"username": "ann", "email": "ann@example.com", "is_active": true, "is_staff": false, "role_tag": "engineer", "synced_by": "pyhost"},
            {"username": "bob", "email": "bob@example.com", "is_active": true, "is_staff": false, "role_tag": "sales_lead", "synced_by": "pyhost"},
            {"username": "cid", "email": null, "is_active": false, "is_staff": false, "role_tag": "user", "synced_by": "pyhost"},
        ]),
        "{listed}"
    );
    assert_eq!(
        has_py_role(server),
        Some(json!({"name": "py_role", "description": "from python", "is_staff": false}))
    );
    let events = plugin_events(server);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["name"], "plugin.pyhost.imported");
    assert_eq!(events[0]["payload"], json!({"count": 3}));
    let lines = log_lines(server);
    let line = lines
        .iter()
        .find(|l| l["message"] == "python plugin synced 3 users")
        .unwrap_or_else(|| panic!("no log line in {lines:?}"));
    assert_eq!(line["level"], "info");
    assert_eq!(count_lines(&lines, FIRST_TOKEN_LINE), 1);

    // The settings are never listed (nor logged).
    for path in [
        "/system/plugins".to_owned(),
        format!("/system/plugins/{PLUGIN}"),
        format!("/system/plugins/{PLUGIN}/health"),
        format!("/system/plugins/{PLUGIN}/stats"),
        format!("/system/plugins/{PLUGIN}/logs"),
        "/system/events".to_owned(),
    ] {
        let answer = server.get(&path);
        let text = answer.body.to_string();
        for leak in [SECRET, "api_key", "greeting"] {
            assert!(
                !text.contains(leak),
                "{path} ({}) shows {leak:?}: {text}",
                answer.status
            );
        }
    }
    let record = plugin_record(server);
    assert_eq!(record["source"], "grpc");
    let mut scopes: Vec<&str> = record["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    scopes.sort_unstable();
    let mut declared = SCOPES.to_vec();
    declared.sort_unstable();
    assert_eq!(scopes, declared, "{record}");
    let log = std::fs::read_to_string(&setup.log).unwrap();
    assert!(
        !log.contains(SECRET),
        "the server logged the secret setting"
    );
}

/// (b) The operator grants only `users.read`: every write is refused with PERMISSION_DENIED
/// naming the scope, nothing is written; Log and GetSettings need no scope.
#[test]
fn grants_limit_what_the_python_plugin_may_do_through_the_host_service() {
    let setup = start(&format!("[plugins.grants]\n{PLUGIN} = [\"users.read\"]\n"));
    let server = &setup.server;
    let result = sync(server);
    assert_eq!(
        codes(&result),
        expected(&[
            ("GetSettings", "OK"),
            ("SyncUser", "PERMISSION_DENIED"),
            ("SyncUsers", "PERMISSION_DENIED"),
            ("UpsertIdentityRole", "PERMISSION_DENIED"),
            ("EmitEvent", "PERMISSION_DENIED"),
            ("Log", "OK"),
            ("LogWithFirstToken", "OK"),
            ("NoToken", "UNAUTHENTICATED"),
            ("WrongToken", "UNAUTHENTICATED"),
        ]),
        "{result}"
    );
    assert_eq!(result["synced"], 0, "{result}");
    let calls = &result["calls"];
    for (call, scope) in [
        ("SyncUser", "users.write"),
        ("SyncUsers", "users.write"),
        ("UpsertIdentityRole", "roles.write"),
        ("EmitEvent", "events.emit"),
    ] {
        let entry = &calls[call];
        let details = entry["details"].as_str().unwrap();
        assert!(
            details.contains(scope) && details.contains(PLUGIN),
            "{call}: {details}"
        );
        assert_eq!(entry["error_kind"], "missing_scope", "{call}: {entry}");
        assert_eq!(entry["error_scope"], scope, "{call}: {entry}");
    }
    assert!(calls["SyncUsers"].get("results").is_none(), "{result}");
    assert_eq!(
        calls["GetSettings"]["settings"],
        json!({"greeting": "hello", "api_key": SECRET})
    );

    // Nothing written.
    let listed = directory_users(server);
    assert_eq!(listed["count"], 0, "{listed}");
    assert_eq!(listed["items"], json!([]));
    assert_eq!(has_py_role(server), None);
    assert_eq!(plugin_events(server), Vec::<Value>::new());
    let lines = log_lines(server);
    assert_eq!(
        count_lines(&lines, "python plugin synced 0 users"),
        1,
        "{lines:?}"
    );
    let record = plugin_record(server);
    assert_eq!(record["scopes"], json!(["users.read"]), "{record}");
}

/// (c) A restart mints a new token: the plugin's first token is refused afterwards, while the
/// calls with the current token work; a call without a token is always refused.
#[test]
fn a_host_token_dies_with_its_instance() {
    let setup = start("");
    let server = &setup.server;
    let first = sync(server);
    assert_eq!(codes(&first), all_ok_but_no_token("OK"), "{first}");
    assert_eq!(first["token_same_as_first"], true);
    assert_eq!(first["calls"]["SyncUser"]["outcome"], "created");

    let restart = server.post(
        &format!("/system/plugins/{PLUGIN}/action"),
        &json!({"action": "restart"}),
    );
    assert_eq!(restart.status, 200, "{}", restart.body);
    assert_eq!(restart.body["result"]["status"], "restarted");

    let second = sync(server);
    assert_eq!(
        codes(&second),
        all_ok_but_no_token("UNAUTHENTICATED"),
        "{second}"
    );
    assert_eq!(
        second["token_same_as_first"], false,
        "a new instance, a new token: {second}"
    );
    assert_eq!(second["synced"], 3);
    assert_eq!(second["calls"]["SyncUser"]["outcome"], "updated");
    for item in second["calls"]["SyncUsers"]["results"].as_array().unwrap() {
        assert_eq!(item["outcome"], "updated", "{item}");
    }
    let details = second["calls"]["LogWithFirstToken"]["details"]
        .as_str()
        .unwrap();
    assert!(details.contains("x-nebula-host-token"), "{details}");
    assert_unix_host_endpoint(&second, setup.dir.path());

    // The stale token wrote nothing: its line is there once, from the first sync only.
    let lines = log_lines(server);
    assert_eq!(count_lines(&lines, FIRST_TOKEN_LINE), 1, "{lines:?}");
    assert_eq!(
        count_lines(&lines, "python plugin synced 3 users"),
        2,
        "{lines:?}"
    );
    assert_eq!(plugin_events(server).len(), 2);
}

/// With `[plugins.host_service] bind`, the core sends `http://127.0.0.1:PORT` instead of the
/// unix socket, and the plugin reaches it there.
#[test]
fn the_python_plugin_reaches_the_host_service_on_tcp_when_bound() {
    let setup = start("[plugins.host_service]\nbind = \"127.0.0.1:0\"\n");
    let server = &setup.server;
    let result = sync(server);
    let endpoint = result["host_endpoint"].as_str().unwrap_or_default();
    assert!(
        endpoint.starts_with("http://127.0.0.1:"),
        "{endpoint}: {result}"
    );
    assert_eq!(codes(&result), all_ok_but_no_token("OK"), "{result}");
    assert_eq!(directory_users(server)["count"], 3);
}

/// `Peer::python_script` starts the same plugin without the token check; a dry run calls only
/// GetSettings (and the two refused calls), and writes nothing.
#[test]
fn a_dry_run_reads_settings_only() {
    let peer = Peer::python_script("host_plugin.py", &["--port", "0"]);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("nebula.toml");
    std::fs::write(
        &config,
        format!(
            "[plugins]\nhealth_interval_sec = 3600\ncall_timeout_sec = 20\n\n\
             [[plugins.external]]\nname = \"{PLUGIN}\"\nendpoint = \"{}\"\n",
            peer.endpoint
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap().to_owned();
    let server = Server::start(dir.path(), &[("NEBULA_CONFIG", config.as_str())]);
    let answer = server.post(
        &format!("/system/plugins/{PLUGIN}/sync-users"),
        &json!({"dry_run": true, "users": users()}),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    let result = &answer.body["result"];
    assert_eq!(
        codes(result),
        expected(&[
            ("GetSettings", "OK"),
            ("NoToken", "UNAUTHENTICATED"),
            ("WrongToken", "UNAUTHENTICATED"),
        ]),
        "{result}"
    );
    assert_eq!(result["calls"]["GetSettings"]["settings"], json!({}));
    assert_eq!(directory_users(&server)["count"], 0);
}

/// The Python example of docs/EXTERNAL_PLUGINS.md §14 (`hr_py.py`, quoted there verbatim)
/// really works: through the unix socket, its settings decide the tenant, its log line lands
/// in the plugin's ring.
#[test]
fn the_documented_python_example_syncs_through_the_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let peer = Peer::python_script("hr_py.py", &["127.0.0.1:0"]);
    let config = format!(
        "[plugins]\nhealth_interval_sec = 3600\n\n\
         [[plugins.external]]\nname = \"hr_py\"\nendpoint = \"{}\"\n\
         scopes = [\"users.read\", \"users.write\", \"identity_tags.read\", \"identity_tags.write\"]\n\n\
         [plugins.settings.hr_py]\ndb_name = \"acme\"\n",
        peer.endpoint
    );
    std::fs::write(dir.path().join("nebula.toml"), config).unwrap();
    let config_path = dir.path().join("nebula.toml");
    let server = Server::start(
        dir.path(),
        &[("NEBULA_CONFIG", config_path.to_str().unwrap())],
    );
    let body = json!({"dry_run": false, "users": [
        {"username": "eve", "role_tag": "Analyst"},
        {"username": "",  "role_tag": "x"},
    ]});
    // An empty username is refused by the HTTP layer before any plugin runs.
    assert_eq!(
        server
            .post("/system/plugins/hr_py/sync-users", &body)
            .status,
        422
    );
    let answer = server.post(
        "/system/plugins/hr_py/sync-users",
        &json!({"dry_run": false, "users": [{"username": "eve", "role_tag": "Analyst"}, {"username": "fay"}]}),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["result"]["synced"], 2, "{}", answer.body);
    let listed = server.get("/system/directory/users?db_name=acme").body;
    let names: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["eve", "fay"], "{listed}");
    assert_eq!(listed["items"][0]["role_tag"], "analyst");
    let lines = server.get("/system/plugins/hr_py/logs").body;
    assert!(
        lines.to_string().contains("hr_py synced 2 users"),
        "{lines}"
    );

    drop(server);
    peer.terminate();
}
