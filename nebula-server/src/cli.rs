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
    /// Print the HTTP API's OpenAPI 3.1 document (what GET /openapi.json answers) and exit.
    ///
    /// `nebula-server openapi > docs/openapi.json` refreshes the committed copy.
    Openapi,
    /// Run one plugin linked into this binary as an external gRPC plugin
    /// (nebula.plugin.v1.PluginService). Its context writes to the configured database.
    ///
    /// Example: `SAMPLE_TOKEN=… nebula-server serve-plugin sample_sync --listen
    /// 127.0.0.1:50051 --token-env SAMPLE_TOKEN`.
    ///
    /// The plugin never opens the database: its context is the core's host service, whose
    /// endpoint and token arrive with every call from the core (or in NEBULA_HOST_ENDPOINT
    /// and NEBULA_HOST_TOKEN).
    ///
    /// Token: required on TCP (--token-env); without one, any process that can reach the port
    /// could call the plugin and make it write through its host token. A unix socket
    /// (unix:///path), guarded by its file permissions, may go without.
    ///
    /// Address: a TCP listen address must be loopback (127.0.0.0/8, ::1, localhost) unless
    /// --allow-remote is given; 0.0.0.0 and :: are not loopback.
    ///
    /// Either rule broken: nothing is served, exit code 2.
    ServePlugin {
        /// The plugin's name.
        name: String,
        /// `host:port`, `http://host:port` or `unix:///path` (port 0 picks a free port). TCP
        /// needs --token-env, and a loopback address unless --allow-remote.
        #[arg(long, value_name = "ENDPOINT")]
        listen: String,
        /// Environment variable holding the token callers must send as x-nebula-token.
        /// Required on TCP; optional on a unix socket.
        #[arg(long, value_name = "VAR")]
        token_env: Option<String>,
        /// Allow a TCP listen address beyond loopback (such as 0.0.0.0:50051), and a host
        /// service endpoint beyond loopback. The traffic, tokens included, is unencrypted:
        /// use it only on a network you trust.
        #[arg(long)]
        allow_remote: bool,
    },
}
