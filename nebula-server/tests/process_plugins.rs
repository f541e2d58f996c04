//! Issue 11, end to end: process plugins (SPEC §9) from a plugins directory, run by the real
//! server binary. The Rust one is `sample_sync` served by its one-line `main`
//! (`sample-sync-process`); the Python one is the ready-to-copy example
//! `examples/process-plugin-python/` (grpcio, from its own stubs of both protos).
//!
//! Covered: listing, health, real syncs through the host service, the log ring and the stats
//! (pid, RSS); rescan (new, removed, changed, unchanged, broken directories); supervision (a
//! killed process restarted with a new pid, a process that always exits disabled by policy);
//! the memory and CPU limits; no process survives the core killed with SIGKILL.
//!
//! Every wait is a poll with a deadline, generous enough for a busy 2-core machine. Pids are
//! checked in `/proc` together with their start time, so a reused pid is never mistaken for
//! the plugin's; the only processes a test signals are plugin processes its own server
//! started (and, when a test fails, those still alive at its end).

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{python_with_grpc, Server};

/// The Rust process plugin: `sample_sync` with `nebula_grpc::run_process_plugin` as `main`.
const RUST_PLUGIN_BIN: &str = env!("CARGO_BIN_EXE_sample-sync-process");

/// Polls `probe` every 100 ms until it gives a value; panics after `limit` with `what` and the
/// last thing `describe` says about the state.
fn wait_for<T>(
    what: &str,
    limit: Duration,
    mut probe: impl FnMut() -> Option<T>,
    mut describe: impl FnMut() -> String,
) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = probe() {
            return value;
        }
        if started.elapsed() > limit {
            panic!("{what}: not within {limit:?}; last seen: {}", describe());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------------------------------------
// Processes, by pid and start time.

/// A process seen in `/proc`: its pid and its start time (clock ticks after boot), which
/// tells it apart from a later process that got the same pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Proc {
    pid: u32,
    start: u64,
}

/// Fields of `/proc/PID/stat` after the command: state is the first, start time the 20th.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

impl Proc {
    /// The process `pid` as it is now (None: no such process, or a zombie).
    fn of(pid: u32) -> Option<Proc> {
        let fields = stat_fields(pid)?;
        if fields[0] == "Z" || fields[0] == "X" {
            return None;
        }
        Some(Proc {
            pid,
            start: fields[19].parse().ok()?,
        })
    }

    /// Whether this very process still runs (a zombie does not).
    fn alive(&self) -> bool {
        Proc::of(self.pid) == Some(*self)
    }

    /// Its command line, arguments separated by spaces.
    fn cmdline(&self) -> String {
        std::fs::read(format!("/proc/{}/cmdline", self.pid))
            .map(|b| {
                String::from_utf8_lossy(&b)
                    .split('\0')
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default()
    }

    /// `KEY=VALUE` entries of its environment.
    fn environ(&self) -> Vec<String> {
        std::fs::read(format!("/proc/{}/environ", self.pid))
            .map(|b| {
                String::from_utf8_lossy(&b)
                    .split('\0')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `kill -9`, only while it is still this process.
    fn kill9(&self) {
        if self.alive() {
            // SAFETY: kill(2) of a plugin process that this test's own server started,
            // checked by pid and start time just before.
            unsafe {
                libc::kill(self.pid as i32, libc::SIGKILL);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Plugin directories.

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/process-plugin-python")
}

fn write_manifest(dir: &Path, manifest: &Value) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("plugin.json"),
        serde_json::to_string_pretty(manifest).unwrap(),
    )
    .unwrap();
}

/// `<plugins>/<name>`: a copy of the Python example, named `name`, its command the test's
/// virtualenv Python, its `runtime.env` holding `PYTHONPATH` = the stubs and `extra_env`.
fn install_python(plugins: &Path, name: &str, extra_env: &[(&str, &str)]) -> PathBuf {
    let (python, stubs) = python_with_grpc();
    let dir = plugins.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(example_dir().join("plugin.py"), dir.join("plugin.py")).unwrap();
    let text = std::fs::read_to_string(example_dir().join("plugin.json")).unwrap();
    let mut manifest: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(manifest["name"], "hello_py");
    assert_eq!(
        manifest["runtime"]["command"],
        json!(["python3", "plugin.py"])
    );
    manifest["name"] = json!(name);
    manifest["runtime"]["command"] = json!([python.display().to_string(), "plugin.py"]);
    let env = manifest["runtime"]["env"].as_object_mut().unwrap();
    env.insert("PYTHONPATH".into(), json!(stubs.display().to_string()));
    for (key, value) in extra_env {
        env.insert((*key).into(), json!(value));
    }
    write_manifest(&dir, &manifest);
    dir
}

/// The Rust plugin's manifest: `sample-sync/plugin.json` renamed, run by the absolute path of
/// `sample-sync-process`.
fn rust_manifest(name: &str, description: &str) -> Value {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../sample-sync/plugin.json"),
    )
    .unwrap();
    let mut manifest: Value = serde_json::from_str(&text).unwrap();
    manifest["name"] = json!(name);
    manifest["description"] = json!(description);
    manifest["runtime"] = json!({"command": [RUST_PLUGIN_BIN], "env": {}});
    manifest
}

fn install_rust(plugins: &Path, name: &str) -> PathBuf {
    let dir = plugins.join(name);
    write_manifest(
        &dir,
        &rust_manifest(name, "sample_sync as a process plugin"),
    );
    dir
}

/// A plugin whose command is a shell script: `body` after `#!/bin/sh`.
fn install_script(plugins: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = plugins.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("run.sh");
    std::fs::write(&script, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    write_manifest(
        &dir,
        &json!({
            "name": name, "version": "0.0.1", "description": "a shell script",
            "api_version": "v1", "scopes": [],
            "runtime": {"command": ["./run.sh"]},
        }),
    );
    dir
}

// ---------------------------------------------------------------------------------------------
// The server.

/// A server over a plugins directory; on drop it is stopped with SIGTERM (so it stops its
/// plugins), and any plugin process this test saw that still runs then is killed.
struct Setup {
    server: Option<Server>,
    plugins: PathBuf,
    log: PathBuf,
    seen: std::cell::RefCell<Vec<Proc>>,
    _dir: tempfile::TempDir,
}

/// Lays out a work directory: `plugins/` (filled by `fill`) and a configuration with
/// `[plugins] dir` and `extra_plugins` keys, plus `extra` sections; starts the server.
fn start(fill: impl FnOnce(&Path), extra_plugins: &str, extra: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    fill(&plugins);
    let config = format!(
        "[plugins]\ndir = \"{}\"\nhealth_interval_sec = 3600\ninit_timeout_sec = 30\n\
         call_timeout_sec = 30\n{extra_plugins}\n\n{extra}\n",
        plugins.display()
    );
    let config_path = dir.path().join("nebula.toml");
    std::fs::write(&config_path, config).unwrap();
    let log = dir.path().join("server.log");
    let server = Server::start_logging_to(
        dir.path(),
        &[("NEBULA_CONFIG", config_path.to_str().unwrap())],
        &log,
    );
    Setup {
        server: Some(server),
        plugins,
        log,
        seen: Default::default(),
        _dir: dir,
    }
}

impl Setup {
    fn server(&self) -> &Server {
        self.server.as_ref().expect("the server runs")
    }

    fn rescan(&self) -> Value {
        let answer = self.server().post("/system/plugins/rescan", &json!({}));
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.body["status"], "ok", "{}", answer.body);
        answer.body
    }

    fn records(&self) -> Vec<Value> {
        let answer = self.server().get("/system/plugins");
        assert_eq!(answer.status, 200, "{}", answer.body);
        answer.body["plugins"].as_array().unwrap().clone()
    }

    /// The plugin's record in `GET /system/plugins`, if listed.
    fn record(&self, name: &str) -> Option<Value> {
        self.records().into_iter().find(|p| p["name"] == name)
    }

    fn listed(&self, name: &str) -> Value {
        self.record(name)
            .unwrap_or_else(|| panic!("{name} is not listed: {:?}", self.records()))
    }

    fn stats(&self, name: &str) -> Value {
        let answer = self.server().get(&format!("/system/plugins/{name}/stats"));
        assert_eq!(answer.status, 200, "{name}: {}", answer.body);
        answer.body
    }

    /// The plugin's running process per its stats (None while it has none).
    fn process(&self, name: &str) -> Option<Proc> {
        let stats = self.stats(name);
        let pid = stats["process"]["pid"].as_u64()? as u32;
        let proc = Proc::of(pid)?;
        self.seen.borrow_mut().push(proc);
        Some(proc)
    }

    /// Waits until the plugin has a running process and answers health `ok` (200).
    fn healthy_process(&self, name: &str, limit: Duration) -> Proc {
        wait_for(
            &format!("{name} healthy with a process"),
            limit,
            || {
                let health = self.server().get(&format!("/system/plugins/{name}/health"));
                if health.status != 200 {
                    return None;
                }
                assert_eq!(
                    health.body,
                    json!({"plugin": name, "health": {"status": "ok"}})
                );
                self.process(name)
            },
            || self.describe(name),
        )
    }

    fn health_status(&self, name: &str) -> u16 {
        self.server()
            .get(&format!("/system/plugins/{name}/health"))
            .status
    }

    fn describe(&self, name: &str) -> String {
        format!(
            "record {:?}, stats process {}",
            self.record(name),
            self.stats_process_or_404(name)
        )
    }

    fn stats_process_or_404(&self, name: &str) -> String {
        let answer = self.server().get(&format!("/system/plugins/{name}/stats"));
        if answer.status == 200 {
            answer.body["process"].to_string()
        } else {
            format!("{} {}", answer.status, answer.body)
        }
    }

    fn log_lines(&self, name: &str) -> Vec<Value> {
        let answer = self
            .server()
            .get(&format!("/system/plugins/{name}/logs?tail=2000"));
        assert_eq!(answer.status, 200, "{}", answer.body);
        answer.body["lines"].as_array().unwrap().clone()
    }

    /// The first log line of `name` whose message contains `text`.
    fn log_line(&self, name: &str, text: &str) -> Option<Value> {
        self.log_lines(name)
            .into_iter()
            .find(|l| l["message"].as_str().is_some_and(|m| m.contains(text)))
    }

    /// A real sync through `name`; its result (asserted 200).
    fn sync(&self, name: &str, users: Value) -> Value {
        let answer = self.server().post(
            &format!("/system/plugins/{name}/sync-users"),
            &json!({"dry_run": false, "users": users}),
        );
        assert_eq!(answer.status, 200, "{name}: {}", answer.body);
        assert_eq!(answer.body["plugin"], name);
        answer.body["result"].clone()
    }

    /// Usernames in the tenant `acme`.
    fn acme_usernames(&self) -> Vec<String> {
        let answer = self.server().get("/system/directory/users?db_name=acme");
        assert_eq!(answer.status, 200, "{}", answer.body);
        let mut names: Vec<String> = answer.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["username"].as_str().unwrap().to_owned())
            .collect();
        names.sort();
        names
    }

    /// The server's log, for messages.
    fn server_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills the core with SIGKILL: nothing of it runs a clean stop.
    fn kill_core(&mut self) {
        self.server.take().expect("the server runs").kill9();
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        // Never panics: it may run while a failed test unwinds.
        if let Some(server) = self.server.take() {
            // A clean stop: SIGTERM, and the core stops its plugins. The server is our child:
            // once it exited it is a zombie until `Server`'s drop reaps it.
            let pid = server.pid();
            // SAFETY: kill(2) of the server process this test started and has not reaped.
            unsafe {
                libc::kill(pid as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(30);
            while Proc::of(pid).is_some() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            drop(server); // SIGKILL if still running, then reaped
        }
        // Whatever of ours still runs (a failed test, a runtime that left one behind).
        let seen = self.seen.borrow().clone();
        let deadline = Instant::now() + Duration::from_secs(10);
        while seen.iter().any(Proc::alive) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        for proc in seen {
            if proc.alive() {
                eprintln!("plugin process {} outlived its core: killed", proc.pid);
                proc.kill9();
            }
        }
    }
}

fn canonical(path: &str) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn text_of(record: &Value) -> String {
    format!("{} / {}", record["message"], record["error"])
}

const LONG: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// (a) Both runtimes: listed, healthy, syncing through the host service, logs and stats.

#[test]
fn rust_and_python_process_plugins_run_and_sync_through_the_host_service() {
    let setup = start(
        |plugins| {
            install_rust(plugins, "sample_rust");
            install_python(plugins, "hello_py", &[]);
        },
        "",
        "",
    );

    for (name, version) in [("sample_rust", "0.1.0"), ("hello_py", "0.1.0")] {
        let record = setup.listed(name);
        assert_eq!(record["source"], "process", "{record}");
        assert_eq!(record["version"], version, "{record}");
        assert_eq!(record["api_version"], "v1", "{record}");
        assert_eq!(
            canonical(record["origin"].as_str().unwrap()),
            canonical(setup.plugins.join(name).to_str().unwrap()),
            "{record}"
        );
    }
    let started = Instant::now();
    let rust = setup.healthy_process("sample_rust", LONG);
    let python = setup.healthy_process("hello_py", LONG);
    eprintln!(
        "both healthy {:?} after the server started",
        started.elapsed()
    );
    for name in ["sample_rust", "hello_py"] {
        let record = setup.listed(name);
        assert_eq!(record["status"], "healthy", "{record}");
        assert_eq!(record["error"], "", "{record}");
    }
    assert_eq!(
        setup.listed("sample_rust")["description"],
        "sample_sync as a process plugin"
    );

    // How the core started them: the plugin's directory, a clean environment plus ours.
    for (name, proc) in [("sample_rust", rust), ("hello_py", python)] {
        let cwd = std::fs::read_link(format!("/proc/{}/cwd", proc.pid)).unwrap();
        assert_eq!(cwd, canonical(setup.plugins.join(name).to_str().unwrap()));
        // Exactly PATH, runtime.env, the five NEBULA_* variables of SPEC §9 and the two
        // limits the core sends (its message size and call timeout).
        let mut keys: Vec<String> = proc
            .environ()
            .iter()
            .map(|e| e.split('=').next().unwrap_or_default().to_owned())
            .collect();
        keys.sort();
        let mut expected = vec![
            "NEBULA_HOST_ENDPOINT",
            "NEBULA_HOST_TOKEN",
            "NEBULA_PLUGIN_CALL_TIMEOUT_MS",
            "NEBULA_PLUGIN_MAX_MESSAGE_BYTES",
            "NEBULA_PLUGIN_NAME",
            "NEBULA_PLUGIN_SOCKET",
            "NEBULA_PLUGIN_TOKEN",
            "PATH",
        ];
        if name == "hello_py" {
            expected.extend(["PYTHONPATH", "PYTHONUNBUFFERED"]);
        }
        expected.sort_unstable();
        assert_eq!(keys, expected, "{name}: the process's environment");
        assert_eq!(
            proc_env_value(&proc, "NEBULA_PLUGIN_NAME").as_deref(),
            Some(name)
        );
        let endpoint = proc_env_value(&proc, "NEBULA_HOST_ENDPOINT").unwrap();
        assert!(
            endpoint.starts_with("unix:///") && endpoint.ends_with("/host.sock"),
            "{endpoint}"
        );
        let token = proc_env_value(&proc, "NEBULA_HOST_TOKEN").unwrap();
        assert!(
            token.len() >= 43,
            "a host token of {} characters",
            token.len()
        );
        let token = proc_env_value(&proc, "NEBULA_PLUGIN_TOKEN").unwrap();
        assert!(!token.is_empty(), "{name}: an empty plugin token");
        // server.max_body_bytes (default 8 MiB) and plugins.call_timeout_sec (30 here).
        assert_eq!(
            proc_env_value(&proc, "NEBULA_PLUGIN_MAX_MESSAGE_BYTES").as_deref(),
            Some("8388608")
        );
        assert_eq!(
            proc_env_value(&proc, "NEBULA_PLUGIN_CALL_TIMEOUT_MS").as_deref(),
            Some("30000")
        );
    }
    assert!(
        python.cmdline().contains("plugin.py"),
        "{}",
        python.cmdline()
    );
    assert_eq!(
        proc_env_value(&python, "PYTHONPATH"),
        Some(python_with_grpc().1.display().to_string()),
        "runtime.env is passed"
    );

    // Stats: the live pid and its resident memory.
    for (name, proc) in [("sample_rust", rust), ("hello_py", python)] {
        let stats = setup.stats(name);
        let process = &stats["process"];
        assert_eq!(process["pid"], proc.pid, "{stats}");
        let rss = process["rss_bytes"].as_u64().unwrap_or(0);
        assert!(rss > 1024 * 1024, "{name}: rss_bytes {rss}: {stats}");
    }

    // A real sync through each writes users (the Rust one: sample_sync's shape).
    let rust_result = setup.sync(
        "sample_rust",
        json!([{"username": "rust_ann", "db_name": "acme", "role_tag": "Engineer",
                "email": "ann@example.com"}]),
    );
    assert_eq!(rust_result["status"], "ok", "{rust_result}");
    assert_eq!(rust_result["count"], 1, "{rust_result}");
    assert_eq!(rust_result["created"], 1, "{rust_result}");
    assert_eq!(
        rust_result["items"][0]["action"], "created",
        "{rust_result}"
    );

    let py_result = setup.sync(
        "hello_py",
        json!([
            {"username": "py_bob", "db_name": "acme", "role_tag": "Sales_Lead"},
            {"username": "py_cid", "db_name": "acme", "is_active": false},
            {"username": "rust_ann", "db_name": "acme", "role_tag": "engineer"},
        ]),
    );
    assert_eq!(py_result["status"], "ok", "{py_result}");
    assert_eq!(py_result["count"], 3, "{py_result}");
    assert_eq!(py_result["created"], 2, "{py_result}");
    assert_eq!(py_result["updated"], 1, "{py_result}");
    assert_eq!(py_result["failed"], 0, "{py_result}");
    let actions: Vec<&str> = py_result["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["created", "created", "updated"], "{py_result}");
    // A dry run previews and writes nothing.
    let preview = setup.server().post(
        "/system/plugins/hello_py/sync-users",
        &json!({"users": [{"username": "py_dry", "db_name": "acme"}]}),
    );
    assert_eq!(preview.status, 200, "{}", preview.body);
    assert_eq!(preview.body["result"]["status"], "dry_run");
    assert_eq!(preview.body["result"]["items"][0]["action"], "would_sync");

    assert_eq!(setup.acme_usernames(), ["py_bob", "py_cid", "rust_ann"]);
    let users = setup
        .server()
        .get("/system/directory/users?db_name=acme")
        .body;
    let bob = users["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "py_bob")
        .unwrap()
        .clone();
    assert_eq!(bob["role_tag"], "sales_lead", "{users}");

    // The Python plugin's stdout (at start, per sync) and its Log call are in its ring.
    let start_line = wait_for(
        "hello_py's start-up line in its logs",
        Duration::from_secs(10),
        || setup.log_line("hello_py", "hello_py serving on unix:"),
        || format!("{:?}", setup.log_lines("hello_py")),
    );
    assert_eq!(start_line["level"], "info", "{start_line}");
    let sync_line = wait_for(
        "hello_py's sync line in its logs",
        Duration::from_secs(10),
        || {
            setup.log_line(
                "hello_py",
                "hello_py: sync of 3 users: 2 created, 1 updated",
            )
        },
        || format!("{:?}", setup.log_lines("hello_py")),
    );
    assert_eq!(sync_line["level"], "info", "{sync_line}");
    assert!(
        setup
            .log_line("hello_py", "hello_py synced 3 of 3 users")
            .is_some(),
        "the host service Log line: {:?}",
        setup.log_lines("hello_py")
    );

    // Same processes all along.
    assert_eq!(setup.process("sample_rust"), Some(rust));
    assert_eq!(setup.process("hello_py"), Some(python));
}

fn proc_env_value(proc: &Proc, key: &str) -> Option<String> {
    proc.environ()
        .into_iter()
        .find_map(|e| e.strip_prefix(&format!("{key}=")).map(str::to_owned))
}

// ---------------------------------------------------------------------------------------------
// (b) Rescan: new, removed, changed, unchanged and broken directories.

#[test]
fn rescan_starts_new_stops_removed_restarts_changed_and_lists_broken_directories() {
    let setup = start(
        |plugins| {
            install_rust(plugins, "sample_rust");
            install_python(plugins, "hello_py", &[]);
        },
        "",
        "[plugins.process]\nshutdown_grace_sec = 3\n",
    );
    let rust = setup.healthy_process("sample_rust", LONG);
    let python = setup.healthy_process("hello_py", LONG);

    // A new directory: started and listed, nothing else restarted.
    install_python(&setup.plugins, "hello_two", &[]);
    let answer = setup.rescan();
    assert!(
        answer["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "hello_two" && p["source"] == "process"),
        "{answer}"
    );
    let two = setup.healthy_process("hello_two", LONG);
    assert_ne!(two.pid, python.pid);
    assert_eq!(
        setup.process("sample_rust"),
        Some(rust),
        "untouched by the rescan"
    );
    assert_eq!(
        setup.process("hello_py"),
        Some(python),
        "untouched by the rescan"
    );

    // An unchanged directory is left running by a rescan.
    setup.rescan();
    assert_eq!(setup.process("hello_two"), Some(two));
    assert_eq!(setup.process("hello_py"), Some(python));

    // A removed directory: its process stopped, the plugin unlisted.
    std::fs::remove_dir_all(setup.plugins.join("hello_two")).unwrap();
    let answer = setup.rescan();
    let removed_at = Instant::now();
    assert!(
        !answer["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "hello_two"),
        "{answer}"
    );
    wait_for(
        "the removed plugin's process gone",
        Duration::from_secs(15),
        || (!two.alive()).then_some(()),
        || format!("{two:?} {}", two.cmdline()),
    );
    eprintln!(
        "removed plugin's process gone {:?} after the rescan",
        removed_at.elapsed()
    );
    assert!(setup.record("hello_two").is_none());
    assert_eq!(setup.health_status("hello_two"), 404);
    assert!(python.alive() && rust.alive());

    // A changed manifest: that plugin restarted (a new pid), the other one not.
    write_manifest(
        &setup.plugins.join("sample_rust"),
        &rust_manifest("sample_rust", "sample_sync, described anew"),
    );
    setup.rescan();
    let rust2 = wait_for(
        "sample_rust restarted with a new pid",
        LONG,
        || setup.process("sample_rust").filter(|p| *p != rust),
        || setup.describe("sample_rust"),
    );
    let rust2 = {
        let healthy = setup.healthy_process("sample_rust", LONG);
        assert_eq!(healthy, rust2, "one restart");
        healthy
    };
    wait_for(
        "the old sample_rust process gone",
        Duration::from_secs(15),
        || (!rust.alive()).then_some(()),
        || format!("{rust:?} {}", rust.cmdline()),
    );
    assert_eq!(
        setup.listed("sample_rust")["description"],
        "sample_sync, described anew"
    );
    assert_eq!(
        setup.process("hello_py"),
        Some(python),
        "untouched by the rescan"
    );

    // A broken directory: listed with the reason, the others unaffected.
    let broken = setup.plugins.join("broken_one");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("plugin.json"), "{ not json").unwrap();
    let missing = setup.plugins.join("missing_exe");
    write_manifest(
        &missing,
        &json!({"name": "missing_exe", "version": "1", "description": "d",
                "api_version": "v1", "scopes": [],
                "runtime": {"command": ["./nowhere"]}}),
    );
    setup.rescan();
    let record = setup.listed("broken_one");
    assert_eq!(record["status"], "degraded", "{record}");
    assert_eq!(record["message"], "not loaded", "{record}");
    assert!(
        record["error"].as_str().unwrap().contains("plugin.json"),
        "{record}"
    );
    let record = setup.listed("missing_exe");
    assert_eq!(record["status"], "degraded", "{record}");
    assert!(
        record["error"].as_str().unwrap().contains("./nowhere"),
        "{record}"
    );
    assert_eq!(setup.process("hello_py"), Some(python));
    assert_eq!(setup.process("sample_rust"), Some(rust2));
    assert_eq!(setup.health_status("hello_py"), 200);
    assert_eq!(setup.health_status("sample_rust"), 200);

    // Fixed: the broken directory becomes a running plugin on the next rescan.
    std::fs::remove_dir_all(&broken).unwrap();
    install_python(&setup.plugins, "broken_one", &[]);
    setup.rescan();
    setup.healthy_process("broken_one", LONG);
    assert_eq!(setup.listed("broken_one")["status"], "healthy");
    assert_eq!(setup.process("hello_py"), Some(python));
}

// ---------------------------------------------------------------------------------------------
// (c) Supervision: a killed process restarted; one that always exits disabled by policy.

#[test]
fn a_killed_plugin_is_restarted_and_one_that_always_exits_is_disabled() {
    let setup = start(
        |plugins| {
            install_rust(plugins, "sample_rust");
            install_python(plugins, "hello_py", &[]);
            install_script(
                plugins,
                "fails_fast",
                "echo 'fails_fast: giving up' >&2\nexit 3",
            );
        },
        "max_restarts = 1",
        "",
    );
    let rust = setup.healthy_process("sample_rust", LONG);
    let python = setup.healthy_process("hello_py", LONG);
    assert!(
        python.cmdline().contains("plugin.py"),
        "{}",
        python.cmdline()
    );

    // kill -9 of the Python plugin: crashed (with the signal), then a new process.
    python.kill9();
    let killed_at = Instant::now();
    // The state history, not the live status: on a busy machine the restart may come before
    // a poll of the list would see `crashed`.
    let crashed = wait_for(
        "hello_py crashed",
        Duration::from_secs(10),
        || {
            let answer = setup
                .server()
                .get("/system/events?prefix=system.plugin.hello_py.crashed&limit=10");
            answer.body["events"]
                .as_array()
                .and_then(|events| events.last().cloned())
        },
        || setup.describe("hello_py"),
    );
    eprintln!(
        "crashed seen {:?} after the kill: {}",
        killed_at.elapsed(),
        crashed["payload"]
    );
    assert_eq!(crashed["payload"]["message"], "process exited", "{crashed}");
    let error = crashed["payload"]["error"].as_str().unwrap();
    assert!(
        error.contains("signal 9") && error.contains("SIGKILL"),
        "{crashed}"
    );
    // Meanwhile the Rust plugin answers.
    assert_eq!(setup.health_status("sample_rust"), 200);
    let python2 = wait_for(
        "hello_py restarted with a new pid",
        Duration::from_secs(20),
        || setup.process("hello_py").filter(|p| *p != python),
        || setup.describe("hello_py"),
    );
    eprintln!("new hello_py pid {:?} after the kill", killed_at.elapsed());
    assert!(!python.alive());
    let python2 = {
        let healthy = setup.healthy_process("hello_py", LONG);
        assert_eq!(healthy, python2, "one restart");
        healthy
    };
    eprintln!(
        "hello_py healthy again {:?} after the kill",
        killed_at.elapsed()
    );
    let record = setup.listed("hello_py");
    assert_eq!(record["status"], "healthy", "{record}");
    assert_eq!(record["auto_restarts"], 1, "{record}");
    assert_eq!(
        setup.process("sample_rust"),
        Some(rust),
        "the other one untouched"
    );
    let result = setup.sync(
        "hello_py",
        json!([{"username": "after_kill", "db_name": "acme"}]),
    );
    assert_eq!(result["created"], 1, "{result}");
    assert!(python2.alive());

    // A command that exits with code 3 at every start: disabled by policy, saying why.
    let disabled = wait_for(
        "fails_fast disabled",
        LONG,
        || {
            setup
                .record("fails_fast")
                .filter(|r| r["status"] == "disabled")
        },
        || setup.describe("fails_fast"),
    );
    let message = disabled["message"].as_str().unwrap();
    eprintln!("fails_fast: {}", text_of(&disabled));
    assert!(message.contains("disabled by policy"), "{disabled}");
    assert!(message.contains("code 3"), "{disabled}");
    assert_eq!(
        setup.stats("fails_fast")["process"]["pid"],
        Value::Null,
        "no process runs"
    );
    let line = setup
        .log_line("fails_fast", "fails_fast: giving up")
        .unwrap_or_else(|| {
            panic!(
                "stderr not in the ring: {:?}",
                setup.log_lines("fails_fast")
            )
        });
    assert_eq!(line["level"], "warn", "{line}");
    // It stays disabled: no more starts.
    std::thread::sleep(Duration::from_secs(3));
    let record = setup.listed("fails_fast");
    assert_eq!(record["status"], "disabled", "{record}");
    assert_eq!(setup.process("sample_rust"), Some(rust));
    assert_eq!(setup.process("hello_py"), Some(python2));
}

// ---------------------------------------------------------------------------------------------
// (d) Limits: resident memory (polled) and CPU time (RLIMIT_CPU).

#[test]
fn memory_and_cpu_limits_kill_the_plugin_and_say_so() {
    let setup = start(
        |plugins| {
            install_python(plugins, "mem_hog", &[("HELLO_PY_ALLOCATE_MB", "200")]);
            install_python(plugins, "cpu_hog", &[("HELLO_PY_SPIN", "1")]);
            install_python(plugins, "quiet_py", &[]);
        },
        "max_restarts = 1",
        // 3 s of CPU: far beyond what the quiet one's start-up and idle threads use, even on a
        // busy machine, well within what the spinning one reaches in a few seconds.
        "[plugins.process]\nmemory_limit_mb = 64\ncpu_time_limit_sec = 3\n",
    );
    // The quiet one lives within both limits.
    let quiet = setup.healthy_process("quiet_py", LONG);
    for (name, phrase) in [
        ("mem_hog", "memory limit 64 MiB exceeded"),
        ("cpu_hog", "CPU time limit 3 s exceeded"),
    ] {
        let seen = wait_for(
            &format!("{name} killed for its limit"),
            Duration::from_secs(90),
            || {
                // Recorded, so that a process left running is killed at the end.
                let _ = setup.process(name);
                setup.record(name).filter(|r| text_of(r).contains(phrase))
            },
            || setup.describe(name),
        );
        eprintln!("{name}: {} ({})", text_of(&seen), seen["status"]);
        // Within its restart budget and then disabled, with the limit as the last error.
        let disabled = wait_for(
            &format!("{name} disabled"),
            Duration::from_secs(90),
            || setup.record(name).filter(|r| r["status"] == "disabled"),
            || setup.describe(name),
        );
        let message = disabled["message"].as_str().unwrap();
        eprintln!("{name}: {}", text_of(&disabled));
        assert!(message.contains("disabled by policy"), "{disabled}");
        assert!(message.contains(phrase), "{disabled}");
        assert_eq!(
            setup.stats(name)["process"]["pid"],
            Value::Null,
            "{name}: no process"
        );
    }
    assert_eq!(
        setup.process("quiet_py"),
        Some(quiet),
        "the quiet one untouched"
    );
    assert_eq!(setup.health_status("quiet_py"), 200);
}

// ---------------------------------------------------------------------------------------------
// (e) No plugin process survives the core, even killed with SIGKILL.

#[test]
fn no_plugin_process_survives_the_core_killed_with_sigkill() {
    let mut setup = start(
        |plugins| {
            install_rust(plugins, "sample_rust");
            install_python(plugins, "hello_py", &[]);
            install_python(plugins, "hello_two", &[]);
        },
        "",
        "",
    );
    let procs: Vec<Proc> = ["sample_rust", "hello_py", "hello_two"]
        .iter()
        .map(|name| setup.healthy_process(name, LONG))
        .collect();
    let log = setup.server_log();
    setup.kill_core();
    let killed_at = Instant::now();
    wait_for(
        "every plugin process gone after the core's SIGKILL",
        Duration::from_secs(10),
        || (!procs.iter().any(Proc::alive)).then_some(()),
        || {
            format!(
                "still running: {:?} (server log before the kill: {} bytes)",
                procs
                    .iter()
                    .filter(|p| p.alive())
                    .map(|p| (p.pid, p.cmdline()))
                    .collect::<Vec<_>>(),
                log.len()
            )
        },
    );
    eprintln!(
        "all plugin processes gone {:?} after the core's SIGKILL",
        killed_at.elapsed()
    );
}

/// The author guide's example, `csv_import`, as a process plugin (`csv-import-process`, one
/// line of `main`): its settings come from the core's `[plugins.settings.<name>]` through the
/// host service, and it imports the file they name.
#[test]
fn the_guide_example_runs_as_a_process_plugin_with_its_settings() {
    let csv_dir = tempfile::tempdir().unwrap();
    let csv = csv_dir.path().join("people.csv");
    std::fs::write(
        &csv,
        "username,email,role_tag,is_active\nivy,ivy@example.com,Engineer,true\njon,,,false\n",
    )
    .unwrap();
    let setup = start(
        |plugins| {
            let text = std::fs::read_to_string(
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../csv-import/plugin.json"),
            )
            .unwrap();
            let mut manifest: Value = serde_json::from_str(&text).unwrap();
            manifest["name"] = json!("csv_proc");
            manifest["runtime"] = json!({"command": [env!("CARGO_BIN_EXE_csv-import-process")]});
            write_manifest(&plugins.join("csv_proc"), &manifest);
        },
        "",
        &format!(
            "[plugins.settings.csv_proc]\npath = \"{}\"\ndb_name = \"acme\"\n",
            csv.display()
        ),
    );
    let health = setup.server().get("/system/plugins/csv_proc/health");
    assert_eq!(health.status, 200, "{}", health.body);
    assert_eq!(health.body["health"]["configured"], true, "{}", health.body);
    // No `users`: the whole file.
    let answer = setup.server().post(
        "/system/plugins/csv_proc/sync-users",
        &json!({"dry_run": false}),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["result"]["created"], 2, "{}", answer.body);
    assert_eq!(setup.acme_usernames(), ["ivy", "jon"]);
}
