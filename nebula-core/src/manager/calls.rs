//! The call path: health and sync, bounded and recorded; every state change in `observe`.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use nebula_plugin_api::request_id;
use nebula_plugin_api::{JsonObject, Plugin, PluginError, SyncRequest};
use serde_json::json;
use tracing::Instrument;

use super::slot::{CallTicket, PluginSlot};
use super::state::Observation;
use super::state_store::SyncLease;
use super::stats::Outcome;
use super::{guarded, CallFailure, ManagerError, Method, PluginManager};
use crate::storage::unix_now;

impl PluginManager {
    /// Asks the plugin for its health. An answer whose `status` is not `"ok"` is returned as
    /// is (and marks the plugin degraded); failures, panics and timeouts are errors.
    pub async fn health(&self, name: &str) -> Result<JsonObject, ManagerError> {
        let slot = self.slot(name)?;
        self.health_of(&slot).await
    }

    pub(super) async fn health_of(&self, slot: &PluginSlot) -> Result<JsonObject, ManagerError> {
        let (result, ticket) = self
            .call(slot, Method::Health, |p| async move { p.health().await })
            .await?;
        match result {
            Ok(health) => {
                let status = health.get("status").and_then(|s| s.as_str()).unwrap_or("");
                let ok = status == "ok";
                // The plugin's text lands in every record the list shows: keep it one bounded
                // line (a peer could answer megabytes).
                let message = health
                    .get("message")
                    .and_then(|m| m.as_str())
                    .map(|m| bounded_line(m, MAX_HEALTH_MESSAGE_CHARS))
                    .unwrap_or_else(|| format!("health status '{}'", bounded_line(status, 64)));
                self.observe(
                    slot,
                    Some(ticket),
                    Observation::HealthAnswered { ok, message },
                );
                Ok(health)
            }
            Err(failure) => Err(self.fail(slot, ticket, failure)),
        }
    }

    /// Runs a sync. Real runs of one plugin are exclusive: a second one is refused at once
    /// with [`ManagerError::SyncInProgress`]; dry runs are never serialised.
    pub async fn sync_users(
        &self,
        name: &str,
        request: SyncRequest,
    ) -> Result<JsonObject, ManagerError> {
        let slot = self.slot(name)?;
        slot.ready()?;
        let exclusive = if request.dry_run {
            None
        } else {
            // This instance's gate first (no database work when it is busy here), then the
            // lease every instance on the database shares.
            let gate = slot
                .real_sync
                .clone()
                .try_lock_owned()
                .map_err(|_| ManagerError::SyncInProgress(name.to_owned()))?;
            let lease = SyncLease::take(&self.store, name, &self.instance_id, self.lease_ttl())
                .await?
                .ok_or_else(|| ManagerError::SyncInProgress(name.to_owned()))?;
            Some((gate, lease))
        };
        let (result, ticket) = self
            .call(&slot, Method::SyncUsers, move |p| async move {
                let result = p.sync_users(request).await;
                // Released before the answer, so the caller's next sync finds it free; an
                // aborted task drops it instead (released in the background, or expired).
                if let Some((gate, lease)) = exclusive {
                    lease.release().await;
                    drop(gate);
                }
                result
            })
            .await?;
        match result {
            Ok(answer) => {
                self.observe(&slot, Some(ticket), Observation::CallSucceeded);
                Ok(answer)
            }
            Err(failure) => Err(self.fail(&slot, ticket, failure)),
        }
    }

    /// How long a real-sync lease lives without being released: longer than any sync may run
    /// (the call timeout, then the abort grace), so it only expires for an instance that died.
    fn lease_ttl(&self) -> std::time::Duration {
        self.settings.call_timeout + std::time::Duration::from_secs(5)
    }

    /// Calls the slot's current instance under the call timeout.
    pub(super) async fn call<T, F, Fut>(
        &self,
        slot: &PluginSlot,
        method: Method,
        call: F,
    ) -> Result<(Result<T, CallFailure>, CallTicket), ManagerError>
    where
        F: FnOnce(Arc<dyn Plugin>) -> Fut,
        Fut: Future<Output = Result<T, PluginError>> + Send + 'static,
        T: Send + 'static,
    {
        let (instance, generation, failures_before) = slot.ready()?;
        let started = Instant::now();
        let work = guarded(call(instance), self.settings.call_timeout);
        // Every call carries a request id: the HTTP request's, or one of its own for a call
        // no request made (the health monitor's), logged in a span that names it.
        let result = match request_id::current_request_id() {
            Some(_) => work.await,
            None => {
                let id = request_id::new_request_id();
                let span = tracing::info_span!("call", request_id = %id, plugin = %slot.name);
                request_id::with_request_id(Some(id), work)
                    .instrument(span)
                    .await
            }
        };
        Ok((
            result,
            CallTicket {
                generation,
                failures_before,
                method,
                elapsed: started.elapsed(),
            },
        ))
    }

    pub(super) fn fail(
        &self,
        slot: &PluginSlot,
        ticket: CallTicket,
        failure: CallFailure,
    ) -> ManagerError {
        self.observe(
            slot,
            Some(ticket),
            Observation::Failed {
                method: ticket.method,
                failure: &failure,
            },
        );
        ManagerError::Call {
            name: slot.name.clone(),
            method: ticket.method,
            failure,
        }
    }

    /// Applies an observation to the slot's record and publishes a state change as the event
    /// `system.plugin.<name>.<state>`.
    ///
    /// Which outcome wins, when calls overlap: outcomes apply in the order they finish, with
    /// two exceptions, both decided here. An outcome from a replaced instance (stale
    /// generation) changes nothing. A success from a call that was already running when a
    /// failure was recorded changes nothing either: it says nothing about the plugin after
    /// that failure, and must not hide it (nor reset the counters the policy reads).
    pub(super) fn observe(
        &self,
        slot: &PluginSlot,
        ticket: Option<CallTicket>,
        observation: Observation<'_>,
    ) {
        let failed = observation.is_plugin_failure();
        if let Observation::Restarted { automatic, .. } = &observation {
            self.metrics.plugin_restarted(&slot.name, *automatic);
        }
        let changed = {
            let mut st = slot.state.lock();
            if let Some(ticket) = ticket {
                let failure = match &observation {
                    Observation::Failed { failure, .. } => Some(*failure),
                    _ => None,
                };
                let outcome = Outcome::of(failure);
                st.stats.record(ticket.method, ticket.elapsed, outcome);
                self.metrics.plugin_call(
                    &slot.name,
                    ticket.method.as_str(),
                    outcome.into(),
                    ticket.elapsed,
                );
                if ticket.generation != st.generation {
                    return;
                }
                st.state.last_call_ms = Some(ticket.elapsed.as_secs_f64() * 1000.0);
                if observation.is_success() && ticket.failures_before != st.failures_seen {
                    return;
                }
            }
            if failed {
                st.failures_seen += 1;
            }
            let before = st.state.status;
            st.state
                .observe(observation, unix_now(), self.settings.thresholds());
            (before != st.state.status).then(|| {
                (
                    st.state.status,
                    json!({"message": st.state.message, "error": st.state.error}),
                )
            })
        };
        if let Some((status, payload)) = changed {
            tracing::info!(plugin = %slot.name, %status, "plugin state changed");
            let name = format!("system.plugin.{}.{}", slot.name, status);
            // One queue, drained by one task: the stored history keeps the order of changes.
            if self.state_events.send((name, payload)).is_err() {
                tracing::warn!(plugin = %slot.name, "state event queue closed; event not stored");
            }
        }
    }
}

/// Longest health `message` kept in a plugin's record, in characters.
const MAX_HEALTH_MESSAGE_CHARS: usize = 512;

/// `text` cut to `max` characters (with `…`) and its control characters escaped.
fn bounded_line(text: &str, max: usize) -> String {
    let mut line: String = text.chars().take(max).collect();
    if text.chars().nth(max).is_some() {
        line.push('…');
    }
    nebula_plugin_api::escape_control(&line).into_owned()
}
