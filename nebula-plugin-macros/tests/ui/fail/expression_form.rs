// The checked manifest as an expression, with a factory of one's own.
use nebula_plugin_api::{plugin_manifest, register_plugin, Plugin};

#[path = "../hello.rs"]
mod hello;

const MANIFEST: &str = plugin_manifest!("manifests/misspelled_scope.json");

fn create_plugin() -> Box<dyn Plugin> {
    Box::new(hello::Hello)
}

register_plugin!(MANIFEST, create_plugin);

fn main() {}
