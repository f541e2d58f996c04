//! The call guard (feature `host`): the one place where a host catches a plugin's panics and
//! cuts off its hangs. The engine (`nebula-core`'s plugin manager) and the gRPC serve helper
//! (`nebula-grpc`) both run every plugin call through [`guarded`].
//!
//! It lives here, behind a feature, because both hosts need it and neither may depend on the
//! other: an external Rust plugin built on `nebula-grpc` must pull in no database code, and a
//! plugin crate that does not ask for `host` pulls in no tokio.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use crate::{ErrorKind, PluginError};

/// How long a timed-out call waits for its cancelled task to be dropped.
pub const ABORT_GRACE: Duration = Duration::from_millis(100);

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

impl CallFailure {
    /// One line naming the method, for a record's `error` field or a log line.
    pub fn describe(&self, method: Method) -> String {
        match self {
            CallFailure::Error(e) => format!("{method} failed: {e}"),
            CallFailure::Panicked(m) => format!("panicked in {method}: {m}"),
            CallFailure::TimedOut(d) => {
                format!("{method} timed out after {:.3}s", d.as_secs_f64())
            }
        }
    }

    /// The kind of the plugin's error, `None` for a panic or a timeout.
    pub fn error_kind(&self) -> Option<ErrorKind> {
        match self {
            CallFailure::Error(e) => Some(e.kind()),
            CallFailure::Panicked(_) | CallFailure::TimedOut(_) => None,
        }
    }
}

/// Runs one plugin call in its own tokio task, bounded by `limit`.
///
/// A panic comes back as [`CallFailure::Panicked`] (the task's `JoinError`), a hang as
/// [`CallFailure::TimedOut`]: the task is then aborted and given up to [`ABORT_GRACE`] to be
/// dropped, so what it holds (such as the engine's real-sync gate) is released before the
/// timeout is answered. A plugin that blocks its thread cannot be cancelled: its task keeps
/// what it holds until it really ends, and the answer comes after the grace.
///
/// Must be called inside a tokio runtime with the time driver enabled.
pub async fn guarded<T, F>(call: F, limit: Duration) -> Result<T, CallFailure>
where
    F: Future<Output = Result<T, PluginError>> + Send + 'static,
    T: Send + 'static,
{
    // In the caller's span and with its request id, so what the plugin logs (and, out of
    // process, what its host calls carry) names the request the call serves.
    let request_id = crate::request_id::current_request_id();
    let mut handle = tokio::spawn(tracing::Instrument::in_current_span(
        crate::request_id::with_request_id(request_id, call),
    ));
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
            let _ = tokio::time::timeout(ABORT_GRACE, handle).await;
            Err(CallFailure::TimedOut(limit))
        }
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn answers_values_and_errors() {
        assert_eq!(
            guarded(async { Ok(7) }, Duration::from_secs(1)).await,
            Ok(7)
        );
        let failed = guarded::<(), _>(
            async { Err(PluginError::invalid("bad")) },
            Duration::from_secs(1),
        )
        .await
        .unwrap_err();
        assert_eq!(failed.error_kind(), Some(ErrorKind::InvalidInput));
        assert!(failed
            .describe(Method::SyncUsers)
            .starts_with("sync_users failed: "));
    }

    #[tokio::test]
    async fn catches_panics() {
        let failed = guarded::<(), _>(async { panic!("boom") }, Duration::from_secs(1))
            .await
            .unwrap_err();
        assert_eq!(failed, CallFailure::Panicked("boom".into()));
        assert_eq!(failed.describe(Method::Health), "panicked in health: boom");
    }

    struct SetOnDrop(Arc<AtomicBool>);
    impl Drop for SetOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn a_hang_is_cut_off_and_its_task_dropped_before_the_answer() {
        let dropped = Arc::new(AtomicBool::new(false));
        let held = SetOnDrop(dropped.clone());
        let failed = guarded::<(), _>(
            async move {
                let _held = held;
                std::future::pending::<()>().await;
                Ok(())
            },
            Duration::from_millis(20),
        )
        .await
        .unwrap_err();
        assert_eq!(failed, CallFailure::TimedOut(Duration::from_millis(20)));
        assert_eq!(
            failed.describe(Method::Initialize),
            "initialize timed out after 0.020s"
        );
        assert!(dropped.load(Ordering::SeqCst));
    }
}
