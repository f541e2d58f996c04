//! gRPC endpoints and the loopback-only policy.
//!
//! The policy is decided on the literal text of the endpoint, before any name lookup or
//! connection: a refused endpoint is never contacted, not even by DNS.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

/// A parsed endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrpcEndpoint {
    /// `host:port` or `http://host:port` (plaintext HTTP/2).
    Tcp {
        /// Host as written (IP literal without brackets, or a name).
        host: String,
        /// Port.
        port: u16,
    },
    /// `unix:///absolute/path.sock`.
    Unix(PathBuf),
}

/// An endpoint that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    /// Not one of the accepted forms.
    #[error("invalid endpoint '{endpoint}': {reason}")]
    Invalid {
        /// The endpoint as written.
        endpoint: String,
        /// Why.
        reason: String,
    },
    /// A non-loopback endpoint while `plugins.allow_remote_grpc` is false.
    #[error("endpoint '{0}' refused by policy: only loopback (127.0.0.0/8, ::1, localhost) and unix sockets are allowed unless plugins.allow_remote_grpc = true")]
    RemoteRefused(String),
    /// Serving on a TCP address without a token.
    #[error("listening on TCP ({0}) requires a token: without one, any process that can reach the port could call the plugin; only a unix socket, guarded by its file permissions, may go without")]
    ListenTokenRequired(String),
    /// Serving on a non-loopback address without an explicit permission.
    #[error("listen address '{0}' refused: not loopback (127.0.0.0/8, ::1, localhost); listening beyond this host must be allowed explicitly, and the traffic, token included, is unencrypted")]
    ListenRemoteRefused(String),
}

impl GrpcEndpoint {
    /// Parses `host:port`, `http://host:port`, `[v6]:port` or `unix:///path`.
    pub fn parse(raw: &str) -> Result<Self, EndpointError> {
        Self::parse_with(raw, false)
    }

    /// Like [`parse`](Self::parse), but port 0 ("pick a free port") is allowed: for listening.
    pub fn parse_listen(raw: &str) -> Result<Self, EndpointError> {
        Self::parse_with(raw, true)
    }

    fn parse_with(raw: &str, allow_port_zero: bool) -> Result<Self, EndpointError> {
        let invalid = |reason: &str| EndpointError::Invalid {
            endpoint: raw.to_owned(),
            reason: reason.to_owned(),
        };
        let text = raw.trim();
        if let Some(path) = text.strip_prefix("unix://") {
            if !path.starts_with('/') || path.len() < 2 {
                return Err(invalid("expected unix:///absolute/path"));
            }
            return Ok(GrpcEndpoint::Unix(PathBuf::from(path)));
        }
        if text.starts_with("https://") {
            return Err(invalid(
                "TLS is not supported by plugin_api_v1 endpoints; use http:// on loopback or a unix socket",
            ));
        }
        let rest = text.strip_prefix("http://").unwrap_or(text);
        if rest.contains("://") {
            return Err(invalid(
                "expected host:port, http://host:port or unix:///path",
            ));
        }
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') || rest.contains('@') || rest.contains('?') {
            return Err(invalid("no path, user or query allowed"));
        }
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| invalid("unclosed '[' in IPv6 address"))?;
            let port = after
                .strip_prefix(':')
                .ok_or_else(|| invalid("missing :port"))?;
            host.parse::<std::net::Ipv6Addr>()
                .map_err(|_| invalid("invalid IPv6 address"))?;
            (host, port)
        } else {
            rest.rsplit_once(':')
                .ok_or_else(|| invalid("missing :port"))?
        };
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p != 0 || allow_port_zero)
            .ok_or_else(|| invalid("port must be 1 to 65535"))?;
        let host_ok = !host.is_empty()
            && host.len() <= 253
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'));
        if !host_ok {
            return Err(invalid("invalid host"));
        }
        Ok(GrpcEndpoint::Tcp {
            host: host.to_owned(),
            port,
        })
    }

    /// Whether the endpoint is local by its literal text: a unix socket, `localhost`, or a
    /// loopback IP literal (127.0.0.0/8, ::1, ::ffff:127.x.x.x). No name is ever resolved.
    pub fn is_loopback(&self) -> bool {
        match self {
            GrpcEndpoint::Unix(_) => true,
            GrpcEndpoint::Tcp { host, .. } => {
                if host.eq_ignore_ascii_case("localhost") {
                    return true;
                }
                match host.parse::<IpAddr>() {
                    Ok(IpAddr::V4(v4)) => v4.is_loopback(),
                    Ok(IpAddr::V6(v6)) => {
                        v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
                    }
                    Err(_) => false,
                }
            }
        }
    }

    /// Applies the policy: remote endpoints only when `allow_remote`.
    pub fn check_policy(&self, allow_remote: bool) -> Result<(), EndpointError> {
        if allow_remote || self.is_loopback() {
            Ok(())
        } else {
            Err(EndpointError::RemoteRefused(self.to_string()))
        }
    }

    /// The policy for serving a plugin on this (listen) endpoint: a TCP address must be loopback
    /// unless `allow_remote`, and needs a token (`has_token`) whatever its address; a unix
    /// socket may go without a token. Loopback is decided as for outgoing endpoints
    /// ([`is_loopback`](Self::is_loopback)), on the literal text: `0.0.0.0` and `::` are not.
    pub fn check_listen_policy(
        &self,
        has_token: bool,
        allow_remote: bool,
    ) -> Result<(), EndpointError> {
        if matches!(self, GrpcEndpoint::Unix(_)) {
            return Ok(());
        }
        if !allow_remote && !self.is_loopback() {
            return Err(EndpointError::ListenRemoteRefused(self.to_string()));
        }
        if !has_token {
            return Err(EndpointError::ListenTokenRequired(self.to_string()));
        }
        Ok(())
    }

    /// The `http://` URI for a TCP endpoint (IPv6 hosts bracketed).
    pub fn http_uri(&self) -> Option<String> {
        match self {
            GrpcEndpoint::Tcp { host, port } if host.contains(':') => {
                Some(format!("http://[{host}]:{port}"))
            }
            GrpcEndpoint::Tcp { host, port } => Some(format!("http://{host}:{port}")),
            GrpcEndpoint::Unix(_) => None,
        }
    }
}

impl fmt::Display for GrpcEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GrpcEndpoint::Tcp { .. } => f.write_str(self.http_uri().as_deref().unwrap_or("")),
            GrpcEndpoint::Unix(path) => write!(f, "unix://{}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(host: &str, port: u16) -> GrpcEndpoint {
        GrpcEndpoint::Tcp {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn accepted_forms() {
        assert_eq!(
            GrpcEndpoint::parse("127.0.0.1:50051").unwrap(),
            tcp("127.0.0.1", 50051)
        );
        assert_eq!(
            GrpcEndpoint::parse("http://localhost:1/").unwrap(),
            tcp("localhost", 1)
        );
        assert_eq!(GrpcEndpoint::parse("[::1]:9").unwrap(), tcp("::1", 9));
        assert_eq!(
            GrpcEndpoint::parse("unix:///run/p.sock").unwrap(),
            GrpcEndpoint::Unix("/run/p.sock".into())
        );
        assert_eq!(tcp("::1", 9).http_uri().unwrap(), "http://[::1]:9");
        assert!(GrpcEndpoint::parse("127.0.0.1:0").is_err());
        assert_eq!(
            GrpcEndpoint::parse_listen("127.0.0.1:0").unwrap(),
            tcp("127.0.0.1", 0)
        );
    }

    #[test]
    fn malformed_endpoints_are_invalid() {
        for bad in [
            "",
            "host",
            "host:",
            "host:0",
            "host:70000",
            "https://127.0.0.1:1",
            "ftp://x:1",
            "unix://relative.sock",
            "unix://",
            "http://a:1/path",
            "user@host:1",
            "[::1:5",
            "[zz]:1",
            "ho st:1",
        ] {
            assert!(
                matches!(GrpcEndpoint::parse(bad), Err(EndpointError::Invalid { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn only_loopback_passes_the_default_policy_and_nothing_is_resolved() {
        // None of these addresses is ever contacted: the decision is on the text alone.
        for ok in [
            "127.0.0.1:1",
            "127.8.9.10:1",
            "localhost:1",
            "LOCALHOST:1",
            "[::1]:1",
            "[::ffff:127.0.0.1]:1",
            "unix:///tmp/x.sock",
        ] {
            let e = GrpcEndpoint::parse(ok).unwrap();
            assert!(e.check_policy(false).is_ok(), "{ok}");
        }
        for remote in [
            "10.0.0.5:50051",
            "192.168.1.1:1",
            "8.8.8.8:53",
            "[2001:db8::1]:1",
            "[::ffff:10.0.0.1]:1",
            "example.com:443",
            "127.0.0.1.nip.io:1",
            "localhost.example.com:1",
            "0.0.0.0:1",
        ] {
            let e = GrpcEndpoint::parse(remote).unwrap();
            let err = e.check_policy(false).unwrap_err();
            assert!(matches!(err, EndpointError::RemoteRefused(_)), "{remote}");
            assert!(err.to_string().contains("allow_remote_grpc"));
            assert!(
                e.check_policy(true).is_ok(),
                "{remote} allowed when configured"
            );
        }
    }

    #[test]
    fn serving_on_tcp_needs_a_token_and_loopback_unless_remote_is_allowed() {
        let listen = |raw: &str| GrpcEndpoint::parse_listen(raw).unwrap();
        for local in ["127.0.0.1:0", "127.1.2.3:9", "localhost:0", "[::1]:0"] {
            assert_eq!(
                listen(local).check_listen_policy(true, false),
                Ok(()),
                "{local}"
            );
            assert!(
                matches!(
                    listen(local).check_listen_policy(false, false),
                    Err(EndpointError::ListenTokenRequired(_))
                ),
                "{local}"
            );
        }
        for remote in ["0.0.0.0:0", "[::]:0", "10.1.2.3:50051", "example.com:1"] {
            for has_token in [true, false] {
                let err = listen(remote)
                    .check_listen_policy(has_token, false)
                    .unwrap_err();
                assert!(
                    matches!(err, EndpointError::ListenRemoteRefused(_)),
                    "{remote}"
                );
            }
            assert_eq!(listen(remote).check_listen_policy(true, true), Ok(()));
            // Allowed beyond loopback, still not without a token.
            assert!(matches!(
                listen(remote).check_listen_policy(false, true),
                Err(EndpointError::ListenTokenRequired(_))
            ));
        }
        let unix = listen("unix:///tmp/p.sock");
        assert_eq!(unix.check_listen_policy(false, false), Ok(()));
        assert_eq!(unix.check_listen_policy(true, false), Ok(()));
    }
}
