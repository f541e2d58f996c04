use nebula_plugin_api::register_plugin;

#[path = "../hello.rs"]
mod hello;
use hello::Hello;

register_plugin!(Hello, manifest = "manifests/wrong_api_version.json");

fn main() {}
