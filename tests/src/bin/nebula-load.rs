//! Load and kill test of the release server (loopback only, bounded in time).
//!
//! ```text
//! nebula-load --server target/release/nebula-server-faults [--clients 64] [--seconds 20]
//!             [--warmup 10] [--kill-at SECONDS] [--database-url URL]
//! ```
//!
//! Starts the server (with a hanging and a panicking plugin registered) in a scratch directory
//! and runs N clients mixing list, health, dry-run syncs and calls to the faulty plugins, plus
//! one writer doing real syncs of 50 new users each. Without `--kill-at` it then checks: zero
//! non-2xx on the healthy plugin's calls, every user the writer was told about exists with its
//! tag, RSS at the end within 20% of RSS after warm-up. With `--kill-at`, it kills the server
//! (`kill -9`) mid-load, restarts it, and checks the database is consistent: every user has
//! its tag, no duplicate usernames, events ≥ syncs finished. Exits non-zero on any failure.
//! The server's database is SQLite in the scratch directory, or `--database-url` (an empty
//! PostgreSQL database, for example: `.ci/run` runs both tests once on each backend).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::{json, Value};

const USERS_PER_REAL_SYNC: usize = 50;
const LOAD_DB: &str = "load.db";
const LOAD_TAG: &str = "loadtag";

struct Options {
    server: PathBuf,
    clients: usize,
    seconds: u64,
    warmup: u64,
    kill_at: Option<u64>,
    database_url: Option<String>,
}

fn parse_args() -> Result<Options, String> {
    let mut args = std::env::args().skip(1);
    let mut o = Options {
        server: PathBuf::new(),
        clients: 64,
        seconds: 20,
        warmup: 10,
        kill_at: None,
        database_url: None,
    };
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--server" => o.server = PathBuf::from(value()?),
            "--clients" => o.clients = value()?.parse().map_err(|e| format!("--clients: {e}"))?,
            "--seconds" => o.seconds = value()?.parse().map_err(|e| format!("--seconds: {e}"))?,
            "--warmup" => o.warmup = value()?.parse().map_err(|e| format!("--warmup: {e}"))?,
            "--kill-at" => {
                o.kill_at = Some(value()?.parse().map_err(|e| format!("--kill-at: {e}"))?)
            }
            "--database-url" => o.database_url = Some(value()?),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if o.server.as_os_str().is_empty() {
        return Err("--server BINARY is required".into());
    }
    // The server runs in a scratch directory: resolve the path first.
    o.server = std::fs::canonicalize(&o.server)
        .map_err(|e| format!("--server {}: {e}", o.server.display()))?;
    Ok(o)
}

struct Server {
    child: Child,
    base: String,
    token: String,
}

fn start_server(bin: &Path, dir: &Path, database_url: Option<&str>) -> Server {
    let mut command = Command::new(bin);
    if let Some(url) = database_url {
        command.env("NEBULA__DATABASE__URL", url);
    }
    let mut child = command
        .current_dir(dir)
        .env_remove("NEBULA_CONFIG")
        .env("NEBULA__SERVER__BIND", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("start-up line");
    let base = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned();
    let token = std::fs::read_to_string(dir.join("data/installer_token"))
        .expect("token file")
        .trim()
        .to_owned();
    Server { child, base, token }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Counts per operation kind: (2xx, non-2xx, latencies ms).
#[derive(Default)]
struct Tally {
    by_kind: BTreeMap<&'static str, (u64, u64, Vec<f64>)>,
    non_2xx_samples: Vec<String>,
}

impl Tally {
    fn add(&mut self, kind: &'static str, status: u16, ms: f64, detail: &str) {
        let entry = self.by_kind.entry(kind).or_default();
        if (200..300).contains(&status) {
            entry.0 += 1;
        } else {
            entry.1 += 1;
            if kind.starts_with("healthy") && self.non_2xx_samples.len() < 10 {
                self.non_2xx_samples
                    .push(format!("{kind}: {status} {detail}"));
            }
        }
        entry.2.push(ms);
    }
}

fn request(
    agent: &ureq::Agent,
    s: &ServerAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let req = agent
        .request(method, &format!("{}{path}", s.base))
        .set("X-Nebula-Token", &s.token);
    let result = match body {
        Some(b) => req.send_json(b.clone()),
        None => req.call(),
    };
    match result {
        Ok(r) => (r.status(), r.into_json().unwrap_or(Value::Null)),
        Err(ureq::Error::Status(code, r)) => (code, r.into_json().unwrap_or(Value::Null)),
        Err(e) => (0, json!({"transport": e.to_string()})),
    }
}

#[derive(Clone)]
struct ServerAddr {
    base: String,
    token: String,
}

/// Runs the mixed load until `stop`; returns the tally and the users the writer was told
/// were written (username → outcome), and how many real syncs finished with 200.
fn run_load(
    addr: &ServerAddr,
    clients: usize,
    stop: &Arc<AtomicBool>,
    tally: &Arc<Mutex<Tally>>,
    written: &Arc<Mutex<Vec<String>>>,
    real_syncs: &Arc<AtomicU64>,
) -> Vec<std::thread::JoinHandle<()>> {
    let mut handles = Vec::new();
    for client in 0..clients {
        let (addr, stop, tally, written, real_syncs) = (
            addr.clone(),
            stop.clone(),
            tally.clone(),
            written.clone(),
            real_syncs.clone(),
        );
        handles.push(std::thread::spawn(move || {
            let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(30)).build();
            let mut rng = rand::thread_rng();
            let mut iteration = 0u64;
            while !stop.load(Ordering::Relaxed) {
                iteration += 1;
                let started = Instant::now();
                let (kind, (status, body)) = if client == 0 {
                    // The one writer: real syncs never overlap, so none is refused with 409.
                    let users: Vec<Value> = (0..USERS_PER_REAL_SYNC)
                        .map(|i| json!({"username": format!("w{iteration:06}-{i:02}"), "db_name": LOAD_DB,
                                        "role_tag": LOAD_TAG, "email": format!("u{i}@example.com")}))
                        .collect();
                    let answer = request(&agent, &addr, "POST", "/system/plugins/sample_sync/sync-users",
                        Some(&json!({"dry_run": false, "users": users})));
                    if answer.0 == 200 {
                        real_syncs.fetch_add(1, Ordering::SeqCst);
                        let mut w = written.lock().unwrap_or_else(|e| e.into_inner());
                        for item in answer.1["result"]["items"].as_array().into_iter().flatten() {
                            if item["action"] == "created" || item["action"] == "updated" {
                                w.push(item["username"].as_str().unwrap_or_default().to_owned());
                            }
                        }
                    }
                    ("healthy real sync", answer)
                } else {
                    match rng.gen_range(0..100) {
                        0..=24 => ("healthy list", request(&agent, &addr, "GET", "/system/plugins", None)),
                        25..=49 => ("healthy health", request(&agent, &addr, "GET", "/system/plugins/sample_sync/health", None)),
                        50..=79 => {
                            let users: Vec<Value> = (0..20).map(|i| json!({"username": format!("d{client}-{i}")})).collect();
                            ("healthy dry-run sync", request(&agent, &addr, "POST", "/system/plugins/sample_sync/sync-users",
                                Some(&json!({"dry_run": true, "users": users}))))
                        }
                        80..=89 => ("faulty hanging sync", request(&agent, &addr, "POST", "/system/plugins/hangs_in_sync/sync-users", Some(&json!({})))),
                        _ => ("faulty panicking sync", request(&agent, &addr, "POST", "/system/plugins/fails_health/sync-users", Some(&json!({})))),
                    }
                };
                let ms = started.elapsed().as_secs_f64() * 1000.0;
                let detail = body.get("detail").map(|d| d.to_string()).unwrap_or_else(|| body.to_string());
                tally.lock().unwrap_or_else(|e| e.into_inner()).add(kind, status, ms, &detail);
            }
        }));
    }
    handles
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn print_tally(tally: &Tally, seconds: f64) {
    println!(
        "{:<24} {:>8} {:>8} {:>9} {:>9} {:>9}",
        "operation", "2xx", "non-2xx", "p50 ms", "p99 ms", "req/s"
    );
    for (kind, (ok, bad, lat)) in &tally.by_kind {
        let mut sorted = lat.clone();
        sorted.sort_by(f64::total_cmp);
        println!(
            "{kind:<24} {ok:>8} {bad:>8} {:>9.1} {:>9.1} {:>9.1}",
            percentile(&sorted, 0.5),
            percentile(&sorted, 0.99),
            (*ok + *bad) as f64 / seconds
        );
    }
}

/// Every user of `db` through the API, in pages.
fn all_users(addr: &ServerAddr, db: &str) -> Vec<Value> {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(60))
        .build();
    let mut users = Vec::new();
    loop {
        let path = format!(
            "/system/directory/users?db_name={db}&limit=2000&offset={}",
            users.len()
        );
        let (status, body) = request(&agent, addr, "GET", &path, None);
        assert_eq!(status, 200, "{body}");
        let items = body["items"].as_array().cloned().unwrap_or_default();
        let done = items.len() < 2000;
        users.extend(items);
        if done {
            return users;
        }
    }
}

/// Counts events with a prefix, paging with `before`.
fn count_events(addr: &ServerAddr, prefix: &str) -> u64 {
    let agent = ureq::Agent::new();
    let mut count = 0u64;
    let mut before = String::new();
    loop {
        let path = format!("/system/events?prefix={prefix}&limit=1000{before}");
        let (status, body) = request(&agent, addr, "GET", &path, None);
        assert_eq!(status, 200, "{body}");
        let page = body["events"].as_array().cloned().unwrap_or_default();
        count += page.len() as u64;
        match page.last().and_then(|e| e["id"].as_i64()) {
            Some(id) if page.len() == 1000 => before = format!("&before={id}"),
            _ => return count,
        }
    }
}

fn check_consistency(addr: &ServerAddr, failures: &mut Vec<String>) -> usize {
    let users = all_users(addr, LOAD_DB);
    let untagged = users.iter().filter(|u| u["role_tag"] != LOAD_TAG).count();
    let mut names: Vec<&str> = users
        .iter()
        .filter_map(|u| u["username"].as_str())
        .collect();
    let total = names.len();
    names.sort_unstable();
    names.dedup();
    println!(
        "users in {LOAD_DB}: {total}, without their tag: {untagged}, duplicates: {}",
        total - names.len()
    );
    if untagged > 0 {
        failures.push(format!("{untagged} users without their identity tag"));
    }
    if names.len() != total {
        failures.push(format!("{} duplicate usernames", total - names.len()));
    }
    total
}

fn main() -> std::process::ExitCode {
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("nebula-load: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let dir = tempfile::tempdir().expect("scratch dir");
    std::fs::write(
        dir.path().join("nebula.toml"),
        "[plugins]\ncall_timeout_sec = 2\ninit_timeout_sec = 2\nhealth_interval_sec = 2\n",
    )
    .expect("config");
    let mut server = start_server(&o.server, dir.path(), o.database_url.as_deref());
    let pid = server.child.id();
    let addr = ServerAddr {
        base: server.base.clone(),
        token: server.token.clone(),
    };
    println!(
        "server {} pid {pid}, {} clients, {} s (+{} s warm-up){}",
        addr.base,
        o.clients,
        o.seconds,
        o.warmup,
        o.kill_at
            .map_or(String::new(), |k| format!(", kill -9 at {k} s"))
    );

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let written = Arc::new(Mutex::new(Vec::new()));
    let real_syncs = Arc::new(AtomicU64::new(0));
    let handles = run_load(&addr, o.clients, &stop, &tally, &written, &real_syncs);

    std::thread::sleep(Duration::from_secs(o.warmup));
    let rss_warm = rss_kib(pid);
    *tally.lock().unwrap_or_else(|e| e.into_inner()) = Tally::default();
    let measured = Instant::now();
    let mut failures = Vec::new();

    if let Some(kill_at) = o.kill_at {
        std::thread::sleep(Duration::from_secs(kill_at));
        let finished_before_kill = real_syncs.load(Ordering::SeqCst);
        let _ = server.child.kill();
        let _ = server.child.wait();
        stop.store(true, Ordering::SeqCst);
        for h in handles {
            let _ = h.join();
        }
        println!("killed -9 after {:.1} s; real syncs answered 200 before the kill: {finished_before_kill}",
            measured.elapsed().as_secs_f64());
        let restarted = start_server(&o.server, dir.path(), o.database_url.as_deref());
        let addr2 = ServerAddr {
            base: restarted.base.clone(),
            token: restarted.token.clone(),
        };
        let total = check_consistency(&addr2, &mut failures);
        let confirmed = written.lock().unwrap_or_else(|e| e.into_inner()).len();
        if total < confirmed {
            failures.push(format!(
                "{} users confirmed before the kill are missing",
                confirmed - total
            ));
        }
        let finished_events = count_events(&addr2, "plugin.sample_sync.sync.finished");
        println!(
            "sync.finished events: {finished_events} (syncs finished: {finished_before_kill})"
        );
        if finished_events < finished_before_kill {
            failures.push("fewer sync.finished events than finished syncs".into());
        }
        server = restarted;
    } else {
        std::thread::sleep(Duration::from_secs(o.seconds));
        stop.store(true, Ordering::SeqCst);
        for h in handles {
            let _ = h.join();
        }
        let seconds = measured.elapsed().as_secs_f64();
        let rss_end = rss_kib(pid);
        let t = tally.lock().unwrap_or_else(|e| e.into_inner());
        print_tally(&t, seconds);
        let healthy_bad: u64 = t
            .by_kind
            .iter()
            .filter(|(k, _)| k.starts_with("healthy"))
            .map(|(_, v)| v.1)
            .sum();
        let healthy_total: u64 = t
            .by_kind
            .iter()
            .filter(|(k, _)| k.starts_with("healthy"))
            .map(|(_, v)| v.0 + v.1)
            .sum();
        println!("healthy plugin calls: {healthy_total}, non-2xx: {healthy_bad}");
        for s in &t.non_2xx_samples {
            println!("  {s}");
        }
        if healthy_bad > 0 {
            failures.push(format!(
                "{healthy_bad} non-2xx answers on the healthy plugin"
            ));
        }
        let growth = (rss_end as f64 - rss_warm as f64) / rss_warm.max(1) as f64 * 100.0;
        println!("RSS after warm-up: {rss_warm} KiB, at the end: {rss_end} KiB ({growth:+.1}%)");
        if rss_end as f64 > rss_warm as f64 * 1.2 {
            failures.push(format!("RSS grew {growth:.1}% (limit 20%)"));
        }
        drop(t);
        let total = check_consistency(&addr, &mut failures);
        let confirmed = written.lock().unwrap_or_else(|e| e.into_inner()).len();
        println!("users confirmed by 200 answers: {confirmed}, found: {total}");
        if total != confirmed {
            failures.push(format!("{confirmed} users confirmed but {total} found"));
        }
        let (_, list) = request(&ureq::Agent::new(), &addr, "GET", "/system/plugins", None);
        for p in list["plugins"].as_array().into_iter().flatten() {
            println!(
                "plugin {:<16} {:<12} restarts {:<3} {}",
                p["name"].as_str().unwrap_or(""),
                p["status"].as_str().unwrap_or(""),
                p["restart_count"],
                p["message"].as_str().unwrap_or("")
            );
        }
    }

    // SIGTERM: the server must stop cleanly.
    // SAFETY: kill(2) on the pid of a child this program started.
    unsafe {
        libc::kill(server.child.id() as i32, libc::SIGTERM);
    }
    match server.child.wait() {
        Ok(status) if status.success() => {}
        other => failures.push(format!("server did not exit 0 on SIGTERM: {other:?}")),
    }
    if failures.is_empty() {
        println!("load: 1 passed, 0 failed");
        std::process::ExitCode::SUCCESS
    } else {
        for f in &failures {
            println!("FAILED: {f}");
        }
        println!("load: 0 passed, 1 failed");
        std::process::ExitCode::FAILURE
    }
}
