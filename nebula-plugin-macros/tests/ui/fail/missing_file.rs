use nebula_plugin_api::register_plugin;

#[path = "../hello.rs"]
mod hello;
use hello::Hello;

register_plugin!(Hello, manifest = "manifests/absent.json");

fn main() {}
