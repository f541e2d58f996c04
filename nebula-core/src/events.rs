//! The event bus: every event is stored in the `events` table, in one order.

use diesel::prelude::*;
use serde::Serialize;
use serde_json::Value;

use crate::metrics::Metrics;
use crate::storage::schema::events;
use crate::storage::{on_backend, unix_now, Database, StorageError};

/// Most events one [`EventBus::list`] call returns.
pub const MAX_EVENT_PAGE: u32 = 1000;

/// A stored event.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Event {
    /// Increasing identifier.
    pub id: i64,
    /// Dotted name, for example `plugin.sample_sync.sync.finished`.
    pub name: String,
    /// Any JSON.
    pub payload: Value,
    /// Float Unix seconds.
    pub created_at: f64,
}

/// The stored events: published into the `events` table, listed newest first.
#[derive(Debug, Clone)]
pub struct EventBus {
    db: Database,
    metrics: Option<Metrics>,
}

impl EventBus {
    /// A bus storing into `db`.
    pub fn new(db: Database) -> Self {
        EventBus { db, metrics: None }
    }

    /// The same bus, counting the events it stores in `metrics`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Stores the event.
    pub async fn publish(&self, name: &str, payload: Value) -> Result<Event, StorageError> {
        let name = name.to_owned();
        self.db
            .write(move |conn| {
                let created_at = unix_now();
                let text = payload.to_string();
                let id = on_backend!(conn, conn => diesel::insert_into(events::table)
                    .values((
                        events::name.eq(&name),
                        events::payload.eq(&text),
                        events::created_at.eq(created_at),
                    ))
                    .returning(events::id)
                    .get_result::<i64>(conn))?;
                Ok(Event {
                    id,
                    name,
                    payload,
                    created_at,
                })
            })
            .await
            .inspect(|_| {
                if let Some(metrics) = &self.metrics {
                    metrics.event_written();
                }
            })
    }

    /// Stored events whose name starts with `prefix`, newest first, at most `limit` (clamped to
    /// 1..=1000).
    pub async fn list(&self, prefix: &str, limit: u32) -> Result<Vec<Event>, StorageError> {
        self.list_before(prefix, limit, None).await
    }

    /// Like [`list`](Self::list), only events with an id below `before`: pass the last id of a
    /// page to get the next (older) page.
    pub async fn list_before(
        &self,
        prefix: &str,
        limit: u32,
        before: Option<i64>,
    ) -> Result<Vec<Event>, StorageError> {
        // A case-sensitive, index-friendly prefix match that means the same on every
        // backend: prefix <= name < prefix + U+10FFFF (LIKE ignores ASCII case on SQLite).
        let lower = prefix.to_owned();
        let upper = format!("{prefix}\u{10FFFF}");
        let limit = i64::from(limit.clamp(1, MAX_EVENT_PAGE));
        let before = before.unwrap_or(i64::MAX);
        self.db
            .read(move |conn| {
                let rows = on_backend!(conn, conn => events::table
                    .filter(events::name.ge(&lower))
                    .filter(events::name.lt(&upper))
                    .filter(events::id.lt(before))
                    .order(events::id.desc())
                    .limit(limit)
                    .select((
                        events::id,
                        events::name,
                        events::payload,
                        events::created_at,
                    ))
                    .load::<(i64, String, String, f64)>(conn))?;
                Ok(rows
                    .into_iter()
                    .map(|(id, name, payload, created_at)| Event {
                        id,
                        name,
                        // Stored by `publish` as JSON; a hand-edited row degrades to a string.
                        payload: serde_json::from_str(&payload).unwrap_or(Value::String(payload)),
                        created_at,
                    })
                    .collect())
            })
            .await
    }
}
