//! The command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Nebula Core: the plugin host for user, role and identity-tag sync.
#[derive(Debug, Parser)]
#[command(name = "nebula-server", version, about)]
pub struct Cli {
    /// Configuration file (TOML). Default: $NEBULA_CONFIG, else ./nebula.toml if present.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server (the default).
    Serve,
    /// Create a system user, or set the password of an existing one. The password is read
    /// from standard input (first line), never from an argument.
    CreateUser {
        /// Login name.
        username: String,
        /// Make the user staff (allowed to use the admin API).
        #[arg(long)]
        staff: bool,
    },
}
