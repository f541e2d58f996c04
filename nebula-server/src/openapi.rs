//! The OpenAPI 3.1 document of the HTTP API, generated from the handlers (`#[utoipa::path]` on
//! each, in `routes/`) and from the types they answer with (the answer types below, which the
//! handlers serialise, and the engine's types with their `ToSchema` derives): served at
//! `GET /openapi.json`, printed by `nebula-server openapi`, committed as `docs/openapi.json`
//! (`tests/openapi.rs` fails when the committed file differs from this one).

use nebula_core::events::Event;
use nebula_core::logs::LogLine;
use nebula_core::manager::{
    Counters, MethodSnapshot, PluginRecord, PluginSource, PluginStats, PluginStatus, ProcessInfo,
};
use nebula_plugin_api::{DirectoryUser, IdentityRole, JsonObject, SyncRequest, SyncUser};
use serde::{Deserialize, Serialize};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{IntoResponses, Modify, OpenApi, ToSchema};

use crate::routes;

/// Every error: `{"detail": "<text>"}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, naming the field for an invalid body or query.
    pub detail: String,
}

/// `GET /system/plugins`.
#[derive(Debug, Serialize, ToSchema)]
pub struct PluginList {
    /// Every plugin, sorted by (source, name).
    pub plugins: Vec<PluginRecord>,
}

/// `POST /system/plugins/rescan`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RescanAnswer {
    /// Always `ok`.
    pub status: OkStatus,
    /// Every plugin after the rescan.
    pub plugins: Vec<PluginRecord>,
}

/// The `status` of an answer that has only one: `ok`.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OkStatus {
    /// Done.
    Ok,
}

/// `GET /system/plugins/{name}/health`: the plugin's own answer, as it gave it.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthAnswer {
    /// The plugin's name.
    pub plugin: String,
    /// What the plugin answered; `status` is `ok` when it is healthy (200), anything else
    /// with 503.
    #[schema(value_type = Object)]
    pub health: JsonObject,
}

/// `POST /system/plugins/{name}/sync-users`: the plugin's report, as it gave it (for
/// `sample_sync`: `status`, `count`, `items`, and on a real run `created`, `updated`,
/// `failed`).
#[derive(Debug, Serialize, ToSchema)]
pub struct SyncAnswer {
    /// The plugin's name.
    pub plugin: String,
    /// The plugin's report.
    #[schema(value_type = Object)]
    pub result: JsonObject,
}

/// `POST /system/plugins/{name}/action`'s body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionBody {
    /// What to do.
    pub action: Action,
}

/// What an admin asks of a plugin.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Enable and initialise it.
    Start,
    /// Shut it down and disable it (persisted).
    Stop,
    /// A fresh instance.
    Restart,
}

/// A done action, as `result.status` says it.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActionDone {
    /// After `start`.
    Started,
    /// After `stop`.
    Stopped,
    /// After `restart`.
    Restarted,
}

impl Action {
    /// What the answer says of it once done.
    pub fn done(self) -> ActionDone {
        match self {
            Action::Start => ActionDone::Started,
            Action::Stop => ActionDone::Stopped,
            Action::Restart => ActionDone::Restarted,
        }
    }
}

/// `POST /system/plugins/{name}/action`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ActionAnswer {
    /// The plugin's name.
    pub plugin: String,
    /// The outcome.
    pub result: ActionResult,
}

/// The outcome of an action.
#[derive(Debug, Serialize, ToSchema)]
pub struct ActionResult {
    /// What was done.
    pub status: ActionDone,
}

/// `GET /system/plugins/{name}/logs`.
#[derive(Debug, Serialize, ToSchema)]
pub struct LogsAnswer {
    /// The plugin's name.
    pub plugin: String,
    /// Its most recent lines, oldest first.
    pub lines: Vec<LogLine>,
}

/// `GET /system/events`.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventsAnswer {
    /// Newest first.
    pub events: Vec<Event>,
}

/// `GET /system/directory/users`.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsersPage {
    /// The tenant listed (normalised: `acme` is `acme.db`).
    pub db_name: String,
    /// Users on this page.
    pub count: usize,
    /// The page, by username.
    pub items: Vec<DirectoryUser>,
}

/// `GET /system/directory/roles`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RolesAnswer {
    /// Every identity role, by name.
    pub roles: Vec<IdentityRole>,
}

/// `GET /healthz` and `POST /auth/logout`.
#[derive(Debug, Serialize, ToSchema)]
pub struct OkAnswer {
    /// Always `ok`.
    pub status: OkStatus,
}

/// `GET /readyz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadyAnswer {
    /// `ready` (200) or `not ready` (503).
    pub status: Readiness,
    /// `ok` or `unavailable`; why is in the server's log, never here.
    pub database: DatabaseState,
}

/// Whether the server can serve.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub enum Readiness {
    /// The database answers.
    #[serde(rename = "ready")]
    Ready,
    /// It does not.
    #[serde(rename = "not ready")]
    NotReady,
}

/// The database, as `/readyz` sees it.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DatabaseState {
    /// It answered.
    Ok,
    /// It did not answer within `database.connect_timeout_sec`.
    Unavailable,
}

/// `POST /auth/login`'s body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    /// A staff user of `system.db`.
    pub username: String,
    /// Their password.
    pub password: String,
}

/// `POST /auth/login`.
#[derive(Debug, Serialize, ToSchema)]
pub struct LoginAnswer {
    /// Always `ok`.
    pub status: OkStatus,
    /// Who is logged in.
    pub username: String,
    /// Seconds until the session cookie expires.
    pub expires_in: i64,
}

/// What `GET …/health` answers with 503: the plugin's own unhealthy answer, or an error when
/// the plugin is not loaded at all.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum HealthUnavailable {
    /// The plugin answered with a status other than `ok`.
    Unhealthy(HealthAnswer),
    /// The plugin is not loaded (crashed, or failed to initialise), or the database is down.
    Error(ErrorBody),
}

/// The errors of every `/system/` route.
#[derive(IntoResponses)]
pub enum SystemErrors {
    /// 403.
    #[response(
        status = 403,
        description = "No valid credentials (`{\"detail\": \"Forbidden\"}`), or a cookie \
                       request that changes state from another origin or without JSON"
    )]
    Forbidden(ErrorBody),
    /// 429.
    #[response(
        status = 429,
        description = "Too many wrong tokens from this address; `Retry-After` says when to \
                       try again"
    )]
    RateLimited(ErrorBody),
    /// 503.
    #[response(
        status = 503,
        description = "The database does not answer (or a plugin is not loaded)"
    )]
    Unavailable(ErrorBody),
}

/// The errors of a route that names a plugin and calls it.
#[derive(IntoResponses)]
pub enum PluginCallErrors {
    /// 404.
    #[response(
        status = 404,
        description = "No plugin of that name (`plugin 'x' not found`)"
    )]
    NotFound(ErrorBody),
    /// 409.
    #[response(
        status = 409,
        description = "The plugin is disabled, or a real sync of it is already running"
    )]
    Conflict(ErrorBody),
    /// 500.
    #[response(
        status = 500,
        description = "The plugin failed or panicked; the server lives on"
    )]
    PluginFailed(ErrorBody),
    /// 502.
    #[response(
        status = 502,
        description = "A gRPC or process plugin is unreachable or answered an error"
    )]
    BadGateway(ErrorBody),
    /// 504.
    #[response(status = 504, description = "The plugin call timed out")]
    Timeout(ErrorBody),
}

/// The errors of reading a JSON body.
#[derive(IntoResponses)]
pub enum BodyErrors {
    /// 408.
    #[response(status = 408, description = "The body did not arrive in time")]
    RequestTimeout(ErrorBody),
    /// 413.
    #[response(
        status = 413,
        description = "The body is over `server.max_body_bytes` (the login's over 4 KiB)"
    )]
    PayloadTooLarge(ErrorBody),
    /// 422.
    #[response(
        status = 422,
        description = "Not JSON, wrong types, unknown fields or values out of range; the \
                       detail names the field. A sync also answers 422 when the plugin refuses \
                       its input as invalid (`csv_import` with incomplete settings does)"
    )]
    Invalid(ErrorBody),
}

/// The two ways to authenticate (SPEC §5).
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "installer_token",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                crate::auth::TOKEN_HEADER,
                "The installer token (NEBULA_INSTALLER_TOKEN, or the generated one in \
                 data/installer_token).",
            ))),
        );
        components.add_security_scheme(
            "staff_session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                crate::auth::SESSION_COOKIE,
                "A staff session from POST /auth/login. State changes with it must be JSON \
                 from the server's own origin (SPEC §11).",
            ))),
        );
    }
}

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Nebula Core",
        description = "The plugin host's HTTP API (plugin_api_v1). Every route under /system/ \
                       needs the installer token or a staff session; errors are always \
                       {\"detail\": \"<text>\"}.",
        license(name = "MIT OR Apache-2.0"),
    ),
    paths(
        routes::plugins::list,
        routes::plugins::rescan,
        routes::plugins::health,
        routes::plugins::sync_users,
        routes::plugins::action,
        routes::plugins::stats,
        routes::plugins::logs,
        routes::events::list,
        routes::directory::users,
        routes::directory::roles,
        routes::session::healthz,
        routes::session::readyz,
        routes::session::login,
        routes::session::logout,
        routes::metrics::metrics,
        routes::metrics::openapi,
    ),
    components(schemas(
        ErrorBody, HealthUnavailable, PluginList, RescanAnswer, OkStatus, HealthAnswer, SyncAnswer, ActionBody,
        Action, ActionDone, ActionAnswer, ActionResult, LogsAnswer, EventsAnswer, UsersPage,
        RolesAnswer, OkAnswer, ReadyAnswer, Readiness, DatabaseState, LoginBody, LoginAnswer,
        PluginRecord, PluginSource, PluginStatus, Counters, PluginStats, MethodSnapshot,
        ProcessInfo, LogLine, Event, DirectoryUser, IdentityRole, SyncRequest, SyncUser,
    )),
    modifiers(&Security),
    tags(
        (name = "plugins", description = "The plugins: list, health, sync, lifecycle."),
        (name = "system", description = "Events and the identity directory."),
        (name = "session", description = "Liveness, readiness, staff sessions."),
        (name = "operations", description = "Metrics and this document."),
    ),
)]
pub struct ApiDoc;

/// The document as pretty JSON with a final newline: what `GET /openapi.json` answers and
/// `docs/openapi.json` holds.
pub fn document_json() -> String {
    let mut text = ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"the document cannot be serialised: {e}\"}}"));
    text.push('\n');
    text
}
