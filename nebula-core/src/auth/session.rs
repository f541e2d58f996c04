//! Signed, expiring session cookies bound to a user and its current password.
//!
//! Value: `v1.<user id>.<expires unix>.<nonce>.<mac>`, where `mac` is HMAC-SHA256 over the
//! first four parts plus the user's current password hash. Nothing is stored server-side; a
//! session dies when it expires, when its user is deactivated or loses staff, or when the
//! password changes.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use super::Secret;
use crate::accounts::Account;
use crate::storage::unix_now;

type HmacSha256 = Hmac<Sha256>;

/// A freshly issued session. Its `Debug` hides the value.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedSession {
    /// The cookie value.
    pub value: String,
    /// Lifetime, for the cookie's `Max-Age`.
    pub max_age: Duration,
}

impl std::fmt::Debug for IssuedSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedSession")
            .field("value", &"<redacted>")
            .field("max_age", &self.max_age)
            .finish()
    }
}

/// The parsed, not yet verified, content of a cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SessionClaims {
    pub user_id: i64,
    payload: String,
    mac: Vec<u8>,
}

/// Issues and checks session values.
pub struct SessionCodec {
    key: Secret,
    ttl: Duration,
}

impl SessionCodec {
    /// A codec signing with `key`; sessions live `ttl`.
    pub fn new(key: Secret, ttl: Duration) -> Self {
        SessionCodec { key, ttl }
    }

    pub(crate) fn ttl(&self) -> Duration {
        self.ttl
    }

    fn mac(&self, payload: &str, password_hash: &str) -> HmacSha256 {
        // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
        let mut mac = HmacSha256::new_from_slice(self.key.expose().as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(payload.as_bytes());
        mac.update(b"\n");
        mac.update(password_hash.as_bytes());
        mac
    }

    /// Issues a session for `account`.
    pub fn issue(&self, account: &Account) -> IssuedSession {
        let expires = (unix_now() + self.ttl.as_secs_f64()).floor() as i64;
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let payload = format!(
            "v1.{}.{}.{}",
            account.id,
            expires,
            URL_SAFE_NO_PAD.encode(nonce)
        );
        let tag = self
            .mac(&payload, &account.password_hash)
            .finalize()
            .into_bytes();
        IssuedSession {
            value: format!("{payload}.{}", URL_SAFE_NO_PAD.encode(tag)),
            max_age: self.ttl,
        }
    }

    /// Parses a value and checks its expiry; the signature is checked by [`Self::bound_to`].
    pub(crate) fn decode(&self, value: &str) -> Option<SessionClaims> {
        if value.len() > 512 {
            return None;
        }
        let (payload, mac) = value.rsplit_once('.')?;
        let mut parts = payload.split('.');
        let (version, user, expires, _nonce) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version != "v1" || parts.next().is_some() {
            return None;
        }
        let user_id: i64 = user.parse().ok()?;
        let expires: i64 = expires.parse().ok()?;
        if (expires as f64) <= unix_now() {
            return None;
        }
        Some(SessionClaims {
            user_id,
            payload: payload.to_owned(),
            mac: URL_SAFE_NO_PAD.decode(mac).ok()?,
        })
    }

    /// Whether the claims were signed by us for this account's current password (constant-time).
    pub(crate) fn bound_to(&self, claims: &SessionClaims, account: &Account) -> bool {
        claims.user_id == account.id
            && self
                .mac(&claims.payload, &account.password_hash)
                .verify_slice(&claims.mac)
                .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(hash: &str) -> Account {
        Account {
            id: 7,
            username: "ann".into(),
            password_hash: hash.into(),
            is_active: true,
            is_staff: true,
        }
    }

    #[test]
    fn issued_sessions_verify_and_tampering_fails() {
        let codec = SessionCodec::new(Secret::new("k1"), Duration::from_secs(60));
        let a = account("h1");
        let s = codec.issue(&a);
        let claims = codec.decode(&s.value).unwrap();
        assert!(codec.bound_to(&claims, &a));
        // Password changed: the session is void.
        assert!(!codec.bound_to(&claims, &account("h2")));
        // Another key: void.
        let other = SessionCodec::new(Secret::new("k2"), Duration::from_secs(60));
        assert!(!other.bound_to(&other.decode(&s.value).unwrap(), &a));
        // Tampered user id: void.
        let forged = s.value.replacen("v1.7.", "v1.8.", 1);
        let c = codec.decode(&forged).unwrap();
        assert!(!codec.bound_to(&c, &Account { id: 8, ..a.clone() }));
        for junk in ["", "v1", "v2.7.9999999999.n.m", "v1.x.1.n.m", "v1.7.1.n.!!"] {
            assert!(
                codec.decode(junk).is_none_or(|c| !codec.bound_to(&c, &a)),
                "{junk}"
            );
        }
    }

    #[test]
    fn expired_sessions_are_refused() {
        let codec = SessionCodec::new(Secret::new("k"), Duration::ZERO);
        let s = codec.issue(&account("h"));
        assert!(codec.decode(&s.value).is_none());
    }
}
