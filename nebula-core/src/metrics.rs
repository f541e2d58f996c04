//! The service's Prometheus metrics, defined in one place: plugin calls, states and restarts,
//! synced users, events written, the database pool, and the HTTP requests the embedder's HTTP
//! layer reports ([`Metrics::http_request`]). The server serves them at `GET /metrics`
//! (`docs/OPERATIONS.md`).
//!
//! Counters and histograms are updated where the thing happens (the manager's one
//! `observe`, the host's writes, the event bus); values that are a state rather than a count
//! (each plugin's status, the pool) are read when scraped ([`crate::NebulaCore::render_metrics`]),
//! so a plugin a rescan dropped leaves no stale series behind.

use std::sync::Arc;
use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::manager::{PluginRecord, PluginStatus};
use crate::storage::PoolState;

/// Buckets of the plugin call histogram, seconds: from a fast in-process health check to a
/// large sync near the longest call timeout.
const PLUGIN_CALL_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// Buckets of the HTTP histogram, seconds: a snapshot answer takes tens of microseconds, a
/// large sync seconds.
const HTTP_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

/// Every status a plugin can be in, for the state gauge (one series per status, 1 for the
/// current one, so `nebula_plugin_status{status="disabled"} == 1` is an alert).
const STATUSES: &[PluginStatus] = &[
    PluginStatus::Initialized,
    PluginStatus::Healthy,
    PluginStatus::Degraded,
    PluginStatus::Unresponsive,
    PluginStatus::Crashed,
    PluginStatus::Disabled,
];

/// The engine's metrics; cheap to clone (one registry shared by the clones).
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    /// Held across a whole [`Metrics::render`]: the state gauges are reset and set there, and
    /// two scrapes at once must not gather between another's reset and set.
    rendering: parking_lot::Mutex<()>,
    registry: Registry,
    plugin_calls: IntCounterVec,
    plugin_call_seconds: HistogramVec,
    plugin_restarts: IntCounterVec,
    plugin_status: IntGaugeVec,
    synced_users: IntCounterVec,
    events_written: IntCounter,
    db_connections: IntGaugeVec,
    http_requests: IntCounterVec,
    http_request_seconds: HistogramVec,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// How a plugin call ended, as the `outcome` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    /// The plugin answered.
    Ok,
    /// The plugin answered with an error.
    Error,
    /// The call timed out.
    Timeout,
    /// The plugin panicked.
    Panic,
}

impl CallOutcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Ok => "ok",
            CallOutcome::Error => "error",
            CallOutcome::Timeout => "timeout",
            CallOutcome::Panic => "panic",
        }
    }
}

impl Metrics {
    /// A fresh registry with the engine's series.
    pub fn new() -> Self {
        let registry = Registry::new();
        let inner = Inner {
            plugin_calls: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "nebula_plugin_calls_total",
                        "Plugin calls by plugin, method and outcome (ok, error, timeout, panic).",
                    ),
                    &["plugin", "method", "outcome"],
                ),
            ),
            plugin_call_seconds: register(
                &registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "nebula_plugin_call_duration_seconds",
                        "Plugin call latency by plugin and method, seconds.",
                    )
                    .buckets(PLUGIN_CALL_BUCKETS.to_vec()),
                    &["plugin", "method"],
                ),
            ),
            plugin_restarts: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "nebula_plugin_restarts_total",
                        "Plugin restarts by plugin and trigger (policy: the health monitor's \
                         policy; admin: an admin's restart).",
                    ),
                    &["plugin", "trigger"],
                ),
            ),
            plugin_status: register(
                &registry,
                IntGaugeVec::new(
                    Opts::new(
                        "nebula_plugin_status",
                        "1 for each plugin's current status, 0 for the others.",
                    ),
                    &["plugin", "status"],
                ),
            ),
            synced_users: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "nebula_synced_users_total",
                        "Users written by plugins, by plugin and outcome (created, updated, \
                         failed).",
                    ),
                    &["plugin", "outcome"],
                ),
            ),
            events_written: register(
                &registry,
                IntCounter::new(
                    "nebula_events_written_total",
                    "Events stored in the events table.",
                ),
            ),
            db_connections: register(
                &registry,
                IntGaugeVec::new(
                    Opts::new(
                        "nebula_db_pool_connections",
                        "Database pool connections by state (in_use, idle).",
                    ),
                    &["state"],
                ),
            ),
            http_requests: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "nebula_http_requests_total",
                        "HTTP requests by method, route template and status.",
                    ),
                    &["method", "route", "status"],
                ),
            ),
            http_request_seconds: register(
                &registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "nebula_http_request_duration_seconds",
                        "HTTP request latency by method and route template, seconds.",
                    )
                    .buckets(HTTP_BUCKETS.to_vec()),
                    &["method", "route"],
                ),
            ),
            registry,
            rendering: parking_lot::Mutex::new(()),
        };
        Metrics {
            inner: Arc::new(inner),
        }
    }

    /// The registry, for an embedder's own series.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// One plugin call ended.
    pub fn plugin_call(&self, plugin: &str, method: &str, outcome: CallOutcome, elapsed: Duration) {
        let i = &self.inner;
        i.plugin_calls
            .with_label_values(&[plugin, method, outcome.as_str()])
            .inc();
        i.plugin_call_seconds
            .with_label_values(&[plugin, method])
            .observe(elapsed.as_secs_f64());
    }

    /// A plugin was restarted, by the policy (`automatic`) or by an admin.
    pub fn plugin_restarted(&self, plugin: &str, automatic: bool) {
        let trigger = if automatic { "policy" } else { "admin" };
        self.inner
            .plugin_restarts
            .with_label_values(&[plugin, trigger])
            .inc();
    }

    /// Users a plugin wrote: `outcome` is `created`, `updated` or `failed`.
    pub fn synced_users(&self, plugin: &str, outcome: &str, count: u64) {
        if count > 0 {
            self.inner
                .synced_users
                .with_label_values(&[plugin, outcome])
                .inc_by(count);
        }
    }

    /// One HTTP request was answered. `route` is the route's template (such as
    /// `/system/plugins/{name}/health`), never the raw path, so the series stay few.
    pub fn http_request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let i = &self.inner;
        i.http_requests
            .with_label_values(&[method, route, &status.to_string()])
            .inc();
        i.http_request_seconds
            .with_label_values(&[method, route])
            .observe(elapsed.as_secs_f64());
    }

    /// An event was stored.
    pub fn event_written(&self) {
        self.inner.events_written.inc();
    }

    /// The text exposition of every series, with the state gauges set from `records` and
    /// `pool` first.
    pub fn render(&self, records: &[PluginRecord], pool: PoolState) -> Result<String, String> {
        let i = &self.inner;
        let _rendering = i.rendering.lock();
        // Reset first: a plugin a rescan dropped must not keep reporting its last status.
        i.plugin_status.reset();
        for record in records {
            for status in STATUSES {
                i.plugin_status
                    .with_label_values(&[record.name.as_str(), status.as_str()])
                    .set(i64::from(record.status == *status));
            }
        }
        i.db_connections
            .with_label_values(&["in_use"])
            .set(i64::from(pool.in_use));
        i.db_connections
            .with_label_values(&["idle"])
            .set(i64::from(pool.idle));
        let mut text = Vec::new();
        TextEncoder::new()
            .encode(&i.registry.gather(), &mut text)
            .map_err(|e| e.to_string())?;
        String::from_utf8(text).map_err(|e| e.to_string())
    }
}

/// Registers `collector` and hands it back. Both steps can fail only on an invalid name or
/// label, or a name registered twice: the definitions above are literals with distinct names,
/// registered once into a fresh registry, and `Metrics::new` runs in the unit tests, so a
/// failure here is a programming error caught there.
fn register<C>(registry: &Registry, collector: Result<C, prometheus::Error>) -> C
where
    C: prometheus::core::Collector + Clone + 'static,
{
    let collector = collector.expect("metric definitions are valid literals (unit-tested)");
    registry
        .register(Box::new(collector.clone()))
        .expect("each metric name is registered once (unit-tested)");
    collector
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_is_defined_and_rendered_with_its_labels() {
        let metrics = Metrics::new();
        metrics.plugin_call(
            "p",
            "health",
            CallOutcome::Timeout,
            Duration::from_millis(3),
        );
        metrics.plugin_restarted("p", true);
        metrics.synced_users("p", "created", 2);
        metrics.synced_users("p", "failed", 0);
        metrics.event_written();
        metrics.http_request("GET", "/system/plugins", 200, Duration::from_micros(300));
        let text = metrics
            .render(&[], PoolState { in_use: 1, idle: 3 })
            .unwrap();
        for line in [
            r#"nebula_plugin_calls_total{method="health",outcome="timeout",plugin="p"} 1"#,
            r#"nebula_plugin_call_duration_seconds_bucket{method="health",plugin="p",le="0.005"} 1"#,
            r#"nebula_plugin_restarts_total{plugin="p",trigger="policy"} 1"#,
            r#"nebula_synced_users_total{outcome="created",plugin="p"} 2"#,
            "nebula_events_written_total 1",
            r#"nebula_db_pool_connections{state="in_use"} 1"#,
            r#"nebula_db_pool_connections{state="idle"} 3"#,
            r#"nebula_http_requests_total{method="GET",route="/system/plugins",status="200"} 1"#,
            r#"nebula_http_request_duration_seconds_count{method="GET",route="/system/plugins"} 1"#,
        ] {
            assert!(text.contains(line), "no {line} in\n{text}");
        }
        // A count of zero creates no series.
        assert!(!text.contains(r#"outcome="failed""#), "{text}");
    }
}
