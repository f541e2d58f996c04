//! The manifest rules, in one place: the fields of `plugin.json`, the plugin name rule, the API
//! version and the names of the v1 scopes.
//!
//! This file is compiled twice: as a module of `nebula-plugin-api` (the run-time checks of
//! `PluginManifest::from_json`) and, through `#[path]`, as a module of `nebula-plugin-macros`
//! (the compile-time check of `plugin_manifest!` / `register_plugin!`). So the two checks cannot
//! drift apart. It may use std, serde and serde_json only, and `super::escape_control`: each
//! crate that includes it provides that one escaping rule at its root (the macro crate includes
//! `text.rs` the same way).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::escape_control;

/// The version of the plugin contract this crate implements. A manifest must declare it.
pub const PLUGIN_API_VERSION: &str = "v1";

/// The wire names of the v1 scopes, in canonical order (the order of `Scope::ALL`).
pub const V1_SCOPE_NAMES: [&str; 7] = [
    "users.read",
    "users.write",
    "roles.read",
    "roles.write",
    "identity_tags.read",
    "identity_tags.write",
    "events.emit",
];

/// What a plugin declares about itself (`plugin.json`). Which fields are required, which have
/// defaults and that unknown fields are refused is said here, by the serde attributes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginManifest {
    /// Unique name, `^[a-zA-Z0-9][a-zA-Z0-9_-]{1,63}$`.
    pub name: String,
    /// The plugin's own version; must not be empty.
    pub version: String,
    /// One line for the plugin list.
    #[serde(default)]
    pub description: String,
    /// Must be [`PLUGIN_API_VERSION`].
    pub api_version: String,
    /// Scopes the plugin asks for. At run time unknown ones are dropped with a warning; a
    /// manifest checked at compile time must name v1 scopes only.
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// A manifest that parsed but breaks a rule. Its text is the error message (input escaped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestProblem {
    /// The name does not match `^[a-zA-Z0-9][a-zA-Z0-9_-]{1,63}$`.
    BadName(String),
    /// `api_version` is not [`PLUGIN_API_VERSION`].
    WrongApiVersion {
        /// The plugin's name.
        plugin: String,
        /// What it declared.
        declared: String,
    },
    /// `version` is empty or blank.
    EmptyVersion {
        /// The plugin's name.
        plugin: String,
    },
}

impl fmt::Display for ManifestProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ManifestProblem::BadName(name) => write!(
                f,
                "invalid plugin name '{}': expected 2 to 64 characters of [a-zA-Z0-9_-], starting with a letter or digit",
                escape_control(name)
            ),
            ManifestProblem::WrongApiVersion { plugin, declared } => write!(
                f,
                "plugin '{}' declares api_version '{}', this host speaks '{PLUGIN_API_VERSION}'",
                escape_control(plugin),
                escape_control(declared)
            ),
            ManifestProblem::EmptyVersion { plugin } => write!(
                f,
                "plugin '{}' declares an empty version",
                escape_control(plugin)
            ),
        }
    }
}

/// Checks a plugin name against `^[a-zA-Z0-9][a-zA-Z0-9_-]{1,63}$`.
pub fn check_name(name: &str) -> Result<(), ManifestProblem> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if first_ok && rest_ok && (2..=64).contains(&name.len()) {
        Ok(())
    } else {
        Err(ManifestProblem::BadName(name.to_owned()))
    }
}

/// The rules every manifest must pass, in order: the name, the API version, the version. Scopes
/// are not checked here: the run-time path drops unknown ones, the compile-time one refuses them
/// (both against [`V1_SCOPE_NAMES`]).
pub fn problems(manifest: &PluginManifest) -> Vec<ManifestProblem> {
    let mut found = Vec::new();
    if let Err(problem) = check_name(&manifest.name) {
        found.push(problem);
    }
    if manifest.api_version != PLUGIN_API_VERSION {
        found.push(ManifestProblem::WrongApiVersion {
            plugin: manifest.name.clone(),
            declared: manifest.api_version.clone(),
        });
    }
    if manifest.version.trim().is_empty() {
        found.push(ManifestProblem::EmptyVersion {
            plugin: manifest.name.clone(),
        });
    }
    found
}
