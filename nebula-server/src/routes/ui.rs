//! `/ui/`: the admin page (issue 16), static files embedded in the binary.
//!
//! Plain HTML, CSS and ES modules from `nebula-server/ui/`, compiled in with `include_bytes!`:
//! nothing to install, build or fetch at run time, and the page always matches the server that
//! serves it. The page is public (it holds no secret: it is the login form and the code that
//! calls the API); everything it shows comes from `/system/…` with the staff session cookie,
//! behind [`crate::auth::require_staff`] like any other caller.
//!
//! Not part of the API: these routes are mounted beside the route table
//! ([`crate::routes::public_routes`]) and are not in the OpenAPI document.

use std::sync::OnceLock;

use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::DefaultHeaders;
use actix_web::{web, HttpRequest, HttpResponse, Scope};
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// Where the page lives.
pub const UI_PREFIX: &str = "/ui";

/// The page's Content-Security-Policy: its own files only (no inline script or style, no
/// `eval`, no other origin), never framed (clickjacking), no `<base>` to redirect its relative
/// URLs, and forms only to this origin.
pub const CONTENT_SECURITY_POLICY: &str =
    "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// Cached by the browser but revalidated on every use (`ETag`): a new server binary brings new
/// files, and an admin must never run yesterday's page against today's API.
const CACHE_CONTROL: &str = "no-cache";

/// One embedded file.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    /// The path under `/ui/` (`index.html`, `views/plugins.js`).
    pub path: &'static str,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its bytes.
    pub bytes: &'static [u8],
}

const HTML: &str = "text/html; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const SVG: &str = "image/svg+xml";

/// Embeds `nebula-server/ui/<path>`.
macro_rules! asset {
    ($path:literal, $content_type:expr) => {
        Asset {
            path: $path,
            content_type: $content_type,
            bytes: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/ui/", $path)),
        }
    };
}

/// Every file of the page: the one table (a unit test checks it lists every file of
/// `nebula-server/ui/`, and nothing else is served).
pub const ASSETS: &[Asset] = &[
    asset!("index.html", HTML),
    asset!("app.css", CSS),
    asset!("favicon.svg", SVG),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("dom.js", JS),
    asset!("users.js", JS),
    asset!("views/login.js", JS),
    asset!("views/plugins.js", JS),
    asset!("views/plugin.js", JS),
    asset!("views/sync.js", JS),
];

/// The file `/ui/` answers.
const INDEX: &str = "index.html";

/// The embedded file at `path` (relative to `/ui/`; empty is the index).
pub fn asset(path: &str) -> Option<&'static Asset> {
    let path = if path.is_empty() { INDEX } else { path };
    ASSETS.iter().find(|a| a.path == path)
}

/// The total size of the page's files, in bytes (stated in `docs/ADMIN_UI.md`).
pub fn total_size() -> usize {
    ASSETS.iter().map(|a| a.bytes.len()).sum()
}

/// Each asset's `ETag`: a quoted SHA-256 prefix of its bytes, computed once.
fn etag(index: usize) -> &'static str {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    let etags = ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let digest = Sha256::digest(a.bytes);
                let hex: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
                format!("\"{hex}\"")
            })
            .collect()
    });
    etags.get(index).map_or("", String::as_str)
}

/// The `/ui` scope: `/ui` redirects to `/ui/`, `/ui/` is the index, `/ui/<file>` a file of
/// [`ASSETS`], anything else `404`. Every answer, errors included, carries the security
/// headers.
pub fn scope() -> Scope<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    web::scope(UI_PREFIX)
        .wrap(
            DefaultHeaders::new()
                .add((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
                .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
                .add((header::REFERRER_POLICY, "same-origin"))
                .add((header::CACHE_CONTROL, CACHE_CONTROL)),
        )
        // GET and HEAD (`curl -I`, link checkers): actix answers a HEAD without the body.
        .service(web::resource("").route(read_only().to(redirect_to_index)))
        .service(web::resource("/{path:.*}").route(read_only().to(serve)))
        .default_service(web::to(not_found))
}

/// A route for GET and HEAD only: the page's files are read, never changed.
fn read_only() -> actix_web::Route {
    web::route().guard(actix_web::guard::Any(actix_web::guard::Get()).or(actix_web::guard::Head()))
}

/// `/ui` → `/ui/`, so the page's relative URLs (`app.js`) resolve under `/ui/`.
async fn redirect_to_index() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "/ui/"))
        .finish()
}

/// One file of [`ASSETS`], or `304` when the browser's copy is current.
async fn serve(req: HttpRequest, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let path = path.into_inner();
    let index = ASSETS
        .iter()
        .position(|a| {
            a.path
                == if path.is_empty() {
                    INDEX
                } else {
                    path.as_str()
                }
        })
        .ok_or_else(|| ApiError::NotFound(format!("no file '{path}' in the admin page")))?;
    let asset = &ASSETS[index];
    let etag = etag(index);
    let current = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag));
    let mut answer = if current {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    answer.insert_header((header::ETAG, HeaderValue::from_static(etag)));
    if current {
        return Ok(answer.finish());
    }
    Ok(answer.content_type(asset.content_type).body(asset.bytes))
}

async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound("Not Found".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn ui_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("ui")
    }

    fn files_under(dir: &Path, base: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files_under(&path, base, out);
            } else {
                let relative = path.strip_prefix(base).unwrap();
                out.push(relative.to_string_lossy().replace('\\', "/"));
            }
        }
    }

    #[test]
    fn the_table_lists_every_file_of_the_ui_directory() {
        let mut on_disk = Vec::new();
        files_under(&ui_dir(), &ui_dir(), &mut on_disk);
        on_disk.sort();
        let mut listed: Vec<String> = ASSETS.iter().map(|a| a.path.to_owned()).collect();
        listed.sort();
        assert_eq!(listed, on_disk);
    }

    #[test]
    fn the_page_stays_small() {
        // About 62 KiB today (docs/ADMIN_UI.md); a framework or a screenshot would blow
        // through this.
        assert!(total_size() < 80 * 1024, "{} bytes", total_size());
    }

    #[test]
    fn no_inline_script_or_style_and_no_markup_from_strings() {
        // The CSP would block them in the browser; this says where, before a browser does.
        let html = std::str::from_utf8(asset("").unwrap().bytes).unwrap();
        assert!(!html.contains(" style="), "style attribute in index.html");
        assert!(!html.contains("<style"), "<style> in index.html");
        assert!(
            !has_inline_handler(html),
            "inline event handler attribute in index.html"
        );
        for script in html.split("<script").skip(1) {
            let tag_end = script.find('>').unwrap();
            assert!(script[..tag_end].contains(" src="), "inline <script>");
            assert!(script[tag_end..].starts_with("></script>"), "script body");
        }
        for asset in ASSETS.iter().filter(|a| a.content_type == JS) {
            let text = std::str::from_utf8(asset.bytes).unwrap();
            for forbidden in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "eval(",
                "document.write",
            ] {
                assert!(!text.contains(forbidden), "{} uses {forbidden}", asset.path);
            }
        }
    }

    /// ` onclick=`, ` onload =`…: an attribute that runs script.
    fn has_inline_handler(html: &str) -> bool {
        let lower = html.to_ascii_lowercase();
        lower.match_indices(" on").any(|(at, _)| {
            let rest = &lower[at + 3..];
            let name_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
            name_len > 0 && rest[name_len..].trim_start().starts_with('=')
        })
    }

    #[test]
    fn unknown_paths_are_none_and_the_empty_path_is_the_index() {
        assert_eq!(asset("").unwrap().path, "index.html");
        assert!(asset("../Cargo.toml").is_none());
        assert!(asset("x").is_none());
        assert_ne!(etag(0), etag(1));
    }
}
