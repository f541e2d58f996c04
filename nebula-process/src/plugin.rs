//! [`ProcessPlugin`]: a child process behind the `Plugin` trait.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nebula_grpc::{GrpcPlugin, RemotePluginSpec};
use nebula_plugin_api::serde_json::Value;
use nebula_plugin_api::{
    async_trait, escape_control, ErrorKind, JsonObject, LogLevel, Plugin, PluginContext,
    PluginError, SyncRequest,
};
use parking_lot::Mutex;

use crate::child::{self, ChildProcess, Launch};
use crate::files::InstanceFiles;
use crate::output::{self, LastLine};
use crate::{spawner, ProcessError, ProcessHooks, ProcessSpec};

/// How often `initialize` asks a starting child whether it is ready.
const READY_POLL: Duration = Duration::from_millis(75);
/// How often the memory monitor reads the child's resident memory.
const MEMORY_POLL: Duration = Duration::from_millis(200);
/// How long `initialize` waits for a dead child's last stderr lines before answering.
const STDERR_DRAIN: Duration = Duration::from_millis(500);
/// How long `shutdown` waits for the reap after SIGKILL (a process in uninterruptible sleep
/// may take a moment; the waiter thread reaps it whenever it ends).
const KILL_WAIT: Duration = Duration::from_secs(5);
/// How long a failed call waits to learn whether the child just died (then that is the
/// error, not the broken connection it caused).
const EXIT_CHECK: Duration = Duration::from_millis(100);
/// Most bytes of the child's text (its last stderr line, a health answer) quoted in an error.
const MAX_QUOTE: usize = 512;

/// A plugin that runs as a child process (see the [crate](crate) docs).
///
/// One instance runs the child at most once: `initialize` starts it, `shutdown` or drop ends
/// it. A restart is a new `ProcessPlugin`.
pub struct ProcessPlugin {
    spec: ProcessSpec,
    hooks: ProcessHooks,
    state: Mutex<State>,
}

enum State {
    /// Not initialised yet.
    New,
    /// The child is ready (or has died since: its reason is in `process`).
    Live(Arc<Live>),
    /// `initialize` failed, or its future was dropped; the child was killed.
    Failed(String),
    /// `shutdown` ran.
    Stopped,
}

/// A ready child and the client that calls it.
struct Live {
    process: Arc<ChildProcess>,
    grpc: GrpcPlugin,
    socket: PathBuf,
}

impl std::fmt::Debug for ProcessPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessPlugin")
            .field("name", &self.spec.name)
            .field("pid", &self.pid())
            .finish_non_exhaustive()
    }
}

impl ProcessPlugin {
    /// A plugin for `spec`; nothing runs until `initialize`.
    pub fn new(spec: ProcessSpec, hooks: ProcessHooks) -> Self {
        ProcessPlugin {
            spec,
            hooks,
            state: Mutex::new(State::New),
        }
    }

    /// The child's pid while it runs (after a successful `initialize`, until it is reaped).
    pub fn pid(&self) -> Option<u32> {
        match &*self.state.lock() {
            State::Live(live) if live.process.exit_reason().is_none() => Some(live.process.pid()),
            _ => None,
        }
    }

    /// The unix socket the child serves on, after a successful `initialize`.
    pub fn socket_path(&self) -> Option<PathBuf> {
        match &*self.state.lock() {
            State::Live(live) => Some(live.socket.clone()),
            _ => None,
        }
    }

    fn name(&self) -> &str {
        &self.spec.name
    }

    /// The live child, or the error a call answers at once.
    fn live(&self) -> Result<Arc<Live>, PluginError> {
        match &*self.state.lock() {
            State::Live(live) => match live.process.exit_reason() {
                Some(reason) => Err(PluginError::Unavailable(reason.process_text())),
                None => Ok(live.clone()),
            },
            State::New => Err(PluginError::Unavailable(format!(
                "process plugin '{}' is not started",
                self.name()
            ))),
            State::Failed(error) => Err(PluginError::Unavailable(format!(
                "process plugin '{}' did not start: {error}",
                self.name()
            ))),
            State::Stopped => Err(PluginError::Unavailable(format!(
                "process plugin '{}' was shut down",
                self.name()
            ))),
        }
    }

    /// Starts the child and waits until it is ready. Whatever way this ends early (an error,
    /// or the future dropped), the guard kills the child.
    async fn start(&self, ctx: PluginContext) -> Result<Live, PluginError> {
        let spec = &self.spec;
        let program = spawner::resolve_program(spec).map_err(ProcessError::into_plugin_error)?;
        let dir = std::fs::canonicalize(&spec.dir).map_err(|source| {
            ProcessError::Io {
                plugin: spec.name.clone(),
                what: "opening the plugin directory",
                path: spec.dir.clone(),
                source,
            }
            .into_plugin_error()
        })?;
        let files = InstanceFiles::prepare(&spec.run_dir, &spec.name)
            .map_err(ProcessError::into_plugin_error)?;
        let token = new_token()?;
        let env = spawner::child_env(spec, &files.socket, &token, self.hooks.host.as_ref());
        let command = spawner::command(&program, spec, &dir, env, std::process::id());
        let started = child::launch(Launch {
            name: spec.name.clone(),
            command,
            program,
            dir,
            files: files.clone(),
            cpu_limit_sec: spec.limits.cpu_time_limit_sec,
            hooks: self.hooks.clone(),
            runtime: tokio::runtime::Handle::current(),
        })
        .await
        .map_err(ProcessError::into_plugin_error)?;
        let process = started.process;
        let mut guard = KillOnDrop {
            process: Some(process.clone()),
            ctx: ctx.clone(),
            not_ready: Arc::new(Mutex::new("it had not been asked yet".into())),
        };

        let pipe_error = |e: std::io::Error| {
            PluginError::Unavailable(format!(
                "reading the output of process plugin '{}': {e}",
                spec.name
            ))
        };
        output::pump(started.stdout, LogLevel::Info, ctx.clone(), None).map_err(pipe_error)?;
        let last_stderr = LastLine::default();
        let mut stderr = output::pump(
            started.stderr,
            LogLevel::Warn,
            ctx.clone(),
            Some(last_stderr.clone()),
        )
        .map_err(pipe_error)?;
        if let Some(limit_mb) = spec.limits.memory_limit_mb {
            tokio::spawn(enforce_memory_limit(process.clone(), limit_mb));
        }

        let mut grpc = GrpcPlugin::new(RemotePluginSpec {
            name: spec.name.clone(),
            endpoint: format!("unix://{}", files.socket.display()),
            token: Some(token),
            call_timeout: spec.call_timeout,
            // A unix socket connects at once or not at all.
            connect_timeout: spec.call_timeout.min(Duration::from_secs(2)),
            allow_remote: false,
            max_message_bytes: spec.max_message_bytes,
        });
        if let Some((endpoint, host_token)) = &self.hooks.host {
            grpc = grpc.with_host(endpoint, host_token);
        }
        grpc.initialize(ctx.clone()).await?;

        let ended = tokio::select! {
            reason = process.exited() => Some(reason),
            () = wait_ready(&grpc, &files.socket, &guard.not_ready) => None,
        };
        let ended = match ended {
            None if process.mark_ready() => None,
            // It died between its answer and now.
            None => Some(process.exited().await),
            ended => ended,
        };
        if let Some(reason) = ended {
            // Its last words may still be in the pipe: let the reader finish (the group is
            // dead, so the pipe ends at once unless something escaped the group).
            let _ = tokio::time::timeout(STDERR_DRAIN, &mut stderr).await;
            let last = last_stderr.lock().clone();
            let last = last.map(|l| quote(&l));
            guard.not_ready.lock().clear();
            return Err(PluginError::Unavailable(
                reason.before_ready(last.as_deref()),
            ));
        }
        guard.disarm();
        Ok(Live {
            process,
            grpc,
            socket: files.socket,
        })
    }
}

/// Kills the child when `initialize` does not finish (an error, or its future dropped by
/// the manager's init timeout), and says in the plugin's log why it was not ready.
struct KillOnDrop {
    process: Option<Arc<ChildProcess>>,
    ctx: PluginContext,
    /// What the last readiness check saw (empty when there is nothing to add).
    not_ready: Arc<Mutex<String>>,
}

impl KillOnDrop {
    fn disarm(&mut self) {
        self.process = None;
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let Some(process) = self.process.take() else {
            return;
        };
        if process.exit_reason().is_none() {
            let seen = self.not_ready.lock().clone();
            if !seen.is_empty() {
                self.ctx.log(
                    LogLevel::Warn,
                    format!(
                        "process {} was not ready when its start was abandoned (last check: {seen}); killing it",
                        process.pid()
                    ),
                );
            }
        }
        process.stop(libc::SIGKILL);
    }
}

/// Polls the child until `Health` answers status `ok`: first whether its socket accepts
/// connections (cheap, no gRPC), then `Health` with the call deadline. A slow first `Health`
/// is never cut short and retried: the child's serve helper may be initialising the plugin
/// inside it. Records what it saw in `seen`; never returns otherwise (the caller races it
/// with the child's exit, and the manager bounds the whole `initialize`).
async fn wait_ready(grpc: &GrpcPlugin, socket: &Path, seen: &Mutex<String>) {
    loop {
        match tokio::net::UnixStream::connect(socket).await {
            Ok(_) => match grpc.health().await {
                Ok(answer) if answer.get("status").and_then(Value::as_str) == Some("ok") => {
                    return;
                }
                Ok(answer) => {
                    *seen.lock() = format!(
                        "Health answered {}",
                        quote(&Value::Object(answer).to_string())
                    );
                }
                Err(e) => *seen.lock() = format!("Health failed: {}", quote(&e.to_string())),
            },
            Err(e) => {
                *seen.lock() =
                    format!("its socket {} accepts no connection: {e}", socket.display());
            }
        }
        tokio::time::sleep(READY_POLL).await;
    }
}

/// Reads the child's resident memory every [`MEMORY_POLL`] and kills its group when it is over
/// the limit, until the child is gone.
async fn enforce_memory_limit(process: Arc<ChildProcess>, limit_mb: u64) {
    let mut tick = tokio::time::interval(MEMORY_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if process.exit_reason().is_some() || process.enforce_memory_limit(limit_mb) {
            return;
        }
    }
}

/// A fresh token for one start: 32 random bytes from the OS, URL-safe base64 (43 characters).
fn new_token() -> Result<String, PluginError> {
    nebula_plugin_api::token::new_token()
        .map_err(|e| PluginError::Unavailable(format!("no randomness for the plugin token: {e}")))
}

/// The child's text fit for an error: control characters escaped, at most [`MAX_QUOTE`] bytes.
fn quote(text: &str) -> String {
    let mut end = text.len().min(MAX_QUOTE);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let cut = if end < text.len() { "…" } else { "" };
    format!("{}{cut}", escape_control(&text[..end]))
}

impl Live {
    /// Runs a call, answering the child's death instead of whatever the call would: at once
    /// when it dies during the call, and in place of the broken connection it caused.
    async fn call<F>(&self, call: F) -> Result<JsonObject, PluginError>
    where
        F: Future<Output = Result<JsonObject, PluginError>>,
    {
        tokio::select! {
            result = call => match result {
                Err(e) if e.kind() == ErrorKind::Unavailable => {
                    match tokio::time::timeout(EXIT_CHECK, self.process.exited()).await {
                        Ok(reason) => Err(PluginError::Unavailable(reason.process_text())),
                        Err(_) => Err(e),
                    }
                }
                other => other,
            },
            reason = self.process.exited() => Err(PluginError::Unavailable(reason.process_text())),
        }
    }
}

#[async_trait]
impl Plugin for ProcessPlugin {
    /// Starts the child and answers once its `Health` says `ok` (see the [crate](crate) docs).
    async fn initialize(&self, ctx: PluginContext) -> Result<(), PluginError> {
        {
            let mut state = self.state.lock();
            if !matches!(*state, State::New) {
                return Err(PluginError::internal(format!(
                    "process plugin '{}' initialised twice",
                    self.name()
                )));
            }
            // What stays if this future is dropped before it ends.
            *state = State::Failed("its start was abandoned".into());
        }
        let started = self.start(ctx).await;
        let mut state = self.state.lock();
        match started {
            Ok(live) => {
                *state = State::Live(Arc::new(live));
                Ok(())
            }
            Err(e) => {
                *state = State::Failed(e.to_string());
                Err(e)
            }
        }
    }

    async fn health(&self) -> Result<JsonObject, PluginError> {
        let live = self.live()?;
        live.call(live.grpc.health()).await
    }

    async fn sync_users(&self, request: SyncRequest) -> Result<JsonObject, PluginError> {
        let live = self.live()?;
        live.call(live.grpc.sync_users(request)).await
    }

    /// SIGTERM to the child's group, SIGKILL after the grace period, then waits for the reap
    /// (the socket and pid file are removed by then). The PluginService has no `Shutdown`
    /// call: the child's serve helper stops on SIGTERM and runs the plugin's own `shutdown`.
    async fn shutdown(&self) -> Result<(), PluginError> {
        let previous = std::mem::replace(&mut *self.state.lock(), State::Stopped);
        let State::Live(live) = previous else {
            return Ok(());
        };
        let process = &live.process;
        // The host bounds `shutdown` by its call timeout and drops this future when it
        // expires, possibly before the grace period is over: the group is then killed here,
        // not left running (a no-op once the child was reaped).
        let _kill_if_abandoned = KillGroupOnDrop(process.clone());
        process.stop(libc::SIGTERM);
        if tokio::time::timeout(self.spec.shutdown_grace, process.exited())
            .await
            .is_ok()
        {
            return Ok(());
        }
        process.signal(libc::SIGKILL);
        match tokio::time::timeout(KILL_WAIT, process.exited()).await {
            Ok(_) => Ok(()),
            Err(_) => Err(PluginError::Timeout(format!(
                "process {} of plugin '{}' was not reaped within {} s of SIGKILL",
                process.pid(),
                self.name(),
                KILL_WAIT.as_secs()
            ))),
        }
    }
}

/// SIGKILL to a child's group when dropped (unless it was reaped already): an abandoned
/// `shutdown` still ends the child.
struct KillGroupOnDrop(Arc<ChildProcess>);

impl Drop for KillGroupOnDrop {
    fn drop(&mut self) {
        self.0.stop(libc::SIGKILL);
    }
}

impl Drop for ProcessPlugin {
    /// Dropped without `shutdown`: SIGKILL to the group (the waiter thread reaps it).
    fn drop(&mut self) {
        if let State::Live(live) = &*self.state.get_mut() {
            live.process.stop(libc::SIGKILL);
        }
    }
}
