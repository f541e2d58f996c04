//! Echoing untrusted text safely.

use std::borrow::Cow;

/// `text` with every control character escaped (`\n`, `\r`, `\t`, `\u{1b}`…), so that input
/// echoed into an error message or a log line can never start a forged line or drive a
/// terminal. Printable characters, non-ASCII ones included, are kept as they are.
///
/// The one rule for echoing input: error texts that quote a caller's value, plugin log
/// lines, and the HTTP error details all go through it.
pub fn escape_control(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            escaped.extend(c.escape_default());
        } else {
            escaped.push(c);
        }
    }
    Cow::Owned(escaped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_everything_else_kept() {
        assert!(matches!(escape_control("plain näme"), Cow::Borrowed(_)));
        assert_eq!(
            escape_control("evil\nINFO forged\r\t\u{1b}[31m\u{7f}é"),
            "evil\\nINFO forged\\r\\t\\u{1b}[31m\\u{7f}é"
        );
        assert!(!escape_control("a\u{85}b").chars().any(char::is_control));
    }
}
