//! The plugin's settings, `[plugins.settings.csv_import]`.

use std::path::PathBuf;

use nebula_plugin_api::{normalize_db_name, PluginContext, PluginError, SYSTEM_DB_NAME};
use serde::Deserialize;

/// `[plugins.settings.csv_import]`. Unknown keys are refused, so a misspelled key is an error
/// naming it rather than a setting silently ignored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The CSV file (required). A relative path is relative to the server's working directory.
    pub path: PathBuf,
    /// The tenant every row is imported into (required): `acme` or `acme.db`, never
    /// `system.db`. Normalised (`acme` → `acme.db`) once read.
    pub db_name: String,
    /// The role tag of rows whose `role_tag` is empty or absent (default `user`).
    #[serde(default = "default_role_tag")]
    pub default_role_tag: String,
    /// The field delimiter, one ASCII character (default `,`; `;` and `"\t"` are common).
    #[serde(default = "default_delimiter")]
    pub delimiter: char,
}

fn default_role_tag() -> String {
    "user".into()
}

fn default_delimiter() -> char {
    ','
}

impl Settings {
    /// The settings, checked. `None` when the plugin has no settings table at all: it is
    /// linked but not used by this installation.
    pub fn configured(ctx: &PluginContext) -> Result<Option<Settings>, PluginError> {
        if ctx.settings_json().is_empty() {
            return Ok(None);
        }
        Settings::required(ctx).map(Some)
    }

    /// The settings, checked; every error names its key, for example
    /// ``plugins.settings.csv_import: missing field `path` ``.
    pub fn required(ctx: &PluginContext) -> Result<Settings, PluginError> {
        let mut settings: Settings = ctx.settings()?;
        let key = |name: &str| format!("plugins.settings.{}.{name}", ctx.plugin_name());
        let db_name = normalize_db_name(&settings.db_name)
            .map_err(|e| PluginError::invalid(format!("{}: {e}", key("db_name"))))?;
        if db_name == SYSTEM_DB_NAME {
            return Err(PluginError::invalid(format!(
                "{}: plugins never write {SYSTEM_DB_NAME}; name a client tenant",
                key("db_name")
            )));
        }
        settings.db_name = db_name;
        if !settings.delimiter.is_ascii() || matches!(settings.delimiter, '"' | '\r' | '\n') {
            return Err(PluginError::invalid(format!(
                "{}: expected one ASCII character other than a quote or a line break",
                key("delimiter")
            )));
        }
        Ok(settings)
    }

    /// The delimiter as the byte the CSV reader takes (checked ASCII by
    /// [`required`](Self::required)).
    pub fn delimiter_byte(&self) -> u8 {
        u8::try_from(self.delimiter).unwrap_or(b',')
    }
}
