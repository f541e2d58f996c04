//! The constant-time token check (feature `host`): the one comparison of a presented token
//! with the expected one, used by the engine's installer-token check (`nebula-core::auth`) and
//! by the gRPC serve helper's `x-nebula-token` check (`nebula-grpc`).

use subtle::ConstantTimeEq;

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
    fn matches_only_the_same_non_empty_token() {
        assert!(tokens_match("s3cret-token", "s3cret-token"));
        assert!(!tokens_match("s3cret-token", "s3cret-tokeN"));
        assert!(!tokens_match("s3cret-token", "s3cret-toke"));
        assert!(!tokens_match("s3cret-token", ""));
        assert!(!tokens_match("", ""));
        assert!(!tokens_match("", "anything"));
    }
}
