//! External plugins over gRPC (`nebula.plugin.v1.PluginService`).
//!
//! Not built yet: the adapter and the `serve` helper arrive with the gRPC issue. See
//! `docs/ARCHITECTURE.md` for where this crate sits.
