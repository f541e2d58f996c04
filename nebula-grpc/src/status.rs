//! `PluginError` ↔ gRPC status for the host service (`nebula.host.v1`), both ways and without
//! loss, in one place: [`status_of_error`] on the core's side, [`error_of_status`] on the
//! plugin's.
//!
//! The status code follows SPEC §8 (a peer in any language reads it); the exact variant rides
//! along in the status metadata, so a Rust plugin gets back the very `PluginError` the core's
//! context returned:
//!
//! | `PluginError` | code | metadata `x-nebula-error` |
//! | --- | --- | --- |
//! | `InvalidInput` | `INVALID_ARGUMENT` | `invalid_input` |
//! | `Forbidden` (`system.db`) | `INVALID_ARGUMENT` (SPEC §8: bad input, naming the field) | `forbidden` |
//! | `MissingScope` | `PERMISSION_DENIED` (the message names the scope) | `missing_scope`, with `x-nebula-error-plugin` and `x-nebula-error-scope` |
//! | `NotFound` | `NOT_FOUND` | `not_found` |
//! | `Unavailable` | `UNAVAILABLE` | `unavailable` |
//! | `Timeout` | `DEADLINE_EXCEEDED` | `timeout` |
//! | `Internal` | `INTERNAL` | `internal` |
//!
//! A status without that metadata (another implementation, or a failure of the channel
//! itself) is mapped by its code: `INVALID_ARGUMENT`, `OUT_OF_RANGE` → `InvalidInput`;
//! `PERMISSION_DENIED` → `MissingScope` when the message says which, else `Forbidden`;
//! `NOT_FOUND` → `NotFound`; `DEADLINE_EXCEEDED`, `CANCELLED` → `Timeout`;
//! `UNAUTHENTICATED` (a stale or unknown host token), `UNAVAILABLE`, `UNKNOWN`,
//! `RESOURCE_EXHAUSTED`, `ABORTED` → `Unavailable`; anything else → `Internal`.

use nebula_plugin_api::{PluginError, Scope};
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Status};

use crate::{echo, MAX_ERROR_TEXT};

/// Status metadata naming the exact [`PluginError`] variant.
pub const ERROR_KIND_METADATA: &str = "x-nebula-error";
/// Status metadata naming the missing scope of a `MissingScope`.
pub const ERROR_SCOPE_METADATA: &str = "x-nebula-error-scope";
/// Status metadata naming the plugin of a `MissingScope`.
pub const ERROR_PLUGIN_METADATA: &str = "x-nebula-error-plugin";

/// The name of `error`'s variant as carried in [`ERROR_KIND_METADATA`] (and in the `code`
/// of a bulk `SyncUsers` result): `invalid_input`, `forbidden`, `missing_scope`, `not_found`,
/// `unavailable`, `timeout` or `internal`.
pub fn error_kind_name(error: &PluginError) -> &'static str {
    match error {
        PluginError::InvalidInput(_) => "invalid_input",
        PluginError::Forbidden(_) => "forbidden",
        PluginError::MissingScope { .. } => "missing_scope",
        PluginError::NotFound(_) => "not_found",
        PluginError::Unavailable(_) => "unavailable",
        PluginError::Timeout(_) => "timeout",
        PluginError::Internal(_) => "internal",
    }
}

/// The error named `kind` (an [`error_kind_name`]) with `message`; `None` for an unknown name
/// and for `missing_scope`, which needs more than a message.
pub fn error_of_kind(kind: &str, message: String) -> Option<PluginError> {
    Some(match kind {
        "invalid_input" => PluginError::InvalidInput(message),
        "forbidden" => PluginError::Forbidden(message),
        "not_found" => PluginError::NotFound(message),
        "unavailable" => PluginError::Unavailable(message),
        "timeout" => PluginError::Timeout(message),
        "internal" => PluginError::Internal(message),
        _ => return None,
    })
}

/// The status the host service answers for `error` (see the [module](self) table). The
/// message is the error's text, control characters escaped and cut to about 1 KiB.
pub fn status_of_error(error: &PluginError) -> Status {
    let code = match error {
        PluginError::InvalidInput(_) | PluginError::Forbidden(_) => Code::InvalidArgument,
        PluginError::MissingScope { .. } => Code::PermissionDenied,
        PluginError::NotFound(_) => Code::NotFound,
        PluginError::Unavailable(_) => Code::Unavailable,
        PluginError::Timeout(_) => Code::DeadlineExceeded,
        PluginError::Internal(_) => Code::Internal,
    };
    let mut metadata = MetadataMap::new();
    metadata.insert(
        ERROR_KIND_METADATA,
        MetadataValue::from_static(error_kind_name(error)),
    );
    if let PluginError::MissingScope { plugin, scope } = error {
        metadata.insert(
            ERROR_SCOPE_METADATA,
            MetadataValue::from_static(scope.as_str()),
        );
        // Plugin names are ASCII by the name rule; anything else is simply not sent.
        if let Ok(value) = MetadataValue::try_from(plugin.as_str()) {
            metadata.insert(ERROR_PLUGIN_METADATA, value);
        }
    }
    Status::with_metadata(code, echo(&error.to_string(), MAX_ERROR_TEXT), metadata)
}

/// The `PluginError` a plugin gets for a host service `status` (the inverse of
/// [`status_of_error`]; see the [module](self) table for statuses without metadata).
pub fn error_of_status(status: &Status) -> PluginError {
    let metadata = status.metadata();
    let text = |key: &str| metadata.get(key).and_then(|v| v.to_str().ok());
    let message = echo(status.message(), MAX_ERROR_TEXT);
    match text(ERROR_KIND_METADATA) {
        Some("missing_scope") => {
            let scope = text(ERROR_SCOPE_METADATA).and_then(Scope::parse);
            if let (Some(scope), Some(plugin)) = (scope, text(ERROR_PLUGIN_METADATA)) {
                return PluginError::MissingScope {
                    plugin: plugin.to_owned(),
                    scope,
                };
            }
        }
        Some(kind) => {
            if let Some(error) = error_of_kind(kind, message.clone()) {
                return error;
            }
        }
        None => {}
    }
    match status.code() {
        Code::InvalidArgument | Code::OutOfRange => PluginError::InvalidInput(message),
        Code::PermissionDenied => {
            missing_scope_in(status.message()).unwrap_or(PluginError::Forbidden(message))
        }
        Code::NotFound => PluginError::NotFound(message),
        Code::DeadlineExceeded | Code::Cancelled => PluginError::Timeout(message),
        Code::Unauthenticated => PluginError::Unavailable(format!(
            "the host service refused the host token (UNAUTHENTICATED): {message}"
        )),
        Code::Unavailable | Code::Unknown | Code::ResourceExhausted | Code::Aborted => {
            PluginError::Unavailable(message)
        }
        _ => PluginError::Internal(message),
    }
}

/// `plugin 'NAME' lacks scope 'SCOPE'` (the text of `MissingScope`) read back.
fn missing_scope_in(message: &str) -> Option<PluginError> {
    let rest = message.strip_prefix("plugin '")?;
    let (plugin, rest) = rest.split_once("' lacks scope '")?;
    let scope = Scope::parse(rest.strip_suffix('\'')?)?;
    Some(PluginError::MissingScope {
        plugin: plugin.to_owned(),
        scope,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_error() -> Vec<PluginError> {
        let mut errors = vec![
            PluginError::InvalidInput("invalid db_name '../x': no".into()),
            PluginError::Forbidden(
                "db_name 'system.db': plugins never create or modify system users".into(),
            ),
            PluginError::NotFound("user 'ann' not found in 'acme.db'".into()),
            PluginError::Unavailable("database down".into()),
            PluginError::Timeout("slow".into()),
            PluginError::Internal("bug".into()),
        ];
        for scope in Scope::ALL {
            errors.push(PluginError::MissingScope {
                plugin: "hr_sync".into(),
                scope,
            });
        }
        errors
    }

    #[test]
    fn every_error_round_trips_through_its_status() {
        for error in every_error() {
            let status = status_of_error(&error);
            assert_eq!(error_of_status(&status), error, "{status:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_message_round_trips(kind in 0usize..7, message in "[^\\p{Cc}]{0,200}") {
            let error = match kind {
                0 => PluginError::InvalidInput(message),
                1 => PluginError::Forbidden(message),
                2 => PluginError::NotFound(message),
                3 => PluginError::Unavailable(message),
                4 => PluginError::Timeout(message),
                5 => PluginError::Internal(message),
                _ => PluginError::MissingScope { plugin: "p-1".into(), scope: Scope::EventsEmit },
            };
            proptest::prop_assert_eq!(error_of_status(&status_of_error(&error)), error);
        }
    }

    #[test]
    fn codes_follow_the_spec() {
        let code = |e: &PluginError| status_of_error(e).code();
        let errors = every_error();
        assert_eq!(code(&errors[0]), Code::InvalidArgument);
        // system.db: INVALID_ARGUMENT naming the field (SPEC §8).
        let forbidden = status_of_error(&errors[1]);
        assert_eq!(forbidden.code(), Code::InvalidArgument);
        assert!(forbidden.message().contains("db_name"));
        assert_eq!(code(&errors[2]), Code::NotFound);
        assert_eq!(code(&errors[3]), Code::Unavailable);
        assert_eq!(code(&errors[4]), Code::DeadlineExceeded);
        assert_eq!(code(&errors[5]), Code::Internal);
        let denied = status_of_error(&errors[6]);
        assert_eq!(denied.code(), Code::PermissionDenied);
        assert_eq!(
            denied.message(),
            "plugin 'hr_sync' lacks scope 'users.read'"
        );
    }

    #[test]
    fn statuses_without_metadata_map_by_code() {
        let plain = |code, message: &str| error_of_status(&Status::new(code, message));
        assert_eq!(
            plain(
                Code::PermissionDenied,
                "plugin 'p' lacks scope 'roles.write'"
            ),
            PluginError::MissingScope {
                plugin: "p".into(),
                scope: Scope::RolesWrite
            }
        );
        assert_eq!(
            plain(Code::PermissionDenied, "no"),
            PluginError::Forbidden("no".into())
        );
        assert_eq!(
            plain(Code::InvalidArgument, "x").kind(),
            nebula_plugin_api::ErrorKind::InvalidInput
        );
        let stale = plain(Code::Unauthenticated, "unknown host token");
        assert!(matches!(stale, PluginError::Unavailable(_)), "{stale}");
        assert!(stale.to_string().contains("UNAUTHENTICATED"));
        assert!(matches!(
            plain(Code::Cancelled, "Timeout expired"),
            PluginError::Timeout(_)
        ));
        assert!(matches!(
            plain(Code::Unimplemented, "x"),
            PluginError::Internal(_)
        ));
    }
}
