//! A smoke run of the benchmark (`nebula-bench all --quick`, seconds): every case runs, the
//! table is printed, and no request failed. The figures themselves are for
//! `docs/PERFORMANCE.md`, from a release build, not for this test.

use std::path::PathBuf;
use std::process::Command;

/// The debug `nebula-server` (and `sample-sync-process`) beside this test's binaries, built if
/// `cargo test -p nebula-tests` ran alone.
fn server_binary() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_BIN_EXE_nebula-bench"))
        .parent()
        .expect("target dir")
        .to_path_buf();
    let server = dir.join("nebula-server");
    if !server.exists() || !dir.join("sample-sync-process").exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "nebula-server", "--bins"])
            .status()
            .expect("cargo runs");
        assert!(status.success(), "cargo build -p nebula-server --bins");
    }
    server
}

#[test]
fn the_benchmark_runs_every_case_and_prints_its_table() {
    let output = Command::new(env!("CARGO_BIN_EXE_nebula-bench"))
        .args(["all", "--quick", "--seconds", "0.3", "--server"])
        .arg(server_binary())
        .output()
        .expect("nebula-bench runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    for case in [
        "start-up to /healthz, empty database",
        "list, 1 conn",
        "list, 64 conn",
        "health, 64 conn",
        "dry run, 64 conn",
        "real sync 1000 users, new, SQLite",
        "real sync 1000 users, again, SQLite",
        "external health, adapter alone",
        "external health, through HTTP",
        "external dry run, adapter alone",
        "external dry run, through HTTP",
        "RSS idle",
        "RSS after the load",
        "start-up to /healthz, synced users, 4 plugins",
    ] {
        assert!(stdout.contains(case), "no '{case}' in\n{stdout}");
    }
    // With a PostgreSQL server named (as in CI), its rows are there too.
    if std::env::var_os("NEBULA_TEST_POSTGRES_URL").is_some() {
        assert!(
            stdout.contains("real sync 1000 users, new, PostgreSQL"),
            "no PostgreSQL rows in\n{stdout}"
        );
    }
}
