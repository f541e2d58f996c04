//! Starts the real `nebula-server` binary on a free loopback port and talks HTTP to it.

#![allow(dead_code)]

pub mod webdriver;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The binary under test, built by cargo for this test target.
pub const BIN: &str = env!("CARGO_BIN_EXE_nebula-server");

/// A running server process. Killed on drop if still running.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The working directory (holds `data/`).
    pub dir: PathBuf,
    agent: ureq::Agent,
}

/// An HTTP answer: status, headers we care about, JSON body (Null when not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub set_cookie: Vec<String>,
    pub retry_after: Option<String>,
    pub request_id: Option<String>,
    /// The body as text (the metrics are not JSON).
    pub text: String,
}

/// A command for the binary with a clean environment: no NEBULA_* leaks in from the caller.
pub fn command(dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir);
    for (key, _) in std::env::vars() {
        if key.starts_with("NEBULA") || key == "RUST_LOG" {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// Runs `create-user` with the password on standard input.
pub fn create_user(dir: &Path, env: &[(&str, &str)], username: &str, password: &str, staff: bool) {
    let mut cmd = command(dir);
    cmd.envs(env.iter().copied())
        .arg("create-user")
        .arg(username);
    if staff {
        cmd.arg("--staff");
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn create-user");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{password}\n").as_bytes())
        .expect("write password");
    let out = child.wait_with_output().expect("create-user runs");
    assert!(
        out.status.success(),
        "create-user failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Server {
    /// Starts the server in `dir` on a free port, with extra environment.
    pub fn start(dir: &Path, env: &[(&str, &str)]) -> Server {
        let mut cmd = command(dir);
        cmd.env("NEBULA__SERVER__BIND", "127.0.0.1:0");
        Self::spawn(cmd.envs(env.iter().copied()), dir)
    }

    /// Starts `cmd` and waits for its start-up line.
    pub fn spawn(cmd: &mut Command, dir: &Path) -> Server {
        let (child, line) = spawn_until_first_line(cmd.stderr(Stdio::null()));
        Server::from_child(child, &line, dir)
    }

    /// A server from a started child and its start-up line.
    fn from_child(child: Child, line: &str, dir: &Path) -> Server {
        let base = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_owned();
        Server {
            child,
            base,
            dir: dir.to_path_buf(),
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(120))
                .build(),
        }
    }

    /// The generated installer token.
    pub fn token(&self) -> String {
        std::fs::read_to_string(self.dir.join("data/installer_token"))
            .expect("token file")
            .trim()
            .to_owned()
    }

    /// Sends a request; `auth` is a list of extra headers.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Answer {
        let mut req = self.agent.request(method, &format!("{}{path}", self.base));
        for (k, v) in headers {
            req = req.set(k, v);
        }
        let result = match body {
            Some(bytes) => req
                .set("Content-Type", "application/json")
                .send_bytes(bytes),
            None => req.call(),
        };
        let response = match result {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method} {path}: {e}"),
        };
        let status = response.status();
        let set_cookie = response
            .all("set-cookie")
            .iter()
            .map(|s| s.to_string())
            .collect();
        let retry_after = response.header("retry-after").map(str::to_owned);
        let request_id = response.header("x-request-id").map(str::to_owned);
        let text = response.into_string().unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer {
            status,
            body,
            set_cookie,
            retry_after,
            request_id,
            text,
        }
    }

    /// GET with the installer token.
    pub fn get(&self, path: &str) -> Answer {
        let token = self.token();
        self.request("GET", path, &[("X-Nebula-Token", &token)], None)
    }

    /// POST JSON with the installer token.
    pub fn post(&self, path: &str, body: &Value) -> Answer {
        let token = self.token();
        let bytes = body.to_string();
        self.request(
            "POST",
            path,
            &[("X-Nebula-Token", &token)],
            Some(bytes.as_bytes()),
        )
    }

    /// Logs in and returns the `nebula_session` cookie value.
    pub fn login(&self, username: &str, password: &str) -> Answer {
        let body = serde_json::json!({"username": username, "password": password}).to_string();
        self.request("POST", "/auth/login", &[], Some(body.as_bytes()))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal and waits (bounded) for the exit.
    pub fn signal_and_wait(mut self, signal: i32, limit: Duration) -> ExitStatus {
        signal_and_wait(&mut self.child, signal, limit)
    }

    /// `kill -9`.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `cmd` and waits (up to 60 s) for the first line it prints: the address it listens on.
/// Later output keeps being drained so the child never blocks on a full pipe.
fn spawn_until_first_line(cmd: &mut Command) -> (Child, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("{cmd:?} printed no start-up line"));
    (child, line)
}

/// Sends `signal` to a child this test owns and waits (bounded) for it to exit.
fn signal_and_wait(child: &mut Child, signal: i32, limit: Duration) -> ExitStatus {
    // SAFETY: kill(2) on the pid of a child this test started and has not reaped yet.
    unsafe {
        libc::kill(child.id() as i32, signal);
    }
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        assert!(
            started.elapsed() < limit,
            "process did not exit within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The cookie value from a `Set-Cookie: nebula_session=…` header.
pub fn session_cookie(answer: &Answer) -> String {
    answer
        .set_cookie
        .iter()
        .find_map(|c| c.strip_prefix("nebula_session="))
        .and_then(|rest| rest.split(';').next())
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("no session cookie in {:?}", answer.set_cookie))
}

/// Where the Python peer lives in the repository.
pub fn python_peer_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/grpc_peers/python")
}

static PYTHON: std::sync::OnceLock<(PathBuf, PathBuf)> = std::sync::OnceLock::new();

/// A Python with grpcio (a virtualenv under target/, made once from the pinned
/// requirements) and a directory holding stubs generated from the peer's own proto copy.
/// Returns (python, stubs dir).
pub fn python_with_grpc() -> (PathBuf, PathBuf) {
    PYTHON
        .get_or_init(|| {
            let peer = python_peer_dir();
            let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("grpc-py-venv");
            let python = venv.join("bin/python");
            let requirements = std::fs::read_to_string(peer.join("requirements.txt")).unwrap();
            let marker = venv.join("installed-requirements.txt");
            if std::fs::read_to_string(&marker).ok().as_deref() != Some(requirements.as_str()) {
                let _ = std::fs::remove_dir_all(&venv);
                run(Command::new("python3").args(["-m", "venv"]).arg(&venv));
                run(Command::new(&python)
                    .args([
                        "-m",
                        "pip",
                        "install",
                        "--quiet",
                        "--disable-pip-version-check",
                        "-r",
                    ])
                    .arg(peer.join("requirements.txt")));
                std::fs::write(&marker, &requirements).unwrap();
            }
            let stubs = venv.join(format!("stubs-{}", std::process::id()));
            std::fs::create_dir_all(&stubs).unwrap();
            run(Command::new(&python)
                .args(["-m", "grpc_tools.protoc", "-I"])
                .arg(&peer)
                .arg(format!("--python_out={}", stubs.display()))
                .arg(format!("--grpc_python_out={}", stubs.display()))
                .arg(peer.join("plugin_api_v1.proto"))
                .arg(peer.join("host_api_v1.proto")));
            (python, stubs)
        })
        .clone()
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A Python command running `script` from the peer directory with the stubs importable.
pub fn python_command(script: &str) -> Command {
    let (python, stubs) = python_with_grpc();
    let mut cmd = Command::new(python);
    cmd.arg(python_peer_dir().join(script))
        .env("PYTHONPATH", stubs)
        .env("PYTHONUNBUFFERED", "1");
    cmd
}

/// An external plugin process (Python peer or `nebula-server serve-plugin`).
pub struct Peer {
    child: Child,
    /// The endpoint it printed (`127.0.0.1:PORT`, `http://…` or `unix://…`).
    pub endpoint: String,
}

impl Peer {
    /// The Python peer in `mode` on `port` (0 = any).
    pub fn python(mode: &str, port: u16) -> Peer {
        let mut cmd = python_command("peer.py");
        cmd.args(["--mode", mode, "--port", &port.to_string()]);
        Peer::spawn(&mut cmd)
    }

    /// `nebula-server serve-plugin sample_sync --listen ENDPOINT`, run in `dir`.
    pub fn rust(dir: &Path, listen: &str, token: Option<&str>) -> Peer {
        let mut cmd = command(dir);
        cmd.args(["serve-plugin", "sample_sync", "--listen", listen]);
        if let Some(token) = token {
            cmd.args(["--token-env", "PEER_TOKEN"])
                .env("PEER_TOKEN", token);
        }
        Peer::spawn(&mut cmd)
    }

    fn spawn(cmd: &mut Command) -> Peer {
        let (child, line) = spawn_until_first_line(cmd.stderr(Stdio::inherit()));
        let endpoint = line
            .split_whitespace()
            .last()
            .unwrap_or_default()
            .to_owned();
        Peer { child, endpoint }
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.endpoint
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a TCP endpoint")
    }

    /// SIGTERM, then wait (bounded) for the exit.
    pub fn terminate(mut self) -> ExitStatus {
        signal_and_wait(&mut self.child, libc::SIGTERM, Duration::from_secs(20))
    }

    /// `kill -9` and wait.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Like [`Server::start`], with the server's standard error (its log) written to `log`.
    pub fn start_logging_to(dir: &Path, env: &[(&str, &str)], log: &Path) -> Server {
        let mut cmd = command(dir);
        cmd.env("NEBULA__SERVER__BIND", "127.0.0.1:0")
            .envs(env.iter().copied())
            .stderr(std::fs::File::create(log).expect("log file"));
        let (child, line) = spawn_until_first_line(&mut cmd);
        Server::from_child(child, &line, dir)
    }
}

/// Runs `cmd` (stdin closed) and waits up to `limit` for it to exit; a process still running
/// then is killed and `None` returned, so a test of "refuses to start" fails instead of hanging.
pub fn run_until_exit(cmd: &mut Command, limit: Duration) -> Option<std::process::Output> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let started = Instant::now();
    while child.try_wait().expect("try_wait").is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(child.wait_with_output().expect("output"))
}

/// A peer started from `cmd` (for example `serve-plugin` with arguments [`Peer::rust`] does
/// not pass); its endpoint is the last word of the first line it prints.
pub fn spawn_peer(cmd: &mut Command) -> Peer {
    Peer::spawn(cmd)
}

impl Peer {
    /// A Python plugin `script` from the peer directory (stubs of both protos importable),
    /// started with `args`; its endpoint is the last word of the first line it prints.
    pub fn python_script(script: &str, args: &[&str]) -> Peer {
        let mut cmd = python_command(script);
        cmd.args(args);
        Peer::spawn(&mut cmd)
    }
}
