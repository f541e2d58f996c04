//! The `nebula-server` binary; everything lives in the library, including the list of linked
//! plugin crates (`nebula_server::linked`).

fn main() -> std::process::ExitCode {
    nebula_server::main_entry()
}
