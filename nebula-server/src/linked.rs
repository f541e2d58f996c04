//! The one list of plugin crates linked into `nebula-server`.
//!
//! A plugin crate registers itself through `inventory` (`register_plugin!`), but the linker
//! keeps a crate only if something references it. This module is that reference, for both
//! binaries (`nebula-server` and `nebula-server-faults`, which call
//! [`main_entry`](crate::main_entry) of this library and so link everything it links).
//!
//! **To add a plugin**: add its crate to `[dependencies]` in `nebula-server/Cargo.toml`
//! (`my-plugin = { path = "../my-plugin" }`, or `.workspace = true` once it is in the root
//! `[workspace.dependencies]`) and one line below, `use my_plugin as _;`. At start-up `serve`
//! logs `linked plugins: …` with every registered plugin and its version
//! ([`log_linked_plugins`]): a plugin missing there was not linked.

use csv_import as _;
use ldap_sync as _;
use sample_sync as _;

/// Every plugin registered in this binary, as `name version`, sorted by name. A registration
/// whose manifest cannot be read is shown by its registering crate, with the reason (discovery
/// lists it as not loadable too).
pub fn linked_plugins() -> Vec<String> {
    let mut plugins: Vec<String> = nebula_plugin_api::registered_plugins()
        .map(|registration| match registration.manifest() {
            Ok(manifest) => format!("{} {}", manifest.name, manifest.version),
            Err(e) => {
                let krate = registration.origin().split("::").next().unwrap_or_default();
                format!("{krate} (manifest unreadable: {e})")
            }
        })
        .collect();
    plugins.sort();
    plugins
}

/// Logs one info line naming every linked plugin with its version, for example
/// `linked plugins: sample_sync 0.1.0`, or `linked plugins: none`.
pub fn log_linked_plugins() {
    let plugins = linked_plugins();
    let list = if plugins.is_empty() {
        "none".to_owned()
    } else {
        plugins.join(", ")
    };
    tracing::info!("linked plugins: {list}");
}

#[cfg(test)]
mod tests {
    #[test]
    fn sample_sync_is_linked_through_this_module() {
        assert!(
            super::linked_plugins().contains(&"sample_sync 0.1.0".to_owned()),
            "{:?}",
            super::linked_plugins()
        );
    }
}
