//! A small W3C WebDriver client over HTTP (`ureq`), driving Debian's headless Chromium through
//! `chromedriver`: enough for the admin page's browser test (`tests/ui_browser.rs`).
//!
//! Every wait polls with a deadline ([`WAIT`]): the CI machine is a busy 2-core box, so no
//! fixed sleep stands in for a condition.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

/// Debian's `chromium`.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Debian's `chromium-driver`.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long a wait may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(60);

/// The W3C key of an element reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Whether the browser can run here. `Err` says what is missing. When the environment variable
/// `CI` is set a missing browser is a failure, never a skip (the caller panics); without it the
/// caller prints the reason and skips, like the PostgreSQL half without
/// `NEBULA_TEST_POSTGRES_URL`.
pub fn browser_available() -> Result<(), String> {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} not found: apt-get install chromium chromium-driver",
            missing.join(" and ")
        ))
    }
}

/// A WebDriver error answer, or a transport failure.
#[derive(Debug)]
pub struct WebDriverError(pub String);

impl std::fmt::Display for WebDriverError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// An element of the current page.
#[derive(Debug, Clone)]
pub struct Element(String);

/// A headless Chromium session. The driver (and with it the browser) is ended on drop.
pub struct Browser {
    agent: ureq::Agent,
    driver_url: String,
    session: String,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts `chromedriver` on a free loopback port and opens a headless session with a
    /// window of `width` × `height`. The driver's log goes to `log`.
    pub fn start(width: u32, height: u32, log: &Path) -> Browser {
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(120))
            .build();
        // A port that was free a moment ago; tried again if chromedriver loses the race for it.
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port();
            let driver = Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .arg(format!("--log-path={}", log.display()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn chromedriver");
            // Dropped (driver killed) when it does not come up.
            let mut browser = Browser {
                agent: agent.clone(),
                driver_url: format!("http://127.0.0.1:{port}"),
                session: String::new(),
                driver,
                _profile: tempfile::tempdir().expect("profile dir"),
            };
            match browser.wait_for_driver() {
                Ok(()) => {
                    browser.new_session(width, height);
                    return browser;
                }
                Err(e) => last_error = e,
            }
        }
        panic!("chromedriver did not start: {last_error}");
    }

    fn wait_for_driver(&mut self) -> Result<(), String> {
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.driver.try_wait() {
                return Err(format!("chromedriver exited: {status}"));
            }
            if let Ok(answer) = self
                .agent
                .get(&format!("{}/status", self.driver_url))
                .call()
            {
                let body: Value = answer.into_json().unwrap_or(Value::Null);
                if body["value"]["ready"] == true {
                    return Ok(());
                }
            }
            if started.elapsed() > Duration::from_secs(30) {
                return Err("not ready within 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn new_session(&mut self, width: u32, height: u32) {
        let profile = self._profile.path().display().to_string();
        let capabilities = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": CHROMIUM,
                        // Without the background-networking flags Chromium reaches out to the
                        // network at start, and this closed network refuses those connections.
                        "args": [
                            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                            "--no-first-run", "--disable-background-networking",
                            "--disable-component-update", "--disable-sync",
                            "--disable-dev-shm-usage", "--lang=en-US",
                            format!("--user-data-dir={profile}"),
                            format!("--window-size={width},{height}"),
                        ],
                    },
                    "goog:loggingPrefs": {"browser": "ALL"},
                    "timeouts": {"script": 60_000, "pageLoad": 60_000, "implicit": 0},
                }
            }
        });
        let answer = self
            .raw("POST", "/session", Some(capabilities))
            .unwrap_or_else(|e| panic!("new WebDriver session: {e}"));
        self.session = answer["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session id in {answer}"))
            .to_owned();
    }

    /// One WebDriver command; the answer's `value`.
    fn raw(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, WebDriverError> {
        let url = format!("{}{path}", self.driver_url);
        let request = self.agent.request(method, &url);
        let result = match body {
            Some(body) => request.send_json(body),
            None => request.call(),
        };
        let answer = match result {
            Ok(answer) => answer,
            Err(ureq::Error::Status(_, answer)) => answer,
            Err(e) => return Err(WebDriverError(format!("{method} {path}: {e}"))),
        };
        let status = answer.status();
        let body: Value = answer
            .into_json()
            .map_err(|e| WebDriverError(format!("{method} {path}: not JSON: {e}")))?;
        if status >= 400 {
            return Err(WebDriverError(format!(
                "{method} {path}: {} {}",
                body["value"]["error"],
                body["value"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .lines()
                    .next()
                    .unwrap_or_default()
            )));
        }
        Ok(body["value"].clone())
    }

    /// A command of this session.
    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, WebDriverError> {
        self.raw(method, &format!("/session/{}{path}", self.session), body)
    }

    /// Opens `url` and waits for it to load.
    pub fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({"url": url})))
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// The current address.
    pub fn url(&self) -> String {
        self.cmd("GET", "/url", None)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// The first element matching `css`, if any.
    pub fn find(&self, css: &str) -> Option<Element> {
        let value = self
            .cmd(
                "POST",
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .ok()?;
        value[ELEMENT_KEY].as_str().map(|id| Element(id.to_owned()))
    }

    /// Every element matching `css`.
    pub fn find_all(&self, css: &str) -> Vec<Element> {
        self.cmd(
            "POST",
            "/elements",
            Some(json!({"using": "css selector", "value": css})),
        )
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|v| v[ELEMENT_KEY].as_str().map(|id| Element(id.to_owned())))
        .collect()
    }

    /// Polls `check` until it answers `Some`, or fails the test after [`WAIT`] naming `what`
    /// (with a screenshot of that moment under `target/ui-screenshots/`).
    pub fn wait_until<T>(&self, what: &str, mut check: impl FnMut(&Browser) -> Option<T>) -> T {
        let started = Instant::now();
        loop {
            if let Some(found) = check(self) {
                return found;
            }
            if started.elapsed() > WAIT {
                let shot = screenshot_dir().join("failure.png");
                self.screenshot(&shot);
                panic!(
                    "timed out after {WAIT:?} waiting for {what} (page {}; screenshot {}; \
                     page text:\n{})",
                    self.url(),
                    shot.display(),
                    self.find("body")
                        .and_then(|b| self.text(&b).ok())
                        .unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for a visible element matching `css`.
    pub fn wait_for(&self, css: &str) -> Element {
        self.wait_until(&format!("a visible {css}"), |b| {
            b.find(css).filter(|e| b.displayed(e))
        })
    }

    /// Waits until the visible text of the first element matching `css` satisfies `check`;
    /// answers that text.
    pub fn wait_for_text(&self, css: &str, what: &str, check: impl Fn(&str) -> bool) -> String {
        self.wait_until(&format!("{css} to show {what}"), |b| {
            let element = b.find(css)?;
            let text = b.text(&element).ok()?;
            check(&text).then_some(text)
        })
    }

    /// Clicks an element.
    pub fn click(&self, element: &Element) {
        self.cmd(
            "POST",
            &format!("/element/{}/click", element.0),
            Some(json!({})),
        )
        .unwrap_or_else(|e| panic!("click: {e}"));
    }

    /// Clicks the first element matching `css`, once it is visible.
    pub fn click_css(&self, css: &str) {
        let element = self.wait_for(css);
        self.click(&element);
    }

    /// Types `text` into an element (`\n` is the Enter key).
    pub fn type_into(&self, element: &Element, text: &str) {
        self.cmd(
            "POST",
            &format!("/element/{}/value", element.0),
            Some(json!({"text": text})),
        )
        .unwrap_or_else(|e| panic!("send keys: {e}"));
    }

    /// Empties an input.
    pub fn clear(&self, element: &Element) {
        self.cmd(
            "POST",
            &format!("/element/{}/clear", element.0),
            Some(json!({})),
        )
        .unwrap_or_else(|e| panic!("clear: {e}"));
    }

    /// The element's rendered text.
    pub fn text(&self, element: &Element) -> Result<String, WebDriverError> {
        self.cmd("GET", &format!("/element/{}/text", element.0), None)
            .map(|v| v.as_str().unwrap_or_default().to_owned())
    }

    /// An attribute of the element.
    pub fn attribute(&self, element: &Element, name: &str) -> Option<String> {
        self.cmd(
            "GET",
            &format!("/element/{}/attribute/{name}", element.0),
            None,
        )
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
    }

    /// Whether the element is displayed.
    pub fn displayed(&self, element: &Element) -> bool {
        self.cmd("GET", &format!("/element/{}/displayed", element.0), None)
            .map(|v| v == true)
            .unwrap_or(false)
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page; its return value.
    pub fn execute(&self, script: &str, args: Value) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
        .unwrap_or_else(|e| panic!("execute: {e}"))
    }

    /// Runs an asynchronous script: it calls `arguments[arguments.length - 1]` with its result.
    pub fn execute_async(&self, script: &str, args: Value) -> Value {
        self.cmd(
            "POST",
            "/execute/async",
            Some(json!({"script": script, "args": args})),
        )
        .unwrap_or_else(|e| panic!("execute async: {e}"))
    }

    /// Presses keys on whatever has the focus (`\u{E00C}` is Escape).
    pub fn press(&self, keys: &str) {
        let actions: Vec<Value> = keys
            .chars()
            .flat_map(|c| {
                [
                    json!({"type": "keyDown", "value": c.to_string()}),
                    json!({"type": "keyUp", "value": c.to_string()}),
                ]
            })
            .collect();
        self.cmd(
            "POST",
            "/actions",
            Some(json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]})),
        )
        .unwrap_or_else(|e| panic!("keys: {e}"));
    }

    /// Resizes the window.
    pub fn set_window_size(&self, width: u32, height: u32) {
        self.cmd(
            "POST",
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .unwrap_or_else(|e| panic!("window size: {e}"));
    }

    /// The browser's cookies for the current page.
    pub fn cookies(&self) -> Vec<Value> {
        self.cmd("GET", "/cookie", None)
            .ok()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
    }

    /// Deletes the cookie `name` of the current page (as an expiry or a logout elsewhere would).
    pub fn delete_cookie(&self, name: &str) {
        self.cmd("DELETE", &format!("/cookie/{name}"), None)
            .unwrap_or_else(|e| panic!("delete cookie: {e}"));
    }

    /// The console messages since the last call (Chromium's log; not in W3C WebDriver).
    pub fn console(&self) -> Vec<Value> {
        self.cmd("POST", "/se/log", Some(json!({"type": "browser"})))
            .ok()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
    }

    /// Saves a PNG of the viewport.
    pub fn screenshot(&self, path: &Path) {
        let Ok(value) = self.cmd("GET", "/screenshot", None) else {
            return;
        };
        let png = base64::engine::general_purpose::STANDARD
            .decode(value.as_str().unwrap_or_default())
            .expect("screenshot is base64");
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("screenshot dir");
        }
        std::fs::write(path, png).expect("write screenshot");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.raw("DELETE", &format!("/session/{}", self.session), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// `target/ui-screenshots/`, where the test writes its pictures.
pub fn screenshot_dir() -> PathBuf {
    // CARGO_TARGET_TMPDIR is `<target dir>/tmp`.
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map_or_else(|| PathBuf::from("target"), Path::to_path_buf)
        .join("ui-screenshots")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}
