//! External plugins over gRPC (`nebula.plugin.v1.PluginService`).
//!
//! - [`GrpcPlugin`] makes a remote endpoint look like any other [`Plugin`](nebula_plugin_api::Plugin):
//!   the manager lists, times out and isolates it exactly like an in-process one.
//! - [`serve`] exposes any `Plugin` as a PluginService, so one plugin crate can run in process or
//!   out of process without code changes.
//! - [`convert`] is the one place where `google.protobuf.Struct` and JSON meet.
//! - [`GrpcEndpoint`] parses endpoints and applies the loopback-only policy before any lookup.
//! - [`host_service`] serves `nebula.host.v1.HostService` (SPEC §8), the scoped context of
//!   out-of-process plugins, as a thin translation onto [`PluginContext`](nebula_plugin_api::PluginContext);
//!   the core plugs in its tokens through [`HostTokens`].
//! - [`RemoteHost`] is the plugin's side: a [`Host`](nebula_plugin_api::Host) over a
//!   HostService client, which the serve helper puts behind the plugin's context.
//! - [`status`] maps `PluginError` ↔ gRPC status for the host service, both ways, without loss.
//! - [`run_process_plugin`] is the whole `main` of a plugin crate's process binary (SPEC §9):
//!   it serves the plugin on the socket the core (`nebula-process`) names in its environment.
//!
//! This crate depends on the plugin API only (not on the engine), so an external Rust plugin
//! binary pulls in no database code.

#![warn(missing_docs)]

pub mod client;
pub mod convert;
pub mod endpoint;
pub mod host_service;
pub mod process_main;
pub mod remote_host;
pub mod server;
pub mod status;

pub use client::{GrpcPlugin, RemotePluginSpec};
pub use endpoint::{EndpointError, GrpcEndpoint};
pub use host_service::{HostServiceOptions, HostTokens};
pub use process_main::{run_process_plugin, stop_signal};
pub use remote_host::{RemoteHost, RemoteHostError, RemoteHostOptions};
pub use server::{serve, DetachedHost, HostSource, ServeError, ServeOptions};

/// The generated protobuf and gRPC code (`nebula.plugin.v1`).
pub mod proto {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    tonic::include_proto!("nebula.plugin.v1");
}

/// The generated protobuf and gRPC code of the host service (`nebula.host.v1`).
pub mod host_proto {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    tonic::include_proto!("nebula.host.v1");
}

/// Metadata key carrying the plugin token.
pub const TOKEN_METADATA: &str = "x-nebula-token";

/// Metadata key carrying a plugin instance's host token on every HostService call (and on
/// every PluginService call from the core, SPEC §8).
pub const HOST_TOKEN_METADATA: &str = "x-nebula-host-token";

/// Metadata carrying the id of the HTTP request a call serves
/// (`nebula_plugin_api::request_id`), from the core to a plugin and from a plugin's
/// host-service calls back to the core.
pub const REQUEST_ID_METADATA: &str = "x-request-id";

/// Adds the current request id, when there is one, to a call's metadata.
pub(crate) fn send_request_id(metadata: &mut tonic::metadata::MetadataMap) {
    if let Some(id) = nebula_plugin_api::request_id::current_request_id() {
        if let Ok(value) = tonic::metadata::MetadataValue::try_from(&*id) {
            metadata.insert(REQUEST_ID_METADATA, value);
        }
    }
}

/// The request id a call's metadata carries, when it is sane
/// (`nebula_plugin_api::request_id::is_sane_request_id`).
pub(crate) fn received_request_id(
    metadata: &tonic::metadata::MetadataMap,
) -> Option<std::sync::Arc<str>> {
    metadata
        .get(REQUEST_ID_METADATA)
        .and_then(|v| v.to_str().ok())
        .filter(|id| nebula_plugin_api::request_id::is_sane_request_id(id))
        .map(std::sync::Arc::from)
}

/// Metadata key carrying the host service's endpoint (`unix:///…` or `http://127.0.0.1:PORT`)
/// on every PluginService call from the core.
pub const HOST_ENDPOINT_METADATA: &str = "x-nebula-host-endpoint";

/// Environment variable naming the host service's endpoint for a process plugin (SPEC §9).
pub const HOST_ENDPOINT_ENV: &str = "NEBULA_HOST_ENDPOINT";

/// Environment variable holding a process plugin's host token (SPEC §9).
pub const HOST_TOKEN_ENV: &str = "NEBULA_HOST_TOKEN";

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
