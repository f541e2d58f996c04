//! The plugin's settings, `[plugins.settings.ldap_sync]`.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use nebula_plugin_api::{
    normalize_db_name, normalize_role_tag, PluginContext, PluginError, SYSTEM_DB_NAME,
};
use serde::Deserialize;

/// What a sync does with users this plugin synced before and LDAP no longer has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Creates and updates; never deactivates a user LDAP no longer has (the default).
    Upsert,
    /// Also deactivates (never deletes) them, unless the read looks incomplete.
    Mirror,
}

/// One entry of `role_map`: members of the group `group` (its `cn`) get `role_tag`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleMapping {
    /// The group's `cn`, compared without regard to case.
    pub group: String,
    /// The identity tag its members get (normalised like every tag).
    pub role_tag: String,
}

/// `role_map` as written: an array of `{group, role_tag}` in priority order, or a table
/// `group = "role_tag"` (TOML tables have no order, so a table's groups rank by name).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
enum RoleMapSetting {
    Ordered(Vec<RoleMapping>),
    Table(std::collections::BTreeMap<String, String>),
}

impl Default for RoleMapSetting {
    fn default() -> Self {
        RoleMapSetting::Ordered(Vec::new())
    }
}

/// `[plugins.settings.ldap_sync]` as configured. Unknown keys are refused, so a misspelled key
/// is an error naming it rather than a setting silently ignored.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    url: String,
    #[serde(default)]
    starttls: bool,
    #[serde(default)]
    ca_file: Option<PathBuf>,
    #[serde(default)]
    bind_dn: Option<String>,
    #[serde(default, deserialize_with = "secret_text")]
    bind_password: Option<String>,
    #[serde(default = "default_timeout_sec")]
    timeout_sec: f64,
    user_base_dn: String,
    #[serde(default = "default_user_filter")]
    user_filter: String,
    #[serde(default = "default_username_attribute")]
    username_attribute: String,
    #[serde(default = "default_email_attribute")]
    email_attribute: String,
    #[serde(default)]
    disabled_filter: Option<String>,
    #[serde(default = "default_page_size")]
    page_size: i32,
    #[serde(default)]
    group_base_dn: Option<String>,
    #[serde(default = "default_group_filter")]
    group_filter: String,
    #[serde(default = "default_group_member_attribute")]
    group_member_attribute: String,
    #[serde(default)]
    role_map: RoleMapSetting,
    #[serde(default = "default_role_tag")]
    default_role_tag: String,
    db_name: String,
    #[serde(default = "default_mode")]
    mode: Mode,
    #[serde(default = "default_mirror_min_fraction")]
    mirror_min_fraction: f64,
}

/// The password as text, whatever scalar it arrived as: the configuration loader turns an
/// environment value that looks like a number or a boolean (`1234`, `true`) into one. Never
/// echoes the value in an error, as serde's own "invalid type" message would.
fn secret_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    use nebula_plugin_api::serde_json::Value;
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s)),
        Value::Number(n) => Ok(Some(n.to_string())),
        Value::Bool(b) => Ok(Some(b.to_string())),
        _ => Err(serde::de::Error::custom("expected a string")),
    }
}

fn default_timeout_sec() -> f64 {
    10.0
}
fn default_user_filter() -> String {
    "(objectClass=inetOrgPerson)".into()
}
fn default_username_attribute() -> String {
    "uid".into()
}
fn default_email_attribute() -> String {
    "mail".into()
}
fn default_page_size() -> i32 {
    500
}
fn default_group_filter() -> String {
    "(objectClass=groupOfNames)".into()
}
fn default_group_member_attribute() -> String {
    "member".into()
}
fn default_role_tag() -> String {
    "user".into()
}
fn default_mode() -> Mode {
    Mode::Upsert
}
fn default_mirror_min_fraction() -> f64 {
    0.9
}

/// The settings, checked and normalised ([`Settings::required`]). `Debug` never shows the
/// password.
#[derive(Clone)]
pub struct Settings {
    /// `ldap://host[:port]` or `ldaps://host[:port]`.
    pub url: String,
    /// Upgrade an `ldap://` connection with StartTLS before binding.
    pub starttls: bool,
    /// PEM file of the certificate authorities to trust instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// The DN to bind as; `None` binds anonymously.
    pub bind_dn: Option<String>,
    /// The bind password: from the environment
    /// (`NEBULA__PLUGINS__SETTINGS__LDAP_SYNC__BIND_PASSWORD`), never listed or logged.
    pub bind_password: String,
    /// Bound on connecting and on each LDAP operation.
    pub timeout: Duration,
    /// Where users are searched (subtree).
    pub user_base_dn: String,
    /// Which entries are users.
    pub user_filter: String,
    /// The attribute holding the username (`uid`; `sAMAccountName` on Active Directory).
    pub username_attribute: String,
    /// The attribute holding the e-mail address.
    pub email_attribute: String,
    /// Users matching it (as well as `user_filter`) sync with `is_active = false`.
    pub disabled_filter: Option<String>,
    /// Entries per page of the paged-results search.
    pub page_size: i32,
    /// Where groups are searched (subtree); `None`: no groups are read and every user gets
    /// `default_role_tag`.
    pub group_base_dn: Option<String>,
    /// Which entries are groups.
    pub group_filter: String,
    /// The group attribute naming its members: DNs (`member`, `uniqueMember`) or usernames
    /// (`memberUid`).
    pub group_member_attribute: String,
    /// Group `cn` → role tag, in priority order (a user in several takes the first).
    pub role_map: Vec<RoleMapping>,
    /// The tag of users in no mapped group.
    pub default_role_tag: String,
    /// The tenant the users go to (normalised: `acme` → `acme.db`).
    pub db_name: String,
    /// Upsert or mirror.
    pub mode: Mode,
    /// In mirror mode, the smallest share of the users this plugin synced before that a read
    /// must return for anyone to be deactivated.
    pub mirror_min_fraction: f64,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("url", &self.url)
            .field("starttls", &self.starttls)
            .field("bind_dn", &self.bind_dn)
            .field("bind_password", &"<redacted>")
            .field("user_base_dn", &self.user_base_dn)
            .field("db_name", &self.db_name)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
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
    /// ``plugins.settings.ldap_sync: missing field `url` ``. The password never appears in
    /// an error.
    pub fn required(ctx: &PluginContext) -> Result<Settings, PluginError> {
        let raw: RawSettings = ctx.settings()?;
        let key = |name: &str| format!("plugins.settings.{}.{name}", ctx.plugin_name());
        let invalid =
            |name: &str, why: String| PluginError::invalid(format!("{}: {why}", key(name)));

        let lower = raw.url.to_ascii_lowercase();
        let tls = if lower.starts_with("ldaps://") {
            true
        } else if lower.starts_with("ldap://") {
            false
        } else {
            return Err(invalid(
                "url",
                format!(
                    "expected ldap://host[:port] or ldaps://host[:port], got '{}'",
                    raw.url
                ),
            ));
        };
        if raw.starttls && tls {
            return Err(invalid(
                "starttls",
                "ldaps:// is already TLS; StartTLS is for ldap:// URLs".into(),
            ));
        }
        if raw.ca_file.is_some() && !tls && !raw.starttls {
            return Err(invalid(
                "ca_file",
                "given for a plain ldap:// connection: use ldaps:// or starttls = true".into(),
            ));
        }
        if !(raw.timeout_sec > 0.0 && raw.timeout_sec <= 3600.0) {
            return Err(invalid(
                "timeout_sec",
                format!("expected seconds from 0 to 3600, got {}", raw.timeout_sec),
            ));
        }
        if !(1..=100_000).contains(&raw.page_size) {
            return Err(invalid(
                "page_size",
                format!("expected 1 to 100000, got {}", raw.page_size),
            ));
        }
        if !(0.0..=1.0).contains(&raw.mirror_min_fraction) {
            return Err(invalid(
                "mirror_min_fraction",
                format!("expected 0 to 1, got {}", raw.mirror_min_fraction),
            ));
        }
        for (name, filter) in [
            ("user_filter", Some(&raw.user_filter)),
            ("group_filter", Some(&raw.group_filter)),
            ("disabled_filter", raw.disabled_filter.as_ref()),
        ] {
            if let Some(filter) = filter {
                check_filter(filter).map_err(|why| invalid(name, why))?;
            }
        }
        for (name, value) in [
            ("user_base_dn", &raw.user_base_dn),
            ("username_attribute", &raw.username_attribute),
            ("email_attribute", &raw.email_attribute),
            ("group_member_attribute", &raw.group_member_attribute),
        ] {
            if value.trim().is_empty() {
                return Err(invalid(name, "must not be empty".into()));
            }
        }
        let db_name =
            normalize_db_name(&raw.db_name).map_err(|e| invalid("db_name", e.to_string()))?;
        if db_name == SYSTEM_DB_NAME {
            return Err(invalid(
                "db_name",
                format!("plugins never write {SYSTEM_DB_NAME}; name a client tenant"),
            ));
        }
        let role_map = match raw.role_map {
            RoleMapSetting::Ordered(list) => list,
            RoleMapSetting::Table(table) => table
                .into_iter()
                .map(|(group, role_tag)| RoleMapping { group, role_tag })
                .collect(),
        };
        let role_map = role_map
            .into_iter()
            .map(|m| RoleMapping {
                group: m.group.trim().to_owned(),
                role_tag: normalize_role_tag(&m.role_tag),
            })
            .collect::<Vec<_>>();
        if let Some(empty) = role_map.iter().find(|m| m.group.is_empty()) {
            return Err(invalid(
                "role_map",
                format!("a group name is empty (role tag '{}')", empty.role_tag),
            ));
        }
        Ok(Settings {
            url: raw.url,
            starttls: raw.starttls,
            ca_file: raw.ca_file,
            bind_dn: raw.bind_dn.filter(|dn| !dn.trim().is_empty()),
            bind_password: raw.bind_password.unwrap_or_default(),
            timeout: Duration::from_secs_f64(raw.timeout_sec),
            user_base_dn: raw.user_base_dn,
            user_filter: raw.user_filter,
            username_attribute: raw.username_attribute,
            email_attribute: raw.email_attribute,
            disabled_filter: raw.disabled_filter.filter(|f| !f.trim().is_empty()),
            page_size: raw.page_size,
            group_base_dn: raw.group_base_dn.filter(|dn| !dn.trim().is_empty()),
            group_filter: raw.group_filter,
            group_member_attribute: raw.group_member_attribute,
            role_map,
            default_role_tag: normalize_role_tag(&raw.default_role_tag),
            db_name,
            mode: raw.mode,
            mirror_min_fraction: raw.mirror_min_fraction,
        })
    }

    /// The role tag of a member of `groups` (their `cn`s, lower-cased): the first mapping
    /// of `role_map` whose group is among them, else `default_role_tag`.
    pub fn role_tag_for<'a>(&'a self, groups: &std::collections::HashSet<String>) -> &'a str {
        self.role_map
            .iter()
            .find(|m| groups.contains(&m.group.to_lowercase()))
            .map_or(self.default_role_tag.as_str(), |m| m.role_tag.as_str())
    }
}

/// A filter must be one parenthesised LDAP filter; the server has the last word on the rest,
/// but a missing parenthesis is named here rather than as a protocol error mid-sync.
fn check_filter(filter: &str) -> Result<(), String> {
    let f = filter.trim();
    let mut depth = 0i32;
    for c in f.chars() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    break;
                }
            }
            _ => {}
        }
    }
    if f.starts_with('(') && f.ends_with(')') && depth == 0 {
        Ok(())
    } else {
        Err(format!(
            "expected an LDAP filter in parentheses, such as (objectClass=person), got '{}'",
            nebula_plugin_api::escape_control(filter)
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use nebula_plugin_api::testing::RecordingHost;
    use nebula_plugin_api::{json_object, JsonObject, ScopeSet};

    use super::*;

    fn settings(table: JsonObject) -> Result<Settings, PluginError> {
        let host = RecordingHost::new();
        let ctx = host
            .context("ldap_sync", ScopeSet::all())
            .with_settings(table);
        Settings::required(&ctx)
    }

    fn minimal() -> JsonObject {
        json_object!({"url": "ldap://127.0.0.1:389", "user_base_dn": "ou=people,dc=example,dc=org", "db_name": "acme"})
    }

    #[test]
    fn defaults_are_those_of_the_documentation() {
        let s = settings(minimal()).unwrap();
        assert_eq!(s.user_filter, "(objectClass=inetOrgPerson)");
        assert_eq!(
            (s.username_attribute.as_str(), s.email_attribute.as_str()),
            ("uid", "mail")
        );
        assert_eq!(s.page_size, 500);
        assert_eq!(s.group_filter, "(objectClass=groupOfNames)");
        assert_eq!(s.group_member_attribute, "member");
        assert_eq!(s.default_role_tag, "user");
        assert_eq!(s.db_name, "acme.db");
        assert_eq!(s.mode, Mode::Upsert);
        assert!((s.mirror_min_fraction - 0.9).abs() < f64::EPSILON);
        assert_eq!(s.timeout, Duration::from_secs(10));
        assert!(!s.starttls && s.bind_dn.is_none());
    }

    #[test]
    fn bad_values_are_refused_naming_the_key_and_never_the_password() {
        let cases = [
            (
                "url",
                json_object!({"url": "http://x"}),
                "plugins.settings.ldap_sync.url",
            ),
            (
                "starttls",
                json_object!({"url": "ldaps://x", "starttls": true}),
                ".starttls",
            ),
            ("page", json_object!({"page_size": 0}), ".page_size"),
            (
                "fraction",
                json_object!({"mirror_min_fraction": 1.5}),
                ".mirror_min_fraction",
            ),
            (
                "filter",
                json_object!({"user_filter": "objectClass=person"}),
                ".user_filter",
            ),
            ("db", json_object!({"db_name": "system"}), ".db_name"),
            ("mode", json_object!({"mode": "sync"}), ".mode"),
            (
                "unknown",
                json_object!({"bind_pasword": "x"}),
                "bind_pasword",
            ),
            ("timeout", json_object!({"timeout_sec": 0}), ".timeout_sec"),
        ];
        for (what, overrides, expected) in cases {
            let mut table = minimal();
            table.insert("bind_password".into(), "hunter2-secret".into());
            table.extend(overrides);
            let err = settings(table).unwrap_err().to_string();
            assert!(err.contains(expected), "{what}: {err}");
            assert!(!err.contains("hunter2"), "{what}: {err}");
        }
    }

    #[test]
    fn a_password_that_looks_like_a_number_is_text_and_never_echoed() {
        let mut table = minimal();
        table.insert("bind_password".into(), 12345678.into());
        assert_eq!(settings(table).unwrap().bind_password, "12345678");
        let mut table = minimal();
        table.insert(
            "bind_password".into(),
            nebula_plugin_api::serde_json::json!(["hunter2"]),
        );
        let err = settings(table).unwrap_err().to_string();
        assert!(
            err.contains("bind_password") && !err.contains("hunter2"),
            "{err}"
        );
    }

    #[test]
    fn debug_output_never_shows_the_password() {
        let mut table = minimal();
        table.insert("bind_password".into(), "hunter2-secret".into());
        let shown = format!("{:?}", settings(table).unwrap());
        assert!(
            !shown.contains("hunter2") && shown.contains("redacted"),
            "{shown}"
        );
    }

    #[test]
    fn the_first_mapped_group_wins_in_the_array_order_and_a_table_ranks_by_name() {
        let mut table = minimal();
        table.insert(
            "role_map".into(),
            nebula_plugin_api::serde_json::json!([
                {"group": "Ops", "role_tag": "Operator"},
                {"group": "admins", "role_tag": "admin"},
            ]),
        );
        let s = settings(table).unwrap();
        let groups: HashSet<String> = ["admins".into(), "ops".into()].into();
        assert_eq!(s.role_tag_for(&groups), "operator");
        assert_eq!(s.role_tag_for(&HashSet::new()), "user");

        let mut table = minimal();
        table.insert(
            "role_map".into(),
            nebula_plugin_api::serde_json::json!({"ops": "operator", "admins": "admin"}),
        );
        let s = settings(table).unwrap();
        assert_eq!(s.role_tag_for(&groups), "admin");
    }
}
