//! The plugin record shown to admins, and the one place where plugin state changes.

use std::fmt;

use serde::Serialize;

/// Where a plugin comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum PluginSource {
    /// Linked into the binary, registered through `inventory`.
    InProcess,
    /// A remote `PluginService` endpoint.
    Grpc,
    /// A child process the core starts from `plugins.dir` (SPEC §9).
    Process,
}

impl PluginSource {
    /// `in_process`, `grpc` or `process`.
    pub fn as_str(self) -> &'static str {
        match self {
            PluginSource::InProcess => "in_process",
            PluginSource::Grpc => "grpc",
            PluginSource::Process => "process",
        }
    }

    /// Whether its instances run outside the core's process, and so reach their context
    /// through the host service with a token of their own (SPEC §8).
    pub fn is_out_of_process(self) -> bool {
        match self {
            PluginSource::InProcess => false,
            PluginSource::Grpc | PluginSource::Process => true,
        }
    }
}

/// A plugin's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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

/// What an admin sees of a plugin (`GET /system/plugins`): a view, built on demand from the
/// slot's identity and its live state (`manager/state.rs`).
///
/// The first eleven fields are the contract's and always present; the rest are counters.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    /// The lifecycle counters (flattened into the record's JSON).
    #[serde(flatten)]
    pub counters: Counters,
    /// Duration of the last call, milliseconds.
    pub last_call_ms: Option<f64>,
}

/// The counters the health monitor's policy reads, shown in the record and the stats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Counters {
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
}
