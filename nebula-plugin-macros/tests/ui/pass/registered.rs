// Every form of register_plugin! registers, and the embedded manifest is the file's text.
use nebula_plugin_api::{plugin_manifest, register_plugin, registered_plugins, Plugin};

#[path = "../hello.rs"]
mod hello;
use hello::Hello;

register_plugin!(Hello, manifest = "manifests/ok.json");

mod second {
    use super::*;

    const MANIFEST: &str = plugin_manifest!("manifests/ok.json");

    fn create_plugin() -> Box<dyn Plugin> {
        Box::new(Hello)
    }

    register_plugin!(MANIFEST, create_plugin);
}

fn main() {
    let mut origins: Vec<&str> = registered_plugins().map(|r| r.origin()).collect();
    origins.sort_unstable();
    assert_eq!(origins.len(), 2, "{origins:?}");
    assert_eq!(origins[1], format!("{}::second", origins[0]));
    for registration in registered_plugins() {
        let manifest = registration.manifest().expect("the manifest parses");
        assert_eq!(manifest.name, "hello");
        assert_eq!(manifest.declared_scopes().names(), ["users.read", "events.emit"]);
    }
    assert_eq!(
        plugin_manifest!("manifests/ok.json"),
        include_str!("../manifests/ok.json")
    );
}
