use nebula_plugin_api::register_plugin;

#[path = "../hello.rs"]
mod hello;
use hello::Hello;

register_plugin!(Hello, manifest = "manifests/misspelled_scope.json");

fn main() {}
