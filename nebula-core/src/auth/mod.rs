//! Authentication primitives: the installer token, staff passwords, signed sessions, the
//! rate limits on failed logins and token attempts, and web origins (for the browser-safety
//! rule of cookie sessions). The HTTP server wires them to headers and cookies; nothing here
//! knows HTTP.

mod limiter;
mod origin;
mod password;
mod secrets;
mod session;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use nebula_plugin_api::token::tokens_match;

pub use limiter::{Admitted, LoginLimiter, RateLimits};
pub use origin::{OriginError, WebOrigin};
pub use password::{hash_password, verify_password, PasswordError, MIN_PASSWORD_LEN};
pub use secrets::{
    load_or_generate_secret, Secret, SecretError, SecretOrigin, CORE_SECRET_ENVS,
    INSTALLER_TOKEN_ENV, MIN_SECRET_LEN, SESSION_SECRET_ENV,
};
pub use session::{IssuedSession, SessionCodec};

use crate::accounts::{Account, AccountStore};
use crate::storage::StorageError;

/// Password checks allowed at once (each holds ~19 MiB of argon2 memory).
const MAX_CONCURRENT_PASSWORD_CHECKS: usize = 4;

/// Why authentication failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Wrong username or password — deliberately the same whether the user exists or not.
    #[error("invalid username or password")]
    InvalidCredentials,
    /// Too many failed logins (for this username from this address, or from this address).
    #[error("too many failed logins; retry in {} s", retry_after.as_secs().max(1))]
    RateLimited {
        /// When to try again.
        retry_after: Duration,
    },
    /// The installer token presented is not the right one.
    #[error("invalid installer token")]
    InvalidToken,
    /// Too many wrong installer tokens from this address.
    #[error("too many failed token attempts from this address; retry in {} s", retry_after.as_secs().max(1))]
    TooManyTokenAttempts {
        /// When to try again.
        retry_after: Duration,
    },
    /// The session cookie is missing, forged, expired, or its user may no longer log in.
    #[error("invalid session")]
    InvalidSession,
    /// Accounts could not be read.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Hashing failed (should not happen with valid parameters).
    #[error("password hashing failed: {0}")]
    Hashing(String),
}

/// A staff user authenticated by a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffUser {
    /// Row id.
    pub id: i64,
    /// Login name.
    pub username: String,
}

/// Who made a request to the admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The installer token.
    InstallerToken,
    /// A staff session.
    Staff(StaffUser),
}

/// Checks tokens, logs staff in and verifies their sessions. Cheap to clone.
#[derive(Clone)]
pub struct Authenticator {
    inner: Arc<Inner>,
}

struct Inner {
    token: Option<Secret>,
    sessions: SessionCodec,
    accounts: AccountStore,
    limiter: LoginLimiter,
    /// Bounds concurrent password checks.
    hashing: tokio::sync::Semaphore,
    /// Verified against when the user does not exist, so both paths cost one argon2 check.
    decoy_hash: String,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("token_configured", &self.inner.token.is_some())
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// An authenticator. `token` empty or absent means no token ever matches.
    pub fn new(
        token: Option<Secret>,
        session_key: Secret,
        session_ttl: Duration,
        accounts: AccountStore,
        limits: RateLimits,
    ) -> Result<Self, AuthError> {
        let decoy_hash = hash_password("decoy password that is never used")
            .map_err(|e| AuthError::Hashing(e.to_string()))?;
        Ok(Authenticator {
            inner: Arc::new(Inner {
                token: token.filter(|t| !t.expose().is_empty()),
                sessions: SessionCodec::new(session_key, session_ttl),
                accounts,
                limiter: LoginLimiter::new(limits),
                hashing: tokio::sync::Semaphore::new(MAX_CONCURRENT_PASSWORD_CHECKS),
                decoy_hash,
            }),
        })
    }

    /// Whether `presented` is the installer token (constant-time; empty never matches; the
    /// one comparison, [`tokens_match`], shared with the gRPC serve helper).
    pub fn token_matches(&self, presented: &str) -> bool {
        self.inner
            .token
            .as_ref()
            .is_some_and(|token| tokens_match(token.expose(), presented))
    }

    /// Checks an installer token presented by `client`, under the per-address limit on failed
    /// attempts ([`LoginLimiter::token_attempt`]): `InvalidToken` when it is wrong (counted),
    /// `TooManyTokenAttempts` when the address has used its allowance, even with the right
    /// token. Every call is an attempt: callers skip a missing or empty header.
    pub fn check_token(&self, presented: &str, client: Option<IpAddr>) -> Result<(), AuthError> {
        let matched = self
            .inner
            .limiter
            .token_attempt(client, || self.token_matches(presented))?;
        if matched {
            Ok(())
        } else {
            Err(AuthError::InvalidToken)
        }
    }

    /// Checks a staff login and issues a session. Failures lock out the (username, client
    /// address) pair and the address, and slow down the username from every address (the
    /// delay is waited here, with a tokio timer, before the password is checked); see
    /// [`LoginLimiter`]. Failures answer the same whether the user exists or not.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        client: Option<IpAddr>,
    ) -> Result<IssuedSession, AuthError> {
        let inner = &self.inner;
        let Admitted { delay } = inner.limiter.attempt(username, client)?;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        // A name no account can have (control characters, too long) is not looked up: it
        // fails like an unknown one, the same on every backend.
        let account = match nebula_plugin_api::validate_username(username) {
            Ok(valid) if valid == username => inner.accounts.by_username(username).await?,
            _ => None,
        };
        let hash = account
            .as_ref()
            .map_or(inner.decoy_hash.clone(), |a| a.password_hash.clone());
        // argon2 takes ~19 MiB per check: bound how many run at once.
        let _permit = inner
            .hashing
            .acquire()
            .await
            .map_err(|e| AuthError::Hashing(e.to_string()))?;
        let password_ok = verify_password_blocking(password.to_owned(), hash).await?;
        match account {
            Some(a) if password_ok && a.is_active && a.is_staff => {
                inner.limiter.succeeded(username, client);
                Ok(inner.sessions.issue(&a))
            }
            _ => Err(AuthError::InvalidCredentials),
        }
    }

    /// Verifies a session cookie value: signature, expiry, and that its user is still an
    /// active staff user whose password has not changed since the session was issued.
    pub async fn verify_session(&self, cookie: &str) -> Result<StaffUser, AuthError> {
        let claims = self
            .inner
            .sessions
            .decode(cookie)
            .ok_or(AuthError::InvalidSession)?;
        let account: Account = self
            .inner
            .accounts
            .by_id(claims.user_id)
            .await?
            .ok_or(AuthError::InvalidSession)?;
        let still_allowed = account.is_active
            && account.is_staff
            && self.inner.sessions.bound_to(&claims, &account);
        if !still_allowed {
            return Err(AuthError::InvalidSession);
        }
        Ok(StaffUser {
            id: account.id,
            username: account.username,
        })
    }

    /// The session lifetime.
    pub fn session_ttl(&self) -> Duration {
        self.inner.sessions.ttl()
    }
}

async fn verify_password_blocking(password: String, hash: String) -> Result<bool, AuthError> {
    // argon2 is memory-hard on purpose: keep it off the async workers.
    tokio::task::spawn_blocking(move || verify_password(&password, &hash))
        .await
        .map_err(|e| AuthError::Hashing(e.to_string()))
}
