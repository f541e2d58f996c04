//! Micro-benchmarks of the pieces `docs/PERFORMANCE.md` points at: `cargo bench -p
//! nebula-tests` (criterion; `-- --quick` for a short run).
//!
//! - `struct_json`: a plugin's answer of 100 report items through the gRPC adapter's
//!   conversion, JSON → `prost_types::Struct` → JSON (`nebula_grpc::convert`);
//! - `plugin_list`: what `GET /system/plugins` does per request: the records of three
//!   plugins (`PluginManager::list`) serialised to bytes;
//! - `chunk_upsert`: one chunk of the bulk path, 500 users and their tags written in one
//!   transaction (`IdentityDirectory::sync_users`), new then updated, on SQLite.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use nebula_core::directory::IdentityDirectory;
use nebula_core::{Database, NebulaConfig, NebulaCore};
use nebula_plugin_api::{JsonObject, SyncUser};
use serde_json::{json, Value};

fn report(items: usize) -> JsonObject {
    let items: Vec<Value> = (0..items)
        .map(|i| {
            json!({"username": format!("user{i:05}"), "db_name": "acme.db",
                   "role_tag": "staff", "action": "created"})
        })
        .collect();
    match json!({"status": "ok", "count": items.len(), "created": items.len(), "items": items}) {
        Value::Object(object) => object,
        _ => unreachable!("an object literal"),
    }
}

fn struct_json(c: &mut Criterion) {
    let answer = report(100);
    let converted = nebula_grpc::convert::json_to_struct(&answer).expect("converts");
    c.bench_function("struct_json/to_struct_100_items", |b| {
        b.iter(|| nebula_grpc::convert::json_to_struct(&answer).expect("converts"))
    });
    c.bench_function("struct_json/to_json_100_items", |b| {
        b.iter(|| nebula_grpc::convert::struct_to_json(&converted).expect("converts"))
    });
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

fn plugin_list(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut config = NebulaConfig::default();
    config.database.url = format!("sqlite://{}", dir.path().join("nebula.db").display());
    let core = rt.block_on(async {
        NebulaCore::builder()
            .config(config)
            .without_inventory()
            .without_health_monitor()
            .plugin(nebula_tests::faults::descriptor("one", nebula_tests::faults::Fault::None).0)
            .plugin(nebula_tests::faults::descriptor("two", nebula_tests::faults::Fault::None).0)
            .plugin(nebula_tests::faults::descriptor("three", nebula_tests::faults::Fault::None).0)
            .build()
            .await
            .expect("engine builds")
    });
    assert_eq!(core.plugins().list().len(), 3);
    c.bench_function("plugin_list/records_and_bytes_3_plugins", |b| {
        b.iter(|| serde_json::to_vec(&json!({ "plugins": core.plugins().list() })))
    });
    rt.block_on(core.shutdown());
}

fn chunk_upsert(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let url = format!("sqlite://{}", dir.path().join("nebula.db").display());
    let directory = IdentityDirectory::new(
        rt.block_on(Database::open_async(&url, 4))
            .expect("database opens"),
    );
    let users = |tenant: &str| -> Vec<SyncUser> {
        (0..nebula_core::directory::SYNC_CHUNK)
            .map(|i| SyncUser {
                db_name: tenant.to_owned(),
                email: Some(format!("user{i}@example.com")),
                role_tag: "staff".into(),
                ..SyncUser::new(format!("user{i:05}"))
            })
            .collect()
    };
    let mut round = 0u64;
    c.bench_function("chunk_upsert/500_new_users", |b| {
        b.iter_batched(
            || {
                round += 1;
                users(&format!("new{round}.db"))
            },
            |batch| rt.block_on(directory.sync_users("plugin:bench", &batch)),
            BatchSize::PerIteration,
        )
    });
    let existing = users("existing.db");
    rt.block_on(directory.sync_users("plugin:bench", &existing));
    c.bench_function("chunk_upsert/500_existing_users", |b| {
        b.iter(|| rt.block_on(directory.sync_users("plugin:bench", &existing)))
    });
}

criterion_group!(benches, struct_json, plugin_list, chunk_upsert);
criterion_main!(benches);
