//! The plugin record shown to admins, and the one place where plugin state changes.

use std::fmt;
use std::time::Duration;

use nebula_plugin_api::{ErrorKind, PluginError};
use serde::Serialize;

/// Where a plugin comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PluginSource {
    /// Linked into the binary, registered through `inventory`.
    InProcess,
    /// A remote `PluginService` endpoint.
    Grpc,
}

impl PluginSource {
    /// `in_process` or `grpc`.
    pub fn as_str(self) -> &'static str {
        match self {
            PluginSource::InProcess => "in_process",
            PluginSource::Grpc => "grpc",
        }
    }
}

/// A plugin's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PluginStatus {
    /// Initialised, not yet health-checked.
    Initialized,
    /// The last health check said `ok` (or a call succeeded since a failure).
    Healthy,
    /// The last call failed or health reported a problem; the plugin still answers.
    Degraded,
    /// Calls keep timing out.
    Unresponsive,
    /// The plugin panicked.
    Crashed,
    /// Stopped by an admin or by policy; not called until started.
    Disabled,
}

impl PluginStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            PluginStatus::Initialized => "initialized",
            PluginStatus::Healthy => "healthy",
            PluginStatus::Degraded => "degraded",
            PluginStatus::Unresponsive => "unresponsive",
            PluginStatus::Crashed => "crashed",
            PluginStatus::Disabled => "disabled",
        }
    }
}

impl fmt::Display for PluginStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an admin sees of a plugin (`GET /system/plugins`).
///
/// The first eleven fields are the contract's and always present; the rest are counters.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PluginRecord {
    /// Unique name.
    pub name: String,
    /// Where it comes from.
    pub source: PluginSource,
    /// The plugin API version it speaks.
    pub api_version: String,
    /// Its own version.
    pub version: String,
    /// One line.
    pub description: String,
    /// The scopes it holds (declared ∩ v1 ∩ granted).
    pub scopes: Vec<String>,
    /// Current state.
    pub status: PluginStatus,
    /// Human-readable state detail.
    pub message: String,
    /// The last error, empty when there is none.
    pub error: String,
    /// When the current instance finished `initialize` (float Unix seconds); `0` when no
    /// instance has initialised (SPEC §5: never null, as in the original).
    pub initialized_at: f64,
    /// When the record last changed.
    pub updated_at: f64,
    /// Whether the plugin is enabled (persisted).
    pub enabled: bool,
    /// Where it was registered (module path or endpoint).
    pub origin: String,
    /// Timeouts in a row.
    pub consecutive_timeouts: u32,
    /// Failed health checks in a row.
    pub consecutive_health_failures: u32,
    /// Panics in a row.
    pub consecutive_crashes: u32,
    /// Restarts since discovery (automatic and by an admin).
    pub restart_count: u32,
    /// Automatic restarts since an admin last started or restarted the plugin: the budget
    /// that `plugins.max_restarts` bounds.
    pub auto_restarts: u32,
    /// Duration of the last call, milliseconds.
    pub last_call_ms: Option<f64>,
    /// When the monitor last restarted the plugin (float Unix seconds).
    #[serde(skip)]
    pub(crate) last_auto_restart_at: Option<f64>,
    /// The last initialise failed in a way a retry cannot fix (endpoint refused by policy,
    /// invalid configuration): the monitor leaves it alone.
    #[serde(skip)]
    pub(crate) retry_is_useless: bool,
}

/// The plugin method a call went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `initialize` (including the factory).
    Initialize,
    /// `health`.
    Health,
    /// `sync_users`.
    SyncUsers,
    /// `shutdown`.
    Shutdown,
}

impl Method {
    /// The method's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Initialize => "initialize",
            Method::Health => "health",
            Method::SyncUsers => "sync_users",
            Method::Shutdown => "shutdown",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a guarded call failed.
#[derive(Debug, Clone, PartialEq)]
pub enum CallFailure {
    /// The plugin returned an error.
    Error(PluginError),
    /// The plugin panicked; the panic message.
    Panicked(String),
    /// The call did not finish within the bound.
    TimedOut(Duration),
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
                *method != Method::SyncUsers || failure.counts_against_plugin()
            }
            _ => false,
        }
    }
}

impl CallFailure {
    /// One line for the record's `error` field.
    pub fn describe(&self, method: Method) -> String {
        match self {
            CallFailure::Error(e) => format!("{method} failed: {e}"),
            CallFailure::Panicked(m) => format!("panicked in {method}: {m}"),
            CallFailure::TimedOut(d) => {
                format!("{method} timed out after {:.3}s", d.as_secs_f64())
            }
        }
    }

    /// Whether the failure says something about the plugin (a caller's bad input does not).
    fn counts_against_plugin(&self) -> bool {
        !matches!(
            self,
            CallFailure::Error(e) if matches!(e.kind(), ErrorKind::InvalidInput | ErrorKind::NotFound)
        )
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

impl PluginRecord {
    /// The monitor's decision after a check: every restart and disable rule is here.
    pub(crate) fn policy(&self, has_instance: bool, limits: Thresholds) -> PolicyAction {
        if !self.enabled {
            return PolicyAction::Keep;
        }
        if self.consecutive_crashes >= limits.max_crashes {
            return PolicyAction::Disable(format!(
                "crashed {} times in a row (plugins.max_crashes = {})",
                self.consecutive_crashes, limits.max_crashes
            ));
        }
        let reason = if !has_instance && self.retry_is_useless {
            None
        } else if !has_instance {
            Some("no working instance".to_owned())
        } else if self.status == PluginStatus::Crashed {
            Some("crashed".to_owned())
        } else if self.consecutive_timeouts >= limits.timeout_restart_threshold {
            Some(format!("{} timeouts in a row", self.consecutive_timeouts))
        } else if self.consecutive_health_failures >= limits.health_restart_threshold {
            Some(format!(
                "{} failed health checks in a row",
                self.consecutive_health_failures
            ))
        } else {
            None
        };
        match reason {
            None => PolicyAction::Keep,
            Some(reason) if self.auto_restarts >= limits.max_restarts => {
                PolicyAction::Disable(format!(
                    "{reason} after {} automatic restarts (plugins.max_restarts = {})",
                    self.auto_restarts, limits.max_restarts
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
                self.consecutive_timeouts = 0;
                self.consecutive_health_failures = 0;
            }
            Observation::HealthAnswered { ok: true, .. } => {
                self.consecutive_health_failures = 0;
                self.consecutive_crashes = 0;
                // A plugin healthy again long after its last automatic restart gets its
                // budget back: rare transient failures over months must not disable it.
                if self
                    .last_auto_restart_at
                    .is_some_and(|t| now - t >= RESTART_BUDGET_REFILL_SECS)
                {
                    self.auto_restarts = 0;
                    self.last_auto_restart_at = None;
                }
                // Timeouts of other calls are not cleared by a health answer: a plugin whose
                // sync hangs while health answers stays unresponsive (and gets restarted).
                if self.consecutive_timeouts >= limits.timeout_restart_threshold {
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
                self.consecutive_health_failures += 1;
            }
            Observation::CallSucceeded => {
                self.consecutive_timeouts = 0;
                self.consecutive_crashes = 0;
                // A working call clears call failures, but not what health itself reported.
                let call_failure = matches!(
                    self.status,
                    PluginStatus::Degraded | PluginStatus::Unresponsive | PluginStatus::Crashed
                ) && self.consecutive_health_failures == 0;
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
                    self.consecutive_health_failures += 1;
                }
                match failure {
                    CallFailure::Panicked(_) => {
                        self.consecutive_crashes += 1;
                        self.status = PluginStatus::Crashed;
                        self.message = format!("crashed in {method}");
                    }
                    CallFailure::TimedOut(_) => {
                        self.consecutive_timeouts += 1;
                        self.status =
                            if self.consecutive_timeouts >= limits.timeout_restart_threshold {
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
                self.auto_restarts = 0;
                self.consecutive_crashes = 0;
            }
            Observation::Restarted { automatic, reason } => {
                self.restart_count += 1;
                if automatic {
                    self.auto_restarts += 1;
                    self.last_auto_restart_at = Some(now);
                    self.message = format!("{} (restarted: {reason})", self.message);
                } else {
                    self.auto_restarts = 0;
                    self.message = format!("{} (restarted by admin)", self.message);
                }
            }
            Observation::Broken { error } => {
                self.status = PluginStatus::Degraded;
                self.message = "not loaded".into();
                self.error = error;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Thresholds = Thresholds {
        timeout_restart_threshold: 3,
        health_restart_threshold: 2,
        max_restarts: 3,
        max_crashes: 3,
    };

    fn record() -> PluginRecord {
        PluginRecord {
            name: "p1".into(),
            source: PluginSource::InProcess,
            api_version: "v1".into(),
            version: "1".into(),
            description: String::new(),
            scopes: vec![],
            status: PluginStatus::Healthy,
            message: String::new(),
            error: String::new(),
            initialized_at: NOT_INITIALIZED,
            updated_at: 0.0,
            enabled: true,
            origin: String::new(),
            consecutive_timeouts: 0,
            consecutive_health_failures: 0,
            consecutive_crashes: 0,
            restart_count: 0,
            auto_restarts: 0,
            last_call_ms: None,
            last_auto_restart_at: None,
            retry_is_useless: false,
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
        assert_eq!(r.auto_restarts, 3);
        let ok = || Observation::HealthAnswered {
            ok: true,
            message: "ok".into(),
        };
        r.observe(ok(), 1002.0 + RESTART_BUDGET_REFILL_SECS - 1.0, LIMITS);
        assert_eq!(r.auto_restarts, 3, "not yet");
        r.observe(ok(), 1002.0 + RESTART_BUDGET_REFILL_SECS, LIMITS);
        assert_eq!((r.auto_restarts, r.restart_count), (0, 3));
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
