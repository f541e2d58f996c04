//! Two servers on one database behave as one service (SPEC §4): a real sync of a plugin runs
//! through one of them at a time (the other answers 409), concurrent syncs of the same users
//! end with one row each, and a stop or start through one is followed by the other within
//! `plugins.state_poll_sec`. On each backend (`each_backend!`): one SQLite file (WAL lets two
//! processes share it) or one PostgreSQL database. Each server has its own runtime directory
//! (`server.runtime_dir`) for its host socket and process plugins; both share the secrets,
//! the database and the configuration: an external plugin whose sync hangs (`py_slow`, which
//! holds the sync lease as long as the test needs), `sample_sync` linked, and its twin
//! `sample_twin` as a process plugin (the same code out of process), so that two real syncs
//! of the same users can run at once through the two servers.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{command, Answer, Peer, Server};

const TOKEN: &str = "two-instances-installer-token-0123456789";
const SECRET: &str = "two-instances-session-secret-0123456789ab";

const TWIN_BIN: &str = env!("CARGO_BIN_EXE_sample-sync-process");

fn start(work: &Path, shared: &Path, url: &str) -> Server {
    Server::spawn(
        command(work)
            .arg("--config")
            .arg(shared.join("nebula.toml"))
            .env("NEBULA__SERVER__BIND", "127.0.0.1:0")
            .env("NEBULA__DATABASE__URL", url)
            .env(
                "NEBULA__SERVER__RUNTIME_DIR",
                work.join("runtime").display().to_string(),
            )
            .env("NEBULA_INSTALLER_TOKEN", TOKEN)
            .env("NEBULA_SESSION_SECRET", SECRET),
        work,
    )
}

fn get(server: &Server, path: &str) -> Answer {
    server.request("GET", path, &[("X-Nebula-Token", TOKEN)], None)
}

fn post(server: &Server, path: &str, body: &Value) -> Answer {
    let bytes = serde_json::to_vec(body).unwrap();
    server.request("POST", path, &[("X-Nebula-Token", TOKEN)], Some(&bytes))
}

fn users(count: usize, db: &str) -> Value {
    let users: Vec<Value> = (0..count)
        .map(|i| json!({"username": format!("user{i:05}"), "db_name": db, "role_tag": "staff"}))
        .collect();
    json!({"dry_run": false, "users": users})
}

fn status_of(server: &Server, name: &str) -> String {
    let list = get(server, "/system/plugins").body;
    list["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .map(|p| p["status"].as_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// `sample_sync` as a process plugin named `sample_twin`, in `plugins`.
fn install_twin(plugins: &Path) {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../sample-sync/plugin.json"),
    )
    .unwrap();
    let mut manifest: Value = serde_json::from_str(&text).unwrap();
    manifest["name"] = json!("sample_twin");
    manifest["runtime"] = json!({"command": [TWIN_BIN]});
    let dir = plugins.join("sample_twin");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("plugin.json"), manifest.to_string()).unwrap();
}

fn sync_through(base: &str, plugin: &str, body: Value) -> std::thread::JoinHandle<(u16, Value)> {
    let url = format!("{base}/system/plugins/{plugin}/sync-users");
    std::thread::spawn(move || {
        match ureq::post(&url)
            .set("X-Nebula-Token", TOKEN)
            .send_json(body)
        {
            Ok(r) => (r.status(), r.into_json().unwrap_or(Value::Null)),
            Err(ureq::Error::Status(code, r)) => (code, r.into_json().unwrap_or(Value::Null)),
            Err(other) => panic!("{other}"),
        }
    })
}

nebula_core::each_backend! {
#[test]
fn one_real_sync_at_a_time_and_stops_and_starts_shared_across_two_servers(db) {
    let root = db.dir();
    let shared = root.join("shared");
    let (work_a, work_b) = (root.join("a"), root.join("b"));
    std::fs::create_dir_all(&work_a).unwrap();
    std::fs::create_dir_all(&work_b).unwrap();
    // py_slow's SyncUsers sleeps 30 s; the call timeout (5 s) ends it.
    let slow = Peer::python("slow", 0);
    install_twin(&shared.join("plugins"));
    std::fs::write(
        shared.join("nebula.toml"),
        format!(
            "[plugins]\nstate_poll_sec = 0.5\ncall_timeout_sec = 5\nhealth_interval_sec = 3600\n\
             dir = \"{}\"\n\
             [[plugins.external]]\nname = \"py_slow\"\nendpoint = \"{}\"\n",
            shared.join("plugins").display(),
            slow.endpoint
        ),
    )
    .unwrap();
    let a = start(&work_a, &shared, db.url());
    let b = start(&work_b, &shared, db.url());
    assert!(work_a.join("runtime/host.sock").exists());
    assert!(work_b.join("runtime/host.sock").exists());

    // Real syncs through both at once: whichever takes the plugin's lease first runs (until
    // its 5 s call timeout: 504), the other is refused at once (409). A dry run meanwhile is
    // never refused.
    let real_sync = |base: String| {
        std::thread::spawn(move || {
            let started = Instant::now();
            let answer = ureq::post(&format!("{base}/system/plugins/py_slow/sync-users"))
                .set("X-Nebula-Token", TOKEN)
                .send_json(json!({"dry_run": false, "users": []}));
            let code = match answer {
                Ok(r) => r.status(),
                Err(ureq::Error::Status(code, r)) => {
                    let detail = r.into_string().unwrap_or_default();
                    assert!(code != 409 || detail.contains("in progress"), "{detail}");
                    code
                }
                Err(other) => panic!("{other}"),
            };
            (code, started.elapsed())
        })
    };
    let (through_a, through_b) = (real_sync(a.base.clone()), real_sync(b.base.clone()));
    std::thread::sleep(Duration::from_millis(500));
    let dry = post(
        &b,
        "/system/plugins/py_slow/sync-users",
        &json!({"dry_run": true}),
    );
    assert_ne!(dry.status, 409, "{}", dry.body);
    let mut outcomes = [through_a.join().unwrap(), through_b.join().unwrap()];
    outcomes.sort();
    let [(refused, refused_after), (ran, _)] = outcomes;
    assert_eq!((refused, ran), (409, 504), "{outcomes:?}");
    assert!(
        refused_after < Duration::from_secs(4),
        "refused at once, not after the other's sync: {refused_after:?}"
    );
    // Released with it: B's real sync is not refused now (it times out in turn).
    let after = post(
        &b,
        "/system/plugins/py_slow/sync-users",
        &json!({"dry_run": false}),
    );
    assert_eq!(after.status, 504, "{}", after.body);

    // The same 1,000 users synced through both servers at once, by two plugins (one linked
    // in A, one out of process in B, so neither waits for the other's lease): both succeed,
    // and there is one row and one tag per user, whichever wrote last.
    let (through_a, through_b) = (
        sync_through(&a.base, "sample_sync", users(1_000, "both")),
        sync_through(&b.base, "sample_twin", users(1_000, "both")),
    );
    for (name, (code, answer)) in [("A", through_a.join().unwrap()), ("B", through_b.join().unwrap())] {
        let result = &answer["result"];
        let counts = (&result["created"], &result["updated"], &result["failed"]);
        assert_eq!(code, 200, "{name}: {}", answer["detail"]);
        assert_eq!(result["count"], 1000, "{name}: {counts:?}");
        assert_eq!(result["failed"], 0, "{name}: {counts:?}");
    }
    let first = get(&a, "/system/directory/users?db_name=both&limit=2000").body;
    assert_eq!(first["count"], 1000, "every user once");
    let past = get(&b, "/system/directory/users?db_name=both&offset=1000").body;
    assert_eq!(past["count"], 0, "no duplicates: {past}");
    assert!(first["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|u| u["role_tag"] == "staff"));

    // A stop through A is followed by B within state_poll_sec (0.5 s here).
    let stopped = post(
        &a,
        "/system/plugins/sample_sync/action",
        &json!({"action": "stop"}),
    );
    assert_eq!(stopped.status, 200, "{}", stopped.body);
    let started = Instant::now();
    while status_of(&b, "sample_sync") != "disabled" {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "B never followed the stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("B followed the stop after {:?}", started.elapsed());
    let refused = post(
        &b,
        "/system/plugins/sample_sync/sync-users",
        &users(1, "small"),
    );
    assert_eq!(refused.status, 409, "{}", refused.body);

    // And a start through B is followed by A.
    let restarted = post(
        &b,
        "/system/plugins/sample_sync/action",
        &json!({"action": "start"}),
    );
    assert_eq!(restarted.status, 200, "{}", restarted.body);
    let started = Instant::now();
    while status_of(&a, "sample_sync") == "disabled" {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "A never followed the start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let health = get(&a, "/system/plugins/sample_sync/health");
    assert_eq!(health.status, 200, "{}", health.body);
}
}
