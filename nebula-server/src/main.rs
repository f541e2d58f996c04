//! The `nebula-server` binary; everything lives in the library.

// Plugin crates register through `inventory` and are linked only when referenced.
use csv_import as _;
use sample_sync as _;

fn main() -> std::process::ExitCode {
    nebula_server::main_entry()
}
