//! Secrets from the environment, or generated once and kept in a 0600 file.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;

/// A secret string whose `Debug` never shows it (and that has no `PartialEq`: compare
/// secrets in constant time, as the authenticator does).
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Where a secret came from (logged instead of the secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretOrigin {
    /// The named environment variable.
    Environment(String),
    /// An existing file.
    File(PathBuf),
    /// Generated now and written to this file.
    Generated(PathBuf),
}

/// Returns `env_value` when it is non-empty; otherwise the secret stored in `file`, creating
/// the file (mode 0600, 32 random bytes, URL-safe base64) when it does not exist yet.
pub fn load_or_generate_secret(
    env_name: &str,
    env_value: Option<String>,
    file: &Path,
) -> std::io::Result<(Secret, SecretOrigin)> {
    if let Some(value) = env_value.filter(|v| !v.trim().is_empty()) {
        return Ok((
            Secret(value.trim().to_owned()),
            SecretOrigin::Environment(env_name.to_owned()),
        ));
    }
    match std::fs::read_to_string(file) {
        Ok(text) if !text.trim().is_empty() => {
            warn_if_readable_by_others(file);
            return Ok((
                Secret(text.trim().to_owned()),
                SecretOrigin::File(file.to_path_buf()),
            ));
        }
        Ok(_) => {
            // An empty file is useless; replace it below.
            std::fs::remove_file(file)?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let value = URL_SAFE_NO_PAD.encode(bytes);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(file) {
        Ok(mut f) => {
            f.write_all(value.as_bytes())?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            Ok((Secret(value), SecretOrigin::Generated(file.to_path_buf())))
        }
        // Another instance created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(file)?;
            Ok((
                Secret(text.trim().to_owned()),
                SecretOrigin::File(file.to_path_buf()),
            ))
        }
        Err(e) => Err(e),
    }
}

/// A secret file others can read is still used (refusing would lock the admin out), but
/// loudly.
fn warn_if_readable_by_others(file: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(file) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    file = %file.display(),
                    mode = format!("{mode:o}"),
                    "secret file is readable by other users; run chmod 600 on it"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_wins_then_file_is_generated_once_with_0600() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sub/token");
        let (s, o) = load_or_generate_secret("T", Some("abc".into()), &file).unwrap();
        assert_eq!(
            (s.expose(), o),
            ("abc", SecretOrigin::Environment("T".into()))
        );
        assert!(!file.exists());

        let (s1, o1) = load_or_generate_secret("T", Some(" ".into()), &file).unwrap();
        assert_eq!(o1, SecretOrigin::Generated(file.clone()));
        assert_eq!(s1.expose().len(), 43);
        let (s2, o2) = load_or_generate_secret("T", None, &file).unwrap();
        assert_eq!(s1.expose(), s2.expose());
        assert_eq!(o2, SecretOrigin::File(file.clone()));
        assert_eq!(format!("{s1:?}"), "Secret(<redacted>)");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
