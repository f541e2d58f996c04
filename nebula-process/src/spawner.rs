//! Building the child's command, and the one thread that forks every child.
//!
//! `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits, not the process.
//! So every child is forked by one dedicated thread that never exits (its channel's sender
//! lives in a static): the parent-death signal then fires only when the core itself dies.
//! Forking from tokio's blocking pool would kill children whenever an idle pool thread
//! retires.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::Mutex;

use crate::{ProcessError, ProcessLimits, ProcessSpec, DEFAULT_PATH};

/// Work for the spawner thread.
pub(crate) type Job = Box<dyn FnOnce() + Send + 'static>;

/// The spawner's queue; created with the thread on first use and never dropped, so the
/// thread never exits.
static SPAWNER: Mutex<Option<mpsc::Sender<Job>>> = Mutex::new(None);

/// Runs `job` on the spawner thread (starting it on first use).
pub(crate) fn on_spawner_thread(job: Job) -> io::Result<()> {
    let mut spawner = SPAWNER
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let sender = match spawner.as_ref() {
        Some(sender) => sender,
        None => {
            let (sender, jobs) = mpsc::channel::<Job>();
            std::thread::Builder::new()
                .name("nebula-spawner".into())
                .spawn(move || run_jobs(&jobs))?;
            spawner.insert(sender)
        }
    };
    sender
        .send(job)
        .map_err(|_| io::Error::other("the spawner thread is gone"))
}

/// The spawner thread's loop. A panicking job must not end the thread (its children would
/// get their parent-death signal), so each job runs under `catch_unwind`.
fn run_jobs(jobs: &mpsc::Receiver<Job>) {
    while let Ok(job) = jobs.recv() {
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
            tracing::error!("a process-plugin spawn job panicked; the spawner thread goes on");
        }
    }
}

/// The `PATH` a child of `spec` gets: the manifest's when it sets one, else the core's, else
/// [`DEFAULT_PATH`].
fn child_path(spec: &ProcessSpec) -> OsString {
    spec.env
        .get("PATH")
        .map(OsString::from)
        .or_else(|| std::env::var_os("PATH"))
        .unwrap_or_else(|| DEFAULT_PATH.into())
}

/// The executable of `spec` (the rule of [`ProcessSpec::command`]).
pub(crate) fn resolve_program(spec: &ProcessSpec) -> Result<PathBuf, ProcessError> {
    let program = spec
        .command
        .first()
        .filter(|p| !p.is_empty())
        .ok_or_else(|| ProcessError::EmptyCommand(spec.name.clone()))?;
    let dir = crate::absolute(&spec.dir);
    let not_found = |looked: String| ProcessError::ProgramNotFound {
        plugin: spec.name.clone(),
        program: program.clone(),
        looked,
    };
    let path = if program.contains('/') {
        // Absolute stays absolute (join replaces); anything else is relative to the dir.
        let path = dir.join(program);
        if !path.is_file() {
            return Err(not_found(path.display().to_string()));
        }
        path
    } else {
        let local = dir.join(program);
        if local.is_file() {
            local
        } else {
            let search = child_path(spec);
            search_path(program, &search).ok_or_else(|| {
                not_found(format!(
                    "{} and PATH={}",
                    dir.display(),
                    search.to_string_lossy()
                ))
            })?
        }
    };
    let executable = std::fs::metadata(&path).is_ok_and(|m| m.permissions().mode() & 0o111 != 0);
    if !executable {
        return Err(ProcessError::NotExecutable {
            plugin: spec.name.clone(),
            path,
        });
    }
    Ok(path)
}

/// The first executable file `name` in the directories of `path`.
fn search_path(name: &str, path: &OsStr) -> Option<PathBuf> {
    std::env::split_paths(path)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(name))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// The environment of a child, in the order it is applied (later wins): `PATH`, the
/// manifest's env, then the runtime's own variables, which the manifest cannot override.
pub(crate) fn child_env(
    spec: &ProcessSpec,
    socket: &Path,
    token: &str,
    host: Option<&(String, String)>,
) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = vec![("PATH".into(), child_path(spec))];
    env.extend(
        spec.env
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v))),
    );
    let own = [
        (crate::PLUGIN_NAME_ENV, OsString::from(&spec.name)),
        (crate::PLUGIN_SOCKET_ENV, socket.as_os_str().to_owned()),
        (crate::PLUGIN_TOKEN_ENV, OsString::from(token)),
        (
            crate::PLUGIN_MAX_MESSAGE_BYTES_ENV,
            OsString::from(spec.max_message_bytes.to_string()),
        ),
        (
            crate::PLUGIN_CALL_TIMEOUT_MS_ENV,
            OsString::from(spec.call_timeout.as_millis().to_string()),
        ),
    ];
    env.extend(own.into_iter().map(|(k, v)| (OsString::from(k), v)));
    if let Some((endpoint, host_token)) = host {
        env.push((crate::HOST_ENDPOINT_ENV.into(), endpoint.into()));
        env.push((crate::HOST_TOKEN_ENV.into(), host_token.into()));
    }
    env
}

/// The limits as plain numbers, for the child's set-up between fork and exec (which must not
/// allocate).
#[derive(Debug, Clone, Copy)]
struct RawLimits {
    cpu_sec: Option<u64>,
    open_files: Option<u64>,
    processes: Option<u64>,
}

/// The command of a child: program, arguments, working directory, clean environment,
/// stdin closed, stdout and stderr piped, and the set-up run in the child before exec (its
/// own process group, the parent-death signal, the rlimits). `parent` is this process's pid.
pub(crate) fn command(
    program: &Path,
    spec: &ProcessSpec,
    dir: &Path,
    env: Vec<(OsString, OsString)>,
    parent: u32,
) -> Command {
    let mut command = Command::new(program);
    command
        .args(spec.command.iter().skip(1))
        .current_dir(dir)
        .env_clear()
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let ProcessLimits {
        cpu_time_limit_sec,
        max_open_files,
        max_processes,
        ..
    } = spec.limits;
    let limits = RawLimits {
        cpu_sec: cpu_time_limit_sec,
        open_files: max_open_files,
        processes: max_processes,
    };
    let parent = libc::pid_t::try_from(parent).unwrap_or(0);
    // SAFETY: the closure runs in the child between fork and exec and calls only
    // async-signal-safe functions (setpgid, prctl, getppid, close_range, getrlimit, setrlimit,
    // _exit); it
    // allocates nothing (`io::Error::last_os_error` is an errno, not a heap value).
    unsafe {
        command.pre_exec(move || child_setup(parent, limits));
    }
    command
}

/// The child's set-up, between fork and exec (see [`command`]).
fn child_setup(parent: libc::pid_t, limits: RawLimits) -> io::Result<()> {
    // SAFETY: plain system calls on this (the child) process; see `command`.
    unsafe {
        // Its own process group: the core signals the plugin and all it starts at once.
        if libc::setpgid(0, 0) != 0 {
            return Err(io::Error::last_os_error());
        }
        // SIGKILL when the spawner thread (that is, the core) dies.
        if libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        ) != 0
        {
            return Err(io::Error::last_os_error());
        }
        // The core may have died between fork and prctl: then no signal will ever come.
        if libc::getppid() != parent {
            libc::_exit(126);
        }
        // Descriptors the core holds without FD_CLOEXEC (opened by C code) must not reach the
        // plugin. Marked close-on-exec rather than closed: std's own pipe, which reports an
        // exec failure to the parent, must stay open until exec. Kernels before 5.11 lack
        // this flag; there only descriptors opened with FD_CLOEXEC (all of Rust's) are closed.
        #[cfg(target_os = "linux")]
        libc::syscall(
            libc::SYS_close_range,
            3 as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
    }
    if let Some(sec) = limits.cpu_sec {
        // SIGXCPU at the soft limit, SIGKILL one second later at the hard one.
        set_limit(libc::RLIMIT_CPU, sec, sec.saturating_add(1))?;
    }
    if let Some(files) = limits.open_files {
        set_limit(libc::RLIMIT_NOFILE, files, files)?;
    }
    if let Some(processes) = limits.processes {
        set_limit(libc::RLIMIT_NPROC, processes, processes)?;
    }
    Ok(())
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
type Resource = libc::__rlimit_resource_t;
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
type Resource = libc::c_int;

/// Sets a limit, never above the current hard limit (raising it needs privileges the core may
/// not have; a limit the core is already under is kept).
fn set_limit(resource: Resource, soft: u64, hard: u64) -> io::Result<()> {
    let mut current = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `current` is a valid rlimit to write into.
    if unsafe { libc::getrlimit(resource, &mut current) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let hard = (hard as libc::rlim_t).min(current.rlim_max);
    let wanted = libc::rlimit {
        rlim_cur: (soft as libc::rlim_t).min(hard),
        rlim_max: hard,
    };
    // SAFETY: `wanted` is a valid rlimit.
    if unsafe { libc::setrlimit(resource, &wanted) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::time::Duration;

    fn spec(dir: &Path, command: &[&str]) -> ProcessSpec {
        ProcessSpec {
            name: "p".into(),
            dir: dir.to_path_buf(),
            command: command.iter().map(|s| s.to_string()).collect(),
            env: BTreeMap::new(),
            run_dir: dir.join("run"),
            limits: ProcessLimits::default(),
            shutdown_grace: Duration::from_secs(1),
            call_timeout: Duration::from_secs(1),
            max_message_bytes: 1024,
        }
    }

    #[test]
    fn programs_resolve_by_the_documented_rule() {
        let tmp = tempfile::tempdir().unwrap();
        let local = tmp.path().join("plugin");
        std::fs::write(&local, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&local, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(tmp.path().join("data"), "").unwrap();

        assert_eq!(
            resolve_program(&spec(tmp.path(), &["./plugin"])).unwrap(),
            tmp.path().join("./plugin")
        );
        assert_eq!(
            resolve_program(&spec(tmp.path(), &["plugin"])).unwrap(),
            local
        );
        assert_eq!(
            resolve_program(&spec(tmp.path(), &["/bin/sh"])).unwrap(),
            PathBuf::from("/bin/sh")
        );
        let sh = resolve_program(&spec(tmp.path(), &["sh"])).unwrap();
        assert!(sh.is_absolute() && sh.ends_with("sh"), "{sh:?}");
        assert!(matches!(
            resolve_program(&spec(tmp.path(), &[])),
            Err(ProcessError::EmptyCommand(_))
        ));
        assert!(matches!(
            resolve_program(&spec(tmp.path(), &["./missing"])),
            Err(ProcessError::ProgramNotFound { .. })
        ));
        assert!(matches!(
            resolve_program(&spec(tmp.path(), &["no-such-program-anywhere"])),
            Err(ProcessError::ProgramNotFound { .. })
        ));
        assert!(matches!(
            resolve_program(&spec(tmp.path(), &["./data"])),
            Err(ProcessError::NotExecutable { .. })
        ));
    }

    #[test]
    fn the_manifest_cannot_override_the_runtime_variables() {
        let tmp = tempfile::tempdir().unwrap();
        let mut spec = spec(tmp.path(), &["x"]);
        spec.env
            .insert("NEBULA_PLUGIN_TOKEN".into(), "forged".into());
        spec.env.insert("PATH".into(), "/opt/bin".into());
        spec.env.insert("KEY".into(), "value".into());
        let env = child_env(&spec, Path::new("/run/p.sock"), "real", None);
        let last = |key: &str| {
            env.iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.to_string_lossy().into_owned())
        };
        assert_eq!(last("NEBULA_PLUGIN_TOKEN").as_deref(), Some("real"));
        assert_eq!(last("PATH").as_deref(), Some("/opt/bin"));
        assert_eq!(last("KEY").as_deref(), Some("value"));
        assert_eq!(last("NEBULA_HOST_ENDPOINT"), None);
    }
}
