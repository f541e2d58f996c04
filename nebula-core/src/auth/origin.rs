//! Web origins (`scheme://host[:port]`), compared the way browsers mean them: the scheme and
//! host case-insensitively, a default port (80 for http, 443 for https) the same as none.
//!
//! One parser for every place an origin comes from: the `server.public_origin` setting, the
//! `Origin` and `Referer` headers, and the `Host` a request was sent to.

use std::fmt;
use std::net::Ipv6Addr;

/// Longest text accepted as an origin or echoed in an error.
const MAX_ORIGIN_LEN: usize = 300;

/// Input that is not an origin (or a URL with one). The message echoes the input escaped and
/// shortened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected an origin scheme://host[:port] with scheme http or https and no path (for example https://nebula.example.com), got '{0}'")]
pub struct OriginError(String);

impl OriginError {
    fn of(input: &str) -> Self {
        let short: String = input.chars().take(100).collect();
        let more = if input.chars().count() > 100 {
            "…"
        } else {
            ""
        };
        OriginError(format!("{}{more}", short.escape_default()))
    }
}

/// A normalised origin: lower-case scheme (`http` or `https`) and host, port `None` when it is
/// the scheme's default.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WebOrigin {
    scheme: &'static str,
    host: String,
    port: Option<u16>,
}

impl WebOrigin {
    /// Parses exactly `scheme://host[:port]`: no user, path, query or fragment (not even a
    /// trailing `/`). The host is a DNS name, an IPv4 address or a bracketed IPv6 address.
    pub fn parse(text: &str) -> Result<Self, OriginError> {
        let err = || OriginError::of(text);
        if text.len() > MAX_ORIGIN_LEN {
            return Err(err());
        }
        let (scheme, authority) = text.split_once("://").ok_or_else(err)?;
        Self::from_parts(scheme, authority).ok_or_else(err)
    }

    /// The origin of an absolute `http`/`https` URL, such as a `Referer` header.
    pub fn of_url(url: &str) -> Result<Self, OriginError> {
        let err = || OriginError::of(url);
        let (scheme, rest) = url.split_once("://").ok_or_else(err)?;
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        Self::from_parts(scheme, &rest[..end]).ok_or_else(err)
    }

    /// The origin of a server reached with `scheme` (`http` or `https`) at `host` (a `Host`
    /// header value: `host[:port]`).
    pub fn of_host(scheme: &str, host: &str) -> Result<Self, OriginError> {
        Self::from_parts(scheme, host).ok_or_else(|| OriginError::of(host))
    }

    fn from_parts(scheme: &str, authority: &str) -> Option<Self> {
        let scheme = if scheme.eq_ignore_ascii_case("http") {
            "http"
        } else if scheme.eq_ignore_ascii_case("https") {
            "https"
        } else {
            return None;
        };
        if authority.is_empty() || authority.len() > MAX_ORIGIN_LEN {
            return None;
        }
        let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
            let (inside, after) = rest.split_once(']')?;
            inside.parse::<Ipv6Addr>().ok()?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':')?),
            };
            (format!("[{}]", inside.to_ascii_lowercase()), port)
        } else {
            let (host, port) = match authority.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            };
            let valid = !host.is_empty()
                && host.len() <= 253
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
                && !host.starts_with(['-', '.']);
            if !valid {
                return None;
            }
            (host.to_ascii_lowercase(), port)
        };
        let port = match port {
            None => None,
            Some(p) => {
                if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                let n: u16 = p.parse().ok()?;
                if n == 0 {
                    return None;
                }
                Some(n)
            }
        };
        let default = if scheme == "http" { 80 } else { 443 };
        Some(WebOrigin {
            scheme,
            host,
            port: port.filter(|p| *p != default),
        })
    }
}

impl fmt::Display for WebOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_normalised_and_compared_as_browsers_mean_them() {
        let o = WebOrigin::parse("HTTPS://Nebula.Example.com:443").unwrap();
        assert_eq!(o.to_string(), "https://nebula.example.com");
        assert_eq!(o, WebOrigin::parse("https://nebula.example.com").unwrap());
        assert_ne!(o, WebOrigin::parse("http://nebula.example.com").unwrap());
        assert_ne!(
            o,
            WebOrigin::parse("https://nebula.example.com:8443").unwrap()
        );
        assert_ne!(
            o,
            WebOrigin::parse("https://evil.nebula.example.com").unwrap()
        );
        assert_eq!(
            WebOrigin::parse("http://127.0.0.1:8000")
                .unwrap()
                .to_string(),
            "http://127.0.0.1:8000"
        );
        assert_eq!(
            WebOrigin::parse("http://[::1]:80").unwrap().to_string(),
            "http://[::1]"
        );
        assert_eq!(
            WebOrigin::of_host("http", "127.0.0.1:8000").unwrap(),
            WebOrigin::parse("http://127.0.0.1:8000").unwrap()
        );
        assert_eq!(
            WebOrigin::of_url("https://nebula.example.com/admin/page?x=1#y").unwrap(),
            o
        );
        assert_eq!(
            WebOrigin::of_url("https://nebula.example.com?x").unwrap(),
            o
        );
    }

    #[test]
    fn anything_but_an_origin_is_refused() {
        for bad in [
            "",
            "null",
            "nebula.example.com",
            "https://",
            "https://nebula.example.com/",
            "https://nebula.example.com/path",
            "https://nebula.example.com?q",
            "ftp://nebula.example.com",
            "https://user@nebula.example.com",
            "https://nebula.example.com:",
            "https://nebula.example.com:0",
            "https://nebula.example.com:65536",
            "https://nebula.example.com:+80",
            "https://[::1",
            "https://[not-ip]",
            "https://-x.com",
            "https://exa mple.com",
            "https://example.com\n",
        ] {
            assert!(WebOrigin::parse(bad).is_err(), "{bad:?}");
        }
        assert!(WebOrigin::of_url("https://user@example.com/x").is_err());
        assert!(WebOrigin::of_url("/relative").is_err());
        let err = WebOrigin::parse("https://x.com/\u{7}")
            .unwrap_err()
            .to_string();
        assert!(err.contains("https://x.com/\\u{7}"), "{err}");
        assert!(WebOrigin::parse(&format!("https://{}.com", "a".repeat(400))).is_err());
    }
}
