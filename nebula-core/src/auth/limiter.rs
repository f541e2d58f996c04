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

/// Most keys tracked; past that, expired entries are pruned on every attempt.
const MAX_KEYS: usize = 10_000;
/// Characters of a username used in its key.
const MAX_USERNAME_KEY: usize = 150;

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
        // Bound the key: any name longer than a real username is the same bucket.
        let name: String = username.chars().take(MAX_USERNAME_KEY).collect();
        [
            (Some(format!("user:{name}")), 0),
            (client.map(|ip| format!("addr:{ip}")), 1),
        ]
    }

    /// Takes one attempt from the username's and the address's allowance, or refuses when
    /// either is used up. Counting happens here, under one lock, before the password is
    /// checked, so a burst of simultaneous attempts cannot get past the limit; a successful
    /// login gives its attempt back ([`succeeded`](Self::succeeded)).
    pub fn attempt(&self, username: &str, client: Option<IpAddr>) -> Result<(), AuthError> {
        let now = Instant::now();
        let window = self.limits.window;
        let mut map = self.failures.lock();
        if map.len() > MAX_KEYS {
            map.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.duration_since(*t) < window)
            });
        }
        let keys = Self::keys(username, client);
        for (key, which) in &keys {
            let Some(key) = key else { continue };
            let limit = if *which == 0 {
                self.limits.per_username
            } else {
                self.limits.per_address
            };
            if let Some(times) = map.get_mut(key) {
                while times
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= window)
                {
                    times.pop_front();
                }
                if times.len() >= limit {
                    let oldest = times.front().copied().unwrap_or(now);
                    let retry_after = window.saturating_sub(now - oldest);
                    return Err(AuthError::RateLimited { retry_after });
                }
            }
        }
        for (key, _) in keys {
            if let Some(key) = key {
                map.entry(key).or_default().push_back(now);
            }
        }
        Ok(())
    }

    /// A successful login clears the username's attempts and gives the address its attempt
    /// back.
    pub fn succeeded(&self, username: &str, client: Option<IpAddr>) {
        let [(user_key, _), (addr_key, _)] = Self::keys(username, client);
        let mut map = self.failures.lock();
        if let Some(key) = user_key {
            map.remove(&key);
        }
        if let Some(times) = addr_key.and_then(|key| map.get_mut(&key)) {
            times.pop_back();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_are_limited_per_username_and_per_address() {
        let limiter = LoginLimiter::new(RateLimits {
            per_username: 2,
            per_address: 3,
            window: Duration::from_secs(60),
        });
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        limiter.attempt("a", Some(ip)).unwrap();
        limiter.attempt("a", Some(ip)).unwrap();
        assert!(matches!(
            limiter.attempt("a", None),
            Err(AuthError::RateLimited { .. })
        ));
        // Another username from the same address has one attempt left.
        limiter.attempt("b", Some(ip)).unwrap();
        assert!(limiter.attempt("c", Some(ip)).is_err());
        // Another address for a fresh username is fine.
        limiter
            .attempt("c", Some("127.0.0.2".parse().unwrap()))
            .unwrap();
        // Success refunds: the username is cleared, the address gets its attempt back.
        limiter.succeeded("b", Some(ip));
        limiter.attempt("d", Some(ip)).unwrap();
        limiter.succeeded("a", None);
        limiter
            .attempt("a", Some("127.0.0.3".parse().unwrap()))
            .unwrap();
    }

    #[test]
    fn very_long_usernames_share_one_bounded_key() {
        let limiter = LoginLimiter::new(RateLimits {
            per_username: 1,
            per_address: 100,
            window: Duration::from_secs(60),
        });
        let long = "x".repeat(10_000);
        limiter.attempt(&long, None).unwrap();
        assert!(limiter.attempt(&format!("{long}y"), None).is_err());
        assert!(limiter.failures.lock().keys().all(|k| k.len() < 200));
    }
}
