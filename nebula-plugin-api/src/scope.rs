//! The v1 scope model: what a plugin may ask the host to do.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use crate::manifest_rules::V1_SCOPE_NAMES;

/// One permission a plugin can hold. The set is closed in v1.
///
/// Each variant's discriminant is its index in the list of wire names the manifest rules keep
/// (`manifest_rules::V1_SCOPE_NAMES`, shared with the compile-time manifest check).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Read users of a directory.
    UsersRead = 0,
    /// Create and update users.
    UsersWrite = 1,
    /// Read identity roles.
    RolesRead = 2,
    /// Create and update identity roles.
    RolesWrite = 3,
    /// Read users' identity tags.
    IdentityTagsRead = 4,
    /// Set users' identity tags.
    IdentityTagsWrite = 5,
    /// Emit events (namespaced `plugin.<name>.`).
    EventsEmit = 6,
}

impl Scope {
    /// Every scope of v1, in canonical order.
    pub const ALL: [Scope; 7] = [
        Scope::UsersRead,
        Scope::UsersWrite,
        Scope::RolesRead,
        Scope::RolesWrite,
        Scope::IdentityTagsRead,
        Scope::IdentityTagsWrite,
        Scope::EventsEmit,
    ];

    /// The wire name, for example `users.read`.
    pub fn as_str(self) -> &'static str {
        V1_SCOPE_NAMES[self as usize]
    }

    /// Parses a wire name; `None` for anything that is not a v1 scope.
    pub fn parse(name: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of [`Scope::from_str`]: the name that is not a v1 scope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scope '{0}'")]
pub struct UnknownScope(pub String);

impl FromStr for Scope {
    type Err = UnknownScope;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::parse(s).ok_or_else(|| UnknownScope(s.to_owned()))
    }
}

/// A set of scopes, ordered canonically.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeSet(BTreeSet<Scope>);

impl ScopeSet {
    /// The empty set.
    pub fn empty() -> Self {
        ScopeSet::default()
    }

    /// Every v1 scope.
    pub fn all() -> Self {
        Scope::ALL.into_iter().collect()
    }

    /// Parses names, dropping the ones that are not v1 scopes with a `tracing` warning that names
    /// `owner` (the plugin, or the config key) and the scope. Returns the set and what was dropped.
    pub fn parse_lossy<I, S>(owner: &str, names: I) -> (ScopeSet, Vec<String>)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut set = ScopeSet::empty();
        let mut dropped = Vec::new();
        for name in names {
            let name = name.as_ref();
            match Scope::parse(name) {
                Some(scope) => {
                    set.0.insert(scope);
                }
                None => {
                    tracing::warn!(owner, scope = name, "unknown scope dropped");
                    dropped.push(name.to_owned());
                }
            }
        }
        (set, dropped)
    }

    /// Whether `scope` is in the set.
    pub fn contains(&self, scope: Scope) -> bool {
        self.0.contains(&scope)
    }

    /// The scopes in both sets.
    pub fn intersection(&self, other: &ScopeSet) -> ScopeSet {
        ScopeSet(self.0.intersection(&other.0).copied().collect())
    }

    /// Iterates in canonical order.
    pub fn iter(&self) -> impl Iterator<Item = Scope> + '_ {
        self.0.iter().copied()
    }

    /// The wire names, in canonical order.
    pub fn names(&self) -> Vec<String> {
        self.iter().map(|s| s.as_str().to_owned()).collect()
    }

    /// Number of scopes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<Scope> for ScopeSet {
    fn from_iter<T: IntoIterator<Item = Scope>>(iter: T) -> Self {
        ScopeSet(iter.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scope_round_trips_through_its_name() {
        assert_eq!(Scope::ALL.map(Scope::as_str), V1_SCOPE_NAMES);
        for scope in Scope::ALL {
            assert_eq!(scope.as_str().parse::<Scope>(), Ok(scope));
            assert_eq!(scope.to_string(), scope.as_str());
        }
        assert_eq!(
            "users.delete".parse::<Scope>(),
            Err(UnknownScope("users.delete".into()))
        );
    }

    #[test]
    fn unknown_scopes_are_dropped_and_reported() {
        let (set, dropped) =
            ScopeSet::parse_lossy("p", ["users.read", "root", "events.emit", "users.read"]);
        assert_eq!(set.names(), vec!["users.read", "events.emit"]);
        assert_eq!(dropped, vec!["root"]);
    }

    #[test]
    fn intersection_keeps_only_common_scopes() {
        let a: ScopeSet = [Scope::UsersRead, Scope::UsersWrite].into_iter().collect();
        let b: ScopeSet = [Scope::UsersWrite, Scope::EventsEmit].into_iter().collect();
        assert_eq!(a.intersection(&b).names(), vec!["users.write"]);
        assert_eq!(ScopeSet::all().len(), 7);
    }
}
