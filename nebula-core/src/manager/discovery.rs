//! Where plugins come from: providers yield descriptors, the manager checks them.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use nebula_plugin_api::{Plugin, PluginFactory, PluginManifest, PluginRegistration};

use super::{InstanceSetup, PluginSource};

/// Builds a fresh plugin instance; called at start and on every restart, with what that
/// instance is given beyond its context (for a plugin out of process: how to reach the host
/// service, and its token).
pub type PluginConstructor = Arc<dyn Fn(&InstanceSetup) -> Box<dyn Plugin> + Send + Sync>;

/// A plugin ready to be loaded: its manifest, where it comes from and how to build it.
#[derive(Clone)]
pub struct PluginDescriptor {
    /// The validated manifest.
    pub manifest: PluginManifest,
    /// `in_process`, `grpc` or `process`.
    pub source: PluginSource,
    /// Where it was declared (module path, config entry), for error messages.
    pub origin: String,
    /// Builds instances.
    pub constructor: PluginConstructor,
    /// What the plugin is made of, when the provider can tell (a process plugin's manifest
    /// and executable): a rescan that finds it unchanged leaves a running instance alone.
    /// `None`: every rescan re-initialises it.
    pub fingerprint: Option<String>,
}

impl fmt::Debug for PluginDescriptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginDescriptor")
            .field("name", &self.manifest.name)
            .field("source", &self.source)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl PluginDescriptor {
    /// An in-process plugin from a factory function.
    pub fn in_process(
        manifest: PluginManifest,
        factory: PluginFactory,
        origin: impl Into<String>,
    ) -> Self {
        PluginDescriptor {
            manifest,
            source: PluginSource::InProcess,
            origin: origin.into(),
            constructor: Arc::new(move |_: &InstanceSetup| factory()),
            fingerprint: None,
        }
    }
}

/// A declared plugin that cannot be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryError {
    /// The plugin's name when it could be read. When it could not (a linked plugin whose
    /// manifest is unreadable), discovery lists the refusal under a name taken from its
    /// origin instead, so that every load failure is visible per plugin.
    pub name: Option<String>,
    /// Where it was declared.
    pub origin: String,
    /// Why it was refused.
    pub message: String,
}

/// One source of plugins. `discover` is called at start and on every rescan.
pub trait PluginProvider: Send + Sync {
    /// The plugins this source offers now.
    fn discover(&self) -> Vec<Result<PluginDescriptor, DiscoveryError>>;
}

/// Every plugin registered through `inventory` in the linked binary.
#[derive(Debug, Default, Clone, Copy)]
pub struct InventoryProvider;

impl PluginProvider for InventoryProvider {
    fn discover(&self) -> Vec<Result<PluginDescriptor, DiscoveryError>> {
        nebula_plugin_api::registered_plugins()
            .map(from_registration)
            .collect()
    }
}

fn from_registration(reg: &PluginRegistration) -> Result<PluginDescriptor, DiscoveryError> {
    let manifest = reg.manifest().map_err(|e| DiscoveryError {
        name: None,
        origin: reg.origin().to_owned(),
        message: format!(
            "the manifest registered by {} cannot be read: {e}",
            reg.origin()
        ),
    })?;
    Ok(PluginDescriptor::in_process(
        manifest,
        reg.factory(),
        reg.origin(),
    ))
}

/// A fixed list of plugins, for embedders that build plugins themselves.
#[derive(Debug, Default, Clone)]
pub struct StaticProvider(pub Vec<PluginDescriptor>);

impl PluginProvider for StaticProvider {
    fn discover(&self) -> Vec<Result<PluginDescriptor, DiscoveryError>> {
        self.0.iter().cloned().map(Ok).collect()
    }
}

/// The outcome of one discovery pass: loadable plugins by name, and refusals.
#[derive(Debug, Default)]
pub(crate) struct Discovery {
    pub plugins: BTreeMap<String, PluginDescriptor>,
    pub refused: Vec<DiscoveryError>,
}

/// Runs every provider and refuses duplicate names: both holders of a name are refused, so
/// neither silently shadows the other, and the error names both origins.
pub(crate) fn discover_all(providers: &[Arc<dyn PluginProvider>]) -> Discovery {
    let mut by_name: BTreeMap<String, Vec<PluginDescriptor>> = BTreeMap::new();
    let mut refused = Vec::new();
    for provider in providers {
        for found in provider.discover() {
            match found {
                Ok(d) => by_name.entry(d.manifest.name.clone()).or_default().push(d),
                Err(e) => refused.push(e),
            }
        }
    }
    // A plugin directory never takes a name from a linked or configured plugin (SPEC §9: a
    // directory affects no other plugin): the directory is refused, the other one kept.
    for found in by_name.values_mut() {
        if found.iter().any(|d| d.source != PluginSource::Process) {
            found.retain(|d| {
                let shadowed = d.source == PluginSource::Process;
                if shadowed {
                    refused.push(DiscoveryError {
                        name: None,
                        origin: d.origin.clone(),
                        message: format!(
                            "plugin name '{}' is already taken by a linked or external plugin; \
                             this directory is not loaded",
                            d.manifest.name
                        ),
                    });
                }
                !shadowed
            });
        }
    }
    let mut plugins = BTreeMap::new();
    let mut taken: std::collections::BTreeSet<String> = by_name.keys().cloned().collect();
    for refusal in &mut refused {
        // A refusal never takes over a loadable plugin's slot: it is listed under a name of
        // its own.
        if refusal
            .name
            .as_ref()
            .is_some_and(|n| by_name.contains_key(n))
        {
            refusal.name = None;
        }
        if refusal.name.is_none() {
            let name = listing_name(&refusal.origin, &taken);
            taken.insert(name.clone());
            refusal.name = Some(name);
        }
    }
    for (name, mut found) in by_name {
        if found.len() == 1 {
            if let Some(d) = found.pop() {
                plugins.insert(name, d);
            }
            continue;
        }
        let mut origins: Vec<String> = found
            .iter()
            .map(|d| format!("{} ({})", d.origin, d.source.as_str()))
            .collect();
        origins.sort();
        refused.push(DiscoveryError {
            name: Some(name.clone()),
            origin: origins.join(", "),
            message: format!(
                "duplicate plugin name '{name}' registered by {}; none of them was loaded",
                origins.join(" and ")
            ),
        });
    }
    Discovery { plugins, refused }
}

/// The name a nameless refusal is listed under: the crate of its origin (`my_plugin` for
/// `my_plugin::inner`), made to fit the plugin-name rule, with `-2`, `-3`… when a plugin
/// already holds it (a refusal must never take over a working plugin's slot).
fn listing_name(origin: &str, taken: &std::collections::BTreeSet<String>) -> String {
    // A directory (`plugins.dir`): its last component; a module path: its crate.
    let origin = origin.rsplit('/').next().unwrap_or(origin);
    let stem: String = origin
        .split("::")
        .next()
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(56)
        .collect();
    let stem = if stem
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && stem.len() > 1
    {
        stem
    } else {
        format!("plugin_{stem}")
    };
    let mut candidate = stem.clone();
    let mut n = 1;
    while taken.contains(&candidate) {
        n += 1;
        candidate = format!("{stem}-{n}");
    }
    candidate
}
