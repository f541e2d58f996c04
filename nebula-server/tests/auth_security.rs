//! Security of authentication on the real binary (issue 8): login and token rate limits per
//! client address, the browser-safety rule of cookie sessions (SPEC §11), the login body
//! limit, the cookie's `Secure` flag, and credentials checked before any body is read.
//!
//! Requests that must come from another address (127.0.0.2) or carry headers ureq will not
//! send as given (`Content-Type: text/plain`, a body shorter than its `Content-Length`) are
//! written by hand over a socket bound to that address ([`raw`]).

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

/// `Cookie: nebula_session=…` of a fresh login from the owner's address.
fn staff_cookie(server: &Server) -> String {
    let login = login_from(server, OWNER, "admin", STAFF_PASSWORD);
    assert_eq!(login.status, 200, "{login:?}");
    session_of(&login)
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

/// Whether `sample_sync` is enabled, and how many sync events it has emitted.
fn plugin_state(server: &Server) -> (bool, usize) {
    let list = server.get("/system/plugins");
    let record = list.body["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "sample_sync")
        .unwrap()
        .clone();
    let events = server.get("/system/events?prefix=plugin.sample_sync.");
    let count = events.body["events"].as_array().unwrap().len();
    (record["enabled"] == json!(true), count)
}

#[test]
fn cookie_state_changes_must_be_json_from_the_servers_own_origin() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_with_admin(dir.path(), &[]);
    let cookie = staff_cookie(&server);
    let token = server.token();
    let own = server.base.clone();
    let stop = br#"{"action": "stop"}"#;
    let real_sync = br#"{"dry_run": false}"#;
    let action = "/system/plugins/sample_sync/action";
    let sync = "/system/plugins/sample_sync/sync-users";
    let json_type = ("Content-Type", "application/json");
    let post = |path: &str, headers: &[(&str, &str)], body: &[u8]| {
        let mut all = vec![("Cookie", cookie.as_str())];
        all.extend_from_slice(headers);
        raw(&server, OWNER, "POST", path, &all, body)
    };
    assert_eq!(plugin_state(&server), (true, 0));

    // Refused: 403 with a detail that says why, and nothing happened.
    // (what, path, headers, body, a word of the detail)
    type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, &'a [u8], &'a str);
    let refused: Vec<Case> = vec![
        (
            "foreign Origin",
            action,
            vec![json_type, ("Origin", "http://evil.example")],
            stop,
            "cross-origin",
        ),
        (
            "another port of the same host",
            action,
            vec![json_type, ("Origin", "http://127.0.0.1:1")],
            stop,
            "cross-origin",
        ),
        (
            "Origin null",
            sync,
            vec![json_type, ("Origin", "null")],
            real_sync,
            "cross-origin",
        ),
        (
            "foreign Referer",
            sync,
            vec![json_type, ("Referer", "http://evil.example/page.html")],
            real_sync,
            "Referer",
        ),
        (
            "text/plain form, foreign Origin",
            sync,
            vec![
                ("Content-Type", "text/plain"),
                ("Origin", "http://evil.example"),
            ],
            real_sync,
            "Content-Type: application/json",
        ),
        (
            "text/plain, no Origin",
            action,
            vec![("Content-Type", "text/plain")],
            stop,
            "Content-Type: application/json",
        ),
        (
            "form, same origin",
            action,
            vec![
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Origin", own.as_str()),
            ],
            stop,
            "Content-Type",
        ),
        ("no Content-Type", action, vec![], stop, "Content-Type"),
    ];
    for (what, path, headers, body, why) in &refused {
        let answer = post(path, headers, body);
        assert_eq!(answer.status, 403, "{what}: {answer:?}");
        assert!(answer.detail().contains(why), "{what}: {answer:?}");
        assert_eq!(plugin_state(&server), (true, 0), "{what}: something ran");
    }
    let answer = post(
        "/system/plugins/rescan",
        &[("Origin", "http://evil.example")],
        b"",
    );
    assert_eq!(answer.status, 403, "rescan without a body: {answer:?}");

    // Reads with the cookie are not affected, whatever the origin.
    let read = raw(
        &server,
        OWNER,
        "GET",
        "/system/plugins",
        &[("Cookie", &cookie), ("Origin", "http://evil.example")],
        b"",
    );
    assert_eq!(read.status, 200, "{read:?}");

    // The installer token is not affected: any Content-Type, any Origin.
    let answer = raw(
        &server,
        OWNER,
        "POST",
        sync,
        &[
            ("X-Nebula-Token", &token),
            ("Content-Type", "text/plain"),
            ("Origin", "http://evil.example"),
        ],
        br#"{"dry_run": true}"#,
    );
    assert_eq!(answer.status, 200, "{answer:?}");

    // Same-origin JSON with the cookie works: by Origin, by Referer, or with neither (a client
    // that is not a browser); with a charset parameter too.
    let referer = format!("{own}/ui/plugins?x=1");
    let accepted: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("same Origin", vec![json_type, ("Origin", own.as_str())]),
        (
            "same Referer",
            vec![json_type, ("Referer", referer.as_str())],
        ),
        ("no Origin", vec![json_type]),
        (
            "charset",
            vec![
                ("Content-Type", "application/json; charset=utf-8"),
                ("Origin", own.as_str()),
            ],
        ),
    ];
    for (what, headers) in &accepted {
        let answer = post(sync, headers, br#"{"dry_run": true}"#);
        assert_eq!(answer.status, 200, "{what}: {answer:?}");
    }
    let answer = post(action, &[json_type, ("Origin", own.as_str())], stop);
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(plugin_state(&server), (false, 0));
    let answer = post(
        action,
        &[json_type, ("Origin", own.as_str())],
        br#"{"action": "start"}"#,
    );
    assert_eq!(answer.status, 200, "{answer:?}");
    let answer = post(sync, &[json_type, ("Origin", own.as_str())], real_sync);
    assert_eq!(answer.status, 200, "{answer:?}");
    let (enabled, events) = plugin_state(&server);
    assert!(enabled && events >= 2, "the real sync ran: {events} events");

    // Login and logout refuse another origin's page too (login CSRF, forced logout), before
    // any cookie is set or cleared.
    for path in ["/auth/login", "/auth/logout"] {
        let answer = raw(
            &server,
            OWNER,
            "POST",
            path,
            &[json_type, ("Origin", "http://evil.example")],
            &login_body("admin", STAFF_PASSWORD),
        );
        assert_eq!(answer.status, 403, "{path}: {answer:?}");
        assert!(answer.detail().contains("cross-origin"), "{answer:?}");
        assert!(answer.set_cookie().is_empty(), "{path}: {answer:?}");
        let answer = raw(
            &server,
            OWNER,
            "POST",
            path,
            &[json_type, ("Origin", own.as_str())],
            &login_body("admin", STAFF_PASSWORD),
        );
        assert_eq!(answer.status, 200, "{path}: {answer:?}");
    }
}

#[test]
fn a_configured_public_origin_is_the_only_one_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let public = "https://nebula.example.com";
    let env = [(
        "NEBULA__SERVER__PUBLIC_ORIGIN",
        "HTTPS://Nebula.Example.com:443",
    )];
    let server = server_with_admin(dir.path(), &env);
    let cookie = staff_cookie(&server);
    let sync = "/system/plugins/sample_sync/sync-users";
    let post = |origin: &str| {
        raw(
            &server,
            OWNER,
            "POST",
            sync,
            &[
                ("Cookie", &cookie),
                ("Content-Type", "application/json"),
                ("Origin", origin),
            ],
            br#"{"dry_run": true}"#,
        )
    };
    assert_eq!(post(public).status, 200);
    // The origin of the Host the request was sent to is no longer the server's own.
    let answer = post(&server.base);
    assert_eq!(answer.status, 403, "{answer:?}");
    assert!(
        answer.detail().contains("'https://nebula.example.com'"),
        "{answer:?}"
    );
    assert_eq!(post("http://nebula.example.com").status, 403);

    // A value that is not an origin stops start-up with exit code 2, naming the key.
    let bad_dir = tempfile::tempdir().unwrap();
    let out = support::command(bad_dir.path())
        .env("NEBULA__SERVER__BIND", "127.0.0.1:0")
        .env(
            "NEBULA__SERVER__PUBLIC_ORIGIN",
            "https://nebula.example.com/admin",
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("server.public_origin"), "{stderr}");
}

#[test]
fn login_bodies_have_their_own_small_limit() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_with_admin(dir.path(), &[]);
    let json_type = ("Content-Type", "application/json");
    let big = login_body("admin", &"p".repeat(64 * 1024));

    // Declared length over the limit: refused before a byte is read.
    let started = Instant::now();
    let answer = raw(&server, OWNER, "POST", "/auth/login", &[json_type], &big);
    let declared = started.elapsed();
    assert_eq!(answer.status, 413, "{answer:?}");
    assert_eq!(
        answer.detail(),
        "body larger than the login body limit (4096 bytes)"
    );

    // Chunked, so no length is declared: refused once 4 KiB have arrived.
    let mut request = format!(
        "POST /auth/login HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        server_addr(&server)
    )
    .into_bytes();
    for chunk in big.chunks(1024) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let started = Instant::now();
    let answer = raw_bytes(&server, OWNER, &request);
    let chunked = started.elapsed();
    assert_eq!(answer.status, 413, "{answer:?}");
    eprintln!("64 KiB login body: 413 in {declared:?} (declared), {chunked:?} (chunked)");
    assert!(declared < Duration::from_secs(5) && chunked < Duration::from_secs(5));

    // A login under the limit is a login (not a 413), and the limit is the login's alone.
    let long = login_body("admin", &"p".repeat(3900));
    assert!(long.len() <= 4096);
    let answer = raw(&server, OWNER, "POST", "/auth/login", &[json_type], &long);
    assert_eq!(answer.status, 401, "{answer:?}");
    let token = server.token();
    let sync_body = json!({"dry_run": true, "users": [{"username": "x".repeat(100), "email": "y".repeat(8000)}]});
    let answer = raw(
        &server,
        OWNER,
        "POST",
        "/system/plugins/sample_sync/sync-users",
        &[json_type, ("X-Nebula-Token", &token)],
        sync_body.to_string().as_bytes(),
    );
    assert_ne!(answer.status, 413, "{answer:?}");
}

#[test]
fn the_secure_flag_follows_server_cookie_secure() {
    for (secure, env) in [
        (false, vec![]),
        (true, vec![("NEBULA__SERVER__COOKIE_SECURE", "true")]),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let server = server_with_admin(dir.path(), &env);
        let login = server.login("admin", STAFF_PASSWORD);
        assert_eq!(login.status, 200, "{login:?}");
        let logout = server.request("POST", "/auth/logout", &[], None);
        assert_eq!(logout.status, 200, "{logout:?}");
        for (what, cookies) in [("login", &login.set_cookie), ("logout", &logout.set_cookie)] {
            let cookie = cookies
                .iter()
                .find(|c| c.starts_with("nebula_session="))
                .unwrap_or_else(|| panic!("{what}: no session cookie in {cookies:?}"));
            let has_secure = cookie.split(';').any(|a| a.trim() == "Secure");
            assert_eq!(
                has_secure, secure,
                "{what} with cookie_secure={secure}: {cookie}"
            );
            for attr in ["HttpOnly", "SameSite=Lax", "Path=/"] {
                assert!(cookie.contains(attr), "{what}: {cookie}");
            }
        }
    }
}

#[test]
fn credentials_are_checked_before_the_body_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_with_admin(dir.path(), &[]);
    let token = server.token();
    let wrong = format!("{token}x");
    let posts: Vec<String> = nebula_server::routes::system_route_list()
        .into_iter()
        .filter(|(method, _)| *method == "POST")
        .map(|(_, path)| path.replace("{name}", "sample_sync"))
        .collect();
    assert!(posts.len() >= 3, "{posts:?}");
    let json_type = ("Content-Type", "application/json");
    for path in &posts {
        // With valid credentials these bodies are refused by the body rules…
        let answer = raw(
            &server,
            OWNER,
            "POST",
            path,
            &[json_type, ("X-Nebula-Token", &token)],
            br#"{"dry_run": "nope", "action": 1}"#,
        );
        if !path.ends_with("/rescan") {
            assert_eq!(answer.status, 422, "{path}: {answer:?}");
        }
        // … without them, or with wrong ones, the answer is 403 whatever the body.
        for (what, credentials) in [
            ("none", vec![]),
            ("wrong token", vec![("X-Nebula-Token", wrong.as_str())]),
            (
                "forged cookie",
                vec![("Cookie", "nebula_session=v1.1.9999999999.x.y")],
            ),
        ] {
            for body in [
                &br#"{"dry_run": "nope", "action": 1}"#[..],
                b"not json at all",
            ] {
                let mut headers = credentials.clone();
                headers.push(json_type);
                let answer = raw(&server, OWNER, "POST", path, &headers, body);
                assert_eq!(answer.status, 403, "{path} with {what}: {answer:?}");
                assert_eq!(answer.body, json!({"detail": "Forbidden"}));
            }
        }
        // A body over the limit (declared, not sent) is not 413 but 403; a declared body that
        // never arrives is answered at once, not after the 10 s body timeout (408).
        for length in [9 * 1024 * 1024, 1000] {
            let request = format!(
                "POST {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
                 Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n{{",
                server_addr(&server)
            );
            let started = Instant::now();
            let answer = raw_bytes(&server, OWNER, request.as_bytes());
            assert_eq!(
                answer.status, 403,
                "{path}, {length} bytes declared: {answer:?}"
            );
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{path}: the body was waited for"
            );
        }
    }
}
