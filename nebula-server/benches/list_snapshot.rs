//! `GET /system/plugins`' body from the snapshot: `cargo bench -p nebula-server --bench
//! list_snapshot` (criterion; `-- --quick` for a short run). The figures are in
//! `docs/PERFORMANCE.md`.
//!
//! `list_snapshot/hit`: the list has not changed since the last answer (what a polling panel
//! sees), so `AppState::plugin_list_body` hands out the bytes it already has. What a change
//! costs (every record rebuilt and serialised) is `plugin_list/records_and_bytes_3_plugins`
//! in `tests/benches/hot_paths.rs`.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use nebula_core::accounts::AccountStore;
use nebula_core::auth::{Authenticator, RateLimits, Secret};
use nebula_core::{NebulaConfig, NebulaCore};
use nebula_server::state::AppState;

fn list_snapshot(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut config = NebulaConfig::default();
    config.database.url = format!("sqlite://{}", dir.path().join("nebula.db").display());
    config.plugins.health_interval_sec = 3600.0;
    let core = runtime.block_on(async {
        NebulaCore::builder()
            .config(config)
            .build()
            .await
            .expect("engine builds")
    });
    let auth = Authenticator::new(
        Some(Secret::new("bench-token-0123456789abcdef0123456789")),
        Secret::new("bench-session-key-0123456789abcdef0123456789"),
        Duration::from_secs(3600),
        AccountStore::new(core.database().clone()),
        RateLimits::default(),
    )
    .expect("an authenticator");
    let state = AppState::new(core.clone(), auth, runtime.handle().clone(), false);
    assert!(
        !core.plugins().list().is_empty(),
        "the linked plugins are listed"
    );
    c.bench_function("list_snapshot/hit", |b| {
        b.iter(|| state.plugin_list_body().expect("a body"))
    });
    runtime.block_on(core.shutdown());
}

criterion_group!(benches, list_snapshot);
criterion_main!(benches);
