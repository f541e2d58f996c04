//! Identity vocabulary shared by plugins and hosts: tenant names, role tags, directory rows.
//!
//! The normalisation rules live here, once: the context applies them before a call reaches the
//! host, and hosts re-apply them to anything that does not come through a context.

use serde::{Deserialize, Serialize};

use crate::PluginError;

/// The tenant of the core's own (system) users. Plugins never create or modify users here.
pub const SYSTEM_DB_NAME: &str = "system.db";

const DB_SUFFIX: &str = ".db";
/// Longest stem (the part before `.db`): one leading character plus up to 63 more.
const MAX_DB_STEM: usize = 64;
const MAX_ROLE_TAG: usize = 64;

/// Validates a tenant name and returns its canonical form.
///
/// Accepts `system.db` or a client name matching `^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}\.db$`; `.db` is
/// appended when missing. `/`, `\` and `..` are refused anywhere, so a name can never be used to
/// walk a file system.
pub fn normalize_db_name(raw: &str) -> Result<String, PluginError> {
    let invalid = |why: &str| {
        PluginError::invalid(format!(
            "invalid db_name '{}': {why}",
            crate::escape_control(raw)
        ))
    };
    if raw.is_empty() {
        return Err(invalid("must not be empty"));
    }
    let name = if raw.ends_with(DB_SUFFIX) {
        raw.to_owned()
    } else {
        format!("{raw}{DB_SUFFIX}")
    };
    // Checked on the final name: "acme." must not become "acme..db".
    if name.contains('/') || name.contains('\\') || name.contains("..") {
        return Err(invalid("'/', '\\' and '..' are not allowed"));
    }
    let stem = &name[..name.len() - DB_SUFFIX.len()];
    let mut chars = stem.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphanumeric() => {}
        _ => return Err(invalid("must start with a letter or digit")),
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) {
        return Err(invalid(
            "only letters, digits, '_', '.' and '-' are allowed",
        ));
    }
    if stem.len() > MAX_DB_STEM {
        return Err(invalid("longer than 64 characters before '.db'"));
    }
    Ok(name)
}

/// Normalises a role tag: lower case, `[a-z0-9_-]` only (spaces and dots become `_`, other
/// characters are dropped), at most 64 characters; an empty result becomes `user`.
pub fn normalize_role_tag(raw: &str) -> String {
    let tag: String = raw
        .trim()
        .chars()
        .filter_map(|c| {
            let c = c.to_ascii_lowercase();
            match c {
                'a'..='z' | '0'..='9' | '_' | '-' => Some(c),
                ' ' | '.' => Some('_'),
                _ => None,
            }
        })
        .take(MAX_ROLE_TAG)
        .collect();
    if tag.is_empty() {
        "user".to_owned()
    } else {
        tag
    }
}

/// Longest username, in characters.
pub const MAX_USERNAME_CHARS: usize = 150;

/// Validates a login name and returns it trimmed: 1 to 150 characters, no control characters.
/// The one username rule, used by sync requests, the plugin context and `create-user`.
pub fn validate_username(raw: &str) -> Result<String, PluginError> {
    let name = raw.trim();
    if name.is_empty()
        || name.chars().count() > MAX_USERNAME_CHARS
        || name.chars().any(char::is_control)
    {
        return Err(PluginError::invalid(format!(
            "username '{}': expected 1 to {MAX_USERNAME_CHARS} printable characters",
            crate::escape_control(raw)
        )));
    }
    Ok(name.to_owned())
}

/// Longest e-mail address, in characters (RFC 5321's path limit).
pub const MAX_EMAIL_CHARS: usize = 254;

/// Normalises an e-mail address: trimmed, `None` when empty; at most 254 characters and no
/// control characters, or an error naming it. The address is not otherwise checked: a
/// directory's idea of an address is its own. (A NUL byte would also be refused by
/// PostgreSQL, and stored by SQLite: the rule keeps both backends alike.)
pub fn normalize_email(raw: Option<&str>) -> Result<Option<String>, PluginError> {
    let Some(email) = raw.map(str::trim).filter(|e| !e.is_empty()) else {
        return Ok(None);
    };
    if email.chars().count() > MAX_EMAIL_CHARS || email.chars().any(char::is_control) {
        return Err(PluginError::invalid(format!(
            "email '{}': expected at most {MAX_EMAIL_CHARS} printable characters",
            crate::escape_control(email)
        )));
    }
    Ok(Some(email.to_owned()))
}

/// What a `sync_user` call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncOutcome {
    /// The user did not exist and was created.
    Created,
    /// The user existed and was updated.
    Updated,
}

impl SyncOutcome {
    /// `created` or `updated`.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncOutcome::Created => "created",
            SyncOutcome::Updated => "updated",
        }
    }
}

/// A user as the directory lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DirectoryUser {
    /// Login name, unique per tenant.
    pub username: String,
    /// E-mail address, when known.
    pub email: Option<String>,
    /// Whether the user may be used.
    pub is_active: bool,
    /// Whether the user is staff.
    pub is_staff: bool,
    /// The user's identity tag (`user` when none was set).
    pub role_tag: String,
    /// The plugin that last wrote the user's identity tag (by syncing the user or setting
    /// the tag); none (`null`) when no plugin has. What a plugin that mirrors a directory reads to
    /// find the users it synced before.
    pub synced_by: Option<String>,
}

/// An identity role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IdentityRole {
    /// Unique role name (normalised like a role tag).
    pub name: String,
    /// Free text.
    pub description: String,
    /// Whether holders of the role are staff.
    pub is_staff: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_bounded_and_printable() {
        assert_eq!(normalize_email(None).unwrap(), None);
        assert_eq!(normalize_email(Some("  ")).unwrap(), None);
        assert_eq!(
            normalize_email(Some(" a@b.org ")).unwrap().as_deref(),
            Some("a@b.org")
        );
        let nul = normalize_email(Some("a\0@b.org")).unwrap_err().to_string();
        assert!(nul.contains(r"a\u{0}@b.org"), "{nul}");
        let long = format!("{}@b.org", "a".repeat(250));
        assert!(normalize_email(Some(&long)).is_err());
        assert!(normalize_email(Some(&long[4..])).is_ok());
    }

    #[test]
    fn db_names_are_validated_and_suffixed() {
        assert_eq!(normalize_db_name("system.db").unwrap(), "system.db");
        assert_eq!(normalize_db_name("acme").unwrap(), "acme.db");
        assert_eq!(
            normalize_db_name("acme-1_x.eu.db").unwrap(),
            "acme-1_x.eu.db"
        );
        assert_eq!(normalize_db_name("A").unwrap(), "A.db");
        for bad in [
            "", "../x", "a/b", "a\\b", "x..db", ".hidden", "-x", "a b", "é.db",
        ] {
            let err = normalize_db_name(bad).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::InvalidInput, "{bad}");
            assert!(err.to_string().contains("db_name"), "{err}");
        }
    }

    #[test]
    fn db_name_length_is_bounded() {
        let ok = "a".repeat(64);
        assert_eq!(normalize_db_name(&ok).unwrap(), format!("{ok}.db"));
        assert!(normalize_db_name(&"a".repeat(65)).is_err());
        assert!(normalize_db_name(&"a".repeat(70)).is_err());
        assert!(normalize_db_name(&format!("{}.db", "a".repeat(67))).is_err());
    }

    #[test]
    fn role_tags_are_normalised() {
        assert_eq!(normalize_role_tag("Developer"), "developer");
        assert_eq!(normalize_role_tag("  Senior Dev "), "senior_dev");
        assert_eq!(normalize_role_tag("ops-team_2"), "ops-team_2");
        assert_eq!(normalize_role_tag("a<b>!c"), "abc");
        assert_eq!(normalize_role_tag(""), "user");
        assert_eq!(normalize_role_tag("  !!  "), "user");
        assert_eq!(normalize_role_tag(&"x".repeat(100)).len(), 64);
    }
}
