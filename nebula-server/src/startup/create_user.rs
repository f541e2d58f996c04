//! `create-user USERNAME [--staff]`: creates a system user or sets its password.

use std::io::BufRead;

use nebula_core::accounts::AccountStore;
use nebula_core::auth::{hash_password, MIN_PASSWORD_LEN};
use nebula_core::{Database, NebulaConfig};

use super::StartupError;

/// Reads and checks `create-user`'s input before any async work: the username (the shared
/// username rule, and no spaces in a login name) and the password, the first line of standard
/// input (blocking I/O, so never on a runtime worker).
pub(super) fn read_new_account(username: &str) -> Result<(String, String), StartupError> {
    let username = nebula_plugin_api::validate_username(username)
        .ok()
        .filter(|u| !u.chars().any(char::is_whitespace))
        .ok_or(StartupError::InvalidUsername)?;
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(StartupError::PasswordUnreadable)?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(StartupError::PasswordTooShort);
    }
    Ok((username, password))
}

/// Creates the account or sets its password.
pub(super) async fn create_user(
    config: &NebulaConfig,
    username: String,
    password: String,
    staff: bool,
) -> Result<(), StartupError> {
    let username = username.as_str();
    let db = Database::open_async(&config.database.url, 1)
        .await
        .map_err(StartupError::Database)?;
    let hash = tokio::task::spawn_blocking(move || hash_password(&password)).await??;
    let outcome = AccountStore::new(db)
        .upsert(username, &hash, staff)
        .await
        .map_err(StartupError::Database)?;
    println!(
        "{} {}user '{username}' in system.db",
        outcome.as_str(),
        if staff { "staff " } else { "" }
    );
    Ok(())
}
