//! Extractors that validate path and query input once, with errors that name the field.

use std::collections::HashMap;
use std::future::{ready, Ready};

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest};

use crate::error::ApiError;

/// A `{name}` path segment that is a valid plugin name (checked before any lookup; an invalid
/// one answers 404 `plugin 'x' not found`).
#[derive(Debug, Clone)]
pub struct PluginName(pub String);

impl FromRequest for PluginName {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let raw = req.match_info().get("name").unwrap_or_default();
        // A name that cannot exist is simply not found; it never reaches a lookup or a log.
        ready(
            nebula_plugin_api::validate_plugin_name(raw)
                .map(|()| PluginName(raw.to_owned()))
                .map_err(|_| {
                    ApiError::NotFound(format!("plugin '{}' not found", raw.escape_default()))
                }),
        )
    }
}

/// The query string as key → value; unknown keys are refused by [`QueryParams::finish`].
#[derive(Debug)]
pub struct QueryParams {
    values: HashMap<String, String>,
    known: Vec<&'static str>,
}

impl FromRequest for QueryParams {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let parsed =
            actix_web::web::Query::<HashMap<String, String>>::from_query(req.query_string())
                .map(|q| QueryParams {
                    values: q.into_inner(),
                    known: Vec::new(),
                })
                .map_err(|e| ApiError::Invalid(format!("invalid query string: {e}")));
        ready(parsed)
    }
}

impl QueryParams {
    /// A string parameter.
    pub fn text(&mut self, name: &'static str, default: &str) -> String {
        self.known.push(name);
        self.values
            .get(name)
            .cloned()
            .unwrap_or_else(|| default.to_owned())
    }

    /// An integer parameter within `min..=max`.
    pub fn integer(
        &mut self,
        name: &'static str,
        default: u64,
        min: u64,
        max: u64,
    ) -> Result<u64, ApiError> {
        Ok(self.optional_integer(name, min, max)?.unwrap_or(default))
    }

    /// An integer parameter within `min..=max`, `None` when absent.
    pub fn optional_integer(
        &mut self,
        name: &'static str,
        min: u64,
        max: u64,
    ) -> Result<Option<u64>, ApiError> {
        self.known.push(name);
        let Some(raw) = self.values.get(name) else {
            return Ok(None);
        };
        match raw.parse::<u64>() {
            Ok(v) if (min..=max).contains(&v) => Ok(Some(v)),
            _ => Err(ApiError::Invalid(format!(
                "{name}: expected an integer between {min} and {max}, got '{}'",
                raw.escape_default()
            ))),
        }
    }

    /// Refuses parameters nobody asked for, so a typo (`limt=5`) is not silently ignored.
    pub fn finish(self) -> Result<(), ApiError> {
        let mut unknown: Vec<&String> = self
            .values
            .keys()
            .filter(|k| !self.known.contains(&k.as_str()))
            .collect();
        unknown.sort();
        match unknown.first() {
            None => Ok(()),
            Some(first) => Err(ApiError::Invalid(format!(
                "unknown query parameter '{}'",
                first.escape_default()
            ))),
        }
    }
}
