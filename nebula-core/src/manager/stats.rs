//! Per-plugin call statistics: counts and latency percentiles per method.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use serde::Serialize;

use super::{CallFailure, Method};

/// Latencies kept per method for percentiles (the most recent ones).
const LATENCY_WINDOW: usize = 1024;

/// How a call ended, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Ok,
    Error,
    Timeout,
    Panic,
}

impl From<Outcome> for crate::metrics::CallOutcome {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Ok => Self::Ok,
            Outcome::Error => Self::Error,
            Outcome::Timeout => Self::Timeout,
            Outcome::Panic => Self::Panic,
        }
    }
}

impl Outcome {
    pub(crate) fn of(failure: Option<&CallFailure>) -> Self {
        match failure {
            None => Outcome::Ok,
            Some(CallFailure::Error(_)) => Outcome::Error,
            Some(CallFailure::TimedOut(_)) => Outcome::Timeout,
            Some(CallFailure::Panicked(_)) => Outcome::Panic,
        }
    }
}

#[derive(Debug, Default)]
struct MethodStats {
    calls: u64,
    ok: u64,
    errors: u64,
    timeouts: u64,
    panics: u64,
    latencies_ms: VecDeque<f64>,
}

/// Counters of one plugin, all methods.
#[derive(Debug, Default)]
pub(crate) struct CallStats {
    by_method: BTreeMap<&'static str, MethodStats>,
}

impl CallStats {
    pub(crate) fn record(&mut self, method: Method, elapsed: Duration, outcome: Outcome) {
        let m = self.by_method.entry(method.as_str()).or_default();
        m.calls += 1;
        match outcome {
            Outcome::Ok => m.ok += 1,
            Outcome::Error => m.errors += 1,
            Outcome::Timeout => m.timeouts += 1,
            Outcome::Panic => m.panics += 1,
        }
        if m.latencies_ms.len() == LATENCY_WINDOW {
            m.latencies_ms.pop_front();
        }
        m.latencies_ms.push_back(elapsed.as_secs_f64() * 1000.0);
    }

    pub(crate) fn snapshot(&self) -> BTreeMap<&'static str, MethodSnapshot> {
        self.by_method
            .iter()
            .map(|(name, m)| {
                let mut sorted: Vec<f64> = m.latencies_ms.iter().copied().collect();
                sorted.sort_by(f64::total_cmp);
                (
                    *name,
                    MethodSnapshot {
                        calls: m.calls,
                        ok: m.ok,
                        errors: m.errors,
                        timeouts: m.timeouts,
                        panics: m.panics,
                        p50_ms: percentile(&sorted, 0.50),
                        p95_ms: percentile(&sorted, 0.95),
                        p99_ms: percentile(&sorted, 0.99),
                        max_ms: sorted.last().copied(),
                    },
                )
            })
            .collect()
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

/// One method's counters (percentiles over the last 1024 calls).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MethodSnapshot {
    /// Calls made.
    pub calls: u64,
    /// Calls that succeeded.
    pub ok: u64,
    /// Calls that returned an error.
    pub errors: u64,
    /// Calls that timed out.
    pub timeouts: u64,
    /// Calls that panicked.
    pub panics: u64,
    /// Median latency.
    pub p50_ms: Option<f64>,
    /// 95th percentile latency.
    pub p95_ms: Option<f64>,
    /// 99th percentile latency.
    pub p99_ms: Option<f64>,
    /// Slowest call in the window.
    pub max_ms: Option<f64>,
}

/// `GET /system/plugins/{name}/stats`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PluginStats {
    /// The plugin.
    pub plugin: String,
    /// Its state.
    pub status: super::PluginStatus,
    /// Whether it is enabled.
    pub enabled: bool,
    /// Seconds since the current instance initialised; null without one.
    pub uptime_sec: Option<f64>,
    /// The lifecycle counters, as in the record (flattened into the JSON).
    #[serde(flatten)]
    pub counters: super::Counters,
    /// Duration of the last call.
    pub last_call_ms: Option<f64>,
    /// Per method (`initialize`, `health`, `sync_users`, `shutdown`).
    pub methods: BTreeMap<&'static str, MethodSnapshot>,
    /// The process of a process plugin's current instance; absent for other plugins.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<ProcessInfo>,
}

/// A process plugin's process, as `GET …/stats` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProcessInfo {
    /// Its pid; null while no process runs (between a crash and the restart).
    pub pid: Option<u32>,
    /// Its resident memory, bytes (`/proc/PID/statm`); null without a process.
    pub rss_bytes: Option<u64>,
}

impl ProcessInfo {
    /// Reads the resident memory of `pid` now.
    pub(super) fn of(pid: Option<u32>) -> Self {
        ProcessInfo {
            pid,
            rss_bytes: pid.and_then(resident_bytes),
        }
    }
}

/// Resident memory of `pid`: the `VmRSS` line of `/proc/PID/status` (in kB, whatever the
/// page size).
fn resident_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.50), Some(50.0));
        assert_eq!(percentile(&v, 0.95), Some(95.0));
        assert_eq!(percentile(&v, 0.99), Some(99.0));
        assert_eq!(percentile(&[7.0], 0.99), Some(7.0));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn outcomes_are_counted_per_method_and_the_window_is_bounded() {
        let mut s = CallStats::default();
        for i in 0..2000 {
            s.record(Method::Health, Duration::from_millis(i % 10), Outcome::Ok);
        }
        s.record(Method::SyncUsers, Duration::from_secs(1), Outcome::Timeout);
        let snap = s.snapshot();
        assert_eq!(snap["health"].calls, 2000);
        assert_eq!(s.by_method["health"].latencies_ms.len(), LATENCY_WINDOW);
        assert_eq!(snap["sync_users"].timeouts, 1);
        assert_eq!(snap["sync_users"].max_ms, Some(1000.0));
    }
}
