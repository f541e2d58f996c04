//! Test fixture of `nebula-process`, not a product binary: a real process plugin, served by
//! `nebula_grpc::run_process_plugin`, whose behaviour `NEBULA_FIXTURE_MODE` chooses. The
//! integration tests in `nebula-process/tests/` start it through the runtime.
//!
//! Modes:
//! - `ok`: prints a line on stdout, one on stderr and a 10,000-byte line, then serves;
//!   `Health` answers `{"status": "ok", "pid", "cwd", "env": [names], "echo", "host_endpoint",
//!   "nofile", "fds": [targets]}`,
//!   `SyncUsers` `{"status": "ok", "count", "dry_run"}`.
//! - `exit3`: prints `fixture: bad configuration` on stderr and exits with code 3.
//! - `hang`: never serves; sleeps (at most 5 minutes).
//! - `memory`: serves like `ok`; after the first `Health`, allocates 16 MiB every 50 ms (up
//!   to 512 MiB, so a broken limit cannot take the machine).
//! - `cpu`: serves like `ok`; after the first `Health`, spins a thread.
//! - `stubborn`: serves like `ok`; first starts a grandchild `sleep 300` in its process group
//!   that ignores SIGTERM, and its own `shutdown` never ends (so SIGTERM does not stop it).
//! - `parent`: not a plugin: starts a `ProcessPlugin` of this binary (mode
//!   `NEBULA_FIXTURE_CHILD_MODE`, plugin directory `NEBULA_FIXTURE_PLUGIN_DIR`, run directory
//!   `NEBULA_FIXTURE_RUN_DIR`), prints `child <pid>` and waits to be killed.
//!
//! With `NEBULA_FIXTURE_REPORT=<file>`, it appends `pid <pid>` (and `grandchild <pid>`) to
//! that file as soon as it starts.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nebula_plugin_api::serde_json::json;
use nebula_plugin_api::{
    async_trait, ContextCell, JsonObject, LogLevel, Plugin, PluginContext, PluginError, ScopeSet,
    SyncRequest,
};
use nebula_process::{ProcessHooks, ProcessLimits, ProcessPlugin, ProcessSpec};

const MIB: usize = 1024 * 1024;

fn main() -> ExitCode {
    let mode = std::env::var("NEBULA_FIXTURE_MODE").unwrap_or_default();
    report(&format!("pid {}", std::process::id()));
    match mode.as_str() {
        "exit3" => {
            eprintln!("fixture: bad configuration");
            return ExitCode::from(3);
        }
        "hang" => {
            println!("hang {}", std::process::id());
            std::thread::sleep(Duration::from_secs(300));
            return ExitCode::SUCCESS;
        }
        "parent" => return parent(),
        "ok" | "memory" | "cpu" | "stubborn" => {}
        other => {
            eprintln!("fixture: unknown NEBULA_FIXTURE_MODE {other:?}");
            return ExitCode::from(2);
        }
    }
    println!("fixture stdout hello");
    eprintln!("fixture stderr hello");
    println!("{}", "y".repeat(10_000));
    if mode == "stubborn" {
        match stubborn_grandchild() {
            Ok(pid) => report(&format!("grandchild {pid}")),
            Err(e) => {
                eprintln!("fixture: cannot start the grandchild: {e}");
                return ExitCode::from(4);
            }
        }
    }
    nebula_grpc::run_process_plugin(Box::new(Fixture {
        mode,
        ctx: ContextCell::new(),
        started: AtomicBool::new(false),
    }))
}

/// Appends `line` to `$NEBULA_FIXTURE_REPORT`, if set.
fn report(line: &str) {
    if let Ok(path) = std::env::var("NEBULA_FIXTURE_REPORT") {
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(file, "{line}");
        }
    }
}

/// `sleep 300` in this process group, ignoring SIGTERM (an ignored signal stays ignored
/// across exec).
fn stubborn_grandchild() -> std::io::Result<u32> {
    use std::os::unix::process::CommandExt;
    let mut command = std::process::Command::new("sleep");
    command
        .arg("300")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: signal() is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            libc::signal(libc::SIGTERM, libc::SIG_IGN);
            Ok(())
        });
    }
    // Not waited for: when this process dies, the grandchild is reparented.
    Ok(command.spawn()?.id())
}

struct Fixture {
    mode: String,
    ctx: ContextCell,
    started: AtomicBool,
}

#[async_trait]
impl Plugin for Fixture {
    async fn initialize(&self, ctx: PluginContext) -> Result<(), PluginError> {
        ctx.log(
            LogLevel::Info,
            format!("fixture initialised ({})", self.mode),
        );
        self.ctx.set(ctx)
    }

    async fn health(&self) -> Result<JsonObject, PluginError> {
        if !self.started.swap(true, Ordering::SeqCst) {
            match self.mode.as_str() {
                "memory" => {
                    std::thread::spawn(hog_memory);
                }
                "cpu" => {
                    std::thread::spawn(spin);
                }
                _ => {}
            }
        }
        let mut env: Vec<String> = std::env::vars_os()
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .collect();
        env.sort();
        let mut nofile = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `nofile` is valid for writes.
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut nofile) };
        // Where each open descriptor points (to show nothing of the core's leaked in).
        let fds: Vec<String> = std::fs::read_dir("/proc/self/fd")
            .map(|entries| {
                entries
                    .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                    .map(|target| target.display().to_string())
                    .collect()
            })
            .unwrap_or_default();
        let answer = json!({
            "status": "ok",
            "pid": std::process::id(),
            "cwd": std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default(),
            "env": env,
            "echo": std::env::var("FIXTURE_ECHO").ok(),
            "host_endpoint": std::env::var("NEBULA_HOST_ENDPOINT").ok(),
            "nofile": nofile.rlim_cur,
            "fds": fds,
        });
        match answer {
            nebula_plugin_api::serde_json::Value::Object(map) => Ok(map),
            _ => Err(PluginError::internal("not an object")),
        }
    }

    async fn sync_users(&self, request: SyncRequest) -> Result<JsonObject, PluginError> {
        let ctx = self.ctx.get()?;
        ctx.log(LogLevel::Info, "fixture sync");
        let mut answer = JsonObject::new();
        answer.insert("status".into(), json!("ok"));
        answer.insert("count".into(), json!(request.limited_users().len()));
        answer.insert("dry_run".into(), json!(request.dry_run));
        Ok(answer)
    }

    async fn shutdown(&self) -> Result<(), PluginError> {
        if self.mode == "stubborn" {
            // Never ends: SIGTERM does not stop this process, only SIGKILL does.
            std::future::pending::<()>().await;
        }
        Ok(())
    }
}

/// Allocates and touches 16 MiB every 50 ms, up to 512 MiB, then holds it.
fn hog_memory() {
    let mut held: Vec<Vec<u8>> = Vec::new();
    while held.len() * 16 < 512 {
        held.push(vec![1u8; 16 * MIB]);
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(300));
    drop(held);
}

/// Burns CPU until a signal ends the process.
fn spin() {
    let mut x: u64 = 1;
    loop {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
}

/// Mode `parent`: a small "core" that starts one process plugin and waits to be killed.
fn parent() -> ExitCode {
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("fixture parent: {e}");
            return ExitCode::FAILURE;
        }
    };
    let Ok(exe) = std::env::current_exe() else {
        return ExitCode::FAILURE;
    };
    let mut env = BTreeMap::new();
    env.insert(
        "NEBULA_FIXTURE_MODE".to_owned(),
        var("NEBULA_FIXTURE_CHILD_MODE"),
    );
    if let Ok(report) = std::env::var("NEBULA_FIXTURE_REPORT") {
        env.insert("NEBULA_FIXTURE_REPORT".to_owned(), report);
    }
    let spec = ProcessSpec {
        name: "child".into(),
        dir: var("NEBULA_FIXTURE_PLUGIN_DIR").into(),
        command: vec![exe.display().to_string()],
        env,
        run_dir: var("NEBULA_FIXTURE_RUN_DIR").into(),
        limits: ProcessLimits::default(),
        shutdown_grace: Duration::from_secs(1),
        call_timeout: Duration::from_secs(20),
        max_message_bytes: 8 * MIB,
    };
    runtime.block_on(async move {
        let plugin = Arc::new(ProcessPlugin::new(spec, ProcessHooks::none()));
        let host = Arc::new(nebula_grpc::DetachedHost);
        let ctx = PluginContext::new("child", ScopeSet::all(), host);
        if let Err(e) = plugin.initialize(ctx).await {
            eprintln!("fixture parent: {e}");
            return ExitCode::FAILURE;
        }
        println!("child {}", plugin.pid().unwrap_or(0));
        let _ = std::io::stdout().flush();
        tokio::time::sleep(Duration::from_secs(300)).await;
        ExitCode::SUCCESS
    })
}
