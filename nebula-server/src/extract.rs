//! Extractors that validate path and query input once, with errors that name the field.

use std::collections::HashMap;
use std::future::{ready, Ready};
use std::time::Duration;

use actix_web::dev::Payload;
use actix_web::http::header::CONTENT_LENGTH;
use actix_web::web::{Bytes, BytesMut};
use actix_web::{FromRequest, HttpRequest};
use futures::future::LocalBoxFuture;
use futures::StreamExt;

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
                    ApiError::NotFound(format!(
                        "plugin '{}' not found",
                        nebula_plugin_api::escape_control(raw)
                    ))
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
                nebula_plugin_api::escape_control(raw)
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
                nebula_plugin_api::escape_control(first)
            ))),
        }
    }
}

/// The largest request body: `server.max_body_bytes` on the app, or a route's own smaller
/// limit (the route table sets it on the resource).
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit {
    /// Bytes.
    pub bytes: usize,
    /// What sets it, named in the `413` detail.
    pub name: &'static str,
}

impl BodyLimit {
    /// The app-wide limit, `server.max_body_bytes`.
    pub const fn server(bytes: usize) -> Self {
        BodyLimit {
            bytes,
            name: "server.max_body_bytes",
        }
    }
}

/// How long a client may take to send its whole body. The header timeout is actix's
/// (`client_request_timeout`); this bounds a body trickled in slowly.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// A request body, read with the size limit (413) and the time limit (408).
#[derive(Debug)]
pub struct Body(pub Bytes);

impl FromRequest for Body {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let BodyLimit { bytes: limit, name } = req
            .app_data::<BodyLimit>()
            .copied()
            .unwrap_or(BodyLimit::server(8 * 1024 * 1024));
        let too_large =
            move || ApiError::PayloadTooLarge(format!("body larger than {name} ({limit} bytes)"));
        // A declared length over the limit is refused before reading a byte.
        let declared = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > limit) {
            return Box::pin(ready(Err(too_large())));
        }
        let mut payload = payload.take();
        Box::pin(async move {
            let read = async {
                let mut body = BytesMut::new();
                while let Some(chunk) = payload.next().await {
                    let chunk =
                        chunk.map_err(|e| ApiError::Invalid(format!("invalid body: {e}")))?;
                    if body.len() + chunk.len() > limit {
                        return Err(too_large());
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(Body(body.freeze()))
            };
            tokio::time::timeout(BODY_TIMEOUT, read)
                .await
                .unwrap_or_else(|_| {
                    Err(ApiError::RequestTimeout(format!(
                        "body not received within {} s",
                        BODY_TIMEOUT.as_secs()
                    )))
                })
        })
    }
}
