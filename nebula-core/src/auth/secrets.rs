//! Secrets from the environment, or generated once and kept in a 0600 file.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

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

/// The environment variable holding the installer token.
pub const INSTALLER_TOKEN_ENV: &str = "NEBULA_INSTALLER_TOKEN";
/// The environment variable holding the key that signs staff sessions.
pub const SESSION_SECRET_ENV: &str = "NEBULA_SESSION_SECRET";
/// The core's own secrets: nothing else (an external plugin's `token_env`) may name them.
pub const CORE_SECRET_ENVS: [&str; 2] = [INSTALLER_TOKEN_ENV, SESSION_SECRET_ENV];
/// Shortest secret accepted, in characters. A generated one has 43 (32 random bytes).
pub const MIN_SECRET_LEN: usize = 32;

/// A secret that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Too short to resist guessing. A configuration error: the operator must fix it.
    #[error(
        "{origin} is {len} characters long: secrets must be at least {MIN_SECRET_LEN} characters \
         (unset it to have one generated, or use for example `openssl rand -base64 32`)"
    )]
    TooShort {
        /// `$NAME` or the file it was read from.
        origin: String,
        /// Its length in characters.
        len: usize,
    },
    /// The secret file could not be read or created.
    #[error("{name}: cannot read or create {}: {source}", path.display())]
    Io {
        /// The environment variable it stands in for.
        name: String,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Returns `env_value` when it is non-empty; otherwise the secret stored in `file`, creating
/// the file (mode 0600, 32 random bytes, URL-safe base64) when it does not exist yet. A secret
/// shorter than [`MIN_SECRET_LEN`], from either place, is refused.
pub fn load_or_generate_secret(
    env_name: &str,
    env_value: Option<String>,
    file: &Path,
) -> Result<(Secret, SecretOrigin), SecretError> {
    let io = |source| SecretError::Io {
        name: env_name.to_owned(),
        path: file.to_path_buf(),
        source,
    };
    if let Some(value) = env_value.filter(|v| !v.trim().is_empty()) {
        let secret = checked(value.trim(), || format!("${env_name}"))?;
        return Ok((secret, SecretOrigin::Environment(env_name.to_owned())));
    }
    let (secret, origin) = read_or_generate(file).map_err(io)?;
    if let SecretOrigin::File(path) = &origin {
        // A secret file others can read is still used (refusing would lock the admin out),
        // but made private first.
        crate::storage::make_private(path).map_err(io)?;
    }
    let secret = checked(secret.expose(), || {
        format!("the {env_name} stored in {}", file.display())
    })?;
    Ok((secret, origin))
}

fn checked(value: &str, origin: impl FnOnce() -> String) -> Result<Secret, SecretError> {
    let len = value.chars().count();
    if len < MIN_SECRET_LEN {
        return Err(SecretError::TooShort {
            origin: origin(),
            len,
        });
    }
    Ok(Secret(value.to_owned()))
}

/// The secret in `file`, or a new one written there (0600) when it is missing or empty.
fn read_or_generate(file: &Path) -> std::io::Result<(Secret, SecretOrigin)> {
    match std::fs::read_to_string(file) {
        Ok(text) if !text.trim().is_empty() => {
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
        if !dir.exists() {
            crate::storage::create_private_dir(dir)?;
        }
    }
    let value = nebula_plugin_api::token::new_token().map_err(std::io::Error::other)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_wins_then_file_is_generated_once_with_0600() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sub/token");
        let long = "a".repeat(MIN_SECRET_LEN);
        let (s, o) = load_or_generate_secret("T", Some(format!(" {long}\n")), &file).unwrap();
        assert_eq!(
            (s.expose(), o),
            (long.as_str(), SecretOrigin::Environment("T".into()))
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

    #[test]
    fn short_secrets_are_refused_from_the_environment_and_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        let short = "x".repeat(MIN_SECRET_LEN - 1);
        let err =
            load_or_generate_secret("NEBULA_INSTALLER_TOKEN", Some("x".into()), &file).unwrap_err();
        assert!(matches!(err, SecretError::TooShort { len: 1, .. }), "{err}");
        assert!(
            err.to_string()
                .starts_with("$NEBULA_INSTALLER_TOKEN is 1 characters long: secrets must be at least 32 characters"),
            "{err}"
        );
        let err = load_or_generate_secret("T", Some(short.clone()), &file).unwrap_err();
        assert!(
            matches!(err, SecretError::TooShort { len: 31, .. }),
            "{err}"
        );
        assert!(
            !file.exists(),
            "nothing is written when the secret is refused"
        );
        // A short secret written into the file by hand is refused too, naming the file.
        std::fs::write(&file, format!("{short}\n")).unwrap();
        let err = load_or_generate_secret("T", None, &file).unwrap_err();
        assert!(
            err.to_string().contains(&file.display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn a_secret_file_readable_by_others_is_made_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        let (generated, _) = load_or_generate_secret("T", None, &file).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let (read, origin) = load_or_generate_secret("T", None, &file).unwrap();
        assert_eq!(read.expose(), generated.expose());
        assert_eq!(origin, SecretOrigin::File(file.clone()));
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
