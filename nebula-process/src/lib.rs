//! The process runtime of Nebula Core (SPEC §9): a plugin that runs as a supervised child
//! process and serves `nebula.plugin.v1.PluginService` on a unix socket, behind the ordinary
//! [`Plugin`](nebula_plugin_api::Plugin) trait.
//!
//! The core builds one [`ProcessPlugin`] per instance from a [`ProcessSpec`] (the plugin's
//! `plugin.json` `runtime` section and the `[plugins.process]` limits) and [`ProcessHooks`]
//! (the host service's endpoint and token, and two callbacks). The manager then drives it
//! like any other plugin:
//!
//! - `initialize` starts the command (working directory = the plugin's directory, stdin
//!   closed, a clean environment plus `NEBULA_PLUGIN_*` and `NEBULA_HOST_*`), in its own
//!   process group, with the parent-death signal set and the rlimits applied, and answers
//!   once `Health` says `ok` over the socket. A child that exits first fails it with its exit
//!   code (or signal) and its last stderr line. Dropping the future kills the child.
//! - `health` and `sync_users` go through [`nebula_grpc::GrpcPlugin`] with the instance's
//!   token; a dead child answers `Unavailable` at once.
//! - `shutdown` sends SIGTERM to the group, SIGKILL after the grace period, and waits for the
//!   reap (`on_pid(None)` has been called, the socket and pid file removed, when it returns).
//!   Dropping the plugin without `shutdown` sends SIGKILL; the reap follows on its own.
//!
//! The plugin's side is [`nebula_grpc::run_process_plugin`]: a plugin crate's process binary
//! is `fn main() -> ExitCode { nebula_grpc::run_process_plugin(my_crate::create_plugin()) }`.
//!
//! # What is guaranteed, and how
//!
//! - **Every child is reaped, and its whole group killed, once its leader is dead.** Each
//!   child has a waiter thread of its own (not the tokio runtime: reaping must not depend on
//!   a runtime that may be gone). It waits with `waitid(WNOWAIT)`, so the dead leader stays a
//!   zombie and keeps its pid; then, under the instance's lock, it sends SIGKILL to the
//!   group (what the plugin started and left behind) and only then reaps. Every signal this
//!   crate sends to a group is sent under that lock and only while the leader is unreaped, so
//!   a signal can never reach a process that reused the pid.
//! - **No orphan survives the core**, even when the core is killed with SIGKILL: every child
//!   is forked by one dedicated thread that never exits (`PR_SET_PDEATHSIG` fires when the
//!   *thread* that forked exits, so never tokio's blocking pool, whose threads come and go)
//!   and gets SIGKILL when the core dies. The parent-death signal is not inherited by the
//!   child's own children: those are killed at the next start by [`reap_leftovers`], from
//!   the pid file each instance keeps in the run directory.
//! - **Limits**: the CPU time limit is `RLIMIT_CPU` (soft = the limit, SIGXCPU; hard = the
//!   limit + 1 s, SIGKILL), open files `RLIMIT_NOFILE`, processes `RLIMIT_NPROC` (which Linux
//!   counts per *user*, threads included, and does not enforce for root: it only means
//!   something when plugins run as a user of their own). The memory limit is on resident
//!   memory (SPEC §9): the leader's RSS is read from `/proc/PID/statm` every 200 ms and the
//!   group is killed when it is over. cgroup v2 is only *detected*
//!   ([`cgroup_v2_writable`]); putting children in cgroups of their own is left for later.
//!
//! # Files
//!
//! In `run_dir` (a private directory of the core, `<data dir>/run`), each instance uses
//! `<name>.<id>.sock` (its socket; `<id>` is random per start, so an instance that is still
//! being reaped never removes the socket of the next one) and `<name>.<id>.pid`. A pid file
//! holds three lines: the child's pid (also its process group id), the plugin directory
//! (canonical) and the socket path. When the socket path would be longer than a unix socket
//! allows (107 bytes), the socket goes to a private directory `nebula-run-<uid>` under the
//! temporary directory instead. Both files are removed when the child is reaped.

#![warn(missing_docs)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

mod child;
mod files;
mod output;
mod plugin;
mod procfs;
mod reason;
mod spawner;

pub use files::{fallback_socket_dir, reap_leftovers, MAX_SOCKET_PATH};
pub use plugin::ProcessPlugin;
pub use procfs::{cgroup_v2_writable, resident_bytes};

/// The environment variables a child gets, besides `PATH` and its manifest's `runtime.env`.
pub use nebula_grpc::process_main::{
    PLUGIN_CALL_TIMEOUT_MS_ENV, PLUGIN_MAX_MESSAGE_BYTES_ENV, PLUGIN_NAME_ENV, PLUGIN_SOCKET_ENV,
    PLUGIN_TOKEN_ENV,
};
pub use nebula_grpc::{HOST_ENDPOINT_ENV, HOST_TOKEN_ENV};

/// `PATH` of a child when the core has none.
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// How to run one process plugin. Its `Debug` shows `env`'s keys only (values may be
/// secrets).
#[derive(Clone)]
pub struct ProcessSpec {
    /// The plugin's name (`NEBULA_PLUGIN_NAME`; also names its files in `run_dir`).
    pub name: String,
    /// The plugin's directory: the child's working directory, and what a relative `command[0]`
    /// is relative to.
    pub dir: PathBuf,
    /// The program and its arguments. `command[0]`: an absolute path as it is; a path with a
    /// `/` (`./my-plugin`, `bin/plugin`) relative to `dir`; a bare name (`python3`) is the file
    /// of that name in `dir` when there is one, else looked up in the child's `PATH`.
    pub command: Vec<String>,
    /// The manifest's `runtime.env`, added to the clean environment (it may set `PATH`; it
    /// cannot override the `NEBULA_PLUGIN_*` and `NEBULA_HOST_*` variables).
    pub env: BTreeMap<String, String>,
    /// A private (0700) directory the core owns, `<data dir>/run`: sockets and pid files go
    /// here. Created (0700) when missing; a relative path is made absolute.
    pub run_dir: PathBuf,
    /// Resource limits.
    pub limits: ProcessLimits,
    /// SIGTERM, then SIGKILL after this (`plugins.process.shutdown_grace_sec`, default 5 s).
    pub shutdown_grace: Duration,
    /// Deadline of each PluginService call to the child (also handed to the child, which
    /// bounds its own calls with it).
    pub call_timeout: Duration,
    /// Largest message either way (also handed to the child).
    pub max_message_bytes: usize,
}

impl std::fmt::Debug for ProcessSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessSpec")
            .field("name", &self.name)
            .field("dir", &self.dir)
            .field("command", &self.command)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("run_dir", &self.run_dir)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl ProcessSpec {
    /// The executable `initialize` would run, by the rule of [`ProcessSpec::command`]; an
    /// error when the command is empty or the program is missing or not executable. The core
    /// can call it at discovery (to list a directory whose executable is missing) and watch
    /// the file it names (to restart on a changed executable).
    pub fn program(&self) -> Result<PathBuf, ProcessError> {
        spawner::resolve_program(self)
    }
}

/// Resource limits of one child (`plugins.process.*`); `None` is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessLimits {
    /// Resident memory (RSS) of the child, polled every 200 ms; over it, the group is killed
    /// and the reason is `memory limit N MiB exceeded (RSS M MiB)`.
    pub memory_limit_mb: Option<u64>,
    /// CPU time (`RLIMIT_CPU`): SIGXCPU at the limit, SIGKILL one second later; reported as
    /// `CPU time limit N s exceeded (…)`.
    pub cpu_time_limit_sec: Option<u64>,
    /// Open file descriptors (`RLIMIT_NOFILE`, soft and hard).
    pub max_open_files: Option<u64>,
    /// Processes and threads of the child's *user* (`RLIMIT_NPROC`, soft and hard; not
    /// enforced for root).
    pub max_processes: Option<u64>,
}

/// What the core is told, and what it hands to the child.
#[derive(Clone)]
pub struct ProcessHooks {
    /// The host service's endpoint and this instance's host token: `NEBULA_HOST_ENDPOINT` and
    /// `NEBULA_HOST_TOKEN` in the child's environment, and `x-nebula-host-endpoint` /
    /// `x-nebula-host-token` on every PluginService call.
    pub host: Option<(String, String)>,
    /// The child died on its own while the instance was live (after `initialize` succeeded):
    /// the reason (`exited with code 3`, `killed by signal 9
    /// (SIGKILL)`, `memory limit 64 MiB exceeded (RSS 80 MiB)`, `CPU time limit 2 s exceeded
    /// (SIGXCPU)`). Never called for a stop the instance asked for (shutdown, drop, a failed
    /// or abandoned `initialize`), nor for an exit before the child was ready (`initialize`
    /// answers that). Called once, after `on_pid(None)`, when calls already answer
    /// `Unavailable` with the reason.
    ///
    /// Both callbacks run on a thread of this crate (the spawner for `on_pid(Some)`, the
    /// child's waiter for the rest) with the tokio runtime of `initialize` entered, so they
    /// may `tokio::spawn`; they must not block (hand the work to a task or a channel).
    pub on_exit: Arc<dyn Fn(String) + Send + Sync>,
    /// `Some(pid)` once the child is spawned, `None` once it is reaped (always, whatever
    /// ended it; `None` always comes after `Some`, and before `shutdown` returns).
    pub on_pid: Arc<dyn Fn(Option<u32>) + Send + Sync>,
}

impl ProcessHooks {
    /// No host service and callbacks that do nothing.
    pub fn none() -> Self {
        ProcessHooks {
            host: None,
            on_exit: Arc::new(|_| {}),
            on_pid: Arc::new(|_| {}),
        }
    }
}

impl std::fmt::Debug for ProcessHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessHooks")
            .field("host_endpoint", &self.host.as_ref().map(|(e, _)| e))
            .finish_non_exhaustive()
    }
}

/// Why a process plugin could not be started (before anything ran). `initialize` answers it
/// as a `PluginError`: `InvalidInput` for what the plugin's manifest must fix (an empty
/// command, a missing or non-executable program), `Unavailable` otherwise.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// `runtime.command` is empty.
    #[error("plugin '{0}': runtime.command is empty")]
    EmptyCommand(String),
    /// The program does not exist (or is not a file).
    #[error("plugin '{plugin}': program '{program}' not found (looked for {looked})")]
    ProgramNotFound {
        /// The plugin.
        plugin: String,
        /// `command[0]` as written.
        program: String,
        /// Where it was looked for.
        looked: String,
    },
    /// The program exists but is not executable.
    #[error("plugin '{plugin}': {} is not executable", path.display())]
    NotExecutable {
        /// The plugin.
        plugin: String,
        /// The file.
        path: PathBuf,
    },
    /// A file or directory of the instance could not be prepared.
    #[error("plugin '{plugin}': {what} {}: {source}", path.display())]
    Io {
        /// The plugin.
        plugin: String,
        /// What was being done (`creating the run directory`, …).
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// No directory gives a socket path short enough for a unix socket.
    #[error("plugin '{plugin}': socket path {} is longer than the 107 bytes a unix socket allows", path.display())]
    SocketPathTooLong {
        /// The plugin.
        plugin: String,
        /// The shortest path tried.
        path: PathBuf,
    },
    /// `fork`/`exec` failed (or the child's set-up: process group, rlimits).
    #[error("plugin '{plugin}': cannot start {}: {source}", program.display())]
    Spawn {
        /// The plugin.
        plugin: String,
        /// The program.
        program: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The spawner or waiter thread could not be reached or started.
    #[error("plugin '{plugin}': {what}")]
    Runtime {
        /// The plugin.
        plugin: String,
        /// What failed.
        what: String,
    },
}

impl ProcessError {
    fn into_plugin_error(self) -> nebula_plugin_api::PluginError {
        use nebula_plugin_api::PluginError;
        match self {
            ProcessError::EmptyCommand(_)
            | ProcessError::ProgramNotFound { .. }
            | ProcessError::NotExecutable { .. } => PluginError::InvalidInput(self.to_string()),
            _ => PluginError::Unavailable(self.to_string()),
        }
    }
}

/// `path` made absolute against the current directory (without touching the file system).
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}
