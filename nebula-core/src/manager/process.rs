//! `plugins.dir`: process plugins (SPEC §9), one directory each, read again on every rescan.
//!
//! Each `<plugins.dir>/<name>/plugin.json` holds the seed's manifest plus
//! `"runtime": {"command": [...], "env": {...}}`. The engine reads and checks the directory;
//! spawning and supervising the process is a [`ProcessConnector`]'s (the server wires in
//! `nebula-process`), like gRPC is an [`ExternalConnector`](super::ExternalConnector)'s.
//! A directory that cannot be loaded is listed with its reason and affects no other plugin.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nebula_plugin_api::{validate_plugin_name, PluginManifest};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::discovery::{DiscoveryError, PluginConstructor, PluginDescriptor, PluginProvider};
use super::PluginSource;
use crate::config::NebulaConfig;

/// The manifest file of a plugin directory.
pub const MANIFEST_FILE: &str = "plugin.json";

/// Largest `plugin.json` read, bytes: a manifest is a few hundred.
const MAX_MANIFEST_BYTES: u64 = 64 * 1024;

/// One process plugin as found in `plugins.dir`.
#[derive(Clone, PartialEq, Eq)]
pub struct ProcessPluginSpec {
    /// The plugin's name (its directory's name, also the manifest's).
    pub name: String,
    /// The plugin's directory: the process's working directory.
    pub dir: PathBuf,
    /// The command: the executable resolved (absolute), then its arguments as written.
    pub command: Vec<String>,
    /// `runtime.env`: added to the process's clean environment.
    pub env: BTreeMap<String, String>,
    /// Changes when `plugin.json` or the executable changes: a rescan restarts the plugin
    /// only then.
    pub fingerprint: String,
}

impl fmt::Debug for ProcessPluginSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `runtime.env` may hold secrets: its keys only.
        f.debug_struct("ProcessPluginSpec")
            .field("name", &self.name)
            .field("dir", &self.dir)
            .field("command", &self.command)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Turns a process plugin's spec into a constructor of instances (each one a process).
pub trait ProcessConnector: Send + Sync {
    /// A constructor for `spec`; `config` holds `[plugins.process]`, the timeouts and the
    /// data directory's location.
    fn constructor(&self, spec: &ProcessPluginSpec, config: &NebulaConfig) -> PluginConstructor;
}

/// The `runtime` section of `plugin.json`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuntimeSection {
    command: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
}

/// Lists the process plugins of `plugins.dir`, reading the directory on every discovery.
pub struct ProcessPluginsProvider {
    config: NebulaConfig,
    connector: Option<Arc<dyn ProcessConnector>>,
}

impl ProcessPluginsProvider {
    /// A provider for `config.plugins.dir` (none: it offers nothing).
    pub fn new(config: NebulaConfig, connector: Option<Arc<dyn ProcessConnector>>) -> Self {
        ProcessPluginsProvider { config, connector }
    }
}

impl PluginProvider for ProcessPluginsProvider {
    fn discover(&self) -> Vec<Result<PluginDescriptor, DiscoveryError>> {
        let Some(root) = &self.config.plugins.dir else {
            return Vec::new();
        };
        let entries = match std::fs::read_dir(root) {
            Ok(entries) => entries,
            Err(e) => {
                return vec![Err(DiscoveryError {
                    name: None,
                    origin: root.display().to_string(),
                    message: format!("plugins.dir {}: {e}", root.display()),
                })]
            }
        };
        let mut dirs: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        dirs.sort();
        dirs.iter()
            .map(|dir| {
                let name = dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                // A name that breaks the rule is listed under one made from the directory.
                let listed_as = validate_plugin_name(&name).is_ok().then(|| name.clone());
                let refused = |message: String| DiscoveryError {
                    name: listed_as.clone(),
                    origin: dir.display().to_string(),
                    message,
                };
                let (manifest, spec) = read_plugin_dir(dir, &name).map_err(refused)?;
                let Some(connector) = &self.connector else {
                    return Err(refused(
                        "process plugins need a process runtime; this build has none".into(),
                    ));
                };
                Ok(PluginDescriptor {
                    manifest,
                    source: PluginSource::Process,
                    origin: dir.display().to_string(),
                    constructor: connector.constructor(&spec, &self.config),
                    fingerprint: Some(spec.fingerprint),
                })
            })
            .collect()
    }
}

/// Reads and checks one plugin directory: its name, manifest, runtime and executable.
pub fn read_plugin_dir(
    dir: &Path,
    name: &str,
) -> Result<(PluginManifest, ProcessPluginSpec), String> {
    validate_plugin_name(name).map_err(|e| format!("directory name: {e}"))?;
    let file = dir.join(MANIFEST_FILE);
    let text = read_manifest(&file)?;
    let mut value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{MANIFEST_FILE}: invalid JSON: {e}"))?;
    let runtime = value
        .as_object_mut()
        .and_then(|o| o.remove("runtime"))
        .ok_or_else(|| format!("{MANIFEST_FILE}: no \"runtime\" section (SPEC §9)"))?;
    let runtime: RuntimeSection =
        serde_json::from_value(runtime).map_err(|e| format!("{MANIFEST_FILE}: runtime: {e}"))?;
    let manifest = PluginManifest::from_json(&value.to_string())
        .map_err(|e| format!("{MANIFEST_FILE}: {e}"))?;
    if manifest.name != name {
        return Err(format!(
            "{MANIFEST_FILE}: name '{}' differs from the directory's name '{name}'",
            manifest.name
        ));
    }
    let Some((program, args)) = runtime.command.split_first() else {
        return Err(format!("{MANIFEST_FILE}: runtime.command is empty"));
    };
    // The child's PATH (the manifest's, when it sets one) decides, as it will for the child.
    let path = runtime
        .env
        .get("PATH")
        .map(std::ffi::OsString::from)
        .or_else(|| std::env::var_os("PATH"))
        .unwrap_or_default();
    let executable = resolve_executable(dir, program, &path)?;
    // The executable and the files its arguments name in the directory (`plugin.py` of
    // `["python3", "plugin.py"]`): editing any of them is a change a rescan restarts for.
    let mut files = vec![executable.clone()];
    files.extend(
        args.iter()
            .map(|a| dir.join(a))
            .filter(|p| p.starts_with(dir) && p.is_file()),
    );
    let fingerprint = fingerprint(&text, &files);
    let mut command = vec![executable.display().to_string()];
    command.extend(args.iter().cloned());
    Ok((
        manifest,
        ProcessPluginSpec {
            name: name.to_owned(),
            dir: dir.to_path_buf(),
            command,
            env: runtime.env,
            fingerprint,
        },
    ))
}

fn read_manifest(file: &Path) -> Result<String, String> {
    use std::io::Read;
    let opened = std::fs::File::open(file).map_err(|e| format!("{MANIFEST_FILE}: {e}"))?;
    let mut text = String::new();
    opened
        .take(MAX_MANIFEST_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("{MANIFEST_FILE}: {e}"))?;
    if text.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(format!(
            "{MANIFEST_FILE}: larger than {MAX_MANIFEST_BYTES} bytes"
        ));
    }
    Ok(text)
}

/// `command[0]`: relative to the plugin's directory (SPEC §9) or absolute; a bare name not
/// in the directory (`python3`) is looked up in `path` (absolute entries only), as a shell
/// would.
fn resolve_executable(
    dir: &Path,
    program: &str,
    path: &std::ffi::OsStr,
) -> Result<PathBuf, String> {
    let candidates: Vec<PathBuf> = if Path::new(program).is_absolute() {
        vec![PathBuf::from(program)]
    } else if program.contains('/') {
        vec![dir.join(program)]
    } else {
        std::iter::once(dir.join(program))
            .chain(
                std::env::split_paths(path)
                    .filter(|p| p.is_absolute())
                    .map(|p| p.join(program)),
            )
            .collect()
    };
    candidates
        .into_iter()
        .find(|p| is_executable(p))
        .map(|p| std::path::absolute(&p).unwrap_or(p))
        .ok_or_else(|| {
            format!("runtime.command: '{program}' is not an executable file in the plugin's directory or PATH")
        })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The manifest's bytes and the identity (size, modification time, inode) of each file:
/// editing any of them changes it.
fn fingerprint(manifest: &str, files: &[PathBuf]) -> String {
    use std::os::unix::fs::MetadataExt;
    let mut hash = Sha256::new();
    hash.update(manifest.as_bytes());
    for file in files {
        hash.update(file.as_os_str().as_encoded_bytes());
        if let Ok(meta) = std::fs::metadata(file) {
            hash.update(meta.len().to_le_bytes());
            hash.update(meta.mtime().to_le_bytes());
            hash.update(meta.mtime_nsec().to_le_bytes());
            hash.update(meta.ino().to_le_bytes());
        }
    }
    hash.finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin_dir(root: &Path, name: &str, manifest: &str) -> PathBuf {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(MANIFEST_FILE), manifest).unwrap();
        dir
    }

    fn executable(dir: &Path, name: &str) {
        use std::os::unix::fs::PermissionsExt;
        let file = dir.join(name);
        std::fs::write(&file, "#!/bin/sh\nexit 0\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    const GOOD: &str = r#"{"name": "hello", "version": "1.0.0", "description": "d",
        "api_version": "v1", "scopes": ["users.read"],
        "runtime": {"command": ["./run.sh", "--flag"], "env": {"KEY": "value"}}}"#;

    #[test]
    fn a_good_directory_gives_a_spec_with_the_resolved_command() {
        let root = tempfile::tempdir().unwrap();
        let dir = plugin_dir(root.path(), "hello", GOOD);
        executable(&dir, "run.sh");
        let (manifest, spec) = read_plugin_dir(&dir, "hello").unwrap();
        assert_eq!(manifest.name, "hello");
        assert_eq!(manifest.scopes, ["users.read"]);
        assert_eq!(spec.command[0], dir.join("run.sh").display().to_string());
        assert_eq!(spec.command[1], "--flag");
        assert_eq!(spec.env["KEY"], "value");
        assert!(
            !format!("{spec:?}").contains("value"),
            "env values are not shown"
        );
        // The fingerprint follows the manifest and the executable.
        let before = spec.fingerprint.clone();
        assert_eq!(
            read_plugin_dir(&dir, "hello").unwrap().1.fingerprint,
            before
        );
        std::fs::write(dir.join(MANIFEST_FILE), GOOD.replace("1.0.0", "1.0.1")).unwrap();
        let after = read_plugin_dir(&dir, "hello").unwrap().1.fingerprint;
        assert_ne!(after, before);
        std::fs::write(dir.join("run.sh"), "#!/bin/sh\nexit 1\n").unwrap();
        assert_ne!(read_plugin_dir(&dir, "hello").unwrap().1.fingerprint, after);
    }

    #[test]
    fn what_cannot_be_loaded_says_why() {
        let root = tempfile::tempdir().unwrap();
        let cases = [
            ("hello", "{", "invalid JSON"),
            (
                "hello",
                r#"{"name": "hello", "version": "1", "description": "d", "api_version": "v1"}"#,
                "no \"runtime\" section",
            ),
            (
                "hello",
                &GOOD.replace("./run.sh", "./missing.sh"),
                "'./missing.sh' is not an executable file",
            ),
            (
                "hello",
                &GOOD.replace("\"./run.sh\", \"--flag\"", ""),
                "runtime.command is empty",
            ),
            ("other", GOOD, "differs from the directory's name 'other'"),
            (
                "hello",
                &GOOD.replace("\"env\"", "\"envv\""),
                "runtime: unknown field `envv`",
            ),
            ("hello", &GOOD.replace("\"v1\"", "\"v9\""), "api_version"),
            ("bad name!", GOOD, "directory name"),
        ];
        for (name, manifest, expected) in cases {
            let dir = plugin_dir(root.path(), name, manifest);
            executable(&dir, "run.sh");
            let error = read_plugin_dir(&dir, name).unwrap_err();
            assert!(error.contains(expected), "{manifest}: {error}");
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }

    #[test]
    fn a_script_named_by_an_argument_is_part_of_the_fingerprint() {
        let root = tempfile::tempdir().unwrap();
        let dir = plugin_dir(
            root.path(),
            "hello",
            &GOOD.replace("\"./run.sh\", \"--flag\"", "\"sh\", \"plugin.sh\""),
        );
        std::fs::write(dir.join("plugin.sh"), "echo one\n").unwrap();
        let before = read_plugin_dir(&dir, "hello").unwrap().1.fingerprint;
        std::fs::write(dir.join("plugin.sh"), "echo two, longer\n").unwrap();
        assert_ne!(
            read_plugin_dir(&dir, "hello").unwrap().1.fingerprint,
            before
        );
    }

    #[test]
    fn a_path_set_in_the_manifest_is_where_a_bare_command_is_looked_up() {
        let root = tempfile::tempdir().unwrap();
        let bin = root.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        executable(&bin, "tool");
        let manifest = GOOD.replace("./run.sh", "tool").replace(
            "\"KEY\": \"value\"",
            &format!("\"PATH\": \"{}\"", bin.display()),
        );
        let dir = plugin_dir(root.path(), "hello", &manifest);
        let (_, spec) = read_plugin_dir(&dir, "hello").unwrap();
        assert_eq!(spec.command[0], bin.join("tool").display().to_string());
    }

    #[test]
    fn a_bare_command_is_found_in_path() {
        let root = tempfile::tempdir().unwrap();
        let dir = plugin_dir(root.path(), "hello", &GOOD.replace("./run.sh", "sh"));
        let (_, spec) = read_plugin_dir(&dir, "hello").unwrap();
        assert!(spec.command[0].ends_with("/sh"), "{:?}", spec.command);
    }
}
