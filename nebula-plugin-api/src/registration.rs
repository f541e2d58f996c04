//! Static registration through `inventory`.

use crate::{Plugin, PluginError, PluginManifest};

/// Creates a fresh plugin instance. Called at discovery and again on every restart.
pub type PluginFactory = fn() -> Box<dyn Plugin>;

/// One statically registered plugin: its manifest (JSON text, usually an embedded
/// `plugin.json`), its factory, and where it was registered (for duplicate reports).
///
/// Create it with [`register_plugin!`](crate::register_plugin), not by hand.
#[derive(Debug)]
pub struct PluginRegistration {
    manifest_json: &'static str,
    factory: PluginFactory,
    origin: &'static str,
}

impl PluginRegistration {
    /// A registration; `origin` names the registering module (`module_path!()`).
    pub const fn new(
        manifest_json: &'static str,
        factory: PluginFactory,
        origin: &'static str,
    ) -> Self {
        PluginRegistration {
            manifest_json,
            factory,
            origin,
        }
    }

    /// Parses and validates the manifest.
    pub fn manifest(&self) -> Result<PluginManifest, PluginError> {
        PluginManifest::from_json(self.manifest_json)
    }

    /// The factory.
    pub fn factory(&self) -> PluginFactory {
        self.factory
    }

    /// The module that registered this plugin.
    pub fn origin(&self) -> &'static str {
        self.origin
    }
}

inventory::collect!(PluginRegistration);

/// Every plugin registered in the linked binary, in unspecified order.
///
/// A plugin crate is linked only when the binary references it (`use my_plugin as _;`).
pub fn registered_plugins() -> impl Iterator<Item = &'static PluginRegistration> {
    inventory::iter::<PluginRegistration>.into_iter()
}

/// The plugin registered as `name` in the linked binary, with its manifest (registrations whose
/// manifest cannot be read have no name and are never found).
pub fn registered_plugin(name: &str) -> Option<(&'static PluginRegistration, PluginManifest)> {
    registered_plugins().find_map(|r| {
        let manifest = r.manifest().ok().filter(|m| m.name == name)?;
        Some((r, manifest))
    })
}

/// Registers a plugin with the host.
///
/// The usual form names the plugin type and its manifest file; the manifest is read and
/// checked when the crate compiles ([`plugin_manifest!`](crate::plugin_manifest)) and each
/// instance is made with `Default`:
///
/// ```ignore
/// register_plugin!(HrSync, manifest = "plugin.json"); // the path is relative to Cargo.toml's directory
/// register_plugin!(HrSync);                           // the same: "plugin.json" is the default
/// ```
///
/// The plugin type must implement [`Plugin`] and `Default`. A misspelled scope, a bad name, a
/// wrong `api_version` or malformed JSON in the manifest is a compile error naming the file and
/// the problem.
///
/// The general form takes the manifest text and a factory: `register_plugin!(manifest_json,
/// factory)`, where `manifest_json` is a `&'static str` and `factory` a
/// `fn() -> Box<dyn Plugin>` (a closure without captures works). Pass
/// `plugin_manifest!("plugin.json")` as the text to keep the compile-time check with your own
/// factory; any other text (a manifest built with `concat!`, say) is checked only at run time.
#[macro_export]
macro_rules! register_plugin {
    ($plugin:path $(,)?) => {
        $crate::register_plugin!($plugin, manifest = "plugin.json");
    };
    ($plugin:path, manifest = $manifest:literal $(,)?) => {
        $crate::inventory::submit! {
            $crate::PluginRegistration::new(
                $crate::plugin_manifest!($manifest),
                || -> ::std::boxed::Box<dyn $crate::Plugin> {
                    ::std::boxed::Box::new(<$plugin as ::core::default::Default>::default())
                },
                ::core::module_path!(),
            )
        }
    };
    ($manifest_json:expr, $factory:expr $(,)?) => {
        $crate::inventory::submit! {
            $crate::PluginRegistration::new($manifest_json, $factory, ::core::module_path!())
        }
    };
}
