//! The call guard: the one place where plugin panics are caught and hangs cut off.

use std::future::Future;
use std::time::Duration;

use nebula_plugin_api::PluginError;

use super::CallFailure;

/// Runs one plugin call in its own task, bounded by `limit`: the one place where plugin
/// panics are caught and hangs are cut off.
pub async fn guarded<T, F>(call: F, limit: Duration) -> Result<T, CallFailure>
where
    F: Future<Output = Result<T, PluginError>> + Send + 'static,
    T: Send + 'static,
{
    let mut handle = tokio::spawn(call);
    match tokio::time::timeout(limit, &mut handle).await {
        Ok(Ok(Ok(value))) => Ok(value),
        Ok(Ok(Err(error))) => Err(CallFailure::Error(error)),
        Ok(Err(join)) if join.is_panic() => {
            Err(CallFailure::Panicked(panic_message(join.into_panic())))
        }
        Ok(Err(_)) => Err(CallFailure::Error(PluginError::internal(
            "call was cancelled",
        ))),
        Err(_) => {
            handle.abort();
            // Give the cancelled task a moment to be dropped, so what it holds (the real-sync
            // gate) is released before we answer. A plugin that blocks its thread cannot be
            // cancelled: its task keeps what it holds until it really ends.
            let _ = tokio::time::timeout(ABORT_GRACE, handle).await;
            Err(CallFailure::TimedOut(limit))
        }
    }
}

/// How long a timed-out call waits for its cancelled task to be dropped.
const ABORT_GRACE: Duration = Duration::from_millis(100);

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}
