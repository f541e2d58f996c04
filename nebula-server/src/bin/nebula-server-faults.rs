//! `nebula-server` with the fault-injecting test plugins linked (a hanging one, panicking
//! ones): only for the load and kill tests (`--features fault-plugins`). Never ship it.

use csv_import as _;
use nebula_tests as _;
use sample_sync as _;

fn main() -> std::process::ExitCode {
    nebula_server::main_entry()
}
