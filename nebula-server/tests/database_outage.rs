//! Connection loss (issue 12): while PostgreSQL refuses the server's database, every request
//! that needs it is answered `503` with a JSON detail, `/readyz` says the database is
//! unreachable and `/healthz` (liveness) stays `200`; once the database is back, the same
//! server process answers again, without a restart.
//!
//! The test does not restart a cluster it did not make: it takes its own database away
//! (`ALTER DATABASE … ALLOW_CONNECTIONS false` and `pg_terminate_backend` on every connection
//! to it), which is what the server sees of a database restart, and gives it back after.
//! PostgreSQL only (`NEBULA_TEST_POSTGRES_URL`); skipped with a note without it.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use nebula_core::testing::TestDatabase;
use serde_json::json;
use support::{command, Server};

const TOKEN: &str = "database-outage-installer-token-0123456789";

/// Runs SQL on the test server as its administrator (psql, installed with PostgreSQL).
fn psql(admin_url: &str, sql: &str) {
    let output = Command::new("psql")
        .arg(admin_url)
        .args(["-v", "ON_ERROR_STOP=1", "-qAtc", sql])
        .output()
        .expect("psql runs (it comes with PostgreSQL)");
    assert!(
        output.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    started.elapsed()
}

#[test]
fn requests_get_503_while_the_database_is_away_and_work_again_after_without_a_restart() {
    let Some(db) = TestDatabase::postgres_for_test() else {
        return;
    };
    let (admin_url, name) = db.postgres_admin().expect("a PostgreSQL test database");
    let work = db.dir();
    let server = Server::spawn(
        command(work)
            .env("NEBULA__SERVER__BIND", "127.0.0.1:0")
            .env("NEBULA__DATABASE__URL", db.url())
            .env("NEBULA__DATABASE__CONNECT_TIMEOUT_SEC", "2")
            .env("NEBULA_INSTALLER_TOKEN", TOKEN)
            .env(
                "NEBULA_SESSION_SECRET",
                "database-outage-session-secret-0123456789",
            ),
        work,
    );
    let pid = server.pid();
    let auth = [("X-Nebula-Token", TOKEN)];
    let get = |path: &str| server.request("GET", path, &auth, None);
    let sync = |username: &str| {
        let body = json!({"dry_run": false, "users": [{"username": username, "db_name": "acme"}]});
        let bytes = serde_json::to_vec(&body).unwrap();
        server.request(
            "POST",
            "/system/plugins/sample_sync/sync-users",
            &auth,
            Some(&bytes),
        )
    };
    assert_eq!(get("/readyz").status, 200);
    assert_eq!(sync("before").status, 200);

    // The database goes away: new connections are refused, live ones cut.
    psql(
        admin_url,
        &format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"),
    );
    psql(
        admin_url,
        &format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        ),
    );
    let ready = get("/readyz");
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert_eq!(ready.body["status"], "not ready");
    assert!(
        ready.body["database"]
            .as_str()
            .is_some_and(|d| d.contains("unavailable")),
        "{}",
        ready.body
    );
    let live = get("/healthz");
    assert_eq!(live.status, 200, "liveness does not depend on the database");
    for answer in [
        get("/system/directory/users?db_name=acme"),
        get("/system/events?prefix=plugin."),
        sync("during"),
    ] {
        assert_eq!(answer.status, 503, "{}", answer.body);
        assert!(answer.body["detail"].is_string(), "{}", answer.body);
    }
    // What needs no database still answers.
    assert_eq!(get("/system/plugins").status, 200);

    // Back: the same process answers again.
    psql(
        admin_url,
        &format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"),
    );
    let after = wait_for("ready again", Duration::from_secs(30), || {
        get("/readyz").status == 200
    });
    eprintln!("ready again {after:?} after the database came back");
    assert_eq!(sync("after").status, 200);
    let users = get("/system/directory/users?db_name=acme");
    assert_eq!(users.status, 200, "{}", users.body);
    let names: Vec<_> = users.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["after", "before"], "nothing written while away");
    assert_eq!(server.pid(), pid, "no restart");
}
