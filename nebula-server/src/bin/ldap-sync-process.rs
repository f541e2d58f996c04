//! `ldap_sync` as a process plugin: put this binary's path in a plugin directory's
//! `runtime.command`; its settings are the core's `[plugins.settings.<directory name>]`.

fn main() -> std::process::ExitCode {
    nebula_grpc::run_process_plugin(Box::<ldap_sync::LdapSync>::default())
}
