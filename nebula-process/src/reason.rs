//! Why a child ended, in the words the core reports (SPEC §9: "crashed with the exit code or
//! signal"; "a limit kill is reported as the reason").

use std::fmt;

/// How a child ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ExitReason {
    /// It exited with this code.
    Code(i32),
    /// A signal killed it.
    Signal {
        /// The signal number.
        signal: i32,
        /// The kernel wrote a core dump.
        core_dumped: bool,
    },
    /// The memory monitor killed it.
    MemoryLimit {
        /// The limit, MiB.
        limit_mb: u64,
        /// The resident memory seen, MiB.
        rss_mb: u64,
    },
    /// `RLIMIT_CPU` killed it: `signal` is SIGXCPU (the soft limit) or SIGKILL (the hard one).
    CpuLimit {
        /// The limit, seconds.
        limit_sec: u64,
        /// The signal that ended it.
        signal: i32,
    },
    /// Its status could not be learnt (something else in this process reaped it).
    Unknown,
}

impl ExitReason {
    /// The reason from a `wait4` status, given what this crate knows: whether the memory
    /// monitor killed it (`limit_kill`), the CPU limit and the CPU time the child used.
    pub(crate) fn from_status(
        status: libc::c_int,
        limit_kill: Option<ExitReason>,
        cpu_limit_sec: Option<u64>,
        cpu_used: std::time::Duration,
    ) -> ExitReason {
        if let Some(reason) = limit_kill {
            return reason;
        }
        if libc::WIFEXITED(status) {
            return ExitReason::Code(libc::WEXITSTATUS(status));
        }
        if libc::WIFSIGNALED(status) {
            let signal = libc::WTERMSIG(status);
            if let Some(limit_sec) = cpu_limit_sec {
                // SIGXCPU only comes from RLIMIT_CPU's soft limit (nothing here sends it);
                // SIGKILL is the hard limit's when the child had used its CPU time (it had
                // ignored or handled SIGXCPU).
                let at_hard_limit =
                    signal == libc::SIGKILL && cpu_used.as_secs_f64() >= limit_sec as f64;
                if signal == libc::SIGXCPU || at_hard_limit {
                    return ExitReason::CpuLimit { limit_sec, signal };
                }
            }
            return ExitReason::Signal {
                signal,
                core_dumped: libc::WCOREDUMP(status),
            };
        }
        ExitReason::Unknown
    }

    /// The reason in a sentence about the process, for call errors
    /// (`process exited with code 3`, `process killed: memory limit 64 MiB exceeded …`).
    pub(crate) fn process_text(&self) -> String {
        match self {
            ExitReason::Code(_) | ExitReason::Signal { .. } => format!("process {self}"),
            ExitReason::Unknown => "process ended (status unknown)".into(),
            ExitReason::MemoryLimit { .. } | ExitReason::CpuLimit { .. } => {
                format!("process killed: {self}")
            }
        }
    }

    /// The reason for a child that ended before it was ready, with its last stderr line.
    pub(crate) fn before_ready(&self, last_stderr: Option<&str>) -> String {
        let mut text = match self {
            ExitReason::Code(_) | ExitReason::Signal { .. } => {
                format!("process {self} before it was ready")
            }
            ExitReason::Unknown => "process ended before it was ready (status unknown)".into(),
            ExitReason::MemoryLimit { .. } | ExitReason::CpuLimit { .. } => {
                format!("process killed before it was ready: {self}")
            }
        };
        if let Some(line) = last_stderr {
            text.push_str(": ");
            text.push_str(line);
        }
        text
    }
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitReason::Code(code) => write!(f, "exited with code {code}"),
            ExitReason::Signal {
                signal,
                core_dumped,
            } => {
                write!(f, "killed by signal {signal}")?;
                if let Some(name) = signal_name(*signal) {
                    write!(f, " ({name})")?;
                }
                if *core_dumped {
                    f.write_str(", core dumped")?;
                }
                Ok(())
            }
            ExitReason::MemoryLimit { limit_mb, rss_mb } => {
                write!(f, "memory limit {limit_mb} MiB exceeded (RSS {rss_mb} MiB)")
            }
            ExitReason::CpuLimit { limit_sec, signal } => {
                if *signal == libc::SIGXCPU {
                    write!(f, "CPU time limit {limit_sec} s exceeded (SIGXCPU)")
                } else {
                    write!(
                        f,
                        "CPU time limit {limit_sec} s exceeded (SIGKILL at the hard limit)"
                    )
                }
            }
            ExitReason::Unknown => f.write_str("ended (status unknown)"),
        }
    }
}

/// The name of a Linux signal (`SIGKILL`), if it has one.
pub(crate) fn signal_name(signal: i32) -> Option<&'static str> {
    Some(match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGSTKFLT => "SIGSTKFLT",
        libc::SIGCHLD => "SIGCHLD",
        libc::SIGCONT => "SIGCONT",
        libc::SIGSTOP => "SIGSTOP",
        libc::SIGTSTP => "SIGTSTP",
        libc::SIGTTIN => "SIGTTIN",
        libc::SIGTTOU => "SIGTTOU",
        libc::SIGURG => "SIGURG",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGVTALRM => "SIGVTALRM",
        libc::SIGPROF => "SIGPROF",
        libc::SIGWINCH => "SIGWINCH",
        libc::SIGIO => "SIGIO",
        libc::SIGPWR => "SIGPWR",
        libc::SIGSYS => "SIGSYS",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    // wait(2) statuses as the kernel encodes them.
    fn exited(code: i32) -> i32 {
        (code & 0xff) << 8
    }
    fn signaled(signal: i32, core: bool) -> i32 {
        signal | if core { 0x80 } else { 0 }
    }

    #[test]
    fn statuses_become_the_reported_reasons() {
        let none = Duration::ZERO;
        assert_eq!(
            ExitReason::from_status(exited(3), None, None, none).to_string(),
            "exited with code 3"
        );
        assert_eq!(
            ExitReason::from_status(signaled(9, false), None, None, none).to_string(),
            "killed by signal 9 (SIGKILL)"
        );
        assert_eq!(
            ExitReason::from_status(signaled(11, true), None, None, none).to_string(),
            "killed by signal 11 (SIGSEGV), core dumped"
        );
        assert_eq!(
            ExitReason::from_status(signaled(40, false), None, None, none).to_string(),
            "killed by signal 40"
        );
    }

    #[test]
    fn limit_kills_are_reported_as_the_limit() {
        let memory = ExitReason::MemoryLimit {
            limit_mb: 64,
            rss_mb: 80,
        };
        // The monitor's reason wins over the SIGKILL it sent.
        let reason =
            ExitReason::from_status(signaled(9, false), Some(memory), None, Duration::ZERO);
        assert_eq!(
            reason.to_string(),
            "memory limit 64 MiB exceeded (RSS 80 MiB)"
        );
        assert_eq!(
            reason.process_text(),
            "process killed: memory limit 64 MiB exceeded (RSS 80 MiB)"
        );
        let xcpu = ExitReason::from_status(
            signaled(libc::SIGXCPU, true),
            None,
            Some(2),
            Duration::from_secs(2),
        );
        assert_eq!(xcpu.to_string(), "CPU time limit 2 s exceeded (SIGXCPU)");
        let hard = ExitReason::from_status(
            signaled(9, false),
            None,
            Some(2),
            Duration::from_millis(3010),
        );
        assert_eq!(
            hard.to_string(),
            "CPU time limit 2 s exceeded (SIGKILL at the hard limit)"
        );
        // A SIGKILL long before the CPU limit is a plain kill.
        let kill = ExitReason::from_status(
            signaled(9, false),
            None,
            Some(2),
            Duration::from_millis(100),
        );
        assert_eq!(kill.to_string(), "killed by signal 9 (SIGKILL)");
    }

    #[test]
    fn an_exit_before_ready_names_the_code_and_the_last_stderr_line() {
        assert_eq!(
            ExitReason::Code(3).before_ready(Some("bad config")),
            "process exited with code 3 before it was ready: bad config"
        );
        assert_eq!(
            ExitReason::Signal {
                signal: 9,
                core_dumped: false
            }
            .before_ready(None),
            "process killed by signal 9 (SIGKILL) before it was ready"
        );
    }
}
