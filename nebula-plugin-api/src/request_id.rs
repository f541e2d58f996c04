//! The id of the HTTP request a plugin call serves (feature `host`), carried with the call
//! wherever it goes: across the tasks the hosts spawn ([`crate::guard::guarded`] keeps it), to
//! an out-of-process plugin in the call's `x-request-id` metadata, and back from it in the
//! metadata of its host-service calls, so every line logged for one request, wherever the
//! plugin runs, names the same id.
//!
//! A task-local rather than only a tracing span's field: spans cannot be read back, and the
//! gRPC layers need the value itself.

use std::future::Future;
use std::sync::Arc;

use tracing::Instrument;

tokio::task_local! {
    static REQUEST_ID: Arc<str>;
}

/// The longest id accepted.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// Whether `raw` may be used as a request id as it is: 1 to 128 characters among ASCII
/// letters, digits and `-_.:`, so it can forge neither a log line nor a header. The one rule,
/// for the HTTP header and for the gRPC metadata alike.
pub fn is_sane_request_id(raw: &str) -> bool {
    (1..=MAX_REQUEST_ID_LEN).contains(&raw.len())
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// A new id: 32 random hex digits (for a request that brought none, or a call no request
/// made).
pub fn new_request_id() -> Arc<str> {
    format!("{:032x}", rand::random::<u128>()).into()
}

/// The id of the request the current task serves, if any.
pub fn current_request_id() -> Option<Arc<str>> {
    REQUEST_ID.try_with(Arc::clone).ok()
}

/// The span every line logged while serving request `id` is written in:
/// `request{request_id=…}` (in JSON, `span.request_id`). The one shape, for the HTTP layer,
/// the gRPC serve helper and the host service alike.
pub fn request_span(id: &str) -> tracing::Span {
    tracing::info_span!("request", request_id = %id)
}

/// Runs `work` serving request `id`: in its [`request_span`] and with `id` as the task's
/// request id (as it is, without one).
pub async fn serving_request<F: Future>(id: Option<Arc<str>>, work: F) -> F::Output {
    match id {
        Some(id) => {
            let span = request_span(&id);
            REQUEST_ID.scope(id, work).instrument(span).await
        }
        None => work.await,
    }
}

/// Runs `work` with `id` as its request id (as it is, without one).
pub async fn with_request_id<F: Future>(id: Option<Arc<str>>, work: F) -> F::Output {
    match id {
        Some(id) => REQUEST_ID.scope(id, work).await,
        None => work.await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ids_are_sane_and_differ() {
        let (a, b) = (new_request_id(), new_request_id());
        assert!(is_sane_request_id(&a) && a.len() == 32, "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn sane_ids_are_short_and_plain() {
        for good in ["a", "sync-42.a:b_c", &"x".repeat(128)] {
            assert!(is_sane_request_id(good), "{good}");
        }
        for bad in [
            "",
            "has space",
            "new\nline",
            "quote\"",
            "ünï",
            &"x".repeat(129),
        ] {
            assert!(!is_sane_request_id(bad), "{bad}");
        }
    }

    #[tokio::test]
    async fn the_id_is_seen_inside_its_scope_only() {
        assert!(current_request_id().is_none());
        let seen = with_request_id(Some("r-1".into()), async { current_request_id() }).await;
        assert_eq!(seen.as_deref(), Some("r-1"));
        assert!(current_request_id().is_none());
        assert!(with_request_id(None, async { current_request_id() })
            .await
            .is_none());
    }
}
