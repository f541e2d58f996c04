//! `nebula-server`: puts `nebula-core` on the network.
//!
//! Thin on purpose: handlers translate HTTP into engine calls and errors into status codes
//! (`error.rs`, the one mapping). Authentication is one middleware on `/system` (`auth.rs`);
//! the route table is one function (`routes/mod.rs`). The plugin crates it links are listed in
//! one place, [`linked`].

#![warn(missing_docs)]

pub mod app;
pub mod auth;
pub mod cli;
pub mod error;
pub mod external;
pub mod extract;
pub mod linked;
pub mod logging;
mod memory;
pub mod openapi;
pub mod process;
pub mod routes;
pub mod startup;
pub mod state;

pub use startup::main_entry;
