//! Compile-fail tests of the compile-time manifest check, through the macros a plugin author
//! uses (`nebula_plugin_api::register_plugin!` and `plugin_manifest!`).
//!
//! trybuild builds the cases in its own project, `<target>/tests/trybuild/nebula-plugin-macros/`,
//! and that directory is their `CARGO_MANIFEST_DIR`: manifest paths resolve against it. So the
//! fixture manifests (`tests/ui/manifests/`) are copied there first, and the cases name them
//! `manifests/<case>.json`, as a plugin crate names its `plugin.json`.
//!
//! Regenerate the snapshots with `TRYBUILD=overwrite cargo test -p nebula-plugin-macros`.

use std::path::Path;

#[test]
fn manifests_are_checked_when_the_plugin_compiles() {
    lay_out_manifests();
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*.rs");
}

/// Copies `tests/ui/manifests/*.json` to `manifests/` of the trybuild project, replacing what an
/// earlier run left there (so a fixture removed here is gone there too).
fn lay_out_manifests() {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("CARGO_TARGET_TMPDIR is <target>/tmp");
    let into = target.join("tests/trybuild/nebula-plugin-macros/manifests");
    if into.exists() {
        std::fs::remove_dir_all(&into).expect("clear the manifests directory");
    }
    std::fs::create_dir_all(&into).expect("create the manifests directory");
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui/manifests");
    for entry in std::fs::read_dir(&from).expect("read tests/ui/manifests") {
        let path = entry.expect("a directory entry").path();
        if let Some(name) = path.file_name() {
            std::fs::copy(&path, into.join(name)).expect("copy a manifest");
        }
    }
}
