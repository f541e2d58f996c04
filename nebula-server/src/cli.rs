//! The command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Nebula Core: the plugin host for user, role and identity-tag sync.
#[derive(Debug, Parser)]
#[command(name = "nebula-server", version)]
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
    /// Run one plugin linked into this binary as an external gRPC plugin
    /// (nebula.plugin.v1.PluginService), for example `serve-plugin sample_sync --listen
    /// 127.0.0.1:50051`. Its context writes to the configured database.
    ServePlugin {
        /// The plugin's name.
        name: String,
        /// `host:port`, `http://host:port` or `unix:///path` (port 0 picks a free port).
        #[arg(long, value_name = "ENDPOINT")]
        listen: String,
        /// Environment variable holding the token callers must send as x-nebula-token.
        #[arg(long, value_name = "VAR")]
        token_env: Option<String>,
    },
}
