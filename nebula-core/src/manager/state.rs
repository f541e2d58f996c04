//! A plugin's live state, and the one place where it changes ([`PluginState::observe`]) and
//! where the monitor's restart and disable rules live ([`PluginState::policy`]).

use nebula_plugin_api::ErrorKind;

use super::record::{Counters, PluginStatus};
use super::{CallFailure, Method};

/// The live state of one plugin: what changes as calls succeed and fail.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PluginState {
    pub status: PluginStatus,
    pub message: String,
    pub error: String,
    pub initialized_at: f64,
    pub updated_at: f64,
    pub enabled: bool,
    pub counters: Counters,
    pub last_call_ms: Option<f64>,
    /// When the monitor last restarted the plugin (float Unix seconds).
    pub last_auto_restart_at: Option<f64>,
    /// The last initialise failed in a way a retry cannot fix (endpoint refused by policy,
    /// invalid configuration): the monitor leaves it alone.
    pub retry_is_useless: bool,
}

impl PluginState {
    /// A plugin just discovered.
    pub fn discovered(now: f64) -> Self {
        PluginState {
            status: PluginStatus::Initialized,
            message: "discovered".into(),
            error: String::new(),
            initialized_at: NOT_INITIALIZED,
            updated_at: now,
            enabled: true,
            counters: Counters::default(),
            last_call_ms: None,
            last_auto_restart_at: None,
            retry_is_useless: false,
        }
    }
}

/// Something the manager observed about a plugin.
#[derive(Debug)]
pub(crate) enum Observation<'a> {
    /// A fresh instance finished `initialize`.
    Initialized,
    /// `health` answered; `ok` when its status was `"ok"`.
    HealthAnswered { ok: bool, message: String },
    /// `sync_users` (or `shutdown`) succeeded.
    CallSucceeded,
    /// A call failed.
    Failed {
        method: Method,
        failure: &'a CallFailure,
    },
    /// An admin (or policy) disabled the plugin.
    Disabled { message: String },
    /// An admin enabled the plugin: the automatic-restart budget starts afresh.
    Enabled,
    /// A fresh instance replaced the old one (after `Initialized` or a failed initialise).
    Restarted { automatic: bool, reason: String },
    /// The plugin cannot be loaded at all (bad manifest, duplicate name).
    Broken { error: String },
    /// The current instance died on its own: a process plugin's process exited or was killed
    /// (`reason` says how: exit code, signal, the limit it broke). The manager has detached
    /// it already (`PluginManager::instance_died`), so calls get "not ready" until the
    /// policy's restart.
    Exited { reason: String },
}

impl Observation<'_> {
    /// A call that worked: the kind of outcome a failure recorded meanwhile makes stale.
    pub(crate) fn is_success(&self) -> bool {
        matches!(
            self,
            Observation::HealthAnswered { ok: true, .. } | Observation::CallSucceeded
        )
    }

    /// A failure that says something about the plugin. A caller's bad sync input does not
    /// (health has no input; a failed initialise leaves no instance).
    pub(crate) fn is_plugin_failure(&self) -> bool {
        match self {
            Observation::Failed { method, failure } => {
                *method != Method::SyncUsers
                    || !matches!(
                        failure.error_kind(),
                        Some(ErrorKind::InvalidInput | ErrorKind::NotFound)
                    )
            }
            Observation::Exited { .. } => true,
            _ => false,
        }
    }
}

/// `initialized_at` of a plugin whose current instance has not initialised.
pub(crate) const NOT_INITIALIZED: f64 = 0.0;

/// A healthy check this long after the last automatic restart refills the restart budget.
pub(crate) const RESTART_BUDGET_REFILL_SECS: f64 = 3600.0;

/// Thresholds that move a plugin between states (`[plugins]` keys of the same names).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Thresholds {
    pub timeout_restart_threshold: u32,
    pub health_restart_threshold: u32,
    pub max_restarts: u32,
    pub max_crashes: u32,
}

/// What the health monitor should do with a plugin after a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PolicyAction {
    /// Nothing.
    Keep,
    /// Replace the instance (re-initialise in process, reconnect over gRPC).
    Restart(String),
    /// Switch it off (persisted) until an admin starts it.
    Disable(String),
}

impl PluginState {
    /// The monitor's decision after a check: every restart and disable rule is here.
    pub(crate) fn policy(&self, has_instance: bool, limits: Thresholds) -> PolicyAction {
        if !self.enabled {
            return PolicyAction::Keep;
        }
        // The last error says what went wrong (a panic's text, an exit code): an admin reading
        // "disabled by policy" must not have to dig for it.
        let last_error = if self.error.is_empty() {
            String::new()
        } else {
            format!(" (last error: {})", self.error)
        };
        if self.counters.consecutive_crashes >= limits.max_crashes {
            return PolicyAction::Disable(format!(
                "crashed {} times in a row (plugins.max_crashes = {}){last_error}",
                self.counters.consecutive_crashes, limits.max_crashes
            ));
        }
        let reason = if !has_instance && self.retry_is_useless {
            None
        } else if !has_instance {
            Some(format!("no working instance{last_error}"))
        } else if self.status == PluginStatus::Crashed {
            Some(format!("crashed{last_error}"))
        } else if self.counters.consecutive_timeouts >= limits.timeout_restart_threshold {
            Some(format!(
                "{} timeouts in a row",
                self.counters.consecutive_timeouts
            ))
        } else if self.counters.consecutive_health_failures >= limits.health_restart_threshold {
            Some(format!(
                "{} failed health checks in a row",
                self.counters.consecutive_health_failures
            ))
        } else {
            None
        };
        match reason {
            None => PolicyAction::Keep,
            Some(reason) if self.counters.auto_restarts >= limits.max_restarts => {
                PolicyAction::Disable(format!(
                    "{reason} after {} automatic restarts (plugins.max_restarts = {})",
                    self.counters.auto_restarts, limits.max_restarts
                ))
            }
            Some(reason) => PolicyAction::Restart(reason),
        }
    }

    /// Applies an observation: every state transition of the manager happens here.
    pub(crate) fn observe(&mut self, observation: Observation<'_>, now: f64, limits: Thresholds) {
        self.updated_at = now;
        match observation {
            Observation::Initialized => {
                self.retry_is_useless = false;
                self.status = PluginStatus::Initialized;
                self.message = "initialized".into();
                self.error.clear();
                self.initialized_at = now;
                self.enabled = true;
                // Crashes stay counted across restarts: only a working call clears them, so
                // a plugin that crashes after every restart reaches `max_crashes`.
                self.counters.consecutive_timeouts = 0;
                self.counters.consecutive_health_failures = 0;
            }
            Observation::HealthAnswered { ok: true, .. } => {
                self.counters.consecutive_health_failures = 0;
                self.counters.consecutive_crashes = 0;
                // A plugin healthy again long after its last automatic restart gets its
                // budget back: rare transient failures over months must not disable it.
                if self
                    .last_auto_restart_at
                    .is_some_and(|t| now - t >= RESTART_BUDGET_REFILL_SECS)
                {
                    self.counters.auto_restarts = 0;
                    self.last_auto_restart_at = None;
                }
                // Timeouts of other calls are not cleared by a health answer: a plugin whose
                // sync hangs while health answers stays unresponsive (and gets restarted).
                if self.counters.consecutive_timeouts >= limits.timeout_restart_threshold {
                    self.status = PluginStatus::Unresponsive;
                } else {
                    self.status = PluginStatus::Healthy;
                    self.message = "ok".into();
                    self.error.clear();
                }
            }
            Observation::HealthAnswered { ok: false, message } => {
                self.status = PluginStatus::Degraded;
                self.error = format!("health reported: {message}");
                self.message = message;
                self.counters.consecutive_health_failures += 1;
            }
            Observation::CallSucceeded => {
                self.counters.consecutive_timeouts = 0;
                self.counters.consecutive_crashes = 0;
                // A working call clears call failures, but not what health itself reported.
                let call_failure = matches!(
                    self.status,
                    PluginStatus::Degraded | PluginStatus::Unresponsive | PluginStatus::Crashed
                ) && self.counters.consecutive_health_failures == 0;
                if call_failure {
                    self.status = PluginStatus::Healthy;
                    self.message = "ok".into();
                    self.error.clear();
                }
            }
            ref failed @ Observation::Failed { method, failure } => {
                if !failed.is_plugin_failure() {
                    return;
                }
                self.error = failure.describe(method);
                if method == Method::Health {
                    self.counters.consecutive_health_failures += 1;
                }
                match failure {
                    CallFailure::Panicked(_) => {
                        self.counters.consecutive_crashes += 1;
                        self.status = PluginStatus::Crashed;
                        self.message = format!("crashed in {method}");
                    }
                    CallFailure::TimedOut(_) => {
                        self.counters.consecutive_timeouts += 1;
                        self.status = if self.counters.consecutive_timeouts
                            >= limits.timeout_restart_threshold
                        {
                            PluginStatus::Unresponsive
                        } else {
                            PluginStatus::Degraded
                        };
                        self.message = format!("{method} timed out");
                    }
                    CallFailure::Error(_) => {
                        self.status = PluginStatus::Degraded;
                        self.message = format!("{method} failed");
                    }
                }
                if method == Method::Initialize {
                    self.initialized_at = NOT_INITIALIZED;
                    self.retry_is_useless = matches!(
                        failure,
                        CallFailure::Error(e)
                            if matches!(e.kind(), ErrorKind::PermissionDenied | ErrorKind::InvalidInput)
                    );
                }
            }
            Observation::Disabled { message } => {
                self.status = PluginStatus::Disabled;
                self.message = message;
                self.enabled = false;
            }
            Observation::Enabled => {
                self.enabled = true;
                self.counters.auto_restarts = 0;
                self.counters.consecutive_crashes = 0;
            }
            Observation::Restarted { automatic, reason } => {
                self.counters.restart_count += 1;
                if automatic {
                    self.counters.auto_restarts += 1;
                    self.last_auto_restart_at = Some(now);
                    self.message = format!("{} (restarted: {reason})", self.message);
                } else {
                    self.counters.auto_restarts = 0;
                    self.message = format!("{} (restarted by admin)", self.message);
                }
            }
            Observation::Broken { error } => {
                self.status = PluginStatus::Degraded;
                self.message = "not loaded".into();
                self.error = error;
            }
            Observation::Exited { reason, .. } => {
                self.counters.consecutive_crashes += 1;
                self.status = PluginStatus::Crashed;
                self.message = "process exited".into();
                // "exited with code 3", "killed by signal 9 …" read as they are; a broken
                // limit says what killed the process.
                self.error = if reason.starts_with("exited") || reason.starts_with("killed") {
                    format!("process {reason}")
                } else {
                    format!("process killed: {reason}")
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use nebula_plugin_api::PluginError;

    use super::*;

    const LIMITS: Thresholds = Thresholds {
        timeout_restart_threshold: 3,
        health_restart_threshold: 2,
        max_restarts: 3,
        max_crashes: 3,
    };

    fn record() -> PluginState {
        PluginState {
            status: PluginStatus::Healthy,
            ..PluginState::discovered(0.0)
        }
    }

    #[test]
    fn the_restart_budget_refills_after_an_hour_of_health() {
        let mut r = record();
        for i in 0..3 {
            r.observe(
                Observation::Restarted {
                    automatic: true,
                    reason: "x".into(),
                },
                1000.0 + f64::from(i),
                LIMITS,
            );
        }
        assert_eq!(r.counters.auto_restarts, 3);
        let ok = || Observation::HealthAnswered {
            ok: true,
            message: "ok".into(),
        };
        r.observe(ok(), 1002.0 + RESTART_BUDGET_REFILL_SECS - 1.0, LIMITS);
        assert_eq!(r.counters.auto_restarts, 3, "not yet");
        r.observe(ok(), 1002.0 + RESTART_BUDGET_REFILL_SECS, LIMITS);
        assert_eq!((r.counters.auto_restarts, r.counters.restart_count), (0, 3));
    }

    #[test]
    fn permanent_init_failures_are_not_retried() {
        let mut r = record();
        let refused = CallFailure::Error(PluginError::Forbidden("refused by policy".into()));
        r.observe(
            Observation::Failed {
                method: Method::Initialize,
                failure: &refused,
            },
            1.0,
            LIMITS,
        );
        assert_eq!(r.status, PluginStatus::Degraded);
        assert_eq!(r.policy(false, LIMITS), PolicyAction::Keep);
        let flaky = CallFailure::Error(PluginError::Unavailable("peer down".into()));
        r.observe(
            Observation::Failed {
                method: Method::Initialize,
                failure: &flaky,
            },
            2.0,
            LIMITS,
        );
        assert!(matches!(r.policy(false, LIMITS), PolicyAction::Restart(_)));
    }
}
