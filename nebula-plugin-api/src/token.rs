//! Tokens (feature `host`): the one way a host makes a secret token ([`new_token`]: the
//! generated installer token and session secret, host tokens, process plugins' tokens) and the
//! one constant-time comparison of a presented token with the expected one
//! ([`tokens_match`]: the engine's installer-token check and the serve helper's
//! `x-nebula-token` check).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use subtle::ConstantTimeEq;

/// Random bytes in a token: 32, 43 characters of URL-safe base64 (SPEC §8 asks at least 32).
pub const TOKEN_BYTES: usize = 32;

/// A fresh secret token from the operating system's randomness, URL-safe base64 without
/// padding. An error only when the OS cannot give randomness.
pub fn new_token() -> Result<String, rand::Error> {
    let mut bytes = [0u8; TOKEN_BYTES];
    rand::rngs::OsRng.try_fill_bytes(&mut bytes)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// Whether `given` is the `expected` token. The content comparison is constant-time (the
/// length is not secret). An empty expected token never matches, whatever is given: an unset
/// or empty token must not admit an empty header.
pub fn tokens_match(expected: &str, given: &str) -> bool {
    !expected.is_empty()
        && expected.len() == given.len()
        && bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::tokens_match;

    #[test]
    fn new_tokens_are_43_url_safe_characters_and_differ() {
        let (a, b) = (super::new_token().unwrap(), super::new_token().unwrap());
        assert_eq!(a.len(), 43);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert_ne!(a, b);
    }

    #[test]
    fn matches_only_the_same_non_empty_token() {
        assert!(tokens_match("s3cret-token", "s3cret-token"));
        assert!(!tokens_match("s3cret-token", "s3cret-tokeN"));
        assert!(!tokens_match("s3cret-token", "s3cret-toke"));
        assert!(!tokens_match("s3cret-token", ""));
        assert!(!tokens_match("", ""));
        assert!(!tokens_match("", "anything"));
    }
}
