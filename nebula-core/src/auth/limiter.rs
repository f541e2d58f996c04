//! Failed-login rate limit, per username and per client address (in memory, per process).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::AuthError;

/// How many failures are tolerated within a window.
#[derive(Debug, Clone, Copy)]
pub struct RateLimits {
    /// Failures per username per window.
    pub per_username: usize,
    /// Failures per client address per window.
    pub per_address: usize,
    /// The sliding window.
    pub window: Duration,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            per_username: 5,
            per_address: 20,
            window: Duration::from_secs(300),
        }
    }
}

/// Most keys tracked; past that, expired entries are pruned on every failure.
const MAX_KEYS: usize = 10_000;

/// Counts failures in a sliding window.
#[derive(Debug)]
pub struct LoginLimiter {
    limits: RateLimits,
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl LoginLimiter {
    /// A limiter with these limits.
    pub fn new(limits: RateLimits) -> Self {
        LoginLimiter {
            limits,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn keys(username: &str, client: Option<IpAddr>) -> [(Option<String>, usize); 2] {
        [
            (Some(format!("user:{username}")), 0),
            (client.map(|ip| format!("addr:{ip}")), 1),
        ]
    }

    /// Refuses when either the username or the address has used up its failures.
    pub fn check(&self, username: &str, client: Option<IpAddr>) -> Result<(), AuthError> {
        let now = Instant::now();
        let mut map = self.failures.lock();
        for (key, which) in Self::keys(username, client) {
            let Some(key) = key else { continue };
            let limit = if which == 0 {
                self.limits.per_username
            } else {
                self.limits.per_address
            };
            if let Some(times) = map.get_mut(&key) {
                while times
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= self.limits.window)
                {
                    times.pop_front();
                }
                if times.len() >= limit {
                    let oldest = times.front().copied().unwrap_or(now);
                    let retry_after = self.limits.window.saturating_sub(now - oldest);
                    return Err(AuthError::RateLimited { retry_after });
                }
            }
        }
        Ok(())
    }

    /// Records a failure against the username and the address.
    pub fn failed(&self, username: &str, client: Option<IpAddr>) {
        let now = Instant::now();
        let mut map = self.failures.lock();
        if map.len() > MAX_KEYS {
            let window = self.limits.window;
            map.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.duration_since(*t) < window)
            });
        }
        for (key, _) in Self::keys(username, client) {
            if let Some(key) = key {
                map.entry(key).or_default().push_back(now);
            }
        }
    }

    /// A successful login clears the username's failures (not the address's).
    pub fn succeeded(&self, username: &str) {
        self.failures.lock().remove(&format!("user:{username}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_limited_per_username_and_per_address() {
        let limiter = LoginLimiter::new(RateLimits {
            per_username: 2,
            per_address: 3,
            window: Duration::from_secs(60),
        });
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        limiter.check("a", Some(ip)).unwrap();
        limiter.failed("a", Some(ip));
        limiter.failed("a", Some(ip));
        assert!(matches!(
            limiter.check("a", None),
            Err(AuthError::RateLimited { .. })
        ));
        // Another username from the same address still has one attempt left.
        limiter.check("b", Some(ip)).unwrap();
        limiter.failed("b", Some(ip));
        assert!(limiter.check("c", Some(ip)).is_err());
        // Another address for a fresh username is fine.
        limiter
            .check("c", Some("127.0.0.2".parse().unwrap()))
            .unwrap();
        limiter.succeeded("a");
        limiter.check("a", None).unwrap();
    }
}
