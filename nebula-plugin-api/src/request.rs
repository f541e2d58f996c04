//! The typed sync request (`POST /system/plugins/{name}/sync-users` body, gRPC `SyncUsers`).

use serde::{Deserialize, Serialize};

use crate::{PluginError, SYSTEM_DB_NAME};

/// Highest accepted `limit`.
pub const MAX_SYNC_LIMIT: u32 = 10_000;
/// Most users one request may carry.
pub const MAX_USERS_PER_REQUEST: usize = 10_000;

/// One user to synchronise. Defaults follow the contract: `db_name` `system.db`, `role_tag`
/// `user`, `is_active` true.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SyncUser {
    /// Login name; required, non-empty.
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 150, pattern = r"\S")
    )]
    pub username: String,
    /// Tenant (see [`crate::normalize_db_name`]).
    #[serde(default = "default_db_name")]
    pub db_name: String,
    /// Identity tag (see [`crate::normalize_role_tag`]).
    #[serde(default = "default_role_tag")]
    pub role_tag: String,
    /// E-mail, optional.
    #[serde(default)]
    pub email: Option<String>,
    /// Whether the user is active.
    #[serde(default = "default_true")]
    pub is_active: bool,
}

impl SyncUser {
    /// A user with the contract's defaults.
    pub fn new(username: impl Into<String>) -> Self {
        SyncUser {
            username: username.into(),
            db_name: default_db_name(),
            role_tag: default_role_tag(),
            email: None,
            is_active: true,
        }
    }
}

/// The body of a sync call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SyncRequest {
    /// Preview only; defaults to **true** so that a bare call never writes.
    #[serde(default = "default_true")]
    pub dry_run: bool,
    /// Users to sync; `None` lets the plugin choose (the sample previews demo users).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_items = 10000))]
    pub users: Option<Vec<SyncUser>>,
    /// 0 = no limit; otherwise at most this many users are processed.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(maximum = 10000))]
    pub limit: u32,
}

impl Default for SyncRequest {
    fn default() -> Self {
        SyncRequest {
            dry_run: true,
            users: None,
            limit: 0,
        }
    }
}

impl SyncRequest {
    /// Parses and validates a JSON body. Errors name the offending field, for example
    /// `users[2].username: must not be empty` or `limit: invalid type: string "x", expected u32`.
    pub fn from_json_slice(body: &[u8]) -> Result<Self, PluginError> {
        let request: SyncRequest = parse_json_object(body)?;
        request.validate()?;
        Ok(request)
    }

    /// Parses and validates an already decoded JSON value (the gRPC path).
    pub fn from_value(value: serde_json::Value) -> Result<Self, PluginError> {
        if !value.is_object() {
            return Err(not_an_object());
        }
        let request: SyncRequest =
            serde_path_to_error::deserialize(value).map_err(describe_path_error)?;
        request.validate()?;
        Ok(request)
    }

    /// Checks the rules serde cannot express: limit range, user count, non-empty usernames.
    pub fn validate(&self) -> Result<(), PluginError> {
        if self.limit > MAX_SYNC_LIMIT {
            return Err(PluginError::invalid(format!(
                "limit: must be between 0 and {MAX_SYNC_LIMIT}, got {}",
                self.limit
            )));
        }
        let Some(users) = &self.users else {
            return Ok(());
        };
        if users.len() > MAX_USERS_PER_REQUEST {
            return Err(PluginError::invalid(format!(
                "users: at most {MAX_USERS_PER_REQUEST} users per request, got {}",
                users.len()
            )));
        }
        for (i, user) in users.iter().enumerate() {
            if crate::validate_username(&user.username).is_err() {
                return Err(PluginError::invalid(format!(
                    "users[{i}].username: must be 1 to {} printable characters",
                    crate::MAX_USERNAME_CHARS
                )));
            }
        }
        Ok(())
    }

    /// The users to process after applying `limit` (empty when `users` is absent).
    pub fn limited_users(&self) -> &[SyncUser] {
        let users = self.users.as_deref().unwrap_or(&[]);
        self.apply_limit(users)
    }

    /// Applies `limit` to any list (for plugins that bring their own users).
    pub fn apply_limit<'a, T>(&self, items: &'a [T]) -> &'a [T] {
        match self.limit {
            0 => items,
            n => &items[..items.len().min(n as usize)],
        }
    }
}

/// Parses a request body that must be one JSON object into `T`: the one rule for bodies.
/// Errors are invalid input naming the offending field (`users[2].username: …`,
/// `action: unknown variant …`), or `invalid body: …` when there is no field to name; trailing
/// data after the object is refused.
pub fn parse_json_object<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, PluginError> {
    // serde's derive also accepts a JSON array for a struct; the contract wants an object.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(not_an_object());
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(describe_path_error)?;
    // Anything after the object (`{…} junk`) is malformed JSON, not ignorable.
    de.end()
        .map_err(|e| PluginError::invalid(format!("invalid body: {e}")))?;
    Ok(value)
}

fn not_an_object() -> PluginError {
    PluginError::invalid("invalid body: expected a JSON object")
}

fn describe_path_error(err: serde_path_to_error::Error<serde_json::Error>) -> PluginError {
    let path = err.path().to_string();
    let inner = err.into_inner();
    if path == "." || path == "?" || path.is_empty() {
        PluginError::invalid(format!("invalid body: {inner}"))
    } else {
        PluginError::invalid(format!("{path}: {inner}"))
    }
}

fn default_db_name() -> String {
    SYSTEM_DB_NAME.to_owned()
}

fn default_role_tag() -> String {
    "user".to_owned()
}

fn default_true() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<SyncRequest, PluginError> {
        SyncRequest::from_json_slice(body.as_bytes())
    }

    #[test]
    fn defaults_follow_the_contract() {
        let r = parse("{}").unwrap();
        assert_eq!(r, SyncRequest::default());
        assert!(r.dry_run);
        let r = parse(r#"{"dry_run":false,"users":[{"username":"a"}]}"#).unwrap();
        assert_eq!(r.users.unwrap()[0], SyncUser::new("a"));
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (r#"{"limit":"x"}"#, "limit:"),
            (r#"{"limit":-1}"#, "limit:"),
            (r#"{"limit":10001}"#, "limit: must be between 0 and 10000"),
            (r#"{"dry_run":"yes"}"#, "dry_run:"),
            (
                r#"{"users":[{"username":""}]}"#,
                "users[0].username: must be 1 to 150 printable characters",
            ),
            (r#"{"users":[{"email":"x"}]}"#, "users[0]"),
            (
                r#"{"users":[{"username":"a","is_active":1}]}"#,
                "users[0].is_active",
            ),
            (r#"{"bogus":1}"#, "unknown field `bogus`"),
            ("[1]", "invalid body: expected a JSON object"),
            ("", "invalid body: expected a JSON object"),
            ("{", "invalid body"),
            ("{} junk", "invalid body: trailing characters"),
        ];
        for (body, expected) in cases {
            let err = parse(body).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::InvalidInput);
            assert!(err.to_string().contains(expected), "{body}: {err}");
        }
    }

    #[test]
    fn user_count_is_capped() {
        let users: Vec<_> = (0..=MAX_USERS_PER_REQUEST)
            .map(|i| SyncUser::new(format!("u{i}")))
            .collect();
        let r = SyncRequest {
            users: Some(users),
            ..SyncRequest::default()
        };
        assert!(r
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("users: at most 10000"));
    }

    #[test]
    fn limit_bounds_the_users() {
        let mut r = SyncRequest {
            users: Some((0..5).map(|i| SyncUser::new(format!("u{i}"))).collect()),
            ..SyncRequest::default()
        };
        assert_eq!(r.limited_users().len(), 5);
        r.limit = 2;
        assert_eq!(r.limited_users().len(), 2);
        r.limit = 50;
        assert_eq!(r.limited_users().len(), 5);
    }
}
