//! The plugin manifest (`plugin.json`): parsed and checked at run time.
//!
//! The struct and its rules live in `manifest_rules.rs`, which `nebula-plugin-macros` compiles
//! too, so the compile-time check of `plugin_manifest!` applies exactly these rules.

use crate::manifest_rules;
use crate::{PluginError, ScopeSet};

pub use crate::manifest_rules::PluginManifest;

impl PluginManifest {
    /// Parses and validates a manifest from JSON (for example an embedded `plugin.json`).
    pub fn from_json(text: &str) -> Result<Self, PluginError> {
        let manifest: PluginManifest = serde_json::from_str(text)
            .map_err(|e| PluginError::invalid(format!("invalid plugin manifest: {e}")))?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// Checks the name, the API version and the version (the first rule broken is the error).
    pub fn validate(&self) -> Result<(), PluginError> {
        match manifest_rules::problems(self).into_iter().next() {
            Some(problem) => Err(PluginError::invalid(problem.to_string())),
            None => Ok(()),
        }
    }

    /// The declared scopes that are v1 scopes (unknown ones are dropped with a warning).
    pub fn declared_scopes(&self) -> ScopeSet {
        ScopeSet::parse_lossy(&self.name, &self.scopes).0
    }
}

/// Checks a plugin name against `^[a-zA-Z0-9][a-zA-Z0-9_-]{1,63}$`.
pub fn validate_plugin_name(name: &str) -> Result<(), PluginError> {
    manifest_rules::check_name(name).map_err(|problem| PluginError::invalid(problem.to_string()))
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
        let err = validate_plugin_name("a\nb").unwrap_err();
        assert!(err.to_string().contains("'a\\nb'"), "{err}");
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
        let err = PluginManifest::from_json(r#"{"name":"x1","version":" ","api_version":"v1"}"#)
            .unwrap_err();
        assert!(err.to_string().contains("empty version"), "{err}");
        let err = PluginManifest::from_json(r#"{"name":"x1","api_version":"v1"}"#).unwrap_err();
        assert!(err.to_string().contains("missing field `version`"), "{err}");
    }

    #[test]
    fn the_first_broken_rule_is_the_error() {
        let err = PluginManifest::from_json(r#"{"name":"x","version":"","api_version":"v0"}"#)
            .unwrap_err();
        assert!(
            err.to_string().starts_with("invalid plugin name 'x'"),
            "{err}"
        );
    }
}
