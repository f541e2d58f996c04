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
