//! Issue 14: the OpenAPI document is generated from the handlers and types, served at
//! `GET /openapi.json` without credentials, and committed as `docs/openapi.json`; this test
//! fails when the committed file differs from the generated one.

mod support;

use serde_json::Value;
use support::Server;

const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");

#[test]
fn the_committed_document_is_the_generated_one() {
    let generated = nebula_server::openapi::document_json();
    let committed = std::fs::read_to_string(COMMITTED).unwrap_or_default();
    assert!(
        generated == committed,
        "docs/openapi.json differs from the generated document; refresh it with\n  \
         cargo run -p nebula-server --bin nebula-server -- openapi > docs/openapi.json"
    );
}

#[test]
fn the_document_is_served_without_credentials_and_describes_every_route() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let answer = server.request("GET", "/openapi.json", &[], None);
    assert_eq!(answer.status, 200);
    let doc = &answer.body;
    assert_eq!(doc["openapi"], "3.1.0");
    // The CLI prints the same document.
    let printed = std::process::Command::new(support::BIN)
        .arg("openapi")
        .output()
        .unwrap();
    assert!(printed.status.success());
    let printed: Value = serde_json::from_slice(&printed.stdout).unwrap();
    assert_eq!(&printed, doc);

    // Every route of the route table, with its method, and nothing else.
    let mut routes: Vec<(String, String)> = nebula_server::routes::system_route_list()
        .into_iter()
        .map(|(method, path)| (method.to_lowercase(), path))
        .chain(
            nebula_server::routes::public_routes()
                .into_iter()
                .map(|r| (r.method.to_lowercase(), r.path.to_owned())),
        )
        .collect();
    routes.sort();
    let mut documented: Vec<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|k| ["get", "post", "put", "patch", "delete"].contains(&k.as_str()))
                .map(|method| (method.clone(), path.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    documented.sort();
    assert_eq!(documented, routes);
    // The admin page (`/ui/`, issue 16) is static files for browsers, not API: it is mounted
    // outside the route table, and the document (and so schemathesis) leaves it out.
    assert!(
        documented.iter().all(|(_, path)| !path.starts_with("/ui")),
        "the admin page's files are in the API document"
    );

    // Both ways to authenticate, required on every /system/ route.
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["installer_token"]["in"], "header");
    assert_eq!(schemes["installer_token"]["name"], "X-Nebula-Token");
    assert_eq!(schemes["staff_session"]["in"], "cookie");
    assert_eq!(schemes["staff_session"]["name"], "nebula_session");
    for (method, path) in &routes {
        let operation = &doc["paths"][path][method];
        if path.starts_with("/system/") {
            assert!(
                operation["security"]
                    .as_array()
                    .is_some_and(|s| s.len() == 2),
                "{method} {path}: {}",
                operation["security"]
            );
            assert!(
                operation["responses"]["403"].is_object(),
                "{method} {path} documents no 403"
            );
        }
    }
    // No secret in it.
    let text = answer.text;
    assert!(!text.contains(&server.token()));
}
