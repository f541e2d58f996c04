//! The baseline of the HTTP figures: a minimal actix-web server with the same token check
//! (`X-Nebula-Token`, constant-time, as `/system/` routes have it) and the same number of
//! workers, answering bodies of the same sizes as the real routes. `nebula-bench baseline …`
//! runs it in a process of its own, like the server it is compared with.

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};

/// What the baseline answers.
#[derive(Clone)]
pub struct Bodies {
    /// `GET /list`.
    pub list: web::Bytes,
    /// `GET /health`.
    pub health: web::Bytes,
    /// `POST /dry-run` (the request body is read and dropped).
    pub dry_run: web::Bytes,
}

fn admitted(request: &HttpRequest, token: &str) -> bool {
    request
        .headers()
        .get("X-Nebula-Token")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|given| nebula_plugin_api::token::tokens_match(token, given))
}

fn answer(request: &HttpRequest, token: &str, body: &web::Bytes) -> HttpResponse {
    if !admitted(request, token) {
        return HttpResponse::Forbidden().body(r#"{"detail":"Forbidden"}"#);
    }
    HttpResponse::Ok()
        .content_type("application/json")
        .body(body.clone())
}

/// Serves until killed; prints `listening on http://ADDR` first.
pub fn serve(token: String, bodies: Bodies, workers: usize) -> std::io::Result<()> {
    actix_web::rt::System::new().block_on(async move {
        let server = HttpServer::new(move || {
            let (token, bodies) = (token.clone(), bodies.clone());
            App::new()
                .app_data(web::PayloadConfig::new(8 * 1024 * 1024))
                .route(
                    "/list",
                    web::get().to({
                        let (token, bodies) = (token.clone(), bodies.clone());
                        move |request: HttpRequest| {
                            let response = answer(&request, &token, &bodies.list);
                            async move { response }
                        }
                    }),
                )
                .route(
                    "/health",
                    web::get().to({
                        let (token, bodies) = (token.clone(), bodies.clone());
                        move |request: HttpRequest| {
                            let response = answer(&request, &token, &bodies.health);
                            async move { response }
                        }
                    }),
                )
                .route(
                    "/dry-run",
                    web::post().to(move |request: HttpRequest, _body: web::Bytes| {
                        let response = answer(&request, &token, &bodies.dry_run);
                        async move { response }
                    }),
                )
        })
        .workers(workers)
        .bind("127.0.0.1:0")?;
        let address = server.addrs()[0];
        println!("listening on http://{address}");
        server.run().await
    })
}
