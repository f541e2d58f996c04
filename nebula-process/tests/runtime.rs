//! The process runtime end to end, with real processes: the fixture binary of this crate
//! (`src/bin/fixture.rs`, a process plugin served by `nebula_grpc::run_process_plugin`) started
//! through `ProcessPlugin`, called over its unix socket, killed in every way the runtime must
//! survive. Every test checks that each process it caused to exist is gone at its end.
//!
//! The test process makes itself a child subreaper, so the grandchildren a test creates are
//! adopted by it (not by PID 1, which may never reap them) and reaped here by pid. Processes
//! the runtime started are reaped by the runtime, never here.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nebula_grpc::{GrpcPlugin, HostServiceOptions, HostTokens, RemotePluginSpec};
use nebula_plugin_api::testing::RecordingHost;
use nebula_plugin_api::{
    ErrorKind, JsonObject, LogLevel, Plugin, PluginContext, ScopeSet, SyncRequest, SyncUser,
};
use nebula_process::{reap_leftovers, ProcessHooks, ProcessLimits, ProcessPlugin, ProcessSpec};

const FIXTURE: &str = env!("CARGO_BIN_EXE_nebula-process-fixture");
/// Bound on anything a test waits for: generous, for a busy two-core machine.
const WAIT: Duration = Duration::from_secs(30);

/// What the hooks were told.
#[derive(Default)]
struct Events {
    pids: Mutex<Vec<Option<u32>>>,
    exits: Mutex<Vec<String>>,
}

impl Events {
    fn pids(&self) -> Vec<Option<u32>> {
        self.pids.lock().unwrap().clone()
    }
    fn exits(&self) -> Vec<String> {
        self.exits.lock().unwrap().clone()
    }
    fn spawned(&self) -> u32 {
        self.pids()
            .first()
            .copied()
            .flatten()
            .expect("on_pid(Some) first")
    }
    /// on_pid(Some(pid)) then on_pid(None), nothing else.
    fn reaped(&self) -> bool {
        matches!(self.pids().as_slice(), [Some(_), None])
    }
}

fn hooks(events: &Arc<Events>) -> ProcessHooks {
    let (exits, pids) = (events.clone(), events.clone());
    ProcessHooks {
        host: None,
        on_exit: Arc::new(move |reason| exits.exits.lock().unwrap().push(reason)),
        on_pid: Arc::new(move |pid| pids.pids.lock().unwrap().push(pid)),
    }
}

/// A temporary plugin directory, run directory and a third, unrelated directory.
struct Dirs {
    _tmp: tempfile::TempDir,
    plugin: PathBuf,
    run: PathBuf,
    other: PathBuf,
}

fn dirs() -> Dirs {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let (plugin, run, other) = (root.join("fx"), root.join("run"), root.join("other"));
    for dir in [&plugin, &run, &other] {
        std::fs::create_dir(dir).unwrap();
    }
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o700)).unwrap();
    Dirs {
        _tmp: tmp,
        plugin,
        run,
        other,
    }
}

fn spec(dirs: &Dirs, mode: &str) -> ProcessSpec {
    let mut env = BTreeMap::new();
    env.insert("NEBULA_FIXTURE_MODE".to_owned(), mode.to_owned());
    env.insert("FIXTURE_ECHO".to_owned(), "from the manifest".to_owned());
    ProcessSpec {
        name: "fx".into(),
        dir: dirs.plugin.clone(),
        command: vec![FIXTURE.into()],
        env,
        run_dir: dirs.run.clone(),
        limits: ProcessLimits::default(),
        shutdown_grace: Duration::from_secs(5),
        call_timeout: Duration::from_secs(20),
        max_message_bytes: 8 * 1024 * 1024,
    }
}

fn context(host: &Arc<RecordingHost>) -> PluginContext {
    host.context("fx", ScopeSet::all())
}

/// Polls `check` every 20 ms until it holds; fails the test after [`WAIT`].
async fn eventually(what: &str, check: impl Fn() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < WAIT, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .next()?
        .chars()
        .next()
}

/// Alive: present and not a zombie.
fn alive(pid: u32) -> bool {
    proc_state(pid).is_some_and(|s| s != 'Z')
}

/// Waits until `pid` no longer exists at all (reaped by whoever is its parent).
async fn assert_gone(pid: u32) {
    eventually(&format!("process {pid} is gone"), || {
        proc_state(pid).is_none()
    })
    .await;
}

/// Waits until `pid`, a process this test process adopted or started itself (never one the
/// runtime started), is dead, and reaps it.
async fn reap_adopted(pid: u32) {
    let start = Instant::now();
    loop {
        let mut status = 0;
        // SAFETY: waitpid on a specific pid; `status` is valid for writes.
        unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) };
        if proc_state(pid).is_none() {
            return;
        }
        if start.elapsed() > WAIT {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            panic!(
                "process {pid} is not gone (this test process is {}): {stat}",
                std::process::id()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn adopt_orphans() {
    // SAFETY: prctl with plain integer arguments.
    let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(r, 0, "PR_SET_CHILD_SUBREAPER");
}

fn kill(pid: u32, signal: i32) {
    // SAFETY: kill with plain integer arguments, on a pid this test started.
    unsafe { libc::kill(pid as libc::pid_t, signal) };
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn str_list(answer: &JsonObject, key: &str) -> Vec<String> {
    answer[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

/// The lines of a report file, once it has `lines` of them.
async fn report_lines(path: &Path, lines: usize) -> Vec<String> {
    eventually("the fixture reported", || {
        std::fs::read_to_string(path).is_ok_and(|t| t.lines().count() >= lines)
    })
    .await;
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn reported_pid(lines: &[String], key: &str) -> u32 {
    lines
        .iter()
        .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no '{key}' in {lines:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_serves_health_and_sync_over_its_socket_with_its_token() {
    let dirs = dirs();
    let events = Arc::new(Events::default());
    let host = RecordingHost::new();
    let mut spec = spec(&dirs, "ok");
    spec.limits.max_open_files = Some(64);
    // A descriptor of "the core" without FD_CLOEXEC, as C code may open one.
    let marker = dirs.other.join("core-secret");
    std::fs::write(&marker, "secret").unwrap();
    let marker_c = std::ffi::CString::new(marker.to_str().unwrap()).unwrap();
    // SAFETY: a valid path; the descriptor is closed below.
    let leaky = unsafe { libc::open(marker_c.as_ptr(), libc::O_RDONLY) };
    assert!(leaky >= 0);
    let plugin = ProcessPlugin::new(spec, hooks(&events));
    let initialized = plugin.initialize(context(&host)).await;
    // SAFETY: closes the descriptor opened above.
    unsafe { libc::close(leaky) };
    initialized.unwrap();
    let pid = events.spawned();
    assert_eq!(plugin.pid(), Some(pid));
    assert!(alive(pid));

    // Health, through the socket, answered by the child.
    let health = plugin.health().await.unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["pid"], pid);
    assert_eq!(
        health["cwd"],
        dirs.plugin.display().to_string(),
        "working dir = plugin dir"
    );
    assert_eq!(health["echo"], "from the manifest");
    assert_eq!(health["nofile"], 64, "RLIMIT_NOFILE applied");
    let fds = str_list(&health, "fds");
    assert!(
        !fds.contains(&marker.display().to_string()),
        "the core's descriptor leaked: {fds:?}"
    );
    assert!(
        fds.contains(&"/dev/null".to_owned()),
        "stdin is /dev/null: {fds:?}"
    );
    // A clean environment: PATH, the manifest's env, the runtime's variables; nothing else.
    assert_eq!(
        str_list(&health, "env"),
        [
            "FIXTURE_ECHO",
            "NEBULA_FIXTURE_MODE",
            "NEBULA_PLUGIN_CALL_TIMEOUT_MS",
            "NEBULA_PLUGIN_MAX_MESSAGE_BYTES",
            "NEBULA_PLUGIN_NAME",
            "NEBULA_PLUGIN_SOCKET",
            "NEBULA_PLUGIN_TOKEN",
            "PATH",
        ]
    );
    let request = SyncRequest {
        dry_run: true,
        users: Some(vec![SyncUser::new("ann"), SyncUser::new("bob")]),
        ..SyncRequest::default()
    };
    let sync = plugin.sync_users(request).await.unwrap();
    assert_eq!(sync["count"], 2);
    assert_eq!(sync["dry_run"], true);

    // The socket and pid file are in the run directory; the socket is private.
    let socket = plugin.socket_path().unwrap();
    assert_eq!(socket.parent(), Some(dirs.run.as_path()));
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let pid_files: Vec<String> = files_in(&dirs.run)
        .into_iter()
        .filter(|n| n.ends_with(".pid"))
        .collect();
    assert_eq!(pid_files.len(), 1, "{pid_files:?}");
    let recorded = std::fs::read_to_string(dirs.run.join(&pid_files[0])).unwrap();
    assert_eq!(
        recorded,
        format!("{pid}\n{}\n{}\n", dirs.plugin.display(), socket.display())
    );

    // A call without the token, or with another one, is refused by the child.
    for token in [None, Some("not-the-token".to_owned())] {
        let intruder = GrpcPlugin::new(RemotePluginSpec {
            name: "intruder".into(),
            endpoint: format!("unix://{}", socket.display()),
            token,
            call_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(2),
            allow_remote: false,
            max_message_bytes: 1024 * 1024,
        });
        intruder.initialize(context(&host)).await.unwrap();
        let refused = intruder.health().await.unwrap_err();
        assert!(refused.to_string().contains("Unauthenticated"), "{refused}");
    }

    // stdout lines at info, stderr lines at warn, a long line cut at 4 KiB.
    eventually("the child's output reached the log", || {
        host.logs().len() >= 3
    })
    .await;
    let logs = host.logs();
    assert!(
        logs.contains(&(LogLevel::Info, "fixture stdout hello".into())),
        "{logs:?}"
    );
    assert!(
        logs.contains(&(LogLevel::Warn, "fixture stderr hello".into())),
        "{logs:?}"
    );
    let long = logs
        .iter()
        .find(|(_, l)| l.starts_with("yyyy"))
        .expect("the long line");
    assert_eq!(long.0, LogLevel::Info);
    assert_eq!(
        long.1,
        format!(
            "{}…[line cut: {} more bytes]",
            "y".repeat(4096),
            10_000 - 4096
        )
    );

    // Shutdown: SIGTERM, a clean exit, files removed; not reported as an exit.
    let start = Instant::now();
    plugin.shutdown().await.unwrap();
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(4),
        "a clean stop needs no SIGKILL: {took:?}"
    );
    assert_gone(pid).await;
    assert!(events.reaped(), "{:?}", events.pids());
    assert!(events.exits().is_empty(), "{:?}", events.exits());
    assert!(files_in(&dirs.run).is_empty(), "{:?}", files_in(&dirs.run));
    let after = plugin.health().await.unwrap_err();
    assert_eq!(after.kind(), ErrorKind::Unavailable);
    assert!(after.to_string().contains("shut down"), "{after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_child_is_reported_with_its_signal() {
    let dirs = dirs();
    let events = Arc::new(Events::default());
    let host = RecordingHost::new();
    let plugin = ProcessPlugin::new(spec(&dirs, "ok"), hooks(&events));
    plugin.initialize(context(&host)).await.unwrap();
    let pid = events.spawned();

    kill(pid, libc::SIGKILL);
    eventually("on_exit was called", || !events.exits().is_empty()).await;
    assert_eq!(events.exits(), ["killed by signal 9 (SIGKILL)"]);
    assert!(events.reaped(), "{:?}", events.pids());
    assert_gone(pid).await;
    assert_eq!(plugin.pid(), None);
    assert!(files_in(&dirs.run).is_empty(), "{:?}", files_in(&dirs.run));

    // Calls answer at once, with the reason.
    let start = Instant::now();
    let error = plugin.health().await.unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(1));
    assert_eq!(
        error,
        nebula_plugin_api::PluginError::Unavailable("process killed by signal 9 (SIGKILL)".into())
    );
    plugin.shutdown().await.unwrap();
    assert_eq!(events.exits().len(), 1, "reported once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_that_exits_at_start_fails_initialize_with_its_code() {
    let dirs = dirs();
    let events = Arc::new(Events::default());
    let host = RecordingHost::new();
    let plugin = ProcessPlugin::new(spec(&dirs, "exit3"), hooks(&events));
    let error = plugin.initialize(context(&host)).await.unwrap_err();
    assert_eq!(
        error,
        nebula_plugin_api::PluginError::Unavailable(
            "process exited with code 3 before it was ready: fixture: bad configuration".into()
        )
    );
    let pid = events.spawned();
    assert_gone(pid).await;
    eventually("on_pid(None)", || events.reaped()).await;
    assert!(
        events.exits().is_empty(),
        "initialize reports it, not on_exit"
    );
    assert!(files_in(&dirs.run).is_empty(), "{:?}", files_in(&dirs.run));
    assert_eq!(
        plugin.health().await.unwrap_err().kind(),
        ErrorKind::Unavailable
    );
    // A missing program fails before anything runs.
    let mut missing = spec(&dirs, "ok");
    missing.command = vec!["./no-such-plugin".into()];
    let error = ProcessPlugin::new(missing, hooks(&events))
        .initialize(context(&host))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidInput);
    assert!(error.to_string().contains("not found"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_limit_kills_the_child_with_its_reason() {
    let dirs = dirs();
    let events = Arc::new(Events::default());
    let host = RecordingHost::new();
    let mut spec = spec(&dirs, "memory");
    spec.limits.memory_limit_mb = Some(64);
    let plugin = ProcessPlugin::new(spec, hooks(&events));
    // The fixture starts allocating after its first Health (the readiness check).
    plugin.initialize(context(&host)).await.unwrap();
    let pid = events.spawned();
    eventually("on_exit was called", || !events.exits().is_empty()).await;
    let reason = &events.exits()[0];
    assert!(
        reason.starts_with("memory limit 64 MiB exceeded (RSS ") && reason.ends_with(" MiB)"),
        "{reason}"
    );
    let rss: u64 = reason
        .trim_start_matches("memory limit 64 MiB exceeded (RSS ")
        .trim_end_matches(" MiB)")
        .parse()
        .unwrap();
    assert!((65..512).contains(&rss), "{reason}");
    assert_gone(pid).await;
    let error = plugin.health().await.unwrap_err();
    assert_eq!(error.to_string(), format!("process killed: {reason}"));
}

/// The limit is on the whole group: a wrapper script that starts the plugin without `exec`
/// (the shell stays the group's leader, at a megabyte) does not hide the plugin's memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_limit_counts_the_whole_process_group() {
    let dirs = dirs();
    let events = Arc::new(Events::default());
    let host = RecordingHost::new();
    let mut spec = spec(&dirs, "memory");
    // `; true` keeps the shell from replacing itself with the fixture.
    spec.command = vec!["/bin/sh".into(), "-c".into(), format!("{FIXTURE}; true")];
    spec.limits.memory_limit_mb = Some(64);
    let plugin = ProcessPlugin::new(spec, hooks(&events));
    plugin.initialize(context(&host)).await.unwrap();
    let shell = events.spawned();
    eventually("on_exit was called", || !events.exits().is_empty()).await;
    let reason = &events.exits()[0];
    assert!(
        reason.starts_with("memory limit 64 MiB exceeded (RSS "),
        "{reason}"
    );
    assert_gone(shell).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cpu_limit_kills_the_child_with_its_reason() {
    let dirs = dirs();
    let events = Arc::new(Events::default());
    let host = RecordingHost::new();
    let mut spec = spec(&dirs, "cpu");
    spec.limits.cpu_time_limit_sec = Some(1);
    let plugin = ProcessPlugin::new(spec, hooks(&events));
    plugin.initialize(context(&host)).await.unwrap();
    let pid = events.spawned();
    eventually("on_exit was called", || !events.exits().is_empty()).await;
    assert_eq!(events.exits(), ["CPU time limit 1 s exceeded (SIGXCPU)"]);
    assert_gone(pid).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_kills_a_child_that_ignores_sigterm_and_its_whole_group() {
    adopt_orphans();
    let dirs = dirs();
    let events = Arc::new(Events::default());
    let host = RecordingHost::new();
    let report = dirs.other.join("report");
    let mut spec = spec(&dirs, "stubborn");
    spec.shutdown_grace = Duration::from_millis(800);
    spec.env
        .insert("NEBULA_FIXTURE_REPORT".into(), report.display().to_string());
    let plugin = ProcessPlugin::new(spec, hooks(&events));
    plugin.initialize(context(&host)).await.unwrap();
    let pid = events.spawned();
    let grandchild = reported_pid(&report_lines(&report, 2).await, "grandchild");
    assert!(alive(grandchild));

    let start = Instant::now();
    plugin.shutdown().await.unwrap();
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(800),
        "SIGKILL only after the grace: {took:?}"
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert_gone(pid).await;
    // The grandchild ignored SIGTERM too: the group's SIGKILL ended it.
    reap_adopted(grandchild).await;
    assert!(events.reaped(), "{:?}", events.pids());
    assert!(events.exits().is_empty(), "{:?}", events.exits());
    assert!(files_in(&dirs.run).is_empty(), "{:?}", files_in(&dirs.run));
}

/// The host bounds `shutdown` by its call timeout, which may be shorter than the grace: an
/// abandoned shutdown must still end the child (review finding: it used to leave it running).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_shutdown_still_kills_a_child_that_ignores_sigterm() {
    adopt_orphans();
    let dirs = dirs();
    let events = Arc::new(Events::default());
    let host = RecordingHost::new();
    let report = dirs.other.join("report");
    let mut spec = spec(&dirs, "stubborn");
    spec.shutdown_grace = Duration::from_secs(60);
    spec.env
        .insert("NEBULA_FIXTURE_REPORT".into(), report.display().to_string());
    let plugin = ProcessPlugin::new(spec, hooks(&events));
    plugin.initialize(context(&host)).await.unwrap();
    let pid = events.spawned();
    let grandchild = reported_pid(&report_lines(&report, 2).await, "grandchild");
    // What the manager's call timeout does to a shutdown that outlasts it.
    let abandoned = tokio::time::timeout(Duration::from_millis(300), plugin.shutdown()).await;
    assert!(abandoned.is_err(), "the grace is 60 s");
    assert_gone(pid).await;
    reap_adopted(grandchild).await;
    eventually("on_pid(None)", || events.reaped()).await;
    assert!(events.exits().is_empty(), "{:?}", events.exits());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_initialize_midway_kills_the_child() {
    let dirs = dirs();
    let events = Arc::new(Events::default());
    let host = RecordingHost::new();
    let plugin = ProcessPlugin::new(spec(&dirs, "hang"), hooks(&events));
    // What the manager's init timeout does. Long enough for the launch itself to return on a
    // busy machine (the "was not ready" line is written by what the launch sets up).
    let abandoned = tokio::time::timeout(
        Duration::from_millis(4000),
        plugin.initialize(context(&host)),
    )
    .await;
    assert!(
        abandoned.is_err(),
        "a child that never serves is never ready"
    );
    eventually("on_pid(Some)", || !events.pids().is_empty()).await;
    let pid = events.spawned();
    assert_gone(pid).await;
    eventually("on_pid(None)", || events.reaped()).await;
    assert!(events.exits().is_empty(), "{:?}", events.exits());
    assert!(files_in(&dirs.run).is_empty(), "{:?}", files_in(&dirs.run));
    let logs = host.logs();
    assert!(
        logs.iter()
            .any(|(level, l)| *level == LogLevel::Warn && l.contains("was not ready")),
        "{logs:?}"
    );
    let error = plugin.health().await.unwrap_err();
    assert!(error.to_string().contains("did not start"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_plugin_kills_the_child() {
    let dirs = dirs();
    let events = Arc::new(Events::default());
    let host = RecordingHost::new();
    let plugin = ProcessPlugin::new(spec(&dirs, "ok"), hooks(&events));
    plugin.initialize(context(&host)).await.unwrap();
    let pid = events.spawned();
    drop(plugin);
    assert_gone(pid).await;
    eventually("on_pid(None)", || events.reaped()).await;
    assert!(events.exits().is_empty(), "{:?}", events.exits());
    assert!(files_in(&dirs.run).is_empty(), "{:?}", files_in(&dirs.run));
}

/// Starts the fixture in mode `parent` (a small core running one process plugin of mode
/// `child_mode`); answers it and the pid of its child.
async fn parent_with_child(dirs: &Dirs, child_mode: &str) -> (std::process::Child, u32) {
    use std::io::BufRead;
    let mut parent = std::process::Command::new(FIXTURE)
        .env("NEBULA_FIXTURE_MODE", "parent")
        .env("NEBULA_FIXTURE_CHILD_MODE", child_mode)
        .env("NEBULA_FIXTURE_PLUGIN_DIR", &dirs.plugin)
        .env("NEBULA_FIXTURE_RUN_DIR", &dirs.run)
        .env("NEBULA_FIXTURE_REPORT", dirs.other.join("report"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = parent.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .map(|_| line)
    });
    let line = tokio::time::timeout(WAIT, line)
        .await
        .expect("the parent reports its child")
        .unwrap()
        .unwrap();
    let child: u32 = line
        .trim()
        .strip_prefix("child ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected line {line:?}"));
    assert!(child > 0 && alive(child));
    (parent, child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_dies_with_its_parent() {
    adopt_orphans();
    let dirs = dirs();
    let (mut parent, child) = parent_with_child(&dirs, "ok").await;
    // The core killed hard: no shutdown, no drop, only PR_SET_PDEATHSIG.
    kill(parent.id(), libc::SIGKILL);
    parent.wait().unwrap();
    reap_adopted(child).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reap_leftovers_kills_recorded_groups_and_nothing_else() {
    adopt_orphans();
    let dirs = dirs();
    // 1. A core killed hard: its child dies with it (PDEATHSIG), but the grandchild the
    //    child started survives in the child's group, and the pid file stays.
    let (mut parent, child) = parent_with_child(&dirs, "stubborn").await;
    let report = report_lines(&dirs.other.join("report"), 3).await;
    let grandchild = reported_pid(&report, "grandchild");
    kill(parent.id(), libc::SIGKILL);
    parent.wait().unwrap();
    reap_adopted(child).await;
    assert!(
        alive(grandchild),
        "the parent-death signal is not inherited"
    );
    let left = files_in(&dirs.run);
    assert_eq!(
        left.iter().filter(|n| n.ends_with(".pid")).count(),
        1,
        "{left:?}"
    );

    // 2. A live group leader that is the plugin's (its cwd is the plugin dir).
    let mut leader = hang_in(&dirs.plugin);
    std::fs::write(
        dirs.run.join("leader.1.pid"),
        format!("{}\n{}\n", leader.id(), dirs.plugin.display()),
    )
    .unwrap();
    // 3. A pid file whose pid is not the plugin's process (another working directory).
    let mut stranger = hang_in(&dirs.other);
    std::fs::write(
        dirs.run.join("stranger.1.pid"),
        format!("{}\n{}\n", stranger.id(), dirs.plugin.display()),
    )
    .unwrap();

    let done = reap_leftovers(&dirs.run);
    assert_eq!(done.len(), 3, "{done:#?}");
    let said = |file: &str| {
        done.iter()
            .find(|l| l.contains(file))
            .unwrap_or_else(|| panic!("nothing about {file}: {done:#?}"))
            .clone()
    };
    assert!(said("child.").contains("killed process group"), "{done:#?}");
    assert!(
        said("leader.1.pid").contains("killed process group"),
        "{done:#?}"
    );
    assert!(said("stranger.1.pid").contains("left alone"), "{done:#?}");
    reap_adopted(grandchild).await;
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(leader.wait().unwrap().signal(), Some(libc::SIGKILL));
    assert_gone(leader.id()).await;
    assert!(
        alive(stranger.id()),
        "a process that is not the plugin's is left alone"
    );
    assert!(files_in(&dirs.run).is_empty(), "{:?}", files_in(&dirs.run));
    stranger.kill().unwrap();
    stranger.wait().unwrap();
    assert_gone(stranger.id()).await;
}

/// The fixture in mode `hang`, leading its own process group, working in `dir`.
fn hang_in(dir: &Path) -> std::process::Child {
    use std::os::unix::process::CommandExt;
    std::process::Command::new(FIXTURE)
        .env("NEBULA_FIXTURE_MODE", "hang")
        .current_dir(dir)
        .process_group(0)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// A fake core's host service: one live host token whose context records into `host`.
struct FakeCore {
    endpoint: String,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn fake_core(dir: &Path, token: &str, host: &Arc<RecordingHost>) -> FakeCore {
    let listener = nebula_grpc::host_service::bind_private_socket(&dir.join("host.sock"))
        .await
        .unwrap();
    let endpoint = listener.endpoint();
    let (token, ctx) = (token.to_owned(), host.context("fx", ScopeSet::all()));
    let tokens: Arc<dyn HostTokens> =
        Arc::new(move |presented: &str| (presented == token).then(|| ctx.clone()));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(nebula_grpc::host_service::serve_host_service(
        tokens,
        listener,
        HostServiceOptions::default(),
        async {
            let _ = stopped.await;
        },
    ));
    FakeCore {
        endpoint,
        _stop: stop,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_child_reaches_the_host_service_it_is_given() {
    let dirs = dirs();
    let events = Arc::new(Events::default());
    // What the plugin writes through the host service lands here.
    let core_side = RecordingHost::new();
    let core = fake_core(&dirs.other, "host-token-1", &core_side).await;
    let mut hooks = hooks(&events);
    hooks.host = Some((core.endpoint.clone(), "host-token-1".into()));
    // The context handed to initialize (where output lines go).
    let output = RecordingHost::new();
    let plugin = ProcessPlugin::new(spec(&dirs, "ok"), hooks);
    plugin.initialize(context(&output)).await.unwrap();
    let health = plugin.health().await.unwrap();
    assert_eq!(health["host_endpoint"], core.endpoint.as_str());
    let env = str_list(&health, "env");
    assert!(env.contains(&"NEBULA_HOST_TOKEN".to_owned()), "{env:?}");
    // The child initialised its plugin over the host service: its log line came back.
    eventually(
        "the child's context logged through the host service",
        || {
            core_side
                .logs()
                .contains(&(LogLevel::Info, "fixture initialised (ok)".into()))
        },
    )
    .await;
    let sync = plugin.sync_users(SyncRequest::default()).await.unwrap();
    assert_eq!(sync["status"], "ok");
    eventually("the sync's log line came back", || {
        core_side
            .logs()
            .contains(&(LogLevel::Info, "fixture sync".into()))
    })
    .await;
    let pid = events.spawned();
    plugin.shutdown().await.unwrap();
    assert_gone(pid).await;
}

#[test]
fn the_one_line_main_refuses_to_run_without_its_variables() {
    let dirs = dirs();
    let output = std::process::Command::new(FIXTURE)
        .env_clear()
        .env("NEBULA_FIXTURE_MODE", "ok")
        .env("NEBULA_PLUGIN_NAME", "fx")
        .env("NEBULA_PLUGIN_SOCKET", dirs.run.join("fx.sock"))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("NEBULA_PLUGIN_TOKEN is not set"),
        "{stderr}"
    );
    assert!(files_in(&dirs.run).is_empty(), "nothing was bound");
}
