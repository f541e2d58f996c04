//! The files of an instance in the run directory (its socket and pid file), and
//! [`reap_leftovers`], which reads the pid files a previous core left.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use parking_lot::Mutex;

use crate::{procfs, ProcessError};

/// Longest socket path: `sun_path` is 108 bytes, NUL included.
pub const MAX_SOCKET_PATH: usize = 107;

/// Pid files of the instances alive in this process: [`reap_leftovers`] leaves them alone,
/// whenever it is called.
static LIVE_PID_FILES: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

/// Where one instance's socket and pid file go.
#[derive(Debug, Clone)]
pub(crate) struct InstanceFiles {
    /// The socket the child serves on (absolute).
    pub(crate) socket: PathBuf,
    /// The pid file (absolute).
    pub(crate) pid_file: PathBuf,
}

impl InstanceFiles {
    /// Chooses fresh paths for an instance of `name` (a random id per start) and removes
    /// whatever is at the socket path.
    pub(crate) fn prepare(run_dir: &Path, name: &str) -> Result<Self, ProcessError> {
        let io = |what, path: &Path| {
            let path = path.to_path_buf();
            move |source| ProcessError::Io {
                plugin: name.to_owned(),
                what,
                path,
                source,
            }
        };
        let run_dir = crate::absolute(run_dir);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&run_dir)
            .map_err(io("creating the run directory", &run_dir))?;
        let id = format!("{:08x}", rand::random::<u32>());
        let file_name = format!("{name}.{id}.sock");
        let mut socket = run_dir.join(&file_name);
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            let fallback = fallback_socket_dir()
                .map_err(io("preparing the socket directory", &std::env::temp_dir()))?;
            let short = fallback.join(&file_name);
            if short.as_os_str().len() > MAX_SOCKET_PATH {
                return Err(ProcessError::SocketPathTooLong {
                    plugin: name.to_owned(),
                    path: short,
                });
            }
            socket = short;
        }
        remove_socket(&socket).map_err(io("removing the old socket", &socket))?;
        Ok(InstanceFiles {
            socket,
            pid_file: run_dir.join(format!("{name}.{id}.pid")),
        })
    }

    /// Writes the pid file (mode 0600): the pid, the plugin directory, the socket.
    pub(crate) fn write_pid_file(&self, pid: u32, dir: &Path) -> std::io::Result<()> {
        LIVE_PID_FILES.lock().insert(self.pid_file.clone());
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&self.pid_file)?;
        writeln!(file, "{pid}\n{}\n{}", dir.display(), self.socket.display())
    }

    /// Removes the socket and the pid file (after the child was reaped).
    pub(crate) fn remove(&self) {
        let _ = remove_socket(&self.socket);
        let _ = fs::remove_file(&self.pid_file);
        LIVE_PID_FILES.lock().remove(&self.pid_file);
    }
}

/// Removes `path` when it is a socket (or absent); anything else there is an error, so a
/// misconfiguration never deletes a real file.
fn remove_socket(path: &Path) -> std::io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => fs::remove_file(path),
        Ok(_) => Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "exists and is not a socket",
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// `<temp dir>/nebula-run-<uid>`, created 0700; refused unless it is a real directory of
/// this user that nobody else may enter (a socket there must not be reachable by others).
/// Where sockets go when their directory's path is too long for a unix socket.
pub fn fallback_socket_dir() -> std::io::Result<PathBuf> {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    let dir = std::env::temp_dir().join(format!("nebula-run-{uid}"));
    match fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = fs::symlink_metadata(&dir)?;
    if !meta.is_dir() || meta.uid() != uid || meta.mode() & 0o077 != 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "{} is not a private directory of this user (0700)",
                dir.display()
            ),
        ));
    }
    Ok(dir)
}

/// A pid file's content.
#[derive(Debug, PartialEq, Eq)]
struct Recorded {
    pid: u32,
    dir: PathBuf,
    socket: Option<PathBuf>,
}

fn parse_pid_file(text: &str) -> Option<Recorded> {
    let mut lines = text.lines();
    let pid: u32 = lines.next()?.trim().parse().ok()?;
    let dir = PathBuf::from(lines.next()?);
    let socket = lines.next().filter(|l| !l.is_empty()).map(PathBuf::from);
    (pid > 1 && dir.is_absolute()).then_some(Recorded { pid, dir, socket })
}

/// At start-up, before any instance starts: kills the process groups recorded in the pid
/// files of `run_dir` by a previous core that died without stopping them (its children die
/// with it, by the parent-death signal, but not their own children), and removes those pid
/// files and their sockets. Answers one line per pid file, for the log.
///
/// A group is killed (SIGKILL) only if `/proc` shows it is the recorded one: when the recorded
/// pid is alive, it must still lead its own process group and have the recorded plugin
/// directory as its working directory; when the leader is gone, a member of its group must
/// have that working directory. Anything else (the pid reused by an unrelated process) is
/// left alone. Pid files of instances alive in this process are skipped.
pub fn reap_leftovers(run_dir: &Path) -> Vec<String> {
    let mut done = Vec::new();
    let Ok(entries) = fs::read_dir(run_dir) else {
        return done;
    };
    let live = LIVE_PID_FILES.lock().clone();
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "pid"))
        .filter(|p| !live.contains(&crate::absolute(p)))
        .collect();
    files.sort();
    for file in files {
        let shown = file.display();
        let Some(recorded) = fs::read_to_string(&file)
            .ok()
            .and_then(|t| parse_pid_file(&t))
        else {
            let _ = fs::remove_file(&file);
            done.push(format!("{shown}: unreadable pid file removed"));
            continue;
        };
        done.push(format!("{shown}: {}", reap_recorded(&recorded)));
        if let Some(socket) = &recorded.socket {
            let _ = remove_socket(socket);
        }
        let _ = fs::remove_file(&file);
    }
    done
}

/// Kills the recorded group if `/proc` confirms it (see [`reap_leftovers`]); says what it did.
fn reap_recorded(recorded: &Recorded) -> String {
    let Recorded { pid, dir, .. } = recorded;
    let Ok(pgid) = i32::try_from(*pid) else {
        return format!("pid {pid} is out of range; nothing done");
    };
    // This process may have been given the number of a previous core's child: never signal
    // our own process group.
    // SAFETY: getpgrp has no preconditions.
    if *pid == std::process::id() || pgid == unsafe { libc::getpgrp() } {
        return format!("pid {pid} is this process's own group: left alone");
    }
    let members: Vec<u32> = procfs::pids()
        .into_iter()
        .filter(|p| procfs::stat(*p).is_some_and(|s| s.pgrp == pgid && s.state != 'Z'))
        .collect();
    let in_dir = |p: &u32| procfs::cwd(*p).as_deref() == Some(dir.as_path());
    let leader = procfs::stat(*pid).filter(|s| s.state != 'Z');
    let confirmed = match leader {
        // The leader alive: it must still be the plugin's (pid reuse is the risk).
        Some(stat) => {
            if stat.pgrp != pgid {
                return format!(
                    "pid {pid} is alive but no longer leads its own process group: left alone"
                );
            }
            if !in_dir(pid) {
                return format!(
                    "pid {pid} is alive but its working directory is not {}: not the plugin's process, left alone",
                    dir.display()
                );
            }
            true
        }
        // The leader gone: what is left of its group, if it was started in the plugin's dir.
        None => members.iter().any(in_dir),
    };
    if members.is_empty() {
        return format!("process group {pid} is gone; stale pid file removed");
    }
    if !confirmed {
        return format!(
            "process group {pid} has no process in {}: left alone",
            dir.display()
        );
    }
    // SAFETY: kill has no memory preconditions; -pgid addresses the group.
    let sent = unsafe { libc::kill(-pgid, libc::SIGKILL) } == 0;
    if sent {
        format!(
            "killed process group {pid} ({} process(es)) of plugin directory {} left by a previous run",
            members.len(),
            dir.display()
        )
    } else {
        format!(
            "could not kill process group {pid}: {}",
            std::io::Error::last_os_error()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_files_round_trip() {
        assert_eq!(
            parse_pid_file("1234\n/srv/plugins/x\n/run/x.1.sock\n"),
            Some(Recorded {
                pid: 1234,
                dir: "/srv/plugins/x".into(),
                socket: Some("/run/x.1.sock".into()),
            })
        );
        assert_eq!(parse_pid_file("1\n/srv\n"), None, "never pid 1");
        assert_eq!(parse_pid_file("12\nrelative\n"), None);
        assert_eq!(parse_pid_file("x\n/srv\n"), None);
    }

    #[test]
    fn our_own_group_is_never_signalled() {
        let here = std::env::current_dir().unwrap();
        // SAFETY: getpgrp has no preconditions.
        let own_group = unsafe { libc::getpgrp() } as u32;
        for pid in [std::process::id(), own_group] {
            let said = reap_recorded(&Recorded {
                pid,
                dir: here.clone(),
                socket: None,
            });
            assert!(said.contains("own group"), "{said}");
        }
    }

    #[test]
    fn a_long_run_dir_moves_the_socket_to_a_private_temp_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let long = tmp.path().join("d".repeat(100));
        let files = InstanceFiles::prepare(&long, "plugin_x").unwrap();
        assert!(files.socket.as_os_str().len() <= MAX_SOCKET_PATH);
        assert!(files.socket.starts_with(std::env::temp_dir()));
        assert!(files.pid_file.starts_with(&long));
        let short = InstanceFiles::prepare(tmp.path(), "plugin_x").unwrap();
        assert!(short.socket.starts_with(tmp.path()));
        assert_ne!(short.socket, files.socket, "a fresh id per start");
        let mode = fs::metadata(&long).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700, "a missing run dir is created private");
    }

    #[test]
    fn only_sockets_are_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("x.sock");
        fs::write(&file, "data").unwrap();
        assert!(remove_socket(&file).is_err());
        assert!(file.exists());
        assert!(remove_socket(&tmp.path().join("absent.sock")).is_ok());
    }
}
