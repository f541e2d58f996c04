//! `sample_sync` as a process plugin: put this binary's path in a plugin directory's
//! `runtime.command` (see `docs/PLUGIN_AUTHOR_GUIDE.md`, "Three ways to run a plugin").

fn main() -> std::process::ExitCode {
    nebula_grpc::run_process_plugin(sample_sync::create_plugin())
}
