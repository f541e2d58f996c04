//! Compile-time checks for Nebula Core plugins.
//!
//! Use it through `nebula-plugin-api`, which re-exports [`plugin_manifest!`] and builds
//! `register_plugin!(MyPlugin, manifest = "plugin.json")` on it. A manifest that would be refused
//! at run time (malformed JSON, a missing or unknown field, a bad name, a wrong `api_version`, an
//! empty version) or that names a scope v1 does not have is a compile error naming the file and
//! the problem.
//!
//! The rules are not restated here: `manifest_rules.rs` of `nebula-plugin-api` is compiled into
//! this crate as it is (this crate cannot depend on the API crate, which re-exports it).

#![warn(missing_docs)]

use std::path::{Path, PathBuf};

use proc_macro::TokenStream;
use quote::quote_spanned;
use syn::{parse_macro_input, LitStr};

#[path = "../../nebula-plugin-api/src/manifest_rules.rs"]
mod manifest_rules;
#[path = "../../nebula-plugin-api/src/text.rs"]
mod text;

use manifest_rules::{PluginManifest, V1_SCOPE_NAMES};
use text::escape_control;

/// Reads and validates a plugin manifest when the crate compiles, and embeds it.
///
/// `plugin_manifest!("plugin.json")` is a `&'static str` expression: the file's text, embedded
/// with `include_str!` (so cargo rebuilds the crate when the file changes). The path is relative
/// to the crate's directory (`CARGO_MANIFEST_DIR`, where its `Cargo.toml` is), not to the source
/// file. The manifest must pass the run-time rules of `PluginManifest::from_json`, and every
/// scope it declares must be a v1 scope (at run time an unknown scope would only be dropped with
/// a warning); otherwise this is a compile error such as
///
/// ```text
/// error: plugin.json: unknown scope 'user.write' (allowed: users.read, users.write, roles.read, roles.write, identity_tags.read, identity_tags.write, events.emit); did you mean 'users.write'?
/// ```
#[proc_macro]
pub fn plugin_manifest(input: TokenStream) -> TokenStream {
    let literal = parse_macro_input!(input as LitStr);
    let span = literal.span();
    let written = literal.value();
    let Some(base) = std::env::var_os("CARGO_MANIFEST_DIR") else {
        return syn::Error::new(
            span,
            format!(
                "{}: CARGO_MANIFEST_DIR is not set, so the manifest cannot be found (build with cargo)",
                escape_control(&written)
            ),
        )
        .to_compile_error()
        .into();
    };
    match check_manifest(&written, Path::new(&base)) {
        Ok(resolved) => {
            let resolved = resolved.to_string_lossy().into_owned();
            quote_spanned!(span=> ::core::include_str!(#resolved)).into()
        }
        Err(problems) => problems
            .into_iter()
            .map(|problem| syn::Error::new(span, problem))
            .reduce(|mut all, next| {
                all.combine(next);
                all
            })
            .map(|all| all.to_compile_error())
            .unwrap_or_default()
            .into(),
    }
}

/// Reads `written` (relative to `base`) and checks it. `Ok` is the resolved path; `Err` every
/// problem found, each a message starting with `written`.
fn check_manifest(written: &str, base: &Path) -> Result<PathBuf, Vec<String>> {
    let file = escape_control(written);
    let resolved = base.join(written);
    let text = std::fs::read_to_string(&resolved).map_err(|e| {
        vec![format!(
            "{file}: cannot read the manifest: {e} (the path is relative to the crate's directory, CARGO_MANIFEST_DIR)"
        )]
    })?;
    let manifest: PluginManifest =
        serde_json::from_str(&text).map_err(|e| vec![json_error(&file, &e)])?;
    let mut problems: Vec<String> = manifest_rules::problems(&manifest)
        .iter()
        .map(|problem| format!("{file}: {problem}"))
        .collect();
    for scope in &manifest.scopes {
        if !V1_SCOPE_NAMES.contains(&scope.as_str()) {
            let hint = closest_scope(scope)
                .map(|s| format!("; did you mean '{s}'?"))
                .unwrap_or_default();
            problems.push(format!(
                "{file}: unknown scope '{}' (allowed: {}){hint}",
                escape_control(scope),
                V1_SCOPE_NAMES.join(", ")
            ));
        }
    }
    if problems.is_empty() {
        Ok(resolved)
    } else {
        Err(problems)
    }
}

/// The message for JSON that does not parse (`malformed JSON at line …`) or does not fit the
/// manifest's fields (missing, unknown or mistyped; with the position serde_json reports).
fn json_error(file: &str, e: &serde_json::Error) -> String {
    let text = e.to_string();
    let position = format!(" at line {} column {}", e.line(), e.column());
    let message = escape_control(text.strip_suffix(&position).unwrap_or(&text)).into_owned();
    match e.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => format!(
            "{file}: malformed JSON at line {}, column {}: {message}",
            e.line(),
            e.column()
        ),
        serde_json::error::Category::Data | serde_json::error::Category::Io => format!(
            "{file}: invalid manifest: {message} (line {}, column {})",
            e.line(),
            e.column()
        ),
    }
}

/// The v1 scope nearest to `scope` when it is probably a typo of it (edit distance at most 2).
fn closest_scope(scope: &str) -> Option<&'static str> {
    V1_SCOPE_NAMES
        .into_iter()
        .map(|name| (edit_distance(scope, name), name))
        .filter(|(distance, _)| *distance <= 2)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, name)| name)
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory holding `file`; tests run in parallel, so each call gets its own.
    fn dir_with(file: &str, text: &str) -> PathBuf {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("nebula-plugin-macros-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(file), text).unwrap();
        dir
    }

    fn problems_of(text: &str) -> Vec<String> {
        let dir = dir_with("m.json", text);
        let result = check_manifest("m.json", &dir);
        std::fs::remove_dir_all(&dir).unwrap();
        result.err().unwrap_or_default()
    }

    const GOOD: &str =
        r#"{"name":"hr_sync","version":"0.1.0","api_version":"v1","scopes":["users.write"]}"#;

    #[test]
    fn a_good_manifest_resolves_relative_to_the_base() {
        let dir = dir_with("plugin.json", GOOD);
        assert_eq!(
            check_manifest("plugin.json", &dir),
            Ok(dir.join("plugin.json"))
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn every_problem_is_reported_with_the_file_name() {
        let problems = problems_of(
            r#"{"name":"x","version":"","api_version":"v2","scopes":["user.write","root"]}"#,
        );
        assert_eq!(problems.len(), 5, "{problems:#?}");
        assert!(
            problems.iter().all(|p| p.starts_with("m.json: ")),
            "{problems:#?}"
        );
        assert!(problems[0].contains("invalid plugin name 'x'"));
        assert!(problems[1].contains("declares api_version 'v2'"));
        assert!(problems[2].contains("empty version"));
        assert!(
            problems[3].ends_with("did you mean 'users.write'?"),
            "{}",
            problems[3]
        );
        assert!(problems[4].starts_with("m.json: unknown scope 'root' (allowed: users.read, "));
        assert!(problems[4].ends_with("events.emit)"), "{}", problems[4]);
    }

    #[test]
    fn json_errors_carry_line_and_column() {
        let problems = problems_of("{\n  \"name\": \"x1\",\n  \"version\" \"1\"\n}");
        assert_eq!(
            problems,
            vec!["m.json: malformed JSON at line 3, column 13: expected `:`"]
        );
        let problems = problems_of(r#"{"name":"x1","api_version":"v1"}"#);
        assert_eq!(
            problems,
            vec!["m.json: invalid manifest: missing field `version` (line 1, column 32)"]
        );
    }

    #[test]
    fn a_missing_file_is_named() {
        let problems = check_manifest("nope.json", Path::new("/nonexistent-nebula")).unwrap_err();
        assert!(
            problems[0].starts_with("nope.json: cannot read the manifest: "),
            "{problems:?}"
        );
    }

    #[test]
    fn only_near_misses_get_a_suggestion() {
        assert_eq!(closest_scope("user.write"), Some("users.write"));
        assert_eq!(
            closest_scope("identity_tag.read"),
            Some("identity_tags.read")
        );
        assert_eq!(closest_scope("admin"), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
