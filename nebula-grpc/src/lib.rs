//! External plugins over gRPC (`nebula.plugin.v1.PluginService`).
//!
//! - [`GrpcPlugin`] makes a remote endpoint look like any other [`Plugin`](nebula_plugin_api::Plugin):
//!   the manager lists, times out and isolates it exactly like an in-process one.
//! - [`serve`] exposes any `Plugin` as a PluginService, so one plugin crate can run in process or
//!   out of process without code changes.
//! - [`convert`] is the one place where `google.protobuf.Struct` and JSON meet.
//! - [`GrpcEndpoint`] parses endpoints and applies the loopback-only policy before any lookup.
//!
//! This crate depends on the plugin API only (not on the engine), so an external Rust plugin
//! binary pulls in no database code.

#![warn(missing_docs)]

pub mod client;
pub mod convert;
pub mod endpoint;
pub mod server;

pub use client::{GrpcPlugin, RemotePluginSpec};
pub use endpoint::{EndpointError, GrpcEndpoint};
pub use server::{serve, DetachedHost, ServeError, ServeOptions};

/// The generated protobuf and gRPC code (`nebula.plugin.v1`).
pub mod proto {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    tonic::include_proto!("nebula.plugin.v1");
}

/// Metadata key carrying the plugin token.
pub const TOKEN_METADATA: &str = "x-nebula-token";

/// Most bytes of text from the other side (a peer's status message, a plugin's error) carried
/// into an error; longer text is cut. A gRPC status travels in HTTP/2 trailers, which cannot
/// carry megabytes, and an error ends up in logs and in the plugin list.
pub(crate) const MAX_ERROR_TEXT: usize = 1024;

/// `text` fit to be echoed in an error: control characters escaped (no forged log lines), and
/// when longer than `max` bytes, only its first and last `max / 2` bytes are kept, around a
/// note of how much was cut (the end of an error often says what is wrong).
pub(crate) fn echo(text: &str, max: usize) -> String {
    if text.len() <= max {
        return escape_controls(text);
    }
    let mut head = max / 2;
    while !text.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = text.len() - max / 2;
    while !text.is_char_boundary(tail) {
        tail += 1;
    }
    format!(
        "{}…[{} bytes cut]…{}",
        escape_controls(&text[..head]),
        tail - head,
        escape_controls(&text[tail..])
    )
}

fn escape_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Runs CPU-bound `work` (converting or validating a message) on tokio's blocking pool when
/// the message is `large`, so an async worker never spends long on one message and the timers
/// racing the call (the manager's call timeout, the serve helper's own) fire on time. Small
/// messages are handled inline: a thread hop would cost more than the work.
///
/// Work on the blocking pool cannot be cancelled: when the caller gives up, it still runs to
/// its end (the conversion is linear, so that end is near) and its result is dropped.
pub(crate) async fn cpu_work<T, F>(large: bool, work: F) -> Result<T, tokio::task::JoinError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    if large {
        tokio::task::spawn_blocking(work).await
    } else {
        Ok(work())
    }
}

#[cfg(test)]
mod tests {
    use super::echo;

    #[test]
    fn echoed_text_is_escaped_and_bounded() {
        assert_eq!(echo("plain ünïcode", 64), "plain ünïcode");
        assert_eq!(echo("a\nb\r\u{1b}[2J", 64), "a\\nb\\r\\u{1b}[2J");
        let long = format!("{}: unknown field", "k".repeat(100));
        assert_eq!(echo(&long, 16), "kkkkkkkk…[99 bytes cut]…wn field");
        // Cut on character boundaries.
        assert_eq!(echo("éééééé", 5), "é…[8 bytes cut]…é");
    }
}
