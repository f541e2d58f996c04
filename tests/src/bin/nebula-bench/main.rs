//! The performance figures of `docs/PERFORMANCE.md`, in one command:
//!
//! ```text
//! cargo run --release -p nebula-tests --bin nebula-bench -- all [--seconds 5] [--quick] [--no-build]
//! ```
//!
//! Builds the release server (`cargo build --release -p nebula-server --bins`, unless
//! `--no-build` or `--server PATH`), starts it on loopback over a temporary SQLite database
//! with four plugins (`sample_sync`, `csv_import` and `ldap_sync`, unconfigured, linked,
//! `sample_twin` as a process plugin), and measures, each after a warm-up and for a bounded time, with this process as
//! the load generator:
//!
//! - `GET /system/plugins`, `…/sample_sync/health` and the seed's dry run, at 1 and 64
//!   connections, against a minimal actix-web server with the same token check, the same
//!   bodies and the same number of workers (`nebula-bench baseline`, another process);
//! - real syncs of 1,000, 10,000 and 100,000 new users through HTTP (requests of at most
//!   10,000, the API's limit), then the same users again, against plain diesel writing the same
//!   rows on the same database (a prepared upsert per row, one transaction per 500 rows);
//! - the same syncs on PostgreSQL (up to 10,000 users) when `NEBULA_TEST_POSTGRES_URL` names
//!   a server (`eval "$(.ci/postgres.sh)"` starts one);
//! - `sample_sync` as an external gRPC plugin (`serve-plugin` on loopback): health and the dry
//!   run by a plain tonic client, by the adapter alone (`nebula_grpc::GrpcPlugin` in this
//!   process) and through the HTTP API, one call at a time: what each layer adds at p50;
//! - RSS idle and after the load, and start-up to the first `/healthz`: with no configuration
//!   on an empty database (as the README starts it), and with the three plugins on the
//!   database holding the synced users.
//!
//! Prints one table and exits non-zero if any request failed. `--quick` (seconds, used by the
//! smoke test) runs every case briefly and the sync of 1,000 users only.

mod baseline;
mod grpc;
mod load;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;
use nebula_core::storage::schema::{user_identity_tags, users};
use serde_json::{json, Value};

const TOKEN: &str = "nebula-bench-installer-token-0123456789abcdef";
/// actix workers of `nebula-server` (`startup/serve.rs`); the baseline gets as many.
const SERVER_WORKERS: usize = 2;
/// Users per request: the API's limit (`MAX_USERS_PER_REQUEST`).
const USERS_PER_REQUEST: usize = nebula_plugin_api::MAX_USERS_PER_REQUEST;
/// Rows per transaction of the plain-diesel baseline, as the server's bulk path.
const BASELINE_CHUNK: usize = 500;

struct Options {
    seconds: f64,
    quick: bool,
    build: bool,
    server: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("all") => match parse(&args[1..]) {
            Ok(options) => run_all(&options),
            Err(e) => {
                eprintln!("nebula-bench: {e}");
                ExitCode::from(2)
            }
        },
        Some("baseline") => serve_baseline(&args[1..]),
        _ => {
            eprintln!(
                "usage: nebula-bench all [--seconds S] [--quick] [--no-build] [--server PATH]"
            );
            ExitCode::from(2)
        }
    }
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        seconds: 5.0,
        quick: false,
        build: true,
        server: None,
    };
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--seconds" => {
                options.seconds = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|s: &f64| *s > 0.0)
                    .ok_or("--seconds needs a positive number")?;
            }
            "--quick" => options.quick = true,
            "--no-build" => options.build = false,
            "--server" => {
                options.server = Some(PathBuf::from(args.next().ok_or("--server needs a path")?));
                options.build = false;
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if options.quick {
        options.seconds = options.seconds.min(0.5);
    }
    Ok(options)
}

/// `nebula-bench baseline LIST_FILE HEALTH_FILE DRY_RUN_FILE`: the baseline server.
fn serve_baseline(args: &[String]) -> ExitCode {
    let read = |i: usize| {
        args.get(i)
            .and_then(|path| std::fs::read(path).ok())
            .map(actix_web::web::Bytes::from)
    };
    let (Some(list), Some(health), Some(dry_run)) = (read(0), read(1), read(2)) else {
        eprintln!("usage: nebula-bench baseline LIST_FILE HEALTH_FILE DRY_RUN_FILE");
        return ExitCode::from(2);
    };
    let bodies = baseline::Bodies {
        list,
        health,
        dry_run,
    };
    match baseline::serve(TOKEN.to_owned(), bodies, SERVER_WORKERS) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("baseline: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A process this bench started (a server, the baseline), stopped when dropped.
struct Process {
    child: Child,
    base: String,
}

impl Process {
    /// Starts `command` and waits for its `listening on http://ADDR` line.
    fn start(command: &mut Command) -> Result<Process, String> {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {command:?}: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        let base = line
            .split_whitespace()
            .find(|word| word.starts_with("http://"))
            .ok_or_else(|| format!("no address in {line:?}"))?
            .to_owned();
        Ok(Process { child, base })
    }

    fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|status| {
                status
                    .lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse().ok())
            })
            .unwrap_or(0)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // SIGTERM (a clean stop), then wait; only this child, by its pid.
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill(2) on our own child's pid, which we have not reaped yet.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let _ = self.child.wait();
    }
}

/// The server's binaries: `nebula-server` and `sample-sync-process`, beside this binary or
/// at `--server`.
fn binaries(options: &Options) -> Result<(PathBuf, PathBuf), String> {
    if options.build {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--release", "-p", "nebula-server", "--bins"])
            .status()
            .map_err(|e| format!("cargo build: {e}"))?;
        if !status.success() {
            return Err("cargo build --release -p nebula-server failed".into());
        }
    }
    let server = match &options.server {
        // The servers run in scratch directories: resolve the path first.
        Some(path) => {
            std::fs::canonicalize(path).map_err(|e| format!("--server {}: {e}", path.display()))?
        }
        None => std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("nebula-server"),
    };
    let twin = server.with_file_name("sample-sync-process");
    for binary in [&server, &twin] {
        if !binary.exists() {
            return Err(format!(
                "{} not found: cargo build --release -p nebula-server --bins",
                binary.display()
            ));
        }
    }
    Ok((server, twin))
}

/// A directory with the server's configuration: three plugins, the third a process plugin.
fn prepare(dir: &Path, twin: &Path) -> Result<PathBuf, String> {
    let io = |e: std::io::Error| e.to_string();
    let manifest_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sample-sync/plugin.json");
    let mut manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(manifest_path).map_err(io)?)
            .map_err(|e| e.to_string())?;
    manifest["name"] = json!("sample_twin");
    manifest["runtime"] = json!({"command": [twin]});
    let plugin_dir = dir.join("plugins/sample_twin");
    std::fs::create_dir_all(&plugin_dir).map_err(io)?;
    std::fs::write(plugin_dir.join("plugin.json"), manifest.to_string()).map_err(io)?;
    let config = dir.join("nebula.toml");
    std::fs::write(
        &config,
        format!(
            "[plugins]\ndir = \"{}\"\nhealth_interval_sec = 3600\n",
            dir.join("plugins").display()
        ),
    )
    .map_err(io)?;
    Ok(config)
}

fn start_server(binary: &Path, dir: &Path, config: Option<&Path>) -> Result<Process, String> {
    start_server_with(binary, dir, config, &[])
}

fn start_server_with(
    binary: &Path,
    dir: &Path,
    config: Option<&Path>,
    env: &[(&str, &str)],
) -> Result<Process, String> {
    let mut command = Command::new(binary);
    command.envs(env.iter().copied());
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    Process::start(
        command
            .current_dir(dir)
            .env_remove("NEBULA_CONFIG")
            .env("NEBULA__SERVER__BIND", "127.0.0.1:0")
            .env("NEBULA_INSTALLER_TOKEN", TOKEN)
            .env("RUST_LOG", "warn"),
    )
}

/// One line of the table.
struct Row {
    case: String,
    ours: String,
    baseline: String,
    ratio: Option<f64>,
    target: String,
    met: Option<bool>,
}

impl Row {
    fn print_all(rows: &[Row]) {
        println!(
            "{:<52} {:>30} {:>22} {:>7}  target",
            "case", "nebula-server", "baseline", "ratio"
        );
        for row in rows {
            let ratio = row.ratio.map_or("".into(), |r| format!("{r:.2}"));
            let met = match row.met {
                Some(true) => "met",
                Some(false) => "MISSED",
                None => "",
            };
            println!(
                "{:<52} {:>30} {:>22} {:>7}  {:<18} {met}",
                row.case, row.ours, row.baseline, ratio, row.target
            );
        }
    }
}

fn http_rows(
    server: &Process,
    baseline_base: &str,
    dry_body: &Arc<Vec<u8>>,
    options: &Options,
    failed: &mut u64,
) -> Vec<Row> {
    let token = vec![("X-Nebula-Token", TOKEN.to_owned())];
    let request = |method: &'static str, url: String, body: Option<Arc<Vec<u8>>>| load::Request {
        method,
        url,
        headers: token.clone(),
        body,
    };
    let cases = [
        (
            "list",
            request("GET", format!("{}/system/plugins", server.base), None),
            request("GET", format!("{baseline_base}/list"), None),
            0.8,
        ),
        (
            "health",
            request(
                "GET",
                format!("{}/system/plugins/sample_sync/health", server.base),
                None,
            ),
            request("GET", format!("{baseline_base}/health"), None),
            0.6,
        ),
        (
            "dry run",
            request(
                "POST",
                format!("{}/system/plugins/sample_sync/sync-users", server.base),
                Some(dry_body.clone()),
            ),
            request(
                "POST",
                format!("{baseline_base}/dry-run"),
                Some(dry_body.clone()),
            ),
            0.6,
        ),
    ];
    let (warmup, measure) = (
        Duration::from_secs_f64((options.seconds / 5.0).max(0.2)),
        Duration::from_secs_f64(options.seconds),
    );
    let mut rows = Vec::new();
    for (name, ours, theirs, floor) in &cases {
        for connections in [1, 64] {
            let ours = load::run(ours, connections, warmup, measure);
            let theirs = load::run(theirs, connections, warmup, measure);
            *failed += ours.errors + theirs.errors;
            let ratio = ours.per_second / theirs.per_second.max(f64::MIN_POSITIVE);
            let describe = |o: &load::Outcome| {
                format!(
                    "{:.0}/s {}/{} µs{}",
                    o.per_second,
                    o.p50_us,
                    o.p99_us,
                    if o.errors > 0 {
                        format!(" {} err", o.errors)
                    } else {
                        String::new()
                    }
                )
            };
            // The ratio target is for 64 connections (list) or any (health, dry run).
            let ratio_counts = *name != "list" || connections == 64;
            let tail_ok = ours.p99_us <= 5 * ours.p50_us.max(1);
            rows.push(Row {
                case: format!("{name}, {connections} conn (req/s p50/p99)"),
                ours: describe(&ours),
                baseline: describe(&theirs),
                ratio: Some(ratio),
                target: if ratio_counts {
                    format!("≥{floor}×, p99≤5×p50")
                } else {
                    "p99≤5×p50".into()
                },
                met: Some((!ratio_counts || ratio >= *floor) && tail_ok),
            });
        }
    }
    rows
}

/// The peer's token, in the environment of the peer and of the server that calls it.
const PEER_TOKEN_ENV: &str = "NEBULA_BENCH_PEER_TOKEN";
const PEER_TOKEN: &str = "nebula-bench-peer-token-0123456789abcdef";
/// What the adapter may add at p50 over a plain tonic client (the issue's target).
const ADAPTER_BUDGET_US: u64 = 150;

/// `sample_sync` served by `serve-plugin` on loopback, called through a server of its own (as
/// the external plugin `sample_remote`) and by a plain tonic client, one call at a time.
fn grpc_rows(server_bin: &Path, options: &Options, failed: &mut u64) -> Result<Vec<Row>, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let io = |e: std::io::Error| e.to_string();
    let peer_dir = dir.path().join("peer");
    let server_dir = dir.path().join("server");
    std::fs::create_dir_all(&peer_dir).map_err(io)?;
    std::fs::create_dir_all(&server_dir).map_err(io)?;
    let peer = Process::start(
        Command::new(server_bin)
            .args(["serve-plugin", "sample_sync", "--listen", "127.0.0.1:0"])
            .args(["--token-env", PEER_TOKEN_ENV])
            .current_dir(&peer_dir)
            .env_remove("NEBULA_CONFIG")
            .env(PEER_TOKEN_ENV, PEER_TOKEN)
            .env("RUST_LOG", "warn"),
    )?;
    let config = server_dir.join("nebula.toml");
    std::fs::write(
        &config,
        format!(
            "[plugins]\nhealth_interval_sec = 3600\n\n[[plugins.external]]\n\
             name = \"sample_remote\"\nendpoint = \"{}\"\ntoken_env = \"{PEER_TOKEN_ENV}\"\n",
            peer.base
        ),
    )
    .map_err(io)?;
    let server = start_server_with(
        server_bin,
        &server_dir,
        Some(&config),
        &[(PEER_TOKEN_ENV, PEER_TOKEN)],
    )?;
    let (warmup, measure) = (
        Duration::from_secs_f64((options.seconds / 5.0).max(0.2)),
        Duration::from_secs_f64(options.seconds),
    );
    let token = vec![("X-Nebula-Token", TOKEN.to_owned())];
    let cases = [
        (
            "health",
            load::Request {
                method: "GET",
                url: format!("{}/system/plugins/sample_remote/health", server.base),
                headers: token.clone(),
                body: None,
            },
            grpc::Call::Health,
        ),
        (
            "dry run",
            load::Request {
                method: "POST",
                url: format!("{}/system/plugins/sample_remote/sync-users", server.base),
                headers: token.clone(),
                body: Some(Arc::new(br#"{"dry_run":true}"#.to_vec())),
            },
            grpc::Call::DryRun,
        ),
    ];
    let mut rows = Vec::new();
    let describe = |o: &load::Outcome| format!("{}/{} µs", o.p50_us, o.p99_us);
    for (name, request, call) in cases {
        let direct = grpc::run_direct(&peer.base, PEER_TOKEN, call, warmup, measure)?;
        let adapter = grpc::run_adapter(&peer.base, PEER_TOKEN, call, warmup, measure)?;
        let http = load::run(&request, 1, warmup, measure);
        *failed += direct.errors + adapter.errors + http.errors;
        let added = |o: &load::Outcome| i128::from(o.p50_us) - i128::from(direct.p50_us);
        for (how, ours, budget) in [
            ("adapter alone", &adapter, Some(ADAPTER_BUDGET_US)),
            ("through HTTP", &http, None),
        ] {
            rows.push(Row {
                case: format!("external {name}, {how} (p50/p99 µs)"),
                ours: format!("{} (+{} p50)", describe(ours), added(ours)),
                baseline: format!("tonic {}", describe(&direct)),
                ratio: None,
                target: budget.map_or(String::new(), |b| format!("+≤{b} µs at p50")),
                met: budget.map(|b| added(ours) <= i128::from(b)),
            });
        }
    }
    drop(server);
    drop(peer);
    Ok(rows)
}

fn users_body(tenant: &str, from: usize, count: usize) -> Vec<u8> {
    let users: Vec<Value> = (from..from + count)
        .map(|i| {
            json!({"username": format!("user{i:06}"), "db_name": tenant, "role_tag": "staff",
                   "email": format!("user{i}@example.com")})
        })
        .collect();
    serde_json::to_vec(&json!({"dry_run": false, "users": users})).unwrap_or_default()
}

/// Real syncs of `count` users through HTTP (requests of at most 10,000): seconds, and
/// whether every request answered 200 with no failed item.
fn sync_through_http(server: &Process, tenant: &str, count: usize) -> (f64, bool) {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(600))
        .build();
    let bodies: Vec<Vec<u8>> = (0..count)
        .step_by(USERS_PER_REQUEST)
        .map(|from| users_body(tenant, from, USERS_PER_REQUEST.min(count - from)))
        .collect();
    let url = format!("{}/system/plugins/sample_sync/sync-users", server.base);
    let started = Instant::now();
    let mut ok = true;
    for body in &bodies {
        let answer = agent
            .post(&url)
            .set("X-Nebula-Token", TOKEN)
            .set("Content-Type", "application/json")
            .send_bytes(body);
        ok &= match answer {
            Ok(response) => response
                .into_json::<Value>()
                .map(|v| v["result"]["failed"] == 0)
                .unwrap_or(false),
            Err(_) => false,
        };
    }
    (started.elapsed().as_secs_f64(), ok)
}

/// Where the plain-diesel baseline writes: the server's SQLite file, or its PostgreSQL
/// database.
enum PlainDatabase<'a> {
    Sqlite(&'a Path),
    Postgres(&'a str),
}

/// One chunk of plain upserts, a prepared statement per user and per tag, written once for
/// both backends (diesel's connections are different types).
macro_rules! plain_upserts {
    ($conn:expr, $chunk:expr, $tenant:expr, $now:expr) => {{
        for (username, email) in $chunk {
            diesel::insert_into(users::table)
                .values((
                    users::db_name.eq($tenant),
                    users::username.eq(username),
                    users::email.eq(email),
                    users::is_active.eq(true),
                    users::is_staff.eq(false),
                    users::password_hash.eq("!"),
                    users::created_at.eq($now),
                    users::updated_at.eq($now),
                ))
                .on_conflict((users::db_name, users::username))
                .do_update()
                .set((users::email.eq(email), users::updated_at.eq($now)))
                .execute($conn)?;
            diesel::insert_into(user_identity_tags::table)
                .values((
                    user_identity_tags::db_name.eq($tenant),
                    user_identity_tags::username.eq(username),
                    user_identity_tags::role_tag.eq("staff"),
                    user_identity_tags::updated_by.eq("plugin:baseline"),
                    user_identity_tags::updated_at.eq($now),
                ))
                .on_conflict((user_identity_tags::db_name, user_identity_tags::username))
                .do_update()
                .set(user_identity_tags::updated_at.eq($now))
                .execute($conn)?;
        }
        Ok::<(), diesel::result::Error>(())
    }};
}

/// The same rows written by plain diesel: a prepared upsert per user and per tag, one
/// transaction per 500 users. Seconds.
fn sync_with_plain_diesel(
    database: &PlainDatabase<'_>,
    tenant: &str,
    count: usize,
) -> Result<f64, String> {
    let now = 1.0e9;
    let names: Vec<(String, String)> = (0..count)
        .map(|i| (format!("user{i:06}"), format!("user{i}@example.com")))
        .collect();
    let started;
    match database {
        PlainDatabase::Sqlite(path) => {
            let path = path.to_str().ok_or("database path is not UTF-8")?;
            let mut conn = SqliteConnection::establish(path).map_err(|e| e.to_string())?;
            conn.batch_execute("PRAGMA busy_timeout = 15000; PRAGMA synchronous = NORMAL;")
                .map_err(|e| e.to_string())?;
            started = Instant::now();
            for chunk in names.chunks(BASELINE_CHUNK) {
                conn.immediate_transaction(|conn| plain_upserts!(conn, chunk, tenant, now))
                    .map_err(|e| e.to_string())?;
            }
        }
        PlainDatabase::Postgres(url) => {
            let mut conn = PgConnection::establish(url).map_err(|e| e.to_string())?;
            started = Instant::now();
            for chunk in names.chunks(BASELINE_CHUNK) {
                conn.transaction(|conn| plain_upserts!(conn, chunk, tenant, now))
                    .map_err(|e| e.to_string())?;
            }
        }
    }
    Ok(started.elapsed().as_secs_f64())
}

fn sync_rows(
    server: &Process,
    database: &PlainDatabase<'_>,
    options: &Options,
    failed: &mut u64,
) -> Result<Vec<Row>, String> {
    let (backend, all_sizes): (_, &[usize]) = match database {
        PlainDatabase::Sqlite(_) => ("SQLite", &[1_000, 10_000, 100_000]),
        // The plain baseline writes about 900 users/s on PostgreSQL (two round trips per
        // user): 100,000 would take four minutes for one row.
        PlainDatabase::Postgres(_) => ("PostgreSQL", &[1_000, 10_000]),
    };
    let sizes = if options.quick {
        &all_sizes[..1]
    } else {
        all_sizes
    };
    let mut rows = Vec::new();
    for &count in sizes {
        for round in ["new", "again"] {
            let tenant = format!("bench{count}");
            let (ours, ok) = sync_through_http(server, &tenant, count);
            if !ok {
                *failed += 1;
            }
            let theirs = sync_with_plain_diesel(database, &format!("base{count}"), count)?;
            let (ours_rate, theirs_rate) = (count as f64 / ours, count as f64 / theirs);
            let ratio = ours_rate / theirs_rate;
            let counted = count >= 10_000;
            rows.push(Row {
                case: format!("real sync {count} users, {round}, {backend} (users/s)"),
                ours: format!("{ours_rate:.0}/s {ours:.2} s"),
                baseline: format!("{theirs_rate:.0}/s {theirs:.2} s"),
                ratio: Some(ratio),
                target: if counted {
                    "≥0.5×".into()
                } else {
                    String::new()
                },
                met: counted.then_some(ratio >= 0.5),
            });
        }
    }
    Ok(rows)
}

/// The sync rows again on PostgreSQL, when `NEBULA_TEST_POSTGRES_URL` names a server (as
/// `eval "$(.ci/postgres.sh)"` sets it): a fresh database for the server, the same one for
/// the plain-diesel writer. None (with a note) otherwise.
fn postgres_sync_rows(
    server_bin: &Path,
    options: &Options,
    failed: &mut u64,
) -> Result<Vec<Row>, String> {
    let Some(database) = nebula_core::testing::TestDatabase::postgres()? else {
        return Ok(Vec::new());
    };
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let server = start_server_with(
        server_bin,
        dir.path(),
        None,
        &[("NEBULA__DATABASE__URL", database.url())],
    )?;
    sync_rows(
        &server,
        &PlainDatabase::Postgres(database.url()),
        options,
        failed,
    )
}

/// Time from spawn to the first `200` of `/healthz`, on the database under `dir`.
fn startup(binary: &Path, dir: &Path, config: Option<&Path>) -> Result<Duration, String> {
    let started = Instant::now();
    let server = start_server(binary, dir, config)?;
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(5))
        .build();
    let url = format!("{}/healthz", server.base);
    loop {
        if agent.get(&url).call().is_ok() {
            return Ok(started.elapsed());
        }
        if started.elapsed() > Duration::from_secs(60) {
            return Err("no /healthz within 60 s".into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn run_all(options: &Options) -> ExitCode {
    match measure_all(options) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(failed) => {
            eprintln!("nebula-bench: {failed} request(s) failed");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("nebula-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs every case, prints the table; the number of failed requests.
fn measure_all(options: &Options) -> Result<u64, String> {
    let (server_bin, twin) = binaries(options)?;
    let work = tempfile::tempdir().map_err(|e| e.to_string())?;
    let config = prepare(work.path(), &twin)?;
    let mut rows = Vec::new();
    let mut failed = 0;

    // As a newcomer starts it: no configuration (the linked plugins only), empty database.
    let empty = tempfile::tempdir().map_err(|e| e.to_string())?;
    let cold = startup(&server_bin, empty.path(), None)?;
    rows.push(Row {
        case: "start-up to /healthz, empty database".into(),
        ours: format!("{:.0} ms", cold.as_secs_f64() * 1000.0),
        baseline: String::new(),
        ratio: None,
        target: "≤100 ms".into(),
        met: Some(cold <= Duration::from_millis(100)),
    });

    let server = start_server(&server_bin, work.path(), Some(&config))?;
    std::thread::sleep(Duration::from_millis(500));
    let idle = server.rss_kib();

    // The baseline answers the very bodies the server answers.
    let agent = ureq::agent();
    let token = [("X-Nebula-Token", TOKEN.to_owned())];
    let fetch = |method: &'static str, path: &str, body: Option<Arc<Vec<u8>>>| {
        let request = load::Request {
            method,
            url: format!("{}{path}", server.base),
            headers: token.to_vec(),
            body,
        };
        match request.answer(&agent)? {
            (200, body) => String::from_utf8(body).map_err(|e| e.to_string()),
            (status, _) => Err(format!("{path}: status {status}")),
        }
    };
    let dry_body = Arc::new(br#"{"dry_run":true}"#.to_vec());
    let list = fetch("GET", "/system/plugins", None)?;
    let plugins = serde_json::from_str::<Value>(&list)
        .ok()
        .and_then(|v| v["plugins"].as_array().map(Vec::len))
        .unwrap_or(0);
    // sample_sync, csv_import and ldap_sync (unconfigured) linked, sample_twin a process.
    if plugins != 4 {
        return Err(format!("expected 4 plugins, the server lists {plugins}"));
    }
    let health = fetch("GET", "/system/plugins/sample_sync/health", None)?;
    let dry = fetch(
        "POST",
        "/system/plugins/sample_sync/sync-users",
        Some(dry_body.clone()),
    )?;
    let bodies = work.path().join("bodies");
    std::fs::create_dir_all(&bodies).map_err(|e| e.to_string())?;
    for (name, text) in [("list", &list), ("health", &health), ("dry", &dry)] {
        std::fs::write(bodies.join(name), text).map_err(|e| e.to_string())?;
    }
    let baseline = Process::start(
        Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
            .arg("baseline")
            .arg(bodies.join("list"))
            .arg(bodies.join("health"))
            .arg(bodies.join("dry")),
    )?;
    rows.extend(http_rows(
        &server,
        &baseline.base,
        &dry_body,
        options,
        &mut failed,
    ));
    drop(baseline);
    rows.extend(grpc_rows(&server_bin, options, &mut failed)?);

    let database = work.path().join("data/nebula.db");
    rows.extend(sync_rows(
        &server,
        &PlainDatabase::Sqlite(&database),
        options,
        &mut failed,
    )?);
    let loaded = server.rss_kib();
    rows.push(Row {
        case: "RSS idle (KiB)".into(),
        ours: idle.to_string(),
        baseline: String::new(),
        ratio: None,
        target: "≤20 MiB".into(),
        met: Some(idle <= 20 * 1024),
    });
    rows.push(Row {
        case: "RSS after the load (KiB)".into(),
        ours: loaded.to_string(),
        baseline: String::new(),
        ratio: Some(loaded as f64 / idle.max(1) as f64),
        target: "≤2× idle".into(),
        met: Some(loaded <= 2 * idle),
    });
    drop(server);
    let warm = startup(&server_bin, work.path(), Some(&config))?;
    rows.push(Row {
        case: "start-up to /healthz, synced users, 4 plugins".into(),
        ours: format!("{:.0} ms", warm.as_secs_f64() * 1000.0),
        baseline: String::new(),
        ratio: None,
        target: String::new(),
        met: None,
    });
    rows.extend(postgres_sync_rows(&server_bin, options, &mut failed)?);

    println!(
        "nebula-bench: {} cores, {} s per case{}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        options.seconds,
        if options.quick { " (quick)" } else { "" }
    );
    Row::print_all(&rows);
    Ok(failed)
}
