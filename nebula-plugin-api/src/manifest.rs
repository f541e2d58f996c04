//! The plugin manifest (`plugin.json`).

use serde::{Deserialize, Serialize};

use crate::{PluginError, ScopeSet, PLUGIN_API_VERSION};

/// What a plugin declares about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginManifest {
    /// Unique name, `^[a-zA-Z0-9][a-zA-Z0-9_-]{1,63}$`.
    pub name: String,
    /// The plugin's own version.
    pub version: String,
    /// One line for the plugin list.
    #[serde(default)]
    pub description: String,
    /// Must be [`PLUGIN_API_VERSION`].
    pub api_version: String,
    /// Scopes the plugin asks for; unknown ones are dropped with a warning.
    #[serde(default)]
    pub scopes: Vec<String>,
}

impl PluginManifest {
    /// Parses and validates a manifest from JSON (for example an embedded `plugin.json`).
    pub fn from_json(text: &str) -> Result<Self, PluginError> {
        let manifest: PluginManifest = serde_json::from_str(text)
            .map_err(|e| PluginError::invalid(format!("invalid plugin manifest: {e}")))?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// Checks the name and the API version.
    pub fn validate(&self) -> Result<(), PluginError> {
        validate_plugin_name(&self.name)?;
        if self.api_version != PLUGIN_API_VERSION {
            return Err(PluginError::invalid(format!(
                "plugin '{}' declares api_version '{}', this host speaks '{PLUGIN_API_VERSION}'",
                self.name, self.api_version
            )));
        }
        if self.version.trim().is_empty() {
            return Err(PluginError::invalid(format!(
                "plugin '{}' declares an empty version",
                self.name
            )));
        }
        Ok(())
    }

    /// The declared scopes that are v1 scopes (unknown ones are dropped with a warning).
    pub fn declared_scopes(&self) -> ScopeSet {
        ScopeSet::parse_lossy(&self.name, &self.scopes).0
    }
}

/// Checks a plugin name against `^[a-zA-Z0-9][a-zA-Z0-9_-]{1,63}$`.
pub fn validate_plugin_name(name: &str) -> Result<(), PluginError> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if first_ok && rest_ok && (2..=64).contains(&name.len()) {
        Ok(())
    } else {
        Err(PluginError::invalid(format!(
            "invalid plugin name '{}': expected 2 to 64 characters of [a-zA-Z0-9_-], starting with a letter or digit",
            crate::escape_control(name)
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_names_follow_the_pattern() {
        for ok in ["sample_sync", "ab", "A-1", &"a".repeat(64)] {
            assert!(validate_plugin_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a",
            "_x",
            "-x",
            "a.b",
            "a/b",
            "../x",
            "a b",
            &"a".repeat(65),
        ] {
            assert!(validate_plugin_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn manifests_are_parsed_and_checked() {
        let m = PluginManifest::from_json(
            r#"{"name":"x1","version":"1.0","api_version":"v1","scopes":["users.read","bogus"]}"#,
        )
        .unwrap();
        assert_eq!(m.declared_scopes().names(), vec!["users.read"]);
        let err = PluginManifest::from_json(r#"{"name":"x1","version":"1","api_version":"v2"}"#)
            .unwrap_err();
        assert!(err.to_string().contains("api_version 'v2'"), "{err}");
        let err =
            PluginManifest::from_json(r#"{"name":"x1","version":"1","api_version":"v1","x":1}"#)
                .unwrap_err();
        assert!(err.to_string().contains("unknown field `x`"), "{err}");
    }
}
