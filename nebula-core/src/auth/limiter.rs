//! Rate limits on failed logins and failed installer-token attempts (in memory, per process).
//!
//! Logins are counted under three keys, in one sliding window:
//!
//! - **(username, client address)**: the lockout. Past its allowance that address is refused
//!   for that username (`RateLimited`), even with the right password. Another address is not
//!   affected, so nobody can lock a staff member out from elsewhere.
//! - **client address**: the lockout of an address that tries many usernames.
//! - **username** (from any address): never refuses, only slows down. Past its free failures
//!   every attempt for that username waits a delay that doubles with each further failure, up
//!   to a bound, before its password is checked — the right password from a clean address
//!   included, so a distributed guesser is slowed and the owner still gets in.
//!
//! Installer-token attempts are counted per client address only.
//!
//! An attempt is counted before the password is checked, under one lock, so a burst of
//! simultaneous attempts cannot get past an allowance; a successful login gives its attempt
//! back. Addresses are keyed as clients control them: an IPv4-mapped IPv6 address as its IPv4
//! address, any other IPv6 address by its /64 prefix (one host usually holds a whole /64). An
//! unknown address counts as one address.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::AuthError;

/// The allowances, the slowdown and the window.
#[derive(Debug, Clone, Copy)]
pub struct RateLimits {
    /// Failed logins per (username, client address) per window; past that, that address is
    /// refused for that username.
    pub per_user_address: usize,
    /// Failed logins per client address per window, whatever the usernames; past that, the
    /// address is refused.
    pub per_address: usize,
    /// Failed logins of one username (from any address) per window answered without delay.
    pub per_username_free: usize,
    /// The delay once a username's free failures are used up; it doubles with each further
    /// failure.
    pub slowdown_start: Duration,
    /// The longest delay.
    pub slowdown_max: Duration,
    /// Failed installer-token attempts per client address per window; past that, the address
    /// is refused even with the right token.
    pub token_per_address: usize,
    /// The sliding window.
    pub window: Duration,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            per_user_address: 5,
            per_address: 20,
            per_username_free: 5,
            slowdown_start: Duration::from_millis(250),
            slowdown_max: Duration::from_secs(2),
            token_per_address: 20,
            window: Duration::from_secs(300),
        }
    }
}

/// Most keys tracked; past that, expired entries are pruned on every attempt.
const MAX_KEYS: usize = 10_000;
/// Characters of a username used in its keys.
const MAX_USERNAME_KEY: usize = 150;
/// Failures kept per username beyond its free ones: enough for any delay to reach its bound
/// (2^32 times any non-zero start exceeds any useful maximum), few enough to stay small.
const USERNAME_EXTRA_KEPT: usize = 32;

/// What a counter counts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    /// Login failures of a username from one address.
    UserAddress(String, Option<IpAddr>),
    /// Login failures from an address.
    Address(Option<IpAddr>),
    /// Login failures of a username from anywhere.
    User(String),
    /// Failed installer-token attempts from an address.
    Token(Option<IpAddr>),
}

/// The key of a client address: IPv4-mapped addresses as IPv4, other IPv6 addresses by /64.
fn address_key(client: Option<IpAddr>) -> Option<IpAddr> {
    client.map(|ip| match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    })
}

/// The bounded form of a username used in keys: any name longer than a real username shares
/// one key with the other names of the same prefix.
fn username_key(username: &str) -> String {
    username.chars().take(MAX_USERNAME_KEY).collect()
}

/// What an admitted login attempt must wait before its password is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admitted {
    /// The slowdown of the username (zero while it has free failures left).
    pub delay: Duration,
}

/// Counts failures in a sliding window (the rules: `nebula-core/src/auth/limiter.rs`).
#[derive(Debug)]
pub struct LoginLimiter {
    limits: RateLimits,
    failures: Mutex<HashMap<Key, VecDeque<Instant>>>,
}

/// The failures of `key` still inside the window (expired ones are dropped).
fn recent<'a>(
    map: &'a mut HashMap<Key, VecDeque<Instant>>,
    key: &Key,
    now: Instant,
    window: Duration,
) -> Option<&'a mut VecDeque<Instant>> {
    let times = map.get_mut(key)?;
    while times
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) >= window)
    {
        times.pop_front();
    }
    Some(times)
}

impl LoginLimiter {
    /// A limiter with these limits.
    pub fn new(limits: RateLimits) -> Self {
        LoginLimiter {
            limits,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> RateLimits {
        self.limits
    }

    /// Locks the map, pruning expired keys first when it has grown large.
    fn lock(&self, now: Instant) -> parking_lot::MutexGuard<'_, HashMap<Key, VecDeque<Instant>>> {
        let window = self.limits.window;
        let mut map = self.failures.lock();
        if map.len() > MAX_KEYS {
            map.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.saturating_duration_since(*t) < window)
            });
        }
        map
    }

    /// `Err(retry after)` when `key` has used `limit` failures within the window.
    fn check(
        map: &mut HashMap<Key, VecDeque<Instant>>,
        key: &Key,
        limit: usize,
        now: Instant,
        window: Duration,
    ) -> Result<(), Duration> {
        match recent(map, key, now, window) {
            Some(times) if times.len() >= limit => {
                let oldest = times.front().copied().unwrap_or(now);
                Err(window.saturating_sub(now.saturating_duration_since(oldest)))
            }
            _ => Ok(()),
        }
    }

    /// The slowdown for a username that has failed `failures` times within the window.
    fn delay_after(&self, failures: usize) -> Duration {
        let l = &self.limits;
        match failures.checked_sub(l.per_username_free) {
            None => Duration::ZERO,
            Some(extra) => {
                let factor = 1u32 << extra.min(31);
                l.slowdown_start.saturating_mul(factor).min(l.slowdown_max)
            }
        }
    }

    /// Takes one attempt from the allowances of (username, address) and of the address, or
    /// refuses with [`AuthError::RateLimited`] when either is used up; also counts it against
    /// the username and answers the delay to wait before checking the password. Counting
    /// happens here, under one lock, before the password is checked, so a burst of
    /// simultaneous attempts cannot get past an allowance; a successful login gives its
    /// attempt back ([`succeeded`](Self::succeeded)).
    pub fn attempt(&self, username: &str, client: Option<IpAddr>) -> Result<Admitted, AuthError> {
        self.attempt_at(username, client, Instant::now())
    }

    fn attempt_at(
        &self,
        username: &str,
        client: Option<IpAddr>,
        now: Instant,
    ) -> Result<Admitted, AuthError> {
        let l = self.limits;
        let name = username_key(username);
        let addr = address_key(client);
        let pair = Key::UserAddress(name.clone(), addr);
        let address = Key::Address(addr);
        let user = Key::User(name);
        let mut map = self.lock(now);
        Self::check(&mut map, &pair, l.per_user_address, now, l.window)
            .and_then(|()| Self::check(&mut map, &address, l.per_address, now, l.window))
            .map_err(|retry_after| AuthError::RateLimited { retry_after })?;
        let user_failures = recent(&mut map, &user, now, l.window).map_or(0, |t| t.len());
        let delay = self.delay_after(user_failures);
        for key in [pair, address] {
            map.entry(key).or_default().push_back(now);
        }
        let times = map.entry(user).or_default();
        times.push_back(now);
        // Past the point where the delay is at its bound, older failures tell nothing more.
        while times.len() > l.per_username_free + USERNAME_EXTRA_KEPT {
            times.pop_front();
        }
        Ok(Admitted { delay })
    }

    /// A successful login clears the failures of its username from that address and gives
    /// the address and the username the attempt back. Failures of the username from other
    /// addresses stay: the owner logging in says nothing about who else is guessing.
    pub fn succeeded(&self, username: &str, client: Option<IpAddr>) {
        let name = username_key(username);
        let addr = address_key(client);
        let mut map = self.failures.lock();
        map.remove(&Key::UserAddress(name.clone(), addr));
        for key in [Key::Address(addr), Key::User(name)] {
            if let Some(times) = map.get_mut(&key) {
                times.pop_back();
            }
        }
    }

    /// Checks an installer-token attempt from `client`: refuses with
    /// [`AuthError::TooManyTokenAttempts`] when the address has used its allowance — even if
    /// the token is right — otherwise runs `matches` and counts a failure when it answers
    /// false. Under one lock, so simultaneous attempts cannot get past the allowance.
    pub fn token_attempt(
        &self,
        client: Option<IpAddr>,
        matches: impl FnOnce() -> bool,
    ) -> Result<bool, AuthError> {
        self.token_attempt_at(client, matches, Instant::now())
    }

    fn token_attempt_at(
        &self,
        client: Option<IpAddr>,
        matches: impl FnOnce() -> bool,
        now: Instant,
    ) -> Result<bool, AuthError> {
        let l = self.limits;
        let key = Key::Token(address_key(client));
        let mut map = self.lock(now);
        Self::check(&mut map, &key, l.token_per_address, now, l.window)
            .map_err(|retry_after| AuthError::TooManyTokenAttempts { retry_after })?;
        let ok = matches();
        if !ok {
            map.entry(key).or_default().push_back(now);
        }
        Ok(ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    fn limits() -> RateLimits {
        RateLimits {
            per_user_address: 2,
            per_address: 4,
            per_username_free: 3,
            slowdown_start: Duration::from_millis(100),
            slowdown_max: Duration::from_millis(350),
            token_per_address: 3,
            window: Duration::from_secs(60),
        }
    }

    fn limited(r: Result<Admitted, AuthError>) -> bool {
        matches!(r, Err(AuthError::RateLimited { .. }))
    }

    #[test]
    fn failures_from_one_address_never_lock_the_username_out_elsewhere() {
        let limiter = LoginLimiter::new(limits());
        let (attacker, owner) = (ip("127.0.0.2"), ip("127.0.0.1"));
        limiter.attempt("admin", attacker).unwrap();
        limiter.attempt("admin", attacker).unwrap();
        // The attacker's address is locked out of this username…
        assert!(limited(limiter.attempt("admin", attacker)));
        // …but the owner's address is not, and a success clears only the owner's pair.
        limiter.attempt("admin", owner).unwrap();
        limiter.succeeded("admin", owner);
        limiter.attempt("admin", owner).unwrap();
        assert!(limited(limiter.attempt("admin", attacker)));
        // The attacker can still try another username (its address has allowance left).
        limiter.attempt("other", attacker).unwrap();
    }

    #[test]
    fn an_address_that_tries_many_usernames_is_locked_out_of_all() {
        let limiter = LoginLimiter::new(limits());
        let a = ip("10.0.0.1");
        for name in ["u1", "u2", "u3", "u4"] {
            limiter.attempt(name, a).unwrap();
        }
        let refused = limiter.attempt("u5", a).unwrap_err();
        assert!(
            matches!(refused, AuthError::RateLimited { retry_after } if retry_after > Duration::from_secs(59))
        );
        // Another address is not affected; a success gives its own address one attempt back.
        limiter.attempt("u5", ip("10.0.0.2")).unwrap();
        limiter.succeeded("u4", a);
        limiter.attempt("u6", a).unwrap();
        assert!(limited(limiter.attempt("u7", a)));
    }

    #[test]
    fn a_username_is_slowed_down_never_refused_and_the_delay_is_bounded() {
        let limiter = LoginLimiter::new(limits());
        let delays: Vec<u64> = (0..8)
            .map(|i| {
                // Every attempt from a fresh address: nothing is ever refused.
                let a = Some(IpAddr::from([10, 1, 0, i as u8]));
                limiter.attempt("admin", a).unwrap().delay.as_millis() as u64
            })
            .collect();
        // Three free failures, then 100 ms doubling, bounded at 350 ms.
        assert_eq!(delays, [0, 0, 0, 100, 200, 350, 350, 350]);
        // The failures kept for a username stay bounded.
        let kept = limiter.failures.lock()[&Key::User("admin".into())].len();
        assert!(kept <= 3 + USERNAME_EXTRA_KEPT);
        // Each success gives its attempt back: after five, three failures are left.
        for i in 3..8 {
            limiter.succeeded("admin", Some(IpAddr::from([10, 1, 0, i])));
        }
        let next = limiter.attempt("admin", ip("10.2.0.1")).unwrap();
        assert_eq!(next.delay, Duration::from_millis(100));
        // Other usernames are not slowed.
        let other = limiter.attempt("someone", ip("10.2.0.1")).unwrap();
        assert_eq!(other.delay, Duration::ZERO);
    }

    #[test]
    fn counts_leave_the_window() {
        let limiter = LoginLimiter::new(limits());
        let t0 = Instant::now();
        let a = ip("127.0.0.2");
        limiter.attempt_at("admin", a, t0).unwrap();
        limiter
            .attempt_at("admin", a, t0 + Duration::from_secs(10))
            .unwrap();
        match limiter.attempt_at("admin", a, t0 + Duration::from_secs(20)) {
            Err(AuthError::RateLimited { retry_after }) => {
                assert_eq!(retry_after, Duration::from_secs(40))
            }
            other => panic!("{other:?}"),
        }
        // 60 s after the first failure one attempt is free again, not two.
        limiter
            .attempt_at("admin", a, t0 + Duration::from_secs(60))
            .unwrap();
        assert!(limited(limiter.attempt_at(
            "admin",
            a,
            t0 + Duration::from_secs(61)
        )));
        let wrong = || false;
        for _ in 0..3 {
            assert!(!limiter.token_attempt_at(a, wrong, t0).unwrap());
        }
        assert!(limiter
            .token_attempt_at(a, || true, t0 + Duration::from_secs(59))
            .is_err());
        assert!(limiter
            .token_attempt_at(a, || true, t0 + Duration::from_secs(60))
            .unwrap());
    }

    #[test]
    fn token_attempts_are_limited_per_address_even_with_the_right_token() {
        let limiter = LoginLimiter::new(limits());
        let (bad, good) = (ip("127.0.0.2"), ip("127.0.0.1"));
        for _ in 0..3 {
            assert!(!limiter.token_attempt(bad, || false).unwrap());
        }
        let mut called = false;
        let refused = limiter.token_attempt(bad, || {
            called = true;
            true
        });
        assert!(matches!(
            refused,
            Err(AuthError::TooManyTokenAttempts { retry_after }) if retry_after > Duration::from_secs(59)
        ));
        assert!(
            !called,
            "a locked address is refused before the token is compared"
        );
        // Another address keeps working, and right tokens are never counted.
        for _ in 0..10 {
            assert!(limiter.token_attempt(good, || true).unwrap());
        }
        // Token and login counts are separate.
        limiter.attempt("admin", bad).unwrap();
    }

    #[test]
    fn a_burst_of_simultaneous_attempts_gets_exactly_the_allowance() {
        let limiter = std::sync::Arc::new(LoginLimiter::new(RateLimits {
            per_user_address: 5,
            ..RateLimits::default()
        }));
        let threads: Vec<_> = (0..20)
            .map(|_| {
                let limiter = limiter.clone();
                std::thread::spawn(move || limiter.attempt("burst", ip("127.0.0.1")).is_ok())
            })
            .collect();
        let admitted = threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .filter(|ok| *ok)
            .count();
        assert_eq!(admitted, 5);
        let tokens: Vec<_> = (0..50)
            .map(|_| {
                let limiter = limiter.clone();
                std::thread::spawn(move || limiter.token_attempt(ip("127.0.0.3"), || false).is_ok())
            })
            .collect();
        let compared = tokens
            .into_iter()
            .map(|t| t.join().unwrap())
            .filter(|ok| *ok)
            .count();
        assert_eq!(compared, 20);
    }

    #[test]
    fn addresses_are_keyed_as_clients_control_them() {
        let limiter = LoginLimiter::new(limits());
        // One host with a /64 cannot get a fresh allowance per address.
        limiter.attempt("admin", ip("2001:db8::1")).unwrap();
        limiter.attempt("admin", ip("2001:db8::2:3")).unwrap();
        assert!(limited(limiter.attempt("admin", ip("2001:db8::ffff"))));
        limiter.attempt("admin", ip("2001:db8:0:1::1")).unwrap();
        // An IPv4-mapped address is its IPv4 address.
        limiter.attempt("root", ip("192.0.2.7")).unwrap();
        limiter.attempt("root", ip("::ffff:192.0.2.7")).unwrap();
        assert!(limited(limiter.attempt("root", ip("192.0.2.7"))));
        // An unknown address is one address.
        limiter.attempt("x", None).unwrap();
        limiter.attempt("x", None).unwrap();
        assert!(limited(limiter.attempt("x", None)));
    }

    #[test]
    fn very_long_usernames_share_one_bounded_key() {
        let limiter = LoginLimiter::new(RateLimits {
            per_user_address: 1,
            per_address: 100,
            ..RateLimits::default()
        });
        let long = "x".repeat(10_000);
        limiter.attempt(&long, None).unwrap();
        assert!(limiter.attempt(&format!("{long}y"), None).is_err());
        assert!(limiter.failures.lock().keys().all(|k| match k {
            Key::UserAddress(name, _) | Key::User(name) => name.len() <= MAX_USERNAME_KEY,
            Key::Address(_) | Key::Token(_) => true,
        }));
    }
}
