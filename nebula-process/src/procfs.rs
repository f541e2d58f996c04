//! What `/proc` and `/sys/fs/cgroup` say about processes (Linux only).

use std::path::{Path, PathBuf};

/// The fields of `/proc/PID/stat` this crate reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcStat {
    /// `R`, `S`, `D`, `Z`, …
    pub(crate) state: char,
    /// The parent's pid.
    pub(crate) ppid: i32,
    /// The process group.
    pub(crate) pgrp: i32,
}

/// `/proc/PID/stat` of `pid`, if it exists.
pub(crate) fn stat(pid: u32) -> Option<ProcStat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Parses a `stat` line: `pid (comm) state ppid pgrp …`. The command name may hold spaces and
/// parentheses, so the fields are read after the *last* `)`.
fn parse_stat(text: &str) -> Option<ProcStat> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some(ProcStat { state, ppid, pgrp })
}

/// The working directory of `pid` (`/proc/PID/cwd`), if it can be read (not for a zombie).
pub(crate) fn cwd(pid: u32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/cwd")).ok()
}

/// Every pid `/proc` lists.
pub(crate) fn pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The resident memory of the whole process group `pgid` (the plugin and everything it
/// started and did not move out of its group), in bytes; `None` when the leader is gone. A
/// `run.sh` that starts `python3 plugin.py` without `exec` is measured by its Python, not by
/// its shell. One pass over `/proc` per call: the poll runs every 200 ms.
pub(crate) fn group_resident_bytes(pgid: u32) -> Option<u64> {
    let leader = resident_bytes(pgid)?;
    let others: u64 = pids()
        .into_iter()
        .filter(|&pid| pid != pgid)
        .filter(|&pid| stat(pid).is_some_and(|s| s.pgrp == pgid as i32))
        .filter_map(resident_bytes)
        .sum();
    Some(leader + others)
}

/// The resident memory of `pid` in bytes, from `/proc/PID/statm` (its second field, in
/// pages); `None` when the process is gone.
pub fn resident_bytes(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = text.split_ascii_whitespace().nth(1)?.parse().ok()?;
    Some(pages.saturating_mul(page_size()))
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).ok().filter(|s| *s > 0).unwrap_or(4096)
}

/// Whether this process could put children in cgroup v2 groups of their own with a memory
/// controller: a `cgroup2` file system is mounted, this process's cgroup in it has the
/// `memory` controller available, and the cgroup directory and its `cgroup.subtree_control`
/// are writable. Detection only: the runtime does not write cgroups yet (limits are
/// setrlimit and the RSS monitor). On hosts that bind every controller to cgroup v1 and
/// mount an empty v2 hierarchy, this is `false`.
pub fn cgroup_v2_writable() -> bool {
    let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let Ok(membership) = std::fs::read_to_string("/proc/self/cgroup") else {
        return false;
    };
    let Some(own) = membership.lines().find_map(|l| l.strip_prefix("0::")) else {
        return false;
    };
    cgroup2_mounts(&mountinfo).into_iter().any(|mount| {
        let dir = mount.join(own.trim_start_matches('/'));
        let controllers =
            std::fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
        controllers.split_ascii_whitespace().any(|c| c == "memory")
            && writable(&dir)
            && writable(&dir.join("cgroup.subtree_control"))
    })
}

/// The mount points of `cgroup2` file systems in a `mountinfo` text (the file system type is
/// the first field after ` - `; the mount point is the fifth field).
fn cgroup2_mounts(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (mount, fs) = line.split_once(" - ")?;
            if fs.split_ascii_whitespace().next()? != "cgroup2" {
                return None;
            }
            // Spaces in mount points are written as \040.
            let point = mount.split_ascii_whitespace().nth(4)?.replace("\\040", " ");
            Some(PathBuf::from(point))
        })
        .collect()
}

fn writable(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: c_path is a valid NUL-terminated string.
    unsafe { libc::access(c_path.as_ptr(), libc::W_OK) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_are_read_after_the_command_name() {
        assert_eq!(
            parse_stat("42 (a (weird) name) S 1 42 42 0 -1 4194560"),
            Some(ProcStat {
                state: 'S',
                ppid: 1,
                pgrp: 42
            })
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn this_process_is_seen() {
        let me = std::process::id();
        let stat = stat(me).expect("own stat");
        assert!(matches!(stat.state, 'R' | 'S'));
        assert!(resident_bytes(me).is_some_and(|b| b > 0));
        assert_eq!(cwd(me).as_deref(), std::env::current_dir().ok().as_deref());
        assert!(pids().contains(&me));
    }

    #[test]
    fn cgroup2_mount_points_are_found() {
        let info = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
                    35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
                    41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup2_mounts(info),
            vec![PathBuf::from("/sys/fs/cgroup/unified")]
        );
    }
}
