//! One child process: starting it (on the spawner thread), signalling its group, and its
//! waiter thread, which reaps it and tells the core.
//!
//! The invariant that makes signals safe: the child's pid is its process group id, and it
//! stays reserved until the child is reaped. Every signal to the group is sent under the
//! child's lock and only while `reaped` is false; the waiter reaps under that same lock. So a
//! signal never reaches a group that reused the number.

use std::io;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;

use crate::files::InstanceFiles;
use crate::reason::ExitReason;
use crate::{spawner, ProcessError, ProcessHooks};

const MIB: u64 = 1024 * 1024;

/// What the instance and the waiter share about the child.
#[derive(Debug, Default)]
struct Shared {
    /// The waiter has reaped the child: its pid may belong to someone else now.
    reaped: bool,
    /// `initialize` saw it ready: from now on an exit of its own is reported (`on_exit`).
    ready: bool,
    /// The instance asked it to stop (shutdown, drop, an abandoned `initialize`): its exit is
    /// not reported.
    stopping: bool,
    /// Set by the memory monitor just before it kills the group: the reason to report.
    limit_kill: Option<ExitReason>,
}

/// A running (or ended) child.
#[derive(Debug)]
pub(crate) struct ChildProcess {
    pid: u32,
    shared: Mutex<Shared>,
    /// `Some(reason)` once reaped (sent by the waiter thread).
    exit: watch::Sender<Option<ExitReason>>,
}

impl ChildProcess {
    fn new(pid: u32) -> Self {
        ChildProcess {
            pid,
            shared: Mutex::new(Shared::default()),
            exit: watch::Sender::new(None),
        }
    }

    /// The child's pid (and process group id).
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// Sends `signal` to the child's group, unless the child was already reaped.
    pub(crate) fn signal(&self, signal: libc::c_int) {
        let shared = self.shared.lock();
        if !shared.reaped {
            kill_group(self.pid, signal);
        }
    }

    /// Marks the child as stopped by the instance (its exit is not reported) and sends
    /// `signal` to its group.
    pub(crate) fn stop(&self, signal: libc::c_int) {
        let mut shared = self.shared.lock();
        shared.stopping = true;
        if !shared.reaped {
            kill_group(self.pid, signal);
        }
    }

    /// Marks the child ready; false when it was already reaped (`initialize` then answers its
    /// exit instead).
    pub(crate) fn mark_ready(&self) -> bool {
        let mut shared = self.shared.lock();
        if shared.reaped {
            return false;
        }
        shared.ready = true;
        true
    }

    /// How the child ended, once it was reaped.
    pub(crate) fn exit_reason(&self) -> Option<ExitReason> {
        self.exit.borrow().clone()
    }

    /// Waits until the child was reaped; answers how it ended.
    pub(crate) async fn exited(&self) -> ExitReason {
        let mut exit = self.exit.subscribe();
        let reason = match exit.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone().unwrap_or(ExitReason::Unknown),
            // The sender lives in `self`: it cannot be gone while we borrow it.
            Err(_) => ExitReason::Unknown,
        };
        reason
    }

    /// Kills the group when its resident memory (every process of the group: the plugin and
    /// what it started) is over `limit_mb`; true when it did.
    /// The reading and the kill happen under the lock, so both concern this child.
    pub(crate) fn enforce_memory_limit(&self, limit_mb: u64) -> bool {
        let mut shared = self.shared.lock();
        if shared.reaped || shared.limit_kill.is_some() {
            return false;
        }
        let Some(rss) = crate::procfs::group_resident_bytes(self.pid) else {
            return false;
        };
        if rss <= limit_mb.saturating_mul(MIB) {
            return false;
        }
        shared.limit_kill = Some(ExitReason::MemoryLimit {
            limit_mb,
            rss_mb: rss.div_ceil(MIB),
        });
        kill_group(self.pid, libc::SIGKILL);
        true
    }

    /// The waiter's reap: kills what is left of the group (the dead leader still reserves its
    /// pid), then reaps the leader. `waited` is false when `waitid` failed (something else in
    /// this process reaped the child: nothing may be signalled then). Answers the reason and
    /// whether to report it (`on_exit`).
    fn reap(&self, waited: bool, cpu_limit_sec: Option<u64>) -> (ExitReason, bool) {
        let mut shared = self.shared.lock();
        let mut reason = ExitReason::Unknown;
        if waited {
            kill_group(self.pid, libc::SIGKILL);
            let (reaped, status, cpu_used) = wait4(self.pid);
            if reaped {
                reason = ExitReason::from_status(
                    status,
                    shared.limit_kill.take(),
                    cpu_limit_sec,
                    cpu_used,
                );
            }
        }
        shared.reaped = true;
        (reason, shared.ready && !shared.stopping)
    }
}

/// `kill(-pid, signal)`. Callers hold the child's lock with the child unreaped.
fn kill_group(pid: u32, signal: libc::c_int) {
    if let Ok(pgid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill has no memory preconditions; a negative pid addresses the group.
        unsafe {
            libc::kill(-pgid, signal);
        }
    }
}

/// Blocks until `pid` has exited, without reaping it (`WNOWAIT`). False when it cannot be
/// waited for (not our child any more).
fn wait_exited(pid: u32) -> bool {
    loop {
        // SAFETY: an all-zero siginfo_t is a valid value to be overwritten.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is valid for writes.
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if r == 0 {
            return true;
        }
        if io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return false;
        }
    }
}

/// Reaps `pid` (already exited): whether it worked, the wait status, the CPU time it used.
fn wait4(pid: u32) -> (bool, libc::c_int, Duration) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return (false, 0, Duration::ZERO);
    };
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero rusage is a valid value to be overwritten.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `status` and `usage` are valid for writes.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            return (true, status, cpu_time(&usage));
        }
        if r == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        return (false, 0, Duration::ZERO);
    }
}

fn cpu_time(usage: &libc::rusage) -> Duration {
    let part = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    part(usage.ru_utime) + part(usage.ru_stime)
}

/// What the spawner needs to start one child.
pub(crate) struct Launch {
    /// The plugin's name.
    pub(crate) name: String,
    /// The command, ready to spawn.
    pub(crate) command: Command,
    /// Its program (for messages).
    pub(crate) program: PathBuf,
    /// The plugin directory, canonical (recorded in the pid file).
    pub(crate) dir: PathBuf,
    /// The instance's files.
    pub(crate) files: InstanceFiles,
    /// For the CPU-limit reason.
    pub(crate) cpu_limit_sec: Option<u64>,
    /// The callbacks.
    pub(crate) hooks: ProcessHooks,
    /// Entered around the callbacks, so they may use `tokio::spawn`.
    pub(crate) runtime: tokio::runtime::Handle,
}

/// A started child and its output pipes.
pub(crate) struct Started {
    pub(crate) process: Arc<ChildProcess>,
    pub(crate) stdout: OwnedFd,
    pub(crate) stderr: OwnedFd,
}

/// Starts the child on the spawner thread. If the caller stops waiting (the `initialize`
/// future was dropped) before the child is handed over, the spawner kills it itself.
pub(crate) async fn launch(launch: Launch) -> Result<Started, ProcessError> {
    let name = launch.name.clone();
    let (sender, receiver) = tokio::sync::oneshot::channel();
    spawner::on_spawner_thread(Box::new(move || {
        let started = start(launch);
        if let Err(Ok(abandoned)) = sender.send(started) {
            abandoned.process.stop(libc::SIGKILL);
        }
    }))
    .map_err(|e| ProcessError::Runtime {
        plugin: name.clone(),
        what: format!("cannot start the spawner thread: {e}"),
    })?;
    receiver.await.map_err(|_| ProcessError::Runtime {
        plugin: name,
        what: "the spawner thread dropped the request".into(),
    })?
}

/// On the spawner thread: fork and exec, tell `on_pid`, start the waiter, write the pid file.
fn start(launch: Launch) -> Result<Started, ProcessError> {
    let Launch {
        name,
        mut command,
        program,
        dir,
        files,
        cpu_limit_sec,
        hooks,
        runtime,
    } = launch;
    let mut child = command.spawn().map_err(|source| ProcessError::Spawn {
        plugin: name.clone(),
        program,
        source,
    })?;
    // std's `Child` neither kills nor reaps when dropped: the waiter thread owns that.
    let pid = child.id();
    let process = Arc::new(ChildProcess::new(pid));
    call_hook(&runtime, || (hooks.on_pid)(Some(pid)));
    let waiter = {
        let process = process.clone();
        let files = files.clone();
        let hooks = hooks.clone();
        let runtime = runtime.clone();
        std::thread::Builder::new()
            .name(format!("nebula-wait-{pid}"))
            .stack_size(256 * 1024)
            .spawn(move || wait_and_reap(&process, &files, &hooks, &runtime, cpu_limit_sec))
    };
    if let Err(e) = waiter {
        // Nobody would reap it: kill and reap here, at once.
        process.stop(libc::SIGKILL);
        let (reason, _) = process.reap(wait_exited(pid), cpu_limit_sec);
        files.remove();
        call_hook(&runtime, || (hooks.on_pid)(None));
        process.exit.send_replace(Some(reason));
        return Err(ProcessError::Runtime {
            plugin: name,
            what: format!("cannot start the waiter thread: {e}"),
        });
    }
    let fail = |what: String| {
        process.stop(libc::SIGKILL);
        ProcessError::Runtime {
            plugin: name.clone(),
            what,
        }
    };
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(fail("the child's output pipes are missing".into()));
    };
    if let Err(e) = files.write_pid_file(pid, &dir) {
        return Err(fail(format!(
            "cannot write the pid file {}: {e}",
            files.pid_file.display()
        )));
    }
    Ok(Started {
        process,
        stdout: stdout.into(),
        stderr: stderr.into(),
    })
}

/// The waiter thread: waits for the child's exit, kills the rest of its group, reaps it,
/// removes its files, calls `on_pid(None)`, publishes the reason (which ends `shutdown` and
/// answers calls), then calls `on_exit` for an exit of its own while ready. Not a tokio task: reaping must not depend on
/// a runtime that may be shutting down.
fn wait_and_reap(
    process: &ChildProcess,
    files: &InstanceFiles,
    hooks: &ProcessHooks,
    runtime: &tokio::runtime::Handle,
    cpu_limit_sec: Option<u64>,
) {
    let waited = wait_exited(process.pid);
    let (reason, report) = process.reap(waited, cpu_limit_sec);
    files.remove();
    // on_pid(None) before the exit is published: when `shutdown` (which waits for it)
    // returns, the core has already been told.
    call_hook(runtime, || (hooks.on_pid)(None));
    process.exit.send_replace(Some(reason.clone()));
    if report {
        call_hook(runtime, || (hooks.on_exit)(reason.to_string()));
    }
}

/// Calls one of the core's hooks with the runtime of `initialize` entered (so it may
/// `tokio::spawn`), containing a panic: a hook's bug must not stop the spawner thread halfway
/// through a start (leaving a child nobody reaps) nor the waiter before it is done.
fn call_hook(runtime: &tokio::runtime::Handle, hook: impl FnOnce()) {
    let _runtime = runtime.enter();
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(hook)).is_err() {
        tracing::error!("a process-plugin hook (on_pid/on_exit) panicked");
    }
}
