//! `nebula-server` with the fault-injecting test plugins linked (a hanging one, panicking
//! ones): only for the load and kill tests (`--features fault-plugins`). Never ship it.
//!
//! The production plugins come from the library's list (`nebula_server::linked`), as in
//! `nebula-server`; only the fault plugins are referenced here, so no other binary links them.

use nebula_tests as _;

fn main() -> std::process::ExitCode {
    nebula_server::main_entry()
}
