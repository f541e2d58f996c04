//! Security of authentication on the real binary (issue 8): login and token rate limits per
//! client address.
//!
//! Requests that must come from another address (127.0.0.2) are written by hand over a
//! socket bound to that address ([`raw`]).

mod support;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use socket2::{Domain, Socket, Type};
use support::{create_user, Server};

const STAFF_PASSWORD: &str = "staff-password-1";
const OWNER: &str = "127.0.0.1";
const ATTACKER: &str = "127.0.0.2";
/// `RateLimits::default().slowdown_start`: the delay once a username's free failures are used.
const FIRST_SLOWDOWN: Duration = Duration::from_millis(250);

/// An answer read off the wire.
#[derive(Debug)]
struct Raw {
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn set_cookie(&self) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn detail(&self) -> &str {
        self.body["detail"]
            .as_str()
            .unwrap_or_else(|| panic!("no JSON detail in {self:?}"))
    }
}

fn server_addr(server: &Server) -> SocketAddr {
    server
        .base
        .trim_start_matches("http://")
        .parse()
        .expect("base is http://IP:PORT")
}

/// Sends `request` (head and body as given) from a socket bound to `from`, and reads the whole
/// answer (the request says `Connection: close`).
fn raw_bytes(server: &Server, from: &str, request: &[u8]) -> Raw {
    let from: IpAddr = from.parse().unwrap();
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::new(from, 0).into()).unwrap();
    socket
        .connect_timeout(&server_addr(server).into(), Duration::from_secs(10))
        .unwrap();
    let mut stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    stream.write_all(request).unwrap();
    // Read until the answer is complete (not until the server closes: it may keep reading a
    // body it does not want for a while), or until the server closes or resets.
    let mut answer = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    while !is_complete(&answer) {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    parse_answer(&answer)
}

/// Whether `answer` holds a whole response: its head and the body its head announces.
fn is_complete(answer: &[u8]) -> bool {
    let Some(split) = answer.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&answer[..split]).to_ascii_lowercase();
    let body = &answer[split + 4..];
    if head.contains("transfer-encoding: chunked") {
        return body.ends_with(b"0\r\n\r\n");
    }
    match head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        Some(length) => body.len() >= length,
        None => false,
    }
}

fn parse_answer(answer: &[u8]) -> Raw {
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no answer head in {:?}", String::from_utf8_lossy(answer)));
    let head = String::from_utf8_lossy(&answer[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = answer[split + 4..].to_vec();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body);
    }
    Raw {
        status,
        headers,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = data.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&data[..end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = end + 2;
        out.extend_from_slice(&data[start..(start + size).min(data.len())]);
        data = &data[(start + size + 2).min(data.len())..];
    }
    out
}

/// A request with a `Content-Length` matching `body`, from `from`.
fn raw(
    server: &Server,
    from: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Raw {
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
        server_addr(server),
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    raw_bytes(server, from, &bytes)
}

fn login_body(username: &str, password: &str) -> Vec<u8> {
    json!({"username": username, "password": password})
        .to_string()
        .into_bytes()
}

/// Logs in from `from` with a JSON body.
fn login_from(server: &Server, from: &str, username: &str, password: &str) -> Raw {
    raw(
        server,
        from,
        "POST",
        "/auth/login",
        &[("Content-Type", "application/json")],
        &login_body(username, password),
    )
}

/// A server in `dir` with the staff user `admin`.
fn server_with_admin(dir: &std::path::Path, env: &[(&str, &str)]) -> Server {
    create_user(dir, env, "admin", STAFF_PASSWORD, true);
    Server::start(dir, env)
}

/// The `Cookie` header value for the session a login answered.
fn session_of(login: &Raw) -> String {
    let value = login
        .set_cookie()
        .into_iter()
        .find_map(|c| c.strip_prefix("nebula_session="))
        .and_then(|rest| rest.split(';').next())
        .unwrap_or_else(|| panic!("no session cookie in {login:?}"));
    format!("nebula_session={value}")
}

#[test]
fn failed_logins_from_one_address_lock_only_that_address_and_slow_the_username() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_with_admin(dir.path(), &[]);

    let started = Instant::now();
    assert_eq!(
        login_from(&server, OWNER, "admin", STAFF_PASSWORD).status,
        200
    );
    let baseline = started.elapsed();

    // Five failed logins for admin from 127.0.0.2 …
    for i in 0..5 {
        let answer = login_from(&server, ATTACKER, "admin", &format!("guess-{i}"));
        assert_eq!(answer.status, 401, "{answer:?}");
    }
    // … do not lock the owner out: the right password from 127.0.0.1 still works, after the
    // username's slowdown (five failures used its free ones).
    let started = Instant::now();
    let owner = login_from(&server, OWNER, "admin", STAFF_PASSWORD);
    let slowed = started.elapsed();
    assert_eq!(owner.status, 200, "{owner:?}");
    assert!(slowed >= FIRST_SLOWDOWN, "no slowdown: {slowed:?}");
    eprintln!("login: {baseline:?} before the failures, {slowed:?} after five (slowed down)");

    // The failing address is locked out of admin, even with the right password.
    let started = Instant::now();
    let locked = login_from(&server, ATTACKER, "admin", STAFF_PASSWORD);
    eprintln!("refused login answered in {:?}", started.elapsed());
    assert_eq!(locked.status, 429, "{locked:?}");
    assert!(
        locked.detail().contains("too many failed logins"),
        "{locked:?}"
    );
    let retry: u64 = locked
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=300).contains(&retry), "{retry}");
    assert!(locked.set_cookie().is_empty());

    // The owner keeps logging in; another address failing for admin is answered (slowly),
    // never refused.
    assert_eq!(
        login_from(&server, OWNER, "admin", STAFF_PASSWORD).status,
        200
    );
    assert_eq!(
        login_from(&server, "127.0.0.3", "admin", "another-guess").status,
        401
    );
}

#[test]
fn wrong_tokens_are_limited_per_address() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_with_admin(dir.path(), &[]);
    let token = server.token();
    let wrong = format!("{token}x");
    let get = |from: &str, token: &str| {
        raw(
            &server,
            from,
            "GET",
            "/system/plugins",
            &[("X-Nebula-Token", token)],
            b"",
        )
    };

    // 20 wrong tokens per address per 5 minutes are answered 403 …
    for i in 0..20 {
        let answer = get(ATTACKER, &wrong);
        assert_eq!(answer.status, 403, "attempt {i}: {answer:?}");
    }
    // … then that address is refused with 429, even with the right token.
    let limited = get(ATTACKER, &wrong);
    assert_eq!(limited.status, 429, "{limited:?}");
    assert!(
        limited.detail().contains("too many failed token attempts"),
        "{limited:?}"
    );
    let retry: u64 = limited
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=300).contains(&retry), "{retry}");
    assert_eq!(get(ATTACKER, &token).status, 429);

    // Another address is unaffected: the right token works, a wrong one is a plain 403.
    assert_eq!(get(OWNER, &token).status, 200);
    assert_eq!(get(OWNER, &wrong).status, 403);
    // An empty header is no attempt (nothing was guessed).
    for _ in 0..25 {
        assert_eq!(get("127.0.0.3", "").status, 403);
    }
    assert_eq!(get("127.0.0.3", &token).status, 200);

    // A staff session from the locked address is not a token attempt: it still works.
    let login = login_from(&server, ATTACKER, "admin", STAFF_PASSWORD);
    assert_eq!(login.status, 200, "{login:?}");
    let cookie = session_of(&login);
    let answer = raw(
        &server,
        ATTACKER,
        "GET",
        "/system/plugins",
        &[("Cookie", &cookie)],
        b"",
    );
    assert_eq!(answer.status, 200, "{answer:?}");
}
