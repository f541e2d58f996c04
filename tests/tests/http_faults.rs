//! The HTTP layer over misbehaving plugins: the server's own app (routes, auth middleware,
//! error mapping) on a real loopback socket, in front of an engine whose plugins are scripted
//! to hang, panic, fail or report a problem. The status codes of SPEC §5, each shown once.
//! On SQLite: these are about the HTTP mapping of plugin faults, not storage (the storage and
//! engine suites run on both backends).

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nebula_core::accounts::AccountStore;
use nebula_core::auth::{Authenticator, RateLimits, Secret};
use nebula_core::NebulaCore;
use nebula_server::state::AppState;
use nebula_tests::faults::{descriptor, Counters, Fault};
use serde_json::{json, Value};

const TOKEN: &str = "a-test-installer-token-of-at-least-32-chars";

/// The engine on its own runtime, the app on an actix system in its own thread.
struct Harness {
    base: String,
    agent: ureq::Agent,
    server: actix_web::dev::ServerHandle,
    http_thread: Option<std::thread::JoinHandle<()>>,
    engine: Option<tokio::runtime::Runtime>,
    core: NebulaCore,
    /// Calls each plugin has seen, by name.
    counters: BTreeMap<String, Arc<Counters>>,
    _dir: tempfile::TempDir,
}

impl Harness {
    fn start(plugins: &[(&str, Fault)]) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let engine = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
            .unwrap();
        let mut builder = NebulaCore::builder()
            .config(common::config_in(dir.path()))
            .without_inventory()
            .without_health_monitor();
        let mut counters = BTreeMap::new();
        for (name, fault) in plugins {
            let (plugin, calls) = descriptor(name, *fault);
            builder = builder.plugin(plugin);
            counters.insert(name.to_string(), calls);
        }
        let core = engine.block_on(builder.build()).unwrap();
        let auth = Authenticator::new(
            Some(Secret::new(TOKEN)),
            Secret::new("a-session-signing-key-of-at-least-32-characters"),
            Duration::from_secs(3600),
            AccountStore::new(core.database().clone()),
            RateLimits::default(),
        )
        .unwrap();
        let state = AppState::new(core.clone(), auth, engine.handle().clone(), false);
        let (tx, rx) = std::sync::mpsc::channel();
        let http_thread = std::thread::spawn(move || {
            actix_rt::System::new().block_on(async move {
                let server = actix_web::HttpServer::new(move || {
                    nebula_server::app::app(state.clone(), 8 * 1024 * 1024)
                })
                .workers(2)
                .bind("127.0.0.1:0")
                .unwrap();
                let addr = server.addrs()[0];
                let server = server.run();
                tx.send((addr, server.handle())).unwrap();
                server.await.unwrap();
            });
        });
        let (addr, server) = rx.recv_timeout(Duration::from_secs(30)).unwrap();
        Harness {
            base: format!("http://{addr}"),
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(30))
                .build(),
            server,
            http_thread: Some(http_thread),
            engine: Some(engine),
            core,
            counters,
            _dir: dir,
        }
    }

    /// (status, JSON body) of a token-authenticated request.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let req = self
            .agent
            .request(method, &format!("{}{path}", self.base))
            .set("X-Nebula-Token", TOKEN);
        let result = match body {
            Some(body) => req.send_json(body),
            None => req.call(),
        };
        let response = match result {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method} {path}: {e}"),
        };
        let status = response.status();
        let text = response.into_string().unwrap();
        let json = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
        (status, json)
    }

    fn real_sync(&self, plugin: &str) -> (u16, Value) {
        self.call(
            "POST",
            &format!("/system/plugins/{plugin}/sync-users"),
            Some(json!({"dry_run": false, "users": [{"username": "ann", "db_name": "acme"}]})),
        )
    }

    fn detail(body: &Value) -> &str {
        body["detail"]
            .as_str()
            .unwrap_or_else(|| panic!("no detail: {body}"))
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(engine) = self.engine.take() {
            engine.block_on(self.server.stop(false));
            engine.block_on(self.core.shutdown());
            engine.shutdown_timeout(Duration::from_secs(2));
        }
        if let Some(thread) = self.http_thread.take() {
            let _ = thread.join();
        }
    }
}

#[test]
fn a_health_answer_other_than_ok_is_503_with_the_normal_body() {
    let h = Harness::start(&[("unhealthy", Fault::HealthNotOk), ("good", Fault::None)]);
    let (status, body) = h.call("GET", "/system/plugins/unhealthy/health", None);
    assert_eq!(status, 503, "{body}");
    // The same shape as a 200: the plugin's own answer, not an error detail.
    assert_eq!(
        body,
        json!({"plugin": "unhealthy", "health": {
            "status": "degraded", "message": "upstream directory is read-only"}})
    );
    let (status, body) = h.call("GET", "/system/plugins/good/health", None);
    assert_eq!(
        (status, body),
        (200, json!({"plugin": "good", "health": {"status": "ok"}}))
    );
}

#[test]
fn a_second_real_sync_through_http_is_409_while_the_first_runs() {
    let h = Harness::start(&[("hangs", Fault::HangInSync), ("good", Fault::None)]);
    std::thread::scope(|s| {
        let first = s.spawn(|| {
            let started = Instant::now();
            (h.real_sync("hangs"), started.elapsed())
        });
        // The second is sent once the first is inside the plugin.
        let syncs = &h.counters["hangs"].syncs;
        let deadline = Instant::now() + Duration::from_secs(10);
        while syncs.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(
            syncs.load(Ordering::SeqCst),
            1,
            "the first sync never started"
        );
        let second = h.real_sync("hangs");
        assert_eq!(second.0, 409, "{}", second.1);
        assert_eq!(Harness::detail(&second.1), "sync already in progress");
        // Dry runs are not serialised, and other plugins are not held up.
        let (status, _) = h.call(
            "POST",
            "/system/plugins/hangs/sync-users",
            Some(json!({"dry_run": true})),
        );
        assert_eq!(
            status, 504,
            "a dry run of a hanging plugin times out on its own"
        );
        assert_eq!(h.real_sync("good").0, 200);
        let ((status, body), took) = first.join().unwrap();
        assert_eq!(status, 504, "{body}");
        assert!(
            Harness::detail(&body).contains("timed out after 1.000s"),
            "{body}"
        );
        assert!(took >= Duration::from_secs(1), "{took:?}");
    });
    // Once the first has ended, the gate is free again (and the call times out again).
    assert_eq!(h.real_sync("hangs").0, 504);
}

#[test]
fn a_panicking_or_failing_plugin_is_500_and_the_server_lives_on() {
    let h = Harness::start(&[
        ("panics", Fault::PanicOnSyncCall(1)),
        ("fails", Fault::AlwaysFail),
        ("good", Fault::None),
    ]);
    let (status, body) = h.real_sync("panics");
    assert_eq!(status, 500, "{body}");
    let detail = Harness::detail(&body);
    assert!(detail.contains("panicked in sync_users"), "{detail}");
    assert!(detail.contains("scripted panic on sync call 1"), "{detail}");

    let (status, body) = h.real_sync("fails");
    assert_eq!(status, 500, "{body}");
    let detail = Harness::detail(&body);
    assert!(detail.contains("sync_users failed"), "{detail}");
    assert!(detail.contains("scripted sync failure"), "{detail}");

    // The process, the list and the other plugins are unaffected.
    let (status, body) = h.call("GET", "/system/plugins", None);
    assert_eq!(status, 200);
    let states: Vec<(&str, &str)> = body["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        states,
        [
            ("fails", "degraded"),
            ("good", "initialized"),
            ("panics", "crashed")
        ]
    );
    assert_eq!(h.real_sync("good").0, 200);
    // The panic was on the first call only: the same instance answers the next one.
    assert_eq!(h.real_sync("panics").0, 200);
}

#[test]
fn a_disabled_plugin_is_409() {
    let h = Harness::start(&[("good", Fault::None)]);
    let (status, _) = h.call(
        "POST",
        "/system/plugins/good/action",
        Some(json!({"action": "stop"})),
    );
    assert_eq!(status, 200);
    let (status, body) = h.real_sync("good");
    assert_eq!(status, 409, "{body}");
    assert_eq!(Harness::detail(&body), "plugin 'good' is disabled");
}
